//! A small HTTP/1.1 server for wxgate's side listeners: the internal
//! listener ([`serve_bounded`]: connection caps and deadlines), and the mock
//! WeChat and echo upstream of `wxgate dev` ([`serve_http1`]). (The
//! gateway's own listeners are Pingora's.)

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::server::accept::Listener;
use crate::server::admission::Connections;

mod deadline;

pub(crate) use deadline::Deadlines;
use deadline::{Answering, Deadlined};

/// The most a request's head may take in memory (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serve HTTP/1.1 (keep-alive on) on `listener`, one task per connection.
///
/// Runs until the returned future is dropped (or its task aborted): the
/// connection tasks live in a [`JoinSet`] owned by the future, so they stop
/// with it, pooled keep-alive connections included — a test that drops a
/// server really has no server any more. Returns `Err` only for an accept
/// error that is not about a single connection (e.g. out of descriptors).
pub(crate) async fn serve_http1<H, F>(listener: TcpListener, handler: H) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => return Err(e),
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "dev server connection ended with an error");
            }
        });
    }
}

/// Serve HTTP/1.1 on `listener` as [`serve_http1`] does, bounded: each
/// accepted connection is first admitted by `connections` (over a cap it
/// is closed at once, before anything is read), then served under
/// `deadlines` (see `deadline`), with request heads of at most 16 KiB.
/// Never returns: accepting goes on whatever `accept()` fails with (out of
/// descriptors included, see `server::accept`), until the future is dropped.
pub(crate) async fn serve_bounded<H, F>(
    listener: TcpListener,
    handler: H,
    connections: Arc<Connections>,
    deadlines: Deadlines,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut listener = Listener::new(listener);
    let mut open = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = open.join_next() => continue,
        };
        let Ok(admitted) = connections.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        open.spawn(async move {
            let _admitted = admitted;
            let answering = Arc::new(Answering::default());
            let service = {
                let answering = answering.clone();
                service_fn(move |req| {
                    answering.set(true);
                    let answering = answering.clone();
                    let response = handler(req);
                    async move {
                        let response = response.await;
                        answering.set(false);
                        Ok::<_, Infallible>(response)
                    }
                })
            };
            let stream = Deadlined::new(stream, deadlines, answering);
            if let Err(e) = http1::Builder::new()
                .max_buf_size(MAX_HEAD_BYTES)
                // The deadlines are `Deadlined`'s (hyper's would start before the first byte).
                .header_read_timeout(None)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "internal connection ended with an error");
            }
        });
    }
}

/// Accept errors that concern one connection only; the loop goes on.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A response with a fixed status, content type and body.
pub(crate) fn response(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    res
}
