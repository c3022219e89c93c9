//! Audit events: one line each on the `wxgate::audit` log target (JSON with
//! `--log-format json`), for what happens to a user's sessions: a login, a
//! refresh, a logout, a session ended (by whom and why), and every admin
//! call (`server/admin.rs`). The user is the access log's keyed hash of the
//! openid, and the openid itself only with `[audit] openid = true`; a
//! session is the first characters of its id; no token, secret or
//! `session_key` is ever part of an event. With `[audit.webhook]` each
//! event also goes to the backend ([`webhook`]).

mod config;
mod record;
mod webhook;

pub use config::{AuditConfig, WebhookConfig, MAX_BATCH, MAX_QUEUE, MAX_RETRIES, MAX_TIMEOUT};
pub use webhook::WebhookError;

use std::net::IpAddr;
use std::sync::Arc;

use record::Record;
use webhook::Webhook;

use crate::access::UserHasher;
use crate::clock::{random_id, unix_now_ms};
use crate::metrics::Metrics;
use crate::store::EndReason;

/// Writes audit events: a log line each, and the webhook's delivery.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    users: UserHasher,
    /// Whether events carry the openid.
    openid: bool,
    webhook: Option<Webhook>,
}

/// Who or what ended a session, for the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// For a reason the session's client is told.
    Reason(EndReason),
    /// A spent refresh token was presented again.
    ReuseDetected,
    /// The login hook refused a refresh.
    HookRefused,
}

impl EndedBy {
    /// `by`: the user, an admin, a limit, a lifetime, the gateway.
    fn by(self) -> &'static str {
        match self {
            EndedBy::Reason(EndReason::Ended) => "user",
            EndedBy::Reason(EndReason::Replaced) => "limit",
            EndedBy::Reason(EndReason::Idle | EndReason::Lifetime) => "lifetime",
            EndedBy::Reason(EndReason::Admin | EndReason::Banned) => "admin",
            EndedBy::ReuseDetected => "gateway",
            EndedBy::HookRefused => "hook",
        }
    }

    /// `reason`: the client's reason, or what the gateway saw.
    fn reason(self) -> &'static str {
        match self {
            EndedBy::Reason(r) => r.as_str(),
            EndedBy::ReuseDetected => "reuse_detected",
            EndedBy::HookRefused => "hook_refused",
        }
    }
}

impl Audit {
    /// Lines only, the user hashed with `users`.
    pub(crate) fn new(users: UserHasher) -> Self {
        Self {
            users,
            openid: false,
            webhook: None,
        }
    }

    /// As `cfg` says: the openid in events or not, and the webhook started
    /// (in the current Tokio runtime) when there is one.
    pub(crate) fn with_config(
        mut self,
        cfg: &AuditConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, WebhookError> {
        self.openid = cfg.openid;
        self.webhook = match &cfg.webhook {
            Some(w) => Some(Webhook::start(w, metrics)?),
            None => None,
        };
        Ok(self)
    }

    /// Whether an event would go anywhere: a line the log writes, or the
    /// webhook. Nothing is built (no hash, no id) when neither.
    fn wanted(&self) -> bool {
        self.webhook.is_some() || tracing::enabled!(target: "wxgate::audit", tracing::Level::INFO)
    }

    /// An event about `openid`, its id and time set.
    fn record(&self, event: &'static str, openid: &str) -> Record {
        Record {
            id: random_id(),
            time_ms: unix_now_ms(),
            event,
            user: self.users.hash(openid),
            openid: self.openid.then(|| openid.to_string()),
            ..Record::default()
        }
    }

    /// Write the line of `r` and queue it for the webhook.
    fn emit(&self, r: Record) {
        tracing::info!(
            target: "wxgate::audit",
            event = r.event,
            user = %r.user,
            openid = r.openid.as_deref(),
            app = r.app.as_deref(),
            session = r.session.as_deref(),
            ip = r.ip.as_deref(),
            what = r.what,
            by = r.by,
            reason = r.reason,
            outcome = r.outcome,
            detail = r.detail.as_deref(),
            id = %r.id,
            "{}",
            r.event
        );
        if let Some(w) = &self.webhook {
            w.send(r);
        }
    }

    /// A login opened `session` in `appid` from `ip`.
    pub(crate) fn login(
        &self,
        openid: &str,
        appid: Option<&str>,
        session: &str,
        ip: Option<IpAddr>,
    ) {
        if !self.wanted() {
            return;
        }
        let mut r = self.record("login", openid);
        r.app = appid.map(str::to_string);
        r.session = Some(short(session).to_string());
        r.ip = ip.map(|ip| ip.to_string());
        self.emit(r);
    }

    /// `session` was refreshed.
    pub(crate) fn refresh(&self, openid: &str, session: &str) {
        if !self.wanted() {
            return;
        }
        let mut r = self.record("refresh", openid);
        r.session = Some(short(session).to_string());
        self.emit(r);
    }

    /// The user logged out `what`: `token` (its session), `all` or `others`.
    pub(crate) fn logout(&self, openid: &str, session: Option<&str>, what: &'static str) {
        if !self.wanted() {
            return;
        }
        let mut r = self.record("logout", openid);
        r.session = session.map(|s| short(s).to_string());
        r.what = Some(what);
        self.emit(r);
    }

    /// `session` ended, by whom and why.
    pub(crate) fn session_ended(&self, openid: &str, session: &str, by: EndedBy) {
        if !self.wanted() {
            return;
        }
        let mut r = self.record("session_ended", openid);
        r.session = Some(short(session).to_string());
        r.by = Some(by.by());
        r.reason = Some(by.reason());
        self.emit(r);
    }

    /// An admin call `event` about `openid` (when the path names one):
    /// `outcome` is `ok` or the error code, `detail` what it did.
    pub(crate) fn admin(
        &self,
        event: &'static str,
        openid: Option<&str>,
        outcome: &'static str,
        detail: Option<String>,
    ) {
        if !self.wanted() {
            return;
        }
        let mut r = match openid {
            Some(o) => self.record(event, o),
            None => Record {
                id: random_id(),
                time_ms: unix_now_ms(),
                event,
                user: "-".to_string(),
                ..Record::default()
            },
        };
        r.outcome = Some(outcome);
        r.detail = detail;
        self.emit(r);
    }

    /// `openid` as it stands in audit lines.
    #[cfg(test)]
    pub(crate) fn user(&self, openid: &str) -> String {
        self.users.hash(openid)
    }
}

/// The first characters of a session id: enough to follow one in the log,
/// not enough to name it to the API.
fn short(id: &str) -> &str {
    id.get(..6).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines `f` writes.
    fn lines_of(f: impl FnOnce()) -> String {
        let lines = Lines::default();
        let out = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn the_openid_is_in_an_event_only_where_the_operator_opts_in() {
        let openid = "oSecretOpenid123456789012345";
        let hashed = Audit::new(UserHasher::new(b"a jwt key of the gateway"));
        let cfg = AuditConfig {
            openid: true,
            webhook: None,
        };
        let with_openid = hashed.clone().with_config(&cfg, None).unwrap();
        let text = lines_of(|| {
            hashed.refresh(openid, "AbCdEfGh");
            with_openid.refresh(openid, "AbCdEfGh");
            with_openid.admin("admin_get_ban", None, "ok", None);
        });
        let v: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(v[0]["fields"].get("openid").is_none(), "{text}");
        assert_eq!(v[1]["fields"]["openid"], openid);
        assert_eq!(v[1]["fields"]["user"], hashed.user(openid).as_str());
        assert_eq!(v[2]["fields"]["user"], "-");
        assert!(v[2]["fields"].get("openid").is_none(), "{text}");
        assert_ne!(v[0]["fields"]["id"], v[1]["fields"]["id"]);
    }

    #[test]
    fn each_event_is_one_json_line_with_the_user_hashed() {
        let audit = Audit::new(UserHasher::new(b"a jwt key of the gateway"));
        let openid = "oSecretOpenid123456789012345";
        let session = "AbCdEfGhIjKlMnOpQrStUv";
        let text = lines_of(|| {
            audit.login(openid, Some("wxapp"), session, "203.0.113.7".parse().ok());
            audit.refresh(openid, session);
            audit.logout(openid, Some(session), "others");
            audit.session_ended(openid, session, EndedBy::Reason(EndReason::Replaced));
            audit.session_ended(openid, session, EndedBy::ReuseDetected);
        });
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let events: Vec<&str> = parsed
            .iter()
            .map(|v| v["fields"]["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            [
                "login",
                "refresh",
                "logout",
                "session_ended",
                "session_ended"
            ]
        );
        for v in &parsed {
            assert_eq!(v["target"], "wxgate::audit");
            assert_eq!(v["fields"]["user"], audit.user(openid).as_str());
            assert_eq!(v["fields"]["session"], "AbCdEf");
        }
        assert_eq!(parsed[3]["fields"]["by"], "limit");
        assert_eq!(parsed[3]["fields"]["reason"], "replaced");
        assert_eq!(parsed[4]["fields"]["reason"], "reuse_detected");
        assert_eq!(parsed[0]["fields"]["ip"], "203.0.113.7");
        assert!(!text.contains(openid), "{text}");
        assert!(!text.contains(session), "{text}");
    }
}
