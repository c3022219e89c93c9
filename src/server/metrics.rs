//! The metrics listener: `GET /metrics` in Prometheus' text format, on an
//! address of its own (`[metrics] listen`), never on a public listener.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::{Method, Request};
use tokio::net::TcpListener;

use crate::http1::{response, serve_http1};
use crate::state::GatewayState;

/// The content type of Prometheus' text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve `/metrics` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, state: Arc<ArcSwap<GatewayState>>) {
    let result = serve_http1(listener, move |req: Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => {
                    response(200, TEXT_FORMAT, state.load().render_metrics())
                }
                (_, "/metrics") => response(405, "text/plain", "GET only\n"),
                _ => response(404, "text/plain", "metrics are at /metrics\n"),
            }
        }
    })
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}
