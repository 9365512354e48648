//! Alerting benchmark: what rules cost per sample, and what 10,000 alerts
//! firing across 1,000 equipment units cost the alert book and the store.
//!
//! ```sh
//! cargo bench --bench alerting
//! ```
//!
//! 1. **Rule evaluation per sample**: a threshold band with hysteresis on a
//!    noisy signal (the per-reading work of an equipment actor for one rule).
//! 2. **Alert book**: 10,000 alerts (10 sensors × 1,000 units) fire at once
//!    under a three-step escalation policy; the book is ticked every second
//!    for 20 minutes of simulated time. Notifications per second of CPU, and
//!    the resident memory the book adds.
//! 3. **Store**: the same 10,000 alerts saved with their first notification
//!    into a fresh SQLite file, one transaction each and all in one (as the
//!    alerting actor writes what one message changed).
//! 4. **Delivery**: the outbox worker delivers those 10,000 webhook
//!    notifications (signed, recorded as sent) to a receiver on loopback.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use hydrowatch_actors::alerting::{AlertStore, AlertWrite, NewNotification};
use hydrowatch_models::alert::engine::{AlertBook, Handling, Origin, Output, Signal};
use hydrowatch_models::alert::escalation::{EscalationPolicy, EscalationStep};
use hydrowatch_models::alert::rules::{ThresholdCondition, ThresholdEvaluator};
use hydrowatch_models::alert::silence::Inhibition;
use hydrowatch_models::alert::{AlertKey, Timing};
use hydrowatch_models::ensemble::Severity;

const UNITS: usize = 1_000;
const SENSORS: usize = 10;
const MIN: i64 = 60_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn rule_evaluation() {
    let samples: usize = if cfg!(debug_assertions) {
        10_000
    } else {
        10_000_000
    };
    let mut eval = ThresholdEvaluator::new(ThresholdCondition {
        sensor: Some("TS1".into()),
        sensor_type: None,
        min: Some(10.0),
        max: Some(60.0),
        hysteresis: 2.0,
    });
    // A signal that wanders across the upper limit now and then.
    let values: Vec<f64> = (0..4096)
        .map(|i| 55.0 + 7.0 * ((i as f64) * 0.013).sin() + ((i * 7919) % 13) as f64 * 0.1)
        .collect();
    let started = Instant::now();
    let mut firing = 0usize;
    for i in 0..samples {
        firing += usize::from(eval.observe(Some(values[i & 4095])));
    }
    let elapsed = started.elapsed();
    black_box(firing);
    println!(
        "rule evaluation: {samples} samples, {:.2} ns per sample (threshold band with hysteresis)",
        elapsed.as_nanos() as f64 / samples as f64
    );
}

fn handling() -> Handling {
    Handling {
        timing: Timing {
            for_ms: 30_000,
            keep_firing_ms: 60_000,
            ..Timing::default()
        },
        policy: Some(EscalationPolicy {
            steps: vec![
                EscalationStep {
                    after_ms: 0,
                    channels: vec!["wallboard".into(), "webhook:ops".into()],
                },
                EscalationStep {
                    after_ms: 5 * MIN,
                    channels: vec!["email:oncall@plant.example".into()],
                },
                EscalationStep {
                    after_ms: 15 * MIN,
                    channels: vec!["email:supervisor@plant.example".into()],
                },
            ],
            repeat_critical_ms: Some(30 * MIN),
        }),
    }
}

fn signal(unit: usize, sensor: usize, at: i64) -> Signal {
    Signal {
        key: AlertKey {
            source: format!("plant/unit-{unit}/S{sensor}"),
            kind: "threshold:bench".into(),
        },
        origin: Origin {
            site: "bench".into(),
            equipment: Some(format!("unit-{unit}")),
            sensor: Some(format!("S{sensor}")),
        },
        firing: true,
        severity: if sensor == 0 {
            Severity::Critical
        } else {
            Severity::Major
        },
        value: Some(61.0),
        at,
        restated: false,
    }
}

fn alert_book() -> AlertBook {
    let h = handling();
    let before = rss_kib();
    let mut book = AlertBook::new(Inhibition::default());
    let started = Instant::now();
    let mut notifications = 0usize;
    let count = |out: &[Output]| {
        out.iter()
            .map(|o| match o {
                Output::Notify { channels, .. } => channels.len(),
                Output::Changed(_) => 0,
            })
            .sum::<usize>()
    };
    for unit in 0..UNITS {
        for sensor in 0..SENSORS {
            notifications += count(&book.signal(signal(unit, sensor, 0), &h));
        }
    }
    let signalled = started.elapsed();
    let ticks = Instant::now();
    for second in 1..=20 * 60 {
        notifications += count(&book.tick(second * 1_000));
    }
    let ticked = ticks.elapsed();
    let total = started.elapsed();
    let grown = rss_kib().saturating_sub(before);
    println!(
        "alert book: {} alerts across {UNITS} units: signals {:.1} ms ({:.2} µs each); \
         1,200 ticks {:.1} ms ({:.1} µs per tick over 10,000 open alerts)",
        UNITS * SENSORS,
        signalled.as_secs_f64() * 1e3,
        signalled.as_secs_f64() * 1e6 / (UNITS * SENSORS) as f64,
        ticked.as_secs_f64() * 1e3,
        ticked.as_secs_f64() * 1e6 / 1_200.0
    );
    println!(
        "alert book: {notifications} notifications (channels) due in 20 min of alerts, \
         {:.0} notifications per second of CPU; resident memory +{:.1} MiB",
        notifications as f64 / total.as_secs_f64(),
        grown as f64 / 1024.0
    );
    book
}

async fn store(book: &AlertBook) {
    let dir =
        std::env::temp_dir().join(format!("hydrowatch-bench-alerting-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let writes: Vec<AlertWrite> = book
        .alerts()
        .map(|alert| AlertWrite {
            id: None,
            rule: "bench".into(),
            alert: alert.clone(),
            origin: book.origin(&alert.key).cloned().expect("open alert"),
            events_stored: 0,
            notifications: vec![NewNotification {
                activation: alert.activated_at.unwrap_or(0),
                step: 0,
                repeat: 0,
                channel: "webhook:ops".into(),
                due_at: alert.activated_at.unwrap_or(0),
            }],
            held_back: None,
        })
        .collect();
    let open = |name: &str| {
        let url = format!("sqlite://{}", dir.join(name).display());
        async move {
            let store = hydrowatch::store::Store::connect(&url)
                .await
                .expect("SQLite opens");
            store.migrate().await.expect("migrations");
            store
        }
    };
    // As the alerting actor wrote before: a transaction per alert.
    let single = open("single.db").await;
    let started = Instant::now();
    for w in &writes {
        single.save(std::slice::from_ref(w)).await.expect("saved");
    }
    let elapsed = started.elapsed();
    println!(
        "store (SQLite file, one transaction per alert): {} alerts with history and one outbox row in {:.2} s, {:.0} alerts/s",
        writes.len(),
        elapsed.as_secs_f64(),
        writes.len() as f64 / elapsed.as_secs_f64()
    );
    // As it writes now: everything one message changed in one transaction.
    let batched = open("batched.db").await;
    let started = Instant::now();
    let ids = batched.save(&writes).await.expect("saved");
    let elapsed = started.elapsed();
    assert_eq!(ids.len(), writes.len());
    println!(
        "store (SQLite file, one transaction for all): {} alerts in {:.2} s, {:.0} alerts/s",
        writes.len(),
        elapsed.as_secs_f64(),
        writes.len() as f64 / elapsed.as_secs_f64()
    );
    let open = batched.load_open().await.expect("load");
    let sent: BTreeSet<usize> = open.iter().map(|a| a.notified.len()).collect();
    println!(
        "store: {} open alerts read back for a restart (notified sets of size {sent:?})",
        open.len()
    );
    deliver(batched, writes.len()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The outbox worker delivers every pending webhook notification of `store`
/// to a receiver on loopback that answers 200.
async fn deliver(store: hydrowatch::store::Store, expected: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver listens");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let settings: hydrowatch::notify::NotifySettings = serde_json::from_value(serde_json::json!({
        "webhooks": {"ops": {
            "url": format!("http://{addr}/hook"),
            "secret": "bench-secret-bench-secret-bench-secret",
            "rate_per_minute": 100_000_000
        }}
    }))
    .expect("settings");
    let concurrency = settings.concurrency;
    let notifier = hydrowatch::notify::Notifier::new(settings, store).expect("notifier");
    let started = Instant::now();
    while notifier.run_once().await.expect("outbox") > 0 {}
    let elapsed = started.elapsed();
    assert_eq!(
        received.load(Ordering::Relaxed),
        expected,
        "every notification delivered once"
    );
    println!(
        "delivery: {expected} webhook notifications (HMAC-signed, POST to loopback, recorded as sent; {concurrency} in flight) in {:.2} s, {:.0} notifications/s",
        elapsed.as_secs_f64(),
        expected as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    rule_evaluation();
    let book = alert_book();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(store(&book));
}
