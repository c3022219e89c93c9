//! Where a request goes: its canonical path (`path`), the gateway's own
//! endpoints (`endpoints`), and the route table (`table`): each route one
//! [`Route`] value with its auth mode, roles, apps and upstream group.
//!
//! Routing and forwarding must agree on what the path *is*: if wxgate routed
//! `/%61dmin/x` by its raw bytes to a public route while the upstream decoded it
//! to `/admin/x`, the token check would be bypassed. So wxgate decides, once, on
//! the exact bytes it forwards, routes on those bytes, and sends those bytes:
//!
//! * percent-escapes of unreserved characters are decoded (`%61` → `a`,
//!   `%2e` → `.`), every other escape is kept with upper-case hex;
//! * bytes that may not appear raw in a path are percent-encoded;
//! * runs of `/` collapse to one;
//! * dot segments (`.`, `..`, also as `%2e`, also followed by `;params`), encoded `/` or `\` (`%2f`, `%5c`),
//!   a raw `\`, `%00`, control bytes, malformed escapes and paths that are not
//!   UTF-8 once decoded are refused (`invalid_path`).
//!
//! The query string is forwarded as received; only control bytes are refused.
//!
//! Upstream frameworks read paths more loosely than wxgate routes them, so
//! [`RouteTable::route`] also refuses (`invalid_path`) a path that another
//! reading would send to a *different* route:
//!
//! * ignoring ASCII case (Express and many others by default): `/API/secret`
//!   is refused when `/api/` is a route and `/API/secret` would otherwise go
//!   to `/`;
//! * dropping `;params` from each segment (Tomcat, Spring, Jetty): a path
//!   holding `;` is refused unless its route sets `allow_path_params`, and even
//!   then when `/api;x/secret` read as `/api/secret` would change route.
//!
//! Percent-escapes of unreserved characters are decoded first, so `/%41PI/x`
//! is `/API/x` for all of the above.

mod config;
mod endpoints;
mod path;
mod table;

pub use config::{AuthMode, RouteConfig};
pub use endpoints::{Endpoint, Endpoints, JWKS_PATH};
pub use path::{canonicalize, is_canonical_prefix, is_target_byte, Canonical};
#[cfg(test)]
pub use table::RouteSpec;
pub use table::{Route, RouteTable};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
