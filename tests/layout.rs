//! The layout of `src/` stays as the README's architecture notes describe it:
//! no two files import each other, directly or round a loop (a file and its
//! parent included); no domain module imports `crate::config` (each owns its
//! section; `config/` assembles them); no production file passes 500 lines.
//!
//! The check reads `use` paths and `crate::`/`super::`/`self::` paths as text
//! (comments and `#[cfg(test)]` modules left out), and a parent's use of a
//! child module by name; test-only files do not count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Files that hold tests only.
fn is_test_file(module: &[String]) -> bool {
    module
        .iter()
        .any(|m| m == "tests" || m == "proptests" || m == "testing" || m.ends_with("_tests"))
}

/// Every `.rs` file under `dir`, by module path (`lib.rs` and `main.rs` are the root).
fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<String>, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            modules(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src");
            let text = std::fs::read_to_string(&path).expect("read file");
            let name: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            // lib.rs is the crate root; main.rs, the binary's, counts as a
            // file of its own (it imports the library by name, not crate::).
            let module = if name == ["lib"] { Vec::new() } else { name };
            out.insert(module, text);
        }
    }
}

/// The text that counts: no comments, no inline `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    let mut cut = code.len();
    let mut from = 0;
    while let Some(i) = code[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        // Skip further attributes, then look for `mod name {`.
        let mut rest = rest;
        while rest.starts_with("#[") {
            rest = rest[rest.find(']').map_or(rest.len(), |j| j + 1)..].trim_start();
        }
        let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
        if let Some(after) = rest.strip_prefix("mod ") {
            let head: String = after
                .chars()
                .take_while(|c| *c != ';' && *c != '{')
                .collect();
            if after[head.len()..].starts_with('{') {
                cut = at;
                break;
            }
        }
        from = at + 1;
    }
    code.truncate(cut);
    code
}

fn ident_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    i
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The paths of the path tree starting at `i` (`a::b::{c, d::e}`), and where it ends.
fn paths_at(s: &[u8], i: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut i = skip_ws(s, i);
    loop {
        let end = ident_end(s, i);
        if end == i {
            break;
        }
        segments.push(String::from_utf8_lossy(&s[i..end]).into_owned());
        i = end;
        if s.get(i..i + 2) == Some(b"::") {
            i = skip_ws(s, i + 2);
            if s.get(i) == Some(&b'{') {
                let mut out = Vec::new();
                i += 1;
                loop {
                    i = skip_ws(s, i);
                    while s.get(i) == Some(&b',') {
                        i = skip_ws(s, i + 1);
                    }
                    if i >= s.len() || s[i] == b'}' {
                        return (out, i + 1);
                    }
                    let (subs, next) = paths_at(s, i);
                    if next <= i {
                        return (out, i + 1);
                    }
                    for sub in subs {
                        let mut p = segments.clone();
                        p.extend(sub);
                        out.push(p);
                    }
                    i = next;
                }
            }
            continue;
        }
        break;
    }
    (vec![segments], i)
}

/// The deepest file a path names.
fn file_of(files: &BTreeMap<Vec<String>, String>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

/// Which files each production file imports.
fn imports(files: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut graph = BTreeMap::new();
    for (module, text) in files {
        if is_test_file(module) {
            continue;
        }
        let code = code_of(text);
        let s = code.as_bytes();
        let mut targets = BTreeSet::new();
        let mut add = |path: Vec<String>| {
            if let Some(t) = file_of(files, &path) {
                if &t != module && !is_test_file(&t) {
                    targets.insert(t);
                }
            }
        };
        for (i, _) in code.match_indices("::") {
            // The start of the path this `::` belongs to.
            let start = (0..i)
                .rev()
                .find(|&j| !(s[j].is_ascii_alphanumeric() || s[j] == b'_'))
                .map_or(0, |j| j + 1);
            if start > 1 && &s[start - 2..start] == b"::" {
                continue;
            }
            let first = &code[start..i];
            let (paths, _) = paths_at(s, start);
            for p in paths {
                let (base, rest): (Vec<String>, &[String]) = match first {
                    "crate" => (Vec::new(), &p[1..]),
                    "self" => (module.clone(), &p[1..]),
                    "super" => {
                        let mut base = module.clone();
                        base.pop();
                        let mut rest = &p[1..];
                        while rest.first().is_some_and(|r| r == "super") {
                            base.pop();
                            rest = &rest[1..];
                        }
                        (base, rest)
                    }
                    // A child module used by name (`flight::Attempt`).
                    child => {
                        let mut path = module.clone();
                        path.push(child.to_string());
                        if !files.contains_key(&path) {
                            continue;
                        }
                        (module.clone(), &p[..])
                    }
                };
                let mut path = base;
                path.extend(rest.iter().cloned());
                add(path);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

/// A loop through `from`, as file names, if there is one.
fn find_loop(
    graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    from: &Vec<String>,
) -> Option<Vec<String>> {
    // Depth-first search back to `from`, remembering the way.
    let mut stack = vec![(from.clone(), vec![name(from)])];
    let mut seen = BTreeSet::new();
    while let Some((at, way)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == from {
                let mut way = way.clone();
                way.push(name(next));
                return Some(way);
            }
            if seen.insert(next.clone()) {
                let mut way = way.clone();
                way.push(name(next));
                stack.push((next.clone(), way));
            }
        }
    }
    None
}

fn src() -> BTreeMap<Vec<String>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    modules(&root, &root, &mut files);
    files
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let files = src();
    let graph = imports(&files);
    let loops: Vec<String> = graph
        .keys()
        .filter_map(|m| find_loop(&graph, m))
        .map(|way| way.join(" -> "))
        .collect();
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn no_domain_module_imports_the_config_module() {
    // The process and its assembly read the whole config; everything else
    // owns its own section.
    let assemblers = ["config", "state", "server", "dev"];
    let files = src();
    let graph = imports(&files);
    let offenders: Vec<String> = graph
        .iter()
        .filter(|(m, _)| !m.is_empty() && !assemblers.contains(&m[0].as_str()))
        .filter(|(_, targets)| {
            targets
                .iter()
                .any(|t| t.first().is_some_and(|f| f == "config"))
        })
        .map(|(m, _)| name(m))
        .collect();
    assert!(offenders.is_empty(), "import crate::config: {offenders:?}");
}

#[test]
fn production_files_stay_small() {
    let long: Vec<String> = src()
        .iter()
        .filter(|(m, _)| !is_test_file(m))
        .filter(|(_, text)| text.lines().count() > 500)
        .map(|(m, text)| format!("{} ({} lines)", name(m), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "over 500 lines, split by idea: {long:?}");
}

#[test]
fn the_check_sees_a_loop() {
    // The checker itself: two files that import each other are found.
    let mut files = BTreeMap::new();
    files.insert(
        vec!["a".to_string()],
        "use crate::b::B;\npub struct A;".to_string(),
    );
    files.insert(
        vec!["b".to_string()],
        "pub struct B(crate::a::A);\n#[cfg(test)]\nmod tests {\n    use crate::c::C;\n}"
            .to_string(),
    );
    files.insert(
        vec!["c".to_string()],
        "use super::b::{B, self};".to_string(),
    );
    files.insert(
        vec!["p".to_string()],
        "mod q;\nfn f() { q::g() }".to_string(),
    );
    files.insert(
        vec!["p".to_string(), "q".to_string()],
        "use super::{x, y};".to_string(),
    );
    let graph = imports(&files);
    assert!(find_loop(&graph, &vec!["a".to_string()]).is_some());
    // A test module's imports do not count, and c only imports b.
    assert!(find_loop(&graph, &vec!["c".to_string()]).is_none());
    // A child importing its parent, which uses the child: a loop.
    assert!(find_loop(&graph, &vec!["p".to_string()]).is_some());
}
