//! The progress checklist the loop keeps on an issue.
//!
//! [`render`] is pure and byte-for-byte stable: the watcher compares the text
//! it would write with the text on the issue and writes only when they differ,
//! so any instability here would turn into a comment edit on every tick.

use afk_core::Phase;

/// What the checklist may show besides the phase. Anything unknown is left
/// out, never printed as a placeholder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecklistMeta {
    /// The repository, as the allowlist names it.
    pub repo: Option<String>,
    /// The issue number.
    pub issue: Option<u64>,
    /// The executor thread working the issue.
    pub thread_id: Option<String>,
    /// Corrective turns sent so far.
    pub fix_forward_attempts: u32,
    /// The repository's default branch, named in "Pushed to …".
    pub default_branch: Option<String>,
}

/// The visible text of one phase's line.
fn line_text(phase: Phase, default_branch: Option<&str>) -> String {
    match phase {
        Phase::Worktree => "Worktree created".to_owned(),
        Phase::TestsRed => "Failing test written (TDD red)".to_owned(),
        Phase::Green => "Implementation passing (TDD green)".to_owned(),
        Phase::Pushed => match default_branch {
            Some(branch) => format!("Pushed to {branch}"),
            None => "Pushed to the default branch".to_owned(),
        },
        Phase::Ci => "CI green on pushed commit".to_owned(),
        Phase::Deployed => "Deployed / rolled out".to_owned(),
        Phase::Done => "Done — issue closed".to_owned(),
    }
}

/// Renders the checklist for `phase`.
///
/// Phases before the current one are `- [x]`, the current one `- [~]`, later
/// ones `- [ ]`; at [`Phase::Done`] every line is `- [x]`. The output ends
/// with a newline.
pub fn render(phase: Phase, meta: &ChecklistMeta) -> String {
    let mut out = String::new();
    let repo = meta
        .repo
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    match (repo, meta.issue) {
        (Some(repo), Some(issue)) => {
            out.push_str(&format!("### {repo}#{issue} — AFK run progress"));
        }
        _ => out.push_str("### AFK run progress"),
    }
    // A known thread is named whether or not the issue is.
    if let Some(thread) = meta
        .thread_id
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        out.push_str(&format!(" (thread {thread})"));
    }
    out.push_str("\n\n");
    let branch = meta
        .default_branch
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    for line in Phase::ALL {
        let mark = if phase == Phase::Done || *line < phase {
            "x"
        } else if *line == phase {
            "~"
        } else {
            " "
        };
        out.push_str(&format!("- [{mark}] {}\n", line_text(*line, branch)));
    }
    match meta.fix_forward_attempts {
        0 => {}
        1 => out.push_str("\n_Fix-forward: 1 attempt._\n"),
        n => out.push_str(&format!("\n_Fix-forward: {n} attempts._\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ChecklistMeta {
        ChecklistMeta {
            repo: Some("infra".into()),
            issue: Some(7),
            thread_id: Some("thread-3".into()),
            fix_forward_attempts: 0,
            default_branch: Some("master".into()),
        }
    }

    #[test]
    fn the_spec_example_byte_for_byte() {
        let expected = "### infra#7 — AFK run progress (thread thread-3)\n\
                        \n\
                        - [x] Worktree created\n\
                        - [x] Failing test written (TDD red)\n\
                        - [x] Implementation passing (TDD green)\n\
                        - [x] Pushed to master\n\
                        - [~] CI green on pushed commit\n\
                        - [ ] Deployed / rolled out\n\
                        - [ ] Done — issue closed\n";
        assert_eq!(render(Phase::Ci, &meta()), expected);
    }

    #[test]
    fn worktree() {
        insta::assert_snapshot!(render(Phase::Worktree, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [~] Worktree created
        - [ ] Failing test written (TDD red)
        - [ ] Implementation passing (TDD green)
        - [ ] Pushed to master
        - [ ] CI green on pushed commit
        - [ ] Deployed / rolled out
        - [ ] Done — issue closed
        ");
    }

    #[test]
    fn tests_red() {
        insta::assert_snapshot!(render(Phase::TestsRed, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [x] Worktree created
        - [~] Failing test written (TDD red)
        - [ ] Implementation passing (TDD green)
        - [ ] Pushed to master
        - [ ] CI green on pushed commit
        - [ ] Deployed / rolled out
        - [ ] Done — issue closed
        ");
    }

    #[test]
    fn green() {
        insta::assert_snapshot!(render(Phase::Green, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [x] Worktree created
        - [x] Failing test written (TDD red)
        - [~] Implementation passing (TDD green)
        - [ ] Pushed to master
        - [ ] CI green on pushed commit
        - [ ] Deployed / rolled out
        - [ ] Done — issue closed
        ");
    }

    #[test]
    fn pushed() {
        insta::assert_snapshot!(render(Phase::Pushed, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [x] Worktree created
        - [x] Failing test written (TDD red)
        - [x] Implementation passing (TDD green)
        - [~] Pushed to master
        - [ ] CI green on pushed commit
        - [ ] Deployed / rolled out
        - [ ] Done — issue closed
        ");
    }

    #[test]
    fn ci() {
        insta::assert_snapshot!(render(Phase::Ci, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [x] Worktree created
        - [x] Failing test written (TDD red)
        - [x] Implementation passing (TDD green)
        - [x] Pushed to master
        - [~] CI green on pushed commit
        - [ ] Deployed / rolled out
        - [ ] Done — issue closed
        ");
    }

    #[test]
    fn deployed() {
        insta::assert_snapshot!(render(Phase::Deployed, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [x] Worktree created
        - [x] Failing test written (TDD red)
        - [x] Implementation passing (TDD green)
        - [x] Pushed to master
        - [x] CI green on pushed commit
        - [~] Deployed / rolled out
        - [ ] Done — issue closed
        ");
    }

    #[test]
    fn done_ticks_every_line() {
        insta::assert_snapshot!(render(Phase::Done, &meta()), @r"
        ### infra#7 — AFK run progress (thread thread-3)

        - [x] Worktree created
        - [x] Failing test written (TDD red)
        - [x] Implementation passing (TDD green)
        - [x] Pushed to master
        - [x] CI green on pushed commit
        - [x] Deployed / rolled out
        - [x] Done — issue closed
        ");
    }

    #[test]
    fn header_variants_and_fix_forward_line() {
        let check = |meta: ChecklistMeta, expected_first: &str| {
            let out = render(Phase::Worktree, &meta);
            assert_eq!(out.lines().next(), Some(expected_first), "{meta:?}");
            assert!(out.ends_with('\n'));
        };
        check(meta(), "### infra#7 — AFK run progress (thread thread-3)");
        check(
            ChecklistMeta {
                thread_id: None,
                ..meta()
            },
            "### infra#7 — AFK run progress",
        );
        check(
            ChecklistMeta {
                thread_id: Some("  ".into()),
                repo: Some("acme/infra".into()),
                ..meta()
            },
            "### acme/infra#7 — AFK run progress",
        );
        check(
            ChecklistMeta {
                repo: None,
                ..meta()
            },
            "### AFK run progress (thread thread-3)",
        );
        check(
            ChecklistMeta {
                issue: None,
                thread_id: Some("t-9".into()),
                ..meta()
            },
            "### AFK run progress (thread t-9)",
        );
        check(
            ChecklistMeta {
                issue: None,
                thread_id: None,
                ..meta()
            },
            "### AFK run progress",
        );
        check(ChecklistMeta::default(), "### AFK run progress");

        let with_attempts = render(
            Phase::Ci,
            &ChecklistMeta {
                fix_forward_attempts: 2,
                default_branch: Some("main".into()),
                ..meta()
            },
        );
        assert!(with_attempts.contains("- [x] Pushed to main\n"));
        assert!(
            with_attempts.ends_with("- [ ] Done — issue closed\n\n_Fix-forward: 2 attempts._\n")
        );
        let one = render(
            Phase::Ci,
            &ChecklistMeta {
                fix_forward_attempts: 1,
                ..meta()
            },
        );
        assert!(one.ends_with("\n\n_Fix-forward: 1 attempt._\n"), "{one}");
        let unknown_branch = render(Phase::Ci, &ChecklistMeta::default());
        assert!(unknown_branch.contains("- [x] Pushed to the default branch\n"));
    }
}
