//! The public face of a server: [`Server`] binds and runs the event loops, [`ServerHandle`] controls them from
//! other threads, [`SpawnedServer`] owns a server running on its own thread.

use crate::config::ServerConfig;
use crate::cors::Scheme;
use crate::framing::encode_response;
use crate::hub::Hub;
use crate::message::Msg;
use crate::metrics::{LoopCounters, Metrics};
use crate::response::Response;
use crate::router::Router;
use crate::service::Service;
use crate::stats::Stats;
use crate::topics::HubState;
use conduit_http::{StatusCode, Version};
use conduit_net::{EventLoop, LoopConfig, Remote};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

/// An SSE server: one event loop serving a [`Router`].
pub struct Server {
    /// One loop per worker; all share the listening port.
    event_loops: Vec<EventLoop<Service>>,
    handle: ServerHandle,
    /// What the listener speaks, for the log.
    scheme: Scheme,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.handle.addr).finish_non_exhaustive()
    }
}

/// What a connection past `max_connections` is told before it is closed.
fn overload_response() -> Vec<u8> {
    let r = Response::error(StatusCode::SERVICE_UNAVAILABLE, "server is at its connection limit; retry shortly")
        .header("Retry-After", "1");
    encode_response(&r, Version::Http11, false, false)
}

impl Server {
    /// Binds the listener and prepares the loop; nothing is served until [`run`](Self::run) or
    /// [`spawn`](Self::spawn).
    ///
    /// # Errors
    /// Binding the address or creating the poller failed.
    pub fn bind(config: ServerConfig, router: Router) -> io::Result<Server> {
        Server::bind_with_hub(config, router, &Hub::new(crate::HubConfig::default()))
    }

    /// Like [`bind`](Self::bind), serving `hub`'s topics: events published through it reach the streams
    /// this server's handlers opened with [`Sse::subscribe`](crate::Sse::subscribe).
    ///
    /// # Errors
    /// As for [`bind`](Self::bind), `InvalidInput` for a configuration that cannot be served (see
    /// [`CorsConfig::validate`](crate::CorsConfig::validate)), and `AlreadyExists` if the hub serves another
    /// running server.
    pub fn bind_with_hub(config: ServerConfig, router: Router, hub: &Hub) -> io::Result<Server> {
        if let Some(cors) = &config.cors {
            cors.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let workers = config.workers.max(1);
        let loop_config = LoopConfig {
            // The kernel spreads connections over the loops, so each takes its share of the limit.
            max_connections: config.max_connections.div_ceil(workers),
            overload_response: overload_response(),
            write_queue_limit: config.write_queue_limit,
            low_water: config.stream_high_water / 2,
            tcp_keepalive: config.tcp_keepalive,
            flush_timeout: config.flush_timeout,
            linger: config.linger,
            write_timeout: config.write_timeout,
            #[cfg(feature = "tls")]
            tls: config.tls.clone(),
            ..LoopConfig::default()
        };
        let router = Arc::new(router);
        let stats = Arc::new(Stats::default());
        let mut addr = config.addr;
        let mut event_loops = Vec::with_capacity(workers);
        let mut counters = Vec::new();
        for _ in 0..workers {
            // With several loops each has its own listener on the same port (SO_REUSEPORT); the first one
            // settles the port when the configuration asked for port 0.
            let listener = conduit_net::bind(addr, config.backlog, workers > 1)?;
            addr = listener.local_addr()?;
            let loop_counters = config.metrics.as_ref().map(|_| Arc::new(LoopCounters::default()));
            counters.extend(loop_counters.clone());
            let hub_state = HubState::new(hub.clone());
            let service =
                Service::new(Arc::clone(&router), config.clone(), Arc::clone(&stats), hub_state, loop_counters);
            event_loops.push(EventLoop::new(listener, loop_config.clone(), service)?);
        }
        let remotes: Vec<Remote<Msg>> = event_loops.iter().map(EventLoop::remote).collect();
        hub.attach(remotes.clone())?;
        if let Some(metrics) = &config.metrics {
            metrics.attach(Arc::clone(&stats), counters, hub.clone());
        }
        let handle = ServerHandle { addr, remotes, stats, hub: hub.clone(), metrics: config.metrics.clone() };
        Ok(Server { event_loops, handle, scheme: config.listener_scheme() })
    }

    /// The bound address (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// A handle to stop the server and read its counters from other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until [`ServerHandle::shutdown`] completes: the first loop on this thread, any others on threads
    /// of their own.
    ///
    /// # Errors
    /// Polling the OS failed, or a worker thread could not be started or panicked.
    pub fn run(self) -> io::Result<()> {
        let Server { mut event_loops, handle, scheme } = self;
        log::info!("serving on {}://{} with {} event loop(s)", scheme.as_str(), handle.addr, event_loops.len());
        let mut first = event_loops.remove(0);
        let mut workers = Vec::new();
        for (i, mut event_loop) in event_loops.into_iter().enumerate() {
            let spawned =
                std::thread::Builder::new().name(format!("conduit-loop-{}", i + 1)).spawn(move || event_loop.run());
            match spawned {
                Ok(thread) => workers.push(thread),
                Err(e) => {
                    handle.shutdown();
                    drop(first);
                    join_all(workers)?;
                    return Err(e);
                }
            }
        }
        let result = first.run();
        if result.is_err() {
            // One loop failing takes the server down rather than leaving it half-served.
            handle.shutdown();
        }
        let joined = join_all(workers);
        result.and(joined)
    }

    /// Serves on a new thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(self) -> io::Result<SpawnedServer> {
        let handle = self.handle.clone();
        let thread = std::thread::Builder::new().name("conduit-loop".into()).spawn(move || self.run())?;
        Ok(SpawnedServer { handle, thread: Some(thread) })
    }
}

/// Controls a running server from any thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    /// One per event loop.
    remotes: Vec<Remote<Msg>>,
    stats: Arc<Stats>,
    hub: Hub,
    metrics: Option<Metrics>,
}

impl ServerHandle {
    /// Begins a graceful shutdown: stop accepting, end every stream cleanly, let the output flush for up to
    /// the configured grace period, then stop. Returns false if the server had already stopped.
    pub fn shutdown(&self) -> bool {
        // Every loop is told, even after one refused (so no short-circuiting `any`).
        let mut told = false;
        for remote in &self.remotes {
            told |= remote.send_past_limit(Msg::Shutdown).is_ok();
        }
        told
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub whose topics this server serves.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The registry this server counts into (`ServerConfig::metrics`), or `None` when metrics are off.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Open event streams.
    pub fn streams(&self) -> usize {
        self.stats.streams.load(Ordering::Relaxed)
    }

    /// Requests parsed since the server started.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// True while the server runs.
    pub fn is_running(&self) -> bool {
        self.remotes.iter().any(Remote::is_open)
    }
}

/// Waits for worker threads, returning the first error.
fn join_all(threads: Vec<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut result = Ok(());
    for thread in threads {
        let outcome = thread.join().unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")));
        result = result.and(outcome);
    }
    result
}

/// A server running on its own thread. Dropping it shuts the server down and waits for the thread.
#[derive(Debug)]
pub struct SpawnedServer {
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SpawnedServer {
    /// The control handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Shuts down gracefully and waits for the loop's thread to end.
    ///
    /// # Errors
    /// The loop failed, or its thread panicked.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.join_thread()
    }

    /// Waits for the server to stop by itself (after another handle's `shutdown`).
    ///
    /// # Errors
    /// As for [`shutdown`](Self::shutdown).
    pub fn join(mut self) -> io::Result<()> {
        self.join_thread()
    }

    fn join_thread(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(io::Error::other("the event loop thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
            if let Err(e) = self.join_thread() {
                log::error!("server stopped with an error: {e}");
            }
        }
    }
}
