use std::time::Duration;

use http::Method;

use super::*;

fn metrics() -> Metrics {
    Metrics::new().unwrap_or_else(|e| panic!("{e}"))
}

/// The counters of a config with routes `/api/`, `/public/` and two endpoints.
fn counters(m: &Metrics) -> RouteCounters {
    let endpoints = vec![
        (Endpoint::Healthz, "/healthz".to_string()),
        (Endpoint::Login, "/wx/login".to_string()),
    ];
    m.route_counters(&["/api/", "/public/"], &endpoints)
}

/// The value of the sample of `name` whose labels are exactly `labels`, read
/// from the text exposition as a scraper reads it.
fn sample(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = m.render(|_| {});
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let inner = rest.strip_suffix('}')?;
        let have: Vec<(&str, &str)> = inner
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        let same = have.len() == labels.len() && labels.iter().all(|l| have.contains(l));
        same.then(|| value.parse().ok()).flatten()
    })
}

/// Count one request in `m`, under the routes of [`counters`].
fn count(m: &Metrics, route: RouteLabel, method: &Method, status: u16, auth: Option<AuthOutcome>) {
    m.request(&counters(m), &done(route, method, status, auth));
}

fn done(
    route: RouteLabel,
    method: &Method,
    status: u16,
    auth: Option<AuthOutcome>,
) -> RequestDone<'_> {
    RequestDone {
        route,
        method,
        status,
        auth,
        total: Duration::from_micros(300),
        upstream: Some(Duration::from_micros(200)),
        to_header: Some(Duration::from_micros(250)),
    }
}

#[test]
fn a_request_is_counted_under_its_route_method_and_status_class() {
    let m = metrics();
    count(
        &m,
        RouteLabel::Route(0),
        &Method::GET,
        200,
        Some(AuthOutcome::Ok),
    );
    count(
        &m,
        RouteLabel::Route(0),
        &Method::GET,
        204,
        Some(AuthOutcome::Ok),
    );
    count(
        &m,
        RouteLabel::Route(1),
        &Method::from_bytes(b"PROPFIND").unwrap_or(Method::GET),
        401,
        Some(AuthOutcome::Invalid),
    );
    count(
        &m,
        RouteLabel::Endpoint(Endpoint::Login),
        &Method::POST,
        502,
        None,
    );
    count(&m, RouteLabel::None, &Method::DELETE, 0, None);
    let req = |route, method, status| {
        sample(
            &m,
            "wxgate_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(req("/api/", "GET", "2xx"), Some(2.0));
    assert_eq!(req("/public/", "other", "4xx"), Some(1.0));
    assert_eq!(req("/wx/login", "POST", "5xx"), Some(1.0));
    assert_eq!(req("none", "DELETE", "none"), Some(1.0));
    // Endpoints that are not served keep their name as the label.
    assert_eq!(req("refresh", "POST", "2xx"), Some(0.0));
    assert_eq!(
        sample(&m, "wxgate_auth_total", &[("outcome", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "wxgate_auth_total", &[("outcome", "invalid")]),
        Some(1.0)
    );
}

#[test]
fn the_time_wxgate_adds_is_the_time_to_the_header_less_the_upstreams() {
    let m = metrics();
    count(
        &m,
        RouteLabel::Route(0),
        &Method::GET,
        200,
        Some(AuthOutcome::Ok),
    );
    let text = m.render(|_| {});
    assert!(
        text.contains("wxgate_added_duration_seconds_sum 0.00005"),
        "{text}"
    );
    assert!(
        text.contains("wxgate_upstream_duration_seconds_sum 0.0002"),
        "{text}"
    );
    assert!(
        text.contains("wxgate_request_duration_seconds_count 1"),
        "{text}"
    );
}

#[test]
fn refused_tokens_map_to_their_outcome() {
    assert_eq!(
        AuthOutcome::of_error(&ApiError::TokenMissing),
        AuthOutcome::Missing
    );
    assert_eq!(
        AuthOutcome::of_error(&ApiError::TokenExpired),
        AuthOutcome::Expired
    );
    assert_eq!(
        AuthOutcome::of_error(&ApiError::TokenRevoked),
        AuthOutcome::Revoked
    );
    assert_eq!(
        AuthOutcome::of_error(&ApiError::TokenInvalid),
        AuthOutcome::Invalid
    );
    assert_eq!(
        AuthOutcome::of_error(&ApiError::StoreUnavailable),
        AuthOutcome::Error
    );
    assert_eq!(
        AuthOutcome::of_error(&ApiError::Forbidden),
        AuthOutcome::Forbidden
    );
    assert_eq!(AuthOutcome::Forbidden.label(), "forbidden");
}

#[test]
fn endpoint_outcomes_name_refresh_rotation_reuse_and_local_rate_limits() {
    let m = metrics();
    m.endpoint(Endpoint::Refresh, Ok(()));
    m.endpoint(Endpoint::Refresh, Err(&ApiError::RefreshTokenReused));
    m.endpoint(Endpoint::Refresh, Err(&ApiError::RefreshTokenInvalid));
    m.endpoint(Endpoint::Login, Ok(()));
    m.endpoint(
        Endpoint::Login,
        Err(&ApiError::RateLimited {
            retry_after_secs: 1,
            wechat_errcode: None,
        }),
    );
    m.endpoint(
        Endpoint::Login,
        Err(&ApiError::RateLimited {
            retry_after_secs: 1,
            wechat_errcode: Some(45011),
        }),
    );
    let out = |ep, outcome| {
        sample(
            &m,
            "wxgate_endpoint_outcomes_total",
            &[("endpoint", ep), ("outcome", outcome)],
        )
    };
    assert_eq!(out("refresh", "rotated"), Some(1.0));
    assert_eq!(out("refresh", "reused"), Some(1.0));
    assert_eq!(out("refresh", "invalid"), Some(1.0));
    assert_eq!(out("login", "ok"), Some(1.0));
    assert_eq!(out("login", "rate_limited"), Some(2.0));
    // WeChat's own limit is WeChat's business, not one of ours.
    assert_eq!(
        sample(&m, "wxgate_rate_limited_total", &[("endpoint", "login")]),
        Some(1.0)
    );
}

#[test]
fn counters_kept_elsewhere_follow_their_source_and_never_go_back() {
    let m = metrics();
    let scrape = |dropped, entries| {
        m.render(|g| g.store_map("sessions", entries, 10, dropped, 0));
    };
    scrape(3, 10);
    scrape(5, 10);
    assert_eq!(
        sample(&m, "wxgate_store_dropped_total", &[("kind", "sessions")]),
        Some(5.0)
    );
    scrape(2, 4);
    assert_eq!(
        sample(&m, "wxgate_store_dropped_total", &[("kind", "sessions")]),
        Some(5.0)
    );
    let text = m.render(|_| {});
    assert!(
        text.contains("wxgate_store_entries{kind=\"sessions\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("wxgate_store_capacity{kind=\"sessions\"} 10"),
        "{text}"
    );
}

#[test]
fn wechat_calls_are_counted_by_outcome_and_errcode() {
    let m = metrics();
    m.wechat_call("jscode2session", "ok", None, Duration::from_millis(3));
    m.wechat_call(
        "jscode2session",
        "errcode",
        Some(40029),
        Duration::from_millis(3),
    );
    let text = m.render(|_| {});
    assert!(
        text.contains(
            "wxgate_wechat_requests_total{api=\"jscode2session\",errcode=\"\",outcome=\"ok\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("wxgate_wechat_requests_total{api=\"jscode2session\",errcode=\"40029\",outcome=\"errcode\"} 1"), "{text}");
    assert!(
        text.contains("wxgate_wechat_request_duration_seconds_count{api=\"jscode2session\"} 2"),
        "{text}"
    );
    assert!(text.contains("wxgate_build_info{version=\""), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
}

#[test]
fn a_reloaded_route_keeps_its_count_and_a_new_one_starts_at_zero() {
    let m = metrics();
    let before = m.route_counters(&["/api/"], &[]);
    m.request(
        &before,
        &done(RouteLabel::Route(0), &Method::GET, 200, None),
    );
    let after = m.route_counters(&["/v2/", "/api/"], &[]);
    m.request(&after, &done(RouteLabel::Route(1), &Method::GET, 200, None));
    let get = |route| {
        sample(
            &m,
            "wxgate_requests_total",
            &[("route", route), ("method", "GET"), ("status", "2xx")],
        )
    };
    assert_eq!(get("/api/"), Some(2.0));
    assert_eq!(get("/v2/"), Some(0.0));
    m.reload("ok");
    assert_eq!(
        sample(&m, "wxgate_config_reloads_total", &[("outcome", "ok")]),
        Some(1.0)
    );
}

#[test]
fn two_gateways_in_one_process_count_apart() {
    let a = metrics();
    let b = metrics();
    count(
        &a,
        RouteLabel::Route(0),
        &Method::GET,
        200,
        Some(AuthOutcome::Ok),
    );
    assert_eq!(
        sample(&b, "wxgate_auth_total", &[("outcome", "ok")]),
        Some(0.0)
    );
}
