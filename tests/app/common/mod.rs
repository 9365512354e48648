//! Test helpers: an application on port 0 with the demo plant, and a WebSocket
//! client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use hydrowatch::config::{self, Loaded};
use hydrowatch::App;

/// The break-glass token of the test apps: an administrator without a
/// user. [`http`] and [`WsClient::connect`] send it, so that tests about
/// something else need not sign in; tests about who may do what sign in as
/// real users ([`sign_in`]) and use [`anonymous`] clients.
pub const BREAK_GLASS: &str = "test-break-glass-token-0123456789abcdef";

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
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
/// recorded seconds per second and are polled every 50 ms (twice per recorded second): a load cycle
/// takes 6 s, so tests see cycles scored without waiting minutes.
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

/// `PUT url` with the admin token and a JSON body.
pub async fn admin_put(url: String, body: Value) -> reqwest::Response {
    http()
        .put(url)
        .bearer_auth(BREAK_GLASS)
        .json(&body)
        .send()
        .await
        .expect("admin request")
}

/// Starts the demo application on a free port.
pub async fn spawn_app() -> App {
    spawn_with(demo_config(&[])).await
}

/// Starts an application from `loaded`.
pub async fn spawn_with(loaded: Loaded) -> App {
    hydrowatch::telemetry::init_logging(config::LogFormat::Text, "warn");
    App::start(loaded).await.expect("app starts")
}

/// An HTTP client that sends the break-glass token unless a request sets
/// its own `Authorization`.
pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {BREAK_GLASS}")
            .parse()
            .expect("header value"),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .expect("client")
}

/// An HTTP client with no credentials.
pub fn anonymous() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Sends `request`: the status and the JSON body (`null` when there is
/// none).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A password that meets the policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// A user of `role` (`ADMIN`, `ENGINEER`, `VIEWER`) with [`PASSWORD`],
/// named after the e-mail.
pub fn new_user(email: &str, role: &str) -> hydrowatch::auth::NewUser {
    hydrowatch::auth::NewUser {
        email: email.into(),
        name: email.split('@').next().unwrap_or(email).into(),
        role: hydrowatch::auth::roles::Role::parse(role).expect("a role"),
        password: PASSWORD.into(),
        must_change_password: false,
    }
}

/// Creates a user of `role` (`ADMIN`, `ENGINEER`, `VIEWER`) in `app` with
/// [`PASSWORD`] and signs them in: their access token.
pub async fn sign_in(app: &App, email: &str, role: &str) -> String {
    let user = new_user(email, role);
    app.state
        .auth
        .users
        .add(&user, None)
        .await
        .expect("user created");
    log_in(app, email).await
}

/// The id of the user with `email`.
pub async fn user_id(app: &App, email: &str) -> i64 {
    app.state
        .store
        .user_by_email(email)
        .await
        .expect("store")
        .expect("user")
        .id
}

/// Signs an existing user in with [`PASSWORD`]: a new session's access token.
pub async fn log_in(app: &App, email: &str) -> String {
    let issued = app
        .state
        .auth
        .logins
        .login(email, PASSWORD, None, None)
        .await
        .expect("login");
    issued.access_token
}

/// A WebSocket client speaking the live protocol.
pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `/api/v1/ws` of `app` with the break-glass token in the
    /// upgrade request.
    pub async fn connect(app: &App) -> WsClient {
        WsClient::connect_as(app, BREAK_GLASS).await
    }

    /// Connects with `token` in an `Authorization` header.
    pub async fn connect_as(app: &App, token: &str) -> WsClient {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/api/v1/ws", app.addr)
            .into_client_request()
            .expect("ws request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connects");
        WsClient { stream }
    }

    /// Connects with no credentials (as a browser does; it must send an
    /// `auth` frame first).
    pub async fn connect_anonymous(app: &App) -> WsClient {
        let url = format!("ws://{}/api/v1/ws", app.addr);
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        WsClient { stream }
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON frame, or `None` on close or after `within`.
    pub async fn next_json(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next frame of `kind` (others are skipped), within `within`.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
            let frame = self.next_json(left).await?;
            if frame["type"] == kind {
                return Some(frame);
            }
        }
    }
}

/// The value of `sensor` in a snapshot or delta frame for its equipment.
pub fn sensor_state<'a>(frame: &'a Value, sensor: &str) -> Option<&'a Value> {
    match frame["type"].as_str()? {
        "snapshot" => frame["snapshot"]["sensors"]
            .as_array()?
            .iter()
            .find(|s| s["id"] == sensor)
            .map(|s| &s["state"]),
        "delta" => frame["sensors"].get(sensor),
        _ => None,
    }
}

/// `POST url` with the admin token.
pub async fn admin_post(url: String) -> reqwest::Response {
    http()
        .post(url)
        .bearer_auth(BREAK_GLASS)
        .send()
        .await
        .expect("admin request")
}

/// `GET url` with the admin token, as JSON.
pub async fn admin_get(url: String) -> Value {
    http()
        .get(url)
        .bearer_auth(BREAK_GLASS)
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("JSON")
}

/// The close frame the server sends next (other frames skipped), within `within`.
pub async fn next_close(
    ws: &mut WsClient,
    within: Duration,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio::time::timeout(within, async {
        while let Some(Ok(message)) = ws.stream.next().await {
            if let Message::Close(frame) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed in time")
    .expect("with a close frame, not a dropped connection")
}

/// `GET url` as text.
pub async fn get_text(url: String) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// `GET url` as JSON.
pub async fn get_json(url: String) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body")
}

/// Waits until `done` holds, polling; panics with `what` after `within`.
pub async fn eventually(within: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The local PostgreSQL server's maintenance database.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh PostgreSQL database, dropped by [`TestDatabase::drop_now`].
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create(prefix: &str) -> TestDatabase {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hw_{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_pool().await;
        // A name we generated ourselves (letters, digits, '_'): safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("CREATE DATABASE");
        admin.close().await;
        TestDatabase {
            name,
            dropped: false,
        }
    }

    /// Its URL on the server itself.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// Its URL through `proxy`.
    pub fn url_via(&self, proxy: &Proxy) -> String {
        format!("postgres://postgres@{}/{}", proxy.addr, self.name)
    }

    /// Drops it, closing whatever is still connected.
    pub async fn drop_now(mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

/// A test that fails (or forgets [`TestDatabase::drop_now`]) still drops its
/// database: from a thread of its own, since this may run inside the test's
/// runtime, which cannot be blocked on.
impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = std::mem::take(&mut self.name);
        let dropping =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(drop_database(&name)),
                    Err(err) => eprintln!("test database {name} left behind: {err}"),
                }
            });
        let _ = dropping.join();
    }
}

async fn drop_database(name: &str) {
    let admin = admin_pool().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    admin.close().await;
}

async fn admin_pool() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(POSTGRES_ADMIN_URL)
        .await
        .expect("local PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)")
}

/// A TCP proxy the test controls: [`Proxy::cut`] closes every connection through
/// it and refuses new ones (the database "goes away"); [`Proxy::restore`] lets
/// connections through again.
pub struct Proxy {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listens");
        let addr = listener.local_addr().unwrap();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let flag = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let mut cuts = cuts.clone();
                let generation = *cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.wait_for(|g| *g != generation) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            cut,
            task,
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// One message the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// Headers and body as sent.
    pub data: String,
}

/// A minimal SMTP server: accepts every message and keeps it.
pub async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let (mut from, mut to) = (String::new(), Vec::new());
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        from = line[10..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(line[8..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        store.lock().unwrap().push(Mail {
                            from: std::mem::take(&mut from),
                            to: std::mem::take(&mut to),
                            data,
                        });
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, mails)
}
