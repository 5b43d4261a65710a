//! The findings ledger: `afk finding add | list | aggregate`.
//!
//! Agents record what they find with `afk finding add`, which appends to
//! `findings/<kind>.json` in its working directory (an item's run directory,
//! when an agent calls it) under the next id of that kind: `BUG-001`,
//! `DX-001`, `IMP-001`, `STR-001`. Several agents run at once, so the
//! read-modify-write holds an exclusive lock on `findings/.lock` and replaces
//! the file atomically: two writers never get the same id, and a crash never
//! leaves half a ledger. A ledger that does not parse is an error, never
//! overwritten. `list` and `aggregate` read every `findings/*.json` under
//! `runs/` (and the working directory's own).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::Error;

/// A finding's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A defect (`BUG-…`).
    Bug,
    /// Developer experience (`DX-…`).
    Dx,
    /// An improvement (`IMP-…`).
    Improvement,
    /// Something that works well (`STR-…`).
    Strength,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Bug, Kind::Dx, Kind::Improvement, Kind::Strength];

    /// Its name, which is also its file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bug => "bug",
            Kind::Dx => "dx",
            Kind::Improvement => "improvement",
            Kind::Strength => "strength",
        }
    }

    /// The prefix of its ids.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Bug => "BUG",
            Kind::Dx => "DX",
            Kind::Improvement => "IMP",
            Kind::Strength => "STR",
        }
    }

    /// The kind named `name` (`bug`, `dx`, `improvement`, `strength`).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Kind, String> {
        Kind::from_name(text.trim()).ok_or_else(|| {
            format!("unknown kind {text:?} (expected bug, dx, improvement or strength)")
        })
    }
}

/// Fields afk stamps; an entry may not set them itself.
const STAMPED: [&str; 5] = ["id", "kind", "created_at", "agent", "entry_id"];

fn read_ledger(path: &Path) -> Result<Vec<Value>, String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(text) if text.trim().is_empty() => Ok(Vec::new()),
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err(format!(
                "{} is not a JSON array; fix or move it (nothing was written)",
                path.display()
            )),
            Err(e) => Err(format!(
                "{} does not parse ({e}); fix or move it (nothing was written)",
                path.display()
            )),
        },
    }
}

fn sequence_of(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

/// Appends one finding under the next id of its kind and returns that id.
/// `dir` holds (or will hold) `findings/`; `entry_id` is the backlog item the
/// finding belongs to, when known.
pub fn add(
    dir: &Path,
    kind: Kind,
    entry: &str,
    agent: &str,
    entry_id: Option<&str>,
    now: &str,
) -> Result<String, Error> {
    let agent = agent.trim();
    if agent.is_empty() {
        return Err(Error::input("--agent is empty: say which agent found it"));
    }
    let fields = match serde_json::from_str::<Value>(entry) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(Error::input(
                "--entry must be a JSON object, e.g. '{\"title\": \"…\", \"severity\": \"high\"}'",
            ));
        }
        Err(e) => return Err(Error::input(format!("--entry is not valid JSON: {e}"))),
    };
    if let Some(key) = STAMPED.iter().find(|k| fields.contains_key(**k)) {
        return Err(Error::input(format!(
            "--entry sets {key:?}, which afk stamps itself (id, kind, created_at, agent, entry_id)"
        )));
    }
    // A `findings/` (or its lock) linked out of the campaign is refused
    // before anything is created where it points.
    let folder = crate::files::create_dir_inside(dir, &dir.join("findings"))
        .map_err(|e| Error::input(format!("the findings ledger: {e}")))?;
    let lock = crate::state::open_lock_file(&folder.join(".lock"))?;
    let lock_path = folder.join(".lock");
    // Held until `lock` is dropped at the end of this function, across the
    // read, the new id and the replace.
    lock.lock()
        .map_err(|e| Error::failed(format!("cannot lock {}: {e}", lock_path.display())))?;
    let path = folder.join(format!("{}.json", kind.name()));
    // A ledger that does not parse is the operator's to fix: nothing is written.
    let mut ledger = read_ledger(&path).map_err(Error::Input)?;
    // Ids are unique across the whole campaign: the next one is above every
    // id of this kind in every ledger (older runs kept one per item), and
    // never wraps around.
    let (all, problems) = read_all(dir);
    if let Some(problem) = problems.first() {
        return Err(Error::input(problem.clone()));
    }
    let highest = all
        .iter()
        .chain(
            ledger
                .iter()
                .map(|f| (path.clone(), f.clone()))
                .collect::<Vec<_>>()
                .iter(),
        )
        .filter_map(|(_, f)| f.get("id").and_then(Value::as_str))
        .filter_map(|id| sequence_of(id, kind.prefix()))
        .max()
        .unwrap_or(0);
    let next = highest.checked_add(1).ok_or_else(|| {
        Error::input(format!(
            "every {} id is used up ({}-{highest}); move the ledgers aside to start again",
            kind.name(),
            kind.prefix()
        ))
    })?;
    let id = format!("{}-{next:03}", kind.prefix());
    let mut record = Map::new();
    record.insert("id".into(), json!(id));
    record.insert("kind".into(), json!(kind.name()));
    record.insert("created_at".into(), json!(now));
    record.insert("agent".into(), json!(agent));
    record.insert("entry_id".into(), json!(entry_id));
    record.extend(fields);
    ledger.push(Value::Object(record));
    let mut text = serde_json::to_string_pretty(&ledger)
        .map_err(|e| Error::failed(format!("cannot encode the ledger: {e}")))?;
    text.push('\n');
    crate::files::atomic_write(&path, text.as_bytes())
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
    drop(lock);
    Ok(id)
}

/// Every ledger file: `<dir>/findings/*.json`, then every
/// `findings/*.json` below `<dir>/runs/`, sorted by path.
pub fn ledger_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 8 {
                if path.file_name().is_some_and(|n| n == "findings") {
                    collect(&path, out);
                }
                walk(&path, out, depth + 1);
            }
        }
    }
    fn collect(findings: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(findings) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if path.extension().is_some_and(|e| e == "json") && Kind::from_name(stem).is_some() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    collect(&dir.join("findings"), &mut out);
    walk(&dir.join("runs"), &mut out, 0);
    out.sort();
    out.dedup();
    out
}

/// Every finding with the file it came from; files that do not parse are
/// reported, not skipped silently.
pub fn read_all(dir: &Path) -> (Vec<(PathBuf, Value)>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for path in ledger_files(dir) {
        match read_ledger(&path) {
            Ok(items) => found.extend(items.into_iter().map(|f| (path.clone(), f))),
            Err(e) => problems.push(e),
        }
    }
    (found, problems)
}

fn text_of<'a>(finding: &'a Value, key: &str) -> &'a str {
    finding.get(key).and_then(Value::as_str).unwrap_or("")
}

fn severity(finding: &Value) -> String {
    let s = text_of(finding, "severity").trim().to_ascii_lowercase();
    if s.is_empty() {
        "unspecified".into()
    } else {
        s
    }
}

/// One line per finding: id, severity, item, agent, title.
pub fn list(dir: &Path, kind: Option<Kind>) -> (String, Vec<String>) {
    let (found, problems) = read_all(dir);
    let mut out = String::new();
    for (path, f) in &found {
        if kind.is_some_and(|k| text_of(f, "kind") != k.name()) {
            continue;
        }
        let rel = path.strip_prefix(dir).unwrap_or(path);
        out.push_str(&format!(
            "{:<8} {:<11} {:<12} {:<14} {}  ({})\n",
            text_of(f, "id"),
            severity(f),
            f.get("entry_id").and_then(Value::as_str).unwrap_or("-"),
            text_of(f, "agent"),
            text_of(f, "title"),
            rel.display()
        ));
    }
    if out.is_empty() {
        out.push_str("no findings\n");
    }
    (out, problems)
}

/// One summary of every ledger: counts per kind, per severity, and per kind
/// and severity, with every finding and where it came from.
pub fn aggregate(dir: &Path) -> (Value, Vec<String>) {
    let (found, problems) = read_all(dir);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_both: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut all = Vec::new();
    for (path, f) in &found {
        let kind = text_of(f, "kind").to_owned();
        let sev = severity(f);
        *by_kind.entry(kind.clone()).or_default() += 1;
        *by_severity.entry(sev.clone()).or_default() += 1;
        *by_both.entry(kind).or_default().entry(sev).or_default() += 1;
        let mut f = f.clone();
        if let Value::Object(map) = &mut f {
            let rel = path.strip_prefix(dir).unwrap_or(path);
            map.insert("source".into(), json!(rel.display().to_string()));
        }
        all.push(f);
    }
    (
        json!({
            "total": found.len(),
            "by_kind": by_kind,
            "by_severity": by_severity,
            "by_kind_and_severity": by_both,
            "files": ledger_files(dir).iter().map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string()).collect::<Vec<_>>(),
            "unreadable": problems,
            "findings": all,
        }),
        problems,
    )
}
