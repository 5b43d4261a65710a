//! The whole product on one machine, with the **real** agent CLIs and real
//! git: `afk loop` with the local executor (`AFK_EXECUTOR=local`) takes an
//! issue from the simulated GitHub to a real `claude` or `opencode` (pinned
//! in `fixtures/real-cli`, offline against the scripted model of
//! `afk_sim::anthropic`), which edits a file in its workspace, commits with
//! afk's trailer and pushes with real git to a bare repository that the
//! simulator serves as the issue's repository (it reads the commits from
//! there; CI is red for a commit whose subject says `[red]`, else green).
//!
//! Without the CLIs installed these tests say so and pass, except under
//! `CI=true`, where a missing CLI fails them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use afk_demo::world::World;
use afk_sim::anthropic::Model;
use afk_sim::{GITHUB_TOKEN, lock};

use crate::real_agents::{agent_env, cli, sleepers_under};
use crate::scratch::Scratch;

const AFK: &str = env!("CARGO_BIN_EXE_afk");

/// One machine: the simulated world, the scripted model, a bare repository,
/// and the environment `afk loop` runs with.
struct Machine {
    world: World,
    model: Model,
    root: Scratch,
    env: Vec<(String, String)>,
}

fn git(dir: &Path, args: &[&str]) -> String {
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

/// The machine for `runtime`, with issue #7 titled `title` armed by alice;
/// `None` (outside CI) without the CLI.
async fn machine(runtime: &str, title: &str) -> Option<Machine> {
    let bin = cli(runtime)?;
    let model = Model::start().await;
    let root = Scratch::new(&format!("loop-{runtime}"));
    let bare = root.join("git/acme/infra.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let seed = root.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(seed.join("README.md"), "# infra\n").unwrap();
    git(&seed, &["add", "README.md"]);
    git(
        &seed,
        &[
            "-c",
            "user.name=seed",
            "-c",
            "user.email=seed@example.com",
            "commit",
            "-qm",
            "Seed",
        ],
    );
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let world = World::new(&["infra"], &[]).await.unwrap();
    {
        let now = time::OffsetDateTime::now_utc();
        let at = |secs: i64| {
            afk_core::Timestamp::from_offset_date_time(now - time::Duration::seconds(secs))
                .to_rfc3339()
        };
        let mut m = lock(&world.sim.github);
        m.now = at(0);
        m.serve_git("acme/infra", &bare);
        m.ci_by_message("acme/infra", afk_sim::github::red_if_marked);
        m.add_issue("acme/infra", 7, title, "Add a line to AFK.md.", &[]);
        m.label("acme/infra", 7, "ready-for-agent", "alice", &at(60));
    }
    let mut env = agent_env(runtime, &bin, &root.join("home"), &model.uri());
    env.extend(
        [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("AFK_KILL_SWITCH", "false".into()),
            ("AFK_ALLOWLIST", "infra".into()),
            ("AFK_GITHUB_API_URL", world.sim.uri()),
            ("AFK_GITHUB_TOKEN", GITHUB_TOKEN.into()),
            ("AFK_GITHUB_OWNER", "acme".into()),
            ("AFK_EXECUTOR", "local".into()),
            ("AFK_LOCAL_AGENT", runtime.into()),
            ("AFK_LOCAL_DIR", root.join("local").display().to_string()),
            (
                "AFK_GIT_URL",
                format!("file://{}", root.join("git").display()),
            ),
            (
                "AFK_SLACK_WEBHOOK_URL",
                format!("{}{}", world.sim.uri(), afk_sim::SLACK_PATH),
            ),
            // An agent that fails should fail fast, not retry for minutes.
            ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    Some(Machine {
        world,
        model,
        root,
        env,
    })
}

impl Machine {
    /// `afk loop --every 1s`, its log in `<root>/loop-<n>.log`.
    fn start_loop(&self, n: u32) -> std::process::Child {
        let log = std::fs::File::create(self.root.join(format!("loop-{n}.log"))).unwrap();
        Command::new(AFK)
            .args(["loop", "--every", "1s"])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for n in 0..3 {
            out.push_str(
                &std::fs::read_to_string(self.root.join(format!("loop-{n}.log")))
                    .unwrap_or_default(),
            );
        }
        out
    }

    /// Agent commits on the bare repository's main (subjects, newest first).
    fn pushed(&self) -> Vec<String> {
        git(
            &self.root.join("git/acme/infra.git"),
            &["log", "--format=%s", "main"],
        )
        .lines()
        .filter(|s| *s != "Seed")
        .map(str::to_owned)
        .collect()
    }

    fn workspace(&self) -> PathBuf {
        self.root.join("local/workspaces/acme__infra")
    }

    /// Waits up to four minutes for `done`, with the loop's log on failure.
    async fn wait(&self, what: &str, mut done: impl FnMut(&Machine) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(240);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nslack: {:?}\npushed: {:?}\nlabels: {:?}\ncomment: {:?}\n{}",
                self.world.slack(),
                self.pushed(),
                self.world.labels("infra", 7),
                self.world.progress_comments("infra", 7),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Stops `afk loop` as an operator does (SIGTERM) and checks it left.
fn stop(child: std::process::Child) {
    stop_with(child, "TERM");
}

/// Stops `afk loop` with `signal` (`TERM`, or `INT`: Ctrl-C at its
/// terminal) and checks it left, exit 0.
fn stop_with(mut child: std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "afk loop exits 0 when told to stop");
            return;
        }
        assert!(Instant::now() < deadline, "afk loop did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A red first push, a corrective turn, a green fix, the issue closed and
/// the doorbell rung: through the real CLI, on this machine.
async fn lands_after_fixing_forward(runtime: &str) {
    let Some(m) = machine(runtime, "Add the notes file [red]").await else {
        return;
    };
    let afk = m.start_loop(0);
    m.wait("the issue to close", |m| {
        m.world.state("infra", 7) == "closed"
    })
    .await;
    m.wait("the doorbell", |m| !m.world.slack().is_empty())
        .await;
    stop(afk);
    // Remembered while in flight, forgotten once landed.
    let state = std::fs::read_to_string(m.root.join("local/state.json")).unwrap();
    assert!(!state.contains("infra"), "{state}");
    let pushed = m.pushed();
    assert_eq!(
        pushed,
        [
            "Fix the red stage for infra#7",
            "Change AFK.md for infra#7 [red]"
        ],
        "{}",
        m.logs()
    );
    let message = git(
        &m.root.join("git/acme/infra.git"),
        &["log", "-1", "--format=%B", "main"],
    );
    assert!(
        message.trim_end().ends_with("Refs #7\nAFK-Issue: infra#7"),
        "{message}"
    );
    let slack = m.world.slack();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(slack[0].contains("[DONE] infra#7 landed"), "{}", slack[0]);
    let comment = m.world.progress_comments("infra", 7).pop().unwrap();
    let record = checklist::extract_record(&comment).unwrap().unwrap();
    assert_eq!(record.fix_forward_attempts, 1, "{comment}");
    if runtime == "claude" {
        // claude reported what it cost, summed over both turns; and its
        // corrective turn resumed the session that pushed the red commit.
        assert!(record.cost.is_some(), "{comment}");
        assert!(slack[0].contains("Cost: $"), "{}", slack[0]);
        let resumed = m.model.requests().iter().any(|r| {
            let text = r.body.to_string();
            text.contains("stage is red on commit") && text.contains("Your task is issue infra#7")
        });
        assert!(resumed, "the corrective turn did not continue the session");
    } else {
        assert!(slack[0].contains("Cost: not reported"), "{}", slack[0]);
        assert!(comment.contains("Cost: not reported"), "{comment}");
    }
    // The workspace holds no credential, and nothing of the agent runs.
    let config = std::fs::read_to_string(m.workspace().join(".git/config")).unwrap();
    assert!(!config.contains(GITHUB_TOKEN), "{config}");
    assert!(sleepers_under(&m.root).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_lands_an_issue_after_fixing_forward_on_this_machine() {
    lands_after_fixing_forward("claude").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_opencode_lands_an_issue_after_fixing_forward_on_this_machine() {
    lands_after_fixing_forward("opencode").await;
}

/// CI fails the agent's own commits whose subject says `[red]`; every
/// other commit (the merge commit, whose subject is the pull request's
/// title) passes.
fn red_agent_commits(message: &str) -> Option<&'static str> {
    let subject = message.lines().next().unwrap_or_default();
    Some(
        if subject.starts_with("Change AFK.md") && subject.contains("[red]") {
            "failure"
        } else {
            "success"
        },
    )
}

/// `AFK_LAND=pull-request`: the real CLI pushes its red commit to the run's
/// branch with real git (never to main), afk opens the pull request, the
/// corrective turn continues the same branch, and once its head is green
/// afk merges it; main then holds the seed and the merge only.
async fn lands_through_a_pull_request(runtime: &str) {
    let Some(mut m) = machine(runtime, "Add the notes file [red]").await else {
        return;
    };
    m.env.push(("AFK_LAND".into(), "pull-request".into()));
    m.env.push(("AFK_MERGE_METHOD".into(), "merge".into()));
    lock(&m.world.sim.github).ci_by_message("acme/infra", red_agent_commits);
    let afk = m.start_loop(0);
    m.wait("the issue to close", |m| {
        m.world.state("infra", 7) == "closed"
    })
    .await;
    m.wait("the doorbell", |m| !m.world.slack().is_empty())
        .await;
    stop(afk);
    let bare = m.root.join("git/acme/infra.git");
    let branch = "afk/7-add-the-notes-file-red";
    let on_branch: Vec<String> = git(&bare, &["log", "--format=%s", branch])
        .lines()
        .filter(|s| *s != "Seed")
        .map(str::to_owned)
        .collect();
    assert_eq!(
        on_branch,
        [
            "Fix the red stage for infra#7",
            "Change AFK.md for infra#7 [red]"
        ],
        "{}",
        m.logs()
    );
    let main = git(&bare, &["log", "--first-parent", "--format=%s", "main"]);
    let main: Vec<&str> = main.lines().collect();
    assert_eq!(main.len(), 2, "the seed and the merge only: {main:?}");
    assert!(main[0].starts_with("Merge branch 'afk/7-"), "{main:?}");
    let pulls = lock(&m.world.sim.github).pulls_from("acme/infra", branch);
    assert_eq!(pulls.len(), 1, "one pull request");
    let comment = m.world.progress_comments("infra", 7).pop().unwrap();
    let record = checklist::extract_record(&comment).unwrap().unwrap();
    assert_eq!(record.landing.and_then(|l| l.pull_request), Some(pulls[0]));
    assert_eq!(record.fix_forward_attempts, 1, "{comment}");
    assert!(m.world.slack()[0].contains("[DONE] infra#7 landed"));
    assert!(sleepers_under(&m.root).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_lands_through_a_pull_request_on_a_real_branch() {
    lands_through_a_pull_request("claude").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_opencode_lands_through_a_pull_request_on_a_real_branch() {
    lands_through_a_pull_request("opencode").await;
}

/// The stop label while the agent's shell tool runs a long command (and a
/// `setsid` one): the run is stopped, and no process of its tree is left.
async fn stop_label_mid_turn(runtime: &str) {
    let Some(m) = machine(runtime, "Wait for the system [sleep]").await else {
        return;
    };
    let afk = m.start_loop(0);
    m.wait("the agent's sleeps", |m| sleepers_under(&m.root).len() >= 2)
        .await;
    let sleeping = sleepers_under(&m.root);
    {
        let now = afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc());
        lock(&m.world.sim.github).label("acme/infra", 7, "afk-stop", "mallory", &now.to_rfc3339());
    }
    m.wait("the stop's doorbell", |m| {
        m.world
            .slack()
            .iter()
            .any(|s| s.contains("[STOPPED] infra#7 stopped by mallory"))
    })
    .await;
    stop(afk);
    for pid in sleeping {
        assert!(
            crate::processes::dead(pid),
            "process {pid} of the agent's tree survived the stop"
        );
    }
    assert!(sleepers_under(&m.root).is_empty());
    assert_eq!(m.world.labels("infra", 7), ["ready-for-human"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_label_mid_turn_leaves_nothing_of_the_real_claude_running() {
    stop_label_mid_turn("claude").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_label_mid_turn_leaves_nothing_of_the_real_opencode_running() {
    stop_label_mid_turn("opencode").await;
}

/// `afk loop` killed (SIGKILL) in the middle of a dispatch, then started
/// again: one agent ran, once; the issue still lands.
async fn killed_loop_restarted(runtime: &str) {
    let Some(m) = machine(runtime, "Add the notes file").await else {
        return;
    };
    let mut first = m.start_loop(0);
    let runs = m.root.join("local/runs");
    m.wait("the dispatch to begin", |_| {
        std::fs::read_dir(&runs).is_ok_and(|mut d| d.next().is_some())
    })
    .await;
    first.kill().unwrap();
    let _ = first.wait();
    // A second loop refuses while... nothing holds the lock any more: the
    // restarted loop takes over.
    let again = m.start_loop(1);
    m.wait("the issue to close", |m| {
        m.world.state("infra", 7) == "closed"
    })
    .await;
    stop(again);
    assert_eq!(m.pushed(), ["Change AFK.md for infra#7"], "{}", m.logs());
    let threads = std::fs::read_dir(&runs).unwrap().count();
    assert_eq!(threads, 1, "one thread");
    let thread = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = std::fs::read_to_string(thread.join("record.json")).unwrap();
    assert!(!record.contains("\"step\":1"), "one turn: {record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_loop_restarted_runs_one_claude_not_two() {
    killed_loop_restarted("claude").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_loop_restarted_runs_one_opencode_not_two() {
    killed_loop_restarted("opencode").await;
}

/// An agent whose model refuses its key: the run is handed back, and what
/// the agent said reaches the progress comment and the doorbell.
async fn failing_agent_says_why(runtime: &str, said: &str) {
    let Some(m) = machine(runtime, "Refused key [api-401]").await else {
        return;
    };
    let afk = m.start_loop(0);
    m.wait("the hand-back's doorbell", |m| !m.world.slack().is_empty())
        .await;
    stop(afk);
    let slack = m.world.slack();
    assert!(slack[0].contains("[NEEDS-HUMAN] infra#7"), "{}", slack[0]);
    assert!(slack[0].contains(said), "{}", slack[0]);
    let comment = m.world.progress_comments("infra", 7).pop().unwrap();
    assert!(comment.contains(said), "{comment}");
    assert!(m.pushed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_real_claude_says_why_on_the_issue_and_in_the_doorbell() {
    failing_agent_says_why("claude", "API Error: 401").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_real_opencode_says_why_on_the_issue_and_in_the_doorbell() {
    failing_agent_says_why("opencode", "scripted authentication_error").await;
}

/// A second `afk loop` on the same directory refuses, naming the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_loop_on_the_same_directory_refuses() {
    let Some(m) = machine("claude", "Add the notes file").await else {
        return;
    };
    let mut env = m.env.clone();
    // Nothing enrolled: the loops only idle.
    env.retain(|(k, _)| k != "AFK_ALLOWLIST");
    let idle = Command::new(AFK)
        .args(["loop", "--every", "1s"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lock = m.root.join("local/loop.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while afk_process::locks::holders(&lock).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first loop never took its lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = Command::new(AFK)
        .args(["loop", "--every", "1s", "--log-format", "text"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.contains("another afk loop runs on AFK_LOCAL_DIR="),
        "{said}"
    );
    assert!(said.contains(&format!("pid {}", idle.id())), "{said}");
    stop(idle);
}

/// Ctrl-C (SIGINT) to `afk loop` leaves the agent running (its tree is its
/// own), as SIGTERM does everywhere else here; `afk halt` then stops it,
/// whole, and hands the run to a human.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_loop_leaves_its_agent_running_and_afk_halt_stops_it() {
    let Some(m) = machine("claude", "Wait for the system [sleep]").await else {
        return;
    };
    let afk = m.start_loop(0);
    m.wait("the agent's sleeps", |m| sleepers_under(&m.root).len() >= 2)
        .await;
    let sleeping = sleepers_under(&m.root);
    stop_with(afk, "INT");
    // afk loop remembers where its run is in flight (AFK_STATE_FILE's
    // default, beside its own files): dropping infra from the allowlist
    // would not abandon it.
    let state = std::fs::read_to_string(m.root.join("local/state.json")).unwrap();
    assert!(state.contains("infra"), "{state}");
    std::thread::sleep(Duration::from_millis(500));
    for pid in &sleeping {
        assert!(
            !crate::processes::dead(*pid),
            "the loop's stop killed its agent ({pid})"
        );
    }
    let halt = Command::new(AFK)
        .args(["halt", "--by", "ops"])
        .env_clear()
        .envs(m.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&halt.stdout);
    assert_eq!(halt.status.code(), Some(0), "{said}");
    for pid in sleeping {
        assert!(
            crate::processes::dead(pid),
            "process {pid} survived afk halt"
        );
    }
    assert!(
        m.world
            .slack()
            .iter()
            .any(|s| s.contains("[STOPPED] infra#7 stopped by ops")),
        "{:?}",
        m.world.slack()
    );
    assert_eq!(m.world.labels("infra", 7), ["ready-for-human"]);
}
