//! The text afk sends to agents: the opening prompt of a run and the
//! corrective (fix-forward) turn.
//!
//! T3's agent runtime does not read the repository's own agent-instruction
//! files, so every opening turn carries afk's standing instructions in front
//! of a pointer to the issue. The text is afk's own and versioned: change
//! [`INSTRUCTIONS_VERSION`] with it, so a thread's prompt says which rules it
//! was given.

/// The version of the standing instructions below.
pub const INSTRUCTIONS_VERSION: &str = "afk standing instructions v1";

fn standing_instructions(issue_key: &str, issue: u64, branch: &str) -> String {
    format!(
        "You are working unattended: nobody will answer questions until you are done.

How to work:
1. Work in your own git worktree, made from the latest `{branch}`.
2. Test first: write a failing test, make it pass, then clean up. Configuration,
   infrastructure and documentation changes are exempt.
3. Commit in small steps. Stage files by name, never skip hooks. Each commit
   message has a subject that says what changed and a body that says why, and
   ends with these two lines:
       Refs #{issue}
       AFK-Issue: {issue_key}
   Do not use a closing keyword (fixes/closes/resolves): afk closes the issue
   itself once the change is deployed.
4. When tests and lint pass, merge the latest `{branch}`, verify again, and push
   to `{branch}` (no pull request). If the push is rejected, fetch, merge,
   verify and push again.
5. After pushing, watch CI, the build and the deploy to the end, and fix what
   your change broke, pushed the same way.
6. Never stop to ask or to plan: decide, record your reasoning in the commit
   message, and go on. If the issue is truly ambiguous or blocked, say so in a
   comment on the issue and stop.
7. Never force-push. Never touch persistent volumes or secret stores. Change
   infrastructure only through its infrastructure-as-code. Never use a CI-skip
   token. Never do anything destructive the issue did not ask for."
    )
}

/// The opening prompt of a run: the standing instructions, then the issue.
pub fn opening_prompt(repo: &str, issue: u64, title: &str, branch: &str) -> String {
    let key = format!("{repo}#{issue}");
    format!(
        "[{INSTRUCTIONS_VERSION}]\n\n{}\n\nYour task is issue {key}: {title}\nRead it, with its comments, before you start:\n    gh issue view {issue} --comments\n",
        standing_instructions(&key, issue, branch)
    )
}

/// A corrective turn: names the red commit, the failing stage and where its
/// log is, and asks for a fix pushed the same way.
pub fn corrective_prompt(
    repo: &str,
    issue: u64,
    branch: &str,
    commit: &str,
    stage: &str,
    log: Option<&str>,
    detail: &str,
) -> String {
    let key = format!("{repo}#{issue}");
    let log = log.map_or_else(
        || "no log link was reported".to_owned(),
        |l| format!("its log: {l}"),
    );
    format!(
        "[{INSTRUCTIONS_VERSION}]\n\nThe {stage} stage is red on commit {commit}, which you pushed for {key} ({detail}; {log}).\n\
         Find the cause and fix it forward: do not revert and do not force-push. Commit with the same trailer lines\n\
         (Refs #{issue} and AFK-Issue: {key}), merge the latest `{branch}`, verify, and push to `{branch}`.\n\
         Then watch CI and the deploy to the end again.\n\n{}",
        standing_instructions(&key, issue, branch)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_prompt_carries_the_rules_and_the_pointer() {
        let p = opening_prompt("infra", 7, "Rotate the certificates", "master");
        for needle in [
            "[afk standing instructions v1]",
            "Test first",
            "AFK-Issue: infra#7",
            "Refs #7",
            "Do not use a closing keyword",
            "push\n   to `master` (no pull request)",
            "Never force-push",
            "CI-skip",
            "Your task is issue infra#7: Rotate the certificates",
            "gh issue view 7 --comments",
        ] {
            assert!(
                p.contains(needle),
                "the opening prompt lacks {needle:?}:\n{p}"
            );
        }
    }

    #[test]
    fn the_corrective_prompt_names_commit_stage_and_log() {
        let p = corrective_prompt(
            "infra",
            7,
            "main",
            "abc1234",
            "build",
            Some("https://ci/run/9"),
            "check \"test\" failure",
        );
        assert!(
            p.contains("The build stage is red on commit abc1234, which you pushed for infra#7")
        );
        assert!(p.contains("its log: https://ci/run/9"));
        assert!(p.contains("AFK-Issue: infra#7"));
        let no_log = corrective_prompt("infra", 7, "main", "abc1234", "deploy", None, "x");
        assert!(no_log.contains("no log link was reported"));
    }
}
