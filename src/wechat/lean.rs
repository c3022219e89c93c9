//! A lean HTTP/1.1 client for `jscode2session`, the WeChat call on every
//! login: the request written and its answer read in the login's own task,
//! on connections kept idle here (at most [`MAX_IDLE`], counted in the
//! open-file reserve of `server::descriptors`), as the relay talks
//! to upstreams. reqwest would send it to a connection task of hyper's
//! through a channel, build and parse its URL, and pass it through tower's
//! layers: a quarter of a login's CPU (bench/README.md).
//!
//! HTTPS goes through rustls with the platform's verifier (what reqwest
//! uses). The request target holds the app secret: no error here carries
//! it, and nothing is logged. A kept connection is used again only if it
//! has been idle less than [`IDLE_FOR`] and nothing (an end, an alert) is
//! waiting on it; one whose request cannot be written is replaced once by
//! a new one. A request that was written is never sent again: WeChat may
//! have spent the code. When the environment names a
//! proxy (`HTTPS_PROXY`, ...), reqwest is kept, since it honours them
//! ([`Lean::for_url`] answers `None`).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::reply::WechatError;
use crate::outbound::MAX_IDLE;
use crate::relay::chunked::Chunked;

/// Most fields taken in an answer's head.
const MAX_FIELDS: usize = 32;
/// Longest answer head.
const MAX_HEAD: usize = 16 * 1024;
/// A connection idle longer is not used again (servers close idle ones
/// after a minute or so; one closing as it is used would cost a login).
const IDLE_FOR: Duration = Duration::from_secs(20);

/// One connection to WeChat.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Whether nothing is waiting to be read: the server has neither closed
    /// the connection nor sent anything (a TLS alert) since the last answer.
    fn is_quiet(&self) -> bool {
        let tcp = match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        };
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        tcp.poll_peek(&mut cx, &mut buf).is_pending()
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(4096);
        match self {
            Self::Plain(s) => s.read_buf(buf).await,
            Self::Tls(s) => s.read_buf(buf).await,
        }
    }
}

/// The client of one `api_base`.
pub(crate) struct Lean {
    /// `host` or `host:port`, as the `Host` field has it.
    authority: String,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `/sns/jscode2session?appid=...&secret=...&js_code=`: holds the secret.
    target: String,
    connect_timeout: Duration,
    /// Kept connections, each with when it was put back.
    idle: Mutex<Vec<(Conn, Instant)>>,
}

/// How an attempt failed.
enum Fail {
    /// A kept connection took no request: try a new one.
    Stale,
    Error(WechatError),
}

impl Lean {
    /// The client for `url` (`jscode2session` with `appid` and `secret`),
    /// or `None` when the environment names a proxy.
    pub(crate) fn for_url(
        url: &reqwest::Url,
        connect_timeout: Duration,
    ) -> Result<Option<Self>, WechatError> {
        let proxied = [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        if proxied {
            return Ok(None);
        }
        let tls = match url.scheme() {
            "https" => {
                use rustls_platform_verifier::ConfigVerifierExt;
                let config = rustls::ClientConfig::with_platform_verifier()
                    .map_err(|e| WechatError::Setup(format!("TLS: {e}")))?;
                Some(config)
            }
            _ => None,
        };
        Self::with_tls(url, connect_timeout, tls).map(Some)
    }

    /// The client for `url`, over TLS with `tls` when it is `https`.
    pub(crate) fn with_tls(
        url: &reqwest::Url,
        connect_timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, WechatError> {
        let bad = || WechatError::Setup("api_base does not name a host".into());
        let host = url.host_str().ok_or_else(bad)?.to_string();
        let port = url.port_or_known_default().ok_or_else(bad)?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let tls = match tls {
            Some(mut config) if url.scheme() == "https" => {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|_| bad())?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            _ => None,
        };
        let mut target = url.path().to_string();
        target.push('?');
        target.push_str(url.query().unwrap_or(""));
        target.push_str("&js_code=");
        Ok(Self {
            authority,
            host,
            port,
            tls,
            target,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// GET the answer for `code`: its body, at most `max` bytes, if 2xx.
    pub(crate) async fn fetch(&self, code: &str, max: usize) -> Result<Vec<u8>, WechatError> {
        let mut req = Vec::with_capacity(self.target.len().saturating_add(160));
        req.extend_from_slice(b"GET ");
        req.extend_from_slice(self.target.as_bytes());
        for piece in form_urlencoded::byte_serialize(code.as_bytes()) {
            req.extend_from_slice(piece.as_bytes());
        }
        req.extend_from_slice(b"&grant_type=authorization_code HTTP/1.1\r\nHost: ");
        req.extend_from_slice(self.authority.as_bytes());
        req.extend_from_slice(
            concat!(
                "\r\nUser-Agent: wxgate/",
                env!("CARGO_PKG_VERSION"),
                "\r\nAccept: */*\r\n\r\n"
            )
            .as_bytes(),
        );
        if let Some(conn) = self.take_idle() {
            match self.attempt(conn, &req, max, true).await {
                Err(Fail::Stale) => {}
                Err(Fail::Error(e)) => return Err(e),
                Ok(body) => return Ok(body),
            }
        }
        let conn = self.connect().await?;
        match self.attempt(conn, &req, max, false).await {
            Ok(body) => Ok(body),
            Err(Fail::Error(e)) => Err(e),
            Err(Fail::Stale) => Err(transport("the connection took no request")),
        }
    }

    /// The most recently kept connection still fit for a request; the
    /// ones idle too long or no longer quiet are closed.
    fn take_idle(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest are at the front: all of them idle too long go.
        let stale = idle.partition_point(|(_, at)| now.saturating_duration_since(*at) >= IDLE_FOR);
        idle.drain(..stale);
        while let Some((conn, _)) = idle.pop() {
            if conn.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    /// Kept connections still quiet.
    #[cfg(test)]
    fn quiet_kept(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().filter(|(c, _)| c.is_quiet()).count()
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Conn, WechatError> {
        let connect = TcpStream::connect((self.host.trim_matches(['[', ']']), self.port));
        let tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(transport(&format!("connect: {e}"))),
            Err(_) => return Err(WechatError::Timeout),
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), tcp);
                match tokio::time::timeout(self.connect_timeout, handshake).await {
                    Ok(Ok(s)) => Ok(Conn::Tls(Box::new(s))),
                    Ok(Err(e)) => Err(transport(&format!("TLS: {e}"))),
                    Err(_) => Err(WechatError::Timeout),
                }
            }
        }
    }

    /// Send `req` on `conn` and read the answer; the connection is kept if
    /// the answer leaves it usable.
    async fn attempt(
        &self,
        mut conn: Conn,
        req: &[u8],
        max: usize,
        kept: bool,
    ) -> Result<Vec<u8>, Fail> {
        if let Err(e) = conn.write_all(req).await {
            return Err(if kept {
                Fail::Stale
            } else {
                Fail::Error(transport(&e.to_string()))
            });
        }
        let mut buf = BytesMut::with_capacity(4096);
        let (status, head_len, framing, reusable) = loop {
            // Written: whatever happens now, the request is not sent again.
            if read(&mut conn, &mut buf).await? == 0 {
                return Err(Fail::Error(transport(
                    "the connection closed before an answer",
                )));
            }
            if let Some(head) = head(&buf)? {
                break head;
            }
            if buf.len() > MAX_HEAD {
                return Err(Fail::Error(WechatError::BadReply("answer head too large")));
            }
        };
        let mut body = Vec::new();
        let rest = buf.get(head_len..).unwrap_or(&[]);
        let too_large = || Fail::Error(WechatError::BadReply("reply too large"));
        let complete = match framing {
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|_| too_large())?;
                if n > max {
                    return Err(too_large());
                }
                body.extend_from_slice(rest.get(..n.min(rest.len())).unwrap_or(&[]));
                let mut extra = rest.len() > n;
                while body.len() < n {
                    buf.clear();
                    if read(&mut conn, &mut buf).await? == 0 {
                        return Err(Fail::Error(transport("the answer was cut short")));
                    }
                    let take = n.saturating_sub(body.len()).min(buf.len());
                    body.extend_from_slice(buf.get(..take).unwrap_or(&[]));
                    extra |= buf.len() > take;
                }
                !extra
            }
            Framing::Chunked => {
                let mut scan = Chunked::default();
                let mut bytes = rest.to_vec();
                loop {
                    let used = scan
                        .scan_each(&bytes, |d| body.extend_from_slice(d))
                        .map_err(|e| Fail::Error(WechatError::BadReply(e.0)))?;
                    if body.len() > max {
                        return Err(too_large());
                    }
                    if scan.is_done() {
                        break used == bytes.len();
                    }
                    buf.clear();
                    if read(&mut conn, &mut buf).await? == 0 {
                        return Err(Fail::Error(transport("the answer was cut short")));
                    }
                    bytes.clear();
                    bytes.extend_from_slice(&buf);
                }
            }
            Framing::UntilClose => {
                body.extend_from_slice(rest);
                loop {
                    if body.len() > max {
                        return Err(too_large());
                    }
                    buf.clear();
                    if read(&mut conn, &mut buf).await? == 0 {
                        break false;
                    }
                    body.extend_from_slice(&buf);
                }
            }
        };
        if body.len() > max {
            return Err(too_large());
        }
        if reusable && complete {
            self.put_idle(conn);
        }
        if !(200..300).contains(&status) {
            return Err(Fail::Error(WechatError::HttpStatus(status)));
        }
        Ok(body)
    }
}

/// How the answer's body ends.
#[derive(Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// The answer's head, if whole in `buf`: status, length, framing, and
/// whether the connection may carry another request.
fn head(buf: &[u8]) -> Result<Option<(u16, usize, Framing, bool)>, Fail> {
    let bad = |why| Fail::Error(WechatError::BadReply(why));
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad("the answer head does not parse")),
    };
    let status = resp.code.ok_or_else(|| bad("no status"))?;
    if (100..200).contains(&status) {
        return Err(bad("an interim answer"));
    }
    let mut framing = Framing::UntilClose;
    let mut close = resp.version != Some(1);
    for f in resp.headers.iter() {
        let name = f.name.as_bytes();
        let value = f.value.trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(bad("a transfer coding other than chunked"));
            }
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case(b"content-length")
            && !matches!(framing, Framing::Chunked)
        {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad("a bad Content-Length"))?;
            framing = Framing::Length(n);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let reusable = !close && !matches!(framing, Framing::UntilClose);
    Ok(Some((status, len, framing, reusable)))
}

/// Read more of the answer (a failure is no longer a stale connection).
async fn read(conn: &mut Conn, buf: &mut BytesMut) -> Result<usize, Fail> {
    conn.read_buf(buf)
        .await
        .map_err(|e| Fail::Error(transport(&e.to_string())))
}

fn transport(why: &str) -> WechatError {
    WechatError::Transport(why.to_string())
}

#[cfg(test)]
mod tests;
