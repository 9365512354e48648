//! The OPC-UA reader against the OPC-UA rig simulator over loopback: every
//! security policy and both identities, an unknown server certificate
//! refused until trusted, subscriptions back after a server restart, polling
//! when the server refuses subscriptions, deadbands, and the network faults
//! (latency, a hung server, dropped connections) with data resuming after.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrowatch_models::{Quality, SensorId};
use hydrowatch_protocols::modbus::{LinkState, PollOutcome, ReconnectPolicy};
use hydrowatch_protocols::opcua::{
    rig_variable, trust, Acquisition, OpcUaConfig, OpcUaFaults, OpcUaPoint, OpcUaReader,
    OpcUaSecurityMode, OpcUaSecurityPolicy, OpcUaSimulatorHandle, OpcUaSimulatorOptions,
    CYCLE_TIMER_VARIABLE,
};
use hydrowatch_protocols::rig::{RigRecording, SENSORS};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// A fresh directory of its own (certificate stores must not be shared).
fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hydrowatch-opcua-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn simulator(options: impl FnOnce(&mut OpcUaSimulatorOptions)) -> OpcUaSimulatorHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut o = OpcUaSimulatorOptions::new(temp_dir("server-pki"));
    o.speed = 10.0;
    options(&mut o);
    OpcUaSimulatorHandle::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(RigRecording::embedded()),
        o,
    )
    .await
    .expect("simulator starts")
}

fn points(ns: u16, deadband: Option<f64>) -> Vec<OpcUaPoint> {
    SENSORS
        .iter()
        .copied()
        .chain(std::iter::once(CYCLE_TIMER_VARIABLE))
        .map(|name| OpcUaPoint {
            sensor: SensorId::parse(name).unwrap(),
            node_id: format!("ns={ns};s={}", rig_variable(name)),
            sampling_interval_ms: 100.0,
            queue_size: 1,
            deadband,
        })
        .collect()
}

fn config(
    sim: &OpcUaSimulatorHandle,
    policy: OpcUaSecurityPolicy,
    mode: OpcUaSecurityMode,
) -> OpcUaConfig {
    OpcUaConfig {
        endpoint_url: sim.endpoint_url(),
        security_policy: policy,
        security_mode: mode,
        user: None,
        pki_dir: temp_dir("client-pki"),
        trust_server_certs: true,
        connect_timeout: Duration::from_secs(5),
        request_timeout: REQUEST_TIMEOUT,
        publishing_interval: Duration::from_millis(100),
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.0,
        },
        max_items_per_subscription: 1000,
        subscribe: true,
    }
}

async fn bounded_poll(reader: &mut OpcUaReader) -> PollOutcome {
    let started = Instant::now();
    let outcome = reader.poll().await;
    let took = started.elapsed();
    assert!(
        took < REQUEST_TIMEOUT + Duration::from_millis(400),
        "a poll took {took:?}"
    );
    outcome
}

fn all_good(outcome: &PollOutcome) -> bool {
    !outcome.readings.is_empty() && outcome.readings.iter().all(|r| r.quality == Quality::Good)
}

fn plausible(outcome: &PollOutcome) {
    let ps1 = outcome.readings[0].value.expect("PS1");
    let ts1 = outcome.readings[9].value.expect("TS1");
    assert!((100.0..250.0).contains(&ps1), "PS1 = {ps1}");
    assert!((30.0..60.0).contains(&ts1), "TS1 = {ts1}");
}

/// Polls every 100 ms until `done` holds for an outcome; panics after `within`.
async fn until(
    reader: &mut OpcUaReader,
    within: Duration,
    what: &str,
    mut done: impl FnMut(&PollOutcome) -> bool,
) -> PollOutcome {
    let deadline = Instant::now() + within;
    loop {
        let outcome = bounded_poll(reader).await;
        for r in &outcome.readings {
            if r.quality == Quality::Bad {
                assert!(r.value.is_none(), "a bad reading with a value: {r:?}");
            }
        }
        if done(&outcome) {
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?} / {:?}",
            outcome.error,
            reader.last_error()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until every value is good (within `within`) and checks they are
/// the rig's.
async fn good(reader: &mut OpcUaReader, within: Duration, what: &str) -> PollOutcome {
    let outcome = until(reader, within, what, all_good).await;
    plausible(&outcome);
    outcome
}

/// Waits for good, plausible values, then for the cycle timer (the last
/// item, changing ten times a second) to move: data flows, it is not one
/// stale read.
async fn flowing(reader: &mut OpcUaReader) -> PollOutcome {
    let outcome = good(reader, Duration::from_secs(20), "good values").await;
    let timer = outcome.readings[17].value;
    until(reader, Duration::from_secs(5), "a new timer value", |o| {
        all_good(o) && o.readings[17].value != timer
    })
    .await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_the_rig_with_every_security_policy_and_identity() {
    use OpcUaSecurityMode as M;
    use OpcUaSecurityPolicy as P;
    let sim = simulator(|_| {}).await;
    let cases = [
        (P::None, M::None, false),
        (P::Basic256Sha256, M::Sign, true),
        (P::Basic256Sha256, M::SignAndEncrypt, false),
        (P::Aes128Sha256RsaOaep, M::Sign, false),
        (P::Aes128Sha256RsaOaep, M::SignAndEncrypt, true),
    ];
    for (policy, mode, with_user) in cases {
        let mut cfg = config(&sim, policy, mode);
        if with_user {
            cfg.user = Some(("operator".into(), "operator-password".into()));
        }
        let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
        let outcome = flowing(&mut reader).await;
        assert_eq!(outcome.link, LinkState::Connected);
        assert_eq!(
            reader.status().acquisition,
            Acquisition::Subscriptions(1),
            "{policy:?} {mode:?}: one subscription holds the 18 items"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_said_so() {
    let sim = simulator(|_| {}).await;
    let mut cfg = config(
        &sim,
        OpcUaSecurityPolicy::Basic256Sha256,
        OpcUaSecurityMode::SignAndEncrypt,
    );
    cfg.user = Some(("operator".into(), "guess".into()));
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let outcome = bounded_poll(&mut reader).await;
        assert!(outcome.readings.iter().all(|r| r.quality == Quality::Bad));
        if reader.last_error().is_some_and(|e| {
            e.contains("BadIdentityTokenRejected") || e.contains("BadUserAccessDenied")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", reader.last_error());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_server_certificate_is_refused_until_trusted() {
    let sim = simulator(|_| {}).await;
    let mut cfg = config(
        &sim,
        OpcUaSecurityPolicy::Basic256Sha256,
        OpcUaSecurityMode::SignAndEncrypt,
    );
    cfg.trust_server_certs = false;
    let pki = cfg.pki_dir.clone();
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while trust::rejected(&pki).unwrap().is_empty() {
        let outcome = bounded_poll(&mut reader).await;
        assert!(
            outcome.readings.iter().all(|r| r.quality == Quality::Bad),
            "no data from an untrusted server"
        );
        assert!(Instant::now() < deadline, "{:?}", reader.last_error());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(trust::trusted(&pki).unwrap().is_empty());
    let rejected = trust::rejected(&pki).unwrap();
    assert!(
        rejected[0].file.contains("hydrowatch rig simulator ["),
        "{rejected:?}"
    );
    assert!(matches!(
        trust::trust(&pki, "no such server"),
        Err(trust::TrustError::NotFound(..))
    ));
    let trusted = trust::trust(&pki, "rig simulator").unwrap();
    assert!(trusted.path.starts_with(pki.join("trusted")));
    assert!(trust::rejected(&pki).unwrap().is_empty());
    // The retrying session picks the trusted certificate up by itself.
    good(&mut reader, Duration::from_secs(30), "data once trusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_back_after_a_server_restart() {
    let mut sim = simulator(|_| {}).await;
    let cfg = config(
        &sim,
        OpcUaSecurityPolicy::Aes128Sha256RsaOaep,
        OpcUaSecurityMode::SignAndEncrypt,
    );
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    good(&mut reader, Duration::from_secs(20), "good values").await;
    let before = reader.status().notifications;

    sim.restart().await.expect("restarts");
    assert_eq!(sim.restarts(), 1);
    // The gap: nothing from before the restart is passed off as current.
    let mut reconnected = false;
    let gap = until(&mut reader, Duration::from_secs(20), "the gap", |o| {
        reconnected |= o.reconnected;
        o.readings.iter().all(|r| r.quality == Quality::Bad)
    })
    .await;
    assert!(gap.readings.iter().all(|r| r.value.is_none()));
    let back = until(
        &mut reader,
        Duration::from_secs(30),
        "data after the restart",
        |o| {
            reconnected |= o.reconnected;
            all_good(o)
        },
    )
    .await;
    plausible(&back);
    assert!(reconnected, "the reconnect is reported");
    assert_eq!(reader.status().acquisition, Acquisition::Subscriptions(1));
    // And they are subscriptions that deliver, not one stale read.
    let after = reader.status().notifications;
    assert!(after > before);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        reader.status().notifications > after,
        "notifications keep coming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_that_expired_in_a_stall_are_made_again_on_the_same_session() {
    // The server keeps a silent client's subscription for six publishing
    // intervals (0.6 s) only.
    let sim = simulator(|o| o.max_lifetime_count = 6).await;
    let cfg = config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None);
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    flowing(&mut reader).await;
    let connections = sim.connections();
    assert_eq!(reader.status().subscriptions_lost, 0);

    // Frozen long enough for the subscription to expire, not long enough for
    // the session's keep-alives (every 2 s, the second failure closes it) to
    // give up on the connection.
    sim.set_faults(OpcUaFaults {
        stall: true,
        ..Default::default()
    })
    .unwrap();
    let stalled = Instant::now();
    // The server owes a keep-alive every 200 ms (2 intervals, as it revised
    // the subscription): the silence makes the values stale, not still good.
    let mut stale = None;
    while stalled.elapsed() < Duration::from_millis(1_800) {
        let outcome = bounded_poll(&mut reader).await;
        assert_eq!(outcome.link, LinkState::Connected);
        if stale.is_none()
            && outcome.readings.iter().all(|r| {
                r.quality == Quality::Bad
                    && r.value.is_none()
                    && r.reason
                        .as_deref()
                        .is_some_and(|why| why.starts_with("stale"))
            })
        {
            stale = Some(stalled.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = stale.expect("the values turned stale in the stall");
    assert!(stale >= Duration::from_millis(400), "stale after {stale:?}");
    sim.set_faults(OpcUaFaults::default()).unwrap();

    // The server answers the held publish requests with BadNoSubscription.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.status().subscriptions_lost == 0 {
        assert!(
            Instant::now() < deadline,
            "the lost subscription was not noticed: {:?}",
            reader.last_error()
        );
        bounded_poll(&mut reader).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = flowing(&mut reader).await;
    plausible(&back);
    assert_eq!(reader.status().subscriptions_lost, 1);
    assert_eq!(reader.status().acquisition, Acquisition::Subscriptions(1));
    assert_eq!(
        sim.connections(),
        connections,
        "made again on the same connection, not by reconnecting"
    );
    let after = reader.status().notifications;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        reader.status().notifications > after,
        "notifications keep coming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_subscriptions_is_polled() {
    let sim = simulator(|o| o.subscriptions = false).await;
    let cfg = config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None);
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    flowing(&mut reader).await;
    assert_eq!(reader.status().acquisition, Acquisition::Polling);
    assert_eq!(reader.status().notifications, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_beyond_the_servers_limit_go_into_another_subscription() {
    // 18 items, at most 10 per subscription: two subscriptions, all delivering.
    let sim = simulator(|o| o.max_items_per_subscription = 10).await;
    let cfg = config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None);
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    flowing(&mut reader).await;
    assert_eq!(reader.status().acquisition, Acquisition::Subscriptions(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_node_is_bad_with_the_servers_reason_and_the_rest_is_read() {
    let sim = simulator(|_| {}).await;
    let mut pts = points(sim.namespace(), None);
    pts[3].node_id = format!("ns={};s=Rig.NOPE", sim.namespace());
    let cfg = config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None);
    let mut reader = OpcUaReader::start(cfg, pts).unwrap();
    let outcome = until(
        &mut reader,
        Duration::from_secs(20),
        "the others good",
        |o| {
            o.readings
                .iter()
                .enumerate()
                .all(|(i, r)| (i == 3) != (r.quality == Quality::Good))
        },
    )
    .await;
    assert!(
        outcome.readings[3]
            .reason
            .as_deref()
            .unwrap()
            .contains("BadNodeIdUnknown"),
        "{:?}",
        outcome.readings[3]
    );
    assert!(OpcUaReader::start(
        config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None),
        vec![OpcUaPoint {
            node_id: "not a node id".into(),
            ..points(2, None)[0].clone()
        }]
    )
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadband_holds_back_small_changes() {
    let sim = simulator(|_| {}).await;
    let ns = sim.namespace();
    let mut quiet = OpcUaReader::start(
        config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None),
        points(ns, Some(1e9)),
    )
    .unwrap();
    let mut chatty = OpcUaReader::start(
        config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None),
        points(ns, None),
    )
    .unwrap();
    until(&mut quiet, Duration::from_secs(20), "values", all_good).await;
    until(&mut chatty, Duration::from_secs(20), "values", all_good).await;
    let (q0, c0) = (quiet.status().notifications, chatty.status().notifications);
    // Twenty recorded seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (q, c) = (
        quiet.status().notifications - q0,
        chatty.status().notifications - c0,
    );
    assert_eq!(q, 0, "nothing moves by 1e9");
    assert!(c >= 18, "{c} changes without a deadband");
    // The held values are still current, not stale.
    assert!(all_good(&bounded_poll(&mut quiet).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_faults_turn_bad_within_the_timeouts_and_data_resumes() {
    let sim = simulator(|_| {}).await;
    let cfg = config(&sim, OpcUaSecurityPolicy::None, OpcUaSecurityMode::None);
    let mut reader = OpcUaReader::start(cfg, points(sim.namespace(), None)).unwrap();
    good(&mut reader, Duration::from_secs(20), "good values").await;

    // Latency below every timeout: still served.
    sim.set_faults(OpcUaFaults {
        latency_ms: 50,
        ..Default::default()
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slow = bounded_poll(&mut reader).await;
    assert!(all_good(&slow), "{:?}", slow.error);

    // A hung server: keep-alives time out, the link is declared lost.
    sim.set_faults(OpcUaFaults {
        no_response: true,
        ..Default::default()
    })
    .unwrap();
    until(
        &mut reader,
        Duration::from_secs(20),
        "the hang noticed",
        |o| {
            o.link == LinkState::Disconnected
                && o.readings.iter().all(|r| r.quality == Quality::Bad)
        },
    )
    .await;
    sim.set_faults(OpcUaFaults::default()).unwrap();
    good(&mut reader, Duration::from_secs(30), "data after the hang").await;

    // Dropped connections.
    let connections = sim.connections();
    sim.set_faults(OpcUaFaults {
        drop_connections: true,
        ..Default::default()
    })
    .unwrap();
    until(
        &mut reader,
        Duration::from_secs(20),
        "the drop noticed",
        |o| o.link == LinkState::Disconnected,
    )
    .await;
    sim.set_faults(OpcUaFaults::default()).unwrap();
    good(&mut reader, Duration::from_secs(30), "data after the drop").await;
    assert!(sim.connections() > connections, "a new connection was made");
}
