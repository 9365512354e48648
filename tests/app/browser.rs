//! End-to-end test of the wallboard in a real browser.
//!
//! Starts the whole application in-process (demo plant, three simulated rigs
//! on loopback), launches the Debian headless Chromium at `/usr/bin/chromium`
//! and drives it over the Chrome DevTools Protocol with a minimal client
//! written here (tokio-tungstenite + serde_json, no browser-automation crate).
//!
//! What it proves: the page at `/` asks to sign in and a viewer signs in
//! through its form; it builds exactly one tile per rig,
//! opens its WebSocket (the `#ws-status` pill reads `connected`), shows a
//! real value for PS1 and TS1 of rig-1, rig-2 and rig-3, and those values
//! keep changing live in the DOM for every rig, i.e. snapshot/delta frames
//! go all the way from the Modbus simulators through the actor tree and the
//! WebSocket into what a person sees. It also checks that the data set's
//! attribution footer (CC BY 4.0) is shown, and that the open alerts are
//! listed: a critical, unacknowledged oil alert per rig, outlined so that it
//! stands out, and the model alert of the rig with the failing cooler.
//!
//! Chromium is required: when `/usr/bin/chromium` is missing the test fails
//! (it never skips); install it with `apt-get install -y chromium`, as the
//! CI script does.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use common::{fast_plant_config_with, TestApp, OIL_ALERT_AT_1C, TS1_LIMIT_AT_1C};

const CHROMIUM: &str = "/usr/bin/chromium";
const RIGS: [&str; 3] = ["rig-1", "rig-2", "rig-3"];
/// Sensors that must show a value on every rig before the baseline is taken.
const REQUIRED_SENSORS: [&str; 2] = ["PS1", "TS1"];
/// What the page shows for a sensor without a value (an em dash).
const NO_VALUE: &str = "\u{2014}";
/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for each polling phase (connected + values, then changed values).
const PHASE_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Reads what the test needs from the DOM, as one JSON-able object.
const READ_PAGE_JS: &str = r#"(() => {
  const text = (el) => (el ? el.textContent : null);
  const values = {};
  for (const el of document.querySelectorAll('span.value[data-equipment][data-sensor]')) {
    const eq = el.dataset.equipment;
    if (!values[eq]) values[eq] = {};
    values[eq][el.dataset.sensor] = el.textContent;
  }
  const components = {};
  for (const chip of document.querySelectorAll('#board section.tile .comp[data-component]')) {
    const eq = chip.closest('section.tile').dataset.equipment;
    if (!components[eq]) components[eq] = {};
    components[eq][chip.dataset.component] = chip.dataset.state;
  }
  const findings = {};
  for (const cell of document.querySelectorAll('#board section.tile .sensor[data-finding]')) {
    const eq = cell.closest('section.tile').dataset.equipment;
    if (!findings[eq]) findings[eq] = {};
    findings[eq][cell.dataset.sensor] = cell.dataset.finding;
  }
  const alerts = Array.from(document.querySelectorAll('#alert-list li.alert'), (li) => ({
    equipment: li.dataset.equipment,
    kind: li.dataset.kind,
    severity: li.dataset.severity,
    state: li.dataset.state,
    critical_unack: li.dataset.criticalUnack === 'true',
    outline: getComputedStyle(li).outlineStyle,
  }));
  const toast = document.getElementById('toast');
  return {
    alerts,
    components,
    findings,
    url: location.href,
    status: text(document.getElementById('ws-status')),
    tiles: document.querySelectorAll('#board section.tile').length,
    tile_ids: Array.from(document.querySelectorAll('#board section.tile'), (t) => t.dataset.equipment),
    footer: text(document.querySelector('footer.attribution')),
    toast: toast && !toast.hidden ? toast.textContent : null,
    values,
  };
})()"#;

/// What `READ_PAGE_JS` returns.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
struct PageView {
    url: String,
    status: Option<String>,
    tiles: usize,
    tile_ids: Vec<String>,
    footer: Option<String>,
    toast: Option<String>,
    /// equipment id -> sensor id -> displayed text.
    values: BTreeMap<String, BTreeMap<String, String>>,
    /// equipment id -> component -> chip state (ok, degraded, unknown).
    #[serde(default)]
    components: BTreeMap<String, BTreeMap<String, String>>,
    /// equipment id -> sensor id -> the detectors' finding shown (limit,
    /// stuck, unusual).
    #[serde(default)]
    findings: BTreeMap<String, BTreeMap<String, String>>,
    /// The open alerts listed, gravest first.
    #[serde(default)]
    alerts: Vec<AlertView>,
}

/// One row of the open alerts.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
struct AlertView {
    equipment: String,
    kind: String,
    severity: String,
    state: String,
    critical_unack: bool,
    outline: String,
}

impl PageView {
    fn value(&self, rig: &str, sensor: &str) -> Option<&str> {
        self.values.get(rig)?.get(sensor).map(String::as_str)
    }

    /// Connected, and PS1/TS1 show a real value on every rig.
    fn ready(&self) -> bool {
        self.status.as_deref() == Some("connected")
            && RIGS.iter().all(|rig| {
                REQUIRED_SENSORS.iter().all(|s| {
                    self.value(rig, s)
                        .is_some_and(|v| !v.trim().is_empty() && v.trim() != NO_VALUE)
                })
            })
    }

    /// Rigs for which at least one sensor text differs from `baseline`.
    fn changed_rigs(&self, baseline: &PageView) -> Vec<&'static str> {
        RIGS.iter()
            .copied()
            .filter(|rig| {
                let (Some(now), Some(then)) = (self.values.get(*rig), baseline.values.get(*rig))
                else {
                    return false;
                };
                now.iter()
                    .any(|(sensor, text)| then.get(sensor).is_some_and(|old| old != text))
            })
            .collect()
    }

    fn describe(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{self:?} ({e})"))
    }
}

// ------------------------------------------------------------------ browser

/// A headless Chromium with a throw-away profile; killed (and its profile
/// removed) when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
    /// The last lines Chromium wrote to stderr, for failure messages.
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    devtools_url: String,
}

impl Browser {
    async fn launch() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} not found: this test drives a real headless Chromium. \
             Install it with `apt-get update && apt-get install -y chromium` \
             (the CI script installs it)."
        );

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let profile = std::env::temp_dir().join(format!(
            "hydrowatch-chromium-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&profile)
            .unwrap_or_else(|e| panic!("cannot create profile dir {}: {e}", profile.display()));

        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {CHROMIUM}: {e}. \
                     Install it with `apt-get install -y chromium` (the CI script installs it)."
                )
            });

        let stderr = child
            .stderr
            .take()
            .expect("chromium stderr is piped (Stdio::piped was set)");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let mut lines = BufReader::new(stderr).lines();

        // Wait for "DevTools listening on ws://...".
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let devtools_url = loop {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = child.try_wait().ok().flatten();
                    panic!(
                        "chromium closed stderr without printing its DevTools address \
                         (exit status {status:?}); stderr:\n{}",
                        tail_text(&stderr_tail)
                    );
                }
                Err(_) => panic!(
                    "chromium did not print its DevTools address within {LAUNCH_TIMEOUT:?}; \
                     stderr:\n{}",
                    tail_text(&stderr_tail)
                ),
            };
            push_tail(&stderr_tail, line.clone());
            if let Some(at) = line.find("DevTools listening on ") {
                break line[at + "DevTools listening on ".len()..]
                    .trim()
                    .to_owned();
            }
        };

        // Keep draining stderr so that Chromium never blocks on a full pipe.
        let tail = Arc::clone(&stderr_tail);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                push_tail(&tail, line);
            }
        });

        Browser {
            child,
            profile,
            stderr_tail,
            devtools_url,
        }
    }

    fn stderr(&self) -> String {
        tail_text(&self.stderr_tail)
    }

    /// Closes the browser, waits for it and removes the profile.
    async fn close(mut self, cdp: Option<&mut Cdp>) {
        if let Some(cdp) = cdp {
            // Best effort: a graceful close first, then kill regardless.
            let _ = cdp.call(None, "Browser.close", json!({})).await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Reached directly only when the test panics: kill, give the process a
        // moment to go away, then remove the profile (best effort).
        let _ = self.child.start_kill();
        for _ in 0..20 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    if tail.len() == 40 {
        tail.pop_front();
    }
    tail.push_back(line);
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    tail.iter().cloned().collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------- cdp

/// A minimal Chrome DevTools Protocol client: one request at a time, the
/// answer matched by `id`, events skipped.
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = tokio::time::timeout(COMMAND_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| {
                panic!("DevTools WebSocket {url}: no connection within {COMMAND_TIMEOUT:?}")
            })
            .unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
        Cdp { ws, next_id: 0 }
    }

    /// Sends `method` (to the browser, or to `session` when given) and
    /// returns its `result`, or the protocol error as text.
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            msg["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| format!("{method}: send failed: {e}"))?;

        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(format!("{method}: no answer within {COMMAND_TIMEOUT:?}")),
                Ok(None) => return Err(format!("{method}: DevTools connection closed")),
                Ok(Some(Err(e))) => return Err(format!("{method}: DevTools connection: {e}")),
                Ok(Some(Ok(frame))) => frame,
            };
            let Message::Text(text) = frame else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{method}: DevTools sent non-JSON ({e}): {text}"))?;
            if reply["id"].as_u64() != Some(id) {
                continue; // an event, or the answer to an abandoned request
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Evaluates `expression` in the page of `session` and returns its value.
    async fn evaluate(&mut self, session: &str, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("Runtime.evaluate threw: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }
}

/// Reads the page; an error (e.g. the page is still navigating) is returned as text.
async fn read_page(cdp: &mut Cdp, session: &str) -> Result<PageView, String> {
    let value = cdp.evaluate(session, READ_PAGE_JS).await?;
    serde_json::from_value(value.clone()).map_err(|e| format!("unexpected page read {value}: {e}"))
}

// --------------------------------------------------------------------- test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallboard_in_headless_chromium_shows_live_values_for_every_rig() {
    let started = Instant::now();
    // Simulators at ten times real time: a load cycle is scored every 6 s.
    // TS1's oil limit moved to 1 °C: the sensor actor raises it at once, and
    // the oil alert rule, made critical, fires on every rig.
    let mut edits = TS1_LIMIT_AT_1C.to_vec();
    edits.extend(OIL_ALERT_AT_1C);
    edits.push((
        "id = \"oil-hot\"\nseverity = \"major\"",
        "id = \"oil-hot\"\nseverity = \"critical\"",
    ));
    let app = TestApp::start(fast_plant_config_with(&edits, &[])).await;
    let page_url = app.url("/");
    // A viewer signs in through the page's form.
    app.user("wall@plant.example", "viewer").await;

    let browser = Browser::launch().await;
    let mut cdp = Cdp::connect(&browser.devtools_url).await;

    let target = cdp
        .call(None, "Target.createTarget", json!({ "url": page_url }))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot open {page_url}: {e}\nchromium stderr:\n{}",
                browser.stderr()
            )
        });
    let target_id = target["targetId"]
        .as_str()
        .unwrap_or_else(|| panic!("Target.createTarget answered without targetId: {target}"))
        .to_owned();
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot attach to the page: {e}"));
    let session = attached["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("Target.attachToTarget answered without sessionId: {attached}"))
        .to_owned();

    // Phase 0: the sign-in form, filled in and sent as a person would.
    let sign_in_js = format!(
        r#"(() => {{
  const form = document.getElementById('login');
  if (!form || form.hidden) return 'waiting';
  document.getElementById('login-email').value = 'wall@plant.example';
  document.getElementById('login-password').value = {password:?};
  form.requestSubmit();
  return 'sent';
}})()"#,
        password = common::PASSWORD
    );
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let answer = cdp.evaluate(&session, &sign_in_js).await;
        if answer.as_ref().is_ok_and(|v| v == "sent") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sign-in form did not show within {PHASE_TIMEOUT:?}: {answer:?}\nchromium stderr:\n{}",
            browser.stderr()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let user = cdp
            .evaluate(
                &session,
                "(() => { const u = document.getElementById('user'); \
                 return document.getElementById('auth').hidden && !u.hidden ? u.textContent : ''; })()",
            )
            .await;
        if let Ok(Value::String(text)) = &user {
            if !text.is_empty() {
                assert!(text.contains("VIEWER"), "signed in as {text}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the page did not sign in within {PHASE_TIMEOUT:?}: {user:?}\nchromium stderr:\n{}",
            browser.stderr()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }

    // Phase 1: connected, and a real PS1/TS1 value on every rig.
    let mut latest = PageView::default();
    let mut last_error: Option<String>;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let baseline = loop {
        match read_page(&mut cdp, &session).await {
            Ok(view) => {
                last_error = None;
                if view.ready() {
                    break view;
                }
                latest = view;
            }
            Err(e) => last_error = Some(e),
        }
        assert!(
            Instant::now() < deadline,
            "within {PHASE_TIMEOUT:?} the wallboard at {page_url} did not reach \
             `connected` with a value for {REQUIRED_SENSORS:?} on every one of {RIGS:?}.\n\
             last read error: {last_error:?}\npage showed:\n{}\nchromium stderr:\n{}",
            latest.describe(),
            browser.stderr()
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    let ready_after = started.elapsed();

    assert_eq!(
        baseline.tiles,
        RIGS.len(),
        "expected one tile per rig; page showed:\n{}",
        baseline.describe()
    );
    assert!(
        baseline
            .footer
            .as_deref()
            .is_some_and(|f| f.contains("CC BY 4.0")),
        "the attribution footer must name the data set licence (CC BY 4.0); page showed:\n{}",
        baseline.describe()
    );

    // Phase 2: every rig shows at least one value different from the baseline.
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let changed = loop {
        match read_page(&mut cdp, &session).await {
            Ok(view) => {
                last_error = None;
                if view.changed_rigs(&baseline).len() == RIGS.len() {
                    break view;
                }
                latest = view;
            }
            Err(e) => last_error = Some(e),
        }
        assert!(
            Instant::now() < deadline,
            "within {PHASE_TIMEOUT:?} only {:?} of {RIGS:?} showed a changed value.\n\
             last read error: {last_error:?}\nbaseline:\n{}\npage showed:\n{}\nchromium stderr:\n{}",
            latest.changed_rigs(&baseline),
            baseline.describe(),
            latest.describe(),
            browser.stderr()
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    assert_eq!(
        changed.status.as_deref(),
        Some("connected"),
        "the WebSocket must still be connected; page showed:\n{}",
        changed.describe()
    );

    // Phase 3: the cycle models' verdicts: rig-3 replays a degraded cooler,
    // rig-1 a healthy rig.
    let deadline = Instant::now() + PHASE_TIMEOUT * 2;
    let judged = loop {
        match read_page(&mut cdp, &session).await {
            Ok(view) => {
                last_error = None;
                let state =
                    |rig: &str, c: &str| view.components.get(rig).and_then(|m| m.get(c)).cloned();
                let rig1_ok = ["cooler", "valve", "pump", "accumulator"]
                    .iter()
                    .all(|c| state("rig-1", c).as_deref() == Some("ok"));
                let limit_shown = RIGS.iter().all(|rig| {
                    view.findings
                        .get(*rig)
                        .and_then(|m| m.get("TS1"))
                        .map(String::as_str)
                        == Some("limit")
                });
                // The oil alerts stand out (critical, not acknowledged);
                // rig-3's degraded cooler raised a model alert.
                let oil_alerts = view
                    .alerts
                    .iter()
                    .filter(|a| a.kind == "threshold:oil-hot")
                    .filter(|a| a.critical_unack && a.outline == "solid")
                    .count();
                let model_alert = view
                    .alerts
                    .iter()
                    .any(|a| a.equipment == "rig-3" && a.kind == "model:component-degraded");
                if rig1_ok
                    && limit_shown
                    && oil_alerts == RIGS.len()
                    && model_alert
                    && state("rig-3", "cooler").as_deref() == Some("degraded")
                {
                    break view;
                }
                latest = view;
            }
            Err(e) => last_error = Some(e),
        }
        assert!(
            Instant::now() < deadline,
            "within {:?} the wallboard did not show rig-3's cooler degraded, rig-1 healthy \
             and TS1's limit raised on every rig.\n\
             last read error: {last_error:?}\npage showed:\n{}",
            PHASE_TIMEOUT * 2,
            latest.describe()
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    assert_eq!(
        judged
            .components
            .get("rig-3")
            .and_then(|m| m.get("valve"))
            .map(String::as_str),
        Some("ok"),
        "{}",
        judged.describe()
    );

    eprintln!(
        "wallboard: connected with values after {ready_after:?}, all {} rigs changed after {:?}; \
         e.g. rig-1 PS1 {:?} -> {:?}",
        RIGS.len(),
        started.elapsed(),
        baseline.value("rig-1", "PS1").unwrap_or_default(),
        changed.value("rig-1", "PS1").unwrap_or_default(),
    );

    browser.close(Some(&mut cdp)).await;
    app.stop().await;
}
