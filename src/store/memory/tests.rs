use super::*;
use crate::secret::Secret;

const MINUTE: Duration = Duration::from_secs(60);

fn session(key: &str) -> WxSession {
    WxSession {
        session_key: Secret::from(key),
        unionid: None,
        appid: "wxapp".into(),
        login_at: 1,
    }
}

fn limits(n: usize) -> MemoryLimits {
    MemoryLimits {
        max_sessions: n,
        max_refresh_tokens: n,
        max_revocations: n,
        max_login_codes: n,
        max_counters: n,
    }
}

fn record(family: &str) -> RefreshRecord {
    RefreshRecord {
        openid: "o1".into(),
        unionid: None,
        appid: None,
        family: family.into(),
        user: Default::default(),
        issued_ms: 1,
        expires_at: 2,
        created_ms: 0,
        refreshed_ms: 0,
    }
}

#[tokio::test]
async fn sessions_are_replaced_per_openid() {
    let s = MemoryStore::new(&limits(10));
    s.put_session("o1", &session("k1"), MINUTE).await.unwrap();
    s.put_session("o1", &session("k2"), MINUTE).await.unwrap();
    let got = s.get_session("o1").await.unwrap().unwrap();
    assert!(got.session_key.ct_eq(b"k2"));
    assert_eq!(s.get_session("o2").await.unwrap(), None);
}

#[tokio::test]
async fn a_full_revocation_map_refuses_and_keeps_every_revocation() {
    let s = MemoryStore::new(&limits(50));
    for i in 0..50 {
        s.revoke_token(&format!("j{i}"), MINUTE).await.unwrap();
    }
    let err = s.revoke_token("one-more", MINUTE).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Full {
                what: "revoked_tokens"
            }
        ),
        "{err:?}"
    );
    for i in 0..50 {
        let check = RevocationCheck {
            jti: Some(&format!("j{i}")),
            openid: "o",
            family: None,
            issued_ms: 0,
        };
        assert!(s.is_revoked(&check).await.unwrap(), "j{i} was forgotten");
    }
    // Re-revoking a held id needs no room.
    s.revoke_token("j7", MINUTE).await.unwrap();
    // Families and subjects have their own bound.
    s.revoke_family("f1", MINUTE).await.unwrap();
    s.revoke_subject("o1", 5, MINUTE).await.unwrap();
}

#[tokio::test]
async fn a_full_revocation_map_takes_new_ones_once_old_ones_expire() {
    let s = MemoryStore::new(&limits(20));
    for i in 0..20 {
        s.revoke_family(&format!("f{i}"), Duration::ZERO)
            .await
            .unwrap();
    }
    for i in 0..20 {
        s.revoke_family(&format!("g{i}"), MINUTE).await.unwrap();
    }
    assert_eq!(s.revoked_family.len(), 20);
}

#[tokio::test]
async fn full_sessions_drop_the_least_recently_used() {
    let s = MemoryStore::new(&limits(16));
    for i in 0..16 {
        s.put_session(&format!("o{i}"), &session("k"), MINUTE)
            .await
            .unwrap();
    }
    // Reading a session counts as use; the sessions of the shard that
    // takes the newcomer go oldest first.
    for i in 0..100 {
        assert!(s.get_session("o0").await.unwrap().is_some());
        s.put_session(&format!("new{i}"), &session("k"), MINUTE)
            .await
            .unwrap();
        assert!(s.sessions.len() <= 16 + 1, "{}", s.sessions.len());
    }
    assert!(
        s.get_session("o0").await.unwrap().is_some(),
        "a session in use was dropped"
    );
    assert!(s.get_session("new99").await.unwrap().is_some());
    assert!(s.sessions.dropped() >= 84);
}

#[tokio::test]
async fn a_refresh_token_keeps_its_rotation_state() {
    let s = MemoryStore::new(&limits(10));
    s.put_refresh("h", &record("f"), MINUTE).await.unwrap();
    assert!(matches!(
        s.take_refresh("h", MINUTE).await.unwrap(),
        RefreshTake::Fresh(_)
    ));
    // Pending: a concurrent presentation is reuse.
    assert!(matches!(
        s.take_refresh("h", MINUTE).await.unwrap(),
        RefreshTake::Reused(_)
    ));
    s.complete_refresh("h", MINUTE).await.unwrap();
    assert!(matches!(
        s.take_refresh("h", MINUTE).await.unwrap(),
        RefreshTake::Reused(_)
    ));
    assert!(matches!(
        s.take_refresh("x", MINUTE).await.unwrap(),
        RefreshTake::Unknown
    ));
}

#[tokio::test]
async fn counters_count_and_keep_their_window() {
    let s = MemoryStore::new(&limits(10));
    assert_eq!(s.count("k", MINUTE).await.unwrap(), 1);
    assert_eq!(s.count("k", MINUTE).await.unwrap(), 2);
    assert_eq!(s.count("z", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(s.count("z", Duration::ZERO).await.unwrap(), 1);
}
