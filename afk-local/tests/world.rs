//! A machine for the local executor: a bare repository `acme/infra.git`
//! with one commit on `main` (the clone URLs' base is a `file://`
//! directory), an `AFK_LOCAL_DIR`, and a scripted agent that waits for its
//! verdict in a control directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use afk_local::os::{GitToken, OsHost, OsSettings};
use afk_local::record::ThreadRecord;
use afk_local::{LocalExecutor, LocalSettings};
use afk_process::runtime::Runtime;

/// The scripted agent: it records its prompt and its start, then waits (at
/// most two minutes) for a verdict in `$AGENT_CTL/<thread>-<turn>` (or
/// `$AGENT_CTL/all`), and acts on it.
pub const AGENT: &str = r#"
ctl="$AGENT_CTL/$AFK_THREAD_ID-$AFK_TURN"
cat > "$ctl.prompt"
echo "$AFK_THREAD_ID $AFK_TURN $$ $PWD" >> "$AGENT_CTL/starts"
i=0
while [ ! -f "$ctl" ] && [ ! -f "$AGENT_CTL/all" ]; do
  sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 9
done
verdict=$(cat "$ctl" 2>/dev/null || cat "$AGENT_CTL/all")
case "$verdict" in
  push) printf 'change %s\n' "$AFK_TURN" >> AFK.md && git add AFK.md &&
        git -c user.name=agent -c user.email=agent@example.com commit -q -m "Change for $AFK_REPO#$AFK_ISSUE" -m "AFK-Issue: $AFK_REPO#$AFK_ISSUE" &&
        git push -q origin HEAD:main ;;
  fail) echo 'working'; echo 'Error: the agent failed on purpose' >&2; exit 3 ;;
  claude) printf '{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.25,"permission_denials":[]}\n' ;;
  claude-error) printf '{"type":"result","subtype":"success","is_error":true,"result":"API Error: 401 invalid x-api-key","total_cost_usd":0.01,"permission_denials":[]}\n'; exit 1 ;;
  dirty) echo scratch > untracked.txt; echo changed >> README.md; git -c user.name=a -c user.email=a@x commit -qam "local only"; echo more >> README.md; touch .git/index.lock ;;
  escape) setsid sh -c 'echo $$ > "$AGENT_CTL/escapee"; exec sleep 600' & echo $! > "$AGENT_CTL/child"; sleep 600 ;;
  *) ;;
esac
"#;

/// Runs git, panicking with its message when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The machine.
pub struct Machine {
    pub tmp: tempfile::TempDir,
    pub ctl: PathBuf,
    pub exec: LocalExecutor<OsHost>,
}

impl Machine {
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn local_dir(&self) -> PathBuf {
        self.root().join("local")
    }

    /// The bare repository's `main`, newest first (subjects).
    pub fn pushed(&self) -> Vec<String> {
        git(
            &self.root().join("git/acme/infra.git"),
            &["log", "--format=%s", "main"],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// The thread's record, as on disk.
    pub fn record(&self, thread: &str) -> ThreadRecord {
        let path = self
            .local_dir()
            .join("runs")
            .join(thread)
            .join("record.json");
        ThreadRecord::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Tells the agent of `thread`'s turn `step` what to do.
    pub fn verdict(&self, thread: &str, step: u32, what: &str) {
        std::fs::write(self.ctl.join(format!("{thread}-{step}")), what).unwrap();
    }

    /// Waits until `thread`'s turn `step` recorded its end.
    pub fn wait_end(&self, thread: &str, step: u32) {
        let exit = self
            .local_dir()
            .join("runs")
            .join(thread)
            .join(format!("turn-{step}.exit"));
        wait_for(|| exit.exists(), &format!("{thread} turn {step} to end"));
    }

    /// Every agent start: (thread, turn, pid, working directory).
    pub fn starts(&self) -> Vec<(String, u32, u32, String)> {
        std::fs::read_to_string(self.ctl.join("starts"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split(' ');
                Some((
                    w.next()?.to_owned(),
                    w.next()?.parse().ok()?,
                    w.next()?.parse().ok()?,
                    w.next()?.to_owned(),
                ))
            })
            .collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Whatever still waits ends now.
        let _ = std::fs::write(self.ctl.join("all"), "exit");
    }
}

/// Waits up to 30 s for `done`.
pub fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bare repository at `<root>/git/acme/infra.git` with one commit on
/// `main`.
pub fn bare_repo(root: &Path) {
    bare_repo_named(root, "infra");
}

/// A bare repository at `<root>/git/acme/<name>.git` with one commit on
/// `main`.
pub fn bare_repo_named(root: &Path, name: &str) {
    let bare = root.join(format!("git/acme/{name}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let seed = root.join(format!("seed-{name}"));
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    seed_commit(&seed, "README.md", "# infra\n", "Seed");
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
}

/// Writes `file` in the clone `seed` and commits it as the seed's author.
pub fn seed_commit(seed: &Path, file: &str, text: &str, subject: &str) {
    std::fs::write(seed.join(file), text).unwrap();
    git(seed, &["add", file]);
    git(
        seed,
        &[
            "-c",
            "user.name=seed",
            "-c",
            "user.email=seed@example.com",
            "commit",
            "-qm",
            subject,
        ],
    );
}

/// The afk-reaper program `afk-process` builds.
pub fn reaper() -> PathBuf {
    afk_process::reaper_path().expect(
        "afk-reaper is not built: run `cargo build -p afk-process --bin afk-reaper` (cargo test --workspace builds it)",
    )
}

/// A machine whose agent is the scripted command.
pub fn machine() -> Machine {
    machine_with(GitToken::None, 2, None)
}

/// A machine with these settings (`git_base`: the clone URLs' base, by
/// default the `file://` directory of the bare repository).
pub fn machine_with(token: GitToken, max_agents: u32, git_base: Option<String>) -> Machine {
    let tmp = tempfile::tempdir().unwrap();
    bare_repo(tmp.path());
    let ctl = tmp.path().join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let base = git_base.unwrap_or_else(|| format!("file://{}", tmp.path().join("git").display()));
    let host = OsHost::new(OsSettings {
        dir: tmp.path().join("local"),
        reaper: reaper(),
        token,
        git_base: base.clone(),
        env: vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), home.display().to_string()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("AGENT_CTL".into(), ctl.display().to_string()),
        ],
        git_timeout: Duration::from_secs(60),
    })
    .unwrap();
    let exec = LocalExecutor::new(
        host,
        LocalSettings {
            runtime: Runtime::Command {
                argv: vec!["sh".into(), "-c".into(), AGENT.into(), "agent".into()],
            },
            max_agents,
            git_base: base,
            default_owner: Some("acme".into()),
        },
    );
    Machine { tmp, ctl, exec }
}
