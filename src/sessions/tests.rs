//! Sessions over the memory store: rotation, reuse, logout, revocation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use crate::testing::LoginHarness;

/// A new token pair for `openid`, nothing from a login hook.
async fn pair(h: &LoginHarness, openid: &str) -> Grant {
    h.sessions
        .issue_pair(openid, None, None, None, &UserClaims::default())
        .await
        .unwrap()
}

fn identity(s: &Sessions, token: &str) -> Identity {
    s.tokens().verify(token).unwrap()
}

#[tokio::test]
async fn refresh_rotates_within_the_family() {
    let h = LoginHarness::new("");
    let first = h
        .sessions
        .issue_pair("o1", Some("u1"), None, None, &UserClaims::default())
        .await
        .unwrap();
    let second = h.sessions.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.token, first.token);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        (second.openid.as_str(), second.unionid.as_deref()),
        ("o1", Some("u1"))
    );
    let (a, b) = (
        identity(&h.sessions, &first.token),
        identity(&h.sessions, &second.token),
    );
    assert_eq!(a.family, b.family);
    assert!(a.family.is_some());
    h.sessions.check_revocation(&b).await.unwrap();
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_family() {
    let h = LoginHarness::new("");
    let first = pair(&h, "o1").await;
    let second = h.sessions.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(
        h.sessions.refresh(&first.refresh_token).await.unwrap_err(),
        ApiError::RefreshTokenReused
    );
    // Everything of the family is dead: the new access token and refresh token.
    assert_eq!(
        h.sessions
            .check_revocation(&identity(&h.sessions, &second.token))
            .await
            .unwrap_err(),
        ApiError::TokenRevoked
    );
    assert_eq!(
        h.sessions.refresh(&second.refresh_token).await.unwrap_err(),
        ApiError::RefreshTokenInvalid
    );
    // Another login of the same user is another family.
    let other = pair(&h, "o1").await;
    h.sessions
        .check_revocation(&identity(&h.sessions, &other.token))
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_or_malformed_refresh_tokens_are_invalid() {
    let h = LoginHarness::new("");
    for t in ["", "short", &"x".repeat(43), &"é".repeat(40)] {
        assert_eq!(
            h.sessions.refresh(t).await.unwrap_err(),
            ApiError::RefreshTokenInvalid,
            "{t:?}"
        );
    }
}

#[tokio::test]
async fn logout_ends_that_session_only() {
    let h = LoginHarness::new("");
    let a = pair(&h, "o1").await;
    let b = pair(&h, "o1").await;
    let id_a = identity(&h.sessions, &a.token);
    h.sessions.logout(&id_a, false).await.unwrap();
    assert_eq!(
        h.sessions.check_revocation(&id_a).await.unwrap_err(),
        ApiError::TokenRevoked
    );
    // The refresh token of that session dies with it.
    assert_eq!(
        h.sessions.refresh(&a.refresh_token).await.unwrap_err(),
        ApiError::RefreshTokenInvalid
    );
    // Another session of the same user lives on.
    h.sessions
        .check_revocation(&identity(&h.sessions, &b.token))
        .await
        .unwrap();
    h.sessions.refresh(&b.refresh_token).await.unwrap();
}

#[tokio::test]
async fn logout_after_a_refresh_ends_the_whole_family() {
    let h = LoginHarness::new("");
    let first = pair(&h, "o1").await;
    let second = h.sessions.refresh(&first.refresh_token).await.unwrap();
    // Logging out with the older access token ends the rotated pair too.
    h.sessions
        .logout(&identity(&h.sessions, &first.token), false)
        .await
        .unwrap();
    assert_eq!(
        h.sessions
            .check_revocation(&identity(&h.sessions, &second.token))
            .await
            .unwrap_err(),
        ApiError::TokenRevoked
    );
    assert_eq!(
        h.sessions.refresh(&second.refresh_token).await.unwrap_err(),
        ApiError::RefreshTokenInvalid
    );
}

#[tokio::test]
async fn logout_of_a_token_claiming_the_end_of_time_does_not_overflow() {
    let h = LoginHarness::new("");
    for exp in [i64::MAX as u64, u64::MAX, 0] {
        let id = Identity {
            openid: "o1".into(),
            unionid: None,
            appid: None,
            jti: Some(format!("jti-{exp}")),
            family: Some(format!("fam-{exp}")),
            exp,
            iat: None,
            issued_ms: 0,
            user: UserClaims::default(),
        };
        h.sessions.logout(&id, false).await.unwrap();
        assert_eq!(
            h.sessions.check_revocation(&id).await.unwrap_err(),
            ApiError::TokenRevoked
        );
    }
}

#[test]
fn a_token_revocation_outlives_the_token_and_is_bounded() {
    let h = LoginHarness::new("");
    let now = unix_now();
    let leeway = h.sessions.leeway;
    let ttl = h.sessions.token_revocation_ttl(now + 100);
    assert!(ttl >= Duration::from_secs(100) + leeway);
    assert_eq!(
        h.sessions.token_revocation_ttl(u64::MAX),
        MAX_TTL + leeway + Duration::from_secs(1)
    );
    assert_eq!(
        h.sessions.token_revocation_ttl(0),
        leeway + Duration::from_secs(1)
    );
}

#[tokio::test]
async fn logout_all_revokes_every_token_and_refresh_token_of_the_user() {
    let h = LoginHarness::new("");
    let a = pair(&h, "o1").await;
    let b = pair(&h, "o1").await;
    let other_user = pair(&h, "o2").await;
    h.sessions
        .logout(&identity(&h.sessions, &a.token), true)
        .await
        .unwrap();
    assert_eq!(
        h.sessions
            .check_revocation(&identity(&h.sessions, &b.token))
            .await
            .unwrap_err(),
        ApiError::TokenRevoked
    );
    assert_eq!(
        h.sessions.refresh(&b.refresh_token).await.unwrap_err(),
        ApiError::RefreshTokenInvalid
    );
    h.sessions
        .check_revocation(&identity(&h.sessions, &other_user.token))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hook_answer_too_large_for_a_token_issues_nothing() {
    let h = LoginHarness::new("");
    // Within every limit of the hook's answer, yet over [jwt] max_token_bytes (4096).
    let user = UserClaims {
        uid: Some("u".repeat(128)),
        roles: (0..32).map(|i| format!("{i:0>64}")).collect(),
        ext: [("plan".to_string(), "p".repeat(1000))].into(),
        risk: None,
    };
    let err = h
        .sessions
        .issue_pair("o1", None, None, None, &user)
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::HookUnavailable { timed_out: false });
    // Nothing was stored for it: the harness store has no refresh token.
    assert!(h
        .store
        .map_stats()
        .iter()
        .all(|m| m.kind != "refresh_tokens" || m.entries == 0));
    // A smaller answer is issued, and verifies.
    let small = UserClaims {
        uid: Some("u-1".into()),
        roles: vec!["admin".into()],
        ext: Default::default(),
        risk: Some(2),
    };
    let grant = h
        .sessions
        .issue_pair("o1", None, None, None, &small)
        .await
        .unwrap();
    let id = h.sessions.tokens().verify(&grant.token).unwrap();
    assert_eq!(id.user, small);
}
