//! The bounded queue of bytes waiting for a socket to accept them.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::ops::Range;
use std::sync::Arc;

/// Small writes are appended to the last owned chunk up to this size, so a burst of tiny events becomes one
/// buffer instead of a long list of slices.
const COALESCE_LIMIT: usize = 64 * 1024;
/// How many slices one vectored write hands to the kernel.
const MAX_IOVECS: usize = 64;

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    /// Bytes shared by many queues (one encoding of a broadcast event), never copied per connection.
    Shared(Arc<[u8]>, Range<usize>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(b, r) => &b[r.clone()],
        }
    }
}

/// A push would take the queue past its limit; nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// Bytes already waiting.
    pub queued: usize,
    /// Bytes the push tried to add.
    pub attempted: usize,
    /// The queue's limit.
    pub limit: usize,
}

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "write queue full: {} bytes queued, {} more would pass the limit of {}",
            self.queued, self.attempted, self.limit
        )
    }
}

impl std::error::Error for QueueFull {}

/// Bytes waiting to be written to one connection, bounded by a byte limit.
///
/// The limit bounds what is *pending*: a push into an empty queue always succeeds whatever its size, so a
/// single message larger than the limit can still be sent, and memory stays bounded by the larger of the limit
/// and the largest message. Writes go out as one write when one buffer is pending, and as vectored writes of
/// up to 64 slices otherwise.
///
/// The chunk being written is kept in the queue itself and only the ones behind it in a heap-allocated deque,
/// which is given back whenever it empties: a broadcast subscriber usually has one event pending, and then
/// queueing it, writing it and dropping it touch no memory but the queue's own (a cache miss less per
/// delivery with thousands of subscribers), and an idle connection's queue owns no allocation at all.
#[derive(Debug)]
pub struct WriteQueue {
    /// The chunk being written; `None` only when the queue is empty.
    front: Option<Chunk>,
    /// The chunks after `front`.
    rest: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_offset: usize,
    len: usize,
    limit: usize,
}

impl WriteQueue {
    /// An empty queue that refuses to hold more than `limit` pending bytes.
    pub fn new(limit: usize) -> Self {
        WriteQueue { front: None, rest: VecDeque::new(), front_offset: 0, len: 0, limit }
    }

    /// Pending bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The byte limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True if `additional` more bytes would be accepted now.
    pub fn has_room(&self, additional: usize) -> bool {
        self.len == 0 || self.len + additional <= self.limit
    }

    fn check(&self, attempted: usize) -> Result<(), QueueFull> {
        if self.has_room(attempted) {
            Ok(())
        } else {
            Err(QueueFull { queued: self.len, attempted, limit: self.limit })
        }
    }

    /// Copies `bytes` into the queue, joining them to the last owned chunk when that is small.
    ///
    /// # Errors
    /// [`QueueFull`] if the queue is not empty and the bytes would take it past its limit.
    pub fn push_slice(&mut self, bytes: &[u8]) -> Result<(), QueueFull> {
        self.push_parts(&[bytes])
    }

    /// Copies several pieces as one message (a frame header, its body and trailer, say): all are queued or none
    /// is, and the buffer grows once for all of them.
    ///
    /// # Errors
    /// [`QueueFull`] as for [`push_slice`](Self::push_slice), judged on the pieces' total length.
    pub fn push_parts(&mut self, parts: &[&[u8]]) -> Result<(), QueueFull> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        self.check(total)?;
        self.len += total;
        let tail = match self.back_mut() {
            Some(Chunk::Owned(tail)) if tail.len() + total <= COALESCE_LIMIT => tail,
            _ => {
                let mut tail = Vec::with_capacity(total);
                for part in parts {
                    tail.extend_from_slice(part);
                }
                self.push_chunk(Chunk::Owned(tail));
                return Ok(());
            }
        };
        tail.reserve(total);
        for part in parts {
            tail.extend_from_slice(part);
        }
        Ok(())
    }

    /// The last chunk queued.
    fn back_mut(&mut self) -> Option<&mut Chunk> {
        match self.rest.back_mut() {
            Some(back) => Some(back),
            None => self.front.as_mut(),
        }
    }

    /// Queues a chunk behind the others (whose bytes are already counted in `len`).
    fn push_chunk(&mut self, chunk: Chunk) {
        if self.front.is_none() {
            self.front = Some(chunk);
        } else {
            self.rest.push_back(chunk);
        }
    }

    /// Queues an owned buffer without copying it (unless it is small enough to join the last chunk).
    ///
    /// # Errors
    /// [`QueueFull`] as for [`push_slice`](Self::push_slice).
    pub fn push_vec(&mut self, bytes: Vec<u8>) -> Result<(), QueueFull> {
        if bytes.len() < 1024 {
            return self.push_slice(&bytes);
        }
        self.check(bytes.len())?;
        self.len += bytes.len();
        self.push_chunk(Chunk::Owned(bytes));
        Ok(())
    }

    /// Queues a range of shared bytes; only the reference is stored.
    ///
    /// # Errors
    /// [`QueueFull`] as for [`push_slice`](Self::push_slice). A range outside `bytes` is treated as empty.
    pub fn push_shared(&mut self, bytes: Arc<[u8]>, range: Range<usize>) -> Result<(), QueueFull> {
        if range.start >= range.end || range.end > bytes.len() {
            return Ok(());
        }
        let n = range.end - range.start;
        self.check(n)?;
        self.len += n;
        self.push_chunk(Chunk::Shared(bytes, range));
        Ok(())
    }

    /// Drops everything pending.
    pub fn clear(&mut self) {
        self.front = None;
        self.rest = VecDeque::new();
        self.front_offset = 0;
        self.len = 0;
    }

    /// Writes until the queue is empty or the writer would block.
    ///
    /// Returns the number of bytes written; a `WouldBlock` from the writer ends the call with `Ok`, leaving the
    /// rest queued.
    ///
    /// # Errors
    /// Any other error of the writer, and `WriteZero` if it accepts nothing.
    pub fn write_to<W: Write + ?Sized>(&mut self, writer: &mut W) -> io::Result<usize> {
        let mut total = 0;
        while let Some(front) = &self.front {
            let front = &front.bytes()[self.front_offset..];
            let result = if self.rest.is_empty() {
                // The common case (one event, or a batch joined into one buffer): a plain write, and no array of
                // slices to fill.
                writer.write(front)
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                slices[0] = IoSlice::new(front);
                let mut count = 1;
                for (slot, chunk) in slices[1..].iter_mut().zip(&self.rest) {
                    *slot = IoSlice::new(chunk.bytes());
                    count += 1;
                }
                writer.write_vectored(&slices[..count])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = &self.front else {
                break;
            };
            let remaining = front.bytes().len() - self.front_offset;
            if n >= remaining {
                n -= remaining;
                self.front_offset = 0;
                self.front = self.rest.pop_front();
                if self.rest.is_empty() && self.rest.capacity() > 0 {
                    // Behind the front again no chunk waits: thousands of idle streams must stay small.
                    self.rest = VecDeque::new();
                }
            } else {
                self.front_offset += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `per_call` bytes per call and `budget` bytes in all, then would block.
    struct Throttled {
        out: Vec<u8>,
        per_call: usize,
        budget: usize,
        calls: usize,
    }

    impl Write for Throttled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.per_call - n).min(self.budget);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                self.budget -= take;
                if take < b.len() {
                    break;
                }
            }
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn preserves_order_across_partial_writes() {
        let shared: Arc<[u8]> = Arc::from(&b"[shared bytes]"[..]);
        let mut q = WriteQueue::new(1 << 20);
        q.push_slice(b"hello ").unwrap();
        q.push_shared(shared.clone(), 1..7).unwrap();
        q.push_vec(vec![b'x'; 2000]).unwrap();
        q.push_slice(b" end").unwrap();
        let expected: Vec<u8> = [&b"hello "[..], b"shared", &[b'x'; 2000], b" end"].concat();
        assert_eq!(q.len(), expected.len());

        for per_call in [1, 3, 7, 100, 5000] {
            let mut q2 = WriteQueue::new(1 << 20);
            q2.push_slice(b"hello ").unwrap();
            q2.push_shared(shared.clone(), 1..7).unwrap();
            q2.push_vec(vec![b'x'; 2000]).unwrap();
            q2.push_slice(b" end").unwrap();
            let mut w = Throttled { out: vec![], per_call, budget: usize::MAX, calls: 0 };
            let n = q2.write_to(&mut w).unwrap();
            assert_eq!(n, expected.len());
            assert_eq!(w.out, expected, "per_call {per_call}");
            assert!(q2.is_empty());
        }
    }

    #[test]
    fn would_block_leaves_the_rest_queued() {
        let mut q = WriteQueue::new(1 << 20);
        q.push_slice(b"0123456789").unwrap();
        let mut w = Throttled { out: vec![], per_call: 4, budget: 6, calls: 0 };
        assert_eq!(q.write_to(&mut w).unwrap(), 6);
        assert_eq!(q.len(), 4);
        w.budget = 100;
        assert_eq!(q.write_to(&mut w).unwrap(), 4);
        assert_eq!(w.out, b"0123456789");
    }

    #[test]
    fn limit_refuses_pushes_past_it_but_never_an_empty_queue() {
        let mut q = WriteQueue::new(10);
        assert_eq!(q.push_slice(&[0; 25]), Ok(()), "an empty queue takes any one message");
        let err = q.push_slice(b"x").unwrap_err();
        assert_eq!(err, QueueFull { queued: 25, attempted: 1, limit: 10 });
        assert_eq!(q.len(), 25, "a refused push queues nothing");
        q.clear();
        q.push_slice(&[0; 6]).unwrap();
        assert!(q.has_room(4));
        assert!(!q.has_room(5));
        assert!(q.push_shared(Arc::from(&[1u8; 8][..]), 0..5).is_err());
        q.push_shared(Arc::from(&[1u8; 8][..]), 0..4).unwrap();
        assert_eq!(q.len(), 10);
    }

    #[test]
    fn small_pushes_coalesce_into_one_slice() {
        let mut q = WriteQueue::new(1 << 20);
        for _ in 0..100 {
            q.push_slice(b"data: x\n\n").unwrap();
        }
        let mut w = Throttled { out: vec![], per_call: usize::MAX, budget: usize::MAX, calls: 0 };
        q.write_to(&mut w).unwrap();
        assert_eq!(w.calls, 1);
        assert_eq!(w.out.len(), 900);
    }

    #[test]
    fn parts_are_queued_whole_or_not_at_all() {
        let mut q = WriteQueue::new(10);
        q.push_slice(b"abc").unwrap();
        let err = q.push_parts(&[b"12", b"345678", b"9"]).unwrap_err();
        assert_eq!(err, QueueFull { queued: 3, attempted: 9, limit: 10 });
        assert_eq!(q.len(), 3, "nothing of a refused message is queued");
        q.push_parts(&[b"12", b"", b"3456"]).unwrap();
        let mut w = Throttled { out: vec![], per_call: usize::MAX, budget: usize::MAX, calls: 0 };
        q.write_to(&mut w).unwrap();
        assert_eq!(w.out, b"abc123456");
        assert_eq!(w.calls, 1, "the pieces joined the owned tail");
    }

    #[test]
    fn write_errors_surface() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = WriteQueue::new(100);
        q.push_slice(b"abc").unwrap();
        assert_eq!(q.write_to(&mut Broken).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert_eq!(q.write_to(&mut Zero).unwrap_err().kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn many_chunks_go_out_in_order_and_a_drained_queue_owns_no_memory() {
        let frames: Vec<Arc<[u8]>> = (0..100u8).map(|i| Arc::from(&[i; 3][..])).collect();
        let mut q = WriteQueue::new(1 << 20);
        for frame in &frames {
            q.push_shared(Arc::clone(frame), 0..3).unwrap();
        }
        let mut w = Throttled { out: vec![], per_call: usize::MAX, budget: usize::MAX, calls: 0 };
        assert_eq!(q.write_to(&mut w).unwrap(), 300);
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        assert_eq!(w.out, expected);
        assert_eq!(w.calls, 2, "64 slices per vectored write");
        assert!(q.front.is_none() && q.rest.capacity() == 0, "an idle queue keeps no allocation");
        // One pending frame needs none either: it is the front.
        q.push_shared(Arc::clone(&frames[0]), 0..3).unwrap();
        assert_eq!(q.rest.capacity(), 0);
        assert_eq!(frames.iter().map(Arc::strong_count).max(), Some(2), "written frames are released");
    }

    #[test]
    fn empty_and_invalid_ranges_are_ignored() {
        let mut q = WriteQueue::new(100);
        q.push_slice(b"").unwrap();
        q.push_shared(Arc::from(&b"abc"[..]), 2..2).unwrap();
        q.push_shared(Arc::from(&b"abc"[..]), 1..9).unwrap();
        assert!(q.is_empty());
    }
}
