//! A real `redis-server` per test, spawned by the test and killed with it.
//!
//! Each [`RedisServer`] runs in its own temporary directory with persistence
//! off, listening either on a unix socket in that directory (no port race,
//! the default) or on a free loopback TCP port. Readiness is polled with
//! `PING`, never waited for with a fixed sleep. [`RedisServer::kill`] and
//! [`RedisServer::restart`] let tests take the store away mid-test and bring
//! it back on the same address. The shared Redis on 127.0.0.1:6379 is never
//! used.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const NOT_INSTALLED: &str =
    "redis-server is not installed; install it (apt-get install redis-server) — .ci/run does this";

/// How long a fresh `redis-server` may take to answer `PING`.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Where a test's redis-server listens.
#[derive(Debug, Clone)]
enum Listen {
    Unix(PathBuf),
    Tcp(u16),
}

/// A `redis-server` process owned by one test.
pub struct RedisServer {
    dir: PathBuf,
    listen: Listen,
    child: Option<Child>,
    /// More `redis-server` arguments (e.g. `--maxmemory`).
    args: Vec<String>,
}

impl RedisServer {
    /// A server on a unix socket in a fresh temporary directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Self::start`], with more `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = fresh_dir();
        let listen = Listen::Unix(dir.join("redis.sock"));
        let mut server = Self {
            dir,
            listen,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn_and_wait().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// A server on a free loopback TCP port (the port is found by binding
    /// `127.0.0.1:0`; if another process takes it first, another is tried).
    pub fn start_tcp() -> Self {
        Self::start_tcp_with(&[])
    }

    /// Like [`Self::start_tcp`], with more `redis-server` arguments.
    pub fn start_tcp_with(args: &[&str]) -> Self {
        let mut server = Self {
            dir: fresh_dir(),
            listen: Listen::Tcp(free_port()),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        let mut last = String::new();
        for _ in 0..5 {
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
            server.listen = Listen::Tcp(free_port());
        }
        panic!("redis-server did not start on a free TCP port after 5 attempts: {last}");
    }

    /// A URL the `redis` crate accepts.
    pub fn url(&self) -> String {
        match &self.listen {
            Listen::Unix(path) => format!("redis+unix://{}", path.display()),
            Listen::Tcp(port) => format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// The TCP port (panics for a unix-socket server).
    pub fn port(&self) -> u16 {
        match &self.listen {
            Listen::Tcp(port) => *port,
            Listen::Unix(_) => panic!("a unix-socket server has no port"),
        }
    }

    /// The server's own temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether the server answers `PING` right now.
    pub fn is_up(&self) -> bool {
        ping(&self.listen).is_ok()
    }

    /// SIGKILL the server (no clean shutdown, like a crash) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP the server: connections stay open, nothing answers (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT a paused server.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Start the server again on the same socket or port (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait()
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .map_err(|e| format!("cannot create the redis log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log handle: {e}"))?;
        let mut cmd = Command::new("redis-server");
        match &self.listen {
            Listen::Unix(path) => {
                cmd.arg("--port").arg("0");
                cmd.arg("--unixsocket").arg(path);
                cmd.arg("--unixsocketperm").arg("700");
            }
            Listen::Tcp(port) => {
                cmd.arg("--port").arg(port.to_string());
                cmd.arg("--bind").arg("127.0.0.1");
            }
        }
        cmd.arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{NOT_INSTALLED}"),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if ping(&self.listen).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server exited ({status}) before answering PING; log:\n{}",
                        self.log()
                    ));
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "redis-server did not answer PING within {START_LIMIT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new, empty, unique directory, short enough for a unix socket path.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "wxgate-redis-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut base = std::env::temp_dir();
    // sun_path holds 108 bytes: fall back to /tmp if TMPDIR is deep.
    if base.join(&name).join("redis.sock").as_os_str().len() > 100 {
        base = PathBuf::from("/tmp");
    }
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the redis temp dir");
    dir
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Send `PING`, expect `+PONG`.
fn ping(listen: &Listen) -> std::io::Result<()> {
    let limit = Some(Duration::from_millis(500));
    let reply = match listen {
        Listen::Unix(path) => {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(limit)?;
            s.set_write_timeout(limit)?;
            exchange(s)?
        }
        Listen::Tcp(port) => {
            let s = TcpStream::connect(("127.0.0.1", *port))?;
            s.set_read_timeout(limit)?;
            s.set_write_timeout(limit)?;
            exchange(s)?
        }
    };
    if &reply == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(std::io::Error::other("not PONG"))
    }
}

fn exchange(mut s: impl Read + Write) -> std::io::Result<[u8; 7]> {
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n")?;
    s.read_exact(&mut reply)?;
    Ok(reply)
}
