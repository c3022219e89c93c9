//! `wxgate dev`: the gateway with an embedded mock WeChat, echo upstream and
//! example login hook.
//!
//! Nothing to sign up for: `wxgate dev` starts the mock WeChat, the echo
//! upstream and the example hook on ephemeral loopback ports and the gateway
//! in front of them, with random keys. With `--config`, the gateway uses that
//! file (its routes, keys, appid and `[login.hook]`, if any) but still talks
//! to the mock instead of WeChat. The same pieces serve the test suite.

pub mod echo;
pub mod example_hook;
pub mod mock_wechat;

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::server::{Running, StartError};
use echo::EchoUpstream;
use example_hook::ExampleHook;
use mock_wechat::MockWechat;

/// How the status page and errors name the embedded config.
const EMBEDDED: &str = "<embedded dev config>";

/// The appid of the embedded config.
pub const DEV_APPID: &str = "wxdevappid0000000";

/// Why `wxgate dev` could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot bind a loopback port for the embedded servers")]
    Bind(#[source] std::io::Error),
}

/// A running dev environment.
pub struct DevEnv {
    pub gateway: Running,
    pub mock: MockWechat,
    pub mock_addr: SocketAddr,
    pub echo: EchoUpstream,
    pub echo_addr: SocketAddr,
    /// The example login hook (the embedded config calls it; a config file may not).
    pub hook: ExampleHook,
    pub hook_addr: SocketAddr,
    /// The config the gateway runs with (`[wechat] api_base` points at the mock).
    pub config: Config,
    /// Whether the internal listener's secrets are dev's own throw-away
    /// ones (the embedded config), which the walkthrough may print.
    own_secrets: bool,
    _servers: AbortOnDrop,
}

/// The embedded servers stop when the environment is dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<std::io::Result<()>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The embedded config, for an echo upstream, a mock WeChat and an example
/// login hook at these addresses.
pub fn embedded_config(
    listen: SocketAddr,
    internal: SocketAddr,
    echo: SocketAddr,
    mock: SocketAddr,
    hook: SocketAddr,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
grace_period = "1s"

[jwt]
secret_env = "WXGATE_DEV_JWT_SECRET"
issuer = "wxgate"
audience = "wxgate-dev"

[wechat]
appid = "{DEV_APPID}"
secret_env = "WXGATE_DEV_WECHAT_SECRET"
api_base = "http://{mock}"
timeout = "2s"

[wechat.relay]
secret_env = "WXGATE_DEV_RELAY_SECRET"
allow = ["/wxa/msg_sec_check", "/wxa/getwxacodeunlimit"]

[metrics]
listen = "{internal}"
access_token_secret_env = "WXGATE_DEV_ACCESS_TOKEN_SECRET"
admin_secret_env = "WXGATE_DEV_ADMIN_SECRET"

[login.hook]
url = "http://{hook}/internal/wxgate"
secret_env = "WXGATE_DEV_HOOK_SECRET"
timeout = "2s"
claims = {{ plan = "X-User-Plan" }}

[audit.webhook]
url = "http://{hook}/internal/wxgate/audit"
secret_env = "WXGATE_DEV_AUDIT_SECRET"

[[routes]]
prefix = "/public/"
upstreams = ["{echo}"]
auth = "public"

[[routes]]
prefix = "/admin/"
upstreams = ["{echo}"]
roles = ["admin"]

[[routes]]
prefix = "/"
upstreams = ["{echo}"]
"#
    )
}

fn random_secret() -> String {
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Start the mock WeChat, the echo upstream and the gateway.
///
/// Without `config_path`, the gateway listens on `listen` with the embedded
/// config; with it, the file decides everything but WeChat's address. The
/// internal listener (the status page, `/metrics`) is on `internal` unless
/// the file puts it elsewhere.
pub async fn start(
    listen: SocketAddr,
    internal: SocketAddr,
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DevEnv, DevError> {
    let mock_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::Bind)?;
    let echo_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::Bind)?;
    let hook_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::Bind)?;
    let mock_addr = mock_listener.local_addr().map_err(DevError::Bind)?;
    let echo_addr = echo_listener.local_addr().map_err(DevError::Bind)?;
    let hook_addr = hook_listener.local_addr().map_err(DevError::Bind)?;
    let hook_secret = random_secret();
    let audit_secret = random_secret();

    let mut config = match config_path {
        Some(path) => Config::load(path, env)?,
        None => {
            let jwt = random_secret();
            let wechat = random_secret();
            let internal_secrets = [random_secret(), random_secret(), random_secret()];
            let text = embedded_config(listen, internal, echo_addr, mock_addr, hook_addr);
            Config::parse(&text, EMBEDDED, &|name| match name {
                "WXGATE_DEV_JWT_SECRET" => Some(jwt.clone()),
                "WXGATE_DEV_WECHAT_SECRET" => Some(wechat.clone()),
                "WXGATE_DEV_HOOK_SECRET" => Some(hook_secret.clone()),
                "WXGATE_DEV_AUDIT_SECRET" => Some(audit_secret.clone()),
                "WXGATE_DEV_RELAY_SECRET" => Some(internal_secrets[0].clone()),
                "WXGATE_DEV_ACCESS_TOKEN_SECRET" => Some(internal_secrets[1].clone()),
                "WXGATE_DEV_ADMIN_SECRET" => Some(internal_secrets[2].clone()),
                _ => None,
            })?
        }
    };
    let wechat = match &mut config.wechat {
        Some(w) => w,
        None => {
            // A config without [wechat]: log in against the mock with a dev appid.
            let text = embedded_config(listen, internal, echo_addr, mock_addr, hook_addr);
            let dev = Config::parse(&text, EMBEDDED, &|_| Some(random_secret()))?;
            config.wechat = dev.wechat.map(|mut w| {
                // The relay's secret would have to be one the file knows.
                w.relay = None;
                w
            });
            config.wechat.as_mut().ok_or_else(|| {
                DevError::Bind(std::io::Error::other("embedded config has no [wechat]"))
            })?
        }
    };
    wechat.api_base = format!("http://{mock_addr}");
    let apps: Vec<(&str, &str)> = wechat
        .apps
        .iter()
        .map(|a| (a.appid.as_str(), a.secret.expose_str().unwrap_or_default()))
        .collect();
    let mock = MockWechat::with_apps(&apps);
    let echo = EchoUpstream::new("echo");
    let hook = ExampleHook::with_audit_secret(hook_secret.as_bytes(), audit_secret.as_bytes());
    let tasks = AbortOnDrop(vec![
        tokio::spawn(mock.clone().serve(mock_listener)),
        tokio::spawn(echo.clone().serve(echo_listener)),
        tokio::spawn(hook.clone().serve(hook_listener)),
    ]);
    if config.metrics.listen.is_none() {
        config.metrics.listen = Some(internal);
    }
    let gateway = crate::server::start(&config).await?;
    gateway
        .status()
        .set_source(config_path.map_or_else(|| EMBEDDED.to_string(), |p| p.display().to_string()));
    Ok(DevEnv {
        gateway,
        mock,
        mock_addr,
        echo,
        echo_addr,
        hook,
        hook_addr,
        config,
        own_secrets: config_path.is_none(),
        _servers: tasks,
    })
}

impl DevEnv {
    /// The three-step walkthrough printed at start-up.
    pub fn walkthrough(&self) -> String {
        let gw = self.gateway.addr();
        let prefix = &self.config.login.path_prefix;
        let upstreams: Vec<String> = self
            .config
            .routes
            .iter()
            .map(|r| {
                format!(
                    "  {:<10} -> {} ({:?})",
                    r.prefix,
                    r.upstreams.join(", "),
                    r.auth
                )
            })
            .collect();
        format!(
            r#"
wxgate dev is running (development only: mock WeChat, throw-away keys).

  gateway       http://{gw}
  mock WeChat   http://{mock} (any code logs in once; try codes "invalid", "blocked", "busy", "slow")
  echo upstream http://{echo} (answers with the method, path and headers it received)
  internal      http://{internal}/ (the status page: open it in a browser; Prometheus scrapes /metrics)
routes:
{routes}

1. Log in as a mini program would after wx.login():

   curl -s -X POST http://{gw}{prefix}/login -H 'Content-Type: application/json' -d '{{"code":"demo-code-1"}}'

2. Call a protected route with the token from step 1:

   TOKEN=$(curl -s -X POST http://{gw}{prefix}/login -H 'Content-Type: application/json' -d '{{"code":"demo-code-2"}}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
   curl -s http://{gw}/api/hello -H "Authorization: Bearer $TOKEN"

3. Read what the upstream saw: "x-openid" (and "x-unionid", "x-wx-appid") set by
   wxgate. Any X-OpenID you send yourself is removed:

   curl -s http://{gw}/api/hello -H "Authorization: Bearer $TOKEN" -H 'X-OpenID: someone-else'
{hook}
Phone number, as after <button open-type="getPhoneNumber"> (the mock gives
any code a number once):

   curl -s -X POST http://{gw}{prefix}/phone -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"code":"phone-code-1"}}'

Sessions and devices: one user (codes "demo.<anything>" are all user "demo")
logs in on a phone and a tablet, lists its sessions, and ends the tablet's:

   PHONE=$(curl -s -X POST http://{gw}{prefix}/login -H 'Content-Type: application/json' -d '{{"code":"demo.phone","device":{{"platform":"ios","model":"iPhone 15"}}}}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
   PAD=$(curl -s -X POST http://{gw}{prefix}/login -H 'Content-Type: application/json' -d '{{"code":"demo.pad","device":{{"platform":"android"}}}}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
   curl -s http://{gw}{prefix}/sessions -H "Authorization: Bearer $PHONE"
   curl -s -X DELETE http://{gw}{prefix}/sessions/ID -H "Authorization: Bearer $PHONE"   # ID: the tablet's "id" above
   curl -s http://{gw}/api/hello -H "Authorization: Bearer $PAD"                          # 401 session_ended, "reason":"ended"
{internal_walkthrough}
Stop with Ctrl-C.
"#,
            internal_walkthrough = self.internal_walkthrough(),
            internal = self
                .gateway
                .metrics_addr()
                .map_or_else(|| "(none)".to_string(), |a| a.to_string()),
            mock = self.mock_addr,
            echo = self.echo_addr,
            routes = upstreams.join("\n"),
            hook = self.hook_walkthrough(),
        )
    }

    /// The walkthrough's steps for the internal listener's secrets: those
    /// of the embedded config, made up at start (a file's are not printed).
    fn internal_walkthrough(&self) -> String {
        let Some(internal) = self.gateway.metrics_addr() else {
            return String::new();
        };
        // A file's secrets may be real ones: never printed.
        if !self.own_secrets {
            return String::new();
        }
        let m = &self.config.metrics;
        let relay = self.config.wechat.as_ref().and_then(|w| w.relay.as_ref());
        let secret =
            |s: Option<&crate::secret::Secret>| s.and_then(|s| s.expose_str()).map(str::to_string);
        let mut out = String::new();
        if let Some(s) = secret(m.access_token_secret.as_ref()) {
            out.push_str(&format!(
                "   curl -s http://{internal}/internal/wechat/access_token -H 'Authorization: Bearer {s}'\n"
            ));
        }
        if let Some(s) = secret(relay.map(|r| &r.secret)) {
            out.push_str(&format!(
                "   curl -s -X POST http://{internal}/wxa/msg_sec_check -H 'Authorization: Bearer {s}' -H 'Content-Type: application/json' -d '{{\"content\":\"hello\",\"version\":2,\"scene\":1,\"openid\":\"o-demo\"}}'\n"
            ));
        }
        if let Some(s) = secret(m.admin_secret.as_ref()) {
            out.push_str(&format!(
                "   curl -s 'http://{internal}/internal/admin/sessions?uid=UID' -H 'Authorization: Bearer {s}'   # UID: a login answer's \"uid\"\n"
            ));
        }
        if out.is_empty() {
            return out;
        }
        format!(
            "\nThe internal listener's throw-away secrets: the backends' access token,\nWeChat's APIs relayed with it, and the admin API (a user's sessions by uid):\n\n{out}"
        )
    }

    /// The walkthrough's steps for the example login hook, when it is in use.
    fn hook_walkthrough(&self) -> String {
        let example = format!("http://{}/", self.hook_addr);
        if !self
            .config
            .login
            .hook
            .as_ref()
            .is_some_and(|h| h.url.starts_with(&example))
        {
            return String::new();
        }
        let gw = self.gateway.addr();
        let prefix = &self.config.login.path_prefix;
        format!(
            r#"
4. The example login hook (http://{hook}) answered for the backend: the login
   answer carries "uid" and "roles", and the upstream sees X-User-ID,
   X-User-Roles and X-User-Plan. /admin/ requires the role "admin", which the
   hook grants to the user "admin" (codes admin.1, admin.2, ...); the user
   "banned" (codes banned.1, ...) is refused with 403 login_refused:

   ADMIN=$(curl -s -X POST http://{gw}{prefix}/login -H 'Content-Type: application/json' -d '{{"code":"admin.1"}}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
   curl -s http://{gw}/admin/panel -H "Authorization: Bearer $ADMIN"
   curl -s http://{gw}/admin/panel -H "Authorization: Bearer $TOKEN"    # 403 forbidden

   The hook's host also takes the audit webhook: every login, refresh,
   logout and ended session above reached it as a signed event, as the
   wxgate::audit lines in this log show them.
"#,
            hook = self.hook_addr,
        )
    }
}
