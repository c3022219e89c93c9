//! The gateway's own paths (health, JWKS, `/wx/*`), answered before any route.

use super::path::{prefix_matches_ignoring_case, strip_path_params};

/// A path wxgate answers itself, before any route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: the process is alive.
    Healthz,
    /// `GET /readyz`: config loaded, listeners bound, store answering.
    Readyz,
    /// `POST {login.path_prefix}/login`.
    Login,
    /// `POST {login.path_prefix}/decrypt` (Bearer token required).
    Decrypt,
    /// `POST {login.path_prefix}/logout` (Bearer token required).
    Logout,
    /// `POST {login.path_prefix}/refresh`.
    Refresh,
    /// `POST {login.path_prefix}/phone` (Bearer token required).
    Phone,
    /// `GET /.well-known/jwks.json`: the public token keys.
    Jwks,
}

impl Endpoint {
    /// Every endpoint, in a fixed order ([`Endpoint::index`]).
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Login,
        Endpoint::Decrypt,
        Endpoint::Logout,
        Endpoint::Refresh,
        Endpoint::Phone,
        Endpoint::Jwks,
    ];

    /// The endpoint's short name, in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Login => "login",
            Endpoint::Decrypt => "decrypt",
            Endpoint::Logout => "logout",
            Endpoint::Refresh => "refresh",
            Endpoint::Phone => "phone",
            Endpoint::Jwks => "jwks",
        }
    }

    /// The endpoint's place in [`Endpoint::ALL`].
    pub fn index(self) -> usize {
        match self {
            Endpoint::Healthz => 0,
            Endpoint::Readyz => 1,
            Endpoint::Login => 2,
            Endpoint::Decrypt => 3,
            Endpoint::Logout => 4,
            Endpoint::Refresh => 5,
            Endpoint::Phone => 6,
            Endpoint::Jwks => 7,
        }
    }
}

/// Where the public token keys are served (RFC 8615, as OpenID providers do).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The paths of the gateway's own endpoints, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Endpoints {
    healthz: String,
    readyz: String,
    /// Under `[login] path_prefix`, when `[wechat]` is configured.
    wx: Vec<(String, Endpoint)>,
    /// `[login] path_prefix`, when `[wechat]` is configured: every path
    /// under it is the gateway's.
    wx_prefix: Option<String>,
}

impl Endpoints {
    /// Paths for the health prefix and, when login is enabled, the login prefix.
    pub fn new(health_prefix: &str, login_prefix: Option<&str>) -> Self {
        Self {
            healthz: format!("{health_prefix}/healthz"),
            readyz: format!("{health_prefix}/readyz"),
            wx: login_prefix
                .map(|p| {
                    [
                        ("login", Endpoint::Login),
                        ("decrypt", Endpoint::Decrypt),
                        ("logout", Endpoint::Logout),
                        ("refresh", Endpoint::Refresh),
                        ("phone", Endpoint::Phone),
                    ]
                    .into_iter()
                    .map(|(name, ep)| (format!("{p}/{name}"), ep))
                    .collect()
                })
                .unwrap_or_default(),
            wx_prefix: login_prefix.map(str::to_string),
        }
    }

    /// Whether a canonical path lies under `[login] path_prefix`, read as
    /// loosely as an upstream might (ASCII case ignored, `;params` cut):
    /// such a path is the gateway's, answered 404 `no_route` when it is no
    /// endpoint, never forwarded (a client written for a newer gateway must
    /// not reach a backend by accident).
    pub fn owns(&self, path: &str) -> bool {
        let Some(prefix) = &self.wx_prefix else {
            return false;
        };
        prefix_matches_ignoring_case(prefix, path)
            || (path.contains(';')
                && prefix_matches_ignoring_case(prefix, &strip_path_params(path)))
    }

    /// The endpoint at a canonical path, if any.
    pub fn find(&self, path: &str) -> Option<Endpoint> {
        if path == self.healthz {
            return Some(Endpoint::Healthz);
        }
        if path == self.readyz {
            return Some(Endpoint::Readyz);
        }
        if path == JWKS_PATH {
            return Some(Endpoint::Jwks);
        }
        self.wx.iter().find(|(p, _)| p == path).map(|(_, ep)| *ep)
    }

    /// Each endpoint that is served, with its path.
    pub fn paths(&self) -> Vec<(Endpoint, String)> {
        [
            (Endpoint::Healthz, self.healthz.clone()),
            (Endpoint::Readyz, self.readyz.clone()),
            (Endpoint::Jwks, JWKS_PATH.to_string()),
        ]
        .into_iter()
        .chain(self.wx.iter().map(|(p, ep)| (*ep, p.clone())))
        .collect()
    }
}
