//! A throwaway `redis-server` for tests, examples and benchmarks.
//!
//! [`RedisServer::start`] runs Debian's `redis-server` on a free loopback port of its own, with its files in a
//! fresh temporary directory, waits until it answers `PING`, and kills it by PID when dropped. When the binary
//! is missing the helper says so loudly and returns `None`, so a test can skip; with the `CI` environment
//! variable set it panics instead, so CI never passes by skipping.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process this test owns.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    appendonly: bool,
}

/// Persistence of a [`RedisServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// `--appendonly yes`: every acknowledged write survives a kill.
    AppendOnly,
    /// Nothing is kept: a restart starts empty.
    None,
}

impl RedisServer {
    /// Starts a server, or returns `None` after a loud message when `redis-server` is not installed and `CI` is
    /// unset.
    ///
    /// # Panics
    /// When `redis-server` is missing under CI, or a server does not answer within 10 s.
    pub fn start(persistence: Persistence) -> Option<RedisServer> {
        if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is not installed, and CI must run the Redis tests (.ci/run installs it)");
            }
            eprintln!("\n*** SKIPPED: redis-server is not installed (apt-get install redis-server) ***\n");
            return None;
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "conduit-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = RedisServer { child: None, port: 0, dir, appendonly: persistence == Persistence::AppendOnly };
        // A free port can be taken by someone else before the server binds it: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.launch() {
                return Some(server);
            }
        }
        panic!("redis-server did not start; see {}", server.dir.join("redis.log").display());
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its directory (data and `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills it with SIGKILL and waits for it to end: a crash, as far as clients can tell.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same files: with [`Persistence::AppendOnly`] it holds what it
    /// held.
    ///
    /// # Panics
    /// When it does not answer within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.launch(), "redis-server did not restart on port {}", self.port);
    }

    /// Starts it again on the same port with its files deleted: it holds nothing.
    ///
    /// # Panics
    /// When it does not answer within 10 s.
    pub fn restart_empty(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n != "redis.log") {
                let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
        assert!(self.launch(), "redis-server did not restart on port {}", self.port);
    }

    /// A plain connection, for looking inside (`CLIENT LIST`, `XRANGE`...).
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("a valid URL");
        client.get_connection_with_timeout(Duration::from_secs(5)).expect("connect to the test redis-server")
    }

    /// The names of the connected clients (`CLIENT LIST`), one per connection; unnamed ones are empty.
    ///
    /// # Panics
    /// When it cannot connect.
    pub fn client_names(&self) -> Vec<String> {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut self.connection()).expect("CLIENT LIST");
        let name = |line: &str| line.split(' ').find_map(|f| f.strip_prefix("name=")).unwrap_or("").to_owned();
        list.lines().map(name).collect()
    }

    /// Runs redis-server and waits for `PING`; false if it ended or stayed silent.
    fn launch(&mut self) -> bool {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            if answers_ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
