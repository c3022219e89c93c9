//! A client connection below the request pipeline: the stream wrappers both
//! the listeners ([`crate::server`]) and the pipeline ([`crate::proxy`]) use.
//!
//! | module | what it knows |
//! |---|---|
//! | [`limits`] | [`ConnLimits`]: deadlines and caps of a connection (`[server]`); [`InternalLimits`] (`[metrics]`) |
//! | [`deadline`] | idle, header and body read deadlines on the stream ([`deadline::Deadlined`]) |
//! | [`tcp`] | an accepted socket as Pingora's `IO`, no bigger than the socket and its peer |
//! | [`buffered`] | the write buffer in front of each accepted socket |
//! | [`token_watch`] | closing an upgraded socket when its token ends |
//! | [`websocket`] | just enough RFC 6455 for that: the frame cursor and close frames |

pub(crate) mod buffered;
pub(crate) mod deadline;
mod limits;
pub(crate) mod tcp;
pub(crate) mod token_watch;
pub(crate) mod websocket;

pub use limits::{ConnLimits, InternalLimits};
