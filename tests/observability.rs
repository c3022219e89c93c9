//! What ships in `deploy/observability/`: the alert rules pass `promtool
//! check rules` and their own `promtool test rules` (each alert fires on
//! synthetic series and stays quiet on healthy ones), the dashboard's
//! expressions pass `promtool check rules` too, and every metric either
//! names is one a real gateway exports (on Redis, after a login, a proxied
//! request and an access token fetch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::redis::RedisServer;
use support::{dev, Preamble, Upstream};
use wxgate::dev::example_hook::ExampleHook;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/observability");

/// `promtool args...` in `DIR`; `false` when promtool is missing (and allowed to be).
fn promtool(args: &[&str]) -> bool {
    match Command::new("promtool")
        .args(args)
        .current_dir(DIR)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(e) => {
            assert!(
                std::env::var_os("WXGATE_REQUIRE_PROMTOOL").is_none(),
                "promtool is required here but cannot run: {e}"
            );
            eprintln!("skipped: promtool is not installed");
            false
        }
    }
}

#[test]
fn the_alert_rules_are_valid_and_fire_when_they_should() {
    if promtool(&["check", "rules", "alerts.yml"]) {
        promtool(&["test", "rules", "alerts.test.yml"]);
    }
}

/// Every panel's expressions in the dashboard.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(format!("{DIR}/dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

#[test]
fn the_dashboards_expressions_are_valid_promql() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    // promtool checks expressions in rule files: each one as a recording rule.
    let dir = support::TempDir::new("dashboard");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: wxgate_dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = dir.write("dashboard-rules.yml", &rules);
    promtool(&["check", "rules", file.to_str().unwrap()]);
}

/// The metric names an expression file uses (histogram series by their family).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("wxgate_") {
        let start = i + at;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase() || **b == b'_')
                .count();
        let name = &text[start..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(family.to_string());
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_name_is_exported() {
    let rules = std::fs::read_to_string(format!("{DIR}/alerts.yml")).unwrap();
    // The expressions: from each `expr:` to the rule's next key.
    let exprs: String = rules
        .split("expr:")
        .skip(1)
        .map(|rest| rest.split("\n        for:").next().unwrap_or(rest))
        .collect();
    let mut named = metric_names(&exprs);
    named.extend(metric_names(&dashboard_exprs().join("\n")));
    assert!(named.len() >= 6, "{named:?}");

    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    let hook = ExampleHook::new(b"observability-hook-secret");
    tokio::spawn(hook.serve(hook_listener));
    let redis = RedisServer::start();
    let up = Upstream::start("observability").await;
    // An HTTPS listener: its certificate's expiry is a metric.
    let certs = support::TempDir::new("observability-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = certs.write("cert.pem", &ck.cert.pem());
    let key = certs.write("key.pem", &ck.signing_key.serialize_pem());
    let tls = format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = '{}'\ntls_key = '{}'",
        cert.display(),
        key.display()
    );
    let preamble = Preamble::new("observability-test").server(&tls);
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxobservability01"
secret_env = "W"

[login.hook]
url = "http://{hook_addr}/internal/wxgate"
secret_env = "H"

[store]
kind = "redis"
url_env = "R"

[metrics]
listen = "127.0.0.1:0"
access_token_secret_env = "S"

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let url = redis.url();
    let env = dev::with_config(
        &text,
        &[
            ("W", "observability secret"),
            ("R", &url),
            ("S", "observability-token-secret"),
            ("H", "observability-hook-secret"),
        ],
    )
    .await;
    let gw = env.gateway.addr();
    // Two sessions of one user, the other ended from the second.
    assert_eq!(support::login(gw, "obs.1").await.status, 200);
    let token = support::login(gw, "obs.2").await.token();
    let auth = format!("Authorization: Bearer {token}");
    let r = support::post_json(
        gw,
        "/wx/logout",
        &serde_json::json!({ "others": true }),
        &[&auth],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        support::get(gw, "/x", &[&format!("Authorization: Bearer {token}")])
            .await
            .status,
        200
    );
    let internal = env.gateway.metrics_addr().unwrap();
    let r = support::get(
        internal,
        "/internal/wechat/access_token",
        &["Authorization: Bearer observability-token-secret"],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // `wxgate_config_reloads_total` has series once a reload was made.
    env.gateway.reload(&env.config).await.unwrap();
    let exported = support::get(internal, "/metrics", &[]).await.text();
    let expiry = exported
        .lines()
        .find(|l| {
            l.starts_with("wxgate_tls_certificate_expiry_timestamp_seconds{listener=\"tls\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("the certificate's expiry");
    assert!(
        expiry > 1.9e9,
        "rcgen's certificates last until 4096: {expiry}"
    );
    for name in &named {
        assert!(
            exported.contains(&format!("# TYPE {name} ")),
            "{name} is named by deploy/observability (alerts or dashboard) but not exported:\n{exported}"
        );
    }
    dev::stop(env).await;
}
