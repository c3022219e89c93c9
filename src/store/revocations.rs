//! The live revocations, held in memory by every instance on the Redis store
//! so that the revocation check of an authenticated request does no I/O.
//!
//! A [`Revocation`] is written to Redis once and reaches every instance
//! through the revocation feed (`redis/feed.rs`), which also says when the
//! set was last known to be complete ([`RevocationSet::caught_up`]). A check
//! made while the set cannot be shown complete for longer than
//! `max_staleness` fails with [`StoreError::Stale`], and `[store] on_error`
//! decides. Entries leave only when they expire (with the tokens they
//! revoke); their number is bounded by the writer (`max_revocations`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::StoreError;
use super::records::{revoked_by, EndReason, RevocationCheck};

/// One revocation, as written to the store and carried by the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// One token id.
    Token(String),
    /// A refresh-token family and the access tokens issued from it.
    Family(String),
    /// Everything of an openid issued at or before `before` (unix ms).
    Subject { openid: String, before: u64 },
    /// A family revoked because its session was ended, and why: this
    /// version refuses the family from it. Written before the family's own
    /// [`Revocation::Family`], which a version before reasons (skipping this
    /// kind) refuses it from.
    Ended { family: String, reason: EndReason },
}

impl Revocation {
    /// The text stored for it: `t:<jti>`, `f:<family>`, `s:<before>:<openid>`.
    pub(crate) fn member(&self) -> String {
        match self {
            Self::Token(jti) => format!("t:{jti}"),
            Self::Family(family) => format!("f:{family}"),
            Self::Subject { openid, before } => format!("s:{before}:{openid}"),
            Self::Ended { family, reason } => format!("e:{}:{family}", reason.as_str()),
        }
    }

    /// The revocation a stored text names (`None`: not one wxgate wrote).
    pub(crate) fn parse(member: &str) -> Option<Self> {
        let (kind, rest) = member.split_once(':')?;
        match kind {
            "t" if !rest.is_empty() => Some(Self::Token(rest.to_string())),
            "f" if !rest.is_empty() => Some(Self::Family(rest.to_string())),
            "s" => {
                let (before, openid) = rest.split_once(':')?;
                Some(Self::Subject {
                    openid: openid.to_string(),
                    before: before.parse().ok()?,
                })
            }
            "e" => {
                let (reason, family) = rest.split_once(':')?;
                (!family.is_empty()).then_some(())?;
                Some(Self::Ended {
                    family: family.to_string(),
                    reason: EndReason::parse(reason)?,
                })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Maps {
    /// jti → expiry (unix ms).
    tokens: HashMap<String, u64>,
    /// family → expiry (unix ms).
    families: HashMap<String, u64>,
    /// openid → (revoked before, unix ms; expiry, unix ms).
    subjects: HashMap<String, (u64, u64)>,
    /// family → why its session ended, and until when (unix ms).
    reasons: HashMap<String, (EndReason, u64)>,
}

impl Maps {
    fn len(&self) -> usize {
        self.tokens
            .len()
            .saturating_add(self.families.len())
            .saturating_add(self.subjects.len())
            .saturating_add(self.reasons.len())
    }
}

/// The live revocations and how fresh the knowledge of them is.
#[derive(Debug)]
pub struct RevocationSet {
    maps: RwLock<Maps>,
    /// Entries held (read without the lock: an empty set skips the maps).
    held: AtomicUsize,
    /// Bumped whenever revocations arrive: open sockets look again.
    generation: watch::Sender<u64>,
    /// Milliseconds after `epoch` when the set was last known complete (0: never).
    caught_up_ms: AtomicU64,
    epoch: Instant,
    max_staleness: Duration,
    /// Revocations received from the feed so far.
    received: AtomicU64,
}

impl RevocationSet {
    /// An empty set, not caught up yet.
    pub fn new(max_staleness: Duration) -> Self {
        Self::starting(max_staleness, Instant::now())
    }

    /// An empty set whose clock starts at `epoch`.
    fn starting(max_staleness: Duration, epoch: Instant) -> Self {
        Self {
            maps: RwLock::new(Maps::default()),
            held: AtomicUsize::new(0),
            generation: watch::channel(0).0,
            caught_up_ms: AtomicU64::new(0),
            epoch,
            max_staleness,
            received: AtomicU64::new(0),
        }
    }

    /// Add revocations (each with its expiry, unix ms); expired ones are skipped.
    pub(crate) fn apply(&self, items: impl IntoIterator<Item = (Revocation, u64)>, now_ms: u64) {
        let mut added = 0u64;
        {
            let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
            for (r, expires) in items {
                if expires <= now_ms {
                    continue;
                }
                added = added.saturating_add(1);
                match r {
                    Revocation::Token(jti) => later(maps.tokens.entry(jti).or_insert(0), expires),
                    Revocation::Family(f) => later(maps.families.entry(f).or_insert(0), expires),
                    Revocation::Subject { openid, before } => {
                        let e = maps.subjects.entry(openid).or_insert((0, 0));
                        e.0 = e.0.max(before);
                        e.1 = e.1.max(expires);
                    }
                    Revocation::Ended { family, reason } => {
                        later(maps.families.entry(family.clone()).or_insert(0), expires);
                        let e = maps.reasons.entry(family).or_insert((reason, 0));
                        e.1 = e.1.max(expires);
                    }
                }
            }
            self.held.store(maps.len(), Ordering::Release);
        }
        if added > 0 {
            self.received.fetch_add(added, Ordering::Relaxed);
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Drop what has expired.
    pub(crate) fn sweep(&self, now_ms: u64) {
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        maps.tokens.retain(|_, e| *e > now_ms);
        maps.families.retain(|_, e| *e > now_ms);
        maps.subjects.retain(|_, (_, e)| *e > now_ms);
        maps.reasons.retain(|_, (_, e)| *e > now_ms);
        self.held.store(maps.len(), Ordering::Release);
    }

    /// The set was complete as of `at` (an instant no later than now).
    pub(crate) fn caught_up(&self, at: Instant) {
        let ms = u64::try_from(at.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.caught_up_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How long since the set was last known complete (`None`: never).
    pub fn staleness(&self) -> Option<Duration> {
        match self.caught_up_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Whether checks fail for want of proof the set is complete.
    pub fn is_stale(&self) -> bool {
        self.staleness().is_none_or(|s| s > self.max_staleness)
    }

    /// Whether `check`'s token is revoked, from memory. Fails when the set
    /// cannot be shown complete within `max_staleness`.
    pub(crate) fn check(
        &self,
        check: &RevocationCheck<'_>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        match self.staleness() {
            Some(s) if s <= self.max_staleness => {}
            stale => return Err(StoreError::Stale { since: stale }),
        }
        if self.held.load(Ordering::Acquire) == 0 {
            return Ok(false);
        }
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        let live = |e: Option<&u64>| e.is_some_and(|e| *e > now_ms);
        let jti = check.jti.is_some_and(|j| live(maps.tokens.get(j)));
        let family = check.family.is_some_and(|f| live(maps.families.get(f)));
        let before = maps
            .subjects
            .get(check.openid)
            .filter(|(_, e)| *e > now_ms)
            .map(|(b, _)| *b);
        Ok(revoked_by(check, jti, before, family))
    }

    /// Why the session of `family` ended, if it was ended with a reason.
    pub(crate) fn reason(&self, family: &str, now_ms: u64) -> Option<EndReason> {
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        maps.reasons
            .get(family)
            .filter(|(_, e)| *e > now_ms)
            .map(|(r, _)| *r)
    }

    /// Entries held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Revocations received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Changes whenever revocations arrive.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

fn later(slot: &mut u64, expires: u64) {
    *slot = (*slot).max(expires);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<'a>(
        jti: &'a str,
        openid: &'a str,
        family: &'a str,
        issued_ms: u64,
    ) -> RevocationCheck<'a> {
        RevocationCheck {
            jti: Some(jti),
            openid,
            family: Some(family),
            issued_ms,
        }
    }

    #[test]
    fn members_round_trip() {
        for r in [
            Revocation::Token("j1".into()),
            Revocation::Family("fam".into()),
            Revocation::Subject {
                openid: "o:with:colons".into(),
                before: 42,
            },
            Revocation::Ended {
                family: "fam".into(),
                reason: EndReason::Replaced,
            },
        ] {
            assert_eq!(Revocation::parse(&r.member()), Some(r));
        }
        for bad in [
            "",
            "t:",
            "x:1",
            "s:notanumber:o",
            "s:12",
            "e:replaced:",
            "e:why:f",
            "e:f",
        ] {
            assert_eq!(Revocation::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_set_never_caught_up_refuses_to_answer() {
        let set = RevocationSet::new(Duration::from_secs(1));
        assert!(matches!(
            set.check(&check("j", "o", "f", 1), 0),
            Err(StoreError::Stale { since: None })
        ));
        set.caught_up(Instant::now());
        assert!(!set.check(&check("j", "o", "f", 1), 0).unwrap());
    }

    #[test]
    fn a_stale_set_refuses_to_answer() {
        let now = Instant::now();
        let set =
            RevocationSet::starting(Duration::from_millis(100), now - Duration::from_secs(10));
        set.caught_up(now - Duration::from_secs(5));
        assert!(set.is_stale());
        assert!(matches!(
            set.check(&check("j", "o", "f", 1), 0),
            Err(StoreError::Stale { since: Some(_) })
        ));
    }

    #[test]
    fn revocations_apply_until_they_expire() {
        let set = RevocationSet::new(Duration::from_secs(60));
        set.caught_up(Instant::now());
        let events = set.subscribe();
        set.apply(
            [
                (Revocation::Token("j".into()), 1_000),
                (Revocation::Family("f".into()), 2_000),
                (
                    Revocation::Subject {
                        openid: "o".into(),
                        before: 500,
                    },
                    3_000,
                ),
                (Revocation::Token("old".into()), 10),
            ],
            100,
        );
        assert!(events.has_changed().unwrap());
        assert_eq!(set.len(), 3, "the expired one is not held");
        assert!(set.check(&check("j", "x", "-", 900), 100).unwrap());
        assert!(
            !set.check(&check("j", "x", "-", 900), 1_000).unwrap(),
            "expired"
        );
        assert!(set.check(&check("-", "x", "f", 900), 1_500).unwrap());
        assert!(
            set.check(&check("-", "o", "-", 500), 100).unwrap(),
            "issued at `before`"
        );
        assert!(
            !set.check(&check("-", "o", "-", 501), 100).unwrap(),
            "issued after"
        );
        set.sweep(2_500);
        assert_eq!(set.len(), 1);
        assert_eq!(set.received(), 3);
    }

    #[test]
    fn a_later_subject_revocation_moves_before_forward_only() {
        let set = RevocationSet::new(Duration::from_secs(60));
        set.caught_up(Instant::now());
        let s = |before| Revocation::Subject {
            openid: "o".into(),
            before,
        };
        set.apply([(s(900), 5_000), (s(100), 5_000)], 0);
        assert!(set.check(&check("-", "o", "-", 800), 0).unwrap());
    }
}
