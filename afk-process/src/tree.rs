//! Process trees found by ancestry (Linux `/proc`): a process belongs to a
//! tree when its parent chain leads to the tree's root. With the root a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), whatever the tree starts
//! stays its descendant however it daemonises (`setsid`, double forks): an
//! orphan is reparented to the root, not to init. So killing a tree is
//! killing the root's descendants, and nothing else: a process outside the
//! tree is never signalled, whatever it carries in its environment.
//!
//! It reads `/proc/<pid>/stat` only (state, parent, start time), never a
//! process's environment.

use std::collections::{BTreeMap, BTreeSet};

/// What `/proc/<pid>/stat` says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Its id.
    pub pid: u32,
    /// Its parent's id.
    pub ppid: u32,
    /// Its process group.
    pub pgid: u32,
    /// When it started, in clock ticks since boot (with the pid, it names
    /// one process: a reused pid has a later start time).
    pub start: u64,
    /// A zombie: it runs nothing any more and waits to be reaped.
    pub zombie: bool,
}

/// Reads one process's `/proc/<pid>/stat`, or `None` when it is gone.
pub fn stat(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after the last `)` start at field 3 (the state).
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        zombie: fields.first().is_some_and(|s| *s == "Z" || *s == "X"),
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// Every process of the machine that can be read, by pid.
pub fn all() -> BTreeMap<u32, Proc> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            && let Some(p) = stat(pid)
        {
            out.insert(pid, p);
        }
    }
    out
}

/// The descendants of `root` in `procs` (children, their children, …),
/// not `root` itself.
pub fn descendants(procs: &BTreeMap<u32, Proc>, root: u32) -> Vec<Proc> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in procs.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::from([root]);
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if seen.insert(*child)
                && let Some(p) = procs.get(child)
            {
                out.push(*p);
                queue.push(*child);
            }
        }
    }
    out
}

/// SIGKILLs every live descendant of `root`, again and again until a pass
/// finds none (a process may fork while its siblings are killed), at most a
/// bounded number of passes. Returns how many it signalled.
pub fn kill_descendants(root: u32) -> usize {
    let mut killed = 0;
    for _ in 0..50 {
        let live: Vec<Proc> = descendants(&all(), root)
            .into_iter()
            .filter(|p| !p.zombie)
            .collect();
        if live.is_empty() {
            break;
        }
        for p in live {
            if let Some(pid) = crate::pid_of(p.pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                killed += 1;
            }
        }
    }
    killed
}

/// Makes this process the child subreaper of everything it starts: an
/// orphan of its trees is reparented to it, never to init, so it stays
/// findable by ancestry.
///
/// # Errors
/// The `prctl` error (only Linux has it).
pub fn become_subreaper() -> std::io::Result<()> {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me)).map_err(Into::into)
}

/// Whether this process is a child subreaper.
pub fn is_subreaper() -> bool {
    rustix::process::child_subreaper().is_ok_and(|p| p.is_some())
}
