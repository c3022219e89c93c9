//! wxgate: an authentication gateway for WeChat Mini Program backends.
//!
//! A mini program logs in with `wx.login()`; wxgate exchanges the code with
//! WeChat, keeps `session_key` server-side and issues a signed JWT. On every
//! other request it checks `Authorization: Bearer <jwt>`, strips client-sent
//! identity headers, injects `X-OpenID` and forwards to the upstream.
//!
//! The request pipeline lives in [`proxy`]; every step it takes is a call into
//! a module that knows nothing about Pingora: [`route`] (canonical path and
//! route table), [`token`] (JWT), [`headers`] (header hygiene and identity).

#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod dev;
pub mod endpoints;
pub mod error;
pub mod headers;
pub mod login;
pub mod proxy;
pub mod respond;
pub mod route;
pub mod seal;
pub mod secret;
pub mod server;
pub mod sessions;
pub mod state;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod token;
pub mod upstream;
pub mod wechat;
