//! Scoring benchmark: what the cycle models cost inline and over HTTP.
//!
//! ```sh
//! cargo bench --bench scoring                  # both parts
//! cargo bench --bench scoring -- --runs 20000  # more repetitions
//! ```
//!
//! 1. **Inline**: `Scorer::score` on the recorded cycles the simulators replay
//!    (features, the RandomForest classifiers, the novelty detector and the
//!    ensemble), as an equipment actor calls it when a cycle completes; and
//!    `Scorer::score_features` alone (the models without the features).
//! 2. **`POST /api/v1/detect`**: the application started on loopback (demo
//!    plant, its own SQLite file), one client sending cycles one after
//!    another; latency as the client sees it (JSON encoding of 17 × 60
//!    values, HTTP, parsing and validation, scoring, the answer).

use std::time::{Duration, Instant};

use hydrowatch::config;
use hydrowatch_models::cycle::Cycle;
use hydrowatch_protocols::rig::{RigCondition, RigRecording, SENSORS};

fn runs() -> usize {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs this unoptimised as a smoke test: a
    // few runs only. The numbers mean something from `cargo bench` alone.
    let default = if cfg!(debug_assertions) { 200 } else { 10_000 };
    args.iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{what}: n {} | p50 {:?} p90 {:?} p99 {:?} max {:?}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}

fn recorded_cycles() -> Vec<Cycle> {
    let recording = RigRecording::embedded();
    RigCondition::ALL
        .iter()
        .flat_map(|c| recording.cycles(*c).to_vec())
        .map(|c| Cycle {
            values: c.values.iter().map(|row| row.to_vec()).collect(),
        })
        .collect()
}

fn main() {
    let runs = runs();
    let cycles = recorded_cycles();
    let scorer = hydrowatch::scoring::load_scorer(&config::ModelsSettings::default())
        .expect("the built-in models load");
    println!("members: {:?}", scorer.members().collect::<Vec<_>>());

    // Warm up caches and the allocator.
    for c in cycles.iter().cycle().take(200) {
        std::hint::black_box(scorer.score(c).expect("valid cycle"));
    }
    let mut whole = Vec::with_capacity(runs);
    let mut models = Vec::with_capacity(runs);
    for (i, c) in cycles.iter().cycle().take(runs).enumerate() {
        let started = Instant::now();
        std::hint::black_box(scorer.score(c).expect("valid cycle"));
        whole.push(started.elapsed());
        if i % 2 == 0 {
            let features = c.features().expect("valid cycle");
            let started = Instant::now();
            std::hint::black_box(scorer.score_features(&features));
            models.push(started.elapsed());
        }
    }
    report("inline cycle scoring (features + models + ensemble)", whole);
    report("models and ensemble on ready features", models);
    let mut features_only = Vec::with_capacity(runs / 2);
    for c in cycles.iter().cycle().take(runs / 2) {
        let started = Instant::now();
        std::hint::black_box(c.features().expect("valid cycle"));
        features_only.push(started.elapsed());
    }
    report("features alone", features_only);
    // Each member alone (the others switched off).
    for member in ["random_forest", "xgboost", "novelty"] {
        let mut settings = config::ModelsSettings::default();
        for other in ["random_forest", "xgboost", "novelty"] {
            settings.ensemble.members.insert(
                other.into(),
                hydrowatch_models::ensemble::MemberConfig {
                    enabled: other == member,
                    weight: 1.0,
                },
            );
        }
        let alone = hydrowatch::scoring::load_scorer(&settings).expect("models load");
        if alone.members().all(|(n, _)| n != member) {
            println!("{member}: not available here");
            continue;
        }
        let mut times = Vec::with_capacity(runs / 2);
        for c in cycles.iter().cycle().take(runs / 2) {
            let features = c.features().expect("valid cycle");
            let started = Instant::now();
            std::hint::black_box(alone.score_features(&features));
            times.push(started.elapsed());
        }
        report(&format!("{member} alone on ready features"), times);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(detect_over_http(&cycles, runs.min(5_000)));
}

async fn detect_over_http(cycles: &[Cycle], runs: usize) {
    let dir = std::env::temp_dir().join(format!("hydrowatch-bench-scoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env: Vec<(String, String)> = vec![
        ("HYDROWATCH_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        (
            "HYDROWATCH_STORAGE__URL".into(),
            format!("sqlite://{}", dir.join("hydrowatch.db").display()),
        ),
        (
            "HYDROWATCH_STORAGE__SPOOL_DIR".into(),
            dir.join("spool").display().to_string(),
        ),
        ("HYDROWATCH_LOG__FILTER".into(), "warn".into()),
    ];
    let loaded = config::load(None, &env).expect("demo config");
    let mut app = hydrowatch::App::start(loaded).await.expect("app starts");
    let url = format!("http://{}/api/v1/detect", app.addr);
    // An engineer's session, as an integration would hold.
    let engineer = hydrowatch::auth::NewUser {
        email: "bench@plant.example".into(),
        name: "Bench".into(),
        role: hydrowatch::auth::roles::Role::Engineer,
        password: "a long passphrase for the scoring run".into(),
        must_change_password: false,
    };
    app.state
        .auth
        .users
        .add(&engineer, None)
        .await
        .expect("user");
    let token = app
        .state
        .auth
        .logins
        .login(&engineer.email, &engineer.password, None, None)
        .await
        .expect("login")
        .access_token;
    let bodies: Vec<String> = cycles
        .iter()
        .map(|c| {
            let map: serde_json::Map<String, serde_json::Value> = SENSORS
                .iter()
                .zip(&c.values)
                .map(|(s, v)| (s.to_string(), serde_json::json!(v)))
                .collect();
            serde_json::json!({ "cycle": map }).to_string()
        })
        .collect();
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(runs);
    for (i, body) in bodies.iter().cycle().take(runs + 100).enumerate() {
        let started = Instant::now();
        let resp = client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "{}", resp.status());
        std::hint::black_box(resp.bytes().await.expect("body"));
        if i >= 100 {
            times.push(started.elapsed());
        }
    }
    report(
        "POST /api/v1/detect (one cycle, one client, loopback)",
        times,
    );
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
