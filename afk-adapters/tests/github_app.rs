//! afk as a GitHub App, against the simulator's App routes (which verify
//! the JWT and GitHub's time rules) and against an independent JWT
//! implementation (PyJWT): the token minted once and kept across ticks, a
//! 401 minting once more, two ticks at once, the narrow token an agent
//! gets, and each bad input named without its material.
//!
//! This file is long because each promise of the App identity is a case
//! against the simulator's App routes, with the keys and settings they share.
//!
//! Keys are made by `openssl` for each test binary run (GitHub's own format,
//! PKCS#1, and PKCS#8), never committed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use afk_adapters::github::app::{AppAuth, AppSettings, JWT_AHEAD, JWT_BACKDATE};
use afk_adapters::github::{GitHubSettings, GitHubTracker};
use afk_adapters::http::Secret;
use afk_core::ports::PortError;
use afk_loop::ports::Tracker;
use afk_sim::github::app::{App, Installation, default_permissions};
use afk_sim::{Sim, lock};

use crate::common::fast_http;

pub const APP_ID: u64 = 4242;
pub const SLUG: &str = "afk-sim";
pub const INSTALLATION: u64 = 77;

/// A key pair made by openssl: (private PEM path, public PEM bytes).
pub struct Keys {
    _dir: tempfile::TempDir,
    /// GitHub's format: `BEGIN RSA PRIVATE KEY`.
    pub pkcs1: PathBuf,
    /// `BEGIN PRIVATE KEY`.
    pub pkcs8: PathBuf,
    /// `BEGIN PUBLIC KEY`.
    pub public: Vec<u8>,
    /// Another App's key.
    pub other: PathBuf,
    /// An EC key (not RSA).
    pub ec: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (Debian's openssl package; .ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The keys, made once per test binary.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        openssl(&[
            "genrsa",
            "-traditional",
            "-out",
            &s(&p("pkcs1.pem")),
            "2048",
        ]);
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &s(&p("pkcs1.pem")),
            "-out",
            &s(&p("pkcs8.pem")),
        ]);
        openssl(&[
            "rsa",
            "-in",
            &s(&p("pkcs1.pem")),
            "-pubout",
            "-out",
            &s(&p("public.pem")),
        ]);
        openssl(&[
            "genrsa",
            "-traditional",
            "-out",
            &s(&p("other.pem")),
            "2048",
        ]);
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &s(&p("ec.pem")),
        ]);
        let first = std::fs::read_to_string(p("pkcs1.pem")).unwrap();
        assert!(
            first.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "openssl made PKCS#1"
        );
        Keys {
            public: std::fs::read(p("public.pem")).unwrap(),
            pkcs1: p("pkcs1.pem"),
            pkcs8: p("pkcs8.pem"),
            other: p("other.pem"),
            ec: p("ec.pem"),
            _dir: dir,
        }
    })
}

/// The simulator's App, installed on `acme` (every repository).
pub fn sim_app() -> App {
    let mut app = App::new(APP_ID, SLUG, &keys().public).unwrap();
    app.installations.push(Installation {
        id: INSTALLATION,
        account: "acme".into(),
        repos: None,
        permissions: default_permissions(),
        suspended: false,
    });
    app
}

pub fn app_settings(api_url: &str, key: &Path, cache: Option<&Path>) -> AppSettings {
    AppSettings {
        app_id: APP_ID,
        key_file: key.to_owned(),
        installation_id: None,
        cache_file: cache.map(Path::to_owned),
        api_url: api_url.to_owned(),
        repos: vec!["acme/infra".into()],
        lands_pull_requests: false,
    }
}

/// A tracker acting as the App (`Secret::None` as its token).
pub fn app_tracker(api_url: &str, app: Arc<AppAuth>) -> GitHubTracker {
    GitHubTracker::new(
        fast_http(),
        GitHubSettings {
            api_url: api_url.to_owned(),
            token: Secret::None,
            app: Some(app),
            default_owner: Some("acme".into()),
            trusted_bots: vec!["afk-helper[bot]".into(), "renovate".into()],
            own_login: None,
            web_url: None,
            ci_link_hosts: vec![],
            ready_label: "ready-for-agent".into(),
            in_progress_label: "agent-in-progress".into(),
        },
    )
}

async fn world() -> Sim {
    let sim = Sim::start().await;
    {
        let mut m = lock(&sim.github);
        m.add_repo("acme/infra", "master");
        m.add_repo("acme/other", "main");
        m.add_repo("elsewhere/repo", "main");
        m.set_role("acme/infra", "alice", "write");
        m.enable_app(sim_app());
    }
    sim
}

fn auth(sim: &Sim, cache: Option<&Path>) -> Arc<AppAuth> {
    Arc::new(AppAuth::new(app_settings(&sim.uri(), &keys().pkcs1, cache)).unwrap())
}

fn minted(sim: &Sim) -> usize {
    lock(&sim.github).app.as_ref().unwrap().tokens.len()
}

#[tokio::test]
async fn a_token_is_minted_once_and_kept_across_ticks() {
    let sim = world().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("github-token.json");
    // The first tick mints, scoped to the allowlist with the loop's
    // permissions, and keeps the token in the cache (0600).
    let first = app_tracker(&sim.uri(), auth(&sim, Some(&cache)));
    first
        .open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(minted(&sim), 1);
    {
        let m = lock(&sim.github);
        let grant = m
            .app
            .as_ref()
            .unwrap()
            .tokens
            .values()
            .next()
            .unwrap()
            .clone();
        assert_eq!(grant.repos, Some(vec!["acme/infra".to_owned()]));
        assert_eq!(
            grant.permissions.get("issues").map(String::as_str),
            Some("write")
        );
        assert_eq!(
            grant.permissions.get("contents").map(String::as_str),
            Some("read")
        );
    }
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The next tick is a new process: it reads the cache, mints nothing and
    // asks nothing of the App routes (a quiet tick).
    let jwts = lock(&sim.github).app.as_ref().unwrap().jwt_requests;
    let second = app_tracker(&sim.uri(), auth(&sim, Some(&cache)));
    second
        .open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(minted(&sim), 1);
    assert_eq!(lock(&sim.github).app.as_ref().unwrap().jwt_requests, jwts);
    // The token covers the allowlist only.
    let err = second
        .open_issues_with_label("acme/other", "ready-for-agent")
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_token_close_to_its_expiry_is_not_reused() {
    let sim = world().await;
    lock(&sim.github).app.as_mut().unwrap().token_ttl = 299;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("t.json");
    for n in 1..=2 {
        let t = app_tracker(&sim.uri(), auth(&sim, Some(&cache)));
        t.open_issues_with_label("acme/infra", "ready-for-agent")
            .await
            .unwrap();
        assert_eq!(minted(&sim), n);
    }
}

#[tokio::test]
async fn a_token_github_refuses_is_dropped_and_minted_once_more() {
    let sim = world().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("t.json");
    app_tracker(&sim.uri(), auth(&sim, Some(&cache)))
        .open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
    // GitHub stops taking it (revoked) while the cache still says it is good.
    lock(&sim.github).app.as_mut().unwrap().expire_tokens();
    let t = app_tracker(&sim.uri(), auth(&sim, Some(&cache)));
    t.open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(minted(&sim), 2);
    let kept = std::fs::read_to_string(&cache).unwrap();
    assert!(
        kept.contains("ghs_sim000000000000000000000000000002"),
        "the new token is kept"
    );
}

#[tokio::test]
async fn two_ticks_at_once_mint_once_and_leave_a_whole_cache() {
    let sim = world().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("t.json");
    let a = app_tracker(&sim.uri(), auth(&sim, Some(&cache)));
    let b = app_tracker(&sim.uri(), auth(&sim, Some(&cache)));
    let (ra, rb) = tokio::join!(
        a.open_issues_with_label("acme/infra", "ready-for-agent"),
        b.open_issues_with_label("acme/infra", "ready-for-agent")
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        minted(&sim),
        1,
        "the second tick waited and read the first one's token"
    );
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_ok(),
        "{text}"
    );
    // Nothing half-written left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n == "t.json" || n == "t.json.lock"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_torn_or_open_cache_is_replaced_never_trusted() {
    let sim = world().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("t.json");
    std::fs::write(&cache, b"{\"app_id\": 4242, \"token\": \"ghs_half").unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
    app_tracker(&sim.uri(), auth(&sim, Some(&cache)))
        .open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(minted(&sim), 1);
    // A cache others may read is not used, and is replaced 0600.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o644)).unwrap();
    app_tracker(&sim.uri(), auth(&sim, Some(&cache)))
        .open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(minted(&sim), 2);
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // An unwritable place for it costs a mint per tick, not the tick.
    let nowhere = Path::new("/proc/afk-no-such-dir/t.json");
    app_tracker(&sim.uri(), auth(&sim, Some(nowhere)))
        .open_issues_with_label("acme/infra", "ready-for-agent")
        .await
        .unwrap();
}

#[tokio::test]
async fn afk_knows_its_own_login_as_the_apps_bot() {
    let sim = world().await;
    let app = auth(&sim, None);
    assert_eq!(app.login(&fast_http()).await.unwrap(), "afk-sim[bot]");
    // Its progress comment is written by the bot, and found as its own.
    let t = app_tracker(&sim.uri(), app);
    lock(&sim.github).add_issue("acme/infra", 7, "Fix", "body", &["agent-in-progress"]);
    let body = "### AFK run progress\n\n<!-- afk-run v1 {} -->\n";
    let created = t.create_comment("acme/infra", 7, body).await.unwrap();
    let found = t.progress_comment("acme/infra", 7).await.unwrap().unwrap();
    assert_eq!(found.id, created.id);
    let m = lock(&sim.github);
    let issue = &m.repos["acme/infra"].issues[&7];
    assert_eq!(issue.comments.last().unwrap().user, "afk-sim[bot]");
}

#[tokio::test]
async fn an_agent_gets_a_token_for_its_one_repository_that_can_only_push() {
    let sim = world().await;
    let app = auth(&sim, None);
    let http = fast_http();
    let minted = app.repo_token(&http, "acme/infra").await.unwrap();
    assert!(!format!("{minted:?}").contains(&minted.token));
    let grant = lock(&sim.github).app.as_ref().unwrap().tokens[&minted.token].clone();
    assert_eq!(grant.repos, Some(vec!["acme/infra".to_owned()]));
    assert_eq!(
        grant
            .permissions
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>(),
        ["contents:write"]
    );
    // It cannot label, comment or close (a 403 from GitHub), nor reach
    // another repository.
    let as_agent = crate::common::github(&sim.uri(), &minted.token, Some("acme"), Some("x"));
    let err = as_agent.add_label("acme/infra", 7, "x").await.unwrap_err();
    assert!(matches!(err, PortError::Auth { .. }), "{err:?}");
    let err = as_agent
        .open_issues_with_label("acme/other", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
}

/// The error's text, which must name `names` and show no key material.
fn says(err: &PortError, names: &[&str]) {
    let text = format!("{err} {err:?}");
    for n in names {
        assert!(text.contains(n), "{text} does not name {n}");
    }
    assert!(!text.contains("MII") && !text.contains("BEGIN"), "{text}");
}

#[tokio::test]
async fn each_bad_identity_is_named() {
    let sim = world().await;
    let http = fast_http();
    // Another App's key: GitHub cannot verify the JWT.
    let wrong = AppAuth::new(app_settings(&sim.uri(), &keys().other, None)).unwrap();
    says(
        &wrong.token(&http).await.unwrap_err(),
        &["AFK_GITHUB_APP_PRIVATE_KEY_FILE", "4242"],
    );
    // An App ID that is another App's.
    let mut s = app_settings(&sim.uri(), &keys().pkcs1, None);
    s.app_id = 9;
    let other_app = AppAuth::new(s).unwrap();
    says(
        &other_app.token(&http).await.unwrap_err(),
        &["AFK_GITHUB_APP_ID"],
    );
    // An allowlisted repository the App is not installed on.
    let mut s = app_settings(&sim.uri(), &keys().pkcs1, None);
    s.repos = vec!["acme/infra".into(), "elsewhere/repo".into()];
    let err = AppAuth::new(s).unwrap().token(&http).await.unwrap_err();
    says(&err, &["elsewhere/repo", "AFK_ALLOWLIST"]);
    // An installation that covers some repositories, not this one.
    lock(&sim.github).app.as_mut().unwrap().installations[0].repos =
        Some(vec!["acme/other".into()]);
    let mut s = app_settings(&sim.uri(), &keys().pkcs1, None);
    s.installation_id = Some(INSTALLATION);
    let err = AppAuth::new(s).unwrap().token(&http).await.unwrap_err();
    says(&err, &["acme/infra", "does not cover"]);
    // A wrong installation id.
    let mut s = app_settings(&sim.uri(), &keys().pkcs1, None);
    s.installation_id = Some(5);
    let err = AppAuth::new(s).unwrap().token(&http).await.unwrap_err();
    says(&err, &["AFK_GITHUB_APP_INSTALLATION_ID", "5"]);
    // Permissions the installation does not grant.
    {
        let mut m = lock(&sim.github);
        let inst = &mut m.app.as_mut().unwrap().installations[0];
        inst.repos = None;
        inst.permissions.remove("issues");
    }
    let err = auth(&sim, None).token(&http).await.unwrap_err();
    says(&err, &["issues: write", "permissions"]);
    // A suspended installation.
    {
        let mut m = lock(&sim.github);
        let inst = &mut m.app.as_mut().unwrap().installations[0];
        inst.permissions = default_permissions();
        inst.suspended = true;
    }
    let err = auth(&sim, None).token(&http).await.unwrap_err();
    says(&err, &["suspended"]);
}

#[tokio::test]
async fn a_key_that_cannot_be_used_stops_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9";
    for (path, name) in [
        (keys().ec.clone(), "ec.pem"),
        (dir.path().join("missing.pem"), "missing.pem"),
        (keys().public_path(), "public.pem"),
    ] {
        let err = AppAuth::new(app_settings(url, &path, None)).unwrap_err();
        assert!(
            err.contains("AFK_GITHUB_APP_PRIVATE_KEY_FILE") && err.contains(name),
            "{err}"
        );
        assert!(!err.contains("MII"), "{err}");
    }
    // PKCS#8 is a key too.
    AppAuth::new(app_settings(url, &keys().pkcs8, None)).unwrap();
    // A directory as the cache.
    let err = AppAuth::new(app_settings(url, &keys().pkcs1, Some(dir.path()))).unwrap_err();
    assert!(err.contains("AFK_GITHUB_TOKEN_CACHE"), "{err}");
}

impl Keys {
    fn public_path(&self) -> PathBuf {
        let path = self.pkcs1.with_file_name("public.pem");
        assert!(path.is_file());
        path
    }
}

#[tokio::test]
async fn a_clock_far_off_is_corrected_by_githubs_or_named() {
    let sim = world().await;
    let http = fast_http();
    // GitHub's clock ten minutes ahead: every JWT is expired to it. Its
    // Date header says so, and afk signs again with GitHub's clock.
    lock(&sim.github).app.as_mut().unwrap().clock_offset = 600;
    let app = auth(&sim, None);
    app.token(&http).await.unwrap();
    // Ten minutes behind: the JWT's exp is too far in the future to it.
    lock(&sim.github).app.as_mut().unwrap().clock_offset = -600;
    auth(&sim, None).token(&http).await.unwrap();
    // An hour off is past what afk corrects (a proxy's Date must not move
    // its clock at will): the error names the clock and by how much.
    lock(&sim.github).app.as_mut().unwrap().clock_offset = 3600;
    let err = auth(&sim, None).token(&http).await.unwrap_err();
    says(&err, &["clock", "NTP", "by 3600 s"]);
    // Without GitHub's clock to go by, the error names the clock.
    {
        let mut m = lock(&sim.github);
        m.app.as_mut().unwrap().send_date = false;
    }
    let err = auth(&sim, None).token(&http).await.unwrap_err();
    says(&err, &["clock", "NTP", "'exp'"]);
}

/// `python3 -c` with PyJWT, or `None` outside CI when it is not installed.
#[allow(clippy::print_stderr)]
fn pyjwt() -> Option<()> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "PyJWT is not installed under CI: pip install 'PyJWT[crypto]' (.ci/run pins it)"
    );
    eprintln!("skipped: PyJWT is not installed (pip install 'PyJWT[crypto]')");
    None
}

#[test]
fn an_independent_implementation_verifies_the_jwt() {
    if pyjwt().is_none() {
        return;
    }
    let now = 1_800_000_000;
    for key in [&keys().pkcs1, &keys().pkcs8] {
        let app = AppAuth::new(app_settings("http://127.0.0.1:9", key, None)).unwrap();
        let jwt = app.jwt_at(now).unwrap();
        // PyJWT checks the RS256 signature with the public key only, and
        // the claims afk promises: GitHub's App ID as `iss`, issued 60 s in
        // the past, ten minutes in all (verified as of `now`, not today).
        let script = r#"
import json, sys, jwt
token, public, now = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3])
header = jwt.get_unverified_header(token)
claims = jwt.decode(token, public, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"], "verify_exp": False, "verify_iat": False})
print(json.dumps({"alg": header["alg"], "typ": header.get("typ"), **claims}))
"#;
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                script,
                &jwt,
                keys().public_path().to_str().unwrap(),
                &now.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["alg"], "RS256");
        assert_eq!(claims["iss"], APP_ID.to_string());
        assert_eq!(claims["iat"], now - JWT_BACKDATE);
        assert_eq!(claims["exp"], now + JWT_AHEAD);
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);
        // And refuses it under another key.
        let other_public = {
            let out = std::process::Command::new("openssl")
                .args(["rsa", "-in", keys().other.to_str().unwrap(), "-pubout"])
                .output()
                .unwrap();
            out.stdout
        };
        let other = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(other.path(), other_public).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                script,
                &jwt,
                other.path().to_str().unwrap(),
                &now.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "PyJWT took a JWT signed by another key"
        );
    }
}

#[tokio::test]
async fn past_500_repositories_the_token_is_refused_never_widened() {
    let sim = world().await;
    let mut s = app_settings(&sim.uri(), &keys().pkcs1, None);
    s.repos = (0..501).map(|n| format!("acme/r{n}")).collect();
    s.installation_id = Some(INSTALLATION);
    let err = AppAuth::new(s)
        .unwrap()
        .token(&fast_http())
        .await
        .unwrap_err();
    says(&err, &["501", "500", "shard"]);
    assert!(lock(&sim.github).app.as_ref().unwrap().tokens.is_empty());
}

#[tokio::test]
async fn an_agent_token_is_never_for_another_owner_s_repository() {
    let sim = world().await;
    let err = auth(&sim, None)
        .repo_token(&fast_http(), "elsewhere/infra")
        .await
        .unwrap_err();
    says(&err, &["elsewhere/infra", "acme"]);
    // Two owners in one App's allowlist is a configuration error.
    let err = AppSettings::parse(
        &afk_adapters::github::app::AppArgs {
            app_id: Some("1"),
            key_file: Some("/k.pem"),
            ..Default::default()
        },
        false,
        "https://api.github.com",
        vec!["acme/a".into(), "other/b".into()],
    )
    .unwrap_err();
    assert!(
        err.contains("2 owners") && err.contains("acme, other"),
        "{err}"
    );
}

#[test]
fn one_process_shares_one_app_per_settings() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9";
    let a = AppAuth::shared(app_settings(url, &keys().pkcs1, None)).unwrap();
    let b = AppAuth::shared(app_settings(url, &keys().pkcs1, None)).unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "afk loop's rounds share the token in memory"
    );
    let c = AppAuth::shared(app_settings(
        url,
        &keys().pkcs1,
        Some(&dir.path().join("t")),
    ))
    .unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    // A key gone bad is named on the next call, shared or not.
    let gone = dir.path().join("gone.pem");
    std::fs::copy(&keys().pkcs1, &gone).unwrap();
    AppAuth::shared(app_settings(url, &gone, None)).unwrap();
    std::fs::write(&gone, "not a key").unwrap();
    let err = AppAuth::shared(app_settings(url, &gone, None)).unwrap_err();
    assert!(err.contains("AFK_GITHUB_APP_PRIVATE_KEY_FILE"), "{err}");
}
