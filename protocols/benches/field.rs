//! Field protocol benchmark: Modbus polls per second on one connection and
//! across 1,000 connections, over real loopback sockets against the rig
//! simulator (the server side runs in this process too, on the same 2 cores).
//!
//! ```sh
//! cargo bench -p hydrowatch-protocols --bench field
//! ```
//!
//! 1. **One connection**: back-to-back polls of the rig's map (17 `f32`
//!    and the cycle timer, one 35-register read), Modbus TCP and RTU over
//!    TCP: polls/s and the latency of a poll.
//! 2. **1,000 connections, as fast as they go**: 1,000 pollers (20
//!    simulators × 50 connections), each polling back to back: polls/s in
//!    all, and the spread of a poll's latency.
//! 3. **1,000 connections at 2 Hz** (the demo plant's rate): the poll
//!    latency under a realistic load, and the CPU it takes.
//! 4. **OPC-UA monitored items per connection**: a server with 100, 1,000
//!    and 5,000 `Double` variables, all changed ten times a second; one
//!    client session monitors all of them (publishing and sampling at the
//!    server's minimum, 100 ms): notifications per second, and the update
//!    latency from the server writing a value (its source timestamp) to the
//!    client's callback.
//!
//! Under `cargo test` (debug) it runs a few polls of each, as a smoke test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrowatch_models::Quality;
use hydrowatch_protocols::modbus::{
    rig_register_map, Framing, ModbusPoller, PollerConfig, ReconnectPolicy, SimulatorHandle,
    SimulatorOptions,
};
use hydrowatch_protocols::rig::RigRecording;

const QUICK: bool = cfg!(debug_assertions);

fn config(addr: SocketAddr, framing: Framing) -> PollerConfig {
    PollerConfig {
        addr,
        framing,
        unit_id: 1,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        max_registers_per_read: 125,
        max_bits_per_read: 2000,
        max_gap: 0,
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        },
    }
}

async fn simulator(framing: Framing) -> SimulatorHandle {
    SimulatorHandle::start_with(
        "127.0.0.1:0".parse().expect("address"),
        Arc::new(RigRecording::embedded()),
        SimulatorOptions {
            framing,
            ..SimulatorOptions::default()
        },
    )
    .await
    .expect("simulator listens")
}

/// The `p` quantile of sorted samples (the default when there are none).
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second here).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

async fn poll_checked(poller: &mut ModbusPoller) -> Duration {
    let started = Instant::now();
    let outcome = poller.poll().await;
    let took = started.elapsed();
    assert!(
        outcome.readings.iter().all(|r| r.quality == Quality::Good),
        "a poll failed: {:?}",
        outcome.error
    );
    took
}

async fn one_connection(framing: Framing) {
    let polls = if QUICK { 200 } else { 20_000 };
    let sim = simulator(framing).await;
    let mut poller = ModbusPoller::new(config(sim.addr(), framing), rig_register_map());
    poll_checked(&mut poller).await;
    let mut latencies = Vec::with_capacity(polls);
    let started = Instant::now();
    for _ in 0..polls {
        latencies.push(poll_checked(&mut poller).await);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "one connection, {:<12} {polls} polls: {:>8.0} polls/s, latency p50 {:>6.1} µs, p99 {:>6.1} µs",
        framing.protocol(),
        polls as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
    );
}

/// `connections` pollers over `simulators` simulators for `duration`, each
/// polling every `period` (zero: back to back).
async fn many_connections(
    simulators: usize,
    connections: usize,
    period: Duration,
    duration: Duration,
) {
    let mut sims = Vec::new();
    for _ in 0..simulators {
        sims.push(simulator(Framing::Tcp).await);
    }
    let addrs: Vec<SocketAddr> = sims.iter().map(|s| s.addr()).collect();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let addr = addrs[i % addrs.len()];
            tokio::spawn(async move {
                let mut poller = ModbusPoller::new(config(addr, Framing::Tcp), rig_register_map());
                // Spread the first polls over one period, as the connection
                // actors do.
                tokio::time::sleep(period.mul_f64(i as f64 / connections as f64)).await;
                let mut latencies = Vec::new();
                let mut next = tokio::time::Instant::now();
                while tokio::time::Instant::now() < deadline {
                    latencies.push(poll_checked(&mut poller).await);
                    if !period.is_zero() {
                        next += period;
                        tokio::time::sleep_until(next).await;
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("poller task"));
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort();
    let rate = if period.is_zero() {
        "back to back".to_owned()
    } else {
        format!("every {} ms", period.as_millis())
    };
    println!(
        "{connections} connections ({simulators} simulators), {rate}: {:>8.0} polls/s, \
         latency p50 {:>7.2} ms, p99 {:>7.2} ms, max {:>7.2} ms, CPU {:>4.0} % (simulators included)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        cpu / elapsed.as_secs_f64() * 100.0,
    );
}

/// One OPC-UA server with `items` variables changing every 100 ms, one
/// session monitoring them all for `duration`.
async fn opcua_items(items: usize, duration: Duration) {
    use opcua::client::{ClientBuilder, DataChangeCallback, IdentityToken};
    use opcua::crypto::SecurityPolicy;
    use opcua::server::address_space::Variable;
    use opcua::server::diagnostics::NamespaceMetadata;
    use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
    use opcua::server::{ServerBuilder, ANONYMOUS_USER_TOKEN_ID};
    use opcua::types::{
        DataValue, DateTime, MessageSecurityMode, MonitoredItemCreateRequest, NodeId,
        TimestampsToReturn,
    };

    let dir = std::env::temp_dir().join(format!("hydrowatch-bench-opcua-{}", std::process::id()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut builder = ServerBuilder::new()
        .application_name("bench")
        .application_uri("urn:hydrowatch:bench")
        .host("127.0.0.1")
        .port(port)
        .pki_dir(dir.join("server"))
        .create_sample_keypair(true)
        .discovery_urls(vec![format!("opc.tcp://127.0.0.1:{port}/")])
        .add_endpoint(
            "none",
            (
                "/",
                SecurityPolicy::None,
                MessageSecurityMode::None,
                &[ANONYMOUS_USER_TOKEN_ID] as &[&str],
            ),
        )
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: "urn:bench".into(),
                ..Default::default()
            },
            "bench",
        ));
    builder
        .limits_mut()
        .subscriptions
        .max_monitored_items_per_sub = 0;
    builder.limits_mut().subscriptions.max_queued_notifications = 100_000;
    let (server, handle) = builder.build().expect("server");
    let manager = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .expect("node manager");
    let ns = handle.get_namespace_index("urn:bench").expect("namespace");
    let ids: Vec<NodeId> = (0..items)
        .map(|i| NodeId::new(ns, format!("v{i}")))
        .collect();
    {
        let folder = NodeId::new(ns, "bench");
        let mut space = manager.address_space().write();
        space.add_folder(&folder, "bench", "bench", &NodeId::objects_folder_id());
        let variables: Vec<Variable> = ids
            .iter()
            .map(|id| Variable::new(id, "v", "v", 0.0f64))
            .collect();
        space.add_variables(variables, &folder);
    }
    let subscriptions = handle.subscriptions().clone();
    let server_task = tokio::spawn(server.run_with(listener));
    let writer_ids = ids.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut k = 0f64;
        loop {
            tick.tick().await;
            k += 1.0;
            let _ = manager.set_values(
                &subscriptions,
                writer_ids
                    .iter()
                    .map(|id| (id, None, DataValue::new_now(k))),
            );
        }
    });

    let mut client = ClientBuilder::new()
        .application_name("bench client")
        .application_uri("urn:hydrowatch:bench-client")
        .pki_dir(dir.join("client"))
        .create_sample_keypair(true)
        .trust_server_certs(true)
        .session_retry_limit(3)
        .client()
        .expect("client");
    let (session, event_loop) = client
        .connect_to_matching_endpoint(
            (
                format!("opc.tcp://127.0.0.1:{port}/").as_str(),
                SecurityPolicy::None.to_str(),
                MessageSecurityMode::None,
            ),
            IdentityToken::Anonymous,
        )
        .await
        .expect("session");
    let events = event_loop.spawn();
    session.wait_for_connection().await;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let sink = latencies.clone();
    let subscription = session
        .create_subscription(
            Duration::from_millis(100),
            600,
            20,
            // A publish of 5,000 changes exceeds the message size; let the
            // server split them (it flags that more are waiting).
            1_000,
            0,
            true,
            DataChangeCallback::new(move |value, _item| {
                if let Some(ts) = value.source_timestamp {
                    let ms = (DateTime::now().ticks() - ts.ticks()) as f64 / 10_000.0;
                    if let Ok(mut l) = sink.lock() {
                        l.push(ms);
                    }
                }
            }),
        )
        .await
        .expect("subscription");
    for chunk in ids.chunks(1000) {
        let requests: Vec<MonitoredItemCreateRequest> = chunk
            .iter()
            .map(|id| {
                let mut r = MonitoredItemCreateRequest::from(id.clone());
                r.requested_parameters.sampling_interval = 100.0;
                r.requested_parameters.queue_size = 1;
                r
            })
            .collect();
        session
            .create_monitored_items(subscription, TimestampsToReturn::Both, requests)
            .await
            .expect("monitored items");
    }
    // Let the initial values pass, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    latencies.lock().map(|mut l| l.clear()).ok();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let mut got = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    got.sort_by(f64::total_cmp);
    println!(
        "OPC-UA, {items:>5} monitored items in one session (changing every 100 ms): {:>8.0} notifications/s, \
         update latency p50 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms, CPU {:>4.0} % (server included)",
        got.len() as f64 / elapsed.as_secs_f64(),
        percentile(&got, 0.5),
        percentile(&got, 0.99),
        got.last().copied().unwrap_or(f64::NAN),
        cpu / elapsed.as_secs_f64() * 100.0,
    );
    assert!(!got.is_empty(), "no notifications arrived");
    let _ = session.disconnect().await;
    events.abort();
    writer.abort();
    handle.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server_task).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        one_connection(Framing::Tcp).await;
        one_connection(Framing::RtuOverTcp).await;
        let (simulators, connections, duration) = if QUICK {
            (2, 20, Duration::from_millis(500))
        } else {
            (20, 1_000, Duration::from_secs(10))
        };
        many_connections(simulators, connections, Duration::ZERO, duration).await;
        many_connections(
            simulators,
            connections,
            Duration::from_millis(500),
            duration,
        )
        .await;
        let sizes: &[usize] = if QUICK { &[50] } else { &[100, 1_000, 5_000] };
        for &items in sizes {
            opcua_items(
                items,
                if QUICK {
                    Duration::from_millis(500)
                } else {
                    Duration::from_secs(10)
                },
            )
            .await;
        }
    });
}
