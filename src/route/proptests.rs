//! Property tests for path canonicalisation and routing.
//!
//! The generators are biased towards the bytes that matter to a path parser:
//! `/`, `.`, `%`, hex digits, `;`, `\`, `?`, control bytes and upper/lower
//! spellings of `api`. Each property keeps a modest number of cases so the
//! whole file runs in well under a second in debug builds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::path::{is_plain, is_unreserved};
use super::*;
use crate::error::ApiError;

fn config() -> ProptestConfig {
    crate::testing::proptest_config()
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

const ESCAPES: &[&str] = &[
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%00",
    "%3b",
    "%3B",
    "%3f",
    "%41",
    "%61",
    "%50",
    "%70",
    "%49",
    "%69",
    "%25",
    "%7e",
    "%7E",
    "%20",
    "%c3%a9",
    "%C3%A9",
    "%ff",
    "%e2%84%aa",
    "%c5%bf",
    "%",
    "%a",
    "%g0",
    "%%",
    "%2",
];

const WORDS: &[&str] = &[
    "api",
    "API",
    "Api",
    "aPi",
    "apI",
    "a",
    "p",
    "i",
    "x",
    "secret",
    ";",
    ";x",
    ";jsessionid=1",
    "\\",
    "?",
    "#",
    "=",
    "~",
    "-",
    "_",
    "..;",
    ".;x",
    "é",
    "\u{212a}",
    "\u{17f}",
];

fn bytes_of(strs: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(strs).prop_map(|s| s.as_bytes().to_vec())
}

/// One piece of a hostile request target.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => Just(b"/".to_vec()),
        2 => Just(b".".to_vec()),
        1 => Just(b"..".to_vec()),
        3 => bytes_of(ESCAPES),
        4 => bytes_of(WORDS),
        1 => prop::sample::select(b"0123456789abcdefABCDEF".to_vec()).prop_map(|b| vec![b]),
        1 => prop_oneof![0u8..0x20, Just(0x7f)].prop_map(|b| vec![b]),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

/// A raw request target, usually starting with `/`.
fn raw_target() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::bool::weighted(0.95),
        prop::collection::vec(piece(), 0..14),
    )
        .prop_map(|(slash, pieces)| {
            let mut v = if slash { vec![b'/'] } else { Vec::new() };
            for p in pieces {
                v.extend(p);
            }
            v
        })
}

/// A target that very often spells `/api/` in some hostile way.
fn api_target() -> impl Strategy<Value = Vec<u8>> {
    (
        bytes_of(&[
            "/", "//", "/;/", "/;x/", "/./", "/.;/", "/%2e/", "/x/../", "",
        ]),
        bytes_of(&[
            "api",
            "API",
            "Api",
            "aPI",
            "%61pi",
            "%41PI",
            "a%70i",
            "ap%49",
            "%61%70%69",
            "ap\u{131}",
            "ap%C4%B1",
            "api ",
            "ap",
            "apis",
        ]),
        bytes_of(&["", "", ";", ";x", ";jsessionid=1", "%3B", "%3bx", ";/"]),
        bytes_of(&["/", "/", "//", "/;/", "%2f", "\\", "/./", "/..", "?", ""]),
        prop::collection::vec(piece(), 0..6),
    )
        .prop_map(|(lead, api, params, sep, rest)| {
            let mut v = lead;
            v.extend(api);
            v.extend(params);
            v.extend(sep);
            for p in rest {
                v.extend(p);
            }
            v
        })
}

fn auth_mode() -> impl Strategy<Value = AuthMode> {
    prop::sample::select(vec![
        AuthMode::Required,
        AuthMode::Optional,
        AuthMode::Public,
    ])
}

/// Canonical-looking prefixes, distinct ignoring ASCII case (so that the
/// longest-prefix order has no ties between readings).
fn prefixes() -> impl Strategy<Value = Vec<(String, AuthMode, bool)>> {
    let segment = prop::sample::select(vec!["api", "API", "a", "b", "api2", "x", "v1", "Admin"]);
    let prefix = (
        prop::collection::vec(segment, 0..3),
        any::<bool>(),
        auth_mode(),
        any::<bool>(),
    )
        .prop_map(|(segs, slash, auth, params)| {
            let mut p = String::from("/");
            p.push_str(&segs.join("/"));
            if slash && !segs.is_empty() {
                p.push('/');
            }
            (p, auth, params)
        });
    prop::collection::vec(prefix, 0..6).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|(p, _, _)| seen.insert(p.to_ascii_lowercase()));
        v
    })
}

fn table_of(specs: &[(String, AuthMode, bool)]) -> RouteTable {
    RouteTable::new(specs.iter().map(|(p, auth, params)| RouteSpec {
        prefix: p,
        auth: *auth,
        path_params: *params,
    }))
}

/// `/api/` protected, `/` public.
fn protected_api(api_params: bool, root_params: bool) -> RouteTable {
    RouteTable::new([
        RouteSpec {
            prefix: "/api/",
            auth: AuthMode::Required,
            path_params: api_params,
        },
        RouteSpec {
            prefix: "/",
            auth: AuthMode::Public,
            path_params: root_params,
        },
    ])
}

// ---------------------------------------------------------------------------
// Independent models
// ---------------------------------------------------------------------------

/// The prefix rule, written out again: `/x/` matches below it, `/x` matches
/// itself and below.
fn model_matches(prefix: &str, path: &str, ignore_case: bool) -> bool {
    let (p, q) = (prefix.as_bytes(), path.as_bytes());
    let Some(head) = q.get(..p.len()) else {
        return false;
    };
    let same = if ignore_case {
        head.eq_ignore_ascii_case(p)
    } else {
        head == p
    };
    same && (p.ends_with(b"/") || q.len() == p.len() || q[p.len()] == b'/')
}

/// The index of the longest matching prefix, for one reading of the path.
fn model_route(specs: &[(String, AuthMode, bool)], path: &str, ignore_case: bool) -> Option<usize> {
    specs
        .iter()
        .enumerate()
        .filter(|(_, (p, _, _))| model_matches(p, path, ignore_case))
        .max_by_key(|(_, (p, _, _))| p.len())
        .map(|(i, _)| i)
}

/// `;params` cut from every segment (Tomcat, Spring, Jetty).
fn strip_params(path: &str) -> String {
    path.split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// Runs of `/` collapsed (what the same containers do after stripping).
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fn is_hex_upper(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// Every invariant of an accepted canonical path.
fn check_canonical_path(path: &str) -> Result<(), TestCaseError> {
    let b = path.as_bytes();
    prop_assert!(path.is_ascii(), "not ASCII: {path:?}");
    prop_assert_eq!(b.first(), Some(&b'/'), "does not start with /: {:?}", path);
    prop_assert!(!path.contains("//"), "double slash: {path:?}");
    prop_assert!(!path.contains('\\'), "raw backslash: {path:?}");
    prop_assert!(!path.contains('?'), "query in path: {path:?}");
    prop_assert!(
        !b.iter().any(|&c| c < 0x20 || c == 0x7f),
        "control byte: {path:?}"
    );
    let upper = path.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00"] {
        prop_assert!(!upper.contains(bad), "{bad} in {path:?}");
    }
    for seg in path.split('/') {
        let name = seg.split(';').next().unwrap_or("");
        prop_assert!(name != "." && name != "..", "dot segment in {path:?}");
    }
    // Escapes are well-formed, upper-case, and never of an unreserved byte.
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            prop_assert!(i + 2 < b.len(), "short escape in {path:?}");
            prop_assert!(
                is_hex_upper(b[i + 1]) && is_hex_upper(b[i + 2]),
                "escape not upper-case hex in {path:?}"
            );
            let v = u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap();
            prop_assert!(!is_unreserved(v), "escaped unreserved byte in {path:?}");
            prop_assert!(v >= 0x20 && v != 0x7f, "escaped control byte in {path:?}");
            i += 3;
        } else {
            prop_assert!(is_plain(b[i]), "byte {:#x} raw in {path:?}", b[i]);
            i += 1;
        }
    }
    Ok(())
}

/// The routing properties that must hold for any path and any table:
/// a route returned matches, is the longest, and every lenient reading of the
/// path agrees with it.
fn check_route(specs: &[(String, AuthMode, bool)], path: &str) -> Result<(), TestCaseError> {
    let table = table_of(specs);
    let Ok(found) = table.route(path) else {
        return Ok(());
    };
    let exact = model_route(specs, path, false);
    prop_assert_eq!(found.map(|r| r.index), exact, "path {:?}", path);
    if let Some(r) = found {
        prop_assert!(model_matches(&r.prefix, path, false));
        prop_assert_eq!(&r.prefix, &specs[r.index].0);
        prop_assert_eq!(r.auth, specs[r.index].1);
        if path.contains(';') {
            prop_assert!(r.path_params, "`;` accepted on {:?}: {path:?}", r.prefix);
        }
    }
    // Every reading an upstream might make lands on the same route.
    let stripped = strip_params(path);
    let merged = merge_slashes(&stripped);
    for (reading, ignore_case) in [
        (path, true),
        (stripped.as_str(), false),
        (stripped.as_str(), true),
        (merged.as_str(), false),
        (merged.as_str(), true),
    ] {
        prop_assert_eq!(
            model_route(specs, reading, ignore_case),
            exact,
            "{:?} read as {:?} (ignore case: {}) changes route",
            path,
            reading,
            ignore_case
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonicalize_never_panics_on_arbitrary_bytes(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = canonicalize(&raw);
    }

    #[test]
    fn canonicalize_never_panics_on_hostile_targets(raw in raw_target()) {
        let _ = canonicalize(&raw);
    }

    #[test]
    fn canonical_output_is_a_fixed_point(raw in raw_target()) {
        if let Ok(c) = canonicalize(&raw) {
            let again = canonicalize(c.target()).expect("canonical target refused");
            prop_assert_eq!(again.target(), c.target());
            prop_assert_eq!(again.path(), c.path());
            prop_assert!(!again.is_rewritten());
            prop_assert_eq!(c.is_rewritten(), c.target() != raw.as_slice());
        }
    }

    #[test]
    fn accepted_paths_are_canonical(raw in raw_target()) {
        if let Ok(c) = canonicalize(&raw) {
            check_canonical_path(c.path())?;
            // The target is the path plus the query exactly as received.
            let target = c.target();
            prop_assert!(target.starts_with(c.path().as_bytes()));
            let query = &target[c.path().len()..];
            match raw.iter().position(|&b| b == b'?') {
                Some(q) => prop_assert_eq!(query, &raw[q..]),
                None => prop_assert!(query.is_empty()),
            }
        }
    }

    #[test]
    fn accepted_api_paths_are_canonical(raw in api_target()) {
        if let Ok(c) = canonicalize(&raw) {
            check_canonical_path(c.path())?;
        }
    }

    #[test]
    fn routing_agrees_with_the_forwarded_bytes(raw in raw_target(), specs in prefixes()) {
        let table = table_of(&specs);
        if let Ok(c) = canonicalize(&raw) {
            // What the upstream receives, canonicalised again, routes the same.
            let forwarded = canonicalize(c.target()).expect("forwarded target refused");
            let a = table.route(c.path()).map(|r| r.map(|r| r.index));
            let b = table.route(forwarded.path()).map(|r| r.map(|r| r.index));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn route_never_panics_and_returns_a_matching_route(
        path in "[/a-zA-Z0-9;.%é]{0,24}",
        specs in prefixes(),
    ) {
        // Not necessarily canonical: `route` must still hold together.
        check_route(&specs, &path)?;
    }

    #[test]
    fn route_of_canonical_paths_agrees_with_every_reading(
        raw in prop_oneof![raw_target(), api_target()],
        specs in prefixes(),
    ) {
        if let Ok(c) = canonicalize(&raw) {
            check_route(&specs, c.path())?;
        }
    }

    /// The security property: `/api/` (required) and `/` (public). A path
    /// that reads as `/api/...` once lower-cased and stripped of `;params`
    /// goes to `/api/` or is refused; it never reaches the public route.
    #[test]
    fn api_paths_never_reach_the_public_route(
        raw in prop_oneof![api_target(), raw_target()],
        api_params in any::<bool>(),
        root_params in any::<bool>(),
    ) {
        let table = protected_api(api_params, root_params);
        if let Ok(c) = canonicalize(&raw) {
            let lenient = strip_params(&c.path().to_ascii_lowercase());
            if lenient.starts_with("/api/") {
                match table.route(c.path()) {
                    Err(ApiError::InvalidPath) => {}
                    Ok(Some(r)) => prop_assert_eq!(r.prefix.as_str(), "/api/", "{:?}", c.path()),
                    other => prop_assert!(false, "{:?} gave {:?}", c.path(), other),
                }
            }
        }
    }

    /// The same, for a prefix without a trailing slash (`/api` matches
    /// `/api` and `/api/...`).
    #[test]
    fn api_paths_never_reach_the_public_route_without_trailing_slash(
        raw in prop_oneof![api_target(), raw_target()],
        api_params in any::<bool>(),
    ) {
        let table = RouteTable::new([
            RouteSpec { prefix: "/api", auth: AuthMode::Required, path_params: api_params },
            RouteSpec { prefix: "/", auth: AuthMode::Public, path_params: false },
        ]);
        if let Ok(c) = canonicalize(&raw) {
            let lenient = strip_params(&c.path().to_ascii_lowercase());
            if lenient == "/api" || lenient.starts_with("/api/") {
                if let Ok(Some(r)) = table.route(c.path()) {
                    prop_assert_eq!(r.prefix.as_str(), "/api", "{:?}", c.path());
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The security property under a stricter reading: servlet containers
    /// also merge the `//` left by stripping an empty segment's `;params`
    /// (this found `/;/api/`, see the regression test below).
    #[test]
    fn api_paths_never_reach_the_public_route_with_merged_slashes(
        raw in prop_oneof![api_target(), raw_target()],
        api_params in any::<bool>(),
        root_params in any::<bool>(),
    ) {
        let table = protected_api(api_params, root_params);
        if let Ok(c) = canonicalize(&raw) {
            let lenient = merge_slashes(&strip_params(&c.path().to_ascii_lowercase()));
            if lenient.starts_with("/api/") {
                if let Ok(Some(r)) = table.route(c.path()) {
                    prop_assert_eq!(r.prefix.as_str(), "/api/", "{:?}", c.path());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed hostile corpus
// ---------------------------------------------------------------------------

/// Targets an attacker would try first; replayed through every property.
const CORPUS: &[&[u8]] = &[
    b"/",
    b"",
    b"api/secret",
    b"/api/secret",
    b"/API/secret",
    b"/%61pi/secret",
    b"/%41PI/secret",
    b"/api;x/secret",
    b"/API;x/secret",
    b"/api;/secret",
    b"/;/api/secret",
    b"/;x/api/secret",
    b"//api/secret",
    b"/./api/secret",
    b"/.;/api/secret",
    b"/x/..;/api/secret",
    b"/x/%2e%2e/api/secret",
    b"/x/%2E%2e;/api/secret",
    b"/api%2fsecret",
    b"/api%2Fsecret",
    b"/api%5csecret",
    b"/api\\secret",
    b"/api%00/secret",
    b"/api\x00/secret",
    b"/api\x7f/secret",
    b"/api/secret?x=\x01",
    b"/api/secret#frag",
    b"/api%3Bx/secret",
    b"/ap%C4%B1/secret",
    b"/ap\xc4\xb1/secret",
    b"/%ff",
    b"/%c3",
    b"/%",
    b"/%a",
    b"/%%41",
    b"/%2541pi/secret",
    b"/\xe2\x84\xaa",
    b"/api/../secret",
    b"/api/.",
    b"/api/..;",
    b"/api?/..",
];

#[test]
fn corpus_canonicalizes_consistently() {
    for raw in CORPUS {
        if let Ok(c) = canonicalize(raw) {
            let again = canonicalize(c.target()).unwrap();
            assert_eq!(
                again.target(),
                c.target(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            check_canonical_path(c.path()).unwrap();
        }
    }
}

#[test]
fn corpus_never_reaches_the_public_route_as_api() {
    for raw in CORPUS {
        let Ok(c) = canonicalize(raw) else { continue };
        let lenient = strip_params(&c.path().to_ascii_lowercase());
        for (api_params, root_params) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            let table = protected_api(api_params, root_params);
            if lenient.starts_with("/api/") {
                if let Ok(Some(r)) = table.route(c.path()) {
                    assert_eq!(r.prefix, "/api/", "{:?}", c.path());
                }
            }
        }
    }
}

#[test]
fn corpus_routes_agree_with_every_reading() {
    let specs = vec![
        ("/api/".to_string(), AuthMode::Required, true),
        ("/api2".to_string(), AuthMode::Optional, false),
        ("/".to_string(), AuthMode::Public, true),
    ];
    for raw in CORPUS {
        if let Ok(c) = canonicalize(raw) {
            check_route(&specs, c.path()).unwrap();
        }
    }
}

#[test]
fn corpus_refusals_are_invalid_path() {
    for raw in [
        &b"/;/api/secret"[..],
        b"/api\\secret",
        b"/api%2fsecret",
        b"/api%00/secret",
        b"/x/..;/api/secret",
        b"/%",
        b"/%ff",
        b"",
    ] {
        // `/;/api/secret` is fine for canonicalize; its refusal comes from route.
        match canonicalize(raw) {
            Err(e) => assert_eq!(e, ApiError::InvalidPath),
            Ok(c) => assert_eq!(
                protected_api(false, false)
                    .route(c.path())
                    .map(|r| r.map(|r| r.index)),
                Err(ApiError::InvalidPath),
                "{:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }
}

/// Regression: found by the merged-slash reading (minimal input `/;/api/`).
/// With `allow_path_params` on the public catch-all, `/;/api/secret` was
/// routed to `/`, while Tomcat and Spring strip the empty segment's `;`
/// parameter, merge the `//` and read `/api/secret`: the protected route's
/// path reached the upstream without a token check.
#[test]
fn empty_segment_params_with_merged_slashes_reach_the_public_route() {
    let table = protected_api(false, true);
    for raw in [&b"/;/api/"[..], b"/;/api/secret", b"/;x/api/secret"] {
        let c = canonicalize(raw).unwrap();
        let lenient = merge_slashes(&strip_params(&c.path().to_ascii_lowercase()));
        assert!(lenient.starts_with("/api/"), "{lenient}");
        if let Ok(Some(r)) = table.route(c.path()) {
            assert_eq!(r.prefix, "/api/", "{}", c.path());
        }
    }
}
