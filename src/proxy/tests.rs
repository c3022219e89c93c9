use super::*;
use crate::store::memory::MemoryStore;
use std::path::Path;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn shared() -> Shared {
    let text = r#"
[jwt]
secret_env = "S"
audience = "app"

[[routes]]
prefix = "/pub/"
upstreams = ["127.0.0.1:9"]
auth = "public"

[[routes]]
prefix = "/opt/"
upstreams = ["127.0.0.1:9"]
auth = "optional"

[[routes]]
prefix = "/"
upstreams = ["127.0.0.1:9"]
"#;
    let config = Config::parse(text, "t.toml", Path::new("."), &|_| Some(SECRET.into())).unwrap();
    Shared::new(&config, Arc::new(MemoryStore::default())).unwrap()
}

fn req(path: &[u8], auth: Option<&str>) -> RequestHeader {
    let mut r = RequestHeader::build("GET", path, None).unwrap();
    if let Some(a) = auth {
        r.append_header("Authorization", a).unwrap();
    }
    r
}

fn token(s: &Shared) -> String {
    s.tokens()
        .issue(&crate::token::NewToken {
            openid: "o1",
            unionid: Some("u1"),
            ..Default::default()
        })
        .unwrap()
        .0
}

fn forward(d: Result<Decision, ApiError>) -> Forward {
    match d {
        Ok(Decision::Forward(f)) => f,
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn health_endpoints_are_decided_before_routes() {
    let s = shared();
    assert!(matches!(
        s.decide(&req(b"/healthz", None)),
        Ok(Decision::Endpoint(Endpoint::Healthz))
    ));
    assert!(matches!(
        s.decide(&req(b"/readyz?x=1", None)),
        Ok(Decision::Endpoint(Endpoint::Readyz))
    ));
    // Login endpoints do not exist without [wechat]: /wx/login is a protected path.
    assert_eq!(
        s.decide(&req(b"/wx/login", None)).err(),
        Some(ApiError::TokenMissing)
    );
}

#[test]
fn protected_route_yields_identity_and_route() {
    let s = shared();
    let t = token(&s);
    let f = forward(s.decide(&req(b"/api/x", Some(&format!("Bearer {t}")))));
    assert_eq!(f.route, 2);
    let v = f.identity.unwrap();
    assert_eq!(v.id.openid, "o1");
    assert_eq!(v.values.openid, "o1");
    assert_eq!(
        v.values.unionid.as_ref().map(|h| h.as_bytes()),
        Some(&b"u1"[..])
    );
    assert_eq!(f.target, None);
}

#[test]
fn public_and_optional_routes() {
    let s = shared();
    let f = forward(s.decide(&req(b"/pub/x", Some("Bearer junk"))));
    assert_eq!(f.route, 0);
    assert!(f.identity.is_none());
    let f = forward(s.decide(&req(b"/opt/x", None)));
    assert!(f.identity.is_none());
    assert_eq!(
        s.decide(&req(b"/opt/x", Some("Bearer junk"))).err(),
        Some(ApiError::TokenInvalid)
    );
}

#[test]
fn rewritten_target_is_carried_to_the_upstream_step() {
    let s = shared();
    let f = forward(s.decide(&req(b"/%70ub//x?q=%2F", None)));
    assert_eq!(f.route, 0);
    assert_eq!(f.target.as_deref(), Some(&b"/pub/x?q=%2F"[..]));
}

#[test]
fn bad_paths_are_refused_before_auth() {
    let s = shared();
    assert_eq!(
        s.decide(&req(b"/pub/../admin", None)).err(),
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
