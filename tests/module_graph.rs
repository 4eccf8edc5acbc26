//! The crate's dependencies run one way: no import cycle among `src/`'s top-level modules, and no
//! module but `main.rs` imports `cli`. The graph is read from the source as the team's hook does
//! (`crate::X` paths and `use crate::{X, Y::..}` groups; a file's unit tests at its end excluded),
//! so a new cycle fails here before review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module a file under `src/` belongs to: `cpu` for src/cpu.rs, `gpu` for src/gpu/*.
fn top_module(relative: &Path) -> String {
    let first = relative.components().next().expect("a path under src/");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifier at the start of `text`.
fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a source text names: the segment after each `crate::`, and the first
/// segment of each item of a `use crate::{...}` group (items of nested groups are not modules of
/// the crate's top level).
fn imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        found.insert(identifier(&group[i..]).to_string());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(identifier(rest).to_string());
        }
    }
    found
}

/// The graph of top-level modules (edges to other top-level modules only).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let tops: BTreeSet<String> = files
        .iter()
        .map(|f| top_module(f.strip_prefix(&src).unwrap()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> =
        tops.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    for file in &files {
        let top = top_module(file.strip_prefix(&src).unwrap());
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests at the end of a file may reach anywhere.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for target in imports(code) {
            if tops.contains(&target) && target != top {
                graph.get_mut(&top).unwrap().insert(target);
            }
        }
    }
    graph
}

/// The modules reachable from `from`.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = graph[from].iter().map(String::as_str).collect();
    while let Some(next) = stack.pop() {
        if seen.insert(next.to_string()) {
            stack.extend(graph[next].iter().map(String::as_str));
        }
    }
    seen
}

#[test]
fn no_module_imports_cli_and_there_is_no_cycle() {
    let graph = module_graph();
    assert!(
        graph.len() > 10 && graph["run"].contains("trainer"),
        "the graph was not read: {graph:?}"
    );
    let importing_cli: Vec<&String> = graph
        .iter()
        .filter(|(module, deps)| *module != "main" && deps.contains("cli"))
        .map(|(module, _)| module)
        .collect();
    assert!(importing_cli.is_empty(), "{importing_cli:?} import cli");
    let cycles: Vec<(&String, &String)> = graph
        .iter()
        .flat_map(|(module, deps)| deps.iter().map(move |dep| (module, dep)))
        .filter(|(module, dep)| reachable(&graph, dep).contains(*module))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles through these edges (module → dependency): {cycles:?}"
    );
}

#[test]
fn trainer_is_a_leaf_below_the_backends() {
    let graph = module_graph();
    let below = reachable(&graph, "trainer");
    for module in ["cpu", "gpu", "multi", "device", "run", "store", "cli"] {
        assert!(
            !below.contains(module),
            "trainer reaches {module}: {below:?}"
        );
    }
}

#[test]
fn imports_are_read_from_paths_and_groups() {
    let source = "use crate::a::X;\nuse crate::{b, c::{D, e::F}, g::H};\nfn f() { crate::i::j(); }";
    let found: Vec<String> = imports(source).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "g", "i"]);
}
