//! One request and its response between the client and an upstream, on
//! wxgate's own HTTP/1 path: the upstream connection (idle or new, another
//! upstream when a connect fails, a new connection once when an idle one
//! turns out closed), the request out, the response head read and rewritten,
//! the body relayed by its framing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pingora_core::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::Chunked;
use super::head::{may_be_complete, MAX_FIELDS};
use super::response::{self, Framing, ReadHead};
use crate::conn::deadline::{Deadlined, Phase};
use crate::error::ApiError;
use crate::proxy::Forward;
use crate::state::GatewayState;

/// The longest response head taken from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What a read from the upstream asks for at least.
const READ_CHUNK: usize = 8 * 1024;

/// The most of a request body held at once on its way upstream.
const BODY_CHUNK: usize = 16 * 1024;

/// The request, as the exchange needs it.
pub(super) struct Request<'a> {
    /// The upstream request head.
    pub head: &'a [u8],
    /// The body bytes read with the head.
    pub body: &'a [u8],
    /// Body bytes still to read from the client.
    pub to_stream: u64,
    pub head_request: bool,
    pub request_id: &'a [u8],
    /// The client connection may stay open after this request.
    pub keep_alive: bool,
    pub started: Instant,
}

/// How the exchange ended.
pub(super) struct Exchanged {
    pub done: Done,
    /// Nothing was written to the client: answer this error (and keep the
    /// connection if `done.keep_alive` says its request was read whole).
    pub refused: Option<ApiError>,
}

/// Why sending or reading failed.
enum Fail {
    /// The client went away or was too slow: nothing more is written to it.
    Client,
    /// The upstream failed: the client hears this.
    Upstream(ApiError),
    /// A reused connection was found closed before any answer.
    Stale,
}

/// A response head, rewritten for the client.
struct Head {
    out: Vec<u8>,
    framing: Framing,
    reusable: bool,
    status: u16,
    len: usize,
    keep_alive: bool,
}

/// Forward the request on `forward`'s route and relay the answer.
pub(super) async fn forward(
    client: &mut Stream,
    state: &GatewayState,
    forward: &Forward,
    req: Request<'_>,
) -> Exchanged {
    let upstream = &forward.route.upstream;
    let timeout = upstream.read_timeout();
    let mut failed: Vec<SocketAddr> = Vec::new();
    let upstream_at = Instant::now();
    let mut fresh_only = false;
    let refused = |e: ApiError, peer: Option<SocketAddr>, body_read: bool| Exchanged {
        done: Done {
            peer,
            keep_alive: req.keep_alive && body_read,
            ..Done::default()
        },
        refused: Some(e),
    };
    loop {
        let Some(addr) = upstream.pick_addr(&failed) else {
            return refused(ApiError::UpstreamUnavailable, None, req.to_stream == 0);
        };
        let idle = if fresh_only {
            None
        } else {
            upstream.take_idle(addr)
        };
        let reused = idle.is_some();
        let mut up = match idle {
            Some(c) => c,
            None => match connect(addr, upstream.connect_timeout()).await {
                Ok(c) => c,
                Err(e) => {
                    state.metrics().connect_failed(&addr.to_string());
                    failed.push(addr);
                    if failed.len() < upstream.count {
                        continue;
                    }
                    return refused(e, None, req.to_stream == 0);
                }
            },
        };
        match send(&mut up, client, &req, timeout, reused).await {
            Ok(()) => {}
            Err(Fail::Client) => return gone(Some(addr)),
            Err(Fail::Stale) => {
                fresh_only = true;
                continue;
            }
            Err(Fail::Upstream(e)) => return refused(e, Some(addr), false),
        }
        enter(client, Phase::Open);
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let head = match read_head(&mut up, &mut rbuf, timeout, &req, reused).await {
            Ok(h) => h,
            Err(Fail::Stale) => {
                fresh_only = true;
                continue;
            }
            Err(Fail::Upstream(e)) => return refused(e, Some(addr), true),
            Err(Fail::Client) => return gone(Some(addr)),
        };
        let now = Instant::now();
        let took = Some((
            now.saturating_duration_since(upstream_at),
            now.saturating_duration_since(req.started),
        ));
        let (relayed, bytes) = relay_body(client, &mut up, &mut rbuf, &head, timeout).await;
        let sent = relayed.is_some() && client.flush().await.is_ok();
        if sent && relayed == Some(true) && head.reusable {
            upstream.put_idle(addr, up);
        }
        enter(client, Phase::AwaitRequest);
        return Exchanged {
            done: Done {
                status: head.status,
                bytes,
                peer: Some(addr),
                took,
                keep_alive: sent && head.keep_alive,
            },
            refused: None,
        };
    }
}

/// The client is gone: nothing to answer, the connection closes.
fn gone(peer: Option<SocketAddr>) -> Exchanged {
    Exchanged {
        done: Done {
            peer,
            ..Done::default()
        },
        refused: None,
    }
}

/// Write the head and the body read with it (one vectored write), then the
/// rest of the body as it comes from the client.
async fn send(
    up: &mut TcpStream,
    client: &mut Stream,
    req: &Request<'_>,
    timeout: Duration,
    reused: bool,
) -> Result<(), Fail> {
    let mut first = Buf::chain(req.head, req.body);
    match bounded(timeout, up.write_all_buf(&mut first)).await {
        Some(Ok(())) => {}
        // An idle connection closed by the upstream fails here or at the
        // first read: once more on a new one, if nothing is lost by it.
        Some(Err(_)) if reused && req.to_stream == 0 => return Err(Fail::Stale),
        Some(Err(_)) => return Err(Fail::Upstream(ApiError::UpstreamUnavailable)),
        None => return Err(Fail::Upstream(ApiError::UpstreamTimeout)),
    }
    let mut left = req.to_stream;
    if left == 0 {
        return Ok(());
    }
    let size = usize::try_from(left).map_or(BODY_CHUNK, |l| l.min(BODY_CHUNK));
    let mut chunk = vec![0u8; size];
    while left > 0 {
        let want = usize::try_from(left).map_or(size, |l| l.min(size));
        let n = match client.read(chunk.get_mut(..want).unwrap_or(&mut [])).await {
            Ok(0) | Err(_) => return Err(Fail::Client),
            Ok(n) => n,
        };
        let data = chunk.get(..n).unwrap_or(&[]);
        match bounded(timeout, up.write_all(data)).await {
            Some(Ok(())) => {}
            Some(Err(_)) => return Err(Fail::Upstream(ApiError::UpstreamUnavailable)),
            None => return Err(Fail::Upstream(ApiError::UpstreamTimeout)),
        }
        left = left.saturating_sub(n as u64);
    }
    Ok(())
}

/// Read the upstream's response head (skipping interim ones) and write the
/// client's.
async fn read_head(
    up: &mut TcpStream,
    rbuf: &mut BytesMut,
    timeout: Duration,
    req: &Request<'_>,
    reused: bool,
) -> Result<Head, Fail> {
    let mut answered = false;
    loop {
        if !rbuf.is_empty() && may_be_complete(rbuf) {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let interim = match response::parse(rbuf, &mut fields, req.head_request) {
                ReadHead::Partial => None,
                ReadHead::Interim(n) => Some(n),
                ReadHead::Bad(why) => {
                    tracing::debug!(why, "upstream response refused");
                    return Err(Fail::Upstream(ApiError::UpstreamUnavailable));
                }
                ReadHead::Final(r) => {
                    let keep_alive = req.keep_alive && r.framing != Framing::UntilClose;
                    let mut out = Vec::with_capacity(r.len.saturating_add(128));
                    r.write_head(req.request_id, date().as_bytes(), keep_alive, &mut out);
                    return Ok(Head {
                        out,
                        framing: r.framing,
                        reusable: r.reusable,
                        status: r.status,
                        len: r.len,
                        keep_alive,
                    });
                }
            };
            if let Some(n) = interim {
                rbuf.advance(n);
                answered = true;
                continue;
            }
        }
        if rbuf.len() >= MAX_RESPONSE_HEAD {
            return Err(Fail::Upstream(ApiError::UpstreamUnavailable));
        }
        rbuf.reserve(READ_CHUNK);
        match bounded(timeout, up.read_buf(rbuf)).await {
            Some(Ok(0)) | Some(Err(_)) => {
                let nothing = rbuf.is_empty() && !answered;
                return Err(if reused && nothing && req.to_stream == 0 {
                    Fail::Stale
                } else {
                    Fail::Upstream(ApiError::UpstreamUnavailable)
                });
            }
            Some(Ok(_)) => {}
            None => return Err(Fail::Upstream(ApiError::UpstreamTimeout)),
        }
    }
}

/// Relay the body by its framing. `Some(true)`: complete, and nothing
/// followed it; `Some(false)`: complete, the upstream connection is not
/// reused; `None`: cut short (the client connection closes). And the
/// body bytes written.
async fn relay_body(
    client: &mut Stream,
    up: &mut TcpStream,
    rbuf: &mut BytesMut,
    head: &Head,
    timeout: Duration,
) -> (Option<bool>, usize) {
    rbuf.advance(head.len);
    // The head and what came with it go out together (buffered).
    let mut sent = 0usize;
    match head.framing {
        Framing::Empty => {
            let clean = rbuf.is_empty();
            let ok = write(client, &head.out, &[]).await;
            (ok.then_some(clean), 0)
        }
        Framing::Length(n) => {
            let first = usize::try_from(n).map_or(rbuf.len(), |n| n.min(rbuf.len()));
            let mut clean = rbuf.len() == first;
            if !write(client, &head.out, rbuf.get(..first).unwrap_or(&[])).await {
                return (None, first);
            }
            sent = sent.saturating_add(first);
            let mut left = n.saturating_sub(first as u64);
            while left > 0 {
                rbuf.clear();
                if !read_more(up, rbuf, timeout).await {
                    return (None, sent);
                }
                let take = usize::try_from(left).map_or(rbuf.len(), |l| l.min(rbuf.len()));
                clean &= take == rbuf.len();
                if !write(client, rbuf.get(..take).unwrap_or(&[]), &[]).await {
                    return (None, sent);
                }
                sent = sent.saturating_add(take);
                left = left.saturating_sub(take as u64);
            }
            (Some(clean), sent)
        }
        Framing::Chunked => {
            let mut scan = Chunked::default();
            let mut data: &[u8] = &head.out;
            loop {
                let n = match scan.scan(rbuf) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(why = e.0, "upstream chunked body refused");
                        return (None, sent);
                    }
                };
                let body = rbuf.get(..n).unwrap_or(&[]);
                if !write(client, data, body).await {
                    return (None, sent);
                }
                data = &[];
                sent = sent.saturating_add(n);
                if scan.is_done() {
                    return (Some(n == rbuf.len()), sent);
                }
                rbuf.clear();
                if !read_more(up, rbuf, timeout).await {
                    return (None, sent);
                }
            }
        }
        Framing::UntilClose => {
            sent = rbuf.len();
            if !write(client, &head.out, rbuf).await {
                return (None, sent);
            }
            loop {
                rbuf.clear();
                rbuf.reserve(READ_CHUNK);
                match bounded(timeout, up.read_buf(rbuf)).await {
                    Some(Ok(0)) => return (Some(false), sent),
                    Some(Ok(n)) => {
                        if !write(client, rbuf, &[]).await {
                            return (None, sent);
                        }
                        sent = sent.saturating_add(n);
                    }
                    _ => return (None, sent),
                }
            }
        }
    }
}

/// Read more of the body from the upstream; `false` when it ended or failed.
async fn read_more(up: &mut TcpStream, rbuf: &mut BytesMut, timeout: Duration) -> bool {
    rbuf.reserve(READ_CHUNK);
    matches!(
        bounded(timeout, up.read_buf(rbuf)).await,
        Some(Ok(n)) if n > 0
    )
}

/// Write to the client (buffered: sent at the flush or when the buffer fills).
async fn write(client: &mut Stream, a: &[u8], b: &[u8]) -> bool {
    if client.write_all(a).await.is_err() {
        return false;
    }
    b.is_empty() || client.write_all(b).await.is_ok()
}

/// How a request ended, for metrics and the access log.
#[derive(Default)]
pub(super) struct Done {
    pub status: u16,
    pub bytes: usize,
    pub peer: Option<SocketAddr>,
    /// From choosing an upstream, and from the head, to the response head.
    pub took: Option<(Duration, Duration)>,
    pub keep_alive: bool,
}

/// The `Date` value, cached per second (Pingora's).
pub(super) fn date() -> http::HeaderValue {
    pingora_core::protocols::http::date::get_cached_date()
}

/// Tell the connection's read deadlines where the request stands.
pub(super) fn enter(stream: &Stream, phase: Phase) {
    if let Some(d) = Deadlined::of(stream) {
        d.enter(phase);
    }
}

/// Connect to an upstream within `timeout`.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ApiError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(_)) => Err(ApiError::UpstreamUnavailable),
        Err(_) => Err(ApiError::UpstreamTimeout),
    }
}

/// `fut` within `limit` (`None`: it took longer). Polled once first, so
/// that what is ready at once (a write into a socket with room, a read of
/// bytes already there) sets no timer.
async fn bounded<F: std::future::Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => tokio::time::timeout(limit, fut).await.ok(),
    }
}
