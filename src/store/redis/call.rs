//! How every Redis call runs: under the timeout, failing fast for a moment
//! after the store was found unreachable, with errors named by their code.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{node, RedisStore};
use crate::store::error::{RedisFault, StoreError};

/// How long calls fail fast after a failure.
const BACKOFF: Duration = Duration::from_millis(500);

impl RedisStore {
    /// Run one Redis call with the timeout and the fail-fast window.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.timeout, true, f).await
    }

    /// [`Self::call`] for a call allowed `limit` (a write that waits for
    /// replicas: the timeout and `replica_ack_timeout`). Unless
    /// `timeout_is_outage`, running out of time does not make every call
    /// fail fast (a revocation queued behind others that wait for missing
    /// replicas says nothing of Redis itself).
    pub(super) async fn call_within<T, F>(
        &self,
        limit: Duration,
        timeout_is_outage: bool,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.now_ms() < self.down_until.load(Ordering::Acquire) {
            return Err(StoreError::FailingFast);
        }
        let (error, connection_lost) = match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => return Ok(v),
            // Redis at `maxmemory` under `noeviction` refuses writes: full, not down.
            Ok(Err(e)) if server_code(&e).as_deref() == Some("OOM") => {
                tracing::error!("Redis is at its maxmemory and refuses writes: raise maxmemory (keys are never evicted under noeviction)");
                return Err(StoreError::Full {
                    what: "Redis maxmemory",
                });
            }
            Ok(Err(e)) if server_code(&e).as_deref() == Some("WXFULL") => {
                tracing::error!(max_revocations = self.max_revocations, "the live revocations are at [store] max_revocations: a revocation was refused (none is dropped); raise the bound");
                return Err(StoreError::Full {
                    what: "max_revocations",
                });
            }
            Ok(Err(e)) => (
                StoreError::Redis(RedisFault::from(&e)),
                node::needs_new_master(&e),
            ),
            Err(_) => (StoreError::Timeout(limit), timeout_is_outage),
        };
        if connection_lost {
            // Everyone's calls would fail the same way: fail fast for a while.
            self.down_until.store(
                self.now_ms().saturating_add(BACKOFF.as_millis() as u64),
                Ordering::Release,
            );
        }
        tracing::warn!(error = %crate::error::chain(&error), "store call failed");
        Err(error)
    }
}

/// The code of the error Redis answered, also when one command of a
/// pipeline failed (the error then holds each failed command's).
fn server_code(e: &redis::RedisError) -> Option<String> {
    if let Some(code) = e.code() {
        return Some(code.to_string());
    }
    let errors = e.clone().into_server_errors()?;
    errors.first().map(|(_, s)| s.code().to_string())
}
