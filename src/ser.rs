//! How validated config values print back, for `wxgate check`.
//!
//! Each section's owner (token, store, login, ...) derives `Serialize` for
//! its config with these helpers: durations as `1h 30m`, addresses and rates
//! as written, every secret as `***`.

use std::time::Duration;

use serde::Serializer;

use crate::secret::Secret;

/// A duration as `humantime` writes it (`1h 30m`).
pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// An optional duration, as [`ser_duration`].
pub(crate) fn ser_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// A value by its `Display` (addresses, rates).
pub(crate) fn ser_display<T: std::fmt::Display, S: Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An optional value by its `Display`.
pub(crate) fn ser_opt_display<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// A list of values by their `Display`.
pub(crate) fn ser_display_list<T: std::fmt::Display, S: Serializer>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}

/// A secret: `***`.
pub(crate) fn ser_secret<S: Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

/// An optional secret: `***` when set.
pub(crate) fn ser_secret_opt<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}
