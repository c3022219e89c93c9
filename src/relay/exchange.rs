//! One request and its response between the client and an upstream, on
//! wxgate's own HTTP/1 path: the upstream connection (idle or new, another
//! upstream when a connect fails, a new connection once when an idle one
//! turns out closed), the request out, the response head read and rewritten,
//! the body relayed by its framing. The client is an HTTP/1 connection or
//! an HTTP/2 stream ([`Downstream`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pingora_core::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::Chunked;
use super::downstream::{Downstream, Head as ClientHead};
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
    out: ClientHead,
    meta: Meta,
}

/// What the exchange needs of the response head.
#[derive(Clone, Copy)]
struct Meta {
    framing: Framing,
    reusable: bool,
    status: u16,
    len: usize,
    keep_alive: bool,
}

/// Forward the request on `forward`'s route and relay the answer.
pub(super) async fn forward(
    client: &mut Downstream<'_>,
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
        client.enter(Phase::Open);
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        let head = match read_head(&mut up, &mut rbuf, timeout, &req, reused, client).await {
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
        let meta = head.meta;
        let (relayed, bytes) = relay_body(client, &mut up, &mut rbuf, head, timeout).await;
        let sent = relayed.is_some() && client.finish().await;
        if sent && relayed == Some(true) && meta.reusable {
            upstream.put_idle(addr, up);
        }
        client.enter(Phase::AwaitRequest);
        return Exchanged {
            done: Done {
                status: meta.status,
                bytes,
                peer: Some(addr),
                took,
                keep_alive: sent && meta.keep_alive,
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
    client: &mut Downstream<'_>,
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
        let Some(n) = client
            .read_body(chunk.get_mut(..want).unwrap_or(&mut []))
            .await
        else {
            return Err(Fail::Client);
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
    client: &Downstream<'_>,
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
                    let Some(out) = client.head(&r, req.request_id, keep_alive) else {
                        tracing::debug!("upstream response field refused");
                        return Err(Fail::Upstream(ApiError::UpstreamUnavailable));
                    };
                    let meta = Meta {
                        framing: r.framing,
                        reusable: r.reusable,
                        status: r.status,
                        len: r.len,
                        keep_alive,
                    };
                    return Ok(Head { out, meta });
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
    client: &mut Downstream<'_>,
    up: &mut TcpStream,
    rbuf: &mut BytesMut,
    head: Head,
    timeout: Duration,
) -> (Option<bool>, usize) {
    let Head { out, meta } = head;
    rbuf.advance(meta.len);
    // The head and what came with it go out together (buffered).
    let mut sent = 0usize;
    match meta.framing {
        Framing::Empty => {
            let clean = rbuf.is_empty();
            let ok = client.write_head(out, &[], true).await;
            (ok.then_some(clean), 0)
        }
        Framing::Length(n) => {
            let first = usize::try_from(n).map_or(rbuf.len(), |n| n.min(rbuf.len()));
            let mut clean = rbuf.len() == first;
            let mut left = n.saturating_sub(first as u64);
            let body = rbuf.get(..first).unwrap_or(&[]);
            if !client.write_head(out, body, left == 0).await {
                return (None, first);
            }
            sent = sent.saturating_add(first);
            while left > 0 {
                rbuf.clear();
                if !read_more(up, rbuf, timeout).await {
                    return (None, sent);
                }
                let take = usize::try_from(left).map_or(rbuf.len(), |l| l.min(rbuf.len()));
                clean &= take == rbuf.len();
                left = left.saturating_sub(take as u64);
                if !client
                    .write_body(rbuf.get(..take).unwrap_or(&[]), left == 0)
                    .await
                {
                    return (None, sent);
                }
                sent = sent.saturating_add(take);
            }
            (Some(clean), sent)
        }
        Framing::Chunked => {
            let mut scan = Chunked::default();
            let mut out = Some(out);
            // The body decoded, for a client that frames its own data.
            let decode = client.decodes_chunked();
            let mut decoded = Vec::new();
            loop {
                let n = match scan.scan_each(rbuf, |d| {
                    if decode {
                        decoded.extend_from_slice(d);
                    }
                }) {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(why = e.0, "upstream chunked body refused");
                        return (None, sent);
                    }
                };
                let body = if decode {
                    &decoded[..]
                } else {
                    rbuf.get(..n).unwrap_or(&[])
                };
                let end = scan.is_done();
                let ok = match out.take() {
                    Some(head) => client.write_head(head, body, end).await,
                    None => client.write_body(body, end).await,
                };
                if !ok {
                    return (None, sent);
                }
                sent = sent.saturating_add(body.len());
                if end {
                    return (Some(n == rbuf.len()), sent);
                }
                decoded.clear();
                rbuf.clear();
                if !read_more(up, rbuf, timeout).await {
                    return (None, sent);
                }
            }
        }
        Framing::UntilClose => {
            sent = rbuf.len();
            if !client.write_head(out, rbuf, false).await {
                return (None, sent);
            }
            loop {
                rbuf.clear();
                rbuf.reserve(READ_CHUNK);
                match bounded(timeout, up.read_buf(rbuf)).await {
                    Some(Ok(0)) => return (Some(false), sent),
                    Some(Ok(n)) => {
                        if !client.write_body(rbuf, false).await {
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
