//! `wxgate dev`: the gateway with an embedded mock WeChat and echo upstream.
//!
//! Nothing to sign up for: `wxgate dev` starts the mock WeChat and the echo
//! upstream on ephemeral loopback ports and the gateway in front of them, with
//! a random JWT key. With `--config`, the gateway uses that file (its routes,
//! keys and appid) but still talks to the mock instead of WeChat. The same
//! pieces serve the test suite.

pub mod echo;
pub mod mock_wechat;

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::server::{Running, StartError};
use echo::EchoUpstream;
use mock_wechat::MockWechat;

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
    /// The config the gateway runs with (`[wechat] api_base` points at the mock).
    pub config: Config,
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

/// The embedded config, for an echo upstream and a mock WeChat at these addresses.
pub fn embedded_config(listen: SocketAddr, echo: SocketAddr, mock: SocketAddr) -> String {
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

[[routes]]
prefix = "/public/"
upstreams = ["{echo}"]
auth = "public"

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
/// config; with it, the file decides everything but WeChat's address.
pub async fn start(
    listen: SocketAddr,
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DevEnv, DevError> {
    let mock_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::Bind)?;
    let echo_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::Bind)?;
    let mock_addr = mock_listener.local_addr().map_err(DevError::Bind)?;
    let echo_addr = echo_listener.local_addr().map_err(DevError::Bind)?;

    let mut config = match config_path {
        Some(path) => Config::load(path, env)?,
        None => {
            let jwt = random_secret();
            let wechat = random_secret();
            let text = embedded_config(listen, echo_addr, mock_addr);
            Config::parse(&text, "<embedded dev config>", &|name| match name {
                "WXGATE_DEV_JWT_SECRET" => Some(jwt.clone()),
                "WXGATE_DEV_WECHAT_SECRET" => Some(wechat.clone()),
                _ => None,
            })?
        }
    };
    let wechat = match &mut config.wechat {
        Some(w) => w,
        None => {
            // A config without [wechat]: log in against the mock with a dev appid.
            let text = embedded_config(listen, echo_addr, mock_addr);
            let dev = Config::parse(&text, "<embedded dev config>", &|_| Some(random_secret()))?;
            config.wechat = dev.wechat;
            config.wechat.as_mut().ok_or_else(|| {
                DevError::Bind(std::io::Error::other("embedded config has no [wechat]"))
            })?
        }
    };
    wechat.api_base = format!("http://{mock_addr}");
    let mock = MockWechat::new(
        &wechat.appid,
        wechat.secret.expose_str().unwrap_or_default(),
    );
    let echo = EchoUpstream::new("echo");
    let tasks = AbortOnDrop(vec![
        tokio::spawn(mock.clone().serve(mock_listener)),
        tokio::spawn(echo.clone().serve(echo_listener)),
    ]);
    let gateway = crate::server::start(&config).await?;
    Ok(DevEnv {
        gateway,
        mock,
        mock_addr,
        echo,
        echo_addr,
        config,
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

Stop with Ctrl-C.
"#,
            mock = self.mock_addr,
            echo = self.echo_addr,
            routes = upstreams.join("\n"),
        )
    }
}
