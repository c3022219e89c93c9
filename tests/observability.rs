//! What ships in `deploy/observability/`: the alert rules pass `promtool
//! check rules` and their own `promtool test rules` (each alert fires on
//! synthetic series and stays quiet on healthy ones), and every metric their
//! expressions name is one a real gateway exports (on Redis, after a login, a proxied
//! request and an access token fetch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::redis::RedisServer;
use support::{dev, Preamble, Upstream};

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
async fn every_metric_the_rules_name_is_exported() {
    let rules = std::fs::read_to_string(format!("{DIR}/alerts.yml")).unwrap();
    // The expressions: from each `expr:` to the rule's next key.
    let exprs: String = rules
        .split("expr:")
        .skip(1)
        .map(|rest| rest.split("\n        for:").next().unwrap_or(rest))
        .collect();
    let named = metric_names(&exprs);
    assert!(named.len() >= 6, "{named:?}");

    let redis = RedisServer::start();
    let up = Upstream::start("observability").await;
    let preamble = Preamble::new("observability-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxobservability01"
secret_env = "W"

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
        ],
    )
    .await;
    let gw = env.gateway.addr();
    let token = support::login(gw, "obs.1").await.token();
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
    let exported = support::get(internal, "/metrics", &[]).await.text();
    for name in &named {
        assert!(
            exported.contains(&format!("# TYPE {name} ")),
            "{name} is named by deploy/observability/alerts.yml but not exported:\n{exported}"
        );
    }
    dev::stop(env).await;
}
