//! Polls and writes one Modbus device (Modbus TCP, or RTU framing through a
//! serial gateway) through a register map.
//!
//! Every request is wrapped in a timeout; a link that failed is dropped and
//! rebuilt with exponential backoff and jitter; an answer is decoded only when
//! it answers the request that is waiting (transaction id, unit, function and
//! length match); every failure ends up as sample quality and in the error
//! counts, never as a value.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use hydrowatch_models::{Quality, Reading};

use super::codec::{exception_name, Answer, FrameError, Framing, Request, Response};
use crate::poll::{ErrorCounts, LinkState, PollOutcome, ReconnectPolicy};
use crate::register::{DataType, ReadBlock, RegisterKind, RegisterMap, RegisterPoint};

/// How to talk to one device.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// Device (or gateway) address.
    pub addr: SocketAddr,
    /// Modbus TCP or RTU frames over TCP.
    pub framing: Framing,
    /// Modbus unit id of points that name none.
    pub unit_id: u8,
    /// Limit for connecting.
    pub connect_timeout: Duration,
    /// Limit for each request.
    pub request_timeout: Duration,
    /// Largest register read the device accepts.
    pub max_registers_per_read: u16,
    /// Largest coil / discrete-input read the device accepts.
    pub max_bits_per_read: u16,
    /// Largest gap of unused registers worth reading to save a request.
    pub max_gap: u16,
    pub reconnect: ReconnectPolicy,
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("link error: {0}")]
    Io(#[from] std::io::Error),
    /// The device closed the connection.
    #[error("link error: the device closed the connection")]
    Closed,
    /// The bytes that came back were not a usable answer.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// One open connection to a device: sends a request and waits for the answer
/// that belongs to it. Not cancel-safe in the middle of a call: after a
/// timeout, drop it.
pub struct ModbusLink {
    stream: TcpStream,
    framing: Framing,
    buf: Vec<u8>,
    next_transaction: u16,
    discarded: u64,
}

impl ModbusLink {
    /// Connects (no timeout of its own; wrap it).
    pub async fn connect(addr: SocketAddr, framing: Framing) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            framing,
            buf: Vec::with_capacity(300),
            next_transaction: 1,
            discarded: 0,
        })
    }

    /// Answers to other transactions or units discarded since the last call.
    pub fn take_discarded(&mut self) -> u64 {
        std::mem::take(&mut self.discarded)
    }

    /// Sends `request` to `unit` and returns its answer; an answer to another
    /// transaction (TCP) or unit is discarded and the wait goes on.
    pub async fn call(&mut self, unit: u8, request: &Request) -> Result<Answer, LinkError> {
        // Bytes still buffered belong to no request that is waiting.
        if !self.buf.is_empty() {
            self.discarded += 1;
            self.buf.clear();
        }
        let transaction = self.next_transaction;
        self.next_transaction = transaction.wrapping_add(1);
        let mut pdu = Vec::with_capacity(8);
        request.encode(&mut pdu);
        let mut frame = Vec::with_capacity(pdu.len() + 9);
        self.framing.encode(transaction, unit, &pdu, &mut frame);
        self.stream.write_all(&frame).await?;
        let mut chunk = [0u8; 512];
        loop {
            while let Some(frame) = self.framing.take(&mut self.buf, true)? {
                let ours = frame.unit == unit
                    && (self.framing == Framing::RtuOverTcp || frame.transaction == transaction);
                if !ours {
                    self.discarded += 1;
                    tracing::debug!(
                        transaction = frame.transaction,
                        expected = transaction,
                        unit = frame.unit,
                        "stray modbus answer discarded"
                    );
                    continue;
                }
                return Ok(request.decode_answer(&frame.pdu)?);
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A confirmed write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteOutcome {
    /// The engineering value asked for.
    pub requested: f64,
    /// The registers written (coils as 0/1).
    pub registers: Vec<u16>,
    /// The value read back after the write: what the device now holds.
    pub read_back: f64,
}

/// Why a write was not done or not confirmed (or an on-demand read failed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// Input registers and discrete inputs cannot be written.
    #[error("{0:?} points cannot be written")]
    NotWritable(RegisterKind),
    /// The value does not fit the point's type and scale.
    #[error("{value} cannot be written as {data_type:?} with scale {scale}: the device would hold {stored}")]
    NotRepresentable {
        /// The engineering value asked for.
        value: f64,
        /// The point's type.
        data_type: DataType,
        /// The point's scale.
        scale: f64,
        /// What would actually be stored.
        stored: f64,
    },
    /// The device answered with an exception.
    #[error("the device refused: modbus exception 0x{0:02X} ({name})", name = exception_name(*.0))]
    Exception(u8),
    /// No usable answer (connect failure, timeout, broken link or frame).
    #[error("{0}")]
    Link(String),
    /// The write was acknowledged but reading back shows other registers.
    #[error("read-back {read_back:04X?} differs from the written {written:04X?}")]
    NotVerified {
        /// What was written.
        written: Vec<u16>,
        /// What was read back.
        read_back: Vec<u16>,
    },
}

/// Polls one device; owns the connection.
pub struct ModbusPoller {
    config: PollerConfig,
    map: RegisterMap,
    plan: Vec<ReadBlock>,
    /// In a mutex only so the poller is `Sync` (ractor states must be); it is
    /// reached through `get_mut`, never locked.
    link: Option<std::sync::Mutex<ModbusLink>>,
    /// Last good value per point, held over a single missed poll as uncertain.
    last_values: Vec<Option<f64>>,
    /// Consecutive attempts that did not end in a good answer (backoff exponent).
    failed_attempts: u32,
    next_connect_at: Instant,
    ever_connected: bool,
    /// A link was made again (by a poll, a write or a read) and no poll has
    /// reported it yet.
    reconnect_unreported: bool,
    /// The current link has delivered at least one good answer.
    link_proven: bool,
    /// Stray answers discarded since the last poll reported them.
    discarded: u64,
}

/// The request that reads a block.
fn read_request(kind: RegisterKind, start: u16, count: u16) -> Request {
    match kind {
        RegisterKind::Holding => Request::ReadHoldingRegisters { start, count },
        RegisterKind::Input => Request::ReadInputRegisters { start, count },
        RegisterKind::Coil => Request::ReadCoils { start, count },
        RegisterKind::DiscreteInput => Request::ReadDiscreteInputs { start, count },
    }
}

/// How one request ended, classified.
enum Failure {
    Exception(u8),
    Malformed(String),
    /// The link cannot be used any more.
    Broken {
        garbled: bool,
        message: String,
    },
    Timeout,
}

impl ModbusPoller {
    /// A poller that connects on its first poll.
    pub fn new(config: PollerConfig, map: RegisterMap) -> Self {
        let plan = map.read_plan(
            config.max_registers_per_read,
            config.max_bits_per_read,
            config.max_gap,
        );
        let n = map.points.len();
        Self {
            config,
            map,
            plan,
            link: None,
            last_values: vec![None; n],
            failed_attempts: 0,
            next_connect_at: Instant::now(),
            ever_connected: false,
            reconnect_unreported: false,
            link_proven: false,
            discarded: 0,
        }
    }

    /// Number of requests one poll takes.
    pub fn requests_per_poll(&self) -> usize {
        self.plan.len()
    }

    /// The device address.
    pub fn addr(&self) -> SocketAddr {
        self.config.addr
    }

    /// Sends one request on the current link within the request timeout.
    async fn request(&mut self, unit: u8, request: &Request) -> Result<Response, Failure> {
        let Some(link) = self.link.as_mut().and_then(|l| l.get_mut().ok()) else {
            return Err(Failure::Broken {
                garbled: false,
                message: "disconnected".into(),
            });
        };
        let result = timeout(self.config.request_timeout, link.call(unit, request)).await;
        self.discarded += link.take_discarded();
        match result {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(Failure::Exception(code)),
            Ok(Err(LinkError::Frame(FrameError::Malformed(m)))) => Err(Failure::Malformed(m)),
            Ok(Err(err)) => Err(Failure::Broken {
                garbled: matches!(err, LinkError::Frame(_)),
                message: err.to_string(),
            }),
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn ensure_link(&mut self) -> Result<(), String> {
        if self.link.is_some() {
            return Ok(());
        }
        let attempt = ModbusLink::connect(self.config.addr, self.config.framing);
        match timeout(self.config.connect_timeout, attempt).await {
            Ok(Ok(link)) => {
                self.link = Some(std::sync::Mutex::new(link));
                self.reconnect_unreported |= self.ever_connected;
                self.ever_connected = true;
                self.link_proven = false;
                tracing::info!(device = %self.config.addr, framing = ?self.config.framing, "modbus connected");
                Ok(())
            }
            Ok(Err(err)) => Err(format!("connect to {} failed: {err}", self.config.addr)),
            Err(_) => Err(format!(
                "connect to {} timed out after {} ms",
                self.config.addr,
                self.config.connect_timeout.as_millis()
            )),
        }
    }

    fn drop_link(&mut self) {
        self.link = None;
    }

    /// Reads every point once. Never blocks longer than the connect timeout plus
    /// one request timeout per block; never fails: problems become quality.
    pub async fn poll(&mut self) -> PollOutcome {
        let mut counts = ErrorCounts::default();
        if self.link.is_none() {
            let now = Instant::now();
            if now < self.next_connect_at {
                let wait = self.next_connect_at - now;
                return self.all_bad(
                    format!("disconnected; reconnect in {} ms", wait.as_millis()),
                    counts,
                );
            }
        }
        if let Err(err) = self.ensure_link().await {
            self.schedule_reconnect(false);
            counts.connect += 1;
            return self.all_bad(err, counts);
        }
        let reconnected = std::mem::take(&mut self.reconnect_unreported);

        let mut readings: Vec<Option<Reading>> = vec![None; self.map.points.len()];
        let mut first_error: Option<String> = None;
        let blocks = std::mem::take(&mut self.plan);
        let mut link_lost = false;
        for block in &blocks {
            if link_lost {
                self.fill_block(&mut readings, block, Quality::Bad, "disconnected");
                continue;
            }
            let unit = block.unit.unwrap_or(self.config.unit_id);
            let request = read_request(block.kind, block.start, block.count);
            let message = match self.request(unit, &request).await {
                Ok(response) => {
                    self.decode_block(&mut readings, block, &response.into_words());
                    self.link_proven = true;
                    self.failed_attempts = 0;
                    continue;
                }
                Err(Failure::Exception(code)) => {
                    counts.exception += 1;
                    let msg = format!("modbus exception 0x{code:02X} ({})", exception_name(code));
                    self.fill_block(&mut readings, block, Quality::Bad, &msg);
                    msg
                }
                Err(Failure::Malformed(msg)) => {
                    // The frame was whole: the link stays, this answer is dropped.
                    counts.malformed += 1;
                    self.fill_block(&mut readings, block, Quality::Bad, &msg);
                    msg
                }
                Err(Failure::Broken { garbled, message }) => {
                    if garbled {
                        counts.garbled += 1;
                    } else {
                        counts.link += 1;
                    }
                    self.fill_block(&mut readings, block, Quality::Bad, &message);
                    link_lost = true;
                    message
                }
                Err(Failure::Timeout) => {
                    // After a timeout a late answer could still arrive (and on RTU
                    // nothing tells it from the next one): drop the link and hold
                    // the last values one poll.
                    counts.timeout += 1;
                    let msg = format!(
                        "timeout after {} ms",
                        self.config.request_timeout.as_millis()
                    );
                    self.hold_block(&mut readings, block, &msg);
                    link_lost = true;
                    msg
                }
            };
            first_error.get_or_insert(message);
        }
        self.plan = blocks;
        counts.discarded += std::mem::take(&mut self.discarded);
        if link_lost {
            self.drop_link();
            // A link that worked gets one immediate retry; one that never answered
            // (a hung PLC, a full gateway) backs off.
            let immediate = std::mem::take(&mut self.link_proven);
            self.schedule_reconnect(immediate);
            tracing::warn!(device = %self.config.addr, error = first_error.as_deref().unwrap_or("-"), "modbus link dropped");
        }
        let readings = readings
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| self.reading(i, None, Quality::Bad, Some("not read".into())))
            })
            .collect();
        PollOutcome {
            readings,
            link: if self.link.is_some() {
                LinkState::Connected
            } else {
                LinkState::Disconnected
            },
            counts,
            reconnected,
            error: first_error,
        }
    }

    /// Writes `value` to `point` (a holding register or a coil, not
    /// necessarily one of the polled points) and reads it back: `Ok` only when
    /// the device holds exactly the registers written. Connects at once if
    /// the link is down (an operator is waiting), whatever the backoff says.
    pub async fn write(
        &mut self,
        point: &RegisterPoint,
        value: f64,
    ) -> Result<WriteOutcome, WriteError> {
        if !point.kind.is_writable() {
            return Err(WriteError::NotWritable(point.kind));
        }
        let registers = representable(point, value)?;
        self.ensure_link().await.map_err(WriteError::Link)?;
        let unit = point.unit.unwrap_or(self.config.unit_id);
        let (write, read_back) = match point.kind {
            RegisterKind::Coil => (
                Request::WriteSingleCoil {
                    address: point.address,
                    value: registers[0] != 0,
                },
                Request::ReadCoils {
                    start: point.address,
                    count: 1,
                },
            ),
            _ => (
                if registers.len() == 1 {
                    Request::WriteSingleRegister {
                        address: point.address,
                        value: registers[0],
                    }
                } else {
                    Request::WriteMultipleRegisters {
                        start: point.address,
                        values: registers.clone(),
                    }
                },
                Request::ReadHoldingRegisters {
                    start: point.address,
                    count: registers.len() as u16,
                },
            ),
        };
        self.write_request(unit, &write).await?;
        let held = self.write_request(unit, &read_back).await?.into_words();
        if held != registers {
            return Err(WriteError::NotVerified {
                written: registers,
                read_back: held,
            });
        }
        let read_back = point
            .decode(&held)
            .ok_or_else(|| WriteError::Link("undecodable read-back".into()))?;
        tracing::info!(device = %self.config.addr, unit, address = point.address, kind = ?point.kind, value, "modbus write verified");
        Ok(WriteOutcome {
            requested: value,
            registers,
            read_back,
        })
    }

    /// Reads one point now, outside the poll plan (a setpoint's current value).
    pub async fn read(&mut self, point: &RegisterPoint) -> Result<f64, WriteError> {
        self.ensure_link().await.map_err(WriteError::Link)?;
        let unit = point.unit.unwrap_or(self.config.unit_id);
        let request = read_request(point.kind, point.address, point.data_type.registers());
        let words = self.write_request(unit, &request).await?.into_words();
        point
            .decode(&words)
            .ok_or_else(|| WriteError::Link("undecodable registers".into()))
    }

    async fn write_request(&mut self, unit: u8, request: &Request) -> Result<Response, WriteError> {
        match self.request(unit, request).await {
            Ok(response) => Ok(response),
            Err(Failure::Exception(code)) => Err(WriteError::Exception(code)),
            Err(Failure::Malformed(m)) => Err(WriteError::Link(m)),
            Err(Failure::Broken { message, .. }) => {
                self.drop_link();
                Err(WriteError::Link(message))
            }
            Err(Failure::Timeout) => {
                self.drop_link();
                Err(WriteError::Link(format!(
                    "timeout after {} ms",
                    self.config.request_timeout.as_millis()
                )))
            }
        }
    }

    fn schedule_reconnect(&mut self, immediate: bool) {
        self.failed_attempts += 1;
        let delay = if immediate {
            Duration::ZERO
        } else {
            self.config.reconnect.delay(self.failed_attempts)
        };
        self.next_connect_at = Instant::now() + delay;
    }

    fn reading(
        &self,
        i: usize,
        value: Option<f64>,
        quality: Quality,
        reason: Option<String>,
    ) -> Reading {
        Reading {
            sensor: self.map.points[i].sensor.clone(),
            value,
            quality,
            reason,
        }
    }

    fn decode_block(&mut self, out: &mut [Option<Reading>], block: &ReadBlock, words: &[u16]) {
        for &i in &block.points {
            let p = &self.map.points[i];
            let from = (p.address - block.start) as usize;
            let to = from + p.data_type.registers() as usize;
            let value = words.get(from..to).and_then(|regs| p.decode(regs));
            out[i] = Some(match value {
                Some(v) if v.is_finite() => {
                    self.last_values[i] = Some(v);
                    self.reading(i, Some(v), Quality::Good, None)
                }
                Some(_) => self.reading(i, None, Quality::Bad, Some("not a finite number".into())),
                None => self.reading(i, None, Quality::Bad, Some("undecodable registers".into())),
            });
        }
    }

    fn fill_block(
        &mut self,
        out: &mut [Option<Reading>],
        block: &ReadBlock,
        quality: Quality,
        reason: &str,
    ) {
        for &i in &block.points {
            // A value is only ever held over the poll right after it was read.
            self.last_values[i] = None;
            out[i] = Some(self.reading(i, None, quality, Some(reason.to_owned())));
        }
    }

    /// Keeps the last good value as uncertain; it is dropped after being held
    /// once so an outage never shows an old value as current.
    fn hold_block(&mut self, out: &mut [Option<Reading>], block: &ReadBlock, reason: &str) {
        for &i in &block.points {
            let reading = match self.last_values[i].take() {
                Some(v) => self.reading(
                    i,
                    Some(v),
                    Quality::Uncertain,
                    Some(format!("{reason}; last value held")),
                ),
                None => self.reading(i, None, Quality::Bad, Some(reason.to_owned())),
            };
            out[i] = Some(reading);
        }
    }

    fn all_bad(&mut self, reason: String, counts: ErrorCounts) -> PollOutcome {
        self.last_values.iter_mut().for_each(|v| *v = None);
        let readings = (0..self.map.points.len())
            .map(|i| self.reading(i, None, Quality::Bad, Some(reason.clone())))
            .collect();
        PollOutcome {
            readings,
            link: LinkState::Disconnected,
            counts,
            reconnected: false,
            error: Some(reason),
        }
    }
}

/// The registers that hold `value` at `point`, if the point can hold it
/// exactly (a whole step of an integer type's scale, within a float's
/// precision, or 0/1 for a coil).
fn representable(point: &RegisterPoint, value: f64) -> Result<Vec<u16>, WriteError> {
    let registers = point.encode(value);
    let stored = point.decode(&registers).unwrap_or(f64::NAN);
    let tolerance = match point.data_type {
        DataType::F32 => value.abs() * 1e-6 + f64::from(f32::MIN_POSITIVE),
        DataType::F64 => value.abs() * 1e-12,
        DataType::Bool => 0.0,
        // An integer register holds whole steps of `scale`: a value between
        // two steps is refused rather than rounded behind the caller's back.
        _ => point.scale.abs() * 1e-6,
    };
    if !value.is_finite() || (stored - value).abs() > tolerance {
        return Err(WriteError::NotRepresentable {
            value,
            data_type: point.data_type,
            scale: point.scale,
            stored,
        });
    }
    Ok(registers)
}
