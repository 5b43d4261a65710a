//! The gateway's shared state ([`App`]): its settings, the waiting
//! processes, the conversations, the admission of turns, the running turns,
//! and the values never shown. Starting it makes the work directory and
//! starts the default model's waiting processes; draining and shutting down
//! stop them.
//!
//! It does not speak HTTP (`server`, `routes`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::admission::Admission;
use crate::conversations::Conversations;
use crate::pool::{Kind, Pool};
use crate::settings::{OWN_SECRETS, Settings};
use crate::turn::{Launch, Registry};

/// How often waiting processes are checked (dead or stale ones replaced).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The work directory cannot be made.
    #[error("cannot make the work directory {path} (AFK_GATEWAY_WORK_DIR): {source}")]
    WorkDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The gateway's shared state.
#[derive(Debug)]
pub struct App {
    pub(crate) settings: Settings,
    /// This run's own directory under the work directory: the only thing
    /// the gateway ever removes.
    run_dir: std::path::PathBuf,
    pub(crate) pool: Pool,
    pub(crate) conversations: Conversations,
    pub(crate) admission: Admission,
    pub(crate) registry: Arc<Registry>,
    draining: AtomicBool,
    /// Values never shown: the environment's keys, tokens and passwords.
    secrets: Vec<String>,
}

/// Whether an environment variable's name says it holds a secret.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|w| name.contains(w))
}

impl App {
    /// Makes the work directory and the agents file, starts the default
    /// model's waiting processes, and the sweep of waiting processes.
    ///
    /// # Errors
    /// The work directory or the agents file cannot be made.
    pub fn start(settings: Settings) -> Result<Arc<App>, StartupError> {
        // A directory of this run's own inside the work directory: the
        // work directory may be shared (or `/tmp`), and is never emptied.
        let work = settings
            .work_dir
            .join(format!("run-{}", uuid::Uuid::new_v4().simple()));
        let made = (|| {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&settings.work_dir)?;
            std::fs::DirBuilder::new().mode(0o700).create(&work)?;
            std::fs::write(
                work.join("agents.json"),
                crate::cli::agents_file(&settings.instructions),
            )
        })();
        made.map_err(|source| StartupError::WorkDir {
            path: settings.work_dir.clone(),
            source,
        })?;
        let mut env_remove: Vec<String> = OWN_SECRETS.iter().map(|s| (*s).to_owned()).collect();
        let mut secrets = Vec::new();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            // The token under any other name is not inherited either.
            if settings.token.is(value.trim()) && !env_remove.iter().any(|n| n == name) {
                env_remove.push(name.to_owned());
            }
            if secret_name(name) && value.trim().len() >= 8 {
                secrets.push(value.trim().to_owned());
            }
        }
        let launch = Arc::new(Launch {
            bin: settings.agent_bin.clone(),
            agents_file: work.join("agents.json"),
            work_dir: work.clone(),
            env_remove,
        });
        let app = Arc::new(App {
            pool: Pool::new(launch, settings.warm),
            conversations: Conversations::new(settings.max_conversations),
            admission: Admission::new(
                settings.max_turns,
                settings.max_waiting,
                settings.queue_wait,
            ),
            registry: Arc::new(Registry::default()),
            draining: AtomicBool::new(false),
            secrets,
            settings,
            run_dir: work,
        });
        let default = app.settings.models.default_model().to_owned();
        let starting = app.clone();
        tokio::spawn(async move {
            starting.pool.want(&default, Kind::Chat).await;
            starting.pool.want(&default, Kind::Conversation).await;
        });
        tokio::spawn(sweep(Arc::downgrade(&app)));
        Ok(app)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The waiting processes.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many turns run.
    pub fn running(&self) -> usize {
        self.registry.running()
    }

    /// How many requests wait for a turn.
    pub fn waiting(&self) -> usize {
        self.admission.waiting()
    }

    /// Whether it is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops admitting turns and kills the waiting processes; running
    /// turns go on (the edge gives them its grace period).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let killed = self.pool.close();
        tracing::info!(
            running = self.registry.running(),
            waiting_killed = killed,
            "draining: no new turns"
        );
    }

    /// Drains, stops every turn still running and waits for them (at most
    /// `wait`), and removes this run's directory (nothing else of the work
    /// directory). Returns how many turns it stopped.
    pub async fn shut_down(&self, wait: Duration) -> usize {
        self.drain();
        let stopped = self.registry.stop_all();
        if !self.registry.idle(wait).await {
            tracing::warn!(
                running = self.registry.running(),
                "turns still running at exit"
            );
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        stopped
    }

    /// `text` with every secret replaced, on one line.
    pub fn redact(&self, text: &str) -> String {
        let mut out = self.settings.token.redact(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

async fn sweep(app: Weak<App>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        if app.draining() {
            return;
        }
        app.pool.sweep().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_known_by_their_names() {
        for (name, want) in [
            ("ANTHROPIC_API_KEY", true),
            ("CLAUDE_CODE_OAUTH_TOKEN", true),
            ("aws_secret_access_key", true),
            ("DB_PASSWORD", true),
            ("GOOGLE_APPLICATION_CREDENTIALS", true),
            ("ANTHROPIC_BASE_URL", false),
            ("HOME", false),
        ] {
            assert_eq!(secret_name(name), want, "{name}");
        }
    }
}
