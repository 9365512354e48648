//! Every fault the rig simulator can inject, against the poller, over real
//! loopback sockets, in both framings (Modbus TCP and RTU over TCP): no poll
//! outlasts its timeouts, the quality says what happened, nothing wrong is
//! ever decoded as a value, and data comes back once the fault clears.
//! Also: unit ids, coils and discrete inputs, verified writes, and an
//! independent Modbus implementation (tokio-modbus) reading the simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hydrowatch_models::{Quality, SensorId};
use hydrowatch_protocols::modbus::codec::{Request, Response};
use hydrowatch_protocols::modbus::{
    rig_register_map, Framing, LinkState, ModbusFaults, ModbusPoller, PollOutcome, PollerConfig,
    ReconnectPolicy, SimulatorHandle, SimulatorOptions, WriteError, CONDITION_REGISTER,
    SETPOINT_REGISTERS,
};
use hydrowatch_protocols::rig::{RigCondition, RigRecording};
use hydrowatch_protocols::{
    ByteOrder, DataType, RegisterKind, RegisterMap, RegisterPoint, WordOrder,
};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const BOTH: [Framing; 2] = [Framing::Tcp, Framing::RtuOverTcp];

fn config(addr: SocketAddr, framing: Framing) -> PollerConfig {
    PollerConfig {
        addr,
        framing,
        unit_id: 1,
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        max_registers_per_read: 125,
        max_bits_per_read: 2000,
        max_gap: 0,
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: 0.0,
        },
    }
}

async fn simulator(framing: Framing, units: Vec<u8>, faults: ModbusFaults) -> SimulatorHandle {
    SimulatorHandle::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(RigRecording::embedded()),
        SimulatorOptions {
            framing,
            units,
            faults,
            ..SimulatorOptions::default()
        },
    )
    .await
    .expect("simulator listens")
}

/// Polls once and checks the poll ended within its bound (a connect and one
/// request timeout per request, plus scheduling slack) and that nothing
/// wrongly decoded is passed on.
async fn bounded_poll(poller: &mut ModbusPoller) -> PollOutcome {
    let bound = CONNECT_TIMEOUT + REQUEST_TIMEOUT * poller.requests_per_poll() as u32;
    let started = Instant::now();
    let outcome = poller.poll().await;
    let took = started.elapsed();
    assert!(
        took < bound + Duration::from_millis(400),
        "a poll took {took:?}, beyond its bound {bound:?}"
    );
    nothing_wrong_decoded(&outcome);
    outcome
}

fn all_good(outcome: &PollOutcome) -> bool {
    outcome.readings.iter().all(|r| r.quality == Quality::Good)
}

/// No reading may carry a value that was not read right: only good readings
/// and last values held as uncertain have one.
fn nothing_wrong_decoded(outcome: &PollOutcome) {
    for r in &outcome.readings {
        match r.quality {
            Quality::Good => {}
            Quality::Uncertain => assert!(
                r.reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("last value held"),
                "{r:?}"
            ),
            _ => assert!(r.value.is_none(), "a bad reading with a value: {r:?}"),
        }
    }
}

/// The rig's pressures and temperatures are in their physical ranges: what a
/// wrongly decoded frame would not give.
fn plausible(outcome: &PollOutcome) {
    let ps1 = outcome.readings[0].value.expect("PS1 read");
    let ts1 = outcome.readings[9].value.expect("TS1 read");
    assert!((100.0..250.0).contains(&ps1), "PS1 = {ps1}");
    assert!((30.0..60.0).contains(&ts1), "TS1 = {ts1}");
}

/// Polls until every reading is good again, without restarting anything.
async fn recovers(poller: &mut ModbusPoller) -> PollOutcome {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let outcome = bounded_poll(poller).await;
        if all_good(&outcome) {
            plausible(&outcome);
            return outcome;
        }
        assert!(
            Instant::now() < deadline,
            "data did not resume: {:?}",
            outcome.error
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn healthy_poller(sim: &SimulatorHandle) -> ModbusPoller {
    let mut poller = ModbusPoller::new(config(sim.addr(), sim.framing()), rig_register_map());
    let first = bounded_poll(&mut poller).await;
    assert!(all_good(&first), "{:?}", first.error);
    plausible(&first);
    poller
}

/// A simulator in `framing`, a poller that has read it once correctly, and
/// then `faults` switched on.
async fn faulty(framing: Framing, faults: ModbusFaults) -> (SimulatorHandle, ModbusPoller) {
    let sim = simulator(framing, vec![1], ModbusFaults::default()).await;
    let poller = healthy_poller(&sim).await;
    sim.set_faults(faults).expect("valid faults");
    (sim, poller)
}

/// Clears the faults and waits for good data.
async fn cleared(sim: &SimulatorHandle, poller: &mut ModbusPoller) -> PollOutcome {
    sim.set_faults(ModbusFaults::default()).expect("no faults");
    recovers(poller).await
}

#[tokio::test]
async fn both_framings_read_the_rig() {
    for framing in BOTH {
        let sim = simulator(framing, vec![1], ModbusFaults::default()).await;
        let mut poller = healthy_poller(&sim).await;
        let outcome = bounded_poll(&mut poller).await;
        assert_eq!(outcome.link, LinkState::Connected, "{framing:?}");
        assert_eq!(outcome.counts.failures(), 0, "{framing:?}");
    }
}

#[tokio::test]
async fn latency_within_the_timeout_is_served_and_beyond_it_times_out() {
    for framing in BOTH {
        let (sim, mut poller) = faulty(
            framing,
            ModbusFaults {
                latency_ms: 50,
                ..Default::default()
            },
        )
        .await;
        let slow = bounded_poll(&mut poller).await;
        assert!(all_good(&slow), "{framing:?}: {:?}", slow.error);

        sim.set_faults(ModbusFaults {
            latency_ms: 400,
            ..Default::default()
        })
        .unwrap();
        let late = bounded_poll(&mut poller).await;
        assert_eq!(late.readings[0].quality, Quality::Uncertain, "{framing:?}");
        assert!(late.error.as_deref().unwrap().contains("timeout"));
        assert_eq!(late.counts.timeout, 1);
        assert_eq!(late.link, LinkState::Disconnected);

        let back = cleared(&sim, &mut poller).await;
        assert_eq!(back.link, LinkState::Connected);
    }
}

#[tokio::test]
async fn a_device_that_stops_answering_times_out_then_goes_bad() {
    for framing in BOTH {
        let (sim, mut poller) = faulty(
            framing,
            ModbusFaults {
                no_response: true,
                ..Default::default()
            },
        )
        .await;
        let held = bounded_poll(&mut poller).await;
        assert_eq!(held.readings[0].quality, Quality::Uncertain, "{framing:?}");
        let mut went_bad = false;
        for _ in 0..4 {
            let outcome = bounded_poll(&mut poller).await;
            went_bad |= outcome
                .readings
                .iter()
                .all(|r| r.quality == Quality::Bad && r.value.is_none());
        }
        assert!(went_bad, "{framing:?}: a held value is shown once only");
        cleared(&sim, &mut poller).await;
    }
}

#[tokio::test]
async fn a_dropped_connection_is_bad_and_reconnected() {
    for framing in BOTH {
        let (sim, mut poller) = faulty(
            framing,
            ModbusFaults {
                drop_connection: true,
                ..Default::default()
            },
        )
        .await;
        let dropped = bounded_poll(&mut poller).await;
        assert!(dropped.readings.iter().all(|r| r.quality == Quality::Bad));
        assert_eq!(dropped.counts.link, 1, "{framing:?}: {:?}", dropped.counts);
        assert!(dropped.error.as_deref().unwrap().contains("closed"));
        let connections = sim.stats().connections;

        let back = cleared(&sim, &mut poller).await;
        assert!(back.reconnected, "counted as a reconnect");
        assert!(sim.stats().connections > connections);
    }
}

#[tokio::test]
async fn a_link_made_again_by_a_read_is_reported_by_the_next_poll() {
    let (sim, mut poller) = faulty(
        Framing::Tcp,
        ModbusFaults {
            drop_connection: true,
            ..Default::default()
        },
    )
    .await;
    let dropped = bounded_poll(&mut poller).await;
    assert_eq!(dropped.counts.link, 1, "{:?}", dropped.counts);
    sim.set_faults(ModbusFaults::default()).expect("no faults");
    let connections = sim.stats().connections;

    // A setpoint read between polls makes the link again…
    let ps1 = rig_register_map().points[0].clone();
    let value = poller.read(&ps1).await.expect("read");
    assert!((100.0..250.0).contains(&value), "PS1 = {value}");
    assert_eq!(sim.stats().connections, connections + 1);
    // …and the next poll, finding it up, still says it was made again.
    let next = bounded_poll(&mut poller).await;
    assert!(all_good(&next), "{:?}", next.error);
    assert!(next.reconnected, "the reconnect is reported once");
    assert!(!bounded_poll(&mut poller).await.reconnected);
}

#[tokio::test]
async fn exception_codes_are_bad_with_the_code_and_keep_the_link() {
    for framing in BOTH {
        let sim = simulator(framing, vec![1], ModbusFaults::default()).await;
        let mut poller = healthy_poller(&sim).await;
        let connections = sim.stats().connections;
        for code in [0x04u8, 0x06, 0x0B] {
            sim.set_faults(ModbusFaults {
                exception: Some(code),
                ..Default::default()
            })
            .unwrap();
            let refused = bounded_poll(&mut poller).await;
            assert!(refused.readings.iter().all(|r| r.quality == Quality::Bad));
            let reason = refused.readings[0].reason.as_deref().unwrap();
            assert!(
                reason.contains(&format!("exception 0x{code:02X}")),
                "{reason}"
            );
            assert_eq!(refused.counts.exception, 1);
            assert_eq!(
                refused.link,
                LinkState::Connected,
                "an exception is an answer"
            );
        }
        cleared(&sim, &mut poller).await;
        assert_eq!(sim.stats().connections, connections, "never reconnected");
    }
}

#[tokio::test]
async fn garbage_is_never_decoded_and_the_link_is_rebuilt() {
    for framing in BOTH {
        let (sim, mut poller) = faulty(
            framing,
            ModbusFaults {
                garbage: true,
                ..Default::default()
            },
        )
        .await;
        for _ in 0..5 {
            let outcome = bounded_poll(&mut poller).await;
            assert!(!all_good(&outcome), "{framing:?}: garbage taken for data");
            assert!(
                outcome.counts.garbled + outcome.counts.timeout + outcome.counts.connect > 0
                    || outcome
                        .error
                        .as_deref()
                        .unwrap_or("")
                        .contains("reconnect in"),
                "{outcome:?}"
            );
        }
        cleared(&sim, &mut poller).await;
    }
}

#[tokio::test]
async fn garbage_on_modbus_tcp_is_recognised_at_once() {
    let sim = simulator(Framing::Tcp, vec![1], ModbusFaults::default()).await;
    let mut poller = healthy_poller(&sim).await;
    sim.set_faults(ModbusFaults {
        garbage: true,
        ..Default::default()
    })
    .unwrap();
    let outcome = bounded_poll(&mut poller).await;
    assert_eq!(outcome.counts.garbled, 1, "{outcome:?}");
    assert_eq!(outcome.link, LinkState::Disconnected);
    assert!(outcome.error.as_deref().unwrap().contains("garbled frame"));
}

#[tokio::test]
async fn truncated_frames_time_out_and_are_never_decoded() {
    for framing in BOTH {
        let (sim, mut poller) = faulty(
            framing,
            ModbusFaults {
                truncated: true,
                ..Default::default()
            },
        )
        .await;
        let cut = bounded_poll(&mut poller).await;
        assert_eq!(cut.counts.timeout, 1, "{framing:?}: {cut:?}");
        assert_eq!(cut.readings[0].quality, Quality::Uncertain);
        cleared(&sim, &mut poller).await;
    }
}

#[tokio::test]
async fn a_short_response_is_dropped_and_the_link_kept() {
    for framing in BOTH {
        let (sim, mut poller) = faulty(
            framing,
            ModbusFaults {
                short_response: true,
                ..Default::default()
            },
        )
        .await;
        let short = bounded_poll(&mut poller).await;
        assert!(short.readings.iter().all(|r| r.quality == Quality::Bad));
        assert!(
            short.readings[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("short response: 34 of 35 registers"),
            "{:?}",
            short.readings[0]
        );
        assert_eq!(short.counts.malformed, 1);
        assert_eq!(
            short.link,
            LinkState::Connected,
            "the frame itself was whole"
        );
        let back = cleared(&sim, &mut poller).await;
        assert!(!back.reconnected);
    }
}

#[tokio::test]
async fn a_stale_answer_is_discarded_and_the_right_one_decoded() {
    for framing in BOTH {
        // Unit 2 exists, so that on RTU the stray answer is a real neighbour's.
        let sim = simulator(framing, vec![1, 2], ModbusFaults::default()).await;
        let mut poller = healthy_poller(&sim).await;
        sim.set_faults(ModbusFaults {
            stale_transaction: true,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..3 {
            let outcome = bounded_poll(&mut poller).await;
            // The stale answer holds 0xDEAD in every register; decoded, PS1
            // would be -6.3e18 bar.
            assert!(all_good(&outcome), "{framing:?}: {:?}", outcome.error);
            plausible(&outcome);
            assert_eq!(outcome.counts.discarded, 1, "{framing:?}");
            assert_eq!(outcome.counts.failures(), 0);
        }
    }
}

#[tokio::test]
async fn faults_on_some_requests_degrade_only_those_polls() {
    let sim = simulator(
        Framing::Tcp,
        vec![1],
        ModbusFaults {
            probability: 0.5,
            exception: Some(0x06),
            ..Default::default()
        },
    )
    .await;
    let mut poller = ModbusPoller::new(config(sim.addr(), Framing::Tcp), rig_register_map());
    let (mut good, mut refused) = (0, 0);
    for _ in 0..60 {
        let outcome = bounded_poll(&mut poller).await;
        if all_good(&outcome) {
            good += 1;
        } else {
            assert_eq!(outcome.counts.exception, 1);
            refused += 1;
        }
    }
    // 60 draws at 1/2: both outcomes appear (a miss has odds of 2^-59).
    assert!(good > 0 && refused > 0, "{good} good, {refused} refused");
    assert_eq!(sim.stats().faulted, refused);
}

#[tokio::test]
async fn units_behind_one_gateway_are_read_apart() {
    for framing in BOTH {
        let sim = simulator(framing, vec![1, 2], ModbusFaults::default()).await;
        // The cycle timer of unit 1 and of unit 2 (7 s later in the recording),
        // and one of a unit that is not there.
        let timer = |unit: Option<u8>, name: &str| RegisterPoint {
            sensor: SensorId::parse(name).unwrap(),
            unit,
            kind: RegisterKind::Input,
            address: 34,
            data_type: DataType::U16,
            byte_order: ByteOrder::Big,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
        };
        let map = RegisterMap::new(vec![
            timer(None, "T1"),
            timer(Some(2), "T2"),
            timer(Some(9), "T9"),
        ])
        .unwrap();
        let mut poller = ModbusPoller::new(config(sim.addr(), framing), map);
        assert_eq!(poller.requests_per_poll(), 3, "one request per unit");
        let outcome = bounded_poll(&mut poller).await;
        let (t1, t2) = (
            outcome.readings[0].value.unwrap(),
            outcome.readings[1].value.unwrap(),
        );
        // 7 s apart; 8 when a replayed second ended between the two reads.
        let apart = (t2 - t1).rem_euclid(60.0);
        assert!(apart == 7.0 || apart == 8.0, "{framing:?}: {t1} {t2}");
        let absent = &outcome.readings[2];
        assert_eq!(absent.quality, Quality::Bad);
        match framing {
            // A TCP gateway says the unit did not answer.
            Framing::Tcp => assert!(
                absent.reason.as_deref().unwrap().contains("exception 0x0B"),
                "{absent:?}"
            ),
            // On a serial line an absent unit is silent.
            Framing::RtuOverTcp => assert!(
                absent.reason.as_deref().unwrap().contains("timeout"),
                "{absent:?}"
            ),
        }
    }
}

fn bit(name: &str, kind: RegisterKind, address: u16) -> RegisterPoint {
    RegisterPoint {
        sensor: SensorId::parse(name).unwrap(),
        unit: None,
        kind,
        address,
        data_type: DataType::Bool,
        byte_order: ByteOrder::Big,
        word_order: WordOrder::Big,
        scale: 1.0,
        offset: 0.0,
    }
}

fn holding(
    name: &str,
    address: u16,
    data_type: DataType,
    order: (ByteOrder, WordOrder),
) -> RegisterPoint {
    RegisterPoint {
        sensor: SensorId::parse(name).unwrap(),
        unit: None,
        kind: RegisterKind::Holding,
        address,
        data_type,
        byte_order: order.0,
        word_order: order.1,
        scale: 1.0,
        offset: 0.0,
    }
}

#[tokio::test]
async fn coils_and_discrete_inputs_are_read_and_coils_written_with_read_back() {
    for framing in BOTH {
        let sim = simulator(framing, vec![1], ModbusFaults::default()).await;
        let map = RegisterMap::new(vec![
            bit("COOLER_ON", RegisterKind::Coil, 0),
            bit("SPARE", RegisterKind::Coil, 5),
            bit("PRESSURISED", RegisterKind::DiscreteInput, 0),
            bit("DEGRADED", RegisterKind::DiscreteInput, 2),
        ])
        .unwrap();
        let mut poller = ModbusPoller::new(config(sim.addr(), framing), map);
        let values = |o: &PollOutcome| o.readings.iter().map(|r| r.value).collect::<Vec<_>>();
        let outcome = bounded_poll(&mut poller).await;
        assert!(all_good(&outcome), "{:?}", outcome.error);
        assert_eq!(values(&outcome)[0], Some(1.0), "the cooler is on at start");
        assert_eq!(values(&outcome)[1], Some(0.0));
        assert_eq!(values(&outcome)[3], Some(0.0), "healthy");

        let written = poller
            .write(&bit("SPARE", RegisterKind::Coil, 5), 1.0)
            .await
            .expect("verified");
        assert_eq!(written.read_back, 1.0);
        sim.set_condition(RigCondition::PumpLeakage);
        let outcome = bounded_poll(&mut poller).await;
        assert_eq!(values(&outcome)[1], Some(1.0));
        assert_eq!(
            values(&outcome)[3],
            Some(1.0),
            "a degraded component is flagged"
        );

        assert_eq!(
            poller
                .write(&bit("PRESSURISED", RegisterKind::DiscreteInput, 0), 1.0)
                .await,
            Err(WriteError::NotWritable(RegisterKind::DiscreteInput))
        );
        assert!(matches!(
            poller
                .write(&bit("SPARE", RegisterKind::Coil, 5), 0.5)
                .await,
            Err(WriteError::NotRepresentable { .. })
        ));
    }
}

#[tokio::test]
async fn setpoints_are_written_in_every_order_and_read_back() {
    use hydrowatch_protocols::Endianness::*;
    for framing in BOTH {
        let sim = simulator(framing, vec![1], ModbusFaults::default()).await;
        let mut poller = ModbusPoller::new(config(sim.addr(), framing), rig_register_map());
        let base = SETPOINT_REGISTERS.start;
        for order in [Abcd, Cdab, Badc, Dcba] {
            for (data_type, value) in [
                (DataType::F32, 142.5),
                (DataType::I32, -70_000.0),
                (DataType::U64, 9_007_199_254_740_000.0),
                (DataType::F64, -0.125),
                (DataType::U16, 65_535.0),
            ] {
                let point = holding("SP", base + 4, data_type, order.orders());
                let done = poller
                    .write(&point, value)
                    .await
                    .unwrap_or_else(|e| panic!("{framing:?} {order:?} {data_type:?}: {e}"));
                assert_eq!(done.read_back, value, "{framing:?} {order:?} {data_type:?}");
                assert_eq!(done.registers, point.encode(value));
            }
        }
        // The process image is read-only: the device refuses, nothing is claimed.
        let image = holding("PS1", 0, DataType::F32, ABCD);
        assert_eq!(
            poller.write(&image, 1.0).await,
            Err(WriteError::Exception(0x02))
        );
        // A condition code the device does not know.
        let condition = holding("COND", CONDITION_REGISTER, DataType::U16, ABCD);
        assert_eq!(
            poller.write(&condition, 99.0).await,
            Err(WriteError::Exception(0x03))
        );
        assert_eq!(poller.write(&condition, 3.0).await.unwrap().read_back, 3.0);
        assert_eq!(sim.condition(), RigCondition::PumpLeakage);
        // Out of the type's range: refused before anything is sent.
        let requests = sim.stats().requests;
        let small = holding("SP", base, DataType::U16, ABCD);
        assert!(matches!(
            poller.write(&small, 70_000.0).await,
            Err(WriteError::NotRepresentable { .. })
        ));
        assert!(matches!(
            poller.write(&small, -1.0).await,
            Err(WriteError::NotRepresentable { .. })
        ));
        assert_eq!(sim.stats().requests, requests);
    }
}

const ABCD: (ByteOrder, WordOrder) = (ByteOrder::Big, WordOrder::Big);

#[tokio::test]
async fn a_write_the_device_acknowledges_but_does_not_hold_is_not_verified() {
    // A device that acknowledges every write and reads back zeros (a PLC
    // program overwriting the register, a write-protected area).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = socket.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Ok(Some(frame)) = Framing::Tcp.take(&mut buf, false) {
                let request = Request::decode(&frame.pdu).unwrap();
                let answer = match &request {
                    Request::ReadHoldingRegisters { count, .. } => {
                        Ok(Response::Registers(vec![0; *count as usize]))
                    }
                    _ => Ok(Response::Written),
                };
                let mut pdu = Vec::new();
                request.encode_answer(&answer, &mut pdu);
                let mut out = Vec::new();
                Framing::Tcp.encode(frame.transaction, frame.unit, &pdu, &mut out);
                socket.write_all(&out).await.unwrap();
            }
        }
    });
    let mut poller = ModbusPoller::new(config(addr, Framing::Tcp), rig_register_map());
    let point = holding("SP", 1100, DataType::F32, ABCD);
    assert_eq!(
        poller.write(&point, 160.0).await,
        Err(WriteError::NotVerified {
            written: point.encode(160.0),
            read_back: vec![0, 0],
        })
    );
}

#[tokio::test]
async fn an_independent_modbus_client_reads_the_simulator_in_both_framings() {
    use tokio_modbus::client::{rtu, tcp, Reader};
    use tokio_modbus::Slave;
    for framing in BOTH {
        let sim = simulator(framing, vec![3], ModbusFaults::default()).await;
        let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
        let mut ctx = match framing {
            Framing::Tcp => tcp::attach_slave(stream, Slave(3)),
            Framing::RtuOverTcp => rtu::attach_slave(stream, Slave(3)),
        };
        let regs = ctx
            .read_input_registers(0, 35)
            .await
            .expect("transport ok")
            .expect("no exception");
        let ps1 = f32::from_bits(((regs[0] as u32) << 16) | regs[1] as u32);
        assert!((100.0..250.0).contains(&ps1), "{framing:?}: PS1 = {ps1}");
        assert!(regs[34] < 60, "cycle timer {}", regs[34]);
        let coils = ctx.read_coils(0, 16).await.unwrap().unwrap();
        assert_eq!(coils.len(), 16);
        assert!(coils[0]);
        let refused = ctx.read_holding_registers(40, 2).await.unwrap();
        assert!(refused.is_err(), "an unmapped address is an exception");
    }
}
