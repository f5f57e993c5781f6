//! Blocking work (a store, another service) run off the event loop by a bounded set of threads, its answer
//! given through a deferred reply.
//!
//! A handler must return at once. One that needs a blocking call (a publish or a history read on an external
//! hub backbone, say) hands it to an [`Offload`]: the work runs on one of its threads and the request is
//! answered when it returns, while the loop serves everyone else. Concurrency is bounded twice, by the
//! threads and by a queue in front of them; when both are full the request is refused at once ([`OffloadBusy`], a
//! `503` with `Retry-After`) instead of waiting without bound.
//!
//! ```
//! use conduit_server::{Offload, Request, Response, Router};
//!
//! let offload = Offload::new("lookup", 4, 64)?;
//! let router = Router::new().get("/slow", move |_: &Request| {
//!     offload.defer(|| {
//!         // ... a blocking call ...
//!         Response::text("done")
//!     })
//! });
//! # let _ = router;
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::reply::{Reply, Responder};
use crate::response::Response;
use conduit_http::StatusCode;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run handlers' blocking work and answer their requests (see the module notes). Cheap to clone;
/// clones share the threads, which end once every clone is dropped and the queued work is done.
#[derive(Clone)]
pub struct Offload {
    jobs: SyncSender<Job>,
    name: Arc<str>,
}

impl fmt::Debug for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every thread of an [`Offload`] is working and its queue is full: the work was not started. As a reply, it
/// is `503 Service Unavailable` with `Retry-After: 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadBusy;

impl fmt::Display for OffloadBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too many requests in progress; try again shortly")
    }
}

impl std::error::Error for OffloadBusy {}

impl From<OffloadBusy> for Reply {
    fn from(busy: OffloadBusy) -> Reply {
        Reply::Response(Response::error(StatusCode::SERVICE_UNAVAILABLE, busy).header("Retry-After", "1"))
    }
}

impl Offload {
    /// Starts `threads` threads (at least one), named `<name>-<n>`, with room for `queue` more pieces of work
    /// waiting for one of them.
    ///
    /// # Errors
    /// The operating system refused a thread.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Offload> {
        let (jobs, waiting) = sync_channel::<Job>(queue);
        let waiting = Arc::new(Mutex::new(waiting));
        for n in 0..threads.max(1) {
            let waiting = Arc::clone(&waiting);
            std::thread::Builder::new().name(format!("{name}-{n}")).spawn(move || run(&waiting))?;
        }
        Ok(Offload { jobs, name: Arc::from(name) })
    }

    /// Runs `work` on one of the threads and answers the request with what it returns; hand the `Reply` back
    /// from the handler. Work whose request is over before a thread takes it (the client left, or
    /// [`deferred_timeout`](crate::ServerConfig::deferred_timeout) passed and it was answered `504`) is dropped
    /// without running: nobody would read its answer, and a request answered with a failure is not carried out
    /// later. Work that panics gets its request a `500`; the thread goes on.
    ///
    /// # Errors
    /// [`OffloadBusy`] when every thread is working and the queue is full: `work` was dropped without running.
    pub fn defer<R, F>(&self, work: F) -> Result<Reply, OffloadBusy>
    where
        R: Into<Reply>,
        F: FnOnce() -> R + Send + 'static,
    {
        let (responder, reply) = Reply::deferred();
        let name = Arc::clone(&self.name);
        let job: Job = Box::new(move || answer(&name, responder, work));
        match self.jobs.try_send(job) {
            Ok(()) => Ok(reply),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(OffloadBusy),
        }
    }
}

/// Runs `work` for a request that is still waiting, and answers it.
fn answer<R: Into<Reply>>(name: &str, responder: Responder, work: impl FnOnce() -> R) {
    if responder.is_closed() {
        return;
    }
    match catch_unwind(AssertUnwindSafe(work)) {
        // Refused when the client left meanwhile: the answer has nobody to go to.
        Ok(reply) => drop(responder.send(reply)),
        // The responder, dropped unanswered, gets the request its `500`.
        Err(_) => log::error!("work on {name} panicked"),
    }
}

fn run(waiting: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held to take a job, never while running one.
        let next = waiting.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    fn status(reply: &Reply) -> u16 {
        match reply {
            Reply::Response(r) => r.status_code().as_u16(),
            _ => 0,
        }
    }

    #[test]
    fn work_past_the_threads_and_the_queue_is_refused_at_once() {
        let offload = Offload::new("test-offload", 1, 1).unwrap();
        let (release, gate) = channel::<()>();
        let (started, running) = channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // The thread takes the first and blocks in it; the second waits in the queue; the third is refused.
        let first = Arc::clone(&gate);
        let blocking = offload.defer(move || {
            started.send(()).unwrap();
            first.lock().unwrap().recv().unwrap();
            Response::text("first")
        });
        assert!(matches!(blocking, Ok(Reply::Deferred(_))));
        running.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(offload.defer(|| Response::text("queued")).is_ok());
        let refused = offload.defer(|| -> Response { unreachable!("refused work never runs") });
        assert_eq!(refused.err(), Some(OffloadBusy));
        assert_eq!(status(&Reply::from(OffloadBusy)), 503);
        release.send(()).unwrap();
    }

    #[test]
    fn work_whose_request_is_over_before_it_starts_is_not_run() {
        let offload = Offload::new("test-offload", 1, 4).unwrap();
        let (release, gate) = channel::<()>();
        let _ = offload.defer(move || {
            gate.recv().unwrap();
            Response::text("first")
        });
        let (ran, runs) = channel::<&str>();
        let late = ran.clone();
        match offload.defer(move || late.send("closed").map(|()| Response::text("late")).unwrap()) {
            Ok(Reply::Deferred(waiting)) => waiting.close(),
            other => panic!("{other:?}"),
        }
        let _ = offload.defer(move || ran.send("open").map(|()| Response::text("next")).unwrap());
        release.send(()).unwrap();
        assert_eq!(runs.recv_timeout(Duration::from_secs(10)), Ok("open"));
        assert!(runs.try_recv().is_err(), "the closed request's work was dropped");
    }

    #[test]
    fn a_panic_abandons_its_request_and_the_thread_goes_on() {
        let offload = Offload::new("test-offload", 1, 4).unwrap();
        let _ = offload.defer(|| -> Response { panic!("work that fails") });
        let (done, ran) = channel();
        let _ = offload.defer(move || {
            done.send(()).unwrap();
            Response::text("after")
        });
        ran.recv_timeout(Duration::from_secs(10)).expect("the thread survived the panic");
    }
}
