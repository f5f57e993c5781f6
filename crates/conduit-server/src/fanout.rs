//! Hub fan-out on the loop: where a published event goes, and how a subscription starts, catches up from the
//! backlogs, and turns live.
//!
//! A subscriber is either *live* (each published event is queued to it at once) or *catching up* (it reads
//! the backlog through a cursor as fast as it drains its socket). New subscribers start catching up; a live
//! subscriber whose queue passes the high-water mark drops back to catching up instead of growing its queue,
//! and is cut off only if the backlog evicts events it has not read yet.
//!
//! On an external backbone a subscription may have to *wait* before it starts: until its topics have joined
//! (their tails are in the cache), and, for a position older than the cache (or, for `from_oldest`, a cache
//! that lost the topic's oldest events), until the backbone's history has come back. Its stream is open meanwhile (keep-alives flow); the `reset`, if any, opens it when it starts.

use crate::backbone::{BackboneError, BackboneEvent, HistoryAnswer};
use crate::connection::Conns;
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

/// Events asked of the backbone's history at once, for a resume older than the cache.
const HISTORY_BATCH: usize = 512;

/// Where a new subscription starts.
pub(crate) struct Start {
    /// The event that opens the stream when its resume cannot be lossless.
    pub(crate) reset: Option<Event>,
    /// The id of the oldest event its topics hold, for the response header.
    pub(crate) oldest_id: Option<String>,
}

/// Checks a subscription against the hub's limits, counts it among its topics' followers, and decides where
/// it starts (setting its cursor): `Ok(None)` when it must wait (see the module notes). Or returns the response
/// refusing it. An admitted subscription must end with [`unfollow`], whether or not its stream started.
pub(crate) fn plan(hub: &mut HubState, id: ConnId, sub: &mut Subscription) -> Result<Option<Start>, Response> {
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
    Ok(decide(hub, id, sub))
}

/// Decides where an admitted subscription starts, or `None` while it must wait.
fn decide(hub: &mut HubState, id: ConnId, sub: &mut Subscription) -> Option<Start> {
    if !hub.all_joined(&sub.topics) || sub.history_after.is_some() {
        return None;
    }
    if hub.distributed && wants_everything(sub) && !sub.replay_asked {
        // The oldest event a topic holds is the backbone's, which may be older than the cache's (a cache smaller
        // than the store's backlog, or one that lost its head): ask for everything after the epoch began.
        let after = hub.epoch_start;
        if sub.topics.iter().filter_map(|t| hub.topics.get(t)).any(|t| !t.backlog.complete_after(after)) {
            sub.replay_asked = true;
            sub.cursor = after;
            sub.history_after = Some(after);
            hub.hub.request_history(id.to_u64(), after, &sub.topics, HISTORY_BATCH);
            return None;
        }
    }
    let plan = plan_from_cache(hub, sub);
    if hub.distributed && matches!(plan, ResumePlan::Reset { .. }) {
        // An id is a position in the backbone's one sequence: one older than the cache (or newer than this node
        // has read) is asked of the backbone, unless it belongs to an earlier epoch.
        let position = sub.last_event_id.as_deref().and_then(parse_position).filter(|&n| n > hub.epoch_start);
        if let Some(after) = position {
            sub.cursor = after;
            sub.history_after = Some(after);
            hub.hub.request_history(id.to_u64(), after, &sub.topics, HISTORY_BATCH);
            return None;
        }
    }
    Some(settle(hub, sub, plan))
}

/// Where a subscription starts according to its topics' backlogs.
fn plan_from_cache(hub: &HubState, sub: &Subscription) -> ResumePlan {
    let backlogs: Vec<&Backlog> = sub.topics.iter().filter_map(|t| hub.topics.get(t)).map(|t| &t.backlog).collect();
    match (&sub.last_event_id, sub.from_oldest) {
        // Everything held: just before the oldest event of any of the topics.
        (None, true) => ResumePlan::Replay {
            cursor: backlogs.iter().filter_map(|b| b.oldest()).map(|e| e.seq() - 1).min().unwrap_or(hub.published),
        },
        (last, _) => plan_resume(&backlogs, last.as_deref(), hub.published),
    }
}

/// True for a subscription that asked for everything its topics hold: [`Sse::from_oldest`](crate::Sse::from_oldest)
/// without a `Last-Event-ID`. What was evicted before it started is not its loss.
fn wants_everything(sub: &Subscription) -> bool {
    sub.from_oldest && sub.last_event_id.is_none()
}

/// Settles a subscription on `plan`: its cursor, and the `reset` that opens its stream if it needs one.
fn settle(hub: &HubState, sub: &mut Subscription, plan: ResumePlan) -> Start {
    if matches!(plan, ResumePlan::Reset { .. }) || wants_everything(sub) {
        // Evictions before the stream opened are announced by the reset, or not the client's loss at all when it
        // asked for everything held.
        let backlogs = sub.topics.iter().filter_map(|t| hub.topics.get(t)).map(|t| t.backlog.evicted_through());
        sub.announced_gap = backlogs.max().unwrap_or(0);
    }
    let oldest_id = oldest_held(hub, &sub.topics);
    sub.cursor = plan.cursor();
    sub.planned = true;
    let reset = match plan {
        ResumePlan::Reset { reason, .. } => {
            Some(reset_notice(reason.as_str(), sub.last_event_id.as_deref(), oldest_id.as_deref()))
        }
        _ => None,
    };
    Start { reset, oldest_id }
}

/// A decimal sequence number, as the backbone's ids are.
fn parse_position(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The id of the oldest event `topics` hold here.
fn oldest_held(hub: &HubState, topics: &[Arc<str>]) -> Option<String> {
    let oldest = topics.iter().filter_map(|t| hub.topics.get(t)).filter_map(|t| t.backlog.oldest());
    oldest.min_by_key(|e| e.seq()).map(|e| e.id().to_owned())
}

/// Registers a subscription whose stream started: catching up with its topics if it is planned, waiting
/// otherwise.
pub(crate) fn start(hub: &mut HubState, id: ConnId, sub: &Subscription) {
    if !sub.planned {
        hub.waiting.insert(id);
        return;
    }
    for topic in &sub.topics {
        hub.topic(topic).catching_up.insert(id);
    }
}

/// Starts a waiting subscription whose start has been decided: its `reset`, if any, then catching up.
fn activate(
    cx: &mut LoopContext<'_>,
    conns: &mut Conns,
    hub: &mut HubState,
    id: ConnId,
    start: Start,
    high_water: usize,
) {
    hub.waiting.remove(&id);
    let Some(stream) = conns.stream_mut(id) else { return };
    let Source::Subscription(sub) = &stream.source else { return };
    for topic in &sub.topics {
        hub.topic(topic).catching_up.insert(id);
    }
    if let Some(reset) = start.reset {
        let mut body = Vec::new();
        reset.encode(&mut body);
        if !stream.emit(cx, id, &mut body) {
            return;
        }
    }
    catch_up(cx, conns, hub, id, high_water);
}

/// Tries again to start the waiting subscriptions.
fn retry_waiting(cx: &mut LoopContext<'_>, conns: &mut Conns, hub: &mut HubState, high_water: usize) {
    let waiting: Vec<ConnId> = hub.waiting.iter().copied().collect();
    for id in waiting {
        let Some(Source::Subscription(sub)) = conns.stream_mut(id).map(|s| &mut s.source) else {
            hub.waiting.remove(&id);
            continue;
        };
        if let Some(start) = decide(hub, id, sub) {
            activate(cx, conns, hub, id, start, high_water);
        }
    }
}

/// Removes a planned subscription from its topics' followers, here and node-wide.
pub(crate) fn unfollow(hub: &mut HubState, id: ConnId, sub: &mut Subscription) {
    if !std::mem::take(&mut sub.following) {
        return;
    }
    hub.waiting.remove(&id);
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
/// it live once it has read everything held. A stream that wrote the event it ends after
/// ([`Sse::end_after`](crate::Sse::end_after)) is put on `hub.ended` for the caller to end.
pub(crate) fn catch_up(cx: &mut LoopContext<'_>, conns: &mut Conns, hub: &mut HubState, id: ConnId, high_water: usize) {
    let now = cx.now();
    let Some(mut queued) = cx.queued(id) else { return };
    let Some(stream) = conns.stream_mut(id) else { return };
    let Source::Subscription(sub) = &mut stream.source else { return };
    if sub.live || !sub.planned {
        return;
    }
    loop {
        if queued >= high_water {
            cx.notify_drained(id);
            return;
        }
        // History older than the cache goes first.
        if let Some(next) = sub.replay.pop_front() {
            if next.seq() <= sub.cursor {
                continue;
            }
            let range = frame_range(&next, stream.chunked);
            queued += range.len();
            if let Err(e) = cx.write_shared(id, next.bytes(), range) {
                stream.cut_off = matches!(e, WriteError::Full(_));
                cx.close(id);
                return;
            }
            stream.meter.delivered(next.body_range().len());
            sub.cursor = next.seq();
            stream.keep_alive.record_activity(now);
            if sub.ends_with(next.body()) {
                hub.ended.push(id);
                return;
            }
            continue;
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
        if sub.ends_with(next.body()) {
            hub.ended.push(id);
            return;
        }
    }
}

/// Keeps a published event in its topic's backlog and delivers it to the topic's live subscribers. One that
/// cannot take it now drops back to catching up from the backlog, so a slow client never holds up the others
/// or grows its queue. Streams for which this was the event they end after go on `hub.ended`.
///
/// Subscribers are visited in the order of their places in the loop's slab (the live set is ordered), which is
/// about the order their connections were accepted in: their state, their sockets and the kernel's structures
/// behind them are then walked through memory in order rather than at random. With 10,000 subscribers that
/// cut the CPU per delivery by a sixth against a hash set's order (see BENCHMARKS.md).
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
    hub.published = hub.published.max(event.seq());
    let Some(t) = hub.topics.get_mut(&topic) else { return };
    if evicted > 0 {
        // A subscriber still catching up whose next events were just evicted can never be served losslessly:
        // cut it off now, so that it resumes and is told, rather than when it next reads.
        let catching_up: Vec<ConnId> = t.catching_up.iter().copied().collect();
        cut_off_behind(cx, conns, &catching_up, &topic, t.backlog.evicted_through());
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
            if sub.ends_with(event.body()) {
                hub.ended.push(id);
            }
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

/// Closes the subscribers among `ids` that have not read everything up to `through`, which the topic's backlog
/// no longer holds, so that they resume and are told.
fn cut_off_behind(cx: &mut LoopContext<'_>, conns: &mut Conns, ids: &[ConnId], topic: &str, through: u64) {
    for &id in ids {
        let Some(stream) = conns.stream_mut(id) else { continue };
        let behind = matches!(&stream.source,
            Source::Subscription(sub) if sub.planned && sub.cursor.max(sub.announced_gap) < through);
        if behind {
            log::warn!("stream {id} fell behind the backlog of {topic:?}; closing it so that it resumes");
            stream.cut(cx, id);
        }
    }
}

/// Takes what an external backbone read (the same on every loop of every node) into the cache, the live
/// subscribers and the waiting ones.
pub(crate) fn on_backbone(
    cx: &mut LoopContext<'_>,
    conns: &mut Conns,
    hub: &mut HubState,
    event: &BackboneEvent,
    high_water: usize,
) {
    match event {
        BackboneEvent::Batch { events, gaps, through } => {
            for (topic, missing_through) in gaps {
                if let Some(t) = hub.topics.get_mut(topic) {
                    t.backlog.mark_missing_through(*missing_through);
                    let followers: Vec<ConnId> = t.live.iter().chain(&t.catching_up).copied().collect();
                    cut_off_behind(cx, conns, &followers, topic, *missing_through);
                }
            }
            for (topic, shared) in events {
                if hub.topics.get(topic).is_some_and(|t| t.joined) {
                    let ended = hub.ended.len();
                    deliver(cx, conns, hub, Arc::clone(topic), shared.clone(), high_water);
                    stop_delivering_to_ended(conns, hub, ended);
                }
            }
            hub.published = hub.published.max(*through);
        }
        BackboneEvent::Joined { topic, tail, missing_through, through } => {
            hub.published = hub.published.max(*through);
            let limits = hub.config.backlog;
            let t = hub.topic(topic);
            t.backlog = Backlog::new(limits);
            t.backlog.mark_missing_through(*missing_through);
            for shared in tail {
                if let Err(e) = t.backlog.push(shared.clone()) {
                    log::error!("topic {topic:?}: {e}");
                }
            }
            t.joined = true;
            // Followers from before (a topic that left and came back) catch up from the new cache, or are cut
            // off if it no longer holds their position.
            let followers: Vec<ConnId> = std::mem::take(&mut t.live).into_iter().chain(t.catching_up.drain()).collect();
            t.catching_up.extend(followers.iter().copied());
            for id in followers {
                if let Some(Source::Subscription(sub)) = conns.stream_mut(id).map(|s| &mut s.source) {
                    sub.live = false;
                }
                catch_up(cx, conns, hub, id, high_water);
            }
            retry_waiting(cx, conns, hub, high_water);
        }
        BackboneEvent::Left { topic } => {
            if let Some(t) = hub.topics.get_mut(topic) {
                t.joined = false;
                if !t.is_followed() {
                    hub.topics.remove(topic);
                }
            }
        }
        BackboneEvent::NewEpoch { through } => new_epoch(cx, conns, hub, *through),
        BackboneEvent::History { token, result } => {
            on_history(cx, conns, hub, ConnId::from_u64(*token), result, high_water);
        }
    }
}

/// Takes the streams put on `hub.ended` since `from` off their topics' followers on this loop. A backbone's batch
/// carries many events where the embedded hub hands over one at a time, and a stream that sent the event it ends
/// after ([`Sse::end_after`](crate::Sse::end_after)) must not get the batch's later ones; the dispatcher ends it
/// (and unfollows it node-wide) after this step.
fn stop_delivering_to_ended(conns: &mut Conns, hub: &mut HubState, from: usize) {
    let HubState { ended, topics, .. } = hub;
    for id in &ended[from..] {
        let Some(Source::Subscription(sub)) = conns.stream_mut(*id).map(|s| &s.source) else { continue };
        for topic in &sub.topics {
            if let Some(t) = topics.get_mut(topic) {
                t.live.remove(id);
                t.catching_up.remove(id);
            }
        }
    }
}

/// The backbone's history was lost: every cached event is void, every subscriber is told with a `reset` and
/// continues with the new history once its topics join again.
fn new_epoch(cx: &mut LoopContext<'_>, conns: &mut Conns, hub: &mut HubState, through: u64) {
    hub.epoch_start = through;
    hub.published = through;
    let limits = hub.config.backlog;
    let mut followers = Vec::new();
    for t in hub.topics.values_mut() {
        t.backlog = Backlog::new(limits);
        t.backlog.mark_missing_through(through);
        t.joined = false;
        let live: Vec<ConnId> = std::mem::take(&mut t.live).into_iter().collect();
        t.catching_up.extend(live);
        followers.extend(t.catching_up.iter().copied());
    }
    followers.sort_unstable();
    followers.dedup();
    for id in followers {
        let Some(stream) = conns.stream_mut(id) else { continue };
        let Source::Subscription(sub) = &mut stream.source else { continue };
        if !sub.planned {
            continue;
        }
        sub.live = false;
        sub.replay.clear();
        sub.cursor = through;
        sub.announced_gap = through;
        let mut body = Vec::new();
        reset_notice("new_epoch", None, None).encode(&mut body);
        stream.emit(cx, id, &mut body);
    }
    // Waiting subscriptions decide again once their topics join; an id from before is unknown there.
    for &id in &hub.waiting {
        if let Some(Source::Subscription(sub)) = conns.stream_mut(id).map(|s| &mut s.source) {
            sub.history_after = None;
            sub.replay_asked = false;
            sub.replay.clear();
        }
    }
}

/// History older than the cache came back for a waiting subscription: queue it, ask for more if the cache does
/// not reach yet, or start.
fn on_history(
    cx: &mut LoopContext<'_>,
    conns: &mut Conns,
    hub: &mut HubState,
    id: ConnId,
    result: &Result<HistoryAnswer, BackboneError>,
    high_water: usize,
) {
    let Some(Source::Subscription(sub)) = conns.stream_mut(id).map(|s| &mut s.source) else { return };
    let Some(after) = sub.history_after.take() else { return };
    let answer = match result {
        Ok(answer) if answer.through >= after => answer,
        // Unreachable, or the position is past everything the backbone has: decide from the cache alone.
        other => {
            if let Err(e) = other {
                log::warn!("stream {id}: no history from the backbone ({e}); resuming from the cache");
            }
            sub.replay.clear();
            let plan = plan_from_cache(hub, sub);
            let start = settle(hub, sub, plan);
            activate(cx, conns, hub, id, start, high_water);
            return;
        }
    };
    // Events the store no longer holds are lost to a client resuming after them, not to one that asked for
    // everything held.
    sub.history_lossy |= !answer.complete && !wants_everything(sub);
    sub.replay.extend(answer.events.iter().cloned());
    let topics = sub.topics.iter().filter_map(|t| hub.topics.get(t));
    let reached = answer.through >= hub.published || topics.clone().all(|t| t.backlog.complete_after(answer.through));
    if !reached {
        sub.history_after = Some(answer.through);
        hub.hub.request_history(id.to_u64(), answer.through, &sub.topics, HISTORY_BATCH);
        return;
    }
    sub.planned = true;
    if wants_everything(sub) {
        // The history reaches the cache: anything the cache evicted before that was never the client's.
        let evicted = sub.topics.iter().filter_map(|t| hub.topics.get(t)).map(|t| t.backlog.evicted_through());
        sub.announced_gap = evicted.max().unwrap_or(0).min(answer.through);
    }
    let oldest_id = oldest_held(hub, &sub.topics);
    let reset =
        sub.history_lossy.then(|| reset_notice("events_dropped", sub.last_event_id.as_deref(), oldest_id.as_deref()));
    activate(cx, conns, hub, id, Start { reset, oldest_id }, high_water);
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
