//! An echo upstream: answers every request with a JSON description of it.
//!
//! `wxgate dev` puts it behind the gateway so a developer sees exactly what a
//! backend receives (the injected `x-openid`, the stripped spoofed headers),
//! and the integration tests use it to assert the same thing: headers come
//! back as an ordered list of every occurrence, so a duplicated identity
//! header cannot hide.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;

use crate::http1::{response, serve_http1};

struct Inner {
    name: String,
    requests: AtomicUsize,
}

/// The echo upstream. Cloning gives another handle on the same counters.
#[derive(Clone)]
pub struct EchoUpstream {
    inner: Arc<Inner>,
}

impl EchoUpstream {
    /// An echo server that reports itself as `name` (to tell upstreams apart).
    pub fn new(name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                requests: AtomicUsize::new(0),
            }),
        }
    }

    /// Serve on an already-bound listener; see `http1::serve_http1` for lifetime.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        serve_http1(listener, move |req| {
            let this = self.clone();
            async move { this.handle(req).await }
        })
        .await
    }

    /// How many requests have been answered so far.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body_bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes().len(),
            Err(e) => {
                tracing::debug!(error = %e, "echo: could not read the request body");
                return response(400, "text/plain", "unreadable body");
            }
        };
        self.inner.requests.fetch_add(1, Ordering::SeqCst);
        let headers: Vec<[String; 2]> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                [
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                ]
            })
            .collect();
        let echo = serde_json::json!({
            "upstream": self.inner.name,
            "method": parts.method.as_str(),
            "path": parts.uri.to_string(),
            "headers": headers,
            "body_bytes": body_bytes,
        });
        match serde_json::to_vec(&echo) {
            Ok(json) => response(200, "application/json", json),
            Err(_) => response(500, "text/plain", "echo: serialisation failed"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(
        name: &str,
    ) -> (
        EchoUpstream,
        String,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = EchoUpstream::new(name);
        let task = tokio::spawn(echo.clone().serve(listener));
        (echo, format!("http://{addr}"), task)
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn echoes_method_target_headers_and_body_size() {
        let (echo, base, _task) = start("app").await;
        let v: Value = client()
            .post(format!("{base}/raw/request/target?with=query&x=%2F"))
            .header("x-openid", "spoofed-1")
            .header("x-openid", "spoofed-2")
            .header("x-bytes", &b"caf\xc3\xa9 \xff"[..])
            .body("hello world")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["upstream"], "app");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/raw/request/target?with=query&x=%2F");
        assert_eq!(v["body_bytes"], 11);
        let headers = v["headers"].as_array().unwrap();
        let openids: Vec<&Value> = headers
            .iter()
            .filter(|h| h[0] == "x-openid")
            .map(|h| &h[1])
            .collect();
        assert_eq!(openids, ["spoofed-1", "spoofed-2"]);
        assert!(headers.iter().any(|h| h[0] == "host"));
        assert!(headers
            .iter()
            .any(|h| h[0] == "x-bytes" && h[1] == "café \u{fffd}"));
        assert_eq!(echo.requests(), 1);
    }

    #[tokio::test]
    async fn no_special_paths_and_counts_requests() {
        let (echo, base, _task) = start("b").await;
        let c = client();
        for path in ["/__health", "/", "/wx/login"] {
            let res = c.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-type"], "application/json", "{path}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["path"], path);
            assert_eq!(v["method"], "GET");
            assert_eq!(v["body_bytes"], 0);
        }
        assert_eq!(echo.requests(), 3);
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let (echo, base, _task) = start("k").await;
        let addr = base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
                  POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        assert!(out.contains(r#""path":"/one""#));
        assert!(out.contains(r#""path":"/two""#) && out.contains(r#""body_bytes":3"#));
        assert_eq!(echo.requests(), 2);
    }

    #[tokio::test]
    async fn aborting_the_server_closes_pooled_connections() {
        let (_echo, base, task) = start("gone").await;
        let c = client();
        assert!(c.get(format!("{base}/a")).send().await.is_ok());
        task.abort();
        let _ = task.await;
        // The pooled connection died with the server; a new one is refused.
        assert!(c.get(format!("{base}/b")).send().await.is_err());
    }
}
