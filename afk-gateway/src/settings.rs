//! The gateway's settings: raw values (as the binary reads them from
//! `AFK_GATEWAY_*` variables and flags) into a validated [`Settings`]
//! before anything runs. Names are an interface (spec 09): `AFK_GATEWAY_LISTEN`,
//! `AFK_GATEWAY_TOKEN` / `AFK_GATEWAY_TOKEN_FILE`, `AFK_GATEWAY_AGENT_BIN`,
//! `AFK_GATEWAY_INSTRUCTIONS_FILE`, `AFK_GATEWAY_MODELS`,
//! `AFK_GATEWAY_TURN_TIMEOUT_SECONDS`, `AFK_GATEWAY_MAX_TURNS`, plus this
//! implementation's own limits (queue, body, warm processes, drain).
//!
//! An unset token is not an error: the gateway then refuses every request
//! (spec 09), and the binary says so in its log. Every error names the
//! setting and never shows a token.
//!
//! It does not parse flags or read the environment (the binary does).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use afk_edge::auth::Bearer;
use afk_edge::listen::Limits;

/// The variables that hold the gateway's own secret: the agent CLI never
/// inherits them.
pub const OWN_SECRETS: [&str; 2] = ["AFK_GATEWAY_TOKEN", "AFK_GATEWAY_TOKEN_FILE"];

/// The largest instructions file read.
pub const INSTRUCTIONS_MAX: u64 = 64 * 1024;

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The listen address does not read.
    #[error("AFK_GATEWAY_LISTEN {0:?} is not an address like 127.0.0.1:8090")]
    Listen(String),
    /// Both ways of giving the token are set.
    #[error("set AFK_GATEWAY_TOKEN or AFK_GATEWAY_TOKEN_FILE, not both")]
    TwoTokens,
    /// The token is not one line of printable characters (never shown).
    #[error("{key}: {problem}")]
    BadToken {
        /// The setting that gave it.
        key: &'static str,
        /// What is wrong with it.
        problem: afk_edge::auth::BadToken,
    },
    /// The token file cannot be read.
    #[error("cannot read AFK_GATEWAY_TOKEN_FILE {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No instructions file.
    #[error(
        "AFK_GATEWAY_INSTRUCTIONS_FILE is not set: it names the conversational agent's instructions (short, plain spoken text in the user's language)"
    )]
    NoInstructions,
    /// The instructions cannot be used.
    #[error("AFK_GATEWAY_INSTRUCTIONS_FILE {path}: {problem}")]
    Instructions {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The models list does not read.
    #[error("AFK_GATEWAY_MODELS: {0}")]
    Models(String),
    /// No agent program.
    #[error("AFK_GATEWAY_AGENT_BIN is empty")]
    NoAgent,
}

/// The supported models; the first is the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Models(Vec<String>);

impl Models {
    /// Reads `sonnet, haiku` (comma-separated; at least one; each a model
    /// name or alias the CLI takes: letters, digits and `.-_:/@[]`, at most
    /// 100 characters, not starting with `-`).
    ///
    /// # Errors
    /// The first entry that is not a model name, a repeated one, or none.
    pub fn parse(text: &str) -> Result<Models, SettingsError> {
        let mut list: Vec<String> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:/@[]".contains(c);
            if item.is_empty()
                || item.len() > 100
                || item.starts_with('-')
                || !item.chars().all(allowed)
            {
                return Err(SettingsError::Models(format!(
                    "{item:?} is not a model name (letters, digits and .-_:/@[], at most 100, not starting with -); the list is comma-separated, e.g. sonnet,haiku"
                )));
            }
            if list.iter().any(|m| m == item) {
                return Err(SettingsError::Models(format!("{item:?} is listed twice")));
            }
            list.push(item.to_owned());
        }
        Ok(Models(list))
    }

    /// Every supported model, the default first.
    pub fn list(&self) -> &[String] {
        &self.0
    }

    /// The default model.
    pub fn default_model(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// Whether `model` is supported (exactly as listed).
    pub fn contains(&self, model: &str) -> bool {
        self.0.iter().any(|m| m == model)
    }
}

/// Processes started ahead of turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warm {
    /// Waiting processes per supported model and kind of turn (a chat
    /// completion, a conversation's first turn); 0 turns them off.
    pub per_model: usize,
    /// Conversations that keep a resumed process waiting for their next
    /// turn (the least recently used gives way); 0 turns them off.
    pub conversations: usize,
    /// A waiting process older than this is replaced.
    pub max_age: Duration,
}

/// Everything the gateway needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bearer token clients must send (none: every request is refused).
    pub token: Bearer,
    /// The agent program (`claude`).
    pub agent_bin: String,
    /// The conversational agent's instructions.
    pub instructions: String,
    /// The supported models.
    pub models: Models,
    /// A turn running longer is stopped.
    pub turn_timeout: Duration,
    /// Turns at once.
    pub max_turns: usize,
    /// Requests waiting for a turn at most (past it: 429).
    pub max_waiting: usize,
    /// How long a request waits for a turn (past it: 503).
    pub queue_wait: Duration,
    /// How long a second turn of one conversation waits for the first
    /// (past it: 409).
    pub conversation_wait: Duration,
    /// Conversations remembered at most (the least recently used idle one
    /// gives way; when none is idle: 429).
    pub max_conversations: usize,
    /// The largest request body.
    pub max_body: usize,
    /// How long a request body may take to arrive (past it: 408).
    pub body_timeout: Duration,
    /// Processes started ahead of turns.
    pub warm: Warm,
    /// The HTTP edge's limits; `shutdown_grace` is how long running turns
    /// may drain after SIGTERM.
    pub limits: Limits,
    /// Where the gateway makes its run's directory (turns' empty
    /// directories and the agents file, removed at stop; nothing else here
    /// is touched).
    pub work_dir: PathBuf,
}

impl Settings {
    /// The defaults around what has none.
    pub fn new(agent_bin: &str, instructions: &str, models: Models, token: Bearer) -> Settings {
        Settings {
            token,
            agent_bin: agent_bin.to_owned(),
            instructions: instructions.to_owned(),
            models,
            turn_timeout: Duration::from_secs(120),
            max_turns: 4,
            max_waiting: 16,
            queue_wait: Duration::from_secs(10),
            conversation_wait: Duration::from_secs(30),
            max_conversations: 10_000,
            max_body: 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            warm: Warm {
                per_model: 1,
                conversations: 4,
                max_age: Duration::from_secs(600),
            },
            limits: Limits {
                shutdown_grace: Duration::from_secs(25),
                ..Limits::default()
            },
            work_dir: std::env::temp_dir().join("afk-gateway"),
        }
    }
}

/// The settings as read, before validation (ranges are the reader's to
/// check). `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct Raw {
    /// `AFK_GATEWAY_LISTEN`.
    pub listen: String,
    /// `AFK_GATEWAY_TOKEN`.
    pub token: Option<String>,
    /// `AFK_GATEWAY_TOKEN_FILE`.
    pub token_file: Option<PathBuf>,
    /// `AFK_GATEWAY_AGENT_BIN`.
    pub agent_bin: String,
    /// `AFK_GATEWAY_INSTRUCTIONS_FILE`.
    pub instructions_file: Option<PathBuf>,
    /// `AFK_GATEWAY_MODELS`.
    pub models: String,
    /// `AFK_GATEWAY_TURN_TIMEOUT_SECONDS`.
    pub turn_timeout_seconds: u64,
    /// `AFK_GATEWAY_MAX_TURNS`.
    pub max_turns: u64,
    /// `AFK_GATEWAY_MAX_QUEUE`.
    pub max_queue: u64,
    /// `AFK_GATEWAY_QUEUE_WAIT_SECONDS`.
    pub queue_wait_seconds: u64,
    /// `AFK_GATEWAY_CONVERSATION_WAIT_SECONDS`.
    pub conversation_wait_seconds: u64,
    /// `AFK_GATEWAY_MAX_CONVERSATIONS`.
    pub max_conversations: u64,
    /// `AFK_GATEWAY_MAX_BODY_BYTES`.
    pub max_body_bytes: u64,
    /// `AFK_GATEWAY_WARM_PER_MODEL`.
    pub warm_per_model: u64,
    /// `AFK_GATEWAY_WARM_CONVERSATIONS`.
    pub warm_conversations: u64,
    /// `AFK_GATEWAY_WARM_MAX_AGE_SECONDS`.
    pub warm_max_age_seconds: u64,
    /// `AFK_GATEWAY_MAX_CONNECTIONS`.
    pub max_connections: u64,
    /// `AFK_GATEWAY_DRAIN_SECONDS`.
    pub drain_seconds: u64,
    /// `AFK_GATEWAY_WORK_DIR`.
    pub work_dir: Option<PathBuf>,
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Raw")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("agent_bin", &self.agent_bin)
            .field("instructions_file", &self.instructions_file)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Validates `raw`: the listen address and the settings.
///
/// # Errors
/// The first setting that cannot be used, named.
pub fn read(raw: &Raw) -> Result<(SocketAddr, Settings), SettingsError> {
    let listen: SocketAddr = raw
        .listen
        .trim()
        .parse()
        .map_err(|_| SettingsError::Listen(raw.listen.clone()))?;
    let given = raw.token.as_deref().filter(|t| !t.trim().is_empty());
    let token = match (given, &raw.token_file) {
        (Some(_), Some(_)) => return Err(SettingsError::TwoTokens),
        (Some(t), None) => Bearer::parse(Some(t)).map_err(|problem| SettingsError::BadToken {
            key: "AFK_GATEWAY_TOKEN",
            problem,
        })?,
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| SettingsError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
            Bearer::parse(Some(&text)).map_err(|problem| SettingsError::BadToken {
                key: "AFK_GATEWAY_TOKEN_FILE",
                problem,
            })?
        }
        (None, None) => Bearer::new(None),
    };
    let agent_bin = raw.agent_bin.trim();
    if agent_bin.is_empty() {
        return Err(SettingsError::NoAgent);
    }
    let path = raw
        .instructions_file
        .clone()
        .ok_or(SettingsError::NoInstructions)?;
    let problem = |problem: String| SettingsError::Instructions {
        path: path.clone(),
        problem,
    };
    let length = std::fs::metadata(&path)
        .map_err(|e| problem(format!("cannot read it: {e}")))?
        .len();
    if length > INSTRUCTIONS_MAX {
        return Err(problem(format!(
            "it holds {length} bytes; instructions are short (at most {INSTRUCTIONS_MAX})"
        )));
    }
    let instructions = std::fs::read(&path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let instructions =
        String::from_utf8(instructions).map_err(|_| problem("it is not UTF-8 text".to_owned()))?;
    if instructions.trim().is_empty() {
        return Err(problem("it is empty".to_owned()));
    }
    let models = Models::parse(&raw.models)?;
    let mut settings = Settings::new(agent_bin, instructions.trim(), models, token);
    settings.turn_timeout = Duration::from_secs(raw.turn_timeout_seconds);
    settings.max_turns = size(raw.max_turns);
    settings.max_waiting = size(raw.max_queue);
    settings.queue_wait = Duration::from_secs(raw.queue_wait_seconds);
    settings.conversation_wait = Duration::from_secs(raw.conversation_wait_seconds);
    settings.max_conversations = size(raw.max_conversations);
    settings.max_body = size(raw.max_body_bytes);
    settings.warm = Warm {
        per_model: size(raw.warm_per_model),
        conversations: size(raw.warm_conversations),
        max_age: Duration::from_secs(raw.warm_max_age_seconds),
    };
    settings.limits.max_connections = size(raw.max_connections);
    settings.limits.shutdown_grace = Duration::from_secs(raw.drain_seconds);
    if let Some(dir) = &raw.work_dir {
        settings.work_dir = dir.clone();
    }
    Ok((listen, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's own directory, removed when dropped.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("afk-gateway-settings-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary directory: {e}"))
    }

    fn raw(dir: &std::path::Path) -> Raw {
        let instructions = dir.join("agent.md");
        let _ = std::fs::write(
            &instructions,
            "Antworte kurz, in der Sprache des Nutzers.\n",
        );
        Raw {
            listen: "127.0.0.1:8090".into(),
            agent_bin: "claude".into(),
            instructions_file: Some(instructions),
            models: "sonnet,haiku".into(),
            turn_timeout_seconds: 120,
            max_turns: 4,
            ..Raw::default()
        }
    }

    fn refused(raw: &Raw, says: &str) {
        match read(raw) {
            Ok(_) => panic!("accepted: {raw:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(says), "{text}");
                assert!(!text.contains("s3cret"), "{text}");
            }
        }
    }

    #[test]
    fn good_settings_read_and_the_token_comes_from_env_or_file() {
        let tmp = scratch("good");
        let dir = tmp.path();
        let (listen, s) = read(&raw(dir)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listen.to_string(), "127.0.0.1:8090");
        assert_eq!(s.models.list(), ["sonnet", "haiku"]);
        assert_eq!(s.models.default_model(), "sonnet");
        assert_eq!(s.instructions, "Antworte kurz, in der Sprache des Nutzers.");
        assert!(!s.token.is_configured(), "no token: every request refused");
        let with = Raw {
            token: Some("s3cret-token".into()),
            ..raw(dir)
        };
        let (_, s) = read(&with).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.token.is_configured());
        assert!(!format!("{s:?} {with:?}").contains("s3cret"));
        let file = dir.join("token");
        let _ = std::fs::write(&file, "s3cret-from-file\n");
        let (_, s) = read(&Raw {
            token_file: Some(file),
            ..raw(dir)
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.token.is_configured());
    }

    #[test]
    fn every_bad_setting_is_named() {
        let tmp = scratch("bad");
        let dir = tmp.path();
        let base = raw(dir);
        refused(
            &Raw {
                listen: "localhost".into(),
                ..base.clone()
            },
            "AFK_GATEWAY_LISTEN \"localhost\"",
        );
        refused(
            &Raw {
                token: Some("s3cret".into()),
                token_file: Some(dir.join("t")),
                ..base.clone()
            },
            "not both",
        );
        refused(
            &Raw {
                token_file: Some(dir.join("missing")),
                ..base.clone()
            },
            "cannot read AFK_GATEWAY_TOKEN_FILE",
        );
        // A token with a line break inside can never match: refused,
        // naming where it came from and never showing it. A token file's
        // last newline is no part of the token.
        let err = read(&Raw {
            token: Some("s3cret-part\nsecond-line".into()),
            ..base.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("AFK_GATEWAY_TOKEN: "), "{err}");
        assert!(
            !err.contains("s3cret") && !err.contains("second-line"),
            "{err}"
        );
        std::fs::write(dir.join("bad-token"), "s3cret-part\r\nsecond-line\n").unwrap();
        let err = read(&Raw {
            token_file: Some(dir.join("bad-token")),
            ..base.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("AFK_GATEWAY_TOKEN_FILE: "), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        std::fs::write(dir.join("good-token"), "s3cret-whole-token\n").unwrap();
        let (_, settings) = read(&Raw {
            token_file: Some(dir.join("good-token")),
            ..base.clone()
        })
        .unwrap();
        assert!(settings.token.is("s3cret-whole-token"));
        refused(
            &Raw {
                agent_bin: " ".into(),
                ..base.clone()
            },
            "AFK_GATEWAY_AGENT_BIN is empty",
        );
        refused(
            &Raw {
                instructions_file: None,
                ..base.clone()
            },
            "AFK_GATEWAY_INSTRUCTIONS_FILE is not set",
        );
        refused(
            &Raw {
                instructions_file: Some(dir.join("nope.md")),
                ..base.clone()
            },
            "cannot read it",
        );
        let empty = dir.join("empty.md");
        let _ = std::fs::write(&empty, " \n");
        refused(
            &Raw {
                instructions_file: Some(empty),
                ..base.clone()
            },
            "it is empty",
        );
        let binary = dir.join("binary.md");
        let _ = std::fs::write(&binary, [0xff, 0xfe, 0x00]);
        refused(
            &Raw {
                instructions_file: Some(binary),
                ..base.clone()
            },
            "not UTF-8",
        );
        let huge = dir.join("huge.md");
        let _ = std::fs::write(&huge, "x".repeat(70_000));
        refused(
            &Raw {
                instructions_file: Some(huge),
                ..base.clone()
            },
            "instructions are short",
        );
        refused(
            &Raw {
                instructions_file: Some(dir.to_path_buf()),
                ..base.clone()
            },
            "AFK_GATEWAY_INSTRUCTIONS_FILE",
        );
        for (models, says) in [
            ("", "\"\" is not a model name"),
            ("sonnet,,haiku", "\"\" is not a model name"),
            ("sonnet haiku", "\"sonnet haiku\" is not a model name"),
            ("--dangerously-skip-permissions", "not starting with -"),
            ("sonnet,sonnet", "listed twice"),
        ] {
            refused(
                &Raw {
                    models: models.into(),
                    ..base.clone()
                },
                says,
            );
        }
        assert!(Models::parse(" claude-sonnet-4-5 , opus[1m], us.anthropic.claude:1 ").is_ok());
    }
}
