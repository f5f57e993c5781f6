//! Hub fan-out on the loop: where a published event goes, and how a subscription starts, catches up from the
//! backlogs, and turns live.
//!
//! A subscriber is either *live* (each published event is queued to it at once) or *catching up* (it reads
//! the backlog through a cursor as fast as it drains its socket). New subscribers start catching up; a live
//! subscriber whose queue passes the high-water mark drops back to catching up instead of growing its queue,
//! and is cut off only if the backlog evicts events it has not read yet.

use crate::connection::{Conns, State};
use crate::framing::frame_range;
use crate::hub::valid_topic;
use crate::message::LoopContext;
use crate::response::Response;
use crate::sse::{Source, Subscription};
use crate::topics::HubState;
use conduit_http::StatusCode;
use conduit_net::{ConnId, WriteError};
use conduit_sse::{Backlog, Event, ResumePlan, SharedEvent, plan_resume};
use std::sync::Arc;

/// Where a new subscription starts.
pub(crate) struct Start {
    /// The event that opens the stream when its resume cannot be lossless.
    pub(crate) reset: Option<Event>,
    /// The id of the oldest event its topics hold, for the response header.
    pub(crate) oldest_id: Option<String>,
}

/// Checks a subscription against the hub's limits, counts it among its topics' followers, and decides where
/// it starts (setting its cursor); or returns the response refusing it. A planned subscription must end with
/// [`unfollow`], whether or not its stream started.
pub(crate) fn plan(hub: &mut HubState, sub: &mut Subscription) -> Result<Start, Response> {
    let config = &hub.config;
    if sub.topics.is_empty() || sub.topics.len() > config.max_topics_per_stream {
        return Err(Response::error(
            StatusCode::BAD_REQUEST,
            format_args!("a stream follows 1 to {} topics", config.max_topics_per_stream),
        ));
    }
    if let Some(bad) = sub.topics.iter().find(|t| !valid_topic(t, config.max_topic_len)) {
        return Err(Response::error(
            StatusCode::BAD_REQUEST,
            format_args!(
                "invalid topic {:?}: 1 to {} bytes without control characters",
                bad.as_ref(),
                config.max_topic_len
            ),
        ));
    }
    // Counted node-wide first, all topics or none: a subscription is answered 200 only for topics it keeps.
    if let Err(e) = hub.hub.follow(&sub.topics) {
        log::debug!("refusing a subscription to {:?}: {e:?}", sub.topics);
        return Err(Response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many topics that nothing was published to yet; try again later",
        )
        .header("Retry-After", "5"));
    }
    sub.following = true;
    for topic in &sub.topics {
        hub.topic(topic);
    }
    let backlogs: Vec<&Backlog> = sub.topics.iter().filter_map(|t| hub.topics.get(t)).map(|t| &t.backlog).collect();
    let plan = plan_resume(&backlogs, sub.last_event_id.as_deref(), hub.published);
    if matches!(plan, ResumePlan::Reset { .. }) {
        sub.announced_gap = backlogs.iter().map(|b| b.evicted_through()).max().unwrap_or(0);
    }
    let oldest_id = backlogs.iter().filter_map(|b| b.oldest()).min_by_key(|e| e.seq()).map(|e| e.id().to_owned());
    sub.cursor = plan.cursor();
    let reset = match plan {
        ResumePlan::Reset { reason, .. } => {
            Some(reset_notice(reason.as_str(), sub.last_event_id.as_deref(), oldest_id.as_deref()))
        }
        _ => None,
    };
    Ok(Start { reset, oldest_id })
}

/// Registers a planned subscription whose stream started with its topics on this loop, catching up.
pub(crate) fn start(hub: &mut HubState, id: ConnId, sub: &Subscription) {
    for topic in &sub.topics {
        hub.topic(topic).catching_up.insert(id);
    }
}

/// Removes a planned subscription from its topics' followers, here and node-wide.
pub(crate) fn unfollow(hub: &mut HubState, id: ConnId, sub: &mut Subscription) {
    if !std::mem::take(&mut sub.following) {
        return;
    }
    hub.hub.unfollow(&sub.topics);
    for topic in &sub.topics {
        if let Some(t) = hub.topics.get_mut(topic) {
            t.live.remove(&id);
            t.catching_up.remove(&id);
        }
        hub.drop_if_unused(topic);
    }
}

/// Feeds a subscription that is catching up from its topics' backlogs, up to the high-water mark, and makes
/// it live once it has read everything held.
pub(crate) fn catch_up(cx: &mut LoopContext<'_>, conns: &mut Conns, hub: &mut HubState, id: ConnId, high_water: usize) {
    let now = cx.now();
    let Some(mut queued) = cx.queued(id) else { return };
    let Some(stream) = conns.stream_mut(id) else { return };
    let Source::Subscription(sub) = &mut stream.source else { return };
    if sub.live {
        return;
    }
    loop {
        if queued >= high_water {
            cx.notify_drained(id);
            return;
        }
        let topics = sub.topics.iter().filter_map(|t| hub.topics.get(t));
        if !topics.clone().all(|t| t.backlog.complete_after(sub.cursor.max(sub.announced_gap))) {
            log::warn!("stream {id} fell behind the backlog of its topics; closing it so that it resumes");
            stream.cut_off = true;
            cx.close(id);
            return;
        }
        let Some(next) = topics.filter_map(|t| t.backlog.next_after(sub.cursor)).min_by_key(|e| e.seq()) else {
            for topic in &sub.topics {
                if let Some(t) = hub.topics.get_mut(topic) {
                    t.catching_up.remove(&id);
                    t.live.insert(id);
                }
            }
            sub.live = true;
            return;
        };
        let range = frame_range(next, stream.chunked);
        let len = range.len();
        if let Err(e) = cx.write_shared(id, next.bytes(), range) {
            stream.cut_off = matches!(e, WriteError::Full(_));
            cx.close(id);
            return;
        }
        queued += len;
        sub.cursor = next.seq();
        stream.keep_alive.record_activity(now);
        stream.meter.delivered(next.body_range().len());
    }
}

/// Keeps a published event in its topic's backlog and delivers it to the topic's live subscribers. One that
/// cannot take it now drops back to catching up from the backlog, so a slow client never holds up the others
/// or grows its queue.
pub(crate) fn deliver(
    cx: &mut LoopContext<'_>,
    conns: &mut Conns,
    hub: &mut HubState,
    topic: Arc<str>,
    event: SharedEvent,
    high_water: usize,
) {
    let now = cx.now();
    // The hub's registry made room for this topic before the event was acknowledged.
    let t = hub.topic(&topic);
    let evicted = match t.backlog.push(event.clone()) {
        Ok(evicted) => evicted,
        Err(e) => {
            log::error!("dropping event for {topic:?}: {e}");
            return;
        }
    };
    hub.published = event.seq();
    let Some(t) = hub.topics.get_mut(&topic) else { return };
    if evicted > 0 {
        // A subscriber still catching up whose next events were just evicted can never be served losslessly:
        // cut it off now, so that it resumes and is told, rather than when it next reads.
        let through = t.backlog.evicted_through();
        for &id in &t.catching_up {
            let behind = conns.get(id).is_some_and(|c| {
                matches!(&c.state, State::Streaming(s) if matches!(&s.source,
                    Source::Subscription(sub) if sub.cursor.max(sub.announced_gap) < through))
            });
            if behind {
                log::warn!("stream {id} fell behind the backlog of {topic:?}; closing it so that it resumes");
                if let Some(stream) = conns.stream_mut(id) {
                    stream.cut(cx, id);
                }
            }
        }
    }
    let mut behind = Vec::new();
    for &id in &t.live {
        let Some(stream) = conns.stream_mut(id) else { continue };
        let Source::Subscription(sub) = &mut stream.source else { continue };
        let range = frame_range(&event, stream.chunked);
        let fits = |cx: &mut LoopContext<'_>| cx.queued(id).is_some_and(|q| q + range.len() <= high_water);
        // Output waits for the end of the turn; a subscriber is only behind if its socket will not take what
        // is queued now.
        let fits = fits(cx) || {
            cx.flush(id);
            fits(cx)
        };
        if fits && cx.write_shared(id, event.bytes(), range).is_ok() {
            sub.cursor = event.seq();
            stream.keep_alive.record_activity(now);
            stream.meter.delivered(event.body_range().len());
        } else {
            sub.live = false;
            behind.push(id);
        }
    }
    for id in behind {
        let Some(Source::Subscription(sub)) = conns.stream_mut(id).map(|s| &s.source) else { continue };
        for topic in &sub.topics {
            if let Some(t) = hub.topics.get_mut(topic) {
                t.live.remove(&id);
                t.catching_up.insert(id);
            }
        }
        cx.notify_drained(id);
    }
}

/// The event that opens a stream whose resume was not lossless.
fn reset_notice(reason: &str, last_event_id: Option<&str>, oldest_id: Option<&str>) -> Event {
    let data = serde_json::json!({ "reason": reason, "last_event_id": last_event_id, "oldest_id": oldest_id });
    match Event::new().event("reset").and_then(|e| e.json(&data)) {
        Ok(event) => event,
        // "reset" has no line break and JSON values always serialize: unreachable, but never worth a panic.
        Err(_) => Event::new().data(reason),
    }
}
