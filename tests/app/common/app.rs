//! Configurations for test applications, and [`TestApp`]: one running on
//! port 0 that hands out signed-in [`Client`]s.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;

use hydrowatch::auth::roles::Role;
use hydrowatch::config::{self, Loaded};
use hydrowatch::store::{PlantIds, Store};
use hydrowatch::App;

use super::{Client, Reply, WsClient};

/// The break-glass token of the test apps: an administrator without a
/// user (see [`TestApp::break_glass`]).
const BREAK_GLASS: &str = "test-break-glass-token-0123456789abcdef";

/// A password that meets the policy; every user the harness creates has it.
pub const PASSWORD: &str = "correct horse battery staple";

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hydrowatch-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The embedded demo configuration on port 0 with the admin API on, its own
/// SQLite file and spool in a fresh temp dir, plus `env` overrides
/// (`HYDROWATCH_*` pairs; later ones win).
pub fn demo_config(env: &[(&str, &str)]) -> Loaded {
    config::load(None, &test_env(env)).expect("demo config loads")
}

/// The overrides every test app gets (port 0, the admin API on, its own
/// SQLite file and spool in a fresh temp dir), then `env`.
fn test_env(env: &[(&str, &str)]) -> Vec<(String, String)> {
    let dir = temp_dir("app");
    let mut pairs: Vec<(String, String)> = vec![
        ("HYDROWATCH_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "HYDROWATCH_AUTH__BREAK_GLASS_TOKEN".into(),
            BREAK_GLASS.into(),
        ),
        ("HYDROWATCH_SERVER__SHUTDOWN_GRACE_MS".into(), "2000".into()),
        (
            "HYDROWATCH_STORAGE__URL".into(),
            format!("sqlite://{}", dir.join("hydrowatch.db").display()),
        ),
        (
            "HYDROWATCH_STORAGE__SPOOL_DIR".into(),
            dir.join("spool").display().to_string(),
        ),
        // argon2id at production cost takes most of a second in debug builds.
        ("HYDROWATCH_AUTH__HASH__MEMORY_KIB".into(), "64".into()),
        ("HYDROWATCH_AUTH__HASH__ITERATIONS".into(), "1".into()),
    ];
    pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    pairs
}

/// Like [`demo_config`], but the demo plant's simulators replay ten
/// recorded seconds per second and are polled every 50 ms (twice per
/// recorded second): a load cycle takes 6 s, so tests see cycles scored
/// without waiting minutes.
pub fn fast_plant_config(env: &[(&str, &str)]) -> Loaded {
    fast_plant_config_with(&[], env)
}

/// [`fast_plant_config`] with text replacements applied to the demo
/// `plant.toml` first (each must match).
pub fn fast_plant_config_with(edits: &[(&str, &str)], env: &[(&str, &str)]) -> Loaded {
    fast_plant_config_full(edits, "", env)
}

/// [`fast_plant_config_with`], with `settings` (TOML) appended to
/// `hydrowatch.toml`.
pub fn fast_plant_config_full(
    edits: &[(&str, &str)],
    settings: &str,
    env: &[(&str, &str)],
) -> Loaded {
    let dir = temp_dir("fast-plant");
    let mut plant = config::EMBEDDED_PLANT.to_owned();
    for (from, to) in edits {
        assert!(plant.contains(from), "plant.toml has no {from:?}");
        plant = plant.replace(from, to);
    }
    let plant = plant
        .replace("period_ms = 500", "period_ms = 50")
        .replace("stale_after_ms = 3000", "stale_after_ms = 1000")
        .replace("phase_secs = ", "speed = 10.0\nphase_secs = ");
    assert!(
        plant.contains("speed = 10.0"),
        "the demo plant has simulators"
    );
    std::fs::write(dir.join("plant.toml"), plant).expect("plant.toml");
    std::fs::write(dir.join("supervision.toml"), config::EMBEDDED_SUPERVISION)
        .expect("supervision.toml");
    let base = config::EMBEDDED_SETTINGS.replace(
        "supervision = \"../supervision.toml\"",
        "supervision = \"supervision.toml\"",
    );
    assert_ne!(
        base,
        config::EMBEDDED_SETTINGS,
        "the supervision file moved"
    );
    let path = dir.join("hydrowatch.toml");
    std::fs::write(&path, format!("{base}\n{settings}\n")).expect("hydrowatch.toml");
    config::load(Some(&path), &test_env(env)).expect("fast plant config loads")
}

/// Plant edits for [`fast_plant_config_with`]: TS1's oil limit moved to
/// 1 °C and raised after 0.5 s, so the sensor actors' limit detector fires
/// on the recorded oil, which is always warmer.
pub const TS1_LIMIT_AT_1C: [(&str, &str); 3] = [
    ("set = 65.0", "set = 1.0"),
    ("clear = 62.0", "clear = 0.5"),
    ("min_set_ms = 10000", "min_set_ms = 500"),
];

/// Plant edits for [`fast_plant_config_with`]: the demo's `oil-hot` alert
/// rule moved to 1 °C (the recorded oil is always warmer) and pending for
/// half a second only.
pub const OIL_ALERT_AT_1C: [(&str, &str); 2] = [
    (
        "when = { threshold = { sensor = \"TS1\", max = 65.0, hysteresis = 3.0 } }",
        "when = { threshold = { sensor = \"TS1\", max = 1.0, hysteresis = 0.5 } }",
    ),
    (
        "for_ms = 10000\nkeep_firing_ms = 30000",
        "for_ms = 500\nkeep_firing_ms = 30000",
    ),
];

/// The store of the demo configuration at `url` (plus `env`), opened and
/// migrated as the application opens it, without the rest of the app.
pub async fn open_storage(url: &str, env: &[(&str, &str)]) -> (Store, PlantIds) {
    let mut env = env.to_vec();
    env.push(("HYDROWATCH_STORAGE__URL", url));
    hydrowatch::app::open_storage(&demo_config(&env))
        .await
        .expect("storage opens")
}

/// A running application. It derefs to [`App`] (`app.state`, `app.addr`);
/// dropped, it shuts down gracefully as the process would, on a
/// multi-threaded runtime and when the test has not panicked (elsewhere it
/// is dropped as is).
pub struct TestApp {
    app: Option<App>,
}

impl TestApp {
    /// The demo plant.
    pub async fn spawn() -> TestApp {
        TestApp::start(demo_config(&[])).await
    }

    pub async fn start(loaded: Loaded) -> TestApp {
        hydrowatch::telemetry::init_logging(config::LogFormat::Text, "warn");
        TestApp {
            app: Some(App::start(loaded).await.expect("app starts")),
        }
    }

    /// Shuts down gracefully, then hands back the stopped application.
    pub async fn stop(mut self) -> App {
        let mut app = self.app.take().expect("running");
        app.shutdown().await;
        app
    }

    /// The application itself, left running, for a test that runs it to
    /// its end.
    pub fn into_inner(mut self) -> App {
        self.app.take().expect("running")
    }

    /// `http://` and the listening address, then `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client that sends `token` as its bearer, or nothing.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(self.url(""), token.map(str::to_owned))
    }

    pub fn anonymous(&self) -> Client {
        self.client(None)
    }

    /// The configured break-glass token: for tests about that token, and
    /// for those that take the database away (it is checked without it,
    /// a session is not). Other tests sign in as the role they exercise.
    pub fn break_glass(&self) -> Client {
        self.client(Some(BREAK_GLASS))
    }

    /// A new user of `role` (`ADMIN`, `ENGINEER`, `VIEWER`, any case) named
    /// `email`, signed in.
    pub async fn user(&self, email: &str, role: &str) -> Client {
        self.state
            .auth
            .users
            .add(&new_user(email, role), None)
            .await
            .expect("user created");
        self.log_in(email).await
    }

    /// A new session of the existing user `email` (with [`PASSWORD`]).
    pub async fn log_in(&self, email: &str) -> Client {
        let issued = self
            .state
            .auth
            .logins
            .login(email, PASSWORD, None, None)
            .await
            .expect("login");
        self.client(Some(&issued.access_token))
    }

    /// `POST /api/v1/auth/login` as a browser signs in (no token).
    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.anonymous()
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await
    }

    /// A new user of `role` with an e-mail unique in the process (apps of
    /// one test may share a database), signed in.
    async fn someone(&self, role: Role) -> Client {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let email = format!("{}-{n}@plant.example", role.as_str().to_lowercase());
        self.user(&email, role.as_str()).await
    }

    pub async fn admin(&self) -> Client {
        self.someone(Role::Admin).await
    }

    pub async fn engineer(&self) -> Client {
        self.someone(Role::Engineer).await
    }

    pub async fn viewer(&self) -> Client {
        self.someone(Role::Viewer).await
    }

    /// An API key with `scopes` (permission names such as `read` or
    /// `ingest`) and a rate limit no test reaches, made through the API by a
    /// new admin it then acts as.
    pub async fn api_key(&self, scopes: &[&str]) -> Client {
        let admin = self.admin().await;
        let made = admin
            .post(
                "/api/v1/admin/api-keys",
                json!({"name": "test-key", "scopes": scopes,
                       "rate": {"burst": 10000, "per_min": 10000}}),
            )
            .await;
        assert_eq!(made.status, 201, "API key made: {}", made.body);
        self.client(Some(made.body["key"].as_str().expect("the key")))
    }

    /// The live WebSocket, with `client`'s token in the upgrade request
    /// (or none: then the first frame must be `auth`).
    pub async fn ws(&self, client: &Client) -> WsClient {
        WsClient::connect(&format!("ws://{}/api/v1/ws", self.addr), client.token()).await
    }

    pub async fn user_id(&self, email: &str) -> i64 {
        self.state
            .store
            .user_by_email(email)
            .await
            .expect("store")
            .expect("user")
            .id
    }
}

impl Deref for TestApp {
    type Target = App;
    fn deref(&self) -> &App {
        self.app.as_ref().expect("running")
    }
}

impl DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut App {
        self.app.as_mut().expect("running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let Some(mut app) = self.app.take() else {
            return;
        };
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        if std::thread::panicking() || runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
            return;
        }
        tokio::task::block_in_place(|| runtime.block_on(app.shutdown()));
    }
}

/// A user of `role` (`ADMIN`, `ENGINEER`, `VIEWER`) with [`PASSWORD`],
/// named after the e-mail.
pub fn new_user(email: &str, role: &str) -> hydrowatch::auth::NewUser {
    hydrowatch::auth::NewUser {
        email: email.into(),
        name: email.split('@').next().unwrap_or(email).into(),
        role: Role::parse(role).expect("a role"),
        password: PASSWORD.into(),
        must_change_password: false,
    }
}
