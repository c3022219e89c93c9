//! The route table: each `[[routes]]` entry as one [`Route`] value (prefix,
//! auth mode, roles, apps, socket checks, upstream group and its timeouts),
//! matched by longest prefix. A request carries its matched route from
//! routing on (`Arc<Route>`), as Pingap's `Location` does.

use std::sync::Arc;
use std::time::Duration;

use super::config::{AuthMode, RouteConfig};
use super::path::{prefix_matches, prefix_matches_ignoring_case, strip_path_params};
use crate::error::ApiError;
use crate::token::Identity;
use crate::upstream::Upstream;

/// One `[[routes]]` entry: everything a request on it needs.
pub struct Route {
    /// The canonical prefix.
    pub prefix: String,
    /// Token policy.
    pub auth: AuthMode,
    /// Its position in `[[routes]]` (its row in the metrics).
    pub index: usize,
    /// Whether paths on this route may carry `;` path parameters.
    pub path_params: bool,
    /// The token must carry one of these roles (empty: any token).
    pub roles: Vec<String>,
    /// The token's `appid` must be one of these (empty: any app).
    pub apps: Vec<String>,
    /// How often an open WebSocket's token is checked against revocations,
    /// on a route whose sockets close with their token (`None`: they do not).
    pub socket_check: Option<Duration>,
    /// The upstream group: round-robin, health checks, timeouts.
    pub upstream: Upstream,
}

impl Route {
    /// The route of a validated `[[routes]]` entry (index 0 until a
    /// [`RouteTable`] places it).
    pub fn new(cfg: &RouteConfig) -> std::io::Result<Self> {
        Ok(Self {
            prefix: cfg.prefix.clone(),
            auth: cfg.auth,
            index: 0,
            path_params: cfg.allow_path_params,
            roles: cfg.roles.clone(),
            apps: cfg.apps.clone(),
            socket_check: cfg.revocation_check,
            upstream: Upstream::new(
                &cfg.upstream_addrs,
                cfg.connect_timeout,
                cfg.read_timeout,
                cfg.health_check_interval,
            )?,
        })
    }

    /// Whether a verified caller may use the route: one of its roles, one
    /// of its apps (403 `forbidden` otherwise).
    pub fn admits(&self, id: &Identity) -> bool {
        (self.roles.is_empty() || id.user.has_any_role(&self.roles))
            && (self.apps.is_empty() || id.appid.as_ref().is_some_and(|a| self.apps.contains(a)))
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("prefix", &self.prefix)
            .field("auth", &self.auth)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// A route as the matching tests write it: prefix, auth mode, `;` allowed.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec<'a> {
    pub prefix: &'a str,
    pub auth: AuthMode,
    /// `allow_path_params`: `;` may appear in this route's paths.
    pub path_params: bool,
}

#[cfg(test)]
impl<'a> From<(&'a str, AuthMode)> for RouteSpec<'a> {
    fn from((prefix, auth): (&'a str, AuthMode)) -> Self {
        Self {
            prefix,
            auth,
            path_params: false,
        }
    }
}

#[cfg(test)]
impl From<(&str, AuthMode)> for Route {
    fn from(pair: (&str, AuthMode)) -> Self {
        RouteSpec::from(pair).into()
    }
}

/// A route without policy or upstream addresses, for matching tests.
#[cfg(test)]
impl From<RouteSpec<'_>> for Route {
    fn from(spec: RouteSpec<'_>) -> Self {
        let none = Duration::from_secs(1);
        Self {
            prefix: spec.prefix.to_string(),
            auth: spec.auth,
            index: 0,
            path_params: spec.path_params,
            roles: Vec::new(),
            apps: Vec::new(),
            socket_check: None,
            upstream: Upstream::new(&[], none, none, none).unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// Routes by longest matching prefix.
///
/// A prefix that ends in `/` matches every path that starts with it; any other
/// prefix matches itself and the paths below it (`/api` matches `/api` and
/// `/api/x`, not `/apix`).
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// As configured: a route's index is its position here.
    routes: Vec<Arc<Route>>,
    /// The same routes, longest prefix first.
    by_prefix: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Build the table; a route's index is its position, as in the config.
    pub fn new<R: Into<Route>>(routes: impl IntoIterator<Item = R>) -> Self {
        let routes: Vec<Arc<Route>> = routes
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                let mut route = r.into();
                route.index = index;
                Arc::new(route)
            })
            .collect();
        let mut by_prefix = routes.clone();
        by_prefix.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes, by_prefix }
    }

    /// The table of the validated `[[routes]]`, each with its upstream group.
    pub fn from_config(routes: &[RouteConfig]) -> std::io::Result<Self> {
        let routes = routes
            .iter()
            .map(Route::new)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self::new(routes))
    }

    /// The routes in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// The route at a config position.
    pub fn get(&self, index: usize) -> Option<&Arc<Route>> {
        self.routes.get(index)
    }

    /// The route whose prefix matches a canonical path exactly, if any.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.by_prefix
            .iter()
            .find(|r| prefix_matches(&r.prefix, path))
    }

    /// The route for a canonical path, refusing (`invalid_path`) a path that
    /// an upstream reading it case-insensitively or without `;params` would
    /// take for another route's, and `;` on routes that do not allow it.
    pub fn route(&self, path: &str) -> Result<Option<&Arc<Route>>, ApiError> {
        let exact = self.find(path);
        let index = |r: Option<&Arc<Route>>| r.map(|r| r.index);
        if index(self.find_ignoring_case(path)) != index(exact) {
            return Err(ApiError::InvalidPath);
        }
        if path.contains(';') {
            if exact.is_some_and(|r| !r.path_params) {
                return Err(ApiError::InvalidPath);
            }
            let stripped = strip_path_params(path);
            if index(self.find(&stripped)) != index(exact)
                || index(self.find_ignoring_case(&stripped)) != index(exact)
            {
                return Err(ApiError::InvalidPath);
            }
        }
        Ok(exact)
    }

    /// The route a server that ignores ASCII case would pick.
    fn find_ignoring_case(&self, path: &str) -> Option<&Arc<Route>> {
        self.by_prefix
            .iter()
            .find(|r| prefix_matches_ignoring_case(&r.prefix, path))
    }
}
