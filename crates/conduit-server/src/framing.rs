//! How responses and stream bodies go on the wire: response heads, bodies of known length, and chunk framing
//! for streams.

use crate::response::Response;
use conduit_http::{BodyFraming, CHUNK_END, ResponseHead, StatusCode, Version, write_chunk_header};
use conduit_net::{ConnId, Context, WriteError};
use conduit_sse::SharedEvent;
use std::ops::Range;

/// A response head with `headers` added; a header that does not validate is logged and left out.
pub(crate) fn build_head(
    status: StatusCode,
    version: Version,
    framing: BodyFraming,
    keep_alive: bool,
    headers: &[(String, String)],
) -> ResponseHead {
    let mut head = ResponseHead::new(status).version(version).framing(framing).keep_alive(keep_alive);
    for (name, value) in headers {
        match head.clone().header(name, value) {
            Ok(h) => head = h,
            // Responses validate headers as they are set, so this is a bug in the server; never send it.
            Err(e) => log::error!("dropping invalid response header {name:?}: {e}"),
        }
    }
    head
}

/// A whole response, head and body (no body for `HEAD` requests or statuses that have none).
pub(crate) fn encode_response(r: &Response, version: Version, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let has_body = r.status.allows_body();
    let framing = if has_body { BodyFraming::Length(r.body.len() as u64) } else { BodyFraming::None };
    let head = build_head(r.status, version, framing, keep_alive, &r.headers);
    let mut buf = Vec::with_capacity(128 + r.body.len());
    head.write(&mut buf);
    if has_body && !head_only {
        buf.extend_from_slice(&r.body);
    }
    buf
}

/// Frames `bytes` as one chunk when `chunked`, and queues it whole or not at all.
///
/// # Errors
/// As for [`Context::write`]: the connection is closed (or closing), or its queue is full.
pub(crate) fn write_body<M>(
    cx: &mut Context<'_, M>,
    id: ConnId,
    chunked: bool,
    bytes: &[u8],
) -> Result<(), WriteError> {
    if !chunked {
        return cx.write(id, bytes);
    }
    if bytes.is_empty() {
        return Ok(());
    }
    let mut header = Vec::with_capacity(18);
    write_chunk_header(&mut header, bytes.len());
    cx.write_parts(id, &[&header, bytes, CHUNK_END])
}

/// Batches at least this large are handed to the write queue as they are instead of being copied into it.
const MOVE_BATCH: usize = 4096;

/// Like [`write_body`] for a batch of events encoded into `body`, which is left empty. A large batch is moved
/// into the write queue rather than copied (its chunk header queued before it), and `body` gets a new buffer
/// for the next one: a pulled stream's batches are tens of kilobytes, and copying each one cost a memcpy of
/// every byte streamed. A small one is copied and `body` keeps its buffer.
pub(crate) fn write_batch<M>(
    cx: &mut Context<'_, M>,
    id: ConnId,
    chunked: bool,
    body: &mut Vec<u8>,
) -> Result<(), WriteError> {
    if body.len() < MOVE_BATCH {
        let written = write_body(cx, id, chunked, body);
        body.clear();
        return written;
    }
    // The next batch will be about as large: room for it and for the event that takes it past the mark.
    let next = Vec::with_capacity(body.len() + 1024);
    let mut batch = std::mem::replace(body, next);
    if !chunked {
        return cx.write_vec(id, batch);
    }
    let mut header = Vec::with_capacity(18);
    write_chunk_header(&mut header, batch.len());
    batch.extend_from_slice(CHUNK_END);
    // A header queued without its batch leaves the stream unframed, but the caller closes a connection whose
    // queue refused either.
    cx.write(id, &header)?;
    cx.write_vec(id, batch)
}

/// The part of a shared event a stream sends: all of it (chunk framing included) on chunked streams.
pub(crate) fn frame_range(event: &SharedEvent, chunked: bool) -> Range<usize> {
    if chunked { 0..event.bytes().len() } else { event.body_range() }
}
