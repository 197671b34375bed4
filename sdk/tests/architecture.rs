//! The crate's shape, checked: its top-level modules import each other along one
//! direction only, and no library file grows past what one concept needs.
//!
//! The imports are read from the source (`crate::module` paths in code, not in comments,
//! doc comments or `#[cfg(test)]` modules), so the test sees what the compiler sees in a
//! build with every feature. The layers are the ones CONTRIBUTING.md and the crate docs
//! draw: a module may import a module of a lower layer, or of its own layer as long as the
//! imports stay free of cycles; never one of a higher layer. A new top-level module must be
//! given a layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, from the ground floor up.
const LAYERS: &[&[&str]] = &[
    &[
        "algorithm",
        "clock",
        "codes",
        "error",
        "json",
        "oauth",
        "principal",
    ],
    &["token", "policy"],
    &["audit", "remote"],
    &["gate", "guard", "request_state", "postgres"],
    &["server", "http", "stdio"],
    &["authz"],
    &["config", "dev", "agent", "cli"],
];

/// The most lines a library file may have before its tests.
const MAX_LINES: usize = 600;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs` and the binaries).
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src_dir()).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "bin" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The file's code before its `#[cfg(test)] mod tests`, and whether the whole file is a
/// test module (`tests.rs`, `*_tests.rs`).
fn code_before_tests(path: &Path, text: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return None;
    }
    let mut code = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        code.push(line);
    }
    Some(code.join("\n"))
}

/// The top-level modules `code` names through `crate::` paths, outside comments.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let line = line.split(" //").next().unwrap_or(line);
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first segment of each member.
                let mut depth = 0;
                let mut member_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            rest = &group[i..];
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => member_start = true,
                        c if member_start && (c.is_ascii_lowercase() || c == '_') => {
                            let name: String = group[i..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            found.insert(name);
                            member_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                    found.insert(name);
                }
            }
        }
    }
    found.retain(|m| m != "self" && m != "super");
    found
}

/// Each top-level module's imports of other top-level modules, with the files they are in.
fn module_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in files {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read source");
        let Some(code) = code_before_tests(&path, &text) else {
            continue;
        };
        let entry = graph.entry(module.clone()).or_default();
        for import in imports(&code) {
            if import != module {
                let shown = path.strip_prefix(src_dir()).expect("under src");
                entry
                    .entry(import)
                    .or_default()
                    .insert(shown.display().to_string());
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn the_import_reader_finds_paths_and_groups_and_skips_comments() {
    let code = "use crate::token::{AuthError, Verifier};\n\
                use crate::{audit::Auditor, policy::{Decision, Operation}, clock};\n\
                // use crate::config::Config;\n\
                /// [`Authz`](crate::authz::Authz)\n\
                let x = crate::json::parse_object(b); // crate::dev::DevIssuer\n";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["audit", "clock", "json", "policy", "token"]);
}

#[test]
fn every_top_level_module_has_a_layer() {
    let graph = module_graph();
    let unplaced: Vec<&String> = graph.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "give these modules a layer in tests/architecture.rs (and CONTRIBUTING.md): {unplaced:?}"
    );
}

#[test]
fn imports_point_down_the_layers() {
    let graph = module_graph();
    let mut upward = Vec::new();
    for (from, imports) in &graph {
        for (to, files) in imports {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
                && b > a
            {
                upward.push(format!(
                    "{from} (layer {a}) imports {to} (layer {b}) in {files:?}"
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other_directly_or_through_others() {
    let graph = module_graph();
    // Depth-first search for a path back to where it started.
    fn path_back(
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|m| m.keys()) {
            path.push(next.clone());
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) && path_back(graph, start, next, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        if path_back(&graph, start, start, &mut path, &mut BTreeSet::new()) {
            panic!(
                "the modules import each other in a cycle: {}",
                path.join(" -> ")
            );
        }
    }
}

#[test]
fn no_library_file_is_longer_than_one_concept() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut long = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read source");
        if let Some(code) = code_before_tests(&path, &text) {
            let lines = code.lines().count();
            if lines > MAX_LINES {
                let shown = path.strip_prefix(src_dir()).expect("under src");
                long.push(format!("{} ({lines} lines)", shown.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "library files over {MAX_LINES} lines before their tests (split each into files named \
         after its concepts): {long:?}"
    );
}
