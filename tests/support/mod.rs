//! Test harness: the real gateway in-process on `127.0.0.1:0`, echo upstreams,
//! a raw HTTP/1.1 client that sends exactly the bytes a test writes, and a
//! real `redis-server` per test ([`redis::RedisServer`]), and the dev
//! environment of `wxgate dev` ([`dev`]).
// Each test file compiles this module into a crate of its own: nothing here is
// an API, and not every file uses every helper.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod dev;
pub mod redis;
pub mod topology;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use wxgate::config::Config;
use wxgate::dev::echo::EchoUpstream;
use wxgate::server::Running;
use wxgate::token::NewToken;

/// The JWT key every test config uses.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// An echo upstream on an ephemeral port.
pub struct Upstream {
    pub addr: SocketAddr,
    pub echo: EchoUpstream,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let echo = EchoUpstream::new(name);
        let task = tokio::spawn(echo.clone().serve(listener));
        Self { addr, echo, task }
    }

    /// Stop serving and close the listening socket.
    pub async fn stop(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        task.abort();
        let _ = task.await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// Parse a config written for a test; `WXGATE_JWT_SECRET` resolves to [`JWT_SECRET`].
pub fn config(toml: &str) -> Config {
    config_with(toml, &[])
}

/// [`config`] with more variables: each `(name, value)` of `extra`.
pub fn config_with(toml: &str, extra: &[(&str, &str)]) -> Config {
    Config::parse(toml, "test.toml", &vars(extra)).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// The environment a test config is read with: `WXGATE_JWT_SECRET` is
/// [`JWT_SECRET`], and each `(name, value)` of `extra` is set; nothing else is.
pub fn vars<'a>(extra: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        if name == "WXGATE_JWT_SECRET" {
            return Some(JWT_SECRET.to_string());
        }
        extra
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    }
}

/// The `[server]` and `[jwt]` sections a test config starts with: the plain
/// listener on `127.0.0.1:0` with a 1 s grace period, and tokens for one
/// audience signed with the key in `WXGATE_JWT_SECRET` (which [`config`] and
/// [`dev::with_config`] resolve to [`JWT_SECRET`]). Each setter changes one part;
/// the sections are the value's `Display`.
#[derive(Debug, Clone, Copy)]
pub struct Preamble<'a> {
    audience: &'a str,
    listen: &'a str,
    server: &'a str,
    key_env: Option<&'a str>,
    jwt: &'a str,
}

impl<'a> Preamble<'a> {
    /// Tokens for `audience`, everything else as described above.
    pub fn new(audience: &'a str) -> Self {
        Self {
            audience,
            listen: "127.0.0.1:0",
            server: "",
            key_env: Some("WXGATE_JWT_SECRET"),
            jwt: "",
        }
    }

    /// The plain listener on `listen`.
    pub fn listen(self, listen: &'a str) -> Self {
        Self { listen, ..self }
    }

    /// More `[server]` lines.
    pub fn server(self, lines: &'a str) -> Self {
        Self {
            server: lines,
            ..self
        }
    }

    /// The HMAC key from the variable `name`; `None`: the [`Self::jwt`]
    /// lines name the key(s).
    pub fn key_env(self, name: Option<&'a str>) -> Self {
        Self {
            key_env: name,
            ..self
        }
    }

    /// More `[jwt]` lines, after `audience` (so they may end with a table
    /// such as `[[jwt.previous_keys]]`).
    pub fn jwt(self, lines: &'a str) -> Self {
        Self { jwt: lines, ..self }
    }
}

impl fmt::Display for Preamble<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            audience,
            listen,
            server,
            key_env,
            jwt,
        } = self;
        write!(
            f,
            "\n[server]\nlisten = \"{listen}\"\ngrace_period = \"1s\"\n{server}\n\n[jwt]\n"
        )?;
        if let Some(name) = key_env {
            writeln!(f, "secret_env = \"{name}\"")?;
        }
        writeln!(f, "audience = \"{audience}\"\n{jwt}")
    }
}

/// The `[server]` and `[jwt]` sections most tests share.
pub fn base_config() -> String {
    base_config_on("127.0.0.1:0")
}

/// [`base_config`] with the plain listener on `listen`.
pub fn base_config_on(listen: &str) -> String {
    Preamble::new("test-app").listen(listen).to_string()
}

/// A gateway with a public `/public/` route, an optional `/opt/` route and a
/// protected `/` route, all to `upstream`.
pub fn standard_config(upstream: SocketAddr) -> String {
    standard_config_on("127.0.0.1:0", upstream)
}

/// [`standard_config`] with the plain listener on `listen`.
pub fn standard_config_on(listen: &str, upstream: SocketAddr) -> String {
    let routes = [
        ("/public/", "public"),
        ("/opt/", "optional"),
        ("/", "required"),
    ];
    base_config_on(listen) + &routes_toml(&routes, upstream)
}

/// Who serves plain HTTP/1.1 requests (`[server] http1`): tests of the
/// request path run on both.
#[allow(dead_code)]
pub const HTTP1_PATHS: [&str; 2] = ["wxgate", "pingora"];

/// `config` with `[server] http1 = path`.
#[allow(dead_code)]
pub fn with_http1(config: &str, path: &str) -> String {
    config.replacen("[server]\n", &format!("[server]\nhttp1 = \"{path}\"\n"), 1)
}

/// Who serves plain HTTP/2 streams (`[server] http2`): tests of HTTP/2
/// run on both.
#[allow(dead_code)]
pub const HTTP2_PATHS: [&str; 2] = ["wxgate", "pingora"];

/// `config` with `[server] http2 = path`.
#[allow(dead_code)]
pub fn with_http2(config: &str, path: &str) -> String {
    config.replacen("[server]\n", &format!("[server]\nhttp2 = \"{path}\"\n"), 1)
}

/// One `[[routes]]` entry per `(prefix, auth)`, all to `upstream`.
pub fn routes_toml(routes: &[(&str, &str)], upstream: SocketAddr) -> String {
    routes
        .iter()
        .map(|(prefix, auth)| {
            format!("\n[[routes]]\nprefix = {prefix:?}\nupstreams = [\"{upstream}\"]\nauth = {auth:?}\n")
        })
        .collect()
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory; `tag` shows in its name.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = wxgate::clock::unix_now_ms() % 1000;
        let path = std::env::temp_dir().join(format!(
            "wxgate-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// Write `text` to `name` in this directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running gateway.
pub struct Gateway {
    pub running: Option<Running>,
    pub addr: SocketAddr,
}

impl Gateway {
    pub async fn start(toml: &str) -> Self {
        let config = config(toml);
        let running = wxgate::server::start(&config)
            .await
            .expect("gateway starts");
        let addr = running.addr();
        Self {
            running: Some(running),
            addr,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// A token for `openid` signed with the gateway's key.
    pub fn token(&self, openid: &str, unionid: Option<&str>, appid: Option<&str>) -> String {
        self.issue(&NewToken {
            openid,
            unionid,
            appid,
            ..Default::default()
        })
    }

    /// [`Gateway::token`] for `openid` alone, valid for `ttl`.
    pub fn token_for(&self, openid: &str, ttl: Duration) -> String {
        self.issue(&NewToken {
            openid,
            ttl: Some(ttl),
            ..Default::default()
        })
    }

    /// The token `new` describes, signed with the gateway's key.
    pub fn issue(&self, new: &NewToken<'_>) -> String {
        self.running()
            .state()
            .tokens()
            .issue(new)
            .expect("issue token")
            .0
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(1)).await;
        }
    }

    /// Send raw request bytes; `Connection: close` is the caller's business.
    pub async fn raw(&self, request: &[u8]) -> Response {
        raw_request(self.addr, request).await
    }

    /// [`get`] from this gateway.
    pub async fn get(&self, path: &str, headers: &[&str]) -> Response {
        get(self.addr, path, headers).await
    }

    /// [`get_auth`] from this gateway.
    pub async fn get_auth(&self, path: &str, token: &str, headers: &[&str]) -> Response {
        get_auth(self.addr, path, token, headers).await
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `token` of a successful login or refresh; anything but a 200
    /// fails the test, showing the body.
    pub fn token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["token"].as_str().expect("token").to_string()
    }

    /// The `error` code of a wxgate error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// What the echo upstream saw: every (lower-case name, value) header pair.
    pub fn upstream_headers(&self) -> Vec<(String, String)> {
        let v = self.json();
        v["headers"]
            .as_array()
            .expect("echo headers")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                    p[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Every value the upstream saw for `name` (case-insensitive).
    pub fn upstream_values(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.upstream_headers()
            .into_iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .collect()
    }

    /// The request target the upstream saw.
    pub fn upstream_path(&self) -> String {
        self.json()["path"].as_str().expect("echo path").to_string()
    }
}

/// Write `request`, read until the server closes, parse the response.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).await.expect("connect to gateway");
    s.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10s")
        .expect("read response");
    parse_response(&buf)
}

/// Parse one HTTP/1.1 response (Content-Length or read-to-close bodies; chunked decoded).
pub fn parse_response(buf: &[u8]) -> Response {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw_body = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..nl])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = nl + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}

/// Poll `f` until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST path` with `body` and `Connection: close`. `content_type` `None`
/// sends no `Content-Type`; `extra_headers` are whole lines ("Name: value").
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    extra_headers: &[&str],
) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str("Content-Type: ");
        req.push_str(ct);
        req.push_str("\r\n");
    }
    for h in extra_headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw_request(addr, &bytes).await
}

/// `POST path` with `body` as JSON and these header lines.
pub async fn post_json(addr: SocketAddr, path: &str, body: &Value, headers: &[&str]) -> Response {
    let body = body.to_string();
    post(
        addr,
        path,
        Some("application/json"),
        body.as_bytes(),
        headers,
    )
    .await
}

/// `POST /wx/login` with `{"code": code}`.
pub async fn login(addr: SocketAddr, code: &str) -> Response {
    login_with(addr, code, &[]).await
}

/// [`login`] with these header lines.
pub async fn login_with(addr: SocketAddr, code: &str, headers: &[&str]) -> Response {
    post_json(addr, "/wx/login", &json!({ "code": code }), headers).await
}

/// `POST /wx/refresh` with `{"refresh_token": refresh_token}`.
pub async fn refresh(addr: SocketAddr, refresh_token: &str) -> Response {
    let body = json!({ "refresh_token": refresh_token });
    post_json(addr, "/wx/refresh", &body, &[]).await
}

/// `GET path` with `Connection: close` and these header lines (each "Name: value").
pub async fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw_request(addr, req.as_bytes()).await
}

/// [`get`] with a Bearer token (its header first).
pub async fn get_auth(addr: SocketAddr, path: &str, token: &str, headers: &[&str]) -> Response {
    let auth = format!("Authorization: Bearer {token}");
    let mut all = vec![auth.as_str()];
    all.extend_from_slice(headers);
    get(addr, path, &all).await
}

/// Read one response from `stream` within `limit`, without needing the
/// server to close: stops once the headers and a `Content-Length` body (or
/// a final chunk) are in. A reset after a complete response is not an error
/// (a server that refuses a body may close with unread bytes pending).
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> Response {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            if response_complete(&buf) {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    assert!(!buf.is_empty(), "read failed before any response byte: {e}");
                    return;
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("no complete response within {limit:?}"));
    parse_response(&buf)
}

/// Whether `buf` holds a whole response (headers plus its framed body).
fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if let Some(len) = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

/// A child process (a `wxgate` binary), killed if the test ends before it exited.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The system Python, where apt installs python3-jwt and python3-flask.
#[allow(dead_code)]
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether PyJWT (with `cryptography`) is there to check the gateway's
/// tokens and assertions as a Python backend would; where
/// `WXGATE_REQUIRE_PYJWT` is set (CI), it must be.
#[allow(dead_code)]
pub fn pyjwt_or_skip() -> bool {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import jwt, cryptography"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("WXGATE_REQUIRE_PYJWT").is_none(),
            "PyJWT and cryptography are required here (python3-jwt, python3-cryptography)"
        );
        eprintln!("skipped: python3 lacks jwt or cryptography");
    }
    ok
}
