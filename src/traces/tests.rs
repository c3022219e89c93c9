use super::*;

fn traces(ratio: f64) -> Traces {
    Traces::start(&TracesConfig {
        // Nothing listens there: nothing is exported in these tests.
        endpoint: "http://127.0.0.1:9/v1/traces".into(),
        sample_ratio: ratio,
        service_name: "wxgate-test".into(),
        max_queue: 16,
        export_interval: Duration::from_secs(60),
        timeout: Duration::from_millis(100),
    })
    .unwrap()
}

impl Traces {
    fn request_now(&self, tp: Option<&[u8]>, ts: Option<&[u8]>) -> RequestSpan {
        self.request(tp, ts, std::time::Instant::now())
    }
}

const PARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_trusted_sampled_parent_is_followed_whatever_the_ratio() {
    let t = traces(0.0);
    let span = t.request_now(Some(PARENT), Some(b"vendor=x"));
    assert!(span.sampled());
    assert_eq!(
        span.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let told = span.context().span().span_context().clone();
    assert_ne!(
        told.span_id().to_string(),
        "00f067aa0ba902b7",
        "a span of its own"
    );
    span.finish(&Finish {
        method: "GET",
        route: "/",
        status: 200,
        auth: None,
        user: None,
        request_id: "r",
    });
}

#[test]
fn an_unsampled_parent_is_not_traced_but_its_trace_goes_on() {
    let t = traces(1.0);
    let mut span = t.request_now(
        Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        None,
    );
    assert!(!span.sampled());
    let told = span.upstream(&t, None);
    let text = std::str::from_utf8(told.traceparent.as_bytes()).unwrap();
    assert!(
        text.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && text.ends_with("-00"),
        "{text}"
    );
    assert!(told.tracestate.is_none());
}

#[test]
fn a_malformed_parent_starts_a_trace_of_its_own() {
    let t = traces(1.0);
    for bad in [
        &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        b"not a traceparent",
        b"\xff\xfe",
    ] {
        let span = t.request_now(Some(bad), None);
        assert!(span.sampled(), "ratio 1");
        assert_ne!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad:?}"
        );
    }
    assert!(!traces(0.0).request_now(None, None).sampled(), "ratio 0");
}

#[test]
fn the_upstream_is_told_its_own_span_and_the_callers_state() {
    let t = traces(0.0);
    let mut span = t.request_now(Some(PARENT), Some(b"vendor=x"));
    let told = span.upstream(&t, Some("127.0.0.1:8080".parse().unwrap()));
    let text = std::str::from_utf8(told.traceparent.as_bytes()).unwrap();
    assert_eq!(text.len(), 55);
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parts[2], "00f067aa0ba902b7");
    assert_ne!(
        parts[2],
        span.context().span().span_context().span_id().to_string(),
        "the upstream span, not the request's"
    );
    assert_eq!(parts[3], "01");
    assert_eq!(told.tracestate.as_deref(), Some("vendor=x"));
}

#[test]
fn callees_hear_of_the_current_request_only() {
    let t = traces(1.0);
    assert!(current().is_none(), "no current request");
    // Nothing is recorded outside a sampled request, and nothing is built.
    t.record(|| unreachable!(), Duration::ZERO, || unreachable!(), None);
    let span = t.request_now(None, None);
    let _in = span.context().attach();
    let told = current().expect("in a request");
    assert!(std::str::from_utf8(told.traceparent.as_bytes())
        .unwrap()
        .contains(&span.trace_id().to_string()));
    t.record(
        || "wechat jscode2session".into(),
        Duration::from_millis(3),
        Vec::new,
        Some("errcode"),
    );
}

#[test]
fn span_names_take_standard_methods_only() {
    assert_eq!(method_name("GET"), "GET");
    assert_eq!(method_name("FOOBARBAZ"), "_OTHER");
    assert_eq!(method_name("get"), "_OTHER");
}

#[test]
fn a_tracestate_is_passed_on_only_in_printable_ascii() {
    let state = |v: &str| TraceState::from_key_value([("vendor", v)]).unwrap();
    let sc = |ts| {
        SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            TraceFlags::SAMPLED,
            true,
            ts,
        )
    };
    assert_eq!(
        propagated(&sc(state("kept"))).tracestate.as_deref(),
        Some("vendor=kept")
    );
    assert!(propagated(&sc(state("tab\there"))).tracestate.is_none());
    assert!(propagated(&sc(TraceState::default())).tracestate.is_none());
    let told = propagated(&sc(TraceState::default()));
    assert_eq!(
        told.traceparent.as_bytes(),
        b"00-01010101010101010101010101010101-0202020202020202-01"
    );
}
