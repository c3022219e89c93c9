#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;
use crate::route::Endpoint;
use crate::state::Deps;
use crate::store::memory::MemoryStore;
use crate::testing;
use pingora_error::ErrorSource;

/// Public `/pub/`, optional `/opt/`, protected `/`; no `[wechat]`.
fn state() -> GatewayState {
    let config = testing::config(
        "",
        &[
            ("/pub/", "public"),
            ("/opt/", "optional"),
            ("/", "required"),
        ],
    );
    GatewayState::new(&config, Deps::with_store(Arc::new(MemoryStore::default()))).unwrap()
}

fn req(path: &[u8], auth: Option<&str>) -> RequestHeader {
    let mut r = RequestHeader::build("GET", path, None).unwrap();
    if let Some(a) = auth {
        r.append_header("Authorization", a).unwrap();
    }
    r
}

fn token(s: &GatewayState) -> String {
    s.tokens()
        .issue(&crate::token::NewToken {
            openid: "o1",
            unionid: Some("u1"),
            ..Default::default()
        })
        .unwrap()
        .0
}

/// Decide and admit, as `request_filter` does.
async fn forward(s: &GatewayState, r: &RequestHeader) -> Result<Forward, ApiError> {
    match decide(s, r.raw_path())? {
        Decision::Route(routed) => {
            let auth = r.headers.get_all(http::header::AUTHORIZATION);
            admit(s, auth.iter().map(|v| v.as_bytes()), routed).await
        }
        Decision::Endpoint(ep) => panic!("answered by the gateway: {ep:?}"),
    }
}

#[tokio::test]
async fn health_endpoints_are_decided_before_routes() {
    let s = state();
    assert!(matches!(
        decide(&s, b"/healthz"),
        Ok(Decision::Endpoint(Endpoint::Healthz))
    ));
    assert!(matches!(
        decide(&s, b"/readyz?x=1"),
        Ok(Decision::Endpoint(Endpoint::Readyz))
    ));
    // Login endpoints do not exist without [wechat]: /wx/login is a protected path.
    assert_eq!(
        forward(&s, &req(b"/wx/login", None)).await.err(),
        Some(ApiError::TokenMissing)
    );
}

#[tokio::test]
async fn protected_route_yields_identity_and_route() {
    let s = state();
    let t = token(&s);
    let f = forward(&s, &req(b"/api/x", Some(&format!("Bearer {t}"))))
        .await
        .unwrap();
    assert_eq!(f.route.index, 2);
    let v = f.identity.unwrap();
    assert_eq!(v.id.openid, "o1");
    assert_eq!(v.values.openid, "o1");
    assert_eq!(
        v.values.unionid.as_ref().map(|h| h.as_bytes()),
        Some(&b"u1"[..])
    );
    assert_eq!(f.target, None);
}

#[tokio::test]
async fn revoked_token_is_refused_on_a_protected_route() {
    let s = state();
    let t = token(&s);
    let id = s.tokens().verify(&t).unwrap();
    s.sessions().logout(&id, false).await.unwrap();
    assert_eq!(
        forward(&s, &req(b"/api/x", Some(&format!("Bearer {t}"))))
            .await
            .err(),
        Some(ApiError::TokenRevoked)
    );
}

#[tokio::test]
async fn public_and_optional_routes() {
    let s = state();
    let f = forward(&s, &req(b"/pub/x", Some("Bearer junk")))
        .await
        .unwrap();
    assert_eq!(f.route.index, 0);
    assert!(f.identity.is_none());
    let f = forward(&s, &req(b"/opt/x", None)).await.unwrap();
    assert!(f.identity.is_none());
    assert_eq!(
        forward(&s, &req(b"/opt/x", Some("Bearer junk")))
            .await
            .err(),
        Some(ApiError::TokenInvalid)
    );
}

#[tokio::test]
async fn rewritten_target_is_carried_to_the_upstream_step() {
    let s = state();
    let f = forward(&s, &req(b"/%70ub//x?q=%2F", None)).await.unwrap();
    assert_eq!(f.route.index, 0);
    assert_eq!(f.target.as_deref(), Some(&b"/pub/x?q=%2F"[..]));
}

#[test]
fn bad_paths_are_refused_before_auth() {
    let s = state();
    assert_eq!(
        decide(&s, b"/pub/../admin").err(),
        Some(ApiError::InvalidPath)
    );
}

#[test]
fn classify_maps_pingora_errors() {
    let up = |t| {
        let mut e = Error::new(t);
        e.esource = ErrorSource::Upstream;
        e
    };
    assert_eq!(
        classify(&up(ErrorType::ReadTimedout)),
        Some(ApiError::UpstreamTimeout)
    );
    assert_eq!(
        classify(&up(ErrorType::ConnectRefused)),
        Some(ApiError::UpstreamUnavailable)
    );
    let mut down = Error::new(ErrorType::ConnectionClosed);
    down.esource = ErrorSource::Downstream;
    assert_eq!(classify(&down), None);
    let internal = Error::new(ErrorType::ConnectTimedout);
    assert_eq!(classify(&internal), Some(ApiError::UpstreamTimeout));
}
