//! Polls one Modbus TCP device through a register map.
//!
//! tokio-modbus has neither timeouts nor reconnects: every request here is
//! wrapped in a timeout, a failed link is dropped and rebuilt with exponential
//! backoff and jitter, and every failure ends up as sample quality.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::Slave;

use hydrowatch_models::{Quality, Reading};

use crate::register::{ReadBlock, RegisterKind, RegisterMap};

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
    /// Growth factor.
    pub multiplier: f64,
    /// Relative random spread in `[0, 1]`.
    pub jitter: f64,
}

impl ReconnectPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32) as i32;
        let base =
            (self.initial.as_secs_f64() * self.multiplier.powi(exp)).min(self.max.as_secs_f64());
        let spread = base * self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

/// How to talk to one device.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// Device address.
    pub addr: SocketAddr,
    /// Modbus unit id.
    pub unit_id: u8,
    /// Limit for connecting.
    pub connect_timeout: Duration,
    /// Limit for each request.
    pub request_timeout: Duration,
    /// Largest read the device accepts, in registers.
    pub max_registers_per_read: u16,
    /// Largest gap of unused registers worth reading to save a request.
    pub max_gap: u16,
    /// Reconnect backoff.
    pub reconnect: ReconnectPolicy,
}

/// State of the link to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Connected and the last poll succeeded.
    Connected,
    /// Not connected; waiting for the next reconnect attempt.
    Disconnected,
}

/// What one poll produced.
#[derive(Debug, Clone)]
pub struct PollOutcome {
    /// One reading per point of the register map, in map order.
    pub readings: Vec<Reading>,
    /// Link state after the poll.
    pub link: LinkState,
    /// Requests that failed in this poll (timeouts, exceptions, I/O errors).
    pub errors: u32,
    /// Whether the link was re-established during this poll.
    pub reconnected: bool,
    /// The first error of the poll, for logs and health.
    pub error: Option<String>,
}

/// Polls one device; owns the connection.
pub struct ModbusPoller {
    config: PollerConfig,
    map: RegisterMap,
    plan: Vec<ReadBlock>,
    /// In a mutex only so the poller is `Sync` (ractor states must be); it is
    /// reached through `get_mut`, never locked.
    context: Option<tokio::sync::Mutex<Context>>,
    /// Last good value per point, held over a single missed poll as uncertain.
    last_values: Vec<Option<f64>>,
    /// Consecutive attempts that did not end in a good answer (backoff exponent).
    failed_attempts: u32,
    next_connect_at: Instant,
    ever_connected: bool,
    /// The current link has delivered at least one good answer.
    link_proven: bool,
}

impl ModbusPoller {
    /// A poller that connects on its first poll.
    pub fn new(config: PollerConfig, map: RegisterMap) -> Self {
        let plan = map.read_plan(config.max_registers_per_read, config.max_gap);
        let n = map.points.len();
        Self {
            config,
            map,
            plan,
            context: None,
            last_values: vec![None; n],
            failed_attempts: 0,
            next_connect_at: Instant::now(),
            ever_connected: false,
            link_proven: false,
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

    /// Reads every point once. Never blocks longer than the connect timeout plus
    /// one request timeout per block; never fails: problems become quality.
    pub async fn poll(&mut self) -> PollOutcome {
        let mut reconnected = false;
        if self.context.is_none() {
            let now = Instant::now();
            if now < self.next_connect_at {
                let wait = self.next_connect_at - now;
                return self.all_bad(
                    format!("disconnected; reconnect in {} ms", wait.as_millis()),
                    0,
                    false,
                );
            }
            match self.connect().await {
                Ok(ctx) => {
                    self.context = Some(tokio::sync::Mutex::new(ctx));
                    reconnected = self.ever_connected;
                    self.ever_connected = true;
                    self.link_proven = false;
                    tracing::info!(device = %self.config.addr, "modbus connected");
                }
                Err(err) => {
                    self.schedule_reconnect(false);
                    return self.all_bad(err, 1, false);
                }
            }
        }

        let mut readings: Vec<Option<Reading>> = vec![None; self.map.points.len()];
        let mut errors = 0u32;
        let mut first_error: Option<String> = None;
        let blocks = std::mem::take(&mut self.plan);
        let mut link_lost = false;
        for block in &blocks {
            if link_lost {
                self.fill_block(&mut readings, block, Quality::Bad, "disconnected");
                continue;
            }
            let Some(ctx) = self.context.as_mut().map(tokio::sync::Mutex::get_mut) else {
                break;
            };
            let request = async {
                match block.kind {
                    RegisterKind::Holding => {
                        ctx.read_holding_registers(block.start, block.count).await
                    }
                    RegisterKind::Input => ctx.read_input_registers(block.start, block.count).await,
                }
            };
            match timeout(self.config.request_timeout, request).await {
                Ok(Ok(Ok(words))) if words.len() == block.count as usize => {
                    self.decode_block(&mut readings, block, &words);
                    self.link_proven = true;
                    self.failed_attempts = 0;
                }
                Ok(Ok(Ok(words))) => {
                    // A short or long answer cannot be decoded safely.
                    errors += 1;
                    let msg = format!(
                        "short response: {} of {} registers",
                        words.len(),
                        block.count
                    );
                    self.fill_block(&mut readings, block, Quality::Bad, &msg);
                    first_error.get_or_insert(msg);
                }
                Ok(Ok(Err(exception))) => {
                    errors += 1;
                    let msg = format!(
                        "modbus exception {exception:?} (0x{:02X})",
                        u8::from(exception)
                    );
                    self.fill_block(&mut readings, block, Quality::Bad, &msg);
                    first_error.get_or_insert(msg);
                }
                Ok(Err(err)) => {
                    errors += 1;
                    let msg = format!("link error: {err}");
                    self.fill_block(&mut readings, block, Quality::Bad, &msg);
                    first_error.get_or_insert(msg);
                    link_lost = true;
                }
                Err(_) => {
                    // After a timeout a late answer could be taken for the next
                    // request's: drop the link and hold the last values one poll.
                    errors += 1;
                    let msg = format!(
                        "timeout after {} ms",
                        self.config.request_timeout.as_millis()
                    );
                    self.hold_block(&mut readings, block, &msg);
                    first_error.get_or_insert(msg);
                    link_lost = true;
                }
            }
        }
        self.plan = blocks;
        if link_lost {
            self.context = None;
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
            link: if self.context.is_some() {
                LinkState::Connected
            } else {
                LinkState::Disconnected
            },
            errors,
            reconnected,
            error: first_error,
        }
    }

    async fn connect(&self) -> Result<Context, String> {
        let attempt = tcp::connect_slave(self.config.addr, Slave(self.config.unit_id));
        match timeout(self.config.connect_timeout, attempt).await {
            Ok(Ok(ctx)) => Ok(ctx),
            Ok(Err(err)) => Err(format!("connect to {} failed: {err}", self.config.addr)),
            Err(_) => Err(format!(
                "connect to {} timed out after {} ms",
                self.config.addr,
                self.config.connect_timeout.as_millis()
            )),
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

    fn all_bad(&mut self, reason: String, errors: u32, reconnected: bool) -> PollOutcome {
        self.last_values.iter_mut().for_each(|v| *v = None);
        let readings = (0..self.map.points.len())
            .map(|i| self.reading(i, None, Quality::Bad, Some(reason.clone())))
            .collect();
        PollOutcome {
            readings,
            link: LinkState::Disconnected,
            errors,
            reconnected,
            error: Some(reason),
        }
    }
}
