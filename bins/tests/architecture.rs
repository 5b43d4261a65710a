//! The machine-checkable Architecture Invariants of `docs/architecture.md`.
//!
//! This file is long because every invariant is its own test, and each check
//! is first tested on synthetic input so that a check that cannot fail shows.
//!
//! Review is not enforcement: each invariant is a plain `#[test]` reading the
//! real workspace (`cargo metadata` and the source files). The checks are
//! small functions tested on synthetic input first, so a check that could
//! never fail would show up here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Crates that must stay pure: no I/O, no async runtime, no HTTP.
const PURE_CRATES: &[&str] = &["afk-core", "checklist", "afk-cli"];

/// Source folders that must stay pure: the pure crates, and the decisions of
/// the runner (a crate with I/O at its edge).
const PURE_SOURCES: &[&str] = &[
    "afk-core/src",
    "checklist/src",
    "afk-cli/src",
    "runner/src/decide",
];

/// Crates whose paths pure source must not name.
const FORBIDDEN_CRATE_PATHS: &[&str] =
    &["tokio", "reqwest", "hyper", "kube", "axum", "afk_process"];

/// What the shipped binaries must not link: the simulated world and the test
/// crates.
const TEST_WORLD: &[&str] = &["afk-demo", "afk-sim", "wiremock", "insta", "proptest"];

/// Crates a pure crate must not reach, directly or through another crate.
const FORBIDDEN_DEPENDENCIES: &[&str] = &["tokio", "reqwest", "hyper", "kube", "axum"];

/// Standard-library modules that do I/O or read the process environment.
const FORBIDDEN_STD_MODULES: &[&str] = &["fs", "net", "process", "env"];

/// The resolve graph: package names by id, and each package's normal and
/// build dependencies (dev-dependencies are the tests' business).
fn normal_edges(metadata: &Value) -> (BTreeMap<&str, &str>, BTreeMap<&str, Vec<&str>>) {
    let name_of = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let edges = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null() || k["kind"] == "build")
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    (name_of, edges)
}

/// Names of the crates reachable from `root` through normal and build
/// dependencies.
fn reachable(metadata: &Value, root: &str) -> BTreeSet<String> {
    let (name_of, edges) = normal_edges(metadata);
    let root_id = name_of
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{root} is not in the workspace"));
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        for dep in edges.get(id).into_iter().flatten() {
            if seen.insert(*dep) {
                stack.push(dep);
            }
        }
    }
    seen.into_iter().map(|id| name_of[id].to_owned()).collect()
}

/// Every `file:line: what` that `check` finds in the Rust files under `dirs`
/// (relative to the workspace root).
fn scan(dirs: &[&str], check: impl Fn(&Path, &str) -> Vec<(usize, String)>) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    for dir in dirs {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "{dir} has sources");
        for file in files {
            let source = std::fs::read_to_string(&file).expect("source is readable");
            for (line, what) in check(&file, &source) {
                found.push(format!("{}:{line}: {what}", file.display()));
            }
        }
    }
    found
}

/// `(line number, code)` of every line that is not a comment (the docs may
/// say what a crate does not do).
fn code_lines(source: &str) -> impl Iterator<Item = (usize, &str)> {
    source
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start()))
        .filter(|(_, l)| !l.starts_with("//"))
}

/// `(line number, module)` for every use of a forbidden std module in Rust
/// source text.
fn forbidden_std_uses(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (line, code) in code_lines(source) {
        for module in FORBIDDEN_STD_MODULES {
            let direct = format!("std::{module}");
            let direct_hit = code.match_indices(&direct).any(|(at, _)| {
                !code[at + direct.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            let grouped_hit = code.find("std::{").is_some_and(|at| {
                code[at..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|word| word == *module)
            });
            if direct_hit || grouped_hit {
                found.push((line, (*module).to_owned()));
            }
        }
    }
    found
}

/// `(line number, crate)` for every path into a forbidden crate in Rust
/// source text (`tokio::…`, `use tokio`).
fn forbidden_crate_uses(source: &str) -> Vec<(usize, String)> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (line, code) in code_lines(source) {
        for krate in FORBIDDEN_CRATE_PATHS {
            // `krate::` not preceded by an identifier character (so
            // `my_tokio::` is not a hit), or `use krate` as a whole word.
            let path = format!("{krate}::");
            let as_path = code
                .match_indices(&path)
                .any(|(at, _)| !code[..at].chars().next_back().is_some_and(ident));
            let used = code
                .strip_prefix(&format!("use {krate}"))
                .is_some_and(|rest| !rest.chars().next().is_some_and(ident));
            if as_path || used {
                found.push((line, (*krate).to_owned()));
            }
        }
    }
    found
}

/// The words of the image build's `cargo build` command (continuation
/// lines joined).
fn image_build_words(containerfile: &str) -> Vec<String> {
    let joined = containerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.split_once("cargo build"))
        .map(|(_, rest)| rest.split("&&").next().unwrap_or(""))
        .flat_map(|rest| rest.split_whitespace().map(str::to_owned))
        .collect()
}

/// The feature flags among `words`, as cargo metadata takes them.
fn feature_flags(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--no-default-features" | "--all-features" => out.push(w.clone()),
            "--features" | "-F" => {
                out.push("--features".into());
                out.push(it.next().cloned().unwrap_or_default());
            }
            w if w.starts_with("--features=") => out.push(w.to_owned()),
            _ => {}
        }
    }
    out
}

/// Whether a member manifest opts in to the workspace lints.
fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact == "lints.workspace=true" || compact == "lints={workspace=true}" {
            return true;
        }
        if line.starts_with('[') {
            in_lints = line == "[lints]";
            continue;
        }
        if in_lints && compact == "workspace=true" {
            return true;
        }
    }
    false
}

fn cargo_metadata() -> Value {
    cargo_metadata_with(&[])
}

fn cargo_metadata_with(flags: &[String]) -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(flags)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    if dir.is_file() {
        into.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).expect("source directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

fn member_manifests(metadata: &Value) -> Vec<(String, PathBuf)> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                PathBuf::from(p["manifest_path"].as_str().unwrap()),
            )
        })
        .collect()
}

// The checks themselves, on synthetic input: each must be able to fail.

#[test]
fn the_std_scan_catches_direct_and_grouped_uses() {
    let source = "\
//! Reads no std::fs.
use std::fmt;
use std::fs::File;
use std::{collections::BTreeMap, env};
fn f() { let _ = std::process::id(); }
use std::environment_like_name;
// std::net in a comment
";
    assert_eq!(
        forbidden_std_uses(source),
        vec![
            (3, "fs".to_owned()),
            (4, "env".to_owned()),
            (5, "process".to_owned())
        ]
    );
}

#[test]
fn the_lints_check_needs_the_opt_in() {
    assert!(inherits_workspace_lints(
        "[package]\nname='x'\n\n[lints]\nworkspace = true\n"
    ));
    assert!(inherits_workspace_lints(
        "[package]\nlints.workspace = true\n"
    ));
    assert!(!inherits_workspace_lints("[package]\nname='x'\n"));
    assert!(!inherits_workspace_lints(
        "[lints]\n[dependencies]\nworkspace = true\n"
    ));
    assert!(!inherits_workspace_lints(
        "[lints.clippy]\nworkspace = true\n"
    ));
}

#[test]
fn the_graph_walk_follows_normal_dependencies_only() {
    let metadata = serde_json::json!({
        "packages": [
            {"id": "a", "name": "pure"}, {"id": "b", "name": "middle"},
            {"id": "c", "name": "tokio"}, {"id": "d", "name": "insta"}
        ],
        "resolve": {"nodes": [
            {"id": "a", "deps": [
                {"pkg": "b", "dep_kinds": [{"kind": null}]},
                {"pkg": "d", "dep_kinds": [{"kind": "dev"}]}
            ]},
            {"id": "b", "deps": [{"pkg": "c", "dep_kinds": [{"kind": null}]}]},
            {"id": "c", "deps": []}, {"id": "d", "deps": []}
        ]}
    });
    let names = reachable(&metadata, "pure");
    assert!(names.contains("tokio"), "transitive dependency found");
    assert!(!names.contains("insta"), "dev-dependency ignored");
}

#[test]
fn the_crate_scan_catches_paths_into_io_crates() {
    let source = "\
//! Never tokio::spawn here.
use tokio::sync::watch;
fn f() { afk_process::kill_group(1); }
let tokio_like = 1;
use std::fmt;
";
    assert_eq!(
        forbidden_crate_uses(source),
        vec![(2, "tokio".to_owned()), (3, "afk_process".to_owned())]
    );
}

#[test]
fn the_image_build_line_is_read_with_its_feature_flags() {
    let file = "FROM x\nRUN cargo build --release --locked --no-default-features \\\n      -p bins --bin afk \\\n && cp a b\n";
    let words = image_build_words(file);
    assert_eq!(
        words,
        [
            "--release",
            "--locked",
            "--no-default-features",
            "-p",
            "bins",
            "--bin",
            "afk"
        ]
    );
    assert_eq!(feature_flags(&words), ["--no-default-features"]);
    let with = ["-F".to_owned(), "demo".to_owned()];
    assert_eq!(feature_flags(&with), ["--features", "demo"]);
}

// The invariants, on the real workspace.

#[test]
fn the_image_build_links_nothing_from_the_test_world() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let file = std::fs::read_to_string(root.join("docs/deploy/Containerfile")).unwrap();
    let words = image_build_words(&file);
    assert!(
        words.windows(2).any(|w| w[0] == "-p" && w[1] == "bins"),
        "the image builds the bins package: {words:?}"
    );
    let linked = reachable(&cargo_metadata_with(&feature_flags(&words)), "bins");
    let shipped: Vec<&&str> = TEST_WORLD.iter().filter(|t| linked.contains(**t)).collect();
    assert!(
        shipped.is_empty(),
        "the image's binaries link {shipped:?} (build words: {words:?})"
    );
    // Every build but the demo's own is the image's: the default build
    // (what the tests run) links nothing from the test world either.
    let default = reachable(&cargo_metadata(), "bins");
    let linked: Vec<&&str> = TEST_WORLD
        .iter()
        .filter(|t| default.contains(**t))
        .collect();
    assert!(linked.is_empty(), "the default build links {linked:?}");
    // The check can fail: the demo's build does link the simulated world.
    let demo = reachable(
        &cargo_metadata_with(&["--features".to_owned(), "demo".to_owned()]),
        "bins",
    );
    assert!(demo.contains("afk-demo") && demo.contains("wiremock"));
}

#[test]
fn the_core_holds_no_async_code() {
    let deps = reachable(&cargo_metadata(), "afk-core");
    for asynchronous in ["async-trait", "futures-core", "futures-util", "tokio"] {
        assert!(
            !deps.contains(asynchronous),
            "afk-core reaches {asynchronous}: the ports and the ticks are afk-loop's"
        );
    }
    let sources = scan(&["afk-core/src"], |_, source| {
        code_lines(source)
            .filter(|(_, l)| l.contains("async fn") || l.contains(".await"))
            .map(|(n, l)| (n, l.trim().to_owned()))
            .collect()
    });
    assert!(sources.is_empty(), "async code in afk-core: {sources:#?}");
}

/// Literals that give a rule away: a tracker or fake that spells them out is
/// deciding trust or folding check runs itself.
const RULE_LITERALS: &[&str] = &[
    "\"neutral\"",
    "\"skipped\"",
    "\"maintain\"",
    "\"admin\" |",
    "is_bot()",
];

#[test]
fn the_trust_rule_and_the_stage_fold_are_the_cores() {
    // The adapter and the fake call the core's rules...
    for (file, calls) in [
        (
            "afk-adapters/src/github/mod.rs",
            &["trust::label_trust(", "trust::label_trust_by_permission("][..],
        ),
        (
            "afk-adapters/src/github/comments.rs",
            &["approved_author("][..],
        ),
        ("afk-adapters/src/github/stage.rs", &["build_report("][..]),
        (
            "fixtures/afk-sim/src/fakes.rs",
            &[
                "trust::label_trust(",
                "trust::label_trust_by_permission(",
                "trust::comment_trust(",
                "build_report(",
            ][..],
        ),
    ] {
        let source = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        for call in calls {
            assert!(source.contains(call), "{file} does not call {call}");
        }
    }
    // ...and spell out none of them.
    let spelled = scan(
        &["afk-adapters/src/github", "fixtures/afk-sim/src/fakes.rs"],
        |_, source| {
            code_lines(source)
                .filter(|(_, l)| RULE_LITERALS.iter().any(|r| l.contains(r)))
                .map(|(n, l)| (n, l.trim().to_owned()))
                .collect()
        },
    );
    assert!(
        spelled.is_empty(),
        "rules written outside the core: {spelled:#?}"
    );
}

#[test]
fn pure_crates_do_not_depend_on_io_crates() {
    let metadata = cargo_metadata();
    for krate in PURE_CRATES {
        let deps = reachable(&metadata, krate);
        let bad: Vec<&&str> = FORBIDDEN_DEPENDENCIES
            .iter()
            .filter(|f| deps.contains(**f))
            .collect();
        assert!(
            bad.is_empty(),
            "{krate} reaches {bad:?}; pure crates do no I/O"
        );
    }
}

#[test]
fn pure_sources_do_not_use_io_modules_of_std_or_io_crates() {
    let violations = scan(PURE_SOURCES, |_, source| {
        let mut found: Vec<(usize, String)> = forbidden_std_uses(source)
            .into_iter()
            .map(|(l, m)| (l, format!("std::{m}")))
            .collect();
        found.extend(forbidden_crate_uses(source));
        found
    });
    assert!(
        violations.is_empty(),
        "pure crates use I/O: {violations:#?}"
    );
}

#[test]
fn every_member_inherits_the_workspace_lints() {
    let metadata = cargo_metadata();
    let members = member_manifests(&metadata);
    assert!(members.len() >= 3, "the workspace has its members");
    for (name, manifest) in members {
        let text = std::fs::read_to_string(&manifest).expect("manifest is readable");
        assert!(
            inherits_workspace_lints(&text),
            "{name} ({}) does not set [lints] workspace = true",
            manifest.display()
        );
    }
}

// ---- the documents and the shape ---------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file of the workspace (not `target/`, not `node_modules/`).
fn workspace_rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                    walk(&path, into);
                }
            } else if name.ends_with(".rs") {
                into.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace_root(), &mut files);
    files
}

/// `crate -> [workspace dependencies]` from the doc's `crate-graph` block.
fn documented_graph(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let block = doc
        .split("```crate-graph")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or("");
    block
        .lines()
        .filter_map(|line| line.split_once("->"))
        .map(|(name, deps)| {
            let name = name.replace("(pure)", "").trim().to_owned();
            let deps = deps
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
            (name, deps)
        })
        .collect()
}

/// The crates of the code map: its ``### `name` `` headings.
fn documented_crates(doc: &str) -> BTreeSet<String> {
    let map = doc
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or("");
    map.lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

/// The workspace's own graph: each member and its members among its normal
/// and build dependencies.
fn actual_graph(metadata: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let (name_of, edges) = normal_edges(metadata);
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    members
        .iter()
        .map(|id| {
            let deps = edges
                .get(id)
                .into_iter()
                .flatten()
                .filter(|d| members.contains(*d))
                .map(|d| name_of[d].to_owned())
                .collect();
            (name_of[id].to_owned(), deps)
        })
        .collect()
}

/// The test names each Architecture Invariant gives after "Checked by", and
/// the invariants that name none.
fn invariant_tests(doc: &str) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut unchecked = Vec::new();
    for paragraph in doc.split("\n\n") {
        let Some(at) = paragraph.find("**Architecture Invariant:**") else {
            continue;
        };
        let text = &paragraph[at..];
        let Some(checked) = text.find("Checked by") else {
            unchecked.push(text.lines().next().unwrap_or("").to_owned());
            continue;
        };
        for (i, part) in text[checked..].split('`').enumerate() {
            let is_name = i % 2 == 1
                && !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_name {
                names.push(part.to_owned());
            }
        }
    }
    (names, unchecked)
}

#[test]
fn the_document_checks_can_fail() {
    let doc = "## Crate graph\n\n```crate-graph\na (pure) ->\nb -> a, c\n```\n\n## Code map\n\n### `a`\n\ntext\n\n### `b`\n\n### The `x` folder\n\n## Rules\n\n**Architecture Invariant:** holds. Checked by `fn_one` and\n`fn_two` (`x/y.rs`).\n\n**Architecture Invariant:** trust me.\n";
    let graph = documented_graph(doc);
    assert_eq!(graph["a"], BTreeSet::new());
    assert_eq!(
        graph["b"],
        ["a", "c"].iter().map(|s| (*s).to_owned()).collect()
    );
    assert_eq!(
        documented_crates(doc),
        ["a", "b"].iter().map(|s| (*s).to_owned()).collect()
    );
    let (names, unchecked) = invariant_tests(doc);
    assert_eq!(names, ["fn_one", "fn_two"]);
    assert_eq!(unchecked, ["**Architecture Invariant:** trust me."]);
}

#[test]
fn the_code_map_names_every_crate_and_its_dependencies() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/architecture.md")).unwrap();
    let actual = actual_graph(&cargo_metadata());
    let documented = documented_graph(&doc);
    assert_eq!(
        documented, actual,
        "docs/architecture.md's crate graph (left) is not the workspace's (right)"
    );
    let crates: BTreeSet<String> = actual.keys().cloned().collect();
    assert_eq!(
        documented_crates(&doc),
        crates,
        "the code map's ### `crate` sections (left) are not the workspace members (right)"
    );
    for krate in PURE_CRATES {
        assert!(
            doc.contains(&format!("{krate} (pure) ->")),
            "{krate} is marked pure in the graph"
        );
    }
}

#[test]
fn every_invariant_names_a_test_that_exists() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/architecture.md")).unwrap();
    let (names, unchecked) = invariant_tests(&doc);
    assert!(
        unchecked.is_empty(),
        "invariants with no test: {unchecked:#?}"
    );
    assert!(
        names.len() >= 10,
        "the invariants name their tests: {names:?}"
    );
    let sources: Vec<String> = workspace_rust_files()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !sources.iter().any(|s| s.contains(&format!("fn {n}("))))
        .collect();
    assert!(missing.is_empty(), "named but not found: {missing:?}");
}

/// Lines of a file at which its top (first 40 lines) explains its length.
fn says_why_it_is_long(source: &str) -> bool {
    source
        .lines()
        .take(40)
        .any(|l| l.trim_start().starts_with("//") && l.contains("long because"))
}

#[test]
fn every_long_source_file_says_why() {
    assert!(says_why_it_is_long(
        "//! The parser.\n//!\n//! It is long because the format is.\n"
    ));
    assert!(!says_why_it_is_long("fn long_because() {}\n"));
    let mut silent = Vec::new();
    for file in workspace_rust_files() {
        let source = std::fs::read_to_string(&file).unwrap();
        if source.lines().count() > 600 && !says_why_it_is_long(&source) {
            silent.push(file.display().to_string());
        }
    }
    assert!(
        silent.is_empty(),
        "files over 600 lines without a sentence at the top saying why: {silent:#?}"
    );
}

/// Lines of `source` at which a test says it skipped without a check of
/// `CI` in the ten lines before: under `CI=true` a skipped test must fail,
/// never pass silently. Both markers are built from parts, so that this
/// file does not hold them.
fn skips_that_pass_under_ci(source: &str) -> Vec<usize> {
    let said = ["\"skip", "ped: "].concat();
    let checked = ["var_os(\"C", "I\")"].concat();
    let lines: Vec<&str> = source.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//") && l.contains(said.as_str()))
        .filter(|(i, _)| {
            !lines[i.saturating_sub(10)..*i]
                .iter()
                .any(|l| l.contains(checked.as_str()))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn a_skipped_test_fails_under_ci() {
    let said = ["\"skip", "ped: "].concat();
    let checked = ["var_os(\"C", "I\")"].concat();
    let sample = format!(
        "if !root {{\n    eprintln!({said}needs root\");\n}}\nif !ready {{\n    assert!(std::env::{checked}.is_none(), \"needs root\");\n    eprintln!({said}needs root\");\n}}\n"
    );
    assert_eq!(skips_that_pass_under_ci(&sample), [2]);
    let root = workspace_root();
    let mut silent = Vec::new();
    for file in workspace_rust_files() {
        for line in skips_that_pass_under_ci(&std::fs::read_to_string(&file).unwrap()) {
            let shown = file.strip_prefix(&root).unwrap_or(&file).display();
            silent.push(format!("{shown}:{line}"));
        }
    }
    assert!(
        silent.is_empty(),
        "tests that skip without failing under CI=true (assert std::env::var_os(\"CI\").is_none() first): {silent:#?}"
    );
}

#[test]
fn the_binaries_stay_wiring() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("bins/src"), &mut files);
    let lines: usize = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "bin"))
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert!(lines > 0, "bins/src has its settings code");
    assert!(
        lines < 1_000,
        "bins/src outside src/bin has {lines} lines: move what is not wiring into a library"
    );
}

/// Calls that start or signal process groups, which only `afk-process` makes.
const PROCESS_CALLS: &[&str] = &[
    "process_group(",
    "kill_process_group(",
    "test_kill_process_group(",
    "tokio::process::Command",
];

fn process_calls(source: &str) -> Vec<(usize, &'static str)> {
    code_lines(source)
        .flat_map(|(line, code)| {
            PROCESS_CALLS
                .iter()
                .filter(move |c| code.contains(**c))
                .map(move |c| (line, *c))
        })
        .collect()
}

#[test]
fn processes_are_started_and_stopped_only_by_afk_process() {
    assert_eq!(
        process_calls("// process_group(0)\nlet c = tokio::process::Command::new(x);\n"),
        [(2, "tokio::process::Command")]
    );
    let found = scan(
        &[
            "runner/src",
            "breakglass/src",
            "afk-edge/src",
            "afk-gateway/src",
            "bins/src",
            "afk-adapters/src",
        ],
        |_, source| {
            process_calls(source)
                .into_iter()
                .map(|(l, c)| (l, c.to_owned()))
                .collect()
        },
    );
    assert!(
        found.is_empty(),
        "process code outside afk-process: {found:#?}"
    );
}

#[test]
fn the_runner_writes_whole_files_only_through_atomic_write() {
    // The agent's log is streamed while it runs (agent.rs); the findings
    // lock is a lock file; every other write replaces a file whole. Unit
    // tests may write their scratch files any way they like.
    let found = scan(&["runner/src"], |file, source| {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if name == "files.rs" || name == "agent.rs" {
            return Vec::new();
        }
        code_lines(source.split("#[cfg(test)]").next().unwrap_or(""))
            .filter(|(_, l)| l.contains("fs::write(") || l.contains("File::create("))
            .map(|(line, _)| (line, "a partial write".to_owned()))
            .collect()
    });
    assert!(found.is_empty(), "partial writes: {found:#?}");
}

/// A call that names the system's temporary directory itself. Built from
/// parts, so that this file does not make one.
fn temp_dir_call() -> String {
    ["temp_", "dir("].concat()
}

/// The files that may name the system's temporary directory, each with why:
/// runtime defaults and files the program keeps, which `tempfile` would
/// remove. Everything else (every test) makes its directories with
/// `tempfile`, which removes them when dropped, a failed test's included.
const TEMP_DIR_ALLOWED: &[(&str, &str)] = &[
    (
        "afk-gateway/src/settings.rs",
        "the gateway's default work directory (AFK_GATEWAY_WORK_DIR unset), kept across turns",
    ),
    (
        "bins/src/breakglass_cmd.rs",
        "breakglass's default sessions directory, kept across sessions",
    ),
    (
        "fixtures/afk-sim/src/main.rs",
        "the kubeconfig the simulator prints for the operator to export: it outlives the process",
    ),
    (
        "breakglass/examples/bench_attach.rs",
        "a benchmark's sessions directory, which its agent (/bin/false) never writes",
    ),
];

/// `(line number, call)` for every line of code in `source` that names the
/// system's temporary directory.
fn temp_dir_calls(source: &str) -> Vec<(usize, String)> {
    let call = temp_dir_call();
    code_lines(source)
        .filter(|(_, code)| code.contains(call.as_str()))
        .map(|(line, _)| (line, call.clone()))
        .collect()
}

#[test]
fn tests_make_temporary_directories_with_tempfile() {
    let call = temp_dir_call();
    let sample = format!(
        "// std::env::{call}) in a comment\nlet dir = std::env::{call}).join(\"x\");\nlet t = tempfile::tempdir();\n"
    );
    assert_eq!(temp_dir_calls(&sample), [(2, call.clone())]);
    let root = workspace_root();
    let mut found = Vec::new();
    let mut used = BTreeSet::new();
    for file in workspace_rust_files() {
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let calls = temp_dir_calls(&std::fs::read_to_string(&file).unwrap());
        if calls.is_empty() {
            continue;
        }
        if TEMP_DIR_ALLOWED.iter().any(|(path, _)| *path == shown) {
            used.insert(shown);
            continue;
        }
        found.extend(calls.iter().map(|(line, _)| format!("{shown}:{line}")));
    }
    assert!(
        found.is_empty(),
        "temporary directories made by hand (use tempfile, which removes them): {found:#?}"
    );
    let stale: Vec<_> = TEMP_DIR_ALLOWED
        .iter()
        .filter(|(path, _)| !used.contains(*path))
        .collect();
    assert!(
        stale.is_empty(),
        "allowed but no longer there (drop them): {stale:#?}"
    );
}

/// `(port, type)` for every `impl Port for Type` in `source`.
fn port_impls(source: &str) -> Vec<(String, String)> {
    const PORTS: &[&str] = &["Tracker", "Executor", "StageProbe", "Notifier"];
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("impl "))
        .filter_map(|rest| {
            let (port, ty) = rest.split_once(" for ")?;
            let port = port.rsplit("::").next()?.trim();
            let ty = ty.trim_end_matches('{').trim();
            PORTS
                .contains(&port)
                .then(|| (port.to_owned(), ty.to_owned()))
        })
        .collect()
}

#[test]
fn every_port_implementation_runs_its_contract_suite() {
    assert_eq!(
        port_impls(
            "impl StageProbe for WoodpeckerStage {\nimpl Display for X {\nimpl afk_loop::ports::Tracker for FakeTracker {\n"
        ),
        [
            ("StageProbe".to_owned(), "WoodpeckerStage".to_owned()),
            ("Tracker".to_owned(), "FakeTracker".to_owned())
        ]
    );
    // The log doorbell delivers to the process's own log, which a contract
    // cannot observe; notify_wire.rs tests it.
    const EXEMPT: &[&str] = &["LogNotifier"];
    let root = workspace_root();
    let mut impls = Vec::new();
    for dir in ["afk-adapters/src", "fixtures/afk-sim/src"] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        for file in files {
            impls.extend(port_impls(&std::fs::read_to_string(&file).unwrap()));
        }
    }
    assert!(
        impls.len() >= 8,
        "the port implementations are found: {impls:?}"
    );
    let mut contracts = String::new();
    for entry in std::fs::read_dir(root.join("afk-adapters/tests"))
        .unwrap()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with("_contract.rs")
        {
            contracts.push_str(&std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    let untested: Vec<&(String, String)> = impls
        .iter()
        .filter(|(_, ty)| !EXEMPT.contains(&ty.as_str()) && !contracts.contains(ty.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "port implementations without a contract suite: {untested:?}"
    );
}

/// A crate's modules (`a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; `` for the
/// root) and the modules each one names (`crate::x::…`, `super::x::…`),
/// resolved to the longest module that exists. A parent and its own
/// descendants are not edges: a parent declares and re-exports its
/// children, which use its items.
fn module_edges(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    let resolve = |path: &[&str]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .find(|m| modules.contains(m.as_str()))
    };
    let related = |a: &str, b: &str| {
        let under = |child: &str, parent: &str| {
            parent.is_empty() || child == parent || child.starts_with(&format!("{parent}::"))
        };
        under(a, b) || under(b, a)
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in files {
        let own: Vec<&str> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").collect()
        };
        for (_, line) in code_lines(source) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::").or_else(|| rest.find("super::")) {
                let is_super = rest[at..].starts_with("super::");
                let boundary = at == 0
                    || !rest[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_');
                let tail = &rest[at..];
                let path: Vec<&str> = tail
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|p| !p.is_empty())
                    .collect();
                rest = &rest[at + 7..];
                if !boundary {
                    continue;
                }
                let mut base: Vec<&str> = if is_super {
                    let mut b = own.clone();
                    b.pop();
                    b
                } else {
                    Vec::new()
                };
                let mut supers = path.iter().skip(1).take_while(|p| **p == "super").count();
                while supers > 0 {
                    base.pop();
                    supers -= 1;
                }
                let named: Vec<&str> = path
                    .iter()
                    .skip(1)
                    .filter(|p| **p != "super" && **p != "self" && **p != "{")
                    .copied()
                    .collect();
                let full: Vec<&str> = base.iter().chain(named.iter()).copied().collect();
                if let Some(target) = resolve(&full)
                    && !related(module, &target)
                {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    edges
}

/// The cycles among a crate's modules, each as the modules on it.
fn module_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    let mut seen_on_cycle: BTreeSet<String> = BTreeSet::new();
    for start in edges.keys() {
        // A path back to `start`, by breadth-first search.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        let mut found = None;
        while let Some(m) = queue.pop_front() {
            for next in edges.get(m).into_iter().flatten() {
                if next == start {
                    found = Some(m);
                    break;
                }
                if !parent.contains_key(next.as_str()) {
                    parent.insert(next, m);
                    queue.push_back(next);
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(mut at) = found {
            let mut cycle = vec![start.clone()];
            let mut back = Vec::new();
            while at != start {
                back.push(at.to_owned());
                at = parent[at];
            }
            cycle.extend(back.into_iter().rev());
            if cycle.iter().all(|m| !seen_on_cycle.contains(m)) {
                seen_on_cycle.extend(cycle.iter().cloned());
                cycles.push(cycle);
            }
        }
    }
    cycles
}

/// `(module path, source)` of every file under a crate's `src/` (binaries
/// in `src/bin` and `src/main.rs` are roots of their own and left out).
fn crate_modules(src: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .into_iter()
        .filter(|f| {
            !f.starts_with(src.join("bin")) && f.file_name().is_some_and(|n| n != "main.rs")
        })
        .map(|f| {
            let rel = f.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            (parts.join("::"), std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

#[test]
fn the_module_cycle_check_can_fail() {
    let files = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(m, s)| ((*m).to_owned(), (*s).to_owned()))
            .collect()
    };
    let circle = files(&[
        ("", "mod tick;"),
        ("tick", "mod stop; mod watch;"),
        ("tick::stop", "use super::watch::{finish, write};"),
        ("tick::watch", "fn f() { super::stop::stop(); }"),
        ("rounds", "fn f() { crate::reports::tier(); }"),
        ("reports", "use crate::rounds::{Live, stamp};"),
        (
            "other",
            "use crate::tick::Ports; // a parent's item is not a circle",
        ),
    ]);
    let cycles = module_cycles(&module_edges(&circle));
    assert_eq!(
        cycles,
        [
            vec!["reports".to_owned(), "rounds".to_owned()],
            vec!["tick::stop".to_owned(), "tick::watch".to_owned()],
        ]
    );
    let fine = files(&[
        ("", "mod a; mod b;"),
        ("a", "use crate::b::x; use super::b::y;"),
        ("b", "use crate::B; // the root"),
        ("b::c", "use super::super::a::z; use crate::b::q;"),
    ]);
    assert_eq!(
        module_cycles(&module_edges(&fine)),
        Vec::<Vec<String>>::new()
    );
}

#[test]
fn no_crate_has_an_import_circle_among_its_modules() {
    let metadata = cargo_metadata();
    let mut circles = Vec::new();
    for (name, manifest) in member_manifests(&metadata) {
        let src = manifest.parent().unwrap().join("src");
        if !src.is_dir() {
            continue;
        }
        for cycle in module_cycles(&module_edges(&crate_modules(&src))) {
            circles.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other: {circles:#?}"
    );
}

// ---- the repository stands alone ------------------------------------------------

/// What a reference to a folder beside the repository looks like: the
/// product spec's folder, or a path that climbs out to a sibling. Built
/// from parts, so that this file does not name them itself.
fn outside_markers() -> [String; 2] {
    [["shared", "spec"].join("/"), ["..", "shared"].join("/")]
}

/// `(line number, marker)` for every reference in `text` to a folder beside
/// the repository.
fn outside_references(text: &str) -> Vec<(usize, String)> {
    let markers = outside_markers();
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for marker in &markers {
            if line.contains(marker.as_str()) {
                found.push((i + 1, marker.clone()));
            }
        }
    }
    found
}

/// Where the wire facts live.
const CONTRACTS: &str = "docs/contracts/";

/// The files of the contracts folder that `text` names (`t3.md`), and `""`
/// where it names the folder itself. A trailing full stop ends a sentence,
/// not a name.
fn named_contracts(text: &str) -> BTreeSet<String> {
    text.match_indices(CONTRACTS)
        .map(|(at, _)| {
            text[at + CONTRACTS.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        })
        .collect()
}

/// Every source, script, manifest, document and data file of the workspace
/// (`.rs`, `.md`, `.toml`, `.yaml`, `.py`, `.mjs`, `.sh`, `.json`, and
/// `.ci/run`), not under `target/`, `node_modules/`, `.git/` or the Python
/// packages CI installs beside the Kubernetes schemas (none of it is the
/// repository's).
fn workspace_text_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, into: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | "node_modules" | ".git")
                    && !path.ends_with("fixtures/k8s-api/site")
                {
                    walk(&path, into);
                }
            } else if ["rs", "md", "toml", "yaml", "py", "mjs", "sh", "json"]
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext))
                || path.ends_with(".ci/run")
            {
                into.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&workspace_root(), &mut files);
    files
}

/// A file's text, read leniently (a stray non-UTF-8 byte is not the
/// check's business).
fn text_of(file: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned()
}

#[test]
fn nothing_points_outside_the_repository() {
    // The check can fail: both markers are found, on their lines.
    let [spec, sibling] = outside_markers();
    let sample = format!(
        "//! Facts in `{spec}/contracts/t3.md`.\nuse std::fmt;\n// See {sibling}/CONVENTIONS.md.\n// `{CONTRACTS}t3.md` is in the repository.\n"
    );
    assert_eq!(
        outside_references(&sample),
        [(1, spec.clone()), (3, sibling.clone())]
    );
    let root = workspace_root();
    let files = workspace_text_files();
    assert!(
        files.iter().any(|f| f.ends_with("docs/architecture.md"))
            && files.iter().any(|f| f.ends_with("Cargo.toml"))
            && files
                .iter()
                .any(|f| f.ends_with("docs/deploy/configmap.yaml")),
        "the scan sees the sources, manifests and documents"
    );
    for script in [
        ".ci/run",
        "fixtures/gateway/fake-claude.py",
        "breakglass/e2e/page.test.mjs",
        "fixtures/agents/complete.sh",
        "fixtures/real-cli/package.json",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(script)),
            "the scan sees the scripts and data files too ({script})"
        );
    }
    assert!(
        !files
            .iter()
            .any(|f| f.components().any(|c| c.as_os_str() == "node_modules")),
        "installed packages are not the repository's"
    );
    let mut outside = Vec::new();
    for file in files {
        for (line, marker) in outside_references(&text_of(&file)) {
            let shown = file.strip_prefix(&root).unwrap_or(&file).display();
            outside.push(format!("{shown}:{line}: names {marker}"));
        }
    }
    assert!(
        outside.is_empty(),
        "references to folders beside the repository, which a clone does not have \
         (point them at docs/contracts/ or another file of the repository): {outside:#?}"
    );
}

#[test]
fn every_docs_contract_named_exists() {
    let folder = workspace_root().join(CONTRACTS);
    // The check can fail: it reads the names (and the folder itself), and a
    // file that is not there is not there.
    let sample = format!(
        "//! Facts in `{CONTRACTS}t3.md`, Liveness.\n// [wire facts]({CONTRACTS}) and {CONTRACTS}gone.md.\n"
    );
    assert_eq!(
        named_contracts(&sample),
        ["", "gone.md", "t3.md"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
    assert!(!folder.join("gone.md").exists());
    let root = workspace_root();
    let mut named = 0;
    let mut missing = Vec::new();
    for file in workspace_text_files() {
        for name in named_contracts(&text_of(&file)) {
            named += 1;
            if !folder.join(&name).exists() {
                let shown = file.strip_prefix(&root).unwrap_or(&file).display();
                missing.push(format!("{shown}: {CONTRACTS}{name}"));
            }
        }
    }
    assert!(
        named >= 10,
        "the sources name the contract files they are built from ({named} found)"
    );
    assert!(
        missing.is_empty(),
        "contract files named but not in the repository: {missing:#?}"
    );
}
