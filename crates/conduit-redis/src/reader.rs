//! The reader: one thread per node that reads the followed topics in global order and hands what it reads to a
//! sink, and a control thread that wakes it when the set of topics changes.
//!
//! The reader keeps one position for all its topics, `through`: every event of a followed topic numbered up to
//! it has been handed to the sink, and none after it. Each turn reads every followed topic after `through` in one
//! `MULTI`/`EXEC` together with the sequence and the epoch token, so the read is a snapshot: merged by sequence
//! it is the global order (see [`crate::merge`]), and `through` moves to the sequence read when no topic was cut
//! off. When a read brings nothing, the reader blocks in `XREAD BLOCK` on the same topics until something is
//! appended, then reads again; the blocking read's own reply is only a wake-up, because which streams a served
//! blocking read reports has varied between Redis versions, and the snapshot has no such doubt.
//!
//! A topic that gains its first follower joins at the next turn: its tail up to `through` is loaded (for the
//! node's cache) and it is read from `through` on, like the others. The control thread makes that prompt: it
//! sends `CLIENT UNBLOCK` for the reader's connection from a connection of its own, so a join takes a round trip
//! or two, not a `block` period. Should the unblock not arrive (an ACL without `CLIENT`, a race lost), the
//! `block` timeout still bounds the wait.

use crate::conn::{self, Backoff};
use crate::entry::{Entry, bytes_of, decode_entries, parse_u64};
use crate::epoch::judge;
use crate::merge::{Chains, Gap, merge_runs};
use crate::node::NodeShared;
use crate::script::{self, SYNC};
use redis::{Connection, RedisError, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the reader hands to its sink, in the order it happened.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ReaderEvent {
    /// Connected, and the history in Redis checked; reading from `through` on.
    Up {
        /// The reader's position.
        through: u64,
    },
    /// The connection failed; the reader reconnects with backoff and continues from its position.
    Down {
        /// What failed.
        reason: String,
    },
    /// Redis no longer holds the history the node delivered from (it restarted empty, was restored from an
    /// older snapshot, or was flushed). Every earlier position and cached event is void; clients must be told
    /// (`reset`). `Joined` follows for every followed topic, with its tail in the new history.
    NewEpoch {
        /// The reader's position in the new history.
        through: u64,
    },
    /// A topic gained its first follower and is now read. `tail` is what its stream holds up to `through`, at
    /// most `backlog` events, oldest first; a first event whose `prev` is not 0 means older events exist that
    /// the tail does not hold. Replaces anything cached for the topic.
    Joined {
        /// The topic.
        topic: Arc<str>,
        /// Its newest events up to `through`.
        tail: Vec<Entry>,
        /// The reader's position.
        through: u64,
    },
    /// A topic lost its last follower and is no longer read; what is cached for it goes stale from here.
    Left {
        /// The topic.
        topic: Arc<str>,
    },
    /// New events of the followed topics, in global order.
    Batch {
        /// The events, in sequence order.
        entries: Vec<Entry>,
        /// Events trimmed from a topic's stream before this node read them (rare: the topic outran the reader by
        /// more than the backlog). Each gap lies before the entry of its `until`.
        gaps: Vec<Gap>,
        /// The reader's position after this batch.
        through: u64,
    },
    /// The answer to a [`HistoryRequest`].
    History {
        /// The request's token.
        token: u64,
        /// The events, or why not.
        result: Result<History, HistoryError>,
    },
}

/// A request for the events after a position, for a resume older than the node's cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Comes back with the answer.
    pub token: u64,
    /// The position: events numbered after it are wanted.
    pub after: u64,
    /// The topics.
    pub topics: Vec<Arc<str>>,
    /// Events at most (also capped by the `batch` setting).
    pub max: usize,
}

/// Events after a position, read from Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The events of the requested topics numbered after the position and up to `through`, in sequence order.
    pub entries: Vec<Entry>,
    /// How far the answer goes: the reader's position when it was read, or less when `max` cut it short (ask
    /// again from here). The sink has already received every batch up to the reader's position.
    pub through: u64,
    /// False when a topic's stream had trimmed events after the position: the answer holds what is left.
    pub complete: bool,
}

/// Why a history request was not answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryError {
    /// Redis is not reachable.
    Unavailable(String),
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Unavailable(why) => write!(f, "Redis is unavailable: {why}"),
        }
    }
}

impl std::error::Error for HistoryError {}

/// The handle of a node's reader: says which topics it follows, asks for history, and stops it when dropped.
pub struct Reader {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").field("up", &self.is_up()).finish_non_exhaustive()
    }
}

/// What the handle, the reader thread and the control thread share.
struct Shared {
    node: Arc<NodeShared>,
    control: Mutex<Control>,
    /// Signalled when `control` changes, and when the reader applied a change.
    changed: Condvar,
    /// Bumped (under the lock) on every change to `control`, so the reader can peek without locking.
    generation: AtomicU64,
    /// The generation the reader has applied.
    applied: AtomicU64,
    up: AtomicBool,
    /// The reader's `CLIENT ID` while connected, 0 otherwise.
    client_id: AtomicU64,
    /// The reader is (about to be) in a blocking read.
    blocking: AtomicBool,
    reader_done: AtomicBool,
}

#[derive(Default)]
struct Control {
    /// Followers per topic: a topic is read while it has one.
    follows: HashMap<Arc<str>, usize>,
    history: Vec<HistoryRequest>,
    /// The control thread should wake the reader.
    wake: bool,
    shutdown: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change made under `control`; `wake` asks for the reader to be woken at once.
    fn changed(&self, control: &mut Control, wake: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        control.wake |= wake;
        self.changed.notify_all();
    }

    fn shutting_down(&self) -> bool {
        self.lock().shutdown
    }
}

impl Reader {
    pub(crate) fn start<S>(node: Arc<NodeShared>, sink: S) -> std::io::Result<Reader>
    where
        S: FnMut(ReaderEvent) + Send + 'static,
    {
        let shared = Arc::new(Shared {
            node,
            control: Mutex::new(Control::default()),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            up: AtomicBool::new(false),
            client_id: AtomicU64::new(0),
            blocking: AtomicBool::new(false),
            reader_done: AtomicBool::new(false),
        });
        let config = &shared.node.config;
        let read_loop = ReadLoop {
            shared: Arc::clone(&shared),
            sink,
            conn: None,
            backoff: Backoff::new(config.reconnect_initial, config.reconnect_max),
            epoch: None,
            through: 0,
            seen_generation: u64::MAX,
            desired: HashSet::new(),
            followed: HashMap::new(),
            chains: Chains::default(),
            announced_up: false,
            sync: redis::Script::new(SYNC),
        };
        let reader = std::thread::Builder::new().name("conduit-redis-reader".into()).spawn(move || read_loop.run())?;
        let control_shared = Arc::clone(&shared);
        let control = match std::thread::Builder::new()
            .name("conduit-redis-control".into())
            .spawn(move || run_control(&control_shared))
        {
            Ok(handle) => handle,
            Err(e) => {
                let mut reader = Reader { shared, threads: vec![reader] };
                reader.shutdown();
                return Err(e);
            }
        };
        Ok(Reader { shared, threads: vec![reader, control] })
    }

    /// Adds a follower to `topic`: its first makes the reader join the topic within a round trip or two
    /// (at most the `block` setting), announced by [`ReaderEvent::Joined`].
    pub fn follow(&self, topic: &str) {
        let mut control = self.shared.lock();
        let count = control.follows.entry(Arc::from(topic)).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.shared.changed(&mut control, true);
        }
    }

    /// Removes a follower from `topic`; without followers the reader leaves it ([`ReaderEvent::Left`]) at its
    /// next turn. Unknown topics are ignored.
    pub fn unfollow(&self, topic: &str) {
        let mut control = self.shared.lock();
        let Some(count) = control.follows.get_mut(topic) else { return };
        *count -= 1;
        if *count == 0 {
            control.follows.remove(topic);
            // Reading a topic a little longer than needed is harmless: no need to wake the reader for it.
            self.shared.changed(&mut control, false);
        }
    }

    /// Asks for the events after a position; the answer comes to the sink as [`ReaderEvent::History`], after
    /// every batch up to the position it reaches.
    pub fn request_history(&self, request: HistoryRequest) {
        let mut control = self.shared.lock();
        control.history.push(request);
        self.shared.changed(&mut control, true);
    }

    /// Whether the reader is connected and reading.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// Stops both threads and closes their connections; waits at most about `block` plus `connect_timeout`.
    pub fn shutdown(&mut self) {
        {
            let mut control = self.shared.lock();
            control.shutdown = true;
            self.shared.changed(&mut control, true);
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a Redis reader thread panicked");
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The control thread: waits for changes and, while the reader has not applied them, interrupts its blocking
/// read with `CLIENT UNBLOCK`. At shutdown it keeps doing so until the reader thread has ended.
fn run_control(shared: &Shared) {
    let config = &shared.node.config;
    let mut conn: Option<Connection> = None;
    let mut control = shared.lock();
    loop {
        while !control.wake && !control.shutdown {
            control = shared.changed.wait(control).unwrap_or_else(|e| e.into_inner());
        }
        control.wake = false;
        let shutdown = control.shutdown;
        let target = shared.generation.load(Ordering::Acquire);
        drop(control);
        let deadline = Instant::now() + config.block + config.command_timeout;
        loop {
            let done = match shutdown {
                true => shared.reader_done.load(Ordering::Acquire),
                false => shared.applied.load(Ordering::Acquire) >= target,
            };
            if done || Instant::now() >= deadline {
                break;
            }
            let id = shared.client_id.load(Ordering::Acquire);
            if id != 0 && shared.blocking.load(Ordering::Acquire) {
                if conn.is_none() {
                    conn = conn::connect(config, "control").map_err(|e| log::debug!("control connection: {e}")).ok();
                }
                if let Some(c) = conn.as_mut()
                    && let Err(e) = redis::cmd("CLIENT").arg("UNBLOCK").arg(id).query::<i64>(c)
                {
                    log::debug!("CLIENT UNBLOCK: {e}");
                    if !conn::is_reply_error(&e) {
                        conn = None;
                    }
                }
            }
            let guard = shared.lock();
            let _unused = shared.changed.wait_timeout(guard, Duration::from_millis(1));
        }
        if shutdown {
            return;
        }
        control = shared.lock();
    }
}

/// The reader thread's state.
struct ReadLoop<S> {
    shared: Arc<Shared>,
    sink: S,
    conn: Option<Connection>,
    backoff: Backoff,
    /// The epoch token of the history being read (`None` before the first read).
    epoch: Option<String>,
    /// Every event of a followed topic up to here was handed to the sink.
    through: u64,
    /// The control generation `desired` reflects.
    seen_generation: u64,
    /// The topics with followers.
    desired: HashSet<Arc<str>>,
    /// The topics being read, with their stream keys.
    followed: HashMap<Arc<str>, String>,
    chains: Chains,
    announced_up: bool,
    sync: redis::Script,
}

/// What one turn found in Redis.
struct Snapshot {
    seq: u64,
    token: Option<String>,
    /// Entries per followed topic after `through`.
    runs: Vec<Vec<Entry>>,
}

impl<S: FnMut(ReaderEvent)> ReadLoop<S> {
    fn run(mut self) {
        while !self.shared.shutting_down() {
            if self.conn.is_none() && !self.connect() {
                continue;
            }
            let generation = self.shared.generation.load(Ordering::Acquire);
            let requests = self.take_changes(generation);
            match self.turn(requests) {
                Ok(progress) => {
                    self.shared.applied.store(generation, Ordering::Release);
                    self.shared.changed.notify_all();
                    if !progress && let Err(e) = self.wait(generation) {
                        self.lost(&e);
                    }
                }
                Err(e) => self.lost(&e),
            }
        }
        self.conn = None;
        self.shared.up.store(false, Ordering::Release);
        self.shared.reader_done.store(true, Ordering::Release);
    }

    /// Connects, or waits out the backoff after failing; false when there is no connection.
    fn connect(&mut self) -> bool {
        let config = &self.shared.node.config;
        let attempt = conn::connect(config, "reader").and_then(|mut c| {
            let id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut c)?;
            Ok((c, id))
        });
        match attempt {
            Ok((c, id)) => {
                self.conn = Some(c);
                self.shared.client_id.store(id, Ordering::Release);
                self.backoff.reset();
                true
            }
            Err(e) => {
                self.lost(&e);
                let delay = self.backoff.next_delay();
                log::debug!("Redis reader: {e}; reconnecting in {delay:?}");
                let control = self.shared.lock();
                if !control.shutdown {
                    let _unused = self.shared.changed.wait_timeout(control, delay);
                }
                false
            }
        }
    }

    /// The connection failed: report it once, and fail the history requests waiting.
    fn lost(&mut self, e: &RedisError) {
        self.conn = None;
        self.shared.client_id.store(0, Ordering::Release);
        if self.announced_up {
            self.announced_up = false;
            self.shared.up.store(false, Ordering::Release);
            log::warn!("Redis reader lost its connection: {e}");
            (self.sink)(ReaderEvent::Down { reason: e.to_string() });
        }
        let requests = std::mem::take(&mut self.shared.lock().history);
        for request in requests {
            let result = Err(HistoryError::Unavailable(e.to_string()));
            (self.sink)(ReaderEvent::History { token: request.token, result });
        }
    }

    /// Takes the history requests, and the wanted topics if they changed.
    fn take_changes(&mut self, generation: u64) -> Vec<HistoryRequest> {
        if generation == self.seen_generation {
            return Vec::new();
        }
        let mut control = self.shared.lock();
        self.seen_generation = generation;
        self.desired = control.follows.keys().cloned().collect();
        std::mem::take(&mut control.history)
    }

    /// One turn: leave, read, join, answer. True when the read brought events (read again at once).
    fn turn(&mut self, requests: Vec<HistoryRequest>) -> Result<bool, RedisError> {
        let leaving: Vec<Arc<str>> = self.followed.keys().filter(|t| !self.desired.contains(*t)).cloned().collect();
        for topic in leaving {
            self.followed.remove(&topic);
            self.chains.stop(&topic);
            (self.sink)(ReaderEvent::Left { topic });
        }
        let floor = self.shared.node.floor.load(Ordering::Acquire);
        let snapshot = self.snapshot()?;
        let verdict = judge(self.epoch.as_deref(), floor, snapshot.token.as_deref(), snapshot.seq);
        let (seq, token) = match (verdict.repair, snapshot.token) {
            (false, Some(token)) => (snapshot.seq, token),
            _ => self.repair(floor)?,
        };
        let mut progress = false;
        if verdict.new_epoch {
            log::warn!("Redis lost the history this node delivered from: a new epoch starts after {seq}");
            self.through = seq;
            self.chains.clear();
            // Every followed topic joins the new history afresh below.
            self.followed.clear();
            (self.sink)(ReaderEvent::NewEpoch { through: seq });
        } else if self.followed.is_empty() {
            self.through = self.through.max(seq);
        } else {
            progress = snapshot.runs.iter().any(|run| !run.is_empty());
            let merged = merge_runs(snapshot.runs, self.shared.node.config.batch, seq, usize::MAX);
            self.through = self.through.max(merged.through);
            if !merged.entries.is_empty() {
                let gaps = self.chains.follow(&merged.entries);
                for gap in &gaps {
                    log::warn!(
                        "topic {:?}: events after {} were trimmed before this node read them",
                        gap.topic,
                        gap.after
                    );
                }
                (self.sink)(ReaderEvent::Batch { entries: merged.entries, gaps, through: self.through });
            }
        }
        self.epoch = Some(token);
        self.shared.node.floor.fetch_max(self.through, Ordering::AcqRel);
        if !self.announced_up {
            self.announced_up = true;
            self.shared.up.store(true, Ordering::Release);
            log::info!("Redis reader up at {}", self.through);
            (self.sink)(ReaderEvent::Up { through: self.through });
        }
        let joining: Vec<Arc<str>> = self.desired.iter().filter(|t| !self.followed.contains_key(*t)).cloned().collect();
        for topic in joining {
            self.join(topic)?;
        }
        for (i, request) in requests.iter().enumerate() {
            match self.history(request) {
                Ok(history) => (self.sink)(ReaderEvent::History { token: request.token, result: Ok(history) }),
                Err(e) => {
                    // Unanswered requests go back, to be failed by `lost` with the rest.
                    self.shared.lock().history.extend(requests[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        Ok(progress)
    }

    /// Reads the sequence, the epoch token and every followed topic after `through`, atomically.
    fn snapshot(&mut self) -> Result<Snapshot, RedisError> {
        let keys = &self.shared.node.keys;
        let config = &self.shared.node.config;
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("GET").arg(keys.seq()).cmd("GET").arg(keys.epoch());
        let order: Vec<Arc<str>> = self.followed.keys().cloned().collect();
        if !order.is_empty() {
            let position = format!("{}-0", self.through);
            let cmd = pipe.cmd("XREAD").arg("COUNT").arg(config.batch).arg("STREAMS");
            for topic in &order {
                cmd.arg(&self.followed[topic]);
            }
            for _ in &order {
                cmd.arg(&position);
            }
        }
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let replies: Vec<Value> = pipe.query(conn)?;
        let mut replies = replies.into_iter();
        let seq = replies.next().as_ref().and_then(bytes_of).and_then(parse_u64).unwrap_or(0);
        let token = replies.next().as_ref().and_then(bytes_of).map(|t| String::from_utf8_lossy(t).into_owned());
        let mut runs = Vec::new();
        if let Some(Value::Array(streams)) = replies.next() {
            for stream in streams {
                let Value::Array(pair) = stream else { continue };
                let [key, entries] = pair.as_slice() else { continue };
                let topic = bytes_of(key).and_then(|k| keys.topic_of(k)).and_then(|t| self.followed.get_key_value(t));
                if let Some((topic, _)) = topic {
                    runs.push(decode_entries(topic, entries));
                }
            }
        }
        Ok(Snapshot { seq, token, runs })
    }

    /// Runs the sync script: a token if there is none, the sequence raised to `floor` if below it.
    fn repair(&mut self, floor: u64) -> Result<(u64, String), RedisError> {
        let node = &self.shared.node;
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let reply: Value = self
            .sync
            .key(node.keys.seq())
            .key(node.keys.epoch())
            .arg(floor)
            .arg(node.tokens.candidate())
            .invoke(conn)?;
        script::seq_and_epoch(&reply).ok_or_else(|| unexpected("the sync script's reply"))
    }

    /// Loads `topic`'s tail up to `through` and starts reading it.
    fn join(&mut self, topic: Arc<str>) -> Result<(), RedisError> {
        let node = &self.shared.node;
        let key = node.keys.topic(&topic);
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let newest: Value = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg(format!("{}-0", self.through))
            .arg("-")
            .arg("COUNT")
            .arg(node.config.backlog)
            .query(conn)?;
        let mut tail = decode_entries(&topic, &newest);
        tail.reverse();
        self.chains.start(&topic, tail.last().map_or(0, |e| e.seq));
        self.followed.insert(Arc::clone(&topic), key);
        (self.sink)(ReaderEvent::Joined { topic, tail, through: self.through });
        Ok(())
    }

    /// Reads the requested topics after the position, up to the reader's position.
    fn history(&mut self, request: &HistoryRequest) -> Result<History, RedisError> {
        let node = &self.shared.node;
        let max = request.max.clamp(1, node.config.batch);
        let mut pipe = redis::pipe();
        // `<after>-1` is the first id after `<after>-0`.
        let start = format!("{}-1", request.after);
        for topic in &request.topics {
            pipe.cmd("XRANGE").arg(node.keys.topic(topic)).arg(&start).arg("+").arg("COUNT").arg(max);
        }
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let replies: Vec<Value> = if request.topics.is_empty() { Vec::new() } else { pipe.query(conn)? };
        let runs: Vec<Vec<Entry>> =
            request.topics.iter().zip(&replies).map(|(topic, reply)| decode_entries(topic, reply)).collect();
        // The first entry after the position names its predecessor: if that is after the position too, the
        // stream trimmed it.
        let complete = runs.iter().all(|run| run.first().is_none_or(|first| first.prev <= request.after));
        let merged = merge_runs(runs, max, self.through, max);
        Ok(History { entries: merged.entries, through: merged.through, complete })
    }

    /// Waits for something to read: a blocking `XREAD` on the followed topics, or, with none, for a change.
    /// Returns early when the control generation moves past `generation`.
    fn wait(&mut self, generation: u64) -> Result<(), RedisError> {
        let config = &self.shared.node.config;
        if self.followed.is_empty() {
            let control = self.shared.lock();
            if self.shared.generation.load(Ordering::Acquire) == generation && !control.shutdown {
                let _unused = self.shared.changed.wait_timeout(control, config.block);
            }
            return Ok(());
        }
        self.shared.blocking.store(true, Ordering::Release);
        // Checked after raising the flag: a change made before it is seen here, one made after it finds the flag
        // and gets the reader unblocked.
        if self.shared.generation.load(Ordering::Acquire) != generation {
            self.shared.blocking.store(false, Ordering::Release);
            return Ok(());
        }
        let position = format!("{}-0", self.through);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(1).arg("BLOCK").arg(config.block.as_millis() as u64).arg("STREAMS");
        for key in self.followed.values() {
            cmd.arg(key);
        }
        for _ in 0..self.followed.len() {
            cmd.arg(&position);
        }
        let conn = self.conn.as_mut().ok_or_else(not_connected)?;
        let result = conn
            .set_read_timeout(Some(config.block + config.command_timeout))
            .and_then(|()| cmd.query::<Value>(conn))
            .and_then(|_| conn.set_read_timeout(Some(config.command_timeout)));
        self.shared.blocking.store(false, Ordering::Release);
        result
    }
}

fn not_connected() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotConnected, "not connected to Redis"))
}

fn unexpected(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected {what}")))
}
