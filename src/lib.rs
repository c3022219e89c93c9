//! wxgate: an authentication gateway for WeChat Mini Program backends.
//!
//! A mini program logs in with `wx.login()`; wxgate exchanges the code with
//! WeChat, keeps `session_key` server-side and issues a signed JWT. On every
//! other request it checks `Authorization: Bearer <jwt>`, strips client-sent
//! identity headers, injects `X-OpenID` and forwards to the upstream.
//!
//! # The request pipeline
//!
//! ```text
//! server (admission, read deadlines) ─▶ proxy::early_request_filter (keep-alive, pipelining)
//!        ─▶ proxy::request_filter
//!             route::canonicalize ─▶ route::Endpoints::find ──▶ endpoints::answer
//!             │                                                   method, auth::authenticate,
//!             │                                                   endpoints::body, one file per
//!             │                                                   endpoint ─▶ login / sessions
//!             route::RouteTable::route ─▶ auth::authenticate_for (token + revocation)
//!        ─▶ proxy::upstream_peer          upstream (round-robin, health checks)
//!        ─▶ proxy::upstream_request_filter  headers::sanitize ─▶ headers::inject
//!        ─▶ upstream; failures: proxy::fail_to_proxy ─▶ error::ApiError ─▶ respond
//! ```
//!
//! # Where things live
//!
//! | module | what it knows |
//! |---|---|
//! | [`server`] | listeners, TLS, connections: caps ([`server::admission`]), read deadlines ([`server::deadline`]), reload, graceful shutdown |
//! | [`state`] | [`state::GatewayState`]: everything a request reads, built once; [`state::Deps`] |
//! | [`proxy`] | the Pingora `ProxyHttp` glue: the pipeline above, nothing else |
//! | [`route`] | canonical paths, the gateway's own endpoint paths, routes and auth modes |
//! | [`auth`] | the one Bearer + revocation check |
//! | [`headers`] | header hygiene, identity header names and injection, client IP |
//! | [`endpoints`] | `/healthz`, `/readyz`, `/wx/*`: body decoding, typed requests and responses |
//! | [`login`] | `jscode2session` once per code ([`login::flight`]), rate limits ([`login::limits`]) |
//! | [`hook`] | the backend's login hook: signed calls, its answer as the token's `uid`, `roles`, `ext` |
//! | [`sessions`] | token pairs, refresh rotation, logout, revocation checks |
//! | [`token`] | JWT claims, issue and verify |
//! | [`store`] | the state store interface; memory and Redis |
//! | [`wechat`] | the WeChat API ([`wechat::WechatApi`]) and WXBizDataCrypt |
//! | [`seal`] | sealing a login outcome under a key derived from its code |
//! | [`config`] | schema → resolve → validate → model |
//! | [`error`] | [`error::ApiError`]: every refusal, its status and stable code |
//! | [`respond`] | writing JSON responses and errors |
//! | [`metrics`] | Prometheus series (one registry, kept across reloads), the metered store |
//! | [`access`] | request ids, the access log's user hash and path |
//! | [`http1`] | the small HTTP/1 server of the metrics listener and the dev servers |
//! | [`upstream`], [`clock`], [`secret`], [`dev`] | upstream groups, time, masked secrets, `wxgate dev` |

#![forbid(unsafe_code)]

pub(crate) mod access;
pub(crate) mod auth;
pub mod clock;
pub mod config;
pub(crate) mod conn;
pub mod dev;
pub(crate) mod endpoints;
pub mod error;
pub(crate) mod headers;
pub mod hook;
pub(crate) mod http1;
pub mod keygen;
pub(crate) mod login;
pub(crate) mod metrics;
mod outbound;
pub(crate) mod proxy;
pub(crate) mod respond;
pub mod route;
pub(crate) mod seal;
pub mod secret;
mod ser;
pub mod server;
pub(crate) mod sessions;
pub mod state;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod token;
pub mod upstream;

pub mod wechat;
