//! Property tests for config parsing: `Config::parse` never panics, on
//! arbitrary text or on mutations (byte flips, truncations, splices) of the
//! shipped `config.toml.example`.
//!
//! Parsing resolves upstream host names, so a mutation that turns an address
//! into a host name would make the test wait on DNS: such texts are skipped
//! (see [`needs_dns`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::*;

const EXAMPLE: &str = include_str!("../../config.toml.example");
const FILE: &str = "proptest.toml";

fn config() -> ProptestConfig {
    crate::testing::proptest_config()
}

/// Every variable is set, to a secret long enough for `[jwt]`.
fn env(_name: &str) -> Option<String> {
    Some("0123456789abcdef0123456789abcdef".to_string())
}

/// Whether parsing `text` would look up a host name (an upstream that is
/// `host:port` but not an IP address).
fn needs_dns(text: &str) -> bool {
    let Ok(value) = text.parse::<toml::Table>() else {
        return false;
    };
    let Some(routes) = value.get("routes").and_then(toml::Value::as_array) else {
        return false;
    };
    routes
        .iter()
        .filter_map(|r| r.get("upstreams").and_then(toml::Value::as_array))
        .flatten()
        .filter_map(toml::Value::as_str)
        .any(|u| u.parse::<std::net::SocketAddr>().is_err() && u.contains(':'))
}

/// Parse; the result does not matter, only that it comes back. An error
/// must name the file.
fn parse_quietly(text: &str) -> Result<(), TestCaseError> {
    if needs_dns(text) {
        return Ok(());
    }
    if let Err(e) = Config::parse(text, FILE, &env) {
        let shown = e.to_string();
        prop_assert!(shown.contains(FILE), "no file name in: {shown}");
    }
    Ok(())
}

/// One edit of the text's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, Vec<u8>),
    Truncate(prop::sample::Index),
    /// Copy a slice of the text to another place (duplicates keys, sections).
    Splice(prop::sample::Index, prop::sample::Index, usize),
}

/// Bytes that mean something to TOML or to the values in the example.
const INTERESTING: &[u8] = b"\"'=[]{}.,#\n\r\t \\0123456789-+:_aeinrstuxz\x00\x7f\xff";

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        3 => (index(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (index(), prop::sample::select(INTERESTING)).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (index(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (index(), prop::collection::vec(prop::sample::select(INTERESTING), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => index().prop_map(Mutation::Truncate),
        1 => (index(), index(), 1usize..200).prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
    ]
}

fn apply(text: &mut Vec<u8>, m: &Mutation) {
    let at = |i: &prop::sample::Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::FlipBit(i, bit) => {
            if !text.is_empty() {
                let i = at(i, text.len());
                text[i] ^= 1 << bit;
            }
        }
        Mutation::SetByte(i, b) => {
            if !text.is_empty() {
                let i = at(i, text.len());
                text[i] = *b;
            }
        }
        Mutation::Delete(i, n) => {
            let i = at(i, text.len());
            let end = (i + n).min(text.len());
            text.drain(i..end);
        }
        Mutation::Insert(i, bytes) => {
            let i = at(i, text.len() + 1);
            text.splice(i..i, bytes.iter().copied());
        }
        Mutation::Truncate(i) => {
            let i = at(i, text.len() + 1);
            text.truncate(i);
        }
        Mutation::Splice(from, to, n) => {
            let from = at(from, text.len());
            let end = (from + n).min(text.len());
            let piece = text[from..end].to_vec();
            let to = at(to, text.len() + 1);
            text.splice(to..to, piece);
        }
    }
}

/// The example with only its comment markers removed from `key = value`
/// lines: every optional key switched on at once.
fn uncommented_example() -> String {
    EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        parse_quietly(&text)?;
    }

    #[test]
    fn toml_like_text_never_panics(
        text in "(\\[{1,2}[a-z._]{0,10}\\]{0,2}\n|[a-z_.]{1,12} ?= ?(\"[ -~]{0,12}\"|[0-9.e+-]{1,6}|\\[\\]|\\{\\}|true)\n){0,10}"
    ) {
        parse_quietly(&text)?;
    }

    #[test]
    fn mutated_example_never_panics(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut text = EXAMPLE.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut text, m);
        }
        parse_quietly(&String::from_utf8_lossy(&text))?;
    }

    #[test]
    fn mutated_uncommented_example_never_panics(mutations in prop::collection::vec(mutation(), 1..4)) {
        let mut text = uncommented_example().into_bytes();
        for m in &mutations {
            apply(&mut text, m);
        }
        parse_quietly(&String::from_utf8_lossy(&text))?;
    }

    /// Line-level edits: drop, duplicate or swap whole lines.
    #[test]
    fn reordered_example_lines_never_panic(
        ops in prop::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
    ) {
        let mut lines: Vec<&str> = EXAMPLE.lines().collect();
        for (op, a, b) in &ops {
            if lines.is_empty() {
                break;
            }
            let (i, j) = (a.index(lines.len()), b.index(lines.len()));
            match op {
                0 => {
                    lines.remove(i);
                }
                1 => lines.insert(j, lines[i]),
                _ => lines.swap(i, j),
            }
        }
        parse_quietly(&lines.join("\n"))?;
    }
}

// ---------------------------------------------------------------------------
// Fixed hostile corpus
// ---------------------------------------------------------------------------

#[test]
fn example_parses() {
    Config::parse(EXAMPLE, FILE, &env).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn corpus_of_hostile_configs_never_panics() {
    let huge_number = format!("[server]\nthreads = {}\n", "9".repeat(400));
    let deep = format!("a = {}{}\n", "[".repeat(2_000), "]".repeat(2_000));
    let deep_tables = format!("a = {}1{}\n", "{b = ".repeat(2_000), "}".repeat(2_000));
    let many_routes = "[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:1\"]\n".repeat(500);
    let corpus: Vec<String> = vec![
        String::new(),
        "\u{feff}".into(),
        "\0".into(),
        "[".into(),
        "[[routes]]".into(),
        "[[routes]]\n[[routes]]\n".into(),
        "routes = 1".into(),
        "routes = []".into(),
        "[server]\nthreads = -1\n".into(),
        "[server]\nthreads = 0\n".into(),
        "[server]\nthreads = 18446744073709551616\n".into(),
        "[server]\ngrace_period = \"18446744073709551615s\"\n".into(),
        "[server]\ngrace_period = \"99999999999999999999h\"\n".into(),
        "[server]\ngrace_period = \"1e308s\"\n".into(),
        "[server]\ngrace_period = \"-1s\"\n".into(),
        "[server]\ngrace_period = \"\"\n".into(),
        "[server]\ngrace_period = \"5\u{ff10}s\"\n".into(),
        "[server]\nlisten = \"[::1]:99999\"\n".into(),
        "[server]\ntrusted_proxies = [\"10.0.0.0/99\", \"::/200\", \"\"]\n".into(),
        "[jwt]\nttl = \"0s\"\nleeway = \"9999999999d\"\nmax_token_bytes = 18446744073709551615\n"
            .into(),
        "[login]\nrate_limit_per_ip = \"0/min\"\nrate_limit_global = \"18446744073709551615/s\"\n"
            .into(),
        "[login]\nrate_limit_per_ip = \"/\"\nrate_limit_global = \"1/0s\"\n".into(),
        "[store]\nkind = \"redis\"\nurl = \"redis://:@\u{0}:0/99999999999999999999\"\n".into(),
        "[headers]\nopenid = \"\"\nunionid = \"Host\"\nappid = \"X-OpenID\"\n".into(),
        "[headers]\nstrip = [\"\", \"Host\", \"x_openid\", \"\\u0000\"]\n".into(),
        huge_number,
        deep,
        deep_tables,
        many_routes,
    ];
    for text in &corpus {
        // Through the example too: the hostile piece appended to a valid file.
        for t in [text.clone(), format!("{EXAMPLE}\n{text}")] {
            if !needs_dns(&t) {
                let _ = Config::parse(&t, FILE, &env);
            }
        }
    }
}
