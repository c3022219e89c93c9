//! Audit events: one line each on the `wxgate::audit` log target (JSON with
//! `--log-format json`), for what happens to a user's sessions: a login, a
//! refresh, a logout, a session ended (by whom and why), and every admin
//! call (`server/admin.rs`). The user is the access log's keyed hash of the
//! openid, never the openid; a session is the first characters of its id;
//! no token, secret or `session_key` is ever part of a line.

use std::net::IpAddr;

use crate::access::UserHasher;
use crate::store::EndReason;

/// Writes audit lines, the user hashed as in the access log.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    users: UserHasher,
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
    pub(crate) fn new(users: UserHasher) -> Self {
        Self { users }
    }

    /// A login opened `session` in `appid` from `ip`.
    pub(crate) fn login(
        &self,
        openid: &str,
        appid: Option<&str>,
        session: &str,
        ip: Option<IpAddr>,
    ) {
        tracing::info!(
            target: "wxgate::audit",
            event = "login",
            user = %self.users.hash(openid),
            app = appid.unwrap_or("-"),
            session = short(session),
            ip = %ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            "login"
        );
    }

    /// `session` was refreshed.
    pub(crate) fn refresh(&self, openid: &str, session: &str) {
        tracing::info!(
            target: "wxgate::audit",
            event = "refresh",
            user = %self.users.hash(openid),
            session = short(session),
            "refresh"
        );
    }

    /// The user logged out `what`: `token` (its session), `all` or `others`.
    pub(crate) fn logout(&self, openid: &str, session: Option<&str>, what: &str) {
        tracing::info!(
            target: "wxgate::audit",
            event = "logout",
            user = %self.users.hash(openid),
            session = session.map_or("-", short),
            what,
            "logout"
        );
    }

    /// `session` ended, by whom and why.
    pub(crate) fn session_ended(&self, openid: &str, session: &str, by: EndedBy) {
        tracing::info!(
            target: "wxgate::audit",
            event = "session_ended",
            user = %self.users.hash(openid),
            session = short(session),
            by = by.by(),
            reason = by.reason(),
            "session ended"
        );
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

    #[test]
    fn each_event_is_one_json_line_with_the_user_hashed() {
        let lines = Lines::default();
        let out = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || out.clone())
            .finish();
        let audit = Audit::new(UserHasher::new(b"a jwt key of the gateway"));
        let openid = "oSecretOpenid123456789012345";
        let session = "AbCdEfGhIjKlMnOpQrStUv";
        tracing::subscriber::with_default(subscriber, || {
            audit.login(openid, Some("wxapp"), session, "203.0.113.7".parse().ok());
            audit.refresh(openid, session);
            audit.logout(openid, Some(session), "others");
            audit.session_ended(openid, session, EndedBy::Reason(EndReason::Replaced));
            audit.session_ended(openid, session, EndedBy::ReuseDetected);
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
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
