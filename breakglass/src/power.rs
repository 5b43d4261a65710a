//! VM power verbs, with no AI in the path.
//!
//! Exactly `status`, `forensics`, `reset`, `stop`, `start`, `cycle` (the last
//! four mutate the VM). A verb is matched exactly: case-sensitive, no
//! arguments, no whitespace. Anything else is rejected before any process
//! exists. An accepted verb runs `<ssh> <host> <verb>` as an argument vector
//! (never a shell), in its own process group, killed at the timeout.

use std::time::Duration;

use serde_json::{Value, json};

/// Every verb.
pub const VERBS: [&str; 6] = ["status", "forensics", "reset", "stop", "start", "cycle"];
/// The verbs that change the VM's power state (the page asks first).
pub const MUTATING: [&str; 4] = ["reset", "stop", "start", "cycle"];

/// At most this much of a verb's stdout and stderr is kept.
const OUTPUT_KEPT: u64 = 64 * 1024;

/// How long the output readers may take once the verb's group is gone.
const GRACE: Duration = Duration::from_secs(5);

/// The verb `text` names, exactly, or `None`.
pub fn parse_verb(text: &str) -> Option<&'static str> {
    VERBS.iter().copied().find(|v| *v == text)
}

/// How verbs run.
#[derive(Debug, Clone)]
pub struct PowerSettings {
    /// The ssh program.
    pub ssh_bin: String,
    /// The host (`user@pve`); verbs are unavailable without one.
    pub host: Option<String>,
    /// A verb running longer is killed.
    pub timeout: Duration,
}

/// What a verb did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerbOutcome {
    /// The verb as asked.
    pub verb: String,
    /// Its exit code; `None` when rejected, killed, or never started.
    pub exit_code: Option<i32>,
    /// Its stdout (at most 64 KiB).
    pub stdout: String,
    /// Its stderr (at most 64 KiB), or why it did not run.
    pub stderr: String,
    /// Not on the list: nothing was spawned.
    pub rejected: bool,
}

impl VerbOutcome {
    /// As the API's JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "verb": self.verb,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "rejected": self.rejected,
        })
    }
}

/// Runs `verb` if it is on the list; otherwise returns a rejection without
/// starting anything.
/// A running verb ends early when `cancel` turns true (the server stops):
/// its whole process group is killed.
pub async fn run_verb(
    settings: &PowerSettings,
    verb: &str,
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
) -> VerbOutcome {
    let mut outcome = VerbOutcome {
        verb: verb.to_owned(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        rejected: false,
    };
    let Some(verb) = parse_verb(verb) else {
        outcome.rejected = true;
        outcome.stderr = format!("unknown verb; allowed: {}", VERBS.join(", "));
        return outcome;
    };
    let Some(host) = settings.host.as_deref().filter(|h| !h.trim().is_empty()) else {
        outcome.stderr = "no VM host is configured (BREAKGLASS_SSH_HOST)".into();
        return outcome;
    };
    let spec = afk_process::Spec {
        argv: vec![settings.ssh_bin.clone(), host.to_owned(), verb.to_owned()],
        ..afk_process::Spec::default()
    };
    let mut group = match afk_process::Group::spawn(&spec) {
        Ok(g) => g,
        Err(e) => {
            outcome.stderr = format!("cannot start {:?}: {e}", settings.ssh_bin);
            return outcome;
        }
    };
    let out = afk_process::read_capped(group.take_stdout(), OUTPUT_KEPT);
    let err = afk_process::read_capped(group.take_stderr(), OUTPUT_KEPT);
    let end = group.supervise(async {}, settings.timeout, cancel).await;
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    outcome.stdout = text(afk_process::collect(out, GRACE).await);
    outcome.stderr = text(afk_process::collect(err, GRACE).await);
    let status = match end {
        afk_process::End::Exited(status) => Ok(status),
        afk_process::End::TimedOut => Err("timeout"),
        afk_process::End::Cancelled => Err("shutdown"),
    };
    match status {
        Ok(Ok(s)) => outcome.exit_code = s.code(),
        Ok(Err(e)) => outcome
            .stderr
            .push_str(&format!("\ncannot wait for ssh: {e}")),
        Err("shutdown") => outcome
            .stderr
            .push_str("\nkilled: the server is shutting down"),
        Err(_) => outcome.stderr.push_str(&format!(
            "\nkilled after the verb timeout of {} s",
            settings.timeout.as_secs()
        )),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_the_exact_verbs_are_accepted() {
        for v in VERBS {
            assert_eq!(parse_verb(v), Some(v));
        }
        for bad in [
            "",
            "Status",
            "STOP",
            " stop",
            "stop ",
            "stop now",
            "stop;reboot",
            "reset\n",
            "cycle\0",
            "statu",
            "statuss",
            "../status",
            "rm -rf /",
        ] {
            assert_eq!(parse_verb(bad), None, "{bad:?}");
        }
        assert!(MUTATING.iter().all(|m| VERBS.contains(m)));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_are_rejected_unless_exact(text in "\\PC{0,12}|(status|stop|reset|start|cycle|forensics)[ ;\\n\\t]?.{0,3}") {
            let accepted = parse_verb(&text);
            prop_assert_eq!(accepted.is_some(), VERBS.contains(&text.as_str()));
        }
    }
}
