//! Store operations, counted and timed: a [`Store`] that wraps the configured one.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use super::register::{MetricsError, BUCKETS};
use crate::store::{
    AccessTokenRecord, Ban, CodeClaim, EndReason, Eviction, MapStats, RefreshRecord, RefreshTake,
    RevocationCheck, SessionEntry, Store, StoreError, WxSession,
};

/// Store operations, by name (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    PutSession,
    GetSession,
    AddSession,
    TouchSession,
    ListSessions,
    RemoveSessions,
    ClaimCode,
    TakeOverCode,
    ReleaseCode,
    PutCodeOutcome,
    GetCodeOutcome,
    RevokeToken,
    RevokeSubject,
    RevokeFamily,
    EndFamily,
    PutBan,
    GetBan,
    RemoveBan,
    LinkUid,
    UidOpenids,
    IsRevoked,
    IsRevokedNow,
    PutRefresh,
    TakeRefresh,
    CompleteRefresh,
    GetRefresh,
    GetAccessToken,
    PutAccessToken,
    TakeLease,
    ReleaseLease,
    Count,
    Ping,
}

impl Op {
    const ALL: [Op; 32] = [
        Op::PutSession,
        Op::GetSession,
        Op::AddSession,
        Op::TouchSession,
        Op::ListSessions,
        Op::RemoveSessions,
        Op::ClaimCode,
        Op::TakeOverCode,
        Op::ReleaseCode,
        Op::PutCodeOutcome,
        Op::GetCodeOutcome,
        Op::RevokeToken,
        Op::RevokeSubject,
        Op::RevokeFamily,
        Op::EndFamily,
        Op::PutBan,
        Op::GetBan,
        Op::RemoveBan,
        Op::LinkUid,
        Op::UidOpenids,
        Op::IsRevoked,
        Op::IsRevokedNow,
        Op::PutRefresh,
        Op::TakeRefresh,
        Op::CompleteRefresh,
        Op::GetRefresh,
        Op::GetAccessToken,
        Op::PutAccessToken,
        Op::TakeLease,
        Op::ReleaseLease,
        Op::Count,
        Op::Ping,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::PutSession => "put_session",
            Op::GetSession => "get_session",
            Op::AddSession => "add_session",
            Op::TouchSession => "touch_session",
            Op::ListSessions => "list_sessions",
            Op::RemoveSessions => "remove_sessions",
            Op::ClaimCode => "claim_code",
            Op::TakeOverCode => "take_over_code",
            Op::ReleaseCode => "release_code",
            Op::PutCodeOutcome => "put_code_outcome",
            Op::GetCodeOutcome => "get_code_outcome",
            Op::RevokeToken => "revoke_token",
            Op::RevokeSubject => "revoke_subject",
            Op::RevokeFamily => "revoke_family",
            Op::EndFamily => "end_family",
            Op::PutBan => "put_ban",
            Op::GetBan => "get_ban",
            Op::RemoveBan => "remove_ban",
            Op::LinkUid => "link_uid",
            Op::UidOpenids => "uid_openids",
            Op::IsRevoked => "is_revoked",
            Op::IsRevokedNow => "is_revoked_now",
            Op::PutRefresh => "put_refresh",
            Op::TakeRefresh => "take_refresh",
            Op::CompleteRefresh => "complete_refresh",
            Op::GetRefresh => "get_refresh",
            Op::GetAccessToken => "get_access_token",
            Op::PutAccessToken => "put_access_token",
            Op::TakeLease => "take_lease",
            Op::ReleaseLease => "release_lease",
            Op::Count => "count",
            Op::Ping => "ping",
        }
    }
}

/// One operation's series, resolved at start-up.
struct OpSeries {
    ok: IntCounter,
    duration: Histogram,
}

/// The counters and histograms of store operations.
pub(crate) struct StoreMetrics {
    ops: Vec<OpSeries>,
    /// Failures, by operation and outcome (rare: looked up when they happen).
    operations: IntCounterVec,
}

impl StoreMetrics {
    pub(super) fn new(r: &Registry) -> Result<Self, MetricsError> {
        let operations = IntCounterVec::new(
            Opts::new(
                "wxgate_store_operations_total",
                "Store operations, by operation and outcome (ok, full, timeout, failing_fast, error).",
            ),
            &["op", "outcome"],
        )?;
        r.register(Box::new(operations.clone()))?;
        let duration = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "wxgate_store_operation_duration_seconds",
                "Duration of a store operation, by operation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["op"],
        )?;
        r.register(Box::new(duration.clone()))?;
        let ops = Op::ALL
            .iter()
            .map(|op| OpSeries {
                ok: operations.with_label_values(&[op.name(), "ok"]),
                duration: duration.with_label_values(&[op.name()]),
            })
            .collect();
        Ok(Self { ops, operations })
    }

    fn record<T>(&self, op: Op, result: &Result<T, StoreError>, took: Duration) {
        let Some(series) = self.ops.get(op as usize) else {
            return;
        };
        series.duration.observe(took.as_secs_f64());
        match result {
            Ok(_) => series.ok.inc(),
            Err(e) => self
                .operations
                .with_label_values(&[op.name(), store_error_label(e)])
                .inc(),
        }
    }
}

/// The outcome label of a store error.
fn store_error_label(e: &StoreError) -> &'static str {
    match e {
        StoreError::Full { .. } => "full",
        StoreError::Timeout(_) => "timeout",
        StoreError::FailingFast => "failing_fast",
        StoreError::Stale { .. } => "stale",
        StoreError::NotReplicated { .. } => "not_replicated",
        _ => "error",
    }
}

/// The configured store, with every operation counted and timed.
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<StoreMetrics>,
    /// With `[traces]`: a span per operation made for a sampled request's
    /// endpoint (never for the proxy's revocation check, from memory).
    traces: Option<Arc<crate::traces::Traces>>,
}

impl MeteredStore {
    /// Wrap `inner`, recording into `metrics`.
    pub(crate) fn wrap(
        inner: Arc<dyn Store>,
        metrics: Arc<StoreMetrics>,
        traces: Option<Arc<crate::traces::Traces>>,
    ) -> Arc<dyn Store> {
        Arc::new(Self {
            inner,
            metrics,
            traces,
        })
    }

    async fn time<T>(
        &self,
        op: Op,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let result = f.await;
        let took = start.elapsed();
        self.metrics.record(op, &result, took);
        if let Some(t) = self.traces.as_ref().filter(|_| op != Op::IsRevoked) {
            let failed = result.as_ref().err().map(store_error_label);
            t.record(
                || format!("store {}", op.name()),
                took,
                || vec![opentelemetry::KeyValue::new("wxgate.store.op", op.name())],
                failed,
            );
        }
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn put_session(
        &self,
        openid: &str,
        session: &WxSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(Op::PutSession, self.inner.put_session(openid, session, ttl))
            .await
    }

    async fn get_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError> {
        self.time(Op::GetSession, self.inner.get_session(openid))
            .await
    }

    async fn add_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        self.time(Op::AddSession, self.inner.add_session(openid, entry, ttl))
            .await
    }

    async fn touch_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(
            Op::TouchSession,
            self.inner.touch_session(openid, entry, ttl),
        )
        .await
    }

    async fn list_sessions(&self, openid: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.time(Op::ListSessions, self.inner.list_sessions(openid))
            .await
    }

    async fn remove_sessions(&self, openid: &str, ids: &[String]) -> Result<(), StoreError> {
        self.time(Op::RemoveSessions, self.inner.remove_sessions(openid, ids))
            .await
    }

    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<CodeClaim, StoreError> {
        self.time(Op::ClaimCode, self.inner.claim_code(code_hash, ttl))
            .await
    }

    async fn take_over_code(
        &self,
        code_hash: &str,
        seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.time(
            Op::TakeOverCode,
            self.inner.take_over_code(code_hash, seen, ttl),
        )
        .await
    }

    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError> {
        self.time(Op::ReleaseCode, self.inner.release_code(code_hash))
            .await
    }

    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(
            Op::PutCodeOutcome,
            self.inner.put_code_outcome(code_hash, sealed, ttl),
        )
        .await
    }

    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError> {
        self.time(Op::GetCodeOutcome, self.inner.get_code_outcome(code_hash))
            .await
    }

    async fn end_family(
        &self,
        family: &str,
        reason: EndReason,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(Op::EndFamily, self.inner.end_family(family, reason, ttl))
            .await
    }

    async fn ended_reason(&self, family: &str) -> Result<Option<EndReason>, StoreError> {
        self.inner.ended_reason(family).await
    }

    async fn put_ban(
        &self,
        openid: &str,
        ban: &Ban,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.time(Op::PutBan, self.inner.put_ban(openid, ban, ttl))
            .await
    }

    async fn get_ban(&self, openid: &str) -> Result<Option<Ban>, StoreError> {
        self.time(Op::GetBan, self.inner.get_ban(openid)).await
    }

    async fn remove_ban(&self, openid: &str) -> Result<bool, StoreError> {
        self.time(Op::RemoveBan, self.inner.remove_ban(openid))
            .await
    }

    async fn link_uid(&self, uid: &str, openid: &str, ttl: Duration) -> Result<(), StoreError> {
        self.time(Op::LinkUid, self.inner.link_uid(uid, openid, ttl))
            .await
    }

    async fn uid_openids(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        self.time(Op::UidOpenids, self.inner.uid_openids(uid)).await
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), StoreError> {
        self.time(Op::RevokeToken, self.inner.revoke_token(jti, ttl))
            .await
    }

    async fn revoke_subject(
        &self,
        openid: &str,
        before: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(
            Op::RevokeSubject,
            self.inner.revoke_subject(openid, before, ttl),
        )
        .await
    }

    async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), StoreError> {
        self.time(Op::RevokeFamily, self.inner.revoke_family(family, ttl))
            .await
    }

    async fn is_revoked(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        self.time(Op::IsRevoked, self.inner.is_revoked(check)).await
    }

    async fn put_refresh(
        &self,
        hash: &str,
        record: &RefreshRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(Op::PutRefresh, self.inner.put_refresh(hash, record, ttl))
            .await
    }

    async fn take_refresh(&self, hash: &str, ttl: Duration) -> Result<RefreshTake, StoreError> {
        self.time(Op::TakeRefresh, self.inner.take_refresh(hash, ttl))
            .await
    }

    async fn complete_refresh(&self, hash: &str, ttl: Duration) -> Result<(), StoreError> {
        self.time(Op::CompleteRefresh, self.inner.complete_refresh(hash, ttl))
            .await
    }

    async fn get_refresh(&self, hash: &str) -> Result<RefreshTake, StoreError> {
        self.time(Op::GetRefresh, self.inner.get_refresh(hash))
            .await
    }

    async fn get_access_token(&self, appid: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        self.time(Op::GetAccessToken, self.inner.get_access_token(appid))
            .await
    }

    async fn put_access_token(
        &self,
        appid: &str,
        record: &AccessTokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.time(
            Op::PutAccessToken,
            self.inner.put_access_token(appid, record, ttl),
        )
        .await
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.time(Op::TakeLease, self.inner.take_lease(name, holder, ttl))
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.time(Op::ReleaseLease, self.inner.release_lease(name, holder))
            .await
    }

    async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        self.time(Op::Count, self.inner.count(key, ttl)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.time(Op::Ping, self.inner.ping()).await
    }

    async fn eviction(&self) -> Result<Eviction, StoreError> {
        self.inner.eviction().await
    }

    fn map_stats(&self) -> Vec<MapStats> {
        self.inner.map_stats()
    }

    async fn is_revoked_now(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        self.time(Op::IsRevoked, self.inner.is_revoked_now(check))
            .await
    }

    async fn settle(&self, limit: Duration) -> bool {
        self.inner.settle(limit).await
    }

    fn revocation_events(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.revocation_events()
    }

    fn status(&self) -> Option<crate::store::StoreStatus> {
        self.inner.status()
    }
}
