//! The status page's HTML: one server-rendered document, its styles and
//! sparklines inline, no script. Every value from outside the binary is
//! escaped ([`esc`]).

use std::fmt::Write as _;
use std::time::Duration;

use super::history::{sparkline, Series};

/// Everything the page shows, read at one instant. It holds no secret,
/// token, openid or session key: only names, addresses, counts and times.
#[derive(Debug, Default)]
pub(super) struct View {
    pub(super) version: &'static str,
    pub(super) uptime: Duration,
    /// Unix milliseconds.
    pub(super) started_ms: u64,
    pub(super) now_ms: u64,
    /// Where the config came from (a file's path, or the embedded dev config).
    pub(super) source: String,
    /// The last reload: when (Unix ms) and whether it was applied.
    pub(super) reload: Option<(u64, bool)>,
    pub(super) routes: Vec<RouteView>,
    pub(super) store: StoreView,
    /// Requests, errors, logins, WeChat calls: the last ten minutes.
    pub(super) series: Vec<Series>,
    /// WeChat calls by API: (api, calls, errors, errcodes seen with counts).
    pub(super) wechat: Vec<ApiView>,
    /// Token checks by outcome.
    pub(super) auth: Vec<(String, u64)>,
    /// Sessions ended, by reason.
    pub(super) sessions_ended: Vec<(String, u64)>,
    /// The access token of each app, as this instance holds it.
    pub(super) apps: Vec<AppView>,
    /// Listeners: name, open connections, connections refused over a cap.
    pub(super) listeners: Vec<(&'static str, usize, u64)>,
}

/// One route: its prefix, token policy and upstreams with their health.
#[derive(Debug)]
pub(super) struct RouteView {
    pub(super) prefix: String,
    pub(super) auth: &'static str,
    pub(super) upstreams: Vec<(String, bool)>,
    pub(super) requests: u64,
    pub(super) server_errors: u64,
}

/// The store: memory (with its maps' fill) or Redis (with its topology).
#[derive(Debug, Default)]
pub(super) struct StoreView {
    /// `memory`, or the Redis topology (`standalone`, `sentinel`, `cluster`).
    pub(super) kind: String,
    /// Redis: whether calls go through.
    pub(super) up: Option<bool>,
    /// Redis lines: the master, the revocation feed.
    pub(super) facts: Vec<(&'static str, String)>,
    /// Memory: (kind, entries, capacity, dropped, refused).
    pub(super) maps: Vec<(&'static str, usize, usize, u64, u64)>,
}

/// One WeChat API's calls.
#[derive(Debug)]
pub(super) struct ApiView {
    pub(super) api: String,
    pub(super) calls: u64,
    pub(super) errors: u64,
    /// `errcode` (or the outcome when WeChat gave none) and how often.
    pub(super) errcodes: Vec<(String, u64)>,
}

/// One app's access token, as this instance holds it.
#[derive(Debug)]
pub(super) struct AppView {
    pub(super) appid: String,
    /// Seconds until the held token expires (`None`: none held here).
    pub(super) expires_in: Option<u64>,
    /// The code of the last failure to get one, while it is answered again.
    pub(super) failing: Option<&'static str>,
}

/// HTML-escape `s` for text and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1d 2h 3m 4s`, leading zero units left out.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if n > 0 || !out.is_empty() {
            let _ = write!(out, "{n}{unit} ");
        }
    }
    let _ = write!(out, "{seconds}s");
    out
}

/// A Unix millisecond time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms));
    match at.filter(|t| *t < std::time::UNIX_EPOCH + Duration::from_secs(253_402_300_799)) {
        Some(t) => humantime::format_rfc3339_seconds(t)
            .to_string()
            .replacen('T', " ", 1)
            .replacen('Z', " UTC", 1),
        None => "?".to_string(),
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2329;background:#f6f7f9}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:24px 0 8px}\
.meta{color:#5b6470}section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;margin:12px 0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:middle}\
th{color:#5b6470;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.up{color:#17803d;font-weight:600}.down{color:#c4271c;font-weight:600}.warn{color:#a35a00;font-weight:600}\
.spark{display:block;margin-top:4px}.spark .bar{fill:#2f6fdd}.spark .base{fill:#dde1e6}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:8px 24px}\
.tile b{font-size:18px;font-variant-numeric:tabular-nums}";

/// The page.
pub(super) fn render(v: &View) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><meta name="viewport" content="width=device-width"><title>wxgate status</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        h,
        r#"<h1>wxgate {}</h1><p class="meta" id="about">up {} (since {}) · page at {} · refreshes every 10 s</p>"#,
        esc(v.version),
        span(v.uptime),
        utc(v.started_ms),
        utc(v.now_ms)
    );
    config(&mut h, v);
    activity(&mut h, v);
    routes(&mut h, v);
    store(&mut h, &v.store);
    wechat(&mut h, v);
    counts(&mut h, v);
    h.push_str("</body></html>\n");
    h
}

fn config(h: &mut String, v: &View) {
    let reload = match v.reload {
        None => "not reloaded since start".to_string(),
        Some((at, true)) => format!(r#"<span class="up">applied</span> at {}"#, utc(at)),
        Some((at, false)) => format!(
            r#"<span class="down">refused</span> at {} (the running config stays; the log says why)"#,
            utc(at)
        ),
    };
    let _ = write!(
        h,
        r#"<section id="config"><h2>Config</h2><table><tr><th>source</th><td>{}</td></tr><tr><th>last reload</th><td>{reload}</td></tr></table></section>"#,
        esc(&v.source)
    );
}

fn activity(h: &mut String, v: &View) {
    h.push_str(r#"<section id="activity"><h2>Last ten minutes</h2><p class="meta">one bar per 10 s, now at the right</p><div class="grid">"#);
    for s in &v.series {
        let _ = write!(
            h,
            r#"<div class="tile"><div>{}: <b>{}</b> in the last minute · {} since start</div>{}</div>"#,
            esc(s.name),
            s.last_minute,
            s.total,
            sparkline(&s.counts, 300, 40)
        );
    }
    h.push_str("</div></section>");
}

fn routes(h: &mut String, v: &View) {
    h.push_str(r#"<section id="routes"><h2>Routes</h2><table><tr><th>prefix</th><th>auth</th><th>upstreams</th><th>requests</th><th>5xx</th></tr>"#);
    for r in &v.routes {
        let ups: Vec<String> = r
            .upstreams
            .iter()
            .map(|(addr, up)| {
                let (class, word) = if *up { ("up", "up") } else { ("down", "down") };
                format!(r#"{} <span class="{class}">{word}</span>"#, esc(addr))
            })
            .collect();
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&r.prefix),
            r.auth,
            ups.join("<br>"),
            r.requests,
            r.server_errors
        );
    }
    h.push_str("</table></section>");
}

fn store(h: &mut String, s: &StoreView) {
    let state = match s.up {
        None => String::new(),
        Some(true) => r#" · <span class="up">up</span>"#.to_string(),
        Some(false) => r#" · <span class="down">down</span>"#.to_string(),
    };
    let _ = write!(
        h,
        r#"<section id="store"><h2>Store</h2><p>{}{state}</p>"#,
        esc(&s.kind)
    );
    if !s.facts.is_empty() {
        h.push_str("<table>");
        for (k, val) in &s.facts {
            let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(val));
        }
        h.push_str("</table>");
    }
    if !s.maps.is_empty() {
        h.push_str(r#"<table><tr><th>map</th><th>entries</th><th>bound</th><th>dropped</th><th>refused</th></tr>"#);
        for (kind, entries, capacity, dropped, refused) in &s.maps {
            let _ = write!(
                h,
                r#"<tr><td>{kind}</td><td class="n">{entries}</td><td class="n">{capacity}</td><td class="n">{dropped}</td><td class="n">{refused}</td></tr>"#
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
}

fn wechat(h: &mut String, v: &View) {
    h.push_str(r#"<section id="wechat"><h2>WeChat</h2><table><tr><th>API</th><th>calls</th><th>errors</th><th>errcodes</th></tr>"#);
    if v.wechat.is_empty() {
        h.push_str(r#"<tr><td colspan="4">no calls since start</td></tr>"#);
    }
    for a in &v.wechat {
        let codes: Vec<String> = a
            .errcodes
            .iter()
            .map(|(c, n)| format!("{} ×{n}", esc(c)))
            .collect();
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            esc(&a.api),
            a.calls,
            a.errors,
            codes.join(", ")
        );
    }
    h.push_str(r#"</table><h2>Access tokens</h2><table><tr><th>app</th><th>token</th></tr>"#);
    if v.apps.is_empty() {
        h.push_str(r#"<tr><td colspan="2">no [wechat] section: no apps</td></tr>"#);
    }
    for a in &v.apps {
        let state = match (a.expires_in, a.failing) {
            (_, Some(code)) => format!(r#"<span class="down">failing</span> ({code})"#),
            (Some(0), None) => r#"<span class="warn">expired</span>"#.to_string(),
            (Some(s), None) => format!(
                r#"<span class="up">held</span>, expires in {}"#,
                span(Duration::from_secs(s))
            ),
            (None, None) => "not fetched by this instance".to_string(),
        };
        let _ = write!(h, "<tr><td>{}</td><td>{state}</td></tr>", esc(&a.appid));
    }
    h.push_str("</table></section>");
}

fn counts(h: &mut String, v: &View) {
    h.push_str(r#"<section id="counts"><h2>Tokens, sessions, connections</h2><div class="grid">"#);
    let table = |h: &mut String, title: &str, rows: &[(String, u64)]| {
        let _ = write!(h, "<table><tr><th>{title}</th><th></th></tr>");
        if rows.is_empty() {
            h.push_str(r#"<tr><td colspan="2">none since start</td></tr>"#);
        }
        for (k, n) in rows {
            let _ = write!(h, r#"<tr><td>{}</td><td class="n">{n}</td></tr>"#, esc(k));
        }
        h.push_str("</table>");
    };
    table(h, "token checks", &v.auth);
    table(h, "sessions ended", &v.sessions_ended);
    let listeners: Vec<(String, u64)> = v
        .listeners
        .iter()
        .flat_map(|(name, open, refused)| {
            [
                (
                    format!("{name}: open"),
                    u64::try_from(*open).unwrap_or(u64::MAX),
                ),
                (format!("{name}: refused over a cap"), *refused),
            ]
        })
        .collect();
    table(h, "connections", &listeners);
    h.push_str("</div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_end_a_tag_or_an_attribute() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn spans_and_times_read_well() {
        assert_eq!(span(Duration::from_secs(5)), "5s");
        assert_eq!(span(Duration::from_secs(3_725)), "1h 2m 5s");
        assert_eq!(span(Duration::from_secs(86_400)), "1d 0h 0m 0s");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(u64::MAX), "?");
    }

    #[test]
    fn the_page_has_no_script_and_escapes_what_it_shows() {
        let v = View {
            version: "1.0",
            source: "<script>alert(1)</script>".into(),
            routes: vec![RouteView {
                prefix: "/api/".into(),
                auth: "required",
                upstreams: vec![("127.0.0.1:1".into(), false), ("127.0.0.1:2".into(), true)],
                requests: 3,
                server_errors: 1,
            }],
            reload: Some((0, false)),
            ..View::default()
        };
        let html = render(&v);
        assert!(!html.to_lowercase().contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains(r#"127.0.0.1:1 <span class="down">down</span>"#));
        assert!(html.contains(r#"127.0.0.1:2 <span class="up">up</span>"#));
        assert!(html.contains("refused</span> at 1970-01-01"));
    }
}
