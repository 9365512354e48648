//! A Modbus TCP server that behaves like the hydraulic rig's PLC, replaying real
//! recorded cycles: its registers change once per recorded second (as a PLC
//! updating its process image at 1 Hz), and one more register holds the
//! cycle timer, the second into the running load cycle, so a client can
//! place each read in its cycle.

use std::future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};

use hydrowatch_models::SensorId;

use crate::register::{
    ByteOrder, DataType, RegisterKind, RegisterMap, RegisterPoint, WordOrder,
    MAX_REGISTERS_PER_READ,
};
use crate::rig::{RigCondition, RigRecording, CYCLE_SECS, SENSORS};

/// Holding register holding the replayed condition's code; writable, so any
/// Modbus client can switch the condition (see [`RigCondition::code`]).
pub const CONDITION_REGISTER: u16 = 1000;

/// Holding register of the cycle timer: seconds into the running load cycle
/// (`u16`, 0–59).
pub const CYCLE_TIMER_REGISTER: u16 = 34;

/// Sensor id of the cycle timer in [`rig_register_map`].
pub const CYCLE_TIMER_SENSOR: &str = "CYC";

/// The register map of a simulated rig: the 17 sensors as `f32` ABCD at
/// holding (and input) registers 0, 2, 4, … 32, then the cycle timer
/// (`u16`) at [`CYCLE_TIMER_REGISTER`].
pub fn rig_register_map() -> RegisterMap {
    let mut points: Vec<RegisterPoint> = SENSORS
        .iter()
        .enumerate()
        .map(|(i, name)| RegisterPoint {
            sensor: SensorId::parse(name).expect("rig sensor names are valid ids"),
            kind: RegisterKind::Holding,
            address: (i * 2) as u16,
            data_type: DataType::F32,
            byte_order: ByteOrder::Big,
            word_order: WordOrder::Big,
            scale: 1.0,
            offset: 0.0,
        })
        .collect();
    points.push(RegisterPoint {
        sensor: SensorId::parse(CYCLE_TIMER_SENSOR).expect("a valid id"),
        kind: RegisterKind::Holding,
        address: CYCLE_TIMER_REGISTER,
        data_type: DataType::U16,
        byte_order: ByteOrder::Big,
        word_order: WordOrder::Big,
        scale: 1.0,
        offset: 0.0,
    });
    RegisterMap { points }
}

struct Device {
    recording: Arc<RigRecording>,
    /// Register layout, indexed like [`SENSORS`].
    map: RegisterMap,
    condition: Arc<AtomicU16>,
    epoch: Instant,
    /// Seconds added to the replay clock, so rigs do not run in lockstep.
    phase: f64,
    /// Recorded seconds replayed per wall-clock second.
    speed: f64,
}

impl Device {
    fn registers(
        &self,
        kind: RegisterKind,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > MAX_REGISTERS_PER_READ {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let end = start as u32 + count as u32;
        if kind == RegisterKind::Holding && start == CONDITION_REGISTER && count == 1 {
            return Ok(vec![self.condition.load(Ordering::Relaxed)]);
        }
        let mapped_end = self.map.points.iter().map(|p| p.end()).max().unwrap_or(0);
        if end > mapped_end {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let condition = RigCondition::from_code(self.condition.load(Ordering::Relaxed))
            .unwrap_or(RigCondition::Healthy);
        // The process image changes once per recorded second.
        let t = (self.epoch.elapsed().as_secs_f64() * self.speed + self.phase).floor();
        let recorded = self.recording.values_at(condition, t);
        let timer = t.rem_euclid(CYCLE_SECS as f64);
        let mut out = vec![0u16; count as usize];
        for (i, point) in self.map.points.iter().enumerate() {
            let value = recorded.get(i).copied().unwrap_or(timer);
            let regs = point.encode(value);
            for (k, word) in regs.into_iter().enumerate() {
                let addr = point.address as u32 + k as u32;
                if addr >= start as u32 && addr < end {
                    out[(addr - start as u32) as usize] = word;
                }
            }
        }
        Ok(out)
    }

    fn call(&self, request: Request<'static>) -> Result<Response, ExceptionCode> {
        match request {
            Request::ReadHoldingRegisters(start, count) => self
                .registers(RegisterKind::Holding, start, count)
                .map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(start, count) => self
                .registers(RegisterKind::Input, start, count)
                .map(Response::ReadInputRegisters),
            Request::WriteSingleRegister(CONDITION_REGISTER, code) => {
                if RigCondition::from_code(code).is_none() {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                self.condition.store(code, Ordering::Relaxed);
                Ok(Response::WriteSingleRegister(CONDITION_REGISTER, code))
            }
            Request::WriteSingleRegister(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

struct Service(Arc<Device>);

impl tokio_modbus::server::Service for Service {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        future::ready(self.0.call(request))
    }
}

/// A running simulator; dropping the handle stops it.
pub struct SimulatorHandle {
    addr: SocketAddr,
    device: Arc<Device>,
    task: Option<JoinHandle<()>>,
}

impl SimulatorHandle {
    /// Starts a simulator of one rig on `addr` (port 0 picks a free port),
    /// replaying in real time.
    pub async fn start(
        addr: SocketAddr,
        recording: Arc<RigRecording>,
        condition: RigCondition,
        phase_secs: f64,
    ) -> std::io::Result<Self> {
        Self::start_with_speed(addr, recording, condition, phase_secs, 1.0).await
    }

    /// Starts a simulator that replays `speed` recorded seconds per second
    /// (faster than real time for tests and demos; must be > 0).
    pub async fn start_with_speed(
        addr: SocketAddr,
        recording: Arc<RigRecording>,
        condition: RigCondition,
        phase_secs: f64,
        speed: f64,
    ) -> std::io::Result<Self> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("simulator speed {speed}: must be a number > 0"),
            ));
        }
        let device = Arc::new(Device {
            recording,
            map: rig_register_map(),
            condition: Arc::new(AtomicU16::new(condition.code())),
            epoch: Instant::now(),
            phase: phase_secs,
            speed,
        });
        let mut handle = Self {
            addr,
            device,
            task: None,
        };
        handle.listen(addr).await?;
        Ok(handle)
    }

    async fn listen(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.addr = listener.local_addr()?;
        let device = self.device.clone();
        let server = Server::new(listener);
        let addr = self.addr;
        self.task = Some(tokio::spawn(async move {
            let new_service = move |_peer| Ok(Some(Service(device.clone())));
            let on_connected = |stream, peer| {
                let result = accept_tcp_connection(stream, peer, &new_service);
                async move { result }
            };
            let on_error = |err| tracing::debug!(error = %err, "simulator connection ended");
            if let Err(err) = server.serve(&on_connected, on_error).await {
                tracing::warn!(simulator = %addr, error = %err, "simulator stopped");
            }
        }));
        tracing::info!(simulator = %self.addr, "rig simulator listening");
        Ok(())
    }

    /// Where the simulator listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The condition being replayed.
    pub fn condition(&self) -> RigCondition {
        RigCondition::from_code(self.device.condition.load(Ordering::Relaxed))
            .unwrap_or(RigCondition::Healthy)
    }

    /// Switches the replayed condition.
    pub fn set_condition(&self, condition: RigCondition) {
        self.device
            .condition
            .store(condition.code(), Ordering::Relaxed);
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
