//! afk as a GitHub App: its JWT, its installation, and the installation
//! tokens it acts with (facts and sources in `docs/contracts/github.md`,
//! "GitHub App").
//!
//! This file is long because one App identity has four parts that share
//! one key and one clock: the signed JWT, the installation look-up, the
//! token cache kept across ticks, and GitHub's refusals told apart (clock,
//! key, installation, permissions), with their unit tests.
//!
//! - **The JWT** is RS256, signed with the key in
//!   `AFK_GITHUB_APP_PRIVATE_KEY_FILE` (re-read at every signing, so a
//!   rotated key is picked up), issued 60 s in the past (GitHub's advice
//!   against clock drift) and valid for 10 minutes in all, the most GitHub
//!   accepts: `exp` is 9 minutes ahead, so a clock a little fast is still
//!   inside the limit.
//! - **The installation** is `AFK_GITHUB_APP_INSTALLATION_ID`, or the one
//!   `GET /repos/{owner}/{repo}/installation` names for each allowlisted
//!   owner. A deployment acts as one installation: an allowlist that spans
//!   two is an error naming both repositories.
//! - **The loop's token** is minted with `POST
//!   /app/installations/{id}/access_tokens`, scoped to the allowlisted
//!   repositories and [`LOOP_PERMISSIONS`], kept in memory and in
//!   `AFK_GITHUB_TOKEN_CACHE` (mode 0600, replaced whole by a rename, minted
//!   under a lock so two ticks at once mint once), and reused until
//!   [`REUSE_MARGIN`] before it expires. A 401 drops it ([`AppAuth::drop_token`])
//!   and the caller mints once more.
//! - **An agent's token** ([`AppAuth::repo_token`]) is minted for one
//!   repository with [`AGENT_PERMISSIONS`] only, never cached: it expires on
//!   its own an hour later.
//! - Nothing here prints a key or a token: [`AppAuth`]'s and
//!   [`MintedToken`]'s `Debug` name sources and ids only, and every error
//!   names the setting or the repository, never the material.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use afk_core::Timestamp;
use afk_core::ports::{PortError, PortResult};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{Http, now_unix, read_capped};

/// How far in the past the JWT says it was issued (GitHub's advice, for
/// clocks that drift).
pub const JWT_BACKDATE: i64 = 60;
/// How far ahead the JWT expires: with the backdate, ten minutes in all,
/// the most GitHub accepts, and a minute short of GitHub's limit on `exp`.
pub const JWT_AHEAD: i64 = 540;
/// An installation token is reused until this long before it expires.
pub const REUSE_MARGIN: i64 = 300;
/// What the loop's token may do: the labels, comments and state of issues;
/// the commits, check runs and statuses it reads; the permission look-up
/// (metadata). The docs' permission table says the same.
pub const LOOP_PERMISSIONS: [(&str, &str); 5] = [
    ("checks", "read"),
    ("contents", "read"),
    ("issues", "write"),
    ("metadata", "read"),
    ("statuses", "read"),
];
/// What the loop's token may also do where a repository lands through a
/// pull request (`AFK_LAND=pull-request`): open, label and merge it
/// (merging writes the default branch).
pub const LAND_PERMISSIONS: [(&str, &str); 2] = [("contents", "write"), ("pull_requests", "write")];
/// What an agent's token may do: push to its one repository.
pub const AGENT_PERMISSIONS: [(&str, &str); 1] = [("contents", "write")];
/// The most afk corrects its clock by GitHub's (`Date`); past it, the clock
/// is named as the fault and nothing is signed with it.
const MAX_SKEW: i64 = 15 * 60;
/// How long a tick waits for another tick that is minting the same token.
const MINT_LOCK_WAIT: Duration = Duration::from_secs(20);
/// The most repositories GitHub scopes one installation token to.
const MAX_TOKEN_REPOS: usize = 500;
/// The largest answer read from an App route.
const MAX_ANSWER: usize = 1 << 20;
/// At most this many repositories are looked up one by one to name the one
/// an installation does not cover.
const MAX_DIAGNOSE: usize = 50;

/// The App's settings, checked ([`AppSettings::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// `AFK_GITHUB_APP_ID`.
    pub app_id: u64,
    /// `AFK_GITHUB_APP_PRIVATE_KEY_FILE`.
    pub key_file: PathBuf,
    /// `AFK_GITHUB_APP_INSTALLATION_ID`, when given.
    pub installation_id: Option<u64>,
    /// `AFK_GITHUB_TOKEN_CACHE`, when given.
    pub cache_file: Option<PathBuf>,
    /// GitHub's REST base.
    pub api_url: String,
    /// Every repository the loop's token must cover, `owner/name`.
    pub repos: Vec<String>,
    /// Some repository lands through a pull request: the loop's token
    /// needs [`LAND_PERMISSIONS`] too.
    pub lands_pull_requests: bool,
}

impl AppSettings {
    /// What the loop's token asks for: [`LOOP_PERMISSIONS`], raised by
    /// [`LAND_PERMISSIONS`] when a repository lands through a pull request.
    pub fn loop_permissions(&self) -> Vec<(&'static str, &'static str)> {
        let mut perms: Vec<(&str, &str)> = LOOP_PERMISSIONS.to_vec();
        if self.lands_pull_requests {
            for (k, v) in LAND_PERMISSIONS {
                perms.retain(|(p, _)| *p != k);
                perms.push((k, v));
            }
            perms.sort_unstable();
        }
        perms
    }
}

/// The raw App settings as the operator wrote them.
#[derive(Debug, Clone, Default)]
pub struct AppArgs<'a> {
    /// `AFK_GITHUB_APP_ID`.
    pub app_id: Option<&'a str>,
    /// `AFK_GITHUB_APP_PRIVATE_KEY_FILE`.
    pub key_file: Option<&'a str>,
    /// `AFK_GITHUB_APP_INSTALLATION_ID`.
    pub installation_id: Option<&'a str>,
    /// `AFK_GITHUB_TOKEN_CACHE`.
    pub cache_file: Option<&'a str>,
}

fn set(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

impl AppSettings {
    /// The App's settings, or `None` when none is given. `token_set` says
    /// whether a personal token is configured too (an error: afk acts as
    /// one identity).
    ///
    /// # Errors
    /// A message naming the setting that cannot be used.
    pub fn parse(
        args: &AppArgs<'_>,
        token_set: bool,
        api_url: &str,
        repos: Vec<String>,
    ) -> Result<Option<AppSettings>, String> {
        let (id, key) = match (set(args.app_id), set(args.key_file)) {
            (None, None) => {
                if let Some(other) = [
                    ("AFK_GITHUB_APP_INSTALLATION_ID", args.installation_id),
                    ("AFK_GITHUB_TOKEN_CACHE", args.cache_file),
                ]
                .into_iter()
                .find_map(|(k, v)| set(v).map(|_| k))
                {
                    return Err(format!(
                        "{other} is set but AFK_GITHUB_APP_ID and AFK_GITHUB_APP_PRIVATE_KEY_FILE are not: it applies to a GitHub App only"
                    ));
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err("AFK_GITHUB_APP_ID is set but AFK_GITHUB_APP_PRIVATE_KEY_FILE is not: a GitHub App needs both (the App's private key, a PEM file)".into());
            }
            (None, Some(_)) => {
                return Err("AFK_GITHUB_APP_PRIVATE_KEY_FILE is set but AFK_GITHUB_APP_ID is not: a GitHub App needs both".into());
            }
            (Some(id), Some(key)) => (id, key),
        };
        let mut owners: Vec<&str> = repos
            .iter()
            .filter_map(|r| r.split_once('/').map(|(o, _)| o))
            .collect();
        owners.sort_unstable_by_key(|o| o.to_ascii_lowercase());
        owners.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        if owners.len() > 1 {
            return Err(format!(
                "AFK_ALLOWLIST names repositories of {} owners ({}): a GitHub App acts as one installation, which belongs to one account; run one deployment per owner (runbook, section 15)",
                owners.len(),
                owners.join(", ")
            ));
        }
        if token_set {
            return Err("both a token (AFK_GITHUB_TOKEN or AFK_GITHUB_TOKEN_FILE) and a GitHub App (AFK_GITHUB_APP_ID, AFK_GITHUB_APP_PRIVATE_KEY_FILE) are set: afk acts as one identity, unset one".into());
        }
        let app_id = number(
            id,
            "AFK_GITHUB_APP_ID",
            "the App ID on the App's settings page, not its client ID",
        )?;
        let installation_id = set(args.installation_id)
            .map(|i| {
                number(
                    i,
                    "AFK_GITHUB_APP_INSTALLATION_ID",
                    "the number at the end of the installation's settings URL",
                )
            })
            .transpose()?;
        Ok(Some(AppSettings {
            app_id,
            key_file: PathBuf::from(key),
            installation_id,
            cache_file: set(args.cache_file).map(PathBuf::from),
            api_url: api_url.to_owned(),
            repos,
            lands_pull_requests: false,
        }))
    }
}

/// A positive integer setting.
fn number(value: &str, key: &str, hint: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{key}={:?} is not a positive number ({hint})",
            afk_core::prompt::one_line(value, 40)
        )),
    }
}

/// An installation token. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedToken {
    /// The token.
    pub token: String,
    /// When GitHub stops accepting it.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MintedToken(redacted, expires {})", self.expires_at)
    }
}

/// What the cache file holds (and the memory copy of it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cached {
    app_id: u64,
    installation_id: u64,
    /// The App's slug (its login is `<slug>[bot]`).
    slug: String,
    /// The repositories and permissions the token was minted for.
    scope: String,
    token: String,
    /// RFC 3339.
    expires_at: String,
}

impl Cached {
    fn expires(&self) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(&self.expires_at).ok()
    }
}

/// Whether a token that expires at `expires_at` may still be used at `now`
/// (both unix seconds): until [`REUSE_MARGIN`] before it expires.
pub fn reusable(expires_at: i64, now: i64) -> bool {
    now < expires_at - REUSE_MARGIN
}

/// afk's App identity. Shared by every use in a process; its caches live as
/// long as it does.
pub struct AppAuth {
    settings: AppSettings,
    token: Mutex<Option<Cached>>,
    /// Seconds to add to this machine's clock to get GitHub's, learned from
    /// a refused JWT's `Date` header.
    skew: Mutex<i64>,
}

impl std::fmt::Debug for AppAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAuth")
            .field("app_id", &self.settings.app_id)
            .field("key_file", &self.settings.key_file)
            .field("installation_id", &self.settings.installation_id)
            .field("cache_file", &self.settings.cache_file)
            .finish_non_exhaustive()
    }
}

/// Reads and checks the key file: an RSA private key in PEM (PKCS#1, as
/// GitHub hands it out, or PKCS#8) that can sign.
///
/// # Errors
/// A message naming `AFK_GITHUB_APP_PRIVATE_KEY_FILE` and the path, never
/// the file's content.
pub fn read_key(path: &Path) -> Result<EncodingKey, String> {
    let key = "AFK_GITHUB_APP_PRIVATE_KEY_FILE";
    let bytes = afk_process::files::read_small(path, MAX_KEY_BYTES).map_err(|e| {
        format!(
            "{key}: cannot read {}: {}",
            path.display(),
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_owned(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                std::io::ErrorKind::IsADirectory => "it is a directory".to_owned(),
                std::io::ErrorKind::InvalidInput => e.to_string(),
                _ => e.kind().to_string(),
            }
        )
    })?;
    let not_rsa = || {
        format!(
            "{key}: {} holds no RSA private key in PEM (GitHub's App keys begin \"-----BEGIN RSA PRIVATE KEY-----\"; generate one on the App's settings page)",
            path.display()
        )
    };
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(not_rsa());
    }
    let encoding = EncodingKey::from_rsa_pem(&bytes).map_err(|_| not_rsa())?;
    // A PEM block that parses may still not be a usable RSA key (a public
    // key, a truncated one): sign once to know.
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"probe": 1}),
        &encoding,
    )
    .map_err(|_| not_rsa())?;
    Ok(encoding)
}

/// The largest key file read (an RSA key of 16,384 bits is under 13 KiB).
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// The largest token cache read.
const MAX_CACHE_BYTES: u64 = 64 * 1024;

/// The JWT's claims.
#[derive(Debug, Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// An App route's answer.
struct Answer {
    status: u16,
    body: Value,
    /// GitHub's clock (`Date`), unix seconds.
    date: Option<i64>,
}

/// GitHub's message in an error body.
fn message(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .map(|m| afk_core::prompt::one_line(m, 200))
        .unwrap_or_default()
}

/// Whether GitHub refused a JWT for its times (`iat`, `exp`): a clock off.
fn clock_refusal(message: &str) -> bool {
    message.contains("('exp')") || message.contains("('iat')")
}

impl AppAuth {
    /// The App, its key read and checked now (a bad key stops the tick
    /// before it starts).
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn new(settings: AppSettings) -> Result<AppAuth, String> {
        read_key(&settings.key_file)?;
        if let Some(cache) = &settings.cache_file
            && cache.is_dir()
        {
            return Err(format!(
                "AFK_GITHUB_TOKEN_CACHE={} is a directory: name a file in it (e.g. {}/github-token.json)",
                cache.display(),
                cache.display()
            ));
        }
        Ok(AppAuth {
            settings,
            token: Mutex::new(None),
            skew: Mutex::new(0),
        })
    }

    /// The process's App for `settings`: the same one every time it is
    /// asked with the same settings, so `afk loop`'s rounds (each of which
    /// reads its settings again) share the token in memory, cache file or
    /// not. The key is read and checked on every call.
    ///
    /// # Errors
    /// As [`AppAuth::new`].
    pub fn shared(settings: AppSettings) -> Result<std::sync::Arc<AppAuth>, String> {
        static APPS: Mutex<Vec<std::sync::Arc<AppAuth>>> = Mutex::new(Vec::new());
        read_key(&settings.key_file)?;
        let mut apps = APPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(app) = apps.iter().find(|a| a.settings == settings) {
            return Ok(app.clone());
        }
        let app = std::sync::Arc::new(AppAuth::new(settings)?);
        // One per App and key: settings that changed replace the old one.
        apps.retain(|a| {
            (a.settings.app_id, &a.settings.key_file)
                != (app.settings.app_id, &app.settings.key_file)
        });
        apps.push(app.clone());
        Ok(app)
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// A JWT for the App, as of this machine's clock corrected by what
    /// GitHub last said its clock is.
    ///
    /// # Errors
    /// `Auth` when the key cannot be read or used now.
    pub fn jwt(&self) -> PortResult<String> {
        let skew = *self
            .skew
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.jwt_at(now_unix() + skew)
    }

    /// A JWT as of `now` (unix seconds).
    ///
    /// # Errors
    /// `Auth` when the key cannot be read or used.
    pub fn jwt_at(&self, now: i64) -> PortResult<String> {
        let key =
            read_key(&self.settings.key_file).map_err(|message| PortError::Auth { message })?;
        let claims = Claims {
            iat: now - JWT_BACKDATE,
            exp: now + JWT_AHEAD,
            iss: self.settings.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).map_err(|_| {
            PortError::Auth {
                message: "AFK_GITHUB_APP_PRIVATE_KEY_FILE: the key could not sign the App's JWT"
                    .into(),
            }
        })
    }

    /// One request to an App route with the JWT. A refusal for the JWT's
    /// times is asked once more with GitHub's clock (its `Date` header).
    async fn app_request(
        &self,
        http: &Http,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> PortResult<Answer> {
        let url =
            crate::http::join_url(&self.settings.api_url, segments, &[], "AFK_GITHUB_API_URL")?;
        let mut corrected = false;
        loop {
            let jwt = self.jwt()?;
            let answer = http
                .retrying(|| async {
                    let mut request = http
                        .client()
                        .request(method.clone(), url.clone())
                        .header("Authorization", format!("Bearer {jwt}"))
                        .header("Accept", "application/vnd.github+json")
                        .header("X-GitHub-Api-Version", "2022-11-28");
                    if let Some(b) = body {
                        request = request.json(b);
                    }
                    let response = http.send(request).await?;
                    let status = response.status().as_u16();
                    let date = response
                        .headers()
                        .get("date")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|d| {
                            time::OffsetDateTime::parse(
                                d,
                                &time::format_description::well_known::Rfc2822,
                            )
                            .ok()
                        })
                        .map(time::OffsetDateTime::unix_timestamp);
                    let bytes = read_capped(response, MAX_ANSWER, "GitHub's answer").await?;
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if status >= 500 {
                        return Err(PortError::Transient {
                            message: format!("GitHub failed (HTTP {status})"),
                        });
                    }
                    if status == 429
                        || (status == 403
                            && message(&body).to_ascii_lowercase().contains("rate limit"))
                    {
                        return Err(PortError::RateLimited { retry_after: None });
                    }
                    Ok(Answer { status, body, date })
                })
                .await?;
            let skew = answer.date.map(|d| d - now_unix());
            if answer.status == 401
                && clock_refusal(&message(&answer.body))
                && !corrected
                && let Some(skew) = skew.filter(|s| (5..=MAX_SKEW).contains(&s.abs()))
            {
                tracing::warn!(
                    action = "clock",
                    skew_seconds = skew,
                    "GitHub refused the App's JWT for its times: this machine's clock is {} s {} GitHub's; signing with GitHub's clock (fix the clock: NTP)",
                    skew.abs(),
                    if skew > 0 { "behind" } else { "ahead of" }
                );
                *self
                    .skew
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = skew;
                corrected = true;
                continue;
            }
            if answer.status == 401 {
                let said = message(&answer.body);
                return Err(PortError::Auth {
                    message: if clock_refusal(&said) {
                        format!(
                            "GitHub refused the App's JWT for its times ({said}): this machine's clock is off{}; fix it (NTP)",
                            skew.map(|s| format!(" (by {s} s from GitHub's)"))
                                .unwrap_or_default()
                        )
                    } else {
                        format!(
                            "GitHub did not accept the App's JWT (401 {said}): AFK_GITHUB_APP_PRIVATE_KEY_FILE does not hold a current key of App {}, or AFK_GITHUB_APP_ID names another App",
                            self.settings.app_id
                        )
                    },
                });
            }
            return Ok(answer);
        }
    }

    /// The App's slug (`GET /app`).
    async fn slug(&self, http: &Http) -> PortResult<String> {
        let answer = self.app_request(http, Method::GET, &["app"], None).await?;
        if answer.status != 200 {
            return Err(PortError::Permanent {
                message: format!(
                    "GET /app answered {} {}",
                    answer.status,
                    message(&answer.body)
                ),
            });
        }
        answer
            .body
            .get("slug")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| PortError::ContractViolation {
                message: "GET /app answered without a slug".into(),
            })
    }

    /// The installation that covers `repo` (`owner/name`).
    async fn installation_of(&self, http: &Http, repo: &str) -> PortResult<u64> {
        let (owner, name) = repo.split_once('/').unwrap_or(("", repo));
        let answer = self
            .app_request(
                http,
                Method::GET,
                &["repos", owner, name, "installation"],
                None,
            )
            .await?;
        match answer.status {
            200 => answer
                .body
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| PortError::ContractViolation {
                    message: format!("GitHub named the installation of {repo} without an id"),
                }),
            404 => Err(PortError::Permanent {
                message: format!(
                    "the GitHub App {} is not installed on {repo} (or cannot see it): install it there, or drop {repo} from AFK_ALLOWLIST",
                    self.settings.app_id
                ),
            }),
            s => Err(PortError::Permanent {
                message: format!(
                    "looking up the installation of {repo}: GitHub answered {s} {}",
                    message(&answer.body)
                ),
            }),
        }
    }

    /// The installation this deployment acts as: the setting, or the one of
    /// every allowlisted owner (looked up through its first repository),
    /// which must be the same.
    async fn installation(&self, http: &Http) -> PortResult<u64> {
        if let Some(id) = self.settings.installation_id {
            return Ok(id);
        }
        let mut found: Option<(u64, &str)> = None;
        let mut owners_seen: Vec<String> = Vec::new();
        for repo in &self.settings.repos {
            let owner = repo
                .split_once('/')
                .map_or("", |(o, _)| o)
                .to_ascii_lowercase();
            if owners_seen.contains(&owner) {
                continue;
            }
            owners_seen.push(owner);
            let id = self.installation_of(http, repo).await?;
            match found {
                None => found = Some((id, repo)),
                Some((first, first_repo)) if first != id => {
                    return Err(PortError::Permanent {
                        message: format!(
                            "{first_repo} and {repo} are in different installations of the GitHub App ({first} and {id}): one deployment acts as one installation; split AFK_ALLOWLIST by owner, one deployment each"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        found.map(|(id, _)| id).ok_or_else(|| PortError::Permanent {
            message: "a GitHub App needs AFK_ALLOWLIST (whose owners' installation it acts as) or AFK_GITHUB_APP_INSTALLATION_ID".into(),
        })
    }

    /// `POST /app/installations/{id}/access_tokens` for `repos` (names
    /// without their owner; all of the installation's when empty) with
    /// `permissions`.
    async fn mint(
        &self,
        http: &Http,
        installation: u64,
        repos: &[&str],
        permissions: &[(&str, &str)],
    ) -> PortResult<MintedToken> {
        let mut body = json!({
            "permissions": permissions.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        if repos.len() > MAX_TOKEN_REPOS {
            return Err(PortError::Permanent {
                message: format!(
                    "AFK_ALLOWLIST names {} repositories: GitHub scopes one installation token to at most {MAX_TOKEN_REPOS}; shard the allowlist across deployments (runbook, section 11)",
                    repos.len()
                ),
            });
        }
        if !repos.is_empty() {
            let names: Vec<&str> = repos
                .iter()
                .map(|r| r.split_once('/').map_or(*r, |(_, n)| n))
                .collect();
            body["repositories"] = json!(names);
        }
        let id = installation.to_string();
        let answer = self
            .app_request(
                http,
                Method::POST,
                &["app", "installations", &id, "access_tokens"],
                Some(&body),
            )
            .await?;
        let said = message(&answer.body);
        match answer.status {
            201 | 200 => {}
            404 => {
                return Err(PortError::Permanent {
                    message: format!(
                        "GitHub knows no installation {installation} of App {} (AFK_GITHUB_APP_INSTALLATION_ID, or the App was uninstalled)",
                        self.settings.app_id
                    ),
                });
            }
            403 => {
                return Err(PortError::Auth {
                    message: format!(
                        "GitHub refused to mint a token for installation {installation} (403 {said}; a suspended installation answers so)"
                    ),
                });
            }
            422 if said.to_ascii_lowercase().contains("permission") => {
                let asked: Vec<String> = permissions
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                return Err(PortError::Permanent {
                    message: format!(
                        "the GitHub App's installation {installation} does not grant what afk needs ({}): give the App these permissions and accept them on the installation (docs/operations.md, \"GitHub App\")",
                        asked.join(", ")
                    ),
                });
            }
            422 => {
                let missing = self.uncovered(http, installation, repos).await;
                return Err(PortError::Permanent {
                    message: match missing {
                        Some(repo) => format!(
                            "the GitHub App's installation {installation} does not cover {repo}: add {repo} to the installation's repositories, or drop it from AFK_ALLOWLIST"
                        ),
                        None => format!(
                            "GitHub refused to mint a token for installation {installation} (422 {said})"
                        ),
                    },
                });
            }
            s => {
                return Err(PortError::Permanent {
                    message: format!("minting an installation token: GitHub answered {s} {said}"),
                });
            }
        }
        let token = answer
            .body
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        let expires = answer
            .body
            .get("expires_at")
            .and_then(Value::as_str)
            .and_then(|e| Timestamp::parse_rfc3339(e).ok());
        match (token, expires) {
            (Some(t), Some(e)) if !t.chars().any(char::is_control) => Ok(MintedToken {
                token: t.to_owned(),
                expires_at: e,
            }),
            _ => Err(PortError::ContractViolation {
                message: "GitHub minted an installation token without a usable token or expires_at"
                    .into(),
            }),
        }
    }

    /// The first of `repos` that `installation` does not cover, looked up
    /// one by one (at most [`MAX_DIAGNOSE`]).
    async fn uncovered(&self, http: &Http, installation: u64, repos: &[&str]) -> Option<String> {
        for repo in repos.iter().take(MAX_DIAGNOSE) {
            match self.installation_of(http, repo).await {
                Ok(id) if id == installation => {}
                _ => return Some((*repo).to_owned()),
            }
        }
        None
    }

    /// What the loop's token is minted for, as kept in the cache.
    fn scope(&self) -> String {
        let mut repos: Vec<String> = self
            .settings
            .repos
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .collect();
        repos.sort();
        repos.dedup();
        let perms: Vec<String> = self
            .settings
            .loop_permissions()
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        format!("{}|{}", repos.join(","), perms.join(","))
    }

    /// GitHub's clock as this process last learned it (unix seconds).
    fn github_now(&self) -> i64 {
        now_unix()
            + *self
                .skew
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `c` is this App's loop token, still good at `now`.
    fn usable(&self, c: &Cached, now: i64) -> bool {
        c.app_id == self.settings.app_id
            && self
                .settings
                .installation_id
                .is_none_or(|i| i == c.installation_id)
            && c.scope == self.scope()
            && c.expires().is_some_and(|e| reusable(e.unix_seconds(), now))
    }

    /// The loop's installation token: the one in memory, else the cache
    /// file's, else a new one (written to the cache).
    ///
    /// # Errors
    /// What GitHub or the key said, naming the setting or the repository.
    pub async fn token(&self, http: &Http) -> PortResult<String> {
        Ok(self.current(http).await?.token)
    }

    /// afk's own login, `<slug>[bot]`.
    ///
    /// # Errors
    /// As [`AppAuth::token`].
    pub async fn login(&self, http: &Http) -> PortResult<String> {
        Ok(format!("{}[bot]", self.current(http).await?.slug))
    }

    async fn current(&self, http: &Http) -> PortResult<Cached> {
        let now = self.github_now();
        if let Some(c) = self.memory().filter(|c| self.usable(c, now)) {
            return Ok(c);
        }
        let Some(path) = self.settings.cache_file.clone() else {
            tracing::info!(
                action = "token",
                "minting a GitHub App installation token (set AFK_GITHUB_TOKEN_CACHE to reuse it across ticks)"
            );
            let fresh = self.mint_loop_token(http).await?;
            self.remember(Some(fresh.clone()));
            return Ok(fresh);
        };
        if let Some(c) = read_cache(&path).filter(|c| self.usable(c, now)) {
            tracing::debug!(
                action = "token",
                "GitHub App token reused from AFK_GITHUB_TOKEN_CACHE"
            );
            self.remember(Some(c.clone()));
            return Ok(c);
        }
        // Mint under the cache's lock, so two ticks at once mint once: the
        // second reads what the first wrote. A lock that cannot be had in
        // time (a stuck tick) does not stop this one.
        let guard = lock_beside(&path, MINT_LOCK_WAIT).await;
        if guard.is_some()
            && let Some(c) = read_cache(&path).filter(|c| self.usable(c, self.github_now()))
        {
            self.remember(Some(c.clone()));
            return Ok(c);
        }
        let fresh = self.mint_loop_token(http).await?;
        match serde_json::to_vec(&fresh)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_private(&path, &bytes))
        {
            Ok(()) => {
                tracing::info!(action = "token", expires_at = %fresh.expires_at, "minted a GitHub App installation token; kept in AFK_GITHUB_TOKEN_CACHE")
            }
            Err(e) => tracing::warn!(
                action = "token",
                "minted a GitHub App installation token but cannot keep it in AFK_GITHUB_TOKEN_CACHE ({}: {e}); the next tick mints again",
                path.display()
            ),
        }
        drop(guard);
        self.remember(Some(fresh.clone()));
        Ok(fresh)
    }

    fn memory(&self) -> Option<Cached> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, c: Option<Cached>) {
        *self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = c;
    }

    async fn mint_loop_token(&self, http: &Http) -> PortResult<Cached> {
        let installation = self.installation(http).await?;
        let slug = self.slug(http).await?;
        let repos: Vec<&str> = self.settings.repos.iter().map(String::as_str).collect();
        let minted = self
            .mint(
                http,
                installation,
                &repos,
                &self.settings.loop_permissions(),
            )
            .await?;
        Ok(Cached {
            app_id: self.settings.app_id,
            installation_id: installation,
            slug,
            scope: self.scope(),
            token: minted.token,
            expires_at: minted.expires_at.to_string(),
        })
    }

    /// Drops the loop's token `token` (GitHub answered 401 with it): from
    /// memory, and from the cache file when it holds that token, so the
    /// next use mints a new one.
    pub async fn drop_token(&self, token: &str) {
        if self.memory().is_some_and(|c| c.token == token) {
            self.remember(None);
        }
        // Under the cache's lock: a token another tick has just minted in
        // its place is never the one removed.
        if let Some(path) = &self.settings.cache_file {
            let _guard = lock_beside(path, MINT_LOCK_WAIT).await;
            if read_cache(path).is_some_and(|c| c.token == token) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// A token for one agent: `repo` (`owner/name`) only, with
    /// [`AGENT_PERMISSIONS`], expiring on its own; never cached.
    ///
    /// # Errors
    /// What GitHub said, naming the repository.
    pub async fn repo_token(&self, http: &Http, repo: &str) -> PortResult<MintedToken> {
        // A token is asked by the repository's name within the
        // installation's account: another owner's repository of the same
        // name must never be what it reaches.
        let owner = repo.split_once('/').map_or("", |(o, _)| o);
        if let Some(allowed) = self.settings.repos.first().and_then(|r| r.split_once('/'))
            && !allowed.0.eq_ignore_ascii_case(owner)
        {
            return Err(PortError::Permanent {
                message: format!(
                    "{repo} is not under {}, the account the GitHub App acts for here",
                    allowed.0
                ),
            });
        }
        let installation = match (self.settings.installation_id, self.memory()) {
            (Some(id), _) => id,
            (None, Some(c)) if c.app_id == self.settings.app_id => c.installation_id,
            _ => self.installation_of(http, repo).await?,
        };
        self.mint(http, installation, &[repo], &AGENT_PERMISSIONS)
            .await
    }
}

/// The agents' tokens for the local executor: each minted for its one
/// repository by [`AppAuth::repo_token`], with a client of its own.
#[derive(Debug)]
pub struct AgentTokens {
    app: std::sync::Arc<AppAuth>,
    http: Http,
}

impl AgentTokens {
    /// Tokens of `app`, minted through `http`.
    pub fn new(app: std::sync::Arc<AppAuth>, http: Http) -> AgentTokens {
        AgentTokens { app, http }
    }
}

#[async_trait::async_trait]
impl afk_local::os::RepoCredentials for AgentTokens {
    async fn token_for(&self, repo: &str) -> Result<String, String> {
        self.app
            .repo_token(&self.http, repo)
            .await
            .map(|m| m.token)
            .map_err(|e| format!("cannot mint a push token for {repo}: {e}"))
    }
}

/// The cache file's token, when it reads as one and only its owner may read
/// it. Anything else (missing, torn by another program, readable by others)
/// is no token: a new one is minted and the file replaced.
fn read_cache(path: &Path) -> Option<Cached> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.uid() != current_uid() {
        tracing::warn!(
            action = "token",
            "AFK_GITHUB_TOKEN_CACHE {} belongs to another user: its token is not used",
            path.display()
        );
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            action = "token",
            "AFK_GITHUB_TOKEN_CACHE {} may be read by others (mode {:o}): its token is not used; a new one replaces it (mode 0600)",
            path.display(),
            meta.permissions().mode() & 0o777
        );
        return None;
    }
    let bytes = afk_process::files::read_small(path, MAX_CACHE_BYTES).ok()?;
    match serde_json::from_slice::<Cached>(&bytes) {
        Ok(c) if !c.token.chars().any(char::is_control) => Some(c),
        _ => {
            tracing::warn!(
                action = "token",
                "AFK_GITHUB_TOKEN_CACHE {} does not read as afk's token cache; a new one replaces it",
                path.display()
            );
            None
        }
    }
}

/// Writes `bytes` to `path` whole or not at all, mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    afk_process::files::replace_whole(path, bytes, 0o600)
}

/// This process's user id (the owner of the files it trusts), read from
/// the directory of its own process.
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// Holds `<path>.lock` (created 0600) for the guard's life, waiting up to
/// `wait`; `None` when it cannot be had, or when what is there is not a
/// file of this user's (a link planted there is never followed).
async fn lock_beside(path: &Path, wait: Duration) -> Option<File> {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    if let Ok(meta) = std::fs::symlink_metadata(&lock)
        && (!meta.is_file() || meta.uid() != current_uid())
    {
        tracing::warn!(
            action = "token",
            "{} is not this user's lock file: minting without it",
            lock.display()
        );
        return None;
    }
    afk_process::locks::hold(&lock, wait).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(id: Option<&'a str>, key: Option<&'a str>) -> AppArgs<'a> {
        AppArgs {
            app_id: id,
            key_file: key,
            ..AppArgs::default()
        }
    }

    #[test]
    fn settings_name_the_key_that_is_wrong() {
        let parse = |a: &AppArgs<'_>, token: bool| {
            AppSettings::parse(a, token, "https://api.github.com", vec![])
        };
        assert_eq!(parse(&args(None, None), false), Ok(None));
        let cases: [(AppArgs<'_>, bool, &str); 6] = [
            (
                args(Some("12"), None),
                false,
                "AFK_GITHUB_APP_PRIVATE_KEY_FILE is not",
            ),
            (
                args(None, Some("/k.pem")),
                false,
                "AFK_GITHUB_APP_ID is not",
            ),
            (args(Some("12"), Some("/k.pem")), true, "AFK_GITHUB_TOKEN"),
            (
                args(Some("Iv1.abc"), Some("/k.pem")),
                false,
                "AFK_GITHUB_APP_ID=\"Iv1.abc\" is not a positive number",
            ),
            (
                args(Some("0"), Some("/k.pem")),
                false,
                "AFK_GITHUB_APP_ID=\"0\"",
            ),
            (
                AppArgs {
                    installation_id: Some("x"),
                    ..args(Some("1"), Some("/k.pem"))
                },
                false,
                "AFK_GITHUB_APP_INSTALLATION_ID=\"x\"",
            ),
        ];
        for (a, token, says) in cases {
            let err = parse(&a, token).unwrap_err();
            assert!(err.contains(says), "{a:?}: {err}");
        }
        let both = parse(&args(Some("12"), Some("/k.pem")), true).unwrap_err();
        assert!(both.contains("AFK_GITHUB_APP_ID"), "{both}");
        let stray = parse(
            &AppArgs {
                cache_file: Some("/c"),
                ..AppArgs::default()
            },
            false,
        )
        .unwrap_err();
        assert!(stray.contains("AFK_GITHUB_TOKEN_CACHE"), "{stray}");
        let ok = parse(&args(Some(" 12 "), Some("/k.pem")), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.app_id, ok.key_file.as_path()),
            (12, Path::new("/k.pem"))
        );
    }

    #[test]
    fn a_token_is_reused_until_five_minutes_before_it_expires() {
        assert!(reusable(10_000, 10_000 - 301));
        assert!(!reusable(10_000, 10_000 - 300));
        assert!(!reusable(10_000, 10_001));
    }

    #[test]
    fn a_key_that_is_not_rsa_pem_is_named_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8]); 4] = [
            ("garbage", b"-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LW1hdGVyaWFs\n-----END RSA PRIVATE KEY-----\n"),
            ("empty", b""),
            ("text", b"secret-material-not-a-key"),
            ("binary", &[0xff, 0x00, 0x13, 0x37]),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let Err(err) = read_key(&path) else {
                panic!("{name} read as a key")
            };
            assert!(
                err.contains("AFK_GITHUB_APP_PRIVATE_KEY_FILE") && err.contains(name),
                "{err}"
            );
            assert!(
                !err.contains("c2VjcmV0") && !err.contains("secret-material"),
                "{err}"
            );
        }
        for (path, says) in [
            (PathBuf::from("/dev/zero"), "not a regular file"),
            (dir.path().to_path_buf(), "directory"),
        ] {
            let err = read_key(&path).err().unwrap();
            assert!(err.contains(says), "{err}");
        }
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'A'; 70 * 1024]).unwrap();
        let err = read_key(&big).err().unwrap();
        assert!(err.contains("larger than 64 KiB"), "{err}");
        let missing = read_key(&dir.path().join("nope.pem")).err().unwrap();
        assert!(
            missing.contains("no such file") && missing.contains("nope.pem"),
            "{missing}"
        );
        let a_dir = read_key(dir.path()).err().unwrap();
        assert!(a_dir.contains("AFK_GITHUB_APP_PRIVATE_KEY_FILE"), "{a_dir}");
    }

    #[test]
    fn the_cache_is_written_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        write_private(&path, b"{}").unwrap();
        write_private(&path, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A torn or foreign file is no token.
        std::fs::write(&path, b"{\"token\": \"ghs_half").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_cache(&path).is_none());
    }
}
