//! A Modbus server that behaves like the hydraulic rig's PLC, replaying real
//! recorded cycles: its registers change once per recorded second (as a PLC
//! updating its process image at 1 Hz), and one more register holds the
//! cycle timer, the second into the running load cycle, so a client can
//! place each read in its cycle.
//!
//! It speaks Modbus TCP or RTU frames over TCP (a serial gateway), serves one
//! or more unit ids, and can misbehave on demand ([`ModbusFaults`]): late or
//! missing answers, dropped connections, exception codes, garbage, truncated
//! or short frames and stale transaction ids, so that clients can be tested
//! against what field devices do.
//!
//! Its tables:
//! - holding and input registers 0–34: the 17 sensors (`f32`, ABCD) and the
//!   cycle timer ([`rig_register_map`]), read-only;
//! - holding register [`CONDITION_REGISTER`]: the replayed condition, writable;
//! - holding registers [`SETPOINT_REGISTERS`]: setpoints, writable and read
//!   back as written (1100–1101 the pump pressure setpoint, `f32` ABCD, 160
//!   bar at start; 1102 the cooler fan speed in %, `u16`, 100 at start);
//! - coils 0–15: writable bits (coil 0: cooler enabled, on at start);
//! - discrete inputs 0–7: 0 system pressurised (PS1 > 100 bar), 1 oil hot
//!   (TS1 > 50 °C), 2 a component degraded (the condition is not healthy).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use hydrowatch_models::SensorId;

use super::codec::{
    Answer, Framing, Request, Response, GATEWAY_TARGET_FAILED, ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
};
use crate::register::{ByteOrder, DataType, RegisterKind, RegisterMap, RegisterPoint, WordOrder};
use crate::rig::{Replay, RigCondition, RigRecording, SENSORS};

/// Holding register holding the replayed condition's code; writable, so any
/// Modbus client can switch the condition (see [`RigCondition::code`]).
pub const CONDITION_REGISTER: u16 = 1000;

/// Holding register of the cycle timer: seconds into the running load cycle
/// (`u16`, 0–59).
pub const CYCLE_TIMER_REGISTER: u16 = 34;

/// Sensor id of the cycle timer in [`rig_register_map`].
pub const CYCLE_TIMER_SENSOR: &str = "CYC";

/// Writable holding registers that hold what is written (setpoints).
pub const SETPOINT_REGISTERS: Range<u16> = 1100..1132;

/// Number of coils (0 …).
pub const COILS: u16 = 16;

/// Number of discrete inputs (0 …).
pub const DISCRETE_INPUTS: u16 = 8;

/// The register map of a simulated rig: the 17 sensors as `f32` ABCD at
/// holding (and input) registers 0, 2, 4, … 32, then the cycle timer
/// (`u16`) at [`CYCLE_TIMER_REGISTER`].
pub fn rig_register_map() -> RegisterMap {
    let point = |name: &str, address: u16, data_type: DataType| RegisterPoint {
        sensor: SensorId::parse(name).expect("rig sensor names are valid ids"),
        unit: None,
        kind: RegisterKind::Holding,
        address,
        data_type,
        byte_order: ByteOrder::Big,
        word_order: WordOrder::Big,
        scale: 1.0,
        offset: 0.0,
    };
    let mut points: Vec<RegisterPoint> = SENSORS
        .iter()
        .enumerate()
        .map(|(i, name)| point(name, (i * 2) as u16, DataType::F32))
        .collect();
    points.push(point(
        CYCLE_TIMER_SENSOR,
        CYCLE_TIMER_REGISTER,
        DataType::U16,
    ));
    RegisterMap { points }
}

/// Misbehaviour to inject, all off by default. Each request is hit with
/// probability `probability`; a hit request gets every fault that is set,
/// in the order of the fields (the latency first; a dropped connection or a
/// missing answer ends it there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModbusFaults {
    /// Share of requests hit, in `[0, 1]`.
    pub probability: f64,
    /// Added delay before answering, ms.
    pub latency_ms: u64,
    /// Close the connection instead of answering.
    pub drop_connection: bool,
    /// Never answer (the request times out at the client).
    pub no_response: bool,
    /// Answer with this exception code instead.
    pub exception: Option<u8>,
    /// Answer with random bytes instead.
    pub garbage: bool,
    /// Send only the first half of the answer, then nothing.
    pub truncated: bool,
    /// Answer a read with one register (or eight bits) fewer than asked for,
    /// in a well-formed frame.
    pub short_response: bool,
    /// First send an answer of another transaction (TCP) or unit (RTU)
    /// holding wrong values, then the right answer.
    pub stale_transaction: bool,
}

impl Default for ModbusFaults {
    fn default() -> Self {
        Self {
            probability: 1.0,
            latency_ms: 0,
            drop_connection: false,
            no_response: false,
            exception: None,
            garbage: false,
            truncated: false,
            short_response: false,
            stale_transaction: false,
        }
    }
}

impl ModbusFaults {
    /// Whether any fault is set.
    pub fn any(&self) -> bool {
        self.latency_ms > 0
            || self.drop_connection
            || self.no_response
            || self.exception.is_some()
            || self.garbage
            || self.truncated
            || self.short_response
            || self.stale_transaction
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!(
                "probability {}: must be within 0 and 1",
                self.probability
            ));
        }
        if matches!(self.exception, Some(0) | Some(0x80..=0xFF)) {
            return Err("exception: a code within 1 and 127".into());
        }
        if self.latency_ms > 60_000 {
            return Err("latency_ms: at most 60000".into());
        }
        Ok(())
    }
}

/// How a simulator is started.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Modbus TCP or RTU over TCP.
    pub framing: Framing,
    /// The unit ids it answers (each a rig of its own; at least one). With
    /// Modbus TCP, unit 0 and 255 reach the first.
    pub units: Vec<u8>,
    /// Recorded condition replayed at start.
    pub condition: RigCondition,
    /// Seconds into the recording to start at (each further unit 7 s later).
    pub phase_secs: f64,
    /// Recorded seconds replayed per second (> 0).
    pub speed: f64,
    /// Faults injected from the start.
    pub faults: ModbusFaults,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            framing: Framing::Tcp,
            units: vec![1],
            condition: RigCondition::Healthy,
            phase_secs: 0.0,
            speed: 1.0,
            faults: ModbusFaults::default(),
        }
    }
}

/// What a simulator has served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimulatorStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests received.
    pub requests: u64,
    /// Requests hit by a fault.
    pub faulted: u64,
}

struct Device {
    /// Phases differ between units, so rigs do not run in lockstep.
    replay: Replay,
    /// Register layout, indexed like [`SENSORS`].
    map: RegisterMap,
    /// One past the last register of `map`.
    image_end: usize,
    setpoints: Mutex<Vec<u16>>,
    coils: Mutex<Vec<bool>>,
}

impl Device {
    fn new(recording: Arc<RigRecording>, options: &SimulatorOptions, phase: f64) -> Self {
        let mut setpoints = vec![0u16; SETPOINT_REGISTERS.len()];
        setpoints[..2].copy_from_slice(&[
            (160f32.to_bits() >> 16) as u16,
            (160f32.to_bits() & 0xFFFF) as u16,
        ]);
        setpoints[2] = 100;
        let mut coils = vec![false; COILS as usize];
        coils[0] = true;
        let map = rig_register_map();
        Self {
            replay: Replay::new(recording, options.condition, phase, options.speed),
            image_end: map.points.iter().map(|p| p.end()).max().unwrap_or(0) as usize,
            map,
            setpoints: Mutex::new(setpoints),
            coils: Mutex::new(coils),
        }
    }

    fn image(&self) -> Vec<u16> {
        let now = self.replay.now();
        let (recorded, timer) = (now.values, f64::from(now.timer));
        let mut out = vec![0u16; self.image_end];
        for (i, point) in self.map.points.iter().enumerate() {
            let value = recorded.get(i).copied().unwrap_or(timer);
            for (k, word) in point.encode(value).into_iter().enumerate() {
                out[point.address as usize + k] = word;
            }
        }
        out
    }

    fn registers(&self, kind: RegisterKind, start: u16, count: u16) -> Answer {
        let range = start as usize..start as usize + count as usize;
        if range.end <= self.image_end {
            let mut image = self.image();
            image.truncate(range.end);
            image.drain(..range.start);
            return Ok(Response::Registers(image));
        }
        if kind == RegisterKind::Holding {
            if start == CONDITION_REGISTER && count == 1 {
                return Ok(Response::Registers(vec![self.replay.condition_code()]));
            }
            if let Some(at) = setpoint_range(start, count) {
                let held = self.setpoints.lock().map_err(|_| ILLEGAL_DATA_ADDRESS)?;
                return Ok(Response::Registers(held[at].to_vec()));
            }
        }
        Err(ILLEGAL_DATA_ADDRESS)
    }

    fn discrete_inputs(&self) -> Vec<bool> {
        let recorded = self.replay.now().values;
        let value = |name: &str| {
            SENSORS
                .iter()
                .position(|s| *s == name)
                .and_then(|i| recorded.get(i).copied())
                .unwrap_or(0.0)
        };
        let mut bits = vec![false; DISCRETE_INPUTS as usize];
        bits[0] = value("PS1") > 100.0;
        bits[1] = value("TS1") > 50.0;
        bits[2] = self.replay.condition() != RigCondition::Healthy;
        bits
    }

    fn bits(&self, kind: RegisterKind, start: u16, count: u16) -> Answer {
        let all = match kind {
            RegisterKind::Coil => self.coils.lock().map_err(|_| ILLEGAL_DATA_ADDRESS)?.clone(),
            _ => self.discrete_inputs(),
        };
        all.get(start as usize..start as usize + count as usize)
            .map(|b| Response::Bits(b.to_vec()))
            .ok_or(ILLEGAL_DATA_ADDRESS)
    }

    fn write_registers(&self, start: u16, values: &[u16]) -> Answer {
        if start == CONDITION_REGISTER && values.len() == 1 {
            let condition = RigCondition::from_code(values[0]).ok_or(ILLEGAL_DATA_VALUE)?;
            self.replay.set_condition(condition);
            return Ok(Response::Written);
        }
        let at = setpoint_range(start, values.len() as u16).ok_or(ILLEGAL_DATA_ADDRESS)?;
        let mut held = self.setpoints.lock().map_err(|_| ILLEGAL_DATA_ADDRESS)?;
        held[at].copy_from_slice(values);
        Ok(Response::Written)
    }

    fn write_coils(&self, start: u16, values: &[bool]) -> Answer {
        let mut coils = self.coils.lock().map_err(|_| ILLEGAL_DATA_ADDRESS)?;
        let slot = coils
            .get_mut(start as usize..start as usize + values.len())
            .ok_or(ILLEGAL_DATA_ADDRESS)?;
        slot.copy_from_slice(values);
        Ok(Response::Written)
    }

    fn call(&self, request: &Request) -> Answer {
        match request {
            Request::ReadHoldingRegisters { start, count } => {
                self.registers(RegisterKind::Holding, *start, *count)
            }
            Request::ReadInputRegisters { start, count } => {
                self.registers(RegisterKind::Input, *start, *count)
            }
            Request::ReadCoils { start, count } => self.bits(RegisterKind::Coil, *start, *count),
            Request::ReadDiscreteInputs { start, count } => {
                self.bits(RegisterKind::DiscreteInput, *start, *count)
            }
            Request::WriteSingleRegister { address, value } => {
                self.write_registers(*address, &[*value])
            }
            Request::WriteMultipleRegisters { start, values } => {
                self.write_registers(*start, values)
            }
            Request::WriteSingleCoil { address, value } => self.write_coils(*address, &[*value]),
            Request::WriteMultipleCoils { start, values } => self.write_coils(*start, values),
        }
    }
}

/// The indices into the setpoints of `count` registers from `start`, if all
/// of them are setpoints.
fn setpoint_range(start: u16, count: u16) -> Option<Range<usize>> {
    let end = start as u32 + count as u32;
    (start >= SETPOINT_REGISTERS.start && end <= SETPOINT_REGISTERS.end as u32).then(|| {
        let from = (start - SETPOINT_REGISTERS.start) as usize;
        from..from + count as usize
    })
}

struct Shared {
    framing: Framing,
    /// Units in the order given; the first answers unit 0 / 255 over TCP.
    units: Vec<(u8, Arc<Device>)>,
    by_unit: HashMap<u8, Arc<Device>>,
    faults: RwLock<ModbusFaults>,
    connections: AtomicU64,
    requests: AtomicU64,
    faulted: AtomicU64,
}

impl Shared {
    fn device(&self, unit: u8) -> Option<&Arc<Device>> {
        match (self.framing, unit) {
            (Framing::Tcp, 0 | 255) => self.units.first().map(|(_, d)| d),
            _ => self.by_unit.get(&unit),
        }
    }

    fn faults(&self) -> ModbusFaults {
        self.faults.read().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Serves one client connection until it closes or a fault drops it.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let framing = shared.framing;
    let mut buf: Vec<u8> = Vec::with_capacity(300);
    let mut chunk = [0u8; 512];
    let mut out: Vec<u8> = Vec::with_capacity(300);
    loop {
        let frame = match framing.take(&mut buf, false) {
            Ok(Some(frame)) => frame,
            Ok(None) => match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            },
            Err(err) => {
                // A device cannot answer what it cannot frame; it waits for
                // the next request.
                tracing::debug!(error = %err, "simulator dropped a garbled request");
                buf.clear();
                continue;
            }
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let faults = shared.faults();
        let hit = faults.any() && rand::random::<f64>() < faults.probability;
        if hit {
            shared.faulted.fetch_add(1, Ordering::Relaxed);
            if faults.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
            }
            if faults.drop_connection {
                return;
            }
            if faults.no_response {
                continue;
            }
        }
        let Some(device) = shared.device(frame.unit) else {
            // A serial unit that is not on the line stays silent; a TCP
            // gateway says so.
            if framing == Framing::Tcp {
                out.clear();
                let pdu = [
                    frame.pdu.first().copied().unwrap_or(0) | 0x80,
                    GATEWAY_TARGET_FAILED,
                ];
                framing.encode(frame.transaction, frame.unit, &pdu, &mut out);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            continue;
        };
        let (request, mut answer) = match Request::decode(&frame.pdu) {
            Ok(request) => {
                let answer = device.call(&request);
                (Some(request), answer)
            }
            Err(code) => (None, Err(code)),
        };
        if hit {
            if let Some(code) = faults.exception {
                answer = Err(code);
            }
            if faults.short_response {
                match &mut answer {
                    Ok(Response::Registers(words)) => {
                        words.pop();
                    }
                    Ok(Response::Bits(bits)) => bits.truncate(bits.len().saturating_sub(8)),
                    _ => {}
                }
            }
        }
        let mut pdu = Vec::with_capacity(260);
        match &request {
            Some(request) => request.encode_answer(&answer, &mut pdu),
            None => pdu.extend_from_slice(&[
                frame.pdu.first().copied().unwrap_or(0) | 0x80,
                answer.err().unwrap_or(ILLEGAL_DATA_VALUE),
            ]),
        }
        out.clear();
        if hit && faults.stale_transaction {
            // An answer of the request before, or of the unit next door,
            // with values that must never be taken for this one's.
            let mut stale = Vec::with_capacity(260);
            match &request {
                Some(
                    r @ (Request::ReadHoldingRegisters { count, .. }
                    | Request::ReadInputRegisters { count, .. }),
                ) => r.encode_answer(
                    &Ok(Response::Registers(vec![0xDEAD; *count as usize])),
                    &mut stale,
                ),
                _ => stale.extend_from_slice(&pdu),
            }
            framing.encode(
                frame.transaction.wrapping_sub(1),
                frame
                    .unit
                    .wrapping_add(if framing == Framing::Tcp { 0 } else { 1 }),
                &stale,
                &mut out,
            );
        }
        let from = out.len();
        framing.encode(frame.transaction, frame.unit, &pdu, &mut out);
        if hit && faults.garbage {
            out.truncate(from);
            let n = 8 + rand::random::<u8>() as usize % 16;
            out.extend((0..n).map(|_| rand::random::<u8>()));
            if framing == Framing::Tcp && out.len() > from + 3 {
                // A protocol id that is never 0.
                out[from + 2] = 0xFF;
            }
        }
        if hit && faults.truncated {
            let whole = out.len() - from;
            out.truncate(from + whole / 2);
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A running simulator; dropping the handle stops it.
pub struct SimulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl SimulatorHandle {
    /// Starts a Modbus TCP simulator of one rig (unit 1) on `addr` (port 0
    /// picks a free port), replaying in real time.
    pub async fn start(
        addr: SocketAddr,
        recording: Arc<RigRecording>,
        condition: RigCondition,
        phase_secs: f64,
    ) -> std::io::Result<Self> {
        Self::start_with_speed(addr, recording, condition, phase_secs, 1.0).await
    }

    /// Starts a Modbus TCP simulator that replays `speed` recorded seconds per
    /// second (faster than real time for tests and demos; must be > 0).
    pub async fn start_with_speed(
        addr: SocketAddr,
        recording: Arc<RigRecording>,
        condition: RigCondition,
        phase_secs: f64,
        speed: f64,
    ) -> std::io::Result<Self> {
        let options = SimulatorOptions {
            condition,
            phase_secs,
            speed,
            ..SimulatorOptions::default()
        };
        Self::start_with(addr, recording, options).await
    }

    /// Starts a simulator as `options` say.
    pub async fn start_with(
        addr: SocketAddr,
        recording: Arc<RigRecording>,
        options: SimulatorOptions,
    ) -> std::io::Result<Self> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        if !(options.speed.is_finite() && options.speed > 0.0) {
            return Err(invalid(format!(
                "simulator speed {}: must be a number > 0",
                options.speed
            )));
        }
        if options.units.is_empty() {
            return Err(invalid("simulator units: at least one".into()));
        }
        options.faults.validate().map_err(invalid)?;
        let units: Vec<(u8, Arc<Device>)> = options
            .units
            .iter()
            .enumerate()
            .map(|(i, &unit)| {
                let phase = options.phase_secs + 7.0 * i as f64;
                (
                    unit,
                    Arc::new(Device::new(recording.clone(), &options, phase)),
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            framing: options.framing,
            by_unit: units.iter().cloned().collect(),
            units,
            faults: RwLock::new(options.faults.clone()),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
        });
        let mut handle = Self {
            addr,
            shared,
            task: None,
        };
        handle.listen(addr).await?;
        Ok(handle)
    }

    async fn listen(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.addr = listener.local_addr()?;
        let shared = self.shared.clone();
        let addr = self.addr;
        self.task = Some(tokio::spawn(async move {
            // The connections live in the set: aborting this task (stop, drop)
            // closes every one of them, as a power-off would.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _peer)) => {
                            shared.connections.fetch_add(1, Ordering::Relaxed);
                            connections.spawn(serve_connection(stream, shared.clone()));
                        }
                        Err(err) => {
                            // Out of file descriptors and the like: pause, go on.
                            tracing::warn!(simulator = %addr, error = %err, "simulator accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        }));
        tracing::info!(simulator = %self.addr, framing = ?self.shared.framing, "rig simulator listening");
        Ok(())
    }

    /// Where the simulator listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn framing(&self) -> Framing {
        self.shared.framing
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The condition the first unit replays.
    pub fn condition(&self) -> RigCondition {
        self.shared
            .units
            .first()
            .map(|(_, d)| d.replay.condition())
            .unwrap_or(RigCondition::Healthy)
    }

    /// Switches the condition every unit replays.
    pub fn set_condition(&self, condition: RigCondition) {
        for (_, device) in &self.shared.units {
            device.replay.set_condition(condition);
        }
    }

    /// The faults being injected.
    pub fn faults(&self) -> ModbusFaults {
        self.shared.faults()
    }

    /// Replaces the faults being injected (`ModbusFaults::default()` clears them).
    pub fn set_faults(&self, faults: ModbusFaults) -> Result<(), String> {
        faults.validate()?;
        if let Ok(mut held) = self.shared.faults.write() {
            tracing::info!(simulator = %self.addr, ?faults, "simulator faults set");
            *held = faults;
        }
        Ok(())
    }

    /// What it has served.
    pub fn stats(&self) -> SimulatorStats {
        SimulatorStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
            faulted: self.shared.faulted.load(Ordering::Relaxed),
        }
    }

    /// Stops serving and drops every client connection, as a device power-off would.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same address after [`Self::stop`].
    pub async fn restart(&mut self) -> std::io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.listen(self.addr).await
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
