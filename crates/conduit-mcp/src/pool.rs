//! A fixed set of threads that run tool calls off the event loop, with a bounded queue in front.

use crate::tool::Call;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// The queue is full: the call was not started.
#[derive(Debug)]
pub(crate) struct Busy(pub(crate) Box<Call>);

/// Runs calls on `threads` threads; at most `queue` more wait.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: SyncSender<Call>,
}

impl Pool {
    /// Starts the threads. They end when the pool is dropped and the queue drains.
    pub(crate) fn new(threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (jobs, rx) = sync_channel::<Call>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new().name(format!("mcp-tool-{i}")).spawn(move || work(&rx))?;
        }
        Ok(Pool { jobs })
    }

    /// Queues a call.
    ///
    /// # Errors
    /// [`Busy`] with the call when the queue is full.
    pub(crate) fn submit(&self, call: Call) -> Result<(), Busy> {
        match self.jobs.try_send(call) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(call) | TrySendError::Disconnected(call)) => Err(Busy(Box::new(call))),
        }
    }
}

fn work(jobs: &Mutex<Receiver<Call>>) {
    loop {
        // Hold the lock only to take a job, never while running one.
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match next {
            Ok(call) => call.run(),
            Err(_) => return,
        }
    }
}
