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
//! server (admission) ─▶ conn (read deadlines, write buffer)
//!        ─▶ proxy::early_request_filter   framing::check (a length or field read two ways: 400, closed);
//!                                         keep-alive, pipelining; the client (IP, trusted peer), once
//!        ─▶ proxy::request_filter ─▶ proxy::decide
//!             route::canonicalize ─▶ route::Endpoints::find ──▶ endpoints::answer
//!             │                                                   method, auth::authenticate,
//!             │                                                   endpoints::body, one file per
//!             │                                                   endpoint ─▶ login / sessions
//!             route::RouteTable::route ─▶ Arc<Route>, kept in the request context
//!        ─▶ proxy::admit                  auth::authenticate_for (token + revocation), Route::admits
//!        ─▶ proxy::upstream_peer          the route's upstream group (round-robin, health checks)
//!        ─▶ proxy::upstream_request_filter  headers::sanitize ─▶ headers::inject
//!        ─▶ upstream; failures: proxy::fail_to_proxy ─▶ error::ApiError ─▶ respond
//!        ─▶ a 101 on a route that closes sockets with their token: conn::token_watch
//! ```
//!
//! # Where things live
//!
//! Each config section lives with the module that owns it (`[jwt]` in
//! [`token`], `[store]` in [`store`], `[login]` in `login`, `[login.hook]` in
//! [`hook`], `[wechat]` in [`wechat`], `[[routes]]` in [`route`], connection
//! limits in `conn`); [`config`] reads the file and assembles them, and no
//! domain module imports it. No file imports another that imports it back
//! (`tests/layout.rs`).
//!
//! | module | what it knows |
//! |---|---|
//! | [`server`] | listeners, TLS, connection caps ([`server::admission`]) fitted to the open-file limit, the internal listener (metrics, access token) and its own limits, reload, graceful shutdown |
//! | `conn` | a client connection below the pipeline: read deadlines, write buffer, token watch, WebSocket frames |
//! | [`state`] | [`state::GatewayState`]: everything a request reads, built once; [`state::Deps`] |
//! | `proxy` | the Pingora `ProxyHttp` glue: the pipeline above; its decisions in `proxy::decide` |
//! | `relay` | wxgate's own path for the common HTTP/1.1 request and HTTP/2 stream (`[server] http1`, `http2`): the same decisions, the upstream request written without Pingora's header maps |
//! | [`logs`] | the process's logging: third-party crates capped below the levels that print headers, warnings rate-limited per call site |
//! | `framing` | request framing: a length (`Transfer-Encoding`, `Content-Length`) or an HTTP/2 field value that could be read two ways |
//! | [`route`] | canonical paths, the gateway's own endpoint paths, the route table: each route one [`route::Route`] |
//! | `auth` | the one Bearer + revocation check |
//! | `headers` | header hygiene, identity header names and injection, the client IP |
//! | [`assertion`] | `X-WXGate-Assertion`: a short JWT per forwarded request, bound to it |
//! | `endpoints` | `/healthz`, `/readyz`, `/wx/*`: body decoding, typed requests and responses |
//! | `login` | `jscode2session` once per code, rate limits, phone numbers |
//! | [`hook`] | the backend's login hook: signed calls, its answer as the token's `uid`, `roles`, `ext` |
//! | `sessions` | token pairs, refresh rotation, logout, revocation checks |
//! | [`token`] | JWT claims, keys, issue and verify |
//! | [`store`] | the state store interface and records; memory and Redis |
//! | [`wechat`] | WeChat's API: what it answers ([`wechat::reply`]), the calls ([`wechat::client`]), the shared access token, WXBizDataCrypt |
//! | `outbound` | the HTTP clients of the calls wxgate makes (WeChat, the hook) |
//! | `seal` | sealing a login outcome under a key derived from its code |
//! | [`config`] | schema → resolve → validate → model, assembled from the owners' sections |
//! | [`error`] | [`error::ApiError`]: every refusal, its status and stable code |
//! | `respond` | writing JSON responses and errors |
//! | [`traces`] | OpenTelemetry: a span per request and its children, W3C trace context, OTLP export |
//! | [`status`] | the status page on the internal listener: server-rendered HTML, sparklines of sampled counters |
//! | `metrics` | Prometheus series (one registry, kept across reloads), the metered store |
//! | `access` | request ids, the access log's user hash and path |
//! | `http1` | the small HTTP/1 server of the internal listener (bounded: caps, deadlines) and the dev servers |
//! | [`clock`] | the wall clock (read nowhere else) and random ids |
//! | [`upstream`], [`secret`], [`keygen`], [`dev`] | upstream groups, masked secrets, `wxgate keygen`, `wxgate dev` |

#![forbid(unsafe_code)]

pub(crate) mod access;
pub mod assertion;
pub mod audit;
pub(crate) mod auth;
pub mod clock;
pub mod config;
pub(crate) mod conn;
pub mod dev;
pub(crate) mod endpoints;
pub mod error;
pub(crate) mod framing;
pub(crate) mod headers;
pub mod hook;
pub(crate) mod http1;
pub mod keygen;
pub(crate) mod login;
pub mod logs;
pub(crate) mod metrics;
mod outbound;
pub(crate) mod proxy;
pub(crate) mod relay;
pub(crate) mod respond;
pub mod route;
pub(crate) mod seal;
pub mod secret;
mod ser;
pub mod server;
pub(crate) mod sessions;
pub mod state;
pub mod status;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod token;
pub mod traces;
pub mod upstream;

pub mod wechat;
