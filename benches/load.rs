//! Load generator: runs N simulated rigs (17 sensors each) through the real
//! product — Modbus TCP simulators on loopback, connection, equipment and sensor
//! actors, the WebSocket API — and reports samples/s processed, sample→WebSocket
//! latency, RSS and start-up time.
//!
//! ```sh
//! cargo bench --bench load -- --rigs 1000 --rate-hz 1 --secs 30
//! cargo bench --bench load -- --rigs 100 --rate-hz 100 --secs 30
//! ```
//!
//! Latency is measured per sensor state in each delta frame a WebSocket client
//! (subscribed to every rig, in the same process) receives: arrival time minus the
//! sample's timestamp (`ts_ms`, stamped when the poll completed). `ts_ms` has
//! millisecond resolution and is truncated, so figures are biased up by 0–1 ms.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use hydrowatch::config;
use hydrowatch::App;
use hydrowatch_protocols::modbus::LinkState;

struct Args {
    rigs: usize,
    rate_hz: f64,
    secs: f64,
    warmup_secs: f64,
    /// Also measure sample→outbox with an in-process subscriber (costs CPU).
    probe: bool,
    /// Run the simulators as a separate `hydrowatch simulate` process.
    external_sim: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        rigs: 10,
        rate_hz: 1.0,
        secs: 20.0,
        warmup_secs: 5.0,
        probe: false,
        external_sim: false,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        let value = raw.get(i + 1).cloned().unwrap_or_default();
        match raw[i].as_str() {
            "--rigs" => args.rigs = value.parse().expect("--rigs N"),
            "--rate-hz" => args.rate_hz = value.parse().expect("--rate-hz R"),
            "--secs" => args.secs = value.parse().expect("--secs S"),
            "--warmup-secs" => args.warmup_secs = value.parse().expect("--warmup-secs S"),
            "--probe" => {
                args.probe = true;
                i += 1;
                continue;
            }
            "--external-sim" => {
                args.external_sim = true;
                i += 1;
                continue;
            }
            // cargo bench passes --bench; ignore anything else.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    args
}

/// Writes a config for `rigs` simulated rigs polled at `rate_hz` into a temp dir.
/// First port of the external simulators (`--external-sim`).
const SIM_BASE_PORT: u16 = 17000;

/// Writes a config for `rigs` simulated rigs polled at `rate_hz` into a temp dir.
/// In-process simulators by default; with `external`, a second config for a
/// `hydrowatch simulate` process (fixed ports) and endpoints pointing at it.
/// Returns the app's config and, when external, the simulator's.
fn write_config(rigs: usize, rate_hz: f64, external: bool) -> (PathBuf, Option<PathBuf>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("hydrowatch-load-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("config")).expect("temp dir");
    std::fs::create_dir_all(dir.join("sim/config")).expect("temp dir");
    let shipped = std::fs::read_to_string(format!("{root}/config/plant.toml")).expect("plant.toml");
    // Keep the site and the sensor set; replace the equipment.
    let head = &shipped[..shipped
        .find("[[equipment]]")
        .expect("equipment in plant.toml")];
    let period_ms = (1000.0 / rate_hz).round().max(5.0) as u64;
    let mut plant = head.to_owned();
    let mut sim_plant = head.to_owned();
    for n in 1..=rigs {
        let port = SIM_BASE_PORT as usize + n;
        let endpoint = if external {
            format!("127.0.0.1:{port}")
        } else {
            "simulator".to_owned()
        };
        let equipment = |endpoint: &str, port: usize| {
            format!(
                "[[equipment]]\nid = \"rig-{n}\"\nname = \"Rig {n}\"\nsensor_set = \"zema-rig\"\n\
                 [equipment.connection]\nprotocol = \"modbus_tcp\"\nendpoint = \"{endpoint}\"\nperiod_ms = {period_ms}\n\
                 request_timeout_ms = 1000\n\
                 [equipment.simulator]\ncondition = \"healthy\"\nphase_secs = {}.0\nport = {port}\n\n",
                (n * 7) % 360
            )
        };
        plant.push_str(&equipment(&endpoint, 0));
        sim_plant.push_str(&equipment("simulator", port));
    }
    // Its own database and spool in the temp dir, never the working directory's.
    let settings = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n[websocket]\nmax_message_bytes = 65536\n\
         [storage]\nurl = \"sqlite://{db}\"\nspool_dir = \"{spool}\"\n",
        db = dir.join("hydrowatch.db").display(),
        spool = dir.join("spool").display()
    );
    for (sub, plant) in [("", &plant), ("sim/", &sim_plant)] {
        std::fs::write(dir.join(format!("{sub}config/plant.toml")), plant).expect("write plant");
        std::fs::copy(
            format!("{root}/supervision.toml"),
            dir.join(format!("{sub}supervision.toml")),
        )
        .expect("copy supervision");
        std::fs::write(dir.join(format!("{sub}config/hydrowatch.toml")), &settings)
            .expect("write settings");
    }
    let sim = external.then(|| dir.join("sim/config/hydrowatch.toml"));
    (dir.join("config/hydrowatch.toml"), sim)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sensors: Option<std::collections::HashMap<String, StateTs>>,
}

#[derive(serde::Deserialize)]
struct StateTs {
    ts_ms: f64,
}

/// Subscribes to every rig and records, per sensor state in each delta received
/// between `from` and `until`, arrival time minus sample time.
async fn ws_client(
    url: String,
    token: String,
    ids: Vec<String>,
    from: Instant,
    until: Instant,
) -> (Vec<f64>, u64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    // As a browser signs in: the first frame.
    ws.send(Message::Text(
        serde_json::json!({"type": "auth", "token": token})
            .to_string()
            .into(),
    ))
    .await
    .expect("auth");
    ws.send(Message::Text(
        serde_json::json!({"type": "subscribe", "equipment": ids})
            .to_string()
            .into(),
    ))
    .await
    .expect("subscribe");
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut frames = 0u64;
    while Instant::now() < until {
        let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = next else {
            continue;
        };
        let arrived = now_ms();
        if Instant::now() < from {
            continue;
        }
        // Snapshots are not partial frames; only deltas measure the live path.
        let frame: Frame = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(_) => continue,
        };
        if frame.kind != "delta" {
            continue;
        }
        frames += 1;
        if let Some(sensors) = frame.sensors {
            latencies.extend(sensors.values().map(|s| arrived - s.ts_ms));
        }
    }
    (latencies, frames)
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let (path, sim_config) = write_config(args.rigs, args.rate_hz, args.external_sim);
    // Devices elsewhere: the simulators in their own process, as real PLCs are.
    let _simulators = sim_config.map(|config| {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_hydrowatch"))
            .arg("--config")
            .arg(&config)
            .arg("simulate")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("simulate starts");
        KillOnDrop(child)
    });
    if args.external_sim {
        // Wait until the last simulator listens.
        let last = format!("127.0.0.1:{}", SIM_BASE_PORT as usize + args.rigs);
        while tokio::net::TcpStream::connect(&last).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let loaded = config::load(Some(&path), &[]).expect("config");
    hydrowatch::telemetry::init_logging(config::LogFormat::Text, "warn");
    let rss_before = rss_kib("VmRSS:");

    let started = Instant::now();
    let app = App::start(loaded).await.expect("app starts");
    let listening = started.elapsed();
    loop {
        let up = app
            .state
            .tree
            .connections
            .iter()
            .filter(|s| {
                s.lock()
                    .map(|s| s.link == LinkState::Connected && s.polls > 0)
                    .unwrap_or(false)
            })
            .count();
        if up == args.rigs {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {up} of {} rigs up",
            args.rigs
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_polling = started.elapsed();

    // A second subscriber straight on the hub: sample → session outbox, without
    // JSON or the socket, to tell the tree's share of the latency from the wire's.
    let probe = std::sync::Arc::new(hydrowatch_actors::session::Outbox::new());
    let probed: Vec<_> = if args.probe {
        app.state
            .tree
            .equipment_specs
            .iter()
            .map(|s| s.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    for id in probed {
        let subscriber = hydrowatch_actors::hub::Subscriber {
            session: "bench-probe".into(),
            outbox: probe.clone(),
        };
        app.state.tree.hub.subscribe(&id, subscriber.clone());
        if let Some(address) = app.state.tree.equipment.get(&id) {
            let _ = address.cast(hydrowatch_actors::plant::EquipmentMsg::Subscribe(
                subscriber,
            ));
        }
    }
    let probe_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe_task = {
        let probe = probe.clone();
        let stop = probe_stop.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = tokio::time::timeout(Duration::from_millis(100), probe.ready()).await;
                let now = now_ms();
                for frame in probe.drain() {
                    if let hydrowatch_actors::session::ServerFrame::Delta { delta, .. } = frame {
                        lat.extend(delta.sensors.values().map(|s| now - s.ts_ms as f64));
                    }
                }
            }
            lat
        })
    };

    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup_secs);
    let end = warmup_end + Duration::from_secs_f64(args.secs);
    // The WebSocket client runs on its own thread and runtime, as an external
    // wallboard would, so its parsing does not queue behind the server's tasks.
    let url = format!("ws://{}/api/v1/ws", app.addr);
    let ids: Vec<String> = (1..=args.rigs).map(|n| format!("rig-{n}")).collect();
    let viewer = hydrowatch::auth::NewUser {
        email: "wallboard@plant.example".into(),
        name: "Wallboard".into(),
        role: hydrowatch::auth::roles::Role::Viewer,
        password: "a long passphrase for the control room".into(),
        must_change_password: false,
    };
    app.state.auth.users.add(&viewer, None).await.expect("user");
    let token = app
        .state
        .auth
        .logins
        .login(&viewer.email, &viewer.password, None, None)
        .await
        .expect("login")
        .access_token;
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(ws_client(url, token, ids, warmup_end, end))
    });
    let processed_at_start = {
        tokio::time::sleep_until(warmup_end.into()).await;
        counter(
            &app.state.metrics.render(),
            "hydrowatch_samples_processed_total",
        )
    };
    let measure_started = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let (mut latencies, frames) = client.join().expect("client thread");
    probe_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut tree_lat = probe_task.await.unwrap_or_default();
    tree_lat.sort_by(|a, b| a.total_cmp(b));
    let window = measure_started.elapsed().as_secs_f64();
    let processed = counter(
        &app.state.metrics.render(),
        "hydrowatch_samples_processed_total",
    ) - processed_at_start;
    let rss = rss_kib("VmRSS:");
    let hwm = rss_kib("VmHWM:");
    latencies.sort_by(|a, b| a.total_cmp(b));
    let offered = args.rigs as f64 * 17.0 * args.rate_hz;

    println!("| rigs | sensor actors | rate | offered samples/s | processed samples/s | WS deltas/s | latency p50 | p99 | max | RSS | peak RSS | start (listening) | start (all rigs polled) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} Hz | {:.0} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {:.0} MiB | {:.0} MiB | {:.0} ms | {:.0} ms |",
        args.rigs,
        args.rigs * 17,
        args.rate_hz,
        offered,
        processed / window,
        frames as f64 / window,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        listening.as_secs_f64() * 1000.0,
        all_polling.as_secs_f64() * 1000.0,
    );
    if args.probe {
        println!(
            "(sample→outbox inside the tree: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, including warm-up)",
            percentile(&tree_lat, 0.50),
            percentile(&tree_lat, 0.99),
            tree_lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "(RSS before start {:.0} MiB; {} latency samples over {:.1} s)",
        rss_before as f64 / 1024.0,
        latencies.len(),
        window
    );
    let mut app = app;
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().and_then(|p| p.parent()).unwrap_or(&path));
}
