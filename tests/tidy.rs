//! Tidy: tests that read culprit's own source and hold its structure, in the manner of
//! rust-analyzer's `tidy.rs`. They need no build of culprit's code, only its text.
//!
//! - Stage order (over `src/` and the readers crate, `readers/src/`): data flows one way (ingest → detect → correlate → graph → rank → investigate →
//!   report, with the side roads named in [`STAGES`]), and a module of `src/` imports only from
//!   its own stage's module and the ones before it. ARCHITECTURE.md lists the same order.
//! - No circles: the imports between files form no cycle. A file may use its parent module (the
//!   module's shared vocabulary in `mod.rs`); every other import runs one way.
//! - Habits: every file says why it exists (`//!`), no library function returns
//!   `Result<_, String>`, and `main.rs` stays a thin shell.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules in data-flow order: each may import from itself and the
/// modules above it, never from one below. ARCHITECTURE.md's "Stage order" block lists the same
/// names in the same order.
const STAGES: &[(&str, &str)] = &[
    ("model", "readers: the shared types: incident, telemetry, times"),
    ("ingest", "readers: telemetry files in and out"),
    ("otlp", "readers: OTLP/HTTP export requests"),
    ("alerts", "readers: alert webhook payloads"),
    ("table", "readers: the drill-down's tables"),
    ("config", "readers: culprit.toml"),
    ("fuzz", "readers: the fuzz targets' bodies"),
    ("rng", "seeded randomness shared by the simulator and the drill-down"),
    ("redact", "secrets and PII taken out of text"),
    ("llm", "the OpenAI-compatible client"),
    ("simulate", "labelled incidents, made up"),
    ("detect", "anomalies per source"),
    ("embed", "learned embedders and the k-NN detector"),
    ("store", "LanceDB tables"),
    ("correlate", "groups, dependencies, inferred suspects"),
    ("graph", "the causal graph"),
    ("rank", "the ranked candidates and the triage confidence"),
    ("triage", "detect → rank as one pure function"),
    ("baselines", "side road: the published rankers"),
    ("drilldown", "side road: business-KPI drill-down"),
    ("investigate", "the agent: ledger, tools, policies"),
    ("calibrate", "the printed confidence: evidence mapped to a probability"),
    ("report", "what the user reads"),
    ("rerank", "the feedback re-ranker"),
    ("pipeline", "the one entry: triage, re-rank, agent, report"),
    ("kb", "the knowledge base of past incidents"),
    ("eval", "datasets and scores"),
    ("plots", "eval's charts"),
    ("serve", "the service"),
    ("bench", "speed and memory"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One source file: its module path (`investigate::tools::similar`), the crate it belongs to, and
/// its code without comments, string literals and test modules.
struct File {
    module: Vec<String>,
    path: PathBuf,
    binary: bool,
    code: String,
    /// Child modules it declares (`mod x;`).
    children: Vec<String>,
}

/// Walks the module tree from a crate root, following `mod x;` declarations.
fn crate_files(root_file: &Path, binary: bool) -> Vec<File> {
    let mut out = Vec::new();
    let mut queue = vec![(Vec::<String>::new(), root_file.to_path_buf())];
    while let Some((module, path)) = queue.pop() {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let code = without_tests(&strip(&text));
        let children = declared_modules(&code);
        let dir = match path.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            _ => path.with_extension(""),
        };
        for c in &children {
            let (flat, nested) = (dir.join(format!("{c}.rs")), dir.join(c).join("mod.rs"));
            let file = if flat.is_file() { flat } else { nested };
            assert!(file.is_file(), "{}: `mod {c};` has no file", path.display());
            let mut m = module.clone();
            m.push(c.clone());
            queue.push((m, file));
        }
        out.push(File { module, path, binary, code, children });
    }
    out.sort_by(|a, b| a.module.cmp(&b.module));
    out
}

/// Source text with comments replaced by spaces and string and char literals emptied, so that
/// neither can look like an import.
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| b.get(i + k) == Some(&c));
    while i < b.len() {
        if at(i, "//") {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < b.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if b[i] == 'r'
            && (at(i, "r\"") || at(i, "r#"))
            && !b.get(i.wrapping_sub(1)).is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            j += 1;
            while j < b.len() && !at(j, &close) {
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.chars().count();
        } else if b[i] == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                if b.get(j) == Some(&'\n') {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if b[i] == '\'' {
            // A char literal ('a', '\n', '\u{1F600}'), or a lifetime ('a) left as it is.
            let is_char = matches!((b.get(i + 1), b.get(i + 2)), (Some('\\'), _) | (Some(_), Some('\'')));
            if is_char {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Code with every `#[cfg(test)]` item removed (tests may use anything earlier or later).
fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let bytes = out.as_bytes();
        let mut i = start + "#[cfg(test)]".len();
        let mut depth = 0i32;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        out.replace_range(start..i.min(out.len()), "");
    }
    out
}

fn declared_modules(code: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;").expect("regex");
    re.captures_iter(code).map(|c| c[1].to_string()).collect()
}

/// Every path a file names: the leaves of its `use` trees (with aliases) and paths written in the
/// code (`crate::x::y`, `super::z`, `child::f`).
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let uses = regex::Regex::new(r"\buse\s+([^;]+);").expect("regex");
    for c in uses.captures_iter(code) {
        let tree: String = c[1].chars().filter(|c| !c.is_whitespace()).collect();
        expand_use(&[], &tree, &mut out);
    }
    let inline = regex::Regex::new(r"(?:^|[^:\w])((?:[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)+)").expect("regex");
    for c in inline.captures_iter(code) {
        out.push(c[1].split("::").map(str::to_string).collect());
    }
    out
}

/// `a::{b, c::{d as e, self}}` → [a, b], [a, c, d], [a, c].
fn expand_use(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for ch in tree.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(ch);
    }
    items.push(item);
    for it in items.iter().filter(|i| !i.is_empty()) {
        if let Some(open) = it.find('{') {
            let head: Vec<String> = it[..open].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect();
            let inner = &it[open + 1..it.rfind('}').unwrap_or(it.len())];
            let p: Vec<String> = prefix.iter().cloned().chain(head).collect();
            expand_use(&p, inner, out);
        } else {
            let name = it.split("as").next().unwrap_or(it);
            let mut p: Vec<String> = prefix.to_vec();
            p.extend(name.split("::").filter(|s| !s.is_empty() && *s != "self").map(str::to_string));
            out.push(p);
        }
    }
}

/// The import edges between files of one crate: (from, to) module paths. A path is resolved to
/// the longest module that owns it; paths into other crates are not edges.
fn edges(files: &[File], lib: &BTreeSet<Vec<String>>) -> Vec<(Vec<String>, Vec<String>)> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut out = BTreeSet::new();
    for f in files {
        for p in named_paths(&f.code) {
            let (base, rest, known): (Vec<String>, &[String], &BTreeSet<Vec<String>>) =
                match p.first().map(String::as_str) {
                    Some("crate") => (Vec::new(), &p[1..], &modules),
                    Some("culprit") if f.binary => (Vec::new(), &p[1..], lib),
                    Some("super") => {
                        let mut base = f.module.clone();
                        let mut rest = &p[..];
                        while rest.first().map(String::as_str) == Some("super") {
                            base.pop();
                            rest = &rest[1..];
                        }
                        (base, rest, &modules)
                    }
                    Some("self") => (f.module.clone(), &p[1..], &modules),
                    Some(first) if f.children.iter().any(|c| c == first) => (f.module.clone(), &p[..], &modules),
                    _ => continue,
                };
            let full: Vec<String> = base.iter().chain(rest).cloned().collect();
            let target = (0..=full.len()).rev().map(|k| full[..k].to_vec()).find(|m| known.contains(m));
            let cross = f.binary && p.first().map(String::as_str) == Some("culprit");
            match target {
                Some(t) if cross => {
                    out.insert((f.module.clone(), [vec!["culprit".to_string()], t].concat()));
                }
                Some(t) if t != f.module && !t.is_empty() => {
                    out.insert((f.module.clone(), t));
                }
                _ => {}
            }
        }
    }
    out.into_iter().collect()
}

/// The library: `src/` and the readers crate (`readers/src/`), whose modules the library
/// re-exports under the same names (`model`, `ingest`, …) and which come first in the order.
fn lib_files() -> Vec<File> {
    let mut files = crate_files(&root().join("readers/src/lib.rs"), false);
    files.extend(crate_files(&root().join("src/lib.rs"), false));
    files.sort_by(|a, b| a.module.cmp(&b.module));
    files
}

fn bin_files() -> Vec<File> {
    crate_files(&root().join("src/main.rs"), true)
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

fn stage_of(top: &str) -> Option<usize> {
    STAGES.iter().position(|(m, _)| *m == top)
}

/// Problems with the stage order: imports from a later stage, and modules the order does not
/// name (or names that are no module).
fn stage_problems(files: &[File]) -> Vec<String> {
    let lib: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut problems = Vec::new();
    let tops: BTreeSet<&str> = files.iter().filter_map(|f| f.module.first().map(String::as_str)).collect();
    for t in &tops {
        if stage_of(t).is_none() {
            problems.push(format!("src/{t}: a module the stage order does not place: add it to STAGES in tests/tidy.rs and to ARCHITECTURE.md"));
        }
    }
    for (m, _) in STAGES {
        if !tops.contains(m) {
            problems.push(format!("STAGES names `{m}`, which is no module of src/"));
        }
    }
    for (from, to) in edges(files, &lib) {
        let (Some(a), Some(b)) = (from.first(), to.first()) else { continue };
        if let (Some(sa), Some(sb)) = (stage_of(a), stage_of(b)) {
            if sb > sa {
                let file = files.iter().find(|f| f.module == from).map(|f| f.path.clone()).unwrap_or_default();
                problems.push(format!(
                    "{}: `{}` imports `{}`, a later stage ({} comes after {} in the stage order)",
                    file.strip_prefix(root()).unwrap_or(&file).display(),
                    name(&from),
                    name(&to),
                    b,
                    a
                ));
            }
        }
    }
    problems
}

/// A cycle in the import graph, if there is one. A file's use of its ancestor modules is left
/// out (a child may read its module's shared types).
fn find_cycle(files: &[File], lib: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut graph: BTreeMap<Vec<String>, Vec<Vec<String>>> = BTreeMap::new();
    for (from, to) in edges(files, lib) {
        if from.starts_with(&to) {
            continue;
        }
        graph.entry(from).or_default().push(to);
    }
    // Depth-first search with colours: 1 on the stack, 2 done.
    let mut colour: BTreeMap<Vec<String>, u8> = BTreeMap::new();
    fn visit(
        v: &Vec<String>,
        graph: &BTreeMap<Vec<String>, Vec<Vec<String>>>,
        colour: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        colour.insert(v.clone(), 1);
        stack.push(v.clone());
        for w in graph.get(v).into_iter().flatten() {
            match colour.get(w) {
                Some(1) => {
                    let start = stack.iter().position(|s| s == w).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..].iter().map(|m| name(m)).collect();
                    cycle.push(name(w));
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(w, graph, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(v.clone(), 2);
        None
    }
    let nodes: Vec<Vec<String>> = graph.keys().cloned().collect();
    for v in nodes {
        if !colour.contains_key(&v) {
            if let Some(c) = visit(&v, &graph, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn imports_follow_the_stage_order() {
    let problems = stage_problems(&lib_files());
    assert!(problems.is_empty(), "imports against the data flow:\n  {}", problems.join("\n  "));
}

#[test]
fn no_import_circles() {
    let lib = lib_files();
    let modules: BTreeSet<Vec<String>> = lib.iter().map(|f| f.module.clone()).collect();
    if let Some(c) = find_cycle(&lib, &modules) {
        panic!("import circle in the library: {}", c.join(" → "));
    }
    if let Some(c) = find_cycle(&bin_files(), &modules) {
        panic!("import circle in the binary: {}", c.join(" → "));
    }
}

#[test]
fn architecture_md_lists_the_same_stage_order() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let block = text
        .split("```text stage-order")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```text stage-order block");
    let listed: Vec<&str> = block.lines().filter_map(|l| l.split_whitespace().next()).collect();
    let ours: Vec<&str> = STAGES.iter().map(|(m, _)| *m).collect();
    assert_eq!(listed, ours, "ARCHITECTURE.md's stage order differs from tests/tidy.rs STAGES");
}

#[test]
fn every_file_says_why_it_exists() {
    let missing: Vec<String> = lib_files()
        .into_iter()
        .chain(bin_files())
        .filter(|f| !std::fs::read_to_string(&f.path).unwrap_or_default().trim_start().starts_with("//!"))
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! comment saying why they exist:\n  {}", missing.join("\n  "));
}

/// `Result<T, String>` as a return type or alias: errors are typed (thiserror enums) in the library.
fn string_errors(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("Result<") {
        let after = &rest[i + "Result<".len()..];
        let before = rest[..i].trim_end().trim_end_matches("std::result::").trim_end_matches("result::").trim_end();
        let returned = before.ends_with("->") || before.ends_with('=');
        let (mut depth, mut end) = (1i32, after.len());
        for (k, ch) in after.char_indices() {
            match ch {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &after[..end];
        let (mut d, mut last) = (0i32, 0usize);
        for (k, ch) in args.char_indices() {
            match ch {
                '<' | '(' | '[' => d += 1,
                '>' | ')' | ']' => d -= 1,
                ',' if d == 0 => last = k + 1,
                _ => {}
            }
        }
        if returned && last > 0 && args[last..].trim() == "String" {
            found.push(format!("Result<{}>", args.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
        rest = &after[end.min(after.len())..];
    }
    found
}

#[test]
fn library_errors_are_typed() {
    let mut problems = Vec::new();
    for f in lib_files() {
        for r in string_errors(&f.code) {
            problems.push(format!("{}: {r}", f.path.strip_prefix(root()).unwrap_or(&f.path).display()));
        }
    }
    assert!(
        problems.is_empty(),
        "library functions returning String errors (use a thiserror enum):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn main_is_a_thin_shell() {
    let lines = std::fs::read_to_string(root().join("src/main.rs")).expect("main.rs").lines().count();
    assert!(lines < 300, "src/main.rs has {lines} lines: parse, call, print and map errors there; the rest belongs in the library or src/cli/");
}

/// One place assembles the stages: outside `pipeline.rs` no library or binary code runs the
/// triage, runs an investigation to its end, or folds one into a report.
#[test]
fn the_pipeline_is_assembled_in_one_place() {
    let stages = ["triage::triage(", "add_investigation(", "investigate::investigate(", "investigate_watched("];
    let mut problems = Vec::new();
    for f in lib_files().into_iter().chain(bin_files()) {
        if f.module == ["pipeline"]
            || (f.module.len() == 1 && ["triage", "report", "investigate"].contains(&f.module[0].as_str()))
        {
            continue;
        }
        for s in stages {
            if f.code.contains(s) {
                problems.push(format!("{}: calls {s}…)", f.path.strip_prefix(root()).unwrap_or(&f.path).display()));
            }
        }
    }
    assert!(problems.is_empty(), "stages assembled outside pipeline::run:\n  {}", problems.join("\n  "));
}

/// The checks themselves, on made-up sources: a back-edge, a circle, a String error.
#[test]
fn the_checks_catch_what_they_should() {
    let file = |module: &str, code: &str, children: &[&str]| File {
        module: module.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect(),
        path: PathBuf::from(format!("src/{}.rs", module.replace("::", "/"))),
        binary: false,
        code: without_tests(&strip(code)),
        children: children.iter().map(|c| c.to_string()).collect(),
    };
    let ok = [
        file("", "pub mod detect; pub mod report;", &["detect", "report"]),
        file(
            "detect",
            "use crate::model::Ts; // use crate::report::Report;\nconst S: &str = \"crate::report::x\";",
            &[],
        ),
        file("report", "use crate::detect::{self, Anomaly};\n#[cfg(test)]\nmod tests { use crate::report; }", &[]),
        file("model", "", &[]),
    ];
    assert!(stage_problems(&ok).iter().all(|p| !p.contains("imports")), "{:?}", stage_problems(&ok));
    let back = [file("detect", "fn f() -> crate::report::Report { todo!() }", &[]), file("report", "", &[])];
    let p = stage_problems(&back);
    assert!(p.iter().any(|p| p.contains("`detect` imports `report`, a later stage")), "{p:?}");
    let lib: BTreeSet<Vec<String>> =
        ["ingest", "ingest::io", "ingest::logs"].iter().map(|m| m.split("::").map(str::to_string).collect()).collect();
    let circle = [
        file("ingest", "pub mod io; pub mod logs;", &["io", "logs"]),
        file("ingest::io", "use super::logs::walk;", &[]),
        file("ingest::logs", "use super::{io, Error};", &[]),
    ];
    let c = find_cycle(&circle, &lib).expect("a cycle");
    assert!(c.contains(&"ingest::io".to_string()) && c.contains(&"ingest::logs".to_string()), "{c:?}");
    let parent = [file("ingest", "pub mod io; use io::open;", &["io"]), file("ingest::io", "use super::Error;", &[])];
    assert_eq!(find_cycle(&parent, &lib), None, "a child may use its parent module");
    assert_eq!(string_errors("pub fn f(x: u8) -> Result<Vec<(u8, String)>, String> {}").len(), 1);
    assert_eq!(string_errors("type Cell = Result<f64, String>;").len(), 1);
    assert!(string_errors("fn f() -> Result<String, Error> {} fn g(x: Result<u8, String>) {}").is_empty());
}
