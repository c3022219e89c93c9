//! OpenTelemetry traces against a real OTLP/HTTP receiver: the test serves
//! `POST /v1/traces` and decodes each export with the `opentelemetry-proto`
//! types, as a collector would. A login (WeChat, the hook, the store) and a
//! proxied request on wxgate's own path, then on Pingora's: spans, their
//! parenthood, the `traceparent` the upstream and the hook get, a trusted
//! caller's trace followed and an untrusted one's ignored, and no token,
//! openid, code or secret in any span.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::{dev, Preamble, Upstream};
use wxgate::dev::example_hook::ExampleHook;

/// A span as received, with its service name.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    span: Span,
}

impl Got {
    fn trace(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    fn id(&self) -> String {
        hex::encode(&self.span.span_id)
    }
    fn parent(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                Value::IntValue(i) => Some(i.to_string()),
                other => Some(format!("{other:?}")),
            })
    }
}

/// An OTLP/HTTP receiver: every span it was sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let this = Self::default();
        let spans = Arc::clone(&this.spans);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let spans = Arc::clone(&spans);
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let spans = Arc::clone(&spans);
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(
                                req.headers()["content-type"].to_str().unwrap(),
                                "application/x-protobuf"
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            let mut got = spans.lock().unwrap();
                            for resource in export.resource_spans {
                                let service = resource
                                    .resource
                                    .iter()
                                    .flat_map(|r| &r.attributes)
                                    .find(|kv| kv.key == "service.name")
                                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                                        Value::StringValue(s) => Some(s.clone()),
                                        _ => None,
                                    })
                                    .unwrap_or_default();
                                for scope in resource.scope_spans {
                                    for span in scope.spans {
                                        got.push(Got {
                                            service: service.clone(),
                                            span,
                                        });
                                    }
                                }
                            }
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        (this, addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Wait for the spans of `trace` until `enough` says they are all there.
    async fn trace(&self, trace: &str, enough: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let mut last = Vec::new();
        let found = support::eventually(Duration::from_secs(10), || {
            last = self
                .spans()
                .into_iter()
                .filter(|g| g.trace() == trace)
                .collect();
            let done = enough(&last);
            async move { done }
        })
        .await;
        assert!(
            found,
            "the spans of trace {trace} never all came: {last:#?}"
        );
        last
    }
}

fn named<'a>(spans: &'a [Got], name: &str) -> Option<&'a Got> {
    spans.iter().find(|g| g.span.name == name)
}

/// The trace id and span id of a `traceparent` value.
fn ids(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    (
        parts[1].to_string(),
        parts[2].to_string(),
        parts[3].to_string(),
    )
}

/// A GET over h2c (HTTP/2 with prior knowledge): status and body.
async fn h2_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::builder().uri(format!("http://gw.test{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (response, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut recv = response.into_body();
    let mut body = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.unwrap();
        let _ = recv.flow_control().release_capacity(data.len());
        body.extend_from_slice(&data);
    }
    (status, String::from_utf8(body).unwrap())
}

/// What the echo upstream received, as `name: value` pairs.
fn echoed(body: &str) -> HashMap<String, Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in v["headers"].as_array().unwrap() {
        out.entry(pair[0].as_str().unwrap().to_string())
            .or_default()
            .push(pair[1].as_str().unwrap().to_string());
    }
    out
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Gateway {
    env: wxgate::dev::DevEnv,
    hook: ExampleHook,
    up: Upstream,
}

async fn gateway(collector: SocketAddr, server: &str, ratio: f64) -> Gateway {
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    let hook = ExampleHook::new(b"traces-hook-secret-0123");
    tokio::spawn(hook.clone().serve(hook_listener));
    let up = Upstream::start("traced").await;
    let preamble = Preamble::new("traces-test").server(server);
    let text = format!(
        r#"{preamble}

[wechat]
appid = "wxtraces000000001"
secret_env = "W"

[wechat.relay]
secret = "traces-relay-secret-0123"
allow = ["/wxa/msg_sec_check"]

[login.hook]
url = "http://{hook_addr}/internal/wxgate"
secret_env = "H"

[metrics]
listen = "127.0.0.1:0"
access_token_secret = "traces-token-secret-0123"

[traces]
endpoint = "http://{collector}/v1/traces"
service_name = "wxgate-under-test"
export_interval = "100ms"
sample_ratio = {ratio}

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let env = dev::with_config(
        &text,
        &[
            ("W", "traces wechat secret"),
            ("H", "traces-hook-secret-0123"),
        ],
    )
    .await;
    Gateway { env, hook, up }
}

/// Nothing secret in a span: no token, openid, unionid, code or secret.
fn assert_no_secret(spans: &[Got], secrets: &[String]) {
    let dump = format!("{spans:?}");
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!dump.contains(s.as_str()), "a span holds {s:?}:\n{dump}");
    }
    assert!(!dump.contains("eyJ"), "a span holds a token:\n{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_traced_through_wechat_the_hook_the_store_and_the_upstream() {
    traced_end_to_end("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_traced_the_same_on_pingoras_path() {
    traced_end_to_end("http1 = \"pingora\"\nhttp2 = \"pingora\"").await;
}

/// A login and a proxied request from a client that is no trusted proxy,
/// every request sampled, on the HTTP/1 path `server` chooses.
async fn traced_end_to_end(server: &str) {
    let (collector, collector_addr) = Collector::start().await;
    let gw = gateway(collector_addr, server, 1.0).await;
    let _ = &gw.up;
    let addr = gw.env.gateway.addr();

    // A login, on wxgate's own path.
    let login = support::login(addr, "tracy.1").await;
    assert_eq!(login.status, 200, "{}", login.text());
    let answer: serde_json::Value = serde_json::from_str(&login.text()).unwrap();
    let token = login.token();
    let root = support::eventually(Duration::from_secs(10), || {
        let found = named(&collector.spans(), "POST /wx/login").is_some();
        async move { found }
    })
    .await;
    assert!(root, "no login span: {:#?}", collector.spans());
    let root = named(&collector.spans(), "POST /wx/login").unwrap().clone();
    assert_eq!(root.service, "wxgate-under-test");
    assert_eq!(root.span.kind, SpanKind::Server as i32);
    assert!(root.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        root.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let spans = collector
        .trace(&root.trace(), |s| {
            named(s, "wechat jscode2session").is_some()
                && named(s, "login hook login").is_some()
                && s.iter().any(|g| g.span.name.starts_with("store "))
        })
        .await;
    for child in spans.iter().filter(|g| g.id() != root.id()) {
        assert_eq!(
            child.parent(),
            root.id(),
            "{} hangs under the login",
            child.span.name
        );
        assert_eq!(child.span.kind, SpanKind::Client as i32);
        assert!(child.span.start_time_unix_nano >= root.span.start_time_unix_nano);
        assert!(child.span.end_time_unix_nano <= root.span.end_time_unix_nano);
    }
    let wechat = named(&spans, "wechat jscode2session").unwrap();
    assert_eq!(wechat.attr("wechat.outcome").as_deref(), Some("ok"));
    // The hook was told of the login's trace.
    let told = gw.hook.traceparents();
    assert_eq!(told.len(), 1, "{told:?}");
    let (trace, parent, flags) = ids(&told[0]);
    assert_eq!(
        (trace.as_str(), parent.as_str(), flags.as_str()),
        (root.trace().as_str(), root.id().as_str(), "01")
    );

    // A proxied request with a made-up trace of its own: ignored, since the
    // client is no trusted proxy; the upstream hears of wxgate's trace.
    let r = support::get(
        addr,
        "/orders/42?secret=1",
        &[
            &format!("Authorization: Bearer {token}"),
            &format!("traceparent: {CLIENT_PARENT}"),
            "tracestate: made=up",
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = echoed(&r.text());
    let sent = &seen["traceparent"];
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (trace, upstream_id, flags) = ids(&sent[0]);
    assert_ne!(trace, CLIENT_TRACE, "the client's trace is not followed");
    assert_eq!(flags, "01");
    assert!(
        !seen.contains_key("tracestate"),
        "the client's tracestate is dropped"
    );
    let spans = collector
        .trace(&trace, |s| {
            named(s, "GET /").is_some() && named(s, "upstream").is_some()
        })
        .await;
    let request = named(&spans, "GET /").unwrap();
    let upstream = named(&spans, "upstream").unwrap();
    assert!(request.span.parent_span_id.is_empty());
    assert_eq!(upstream.parent(), request.id());
    assert_eq!(upstream.id(), upstream_id, "the upstream was told its span");
    assert_eq!(request.attr("http.route").as_deref(), Some("/"));
    assert_eq!(request.attr("wxgate.auth").as_deref(), Some("ok"));
    assert_eq!(
        request.attr("wxgate.user").map(|u| u.len()),
        Some(16),
        "the keyed user hash"
    );
    assert_eq!(
        upstream.attr("http.response.status_code").as_deref(),
        Some("200")
    );

    // The same over HTTP/2: the client's trace is dropped there too.
    let auth = format!("Bearer {token}");
    let (status, body) = h2_get(
        addr,
        "/h2",
        &[
            ("authorization", &auth),
            ("traceparent", CLIENT_PARENT),
            ("tracestate", "made=up"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = echoed(&body);
    let (trace, upstream_id, _) = ids(&seen["traceparent"][0]);
    assert_ne!(
        trace, CLIENT_TRACE,
        "HTTP/2: the client's trace is not followed"
    );
    assert!(!seen.contains_key("tracestate"));
    let spans = collector
        .trace(&trace, |s| {
            named(s, "GET /").is_some() && named(s, "upstream").is_some()
        })
        .await;
    assert_eq!(named(&spans, "upstream").unwrap().id(), upstream_id);

    let mut secrets = vec![
        token,
        "tracy.1".to_string(),
        "traces wechat secret".to_string(),
        "traces-hook-secret-0123".to_string(),
        support::JWT_SECRET.to_string(),
        "orders/42".to_string(),
        "secret=1".to_string(),
    ];
    for key in ["openid", "unionid", "refresh_token"] {
        secrets.push(answer[key].as_str().unwrap_or_default().to_string());
    }
    assert_no_secret(&collector.spans(), &secrets);
    // The exports are counted (`wxgate dev` opens the internal listener).
    let internal = gw.env.gateway.metrics_addr().unwrap();
    let text = support::get(internal, "/metrics", &[]).await.text();
    let exported = text
        .lines()
        .find(|l| l.starts_with("wxgate_trace_spans_exported_total{outcome=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(exported >= 6, "{text}");
    dev::stop(gw.env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_trace_is_followed_on_pingoras_path_and_propagated_unsampled() {
    let (collector, collector_addr) = Collector::start().await;
    // Nothing sampled by ratio; the client is a trusted proxy; Pingora serves.
    let gw = gateway(
        collector_addr,
        "trusted_proxies = [\"127.0.0.1/32\"]\nhttp1 = \"pingora\"",
        0.0,
    )
    .await;
    let addr = gw.env.gateway.addr();
    let token = support::login(addr, "trusty.1").await.token();

    // The proxy's sampled trace: followed.
    let r = support::get(
        addr,
        "/x",
        &[
            &format!("Authorization: Bearer {token}"),
            &format!("traceparent: {CLIENT_PARENT}"),
            "tracestate: vendor=kept",
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = echoed(&r.text());
    let (trace, upstream_id, flags) = ids(&seen["traceparent"][0]);
    assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "01"));
    assert_eq!(seen["tracestate"], vec!["vendor=kept".to_string()]);
    let spans = collector
        .trace(CLIENT_TRACE, |s| {
            named(s, "GET /").is_some() && named(s, "upstream").is_some()
        })
        .await;
    let request = named(&spans, "GET /").unwrap();
    assert_eq!(
        request.parent(),
        "00f067aa0ba902b7",
        "under the proxy's span"
    );
    assert_eq!(named(&spans, "upstream").unwrap().id(), upstream_id);

    // A login that the proxy sampled, on Pingora's path this time.
    let r = support::login_with(
        addr,
        "trusty.2",
        &[&format!(
            "traceparent: {}",
            CLIENT_PARENT.replace("4736", "4737")
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    let other = CLIENT_TRACE.replace("4736", "4737");
    let spans = collector
        .trace(&other, |s| {
            named(s, "POST /wx/login").is_some() && named(s, "wechat jscode2session").is_some()
        })
        .await;
    let login = named(&spans, "POST /wx/login").unwrap();
    assert_eq!(
        named(&spans, "wechat jscode2session").unwrap().parent(),
        login.id()
    );

    // A backend's call through the relay, in its own trace: a span for it
    // and one for each WeChat call it made.
    let internal = gw.env.gateway.metrics_addr().unwrap();
    let backend = CLIENT_PARENT.replace("4736", "4739");
    let r = support::post_json(
        internal,
        "/wxa/msg_sec_check",
        &serde_json::json!({"content": "hello", "version": 2, "scene": 1, "openid": "o-x"}),
        &[
            "Authorization: Bearer traces-relay-secret-0123",
            &format!("traceparent: {backend}"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let relayed = CLIENT_TRACE.replace("4736", "4739");
    let spans = collector
        .trace(&relayed, |s| {
            named(s, "POST /wxa/msg_sec_check").is_some()
                && named(s, "wechat /wxa/msg_sec_check").is_some()
                && named(s, "wechat stable_token").is_some()
        })
        .await;
    let call = named(&spans, "POST /wxa/msg_sec_check").unwrap();
    assert_eq!(
        call.parent(),
        "00f067aa0ba902b7",
        "under the backend's span"
    );
    assert_eq!(
        named(&spans, "wechat /wxa/msg_sec_check").unwrap().parent(),
        call.id()
    );
    assert_eq!(
        named(&spans, "wechat stable_token").unwrap().parent(),
        call.id()
    );

    // A backend asking for the access token, in its trace.
    let asked = CLIENT_PARENT.replace("4736", "473a");
    let r = support::get(
        internal,
        "/internal/wechat/access_token",
        &[
            "Authorization: Bearer traces-token-secret-0123",
            &format!("traceparent: {asked}"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Without the secret, no trace of the caller's choosing.
    let guessed = CLIENT_PARENT.replace("4736", "473b");
    let r = support::get(
        internal,
        "/internal/wechat/access_token",
        &[&format!("traceparent: {guessed}")],
    )
    .await;
    assert_eq!(r.status, 401);
    let spans = collector
        .trace(&CLIENT_TRACE.replace("4736", "473a"), |s| {
            named(s, "GET /internal/wechat/access_token").is_some()
        })
        .await;
    assert_eq!(
        named(&spans, "GET /internal/wechat/access_token")
            .unwrap()
            .attr("http.response.status_code")
            .as_deref(),
        Some("200")
    );

    // No trace sent, ratio 0: nothing recorded, but the upstream still
    // hears of the request's (unsampled) trace.
    let before = collector.spans().len();
    let r = support::get(addr, "/y", &[&format!("Authorization: Bearer {token}")]).await;
    assert_eq!(r.status, 200);
    let (trace, _, flags) = ids(&echoed(&r.text())["traceparent"][0]);
    assert_eq!(flags, "00");
    assert_ne!(trace, CLIENT_TRACE);
    // Proof that nothing more comes: a sampled request after it arrives
    // alone.
    let r = support::get(
        addr,
        "/z",
        &[
            &format!("Authorization: Bearer {token}"),
            &format!("traceparent: {}", CLIENT_PARENT.replace("4736", "4738")),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let last = CLIENT_TRACE.replace("4736", "4738");
    collector
        .trace(&last, |s| {
            named(s, "GET /").is_some() && named(s, "upstream").is_some()
        })
        .await;
    let guessed = CLIENT_TRACE.replace("4736", "473b");
    assert!(
        collector.spans().iter().all(|g| g.trace() != guessed),
        "a caller without the secret named its trace"
    );
    let after: Vec<Got> = collector.spans().into_iter().skip(before).collect();
    assert!(
        after.iter().all(|g| g.trace() == last),
        "only the sampled request was recorded: {after:#?}"
    );
    dev::stop(gw.env).await;
}
