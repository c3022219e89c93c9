use super::*;
use crate::error::ApiError;

// ---------------------------------------------------------------------------
// canonicalize: helpers
// ---------------------------------------------------------------------------

/// Canonicalise and return (target, path, rewritten).
fn canon(raw: &[u8]) -> (Vec<u8>, String, bool) {
    let c = canonicalize(raw).unwrap_or_else(|e| {
        panic!(
            "{:?} should be accepted, got {e:?}",
            String::from_utf8_lossy(raw)
        )
    });
    (c.target().to_vec(), c.path().to_string(), c.is_rewritten())
}

fn assert_refused(raw: &[u8]) {
    assert_eq!(
        canonicalize(raw),
        Err(ApiError::InvalidPath),
        "{:?} should be refused",
        String::from_utf8_lossy(raw)
    );
}

// ---------------------------------------------------------------------------
// canonicalize: accepted unchanged
// ---------------------------------------------------------------------------

#[test]
fn plain_path_is_borrowed_unchanged() {
    let raw = b"/api/users/42";
    let c = canonicalize(raw).unwrap();
    assert!(!c.is_rewritten());
    assert_eq!(c.path(), "/api/users/42");
    assert_eq!(c.target(), raw);
    // Borrowed: the very same bytes, not a copy.
    assert_eq!(c.target().as_ptr(), raw.as_ptr());
}

#[test]
fn root_path_is_accepted() {
    let (target, path, rewritten) = canon(b"/");
    assert_eq!(target, b"/");
    assert_eq!(path, "/");
    assert!(!rewritten);
}

#[test]
fn sub_delims_and_colon_at_stay_raw() {
    let raw = b"/a!$&'()*+,;=:@-._~/b";
    let (target, path, rewritten) = canon(raw);
    assert_eq!(target, raw);
    assert_eq!(path.as_bytes(), raw);
    assert!(!rewritten);
}

#[test]
fn query_is_kept_verbatim() {
    let raw = b"/search?q=%2e%2e/../%2f%5c&x=\"<{}>\"&y=%ff";
    let (target, path, rewritten) = canon(raw);
    assert_eq!(target, raw.to_vec());
    assert_eq!(path, "/search");
    assert!(!rewritten);
}

#[test]
fn query_is_kept_verbatim_when_path_is_rewritten() {
    let (target, path, rewritten) = canon(b"//a?q=%61&b=//c");
    assert_eq!(target, b"/a?q=%61&b=//c");
    assert_eq!(path, "/a");
    assert!(rewritten);
}

#[test]
fn empty_query_is_kept() {
    let (target, path, rewritten) = canon(b"/a?");
    assert_eq!(target, b"/a?");
    assert_eq!(path, "/a");
    assert!(!rewritten);
}

#[test]
fn path_excludes_query_and_target_is_path_plus_query() {
    let c = canonicalize(b"/%61pi/x?y=1&z=2").unwrap();
    assert_eq!(c.path(), "/api/x");
    assert_eq!(c.target(), b"/api/x?y=1&z=2");
    let mut joined = c.path().as_bytes().to_vec();
    joined.extend_from_slice(b"?y=1&z=2");
    assert_eq!(c.target(), &joined[..]);
}

#[test]
fn dots_inside_a_segment_are_fine() {
    for raw in [
        &b"/a..b/"[..],
        b"/...",
        b"/.../x",
        b"/a.",
        b"/.a",
        b"/..a/b",
        b"/file.tar.gz",
    ] {
        let (target, _, rewritten) = canon(raw);
        assert_eq!(target, raw, "{:?}", String::from_utf8_lossy(raw));
        assert!(!rewritten);
    }
}

#[test]
fn kept_escape_already_canonical_is_not_a_rewrite() {
    // `%20` is a reserved-or-unsafe byte: kept as an escape, already upper-case.
    let (target, path, rewritten) = canon(b"/a%20b");
    assert_eq!(target, b"/a%20b");
    assert_eq!(path, "/a%20b");
    assert!(!rewritten);
}

// ---------------------------------------------------------------------------
// canonicalize: refused
// ---------------------------------------------------------------------------

#[test]
fn refuses_targets_not_starting_with_slash() {
    for raw in [&b"*"[..], b"http://h/x", b"", b"x", b"?a=b", b"%2fa"] {
        assert_refused(raw);
    }
}

#[test]
fn refuses_dot_dot_segment() {
    assert_refused(b"/../");
    assert_refused(b"/a/../b");
    assert_refused(b"/..");
    assert_refused(b"/a/..");
    assert_refused(b"/a/..?x=1");
}

#[test]
fn refuses_dot_segment() {
    assert_refused(b"/./");
    assert_refused(b"/a/./b");
    assert_refused(b"/.");
    assert_refused(b"/a/.");
    assert_refused(b"/a/.?x=1");
}

#[test]
fn refuses_dot_segments_hidden_by_collapsed_slashes() {
    assert_refused(b"//..//a");
    assert_refused(b"/a//./b");
}

#[test]
fn refuses_encoded_dot_dot_segment() {
    assert_refused(b"/%2e%2e/");
    assert_refused(b"/%2E%2E/");
    assert_refused(b"/a/%2e%2e");
    assert_refused(b"/public/%2e%2e/admin");
}

#[test]
fn refuses_encoded_dot_segment() {
    assert_refused(b"/%2E/");
    assert_refused(b"/%2e/");
    assert_refused(b"/a/%2e");
}

#[test]
fn refuses_mixed_raw_and_encoded_dots() {
    assert_refused(b"/.%2e/");
    assert_refused(b"/%2e./");
    assert_refused(b"/a/.%2E");
}

#[test]
fn refuses_encoded_slash() {
    assert_refused(b"/a%2fb");
    assert_refused(b"/a%2Fb");
    assert_refused(b"/%2F");
}

#[test]
fn refuses_encoded_backslash() {
    assert_refused(b"/a%5cb");
    assert_refused(b"/a%5Cb");
}

#[test]
fn refuses_raw_backslash() {
    assert_refused(b"/a\\b");
    assert_refused(b"/\\..\\x");
}

#[test]
fn refuses_encoded_nul() {
    assert_refused(b"/a%00b");
    assert_refused(b"/%00");
}

#[test]
fn refuses_encoded_control_bytes() {
    assert_refused(b"/a%0ab");
    assert_refused(b"/a%0D%0Ab");
    assert_refused(b"/a%7f");
    assert_refused(b"/a%1F");
}

#[test]
fn refuses_raw_control_bytes_in_path() {
    assert_refused(b"/a\x01b");
    assert_refused(b"/a\x7fb");
    assert_refused(b"/a\x00b");
    assert_refused(b"/a\tb");
    assert_refused(b"/a\r\nb");
}

#[test]
fn refuses_control_bytes_in_query() {
    assert_refused(b"/a?x=\x01");
    assert_refused(b"/a?x=\x7f");
    assert_refused(b"/a?x=1\r\nX-OpenID: o");
    assert_refused(b"/a?\x00");
}

#[test]
fn refuses_malformed_escapes() {
    assert_refused(b"/%");
    assert_refused(b"/a%");
    assert_refused(b"/%2");
    assert_refused(b"/a%2?x");
    assert_refused(b"/%zz");
    assert_refused(b"/%g0");
    assert_refused(b"/%0g");
}

#[test]
fn refuses_invalid_utf8_after_decoding() {
    assert_refused(b"/%ff");
    assert_refused(b"/%FF");
    assert_refused(b"/%c3%28");
    assert_refused(b"/%e4%b8"); // truncated 3-byte sequence
    assert_refused(b"/%c0%af"); // overlong '/'
}

#[test]
fn refuses_raw_invalid_utf8_bytes() {
    assert_refused(b"/\xff");
    assert_refused(b"/a\xc3\x28b");
    assert_refused(b"/\xe4\xb8");
}

#[test]
fn refuses_invalid_utf8_mixing_raw_and_escaped_bytes() {
    // A raw lead byte followed by an escaped byte that is not a continuation.
    assert_refused(b"/\xc3%28");
}

// ---------------------------------------------------------------------------
// canonicalize: normalisation
// ---------------------------------------------------------------------------

#[test]
fn decodes_escaped_unreserved_characters() {
    let (target, path, rewritten) = canon(b"/%61dmin");
    assert_eq!(target, b"/admin");
    assert_eq!(path, "/admin");
    assert!(rewritten);
}

#[test]
fn decodes_every_kind_of_unreserved_escape() {
    let (target, _, _) = canon(b"/%41%7a%30%2D%5F%7E%2e");
    assert_eq!(target, b"/Az0-_~.");
}

#[test]
fn upper_cases_kept_escapes() {
    let (target, path, rewritten) = canon(b"/%e4%b8%ad");
    assert_eq!(target, b"/%E4%B8%AD");
    assert_eq!(path, "/%E4%B8%AD");
    assert!(rewritten);
}

#[test]
fn keeps_escaped_reserved_characters_as_escapes() {
    // `%3F` (`?`) and `%23` (`#`) must stay escaped or the target would change meaning.
    let (target, path, _) = canon(b"/a%3fb%23c%25d");
    assert_eq!(target, b"/a%3Fb%23c%25d");
    assert_eq!(path, "/a%3Fb%23c%25d");
}

#[test]
fn collapses_runs_of_slashes() {
    let (target, path, rewritten) = canon(b"//a///b");
    assert_eq!(target, b"/a/b");
    assert_eq!(path, "/a/b");
    assert!(rewritten);
}

#[test]
fn collapses_trailing_slashes() {
    let (target, _, _) = canon(b"/a//");
    assert_eq!(target, b"/a/");
}

#[test]
fn encodes_raw_non_ascii_utf8() {
    let (target, path, rewritten) = canon("/中".as_bytes());
    assert_eq!(target, b"/%E4%B8%AD");
    assert_eq!(path, "/%E4%B8%AD");
    assert!(rewritten);
}

#[test]
fn raw_and_escaped_non_ascii_give_the_same_target() {
    let raw = canon("/用户/中".as_bytes()).0;
    let escaped = canon(b"/%e7%94%a8%e6%88%b7/%E4%B8%AD").0;
    assert_eq!(raw, escaped);
}

#[test]
fn encodes_characters_not_allowed_raw() {
    let (target, _, rewritten) = canon(b"/a\"b<c>d{e}f g|h^i`j");
    assert_eq!(target, b"/a%22b%3Cc%3Ed%7Be%7Df%20g%7Ch%5Ei%60j");
    assert!(rewritten);
}

#[test]
fn canonical_output_is_a_fixed_point() {
    for raw in [
        &b"/%61dmin"[..],
        b"//a///b",
        "/中?x=1".as_bytes(),
        b"/a\"b",
        b"/%e4%b8%ad",
    ] {
        let once = canon(raw).0;
        let (twice, _, rewritten) = canon(&once);
        assert_eq!(once, twice);
        assert!(!rewritten);
    }
}

#[test]
fn path_is_always_ascii() {
    let c = canonicalize("/ü/中/%c3%bc".as_bytes()).unwrap();
    assert!(c.path().is_ascii());
    assert_eq!(c.path(), "/%C3%BC/%E4%B8%AD/%C3%BC");
}

// ---------------------------------------------------------------------------
// RouteTable
// ---------------------------------------------------------------------------

fn table(prefixes: &[&str]) -> RouteTable {
    RouteTable::new(prefixes.iter().map(|p| (*p, AuthMode::Required)))
}

/// The configured prefix that handles `path`, if any.
fn found<'t>(t: &'t RouteTable, path: &str) -> Option<&'t str> {
    t.find(path).map(|r| r.prefix.as_str())
}

#[test]
fn longest_prefix_wins_in_config_order() {
    let t = table(&["/api/admin/", "/api/", "/"]);
    assert_eq!(found(&t, "/api/admin/users"), Some("/api/admin/"));
    assert_eq!(found(&t, "/api/users"), Some("/api/"));
    assert_eq!(found(&t, "/other"), Some("/"));
}

#[test]
fn longest_prefix_wins_in_reverse_config_order() {
    let t = table(&["/", "/api/", "/api/admin/"]);
    assert_eq!(found(&t, "/api/admin/users"), Some("/api/admin/"));
    assert_eq!(found(&t, "/api/users"), Some("/api/"));
    assert_eq!(found(&t, "/other"), Some("/"));
}

#[test]
fn route_index_and_auth_follow_config_order() {
    let t = RouteTable::new([
        ("/", AuthMode::Required),
        ("/public/", AuthMode::Public),
        ("/maybe", AuthMode::Optional),
    ]);
    let r = t.find("/public/x").unwrap();
    assert_eq!(
        (r.prefix.as_str(), r.index, r.auth),
        ("/public/", 1, AuthMode::Public)
    );
    let r = t.find("/maybe/y").unwrap();
    assert_eq!(
        (r.prefix.as_str(), r.index, r.auth),
        ("/maybe", 2, AuthMode::Optional)
    );
    let r = t.find("/z").unwrap();
    assert_eq!(
        (r.prefix.as_str(), r.index, r.auth),
        ("/", 0, AuthMode::Required)
    );
}

#[test]
fn prefix_without_trailing_slash_matches_itself_and_below() {
    let t = table(&["/api"]);
    assert_eq!(found(&t, "/api"), Some("/api"));
    assert_eq!(found(&t, "/api/"), Some("/api"));
    assert_eq!(found(&t, "/api/x"), Some("/api"));
    assert_eq!(found(&t, "/apix"), None);
    assert_eq!(found(&t, "/ap"), None);
    assert_eq!(found(&t, "/"), None);
}

#[test]
fn prefix_without_slash_falls_back_for_sibling_names() {
    let t = table(&["/api", "/"]);
    assert_eq!(found(&t, "/apix"), Some("/"));
    assert_eq!(found(&t, "/api"), Some("/api"));
}

#[test]
fn prefix_with_trailing_slash_matches_only_below() {
    let t = table(&["/public/"]);
    assert_eq!(found(&t, "/public/x"), Some("/public/"));
    assert_eq!(found(&t, "/public/"), Some("/public/"));
    assert_eq!(found(&t, "/public"), None);
    assert_eq!(found(&t, "/publicx"), None);
}

#[test]
fn no_match_is_none() {
    let t = table(&["/api/", "/public/"]);
    assert!(t.find("/other").is_none());
    assert!(t.find("/").is_none());
    assert!(RouteTable::new::<RouteSpec<'_>>([]).find("/").is_none());
}

#[test]
fn root_catches_everything() {
    let t = table(&["/"]);
    for path in ["/", "/a", "/a/b/c", "/%E4%B8%AD"] {
        assert_eq!(found(&t, path), Some("/"), "{path}");
    }
}

#[test]
fn matching_is_case_sensitive() {
    let t = table(&["/admin/", "/"]);
    assert_eq!(found(&t, "/admin/x"), Some("/admin/"));
    assert_eq!(found(&t, "/Admin/x"), Some("/"));
}

#[test]
fn encoded_bypass_is_routed_by_decoded_path() {
    // `/%61dmin/x` must be routed as `/admin/x`, the path the upstream will see.
    let t = RouteTable::new([("/admin/", AuthMode::Required), ("/", AuthMode::Public)]);
    let c = canonicalize(b"/%61dmin/x").unwrap();
    let r = t.find(c.path()).unwrap();
    assert_eq!(r.prefix, "/admin/");
    assert_eq!(r.auth, AuthMode::Required);
}

#[test]
fn collapsed_slashes_are_routed_by_canonical_path() {
    let t = RouteTable::new([("/admin/", AuthMode::Required), ("/", AuthMode::Public)]);
    let c = canonicalize(b"//admin//x").unwrap();
    assert_eq!(t.find(c.path()).unwrap().prefix, "/admin/");
}

#[test]
fn dot_segments_with_path_parameters_are_refused() {
    for raw in [
        &b"/public/..;/admin"[..],
        b"/public/..;x=1/admin",
        b"/a/.;/b",
        b"/a/%2e%2e;/b",
    ] {
        assert_refused(raw);
    }
    // A semicolon elsewhere is an ordinary character.
    let (target, _, _) = canon(b"/a;v=1/b..;c");
    assert_eq!(target, b"/a;v=1/b..;c");
}

/// `/api/` protected, `/` public: the layout of the hostile suite.
fn protected_api(path_params: bool) -> RouteTable {
    RouteTable::new([
        RouteSpec {
            prefix: "/api/",
            auth: AuthMode::Required,
            path_params,
        },
        RouteSpec {
            prefix: "/",
            auth: AuthMode::Public,
            path_params,
        },
    ])
}

fn routed<'t>(t: &'t RouteTable, raw: &str) -> Result<Option<&'t str>, ApiError> {
    let c = canonicalize(raw.as_bytes())?;
    Ok(t.route(c.path())?.map(|r| r.prefix.as_str()))
}

#[test]
fn a_path_that_another_case_routes_elsewhere_is_refused() {
    let t = protected_api(false);
    for raw in [
        "/API/secret",
        "/Api/secret",
        "/%41PI/secret",
        "/%41pi/secret",
        "/aPI/",
    ] {
        assert_eq!(routed(&t, raw), Err(ApiError::InvalidPath), "{raw}");
    }
    // Case that changes nothing about the route is fine.
    for (raw, want) in [
        ("/api/SECRET", "/api/"),
        ("/%61pi/x", "/api/"),
        ("/APIARY", "/"),
        ("/public/API/x", "/"),
    ] {
        assert_eq!(routed(&t, raw), Ok(Some(want)), "{raw}");
    }
}

#[test]
fn semicolons_are_refused_unless_the_route_allows_them() {
    let t = protected_api(false);
    for raw in [
        "/api;x/secret",
        "/api/secret;jsessionid=1",
        "/x;y",
        "/;/api/secret",
    ] {
        assert_eq!(routed(&t, raw), Err(ApiError::InvalidPath), "{raw}");
    }
    // An escaped semicolon is data, not a parameter.
    assert_eq!(routed(&t, "/api%3Bx/secret"), Ok(Some("/")));
    let t = protected_api(true);
    assert_eq!(routed(&t, "/api/secret;jsessionid=1"), Ok(Some("/api/")));
    assert_eq!(routed(&t, "/files;v=2/x"), Ok(Some("/")));
    // Allowed, but read without its parameters it is another route's path.
    for raw in ["/api;x/secret", "/API;x/secret", "/api;x/"] {
        assert_eq!(routed(&t, raw), Err(ApiError::InvalidPath), "{raw}");
    }
}

#[test]
fn without_a_matching_route_a_semicolon_is_no_route() {
    let t = RouteTable::new([("/api/", AuthMode::Required)]);
    assert_eq!(routed(&t, "/other;x"), Ok(None));
    assert_eq!(routed(&t, "/api;x/y"), Err(ApiError::InvalidPath));
}
