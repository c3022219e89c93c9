//! `[traces]`.

use super::*;

fn with_traces(lines: &str) -> String {
    format!("{}\n[traces]\n{lines}\n", minimal())
}

#[test]
fn traces_are_off_without_the_section_and_get_their_defaults_with_it() {
    assert!(parse_ok(&minimal()).traces.is_none());
    let c = parse_ok(&with_traces(
        r#"endpoint = "http://127.0.0.1:4318/v1/traces""#,
    ));
    let t = c.traces.expect("traces");
    assert_eq!(t.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert!((t.sample_ratio - 0.01).abs() < f64::EPSILON);
    assert_eq!(t.service_name, "wxgate");
    assert_eq!(t.max_queue, 2048);
    assert_eq!(t.export_interval, Duration::from_secs(1));
    assert_eq!(t.timeout, Duration::from_secs(5));
}

#[test]
fn a_bad_traces_section_is_refused_by_key() {
    const OK: &str = r#"endpoint = "https://otel.example:4318/v1/traces""#;
    for (lines, key) in [
        ("", "traces.endpoint"),
        (r#"endpoint = "127.0.0.1:4318""#, "traces.endpoint"),
        (r#"endpoint = "grpc://c:4317""#, "traces.endpoint"),
        (
            r#"endpoint = "http://user:pw@c:4318/v1/traces""#,
            "traces.endpoint",
        ),
        (
            r#"endpoint = "http://c:4318/v1/traces?x=1""#,
            "traces.endpoint",
        ),
        (
            r#"endpoint = "http://c:4318/v1/traces ""#,
            "traces.endpoint",
        ),
    ] {
        invalid_key(&with_traces(lines), key);
    }
    for (extra, key) in [
        ("sample_ratio = 1.5", "traces.sample_ratio"),
        ("sample_ratio = -0.1", "traces.sample_ratio"),
        ("sample_ratio = nan", "traces.sample_ratio"),
        ("max_queue = 0", "traces.max_queue"),
        ("max_queue = 65537", "traces.max_queue"),
        (r#"export_interval = "10ms""#, "traces.export_interval"),
        (r#"timeout = "0s""#, "traces.timeout"),
        (r#"service_name = """#, "traces.service_name"),
    ] {
        invalid_key(&with_traces(&format!("{OK}\n{extra}")), key);
    }
}

#[test]
fn traces_apply_at_start_only() {
    let a = parse_ok(&with_traces(
        r#"endpoint = "http://127.0.0.1:4318/v1/traces""#,
    ));
    let b = parse_ok(&with_traces(
        "endpoint = \"http://127.0.0.1:4318/v1/traces\"\nsample_ratio = 1.0",
    ));
    assert_eq!(a.restart_only_changes(&b), vec!["[traces]"]);
}
