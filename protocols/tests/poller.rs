//! The Modbus poller against the rig simulator and against misbehaving peers, over
//! real loopback sockets: every failure becomes quality, nothing hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use hydrowatch_models::Quality;
use hydrowatch_models::SensorId;
use hydrowatch_protocols::modbus::{
    rig_register_map, Framing, LinkState, ModbusPoller, PollerConfig, ReconnectPolicy,
    SimulatorHandle,
};
use hydrowatch_protocols::rig::{RigCondition, RigRecording};
use hydrowatch_protocols::{DataType, RegisterKind, RegisterMap, RegisterPoint};

fn config(addr: SocketAddr) -> PollerConfig {
    PollerConfig {
        addr,
        framing: Framing::Tcp,
        unit_id: 1,
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(200),
        max_registers_per_read: 125,
        max_bits_per_read: 2000,
        max_gap: 0,
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            multiplier: 2.0,
            jitter: 0.0,
        },
    }
}

async fn simulator() -> SimulatorHandle {
    SimulatorHandle::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(RigRecording::embedded()),
        RigCondition::Healthy,
        0.0,
    )
    .await
    .expect("simulator listens")
}

#[tokio::test]
async fn reads_the_recorded_values_in_one_request() {
    let sim = simulator().await;
    let mut poller = ModbusPoller::new(config(sim.addr()), rig_register_map());
    assert_eq!(
        poller.requests_per_poll(),
        1,
        "17 f32 points and the cycle timer fit one read"
    );
    let outcome = poller.poll().await;
    assert_eq!(outcome.link, LinkState::Connected);
    assert_eq!(outcome.readings.len(), 18);
    assert!(
        outcome.readings.iter().all(|r| r.quality == Quality::Good),
        "{outcome:?}"
    );
    // The values are the recording's (f32 on the wire).
    let recording = RigRecording::embedded();
    let expected = recording.values_at(RigCondition::Healthy, 0.0);
    let ps1 = outcome.readings[0].value.unwrap();
    assert!(
        (ps1 - expected[0]).abs() < 20.0,
        "PS1 {ps1} near the recording's {}",
        expected[0]
    );
    let ts1 = outcome.readings[9].value.unwrap();
    assert!((30.0..60.0).contains(&ts1), "TS1 {ts1} °C");
}

#[tokio::test]
async fn exception_codes_become_bad_quality_with_the_reason() {
    let sim = simulator().await;
    // A point beyond what the device maps: the device answers "illegal data address".
    let mut points = rig_register_map().points;
    points.push(RegisterPoint {
        sensor: SensorId::parse("GHOST").unwrap(),
        unit: None,
        kind: RegisterKind::Holding,
        address: 500,
        data_type: DataType::U16,
        byte_order: Default::default(),
        word_order: Default::default(),
        scale: 1.0,
        offset: 0.0,
    });
    let mut poller = ModbusPoller::new(config(sim.addr()), RegisterMap::new(points).unwrap());
    let outcome = poller.poll().await;
    let ghost = outcome.readings.last().unwrap();
    assert_eq!(ghost.quality, Quality::Bad);
    assert!(
        ghost
            .reason
            .as_deref()
            .unwrap()
            .contains("exception 0x02 (illegal data address)"),
        "{ghost:?}"
    );
    // The rest of the device is still read, and the link stays up.
    assert!(outcome.readings[..17]
        .iter()
        .all(|r| r.quality == Quality::Good));
    assert_eq!(outcome.link, LinkState::Connected);
}

#[tokio::test]
async fn a_silent_device_times_out_holds_the_last_value_once_then_goes_bad() {
    let sim = simulator().await;
    // A proxy that forwards the very first request, then swallows everything, on
    // every connection (as a device whose firmware hung would).
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let upstream = sim.addr();
    let forwarded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = proxy.accept().await else {
                return;
            };
            let forwarded = forwarded.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 260];
                if !forwarded.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let mut device = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let n = client.read(&mut buf).await.unwrap_or(0);
                    tokio::io::AsyncWriteExt::write_all(&mut device, &buf[..n])
                        .await
                        .unwrap();
                    let m = device.read(&mut buf).await.unwrap_or(0);
                    tokio::io::AsyncWriteExt::write_all(&mut client, &buf[..m])
                        .await
                        .unwrap();
                }
                while client.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    let mut poller = ModbusPoller::new(config(proxy_addr), rig_register_map());
    let first = poller.poll().await;
    assert!(first.readings.iter().all(|r| r.quality == Quality::Good));

    let started = Instant::now();
    let second = poller.poll().await;
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "bounded by the request timeout"
    );
    assert_eq!(second.readings[0].quality, Quality::Uncertain);
    assert_eq!(
        second.readings[0].value, first.readings[0].value,
        "last value held"
    );
    assert!(second.readings[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("timeout"));
    assert_eq!(
        second.link,
        LinkState::Disconnected,
        "link dropped after a timeout"
    );

    // The next poll reconnects (through the proxy, which swallows again): bad, not
    // the held value a second time.
    let third = poller.poll().await;
    assert!(third.readings.iter().all(|r| r.quality != Quality::Good));
    let fourth = poller.poll().await;
    assert!(
        fourth
            .readings
            .iter()
            .all(|r| r.quality == Quality::Bad && r.value.is_none()),
        "{fourth:?}"
    );
}

#[tokio::test]
async fn a_dead_device_is_bad_and_reconnects_with_backoff_when_it_returns() {
    let mut sim = simulator().await;
    let mut poller = ModbusPoller::new(config(sim.addr()), rig_register_map());
    assert_eq!(poller.poll().await.link, LinkState::Connected);

    sim.stop().await;
    let mut saw_bad = false;
    for _ in 0..5 {
        let started = Instant::now();
        let outcome = poller.poll().await;
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "never hangs"
        );
        if outcome.readings.iter().all(|r| r.quality == Quality::Bad) {
            saw_bad = true;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(saw_bad);

    sim.restart().await.expect("listens again");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let outcome = poller.poll().await;
        if outcome.link == LinkState::Connected {
            assert!(outcome.reconnected, "counted as a reconnect");
            assert!(outcome.readings.iter().all(|r| r.quality == Quality::Good));
            break;
        }
        assert!(Instant::now() < deadline, "did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_condition_register_switches_the_replayed_condition() {
    use tokio_modbus::client::{tcp, Reader, Writer};
    let sim = simulator().await;
    let mut ctx = tcp::connect(sim.addr()).await.unwrap();
    let code = RigCondition::ValveLag.code();
    ctx.write_single_register(hydrowatch_protocols::modbus::CONDITION_REGISTER, code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.condition(), RigCondition::ValveLag);
    let read = ctx
        .read_holding_registers(hydrowatch_protocols::modbus::CONDITION_REGISTER, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, vec![code]);
    let bad = ctx
        .write_single_register(hydrowatch_protocols::modbus::CONDITION_REGISTER, 99)
        .await
        .unwrap();
    assert!(
        bad.is_err(),
        "unknown condition code refused with an exception"
    );
}

#[tokio::test]
async fn a_device_that_accepts_but_never_answers_is_not_reconnected_every_poll() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while socket.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    let mut poller = ModbusPoller::new(config(addr), rig_register_map());
    for _ in 0..8 {
        let outcome = poller.poll().await;
        assert!(outcome.readings.iter().all(|r| r.quality != Quality::Good));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        n <= 4,
        "{n} connections for 8 polls: backoff must apply to a link that never answered"
    );
}
