//! The connection actor: polls one SCADA endpoint and hands each poll's readings
//! to the equipment that owns them, as one batch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::time::Instant;

use hydrowatch_models::{EquipmentId, Quality, SampleBatch};
use hydrowatch_protocols::modbus::{
    ErrorCounts, LinkState, ModbusPoller, PollOutcome, PollerConfig, WriteError, WriteOutcome,
};
use hydrowatch_protocols::opcua::{OpcUaConfig, OpcUaPoint, OpcUaReader, OpcUaStatus};
use hydrowatch_protocols::{RegisterMap, RegisterPoint};

use crate::clock::now_ms;
use crate::plant::EquipmentMsg;
use crate::storage::{StorageStatus, StoredSample, WriterMsg};
use crate::Address;

/// Everything needed to run one connection.
#[derive(Clone)]
pub struct ConnectionSpec {
    /// Identifier (also the last element of its path).
    pub id: String,
    /// The equipment whose sensors the device serves.
    pub equipment: EquipmentId,
    /// The device and where each sensor is in it.
    pub device: DeviceSpec,
    /// Poll period.
    pub period: Duration,
    /// What operators may write to the device.
    pub setpoints: Vec<SetpointSpec>,
}

/// A device, by protocol.
#[derive(Clone)]
pub enum DeviceSpec {
    /// Modbus TCP or RTU over TCP.
    Modbus {
        /// How to reach it.
        poller: PollerConfig,
        /// Where each sensor is.
        map: RegisterMap,
    },
    /// An OPC-UA server.
    OpcUa {
        /// How to reach it.
        config: OpcUaConfig,
        /// Each sensor's variable.
        points: Vec<OpcUaPoint>,
    },
}

impl DeviceSpec {
    /// Where the device is.
    pub fn endpoint(&self) -> String {
        match self {
            DeviceSpec::Modbus { poller, .. } => poller.addr.to_string(),
            DeviceSpec::OpcUa { config, .. } => config.endpoint_url.clone(),
        }
    }

    /// `modbus_tcp`, `modbus_rtu_over_tcp` or `opcua`.
    pub fn protocol(&self) -> &'static str {
        match self {
            DeviceSpec::Modbus { poller, .. } => poller.framing.protocol(),
            DeviceSpec::OpcUa { .. } => "opcua",
        }
    }
}

/// A running device link.
enum Device {
    Modbus(ModbusPoller),
    OpcUa(OpcUaReader),
}

impl Device {
    fn start(spec: &DeviceSpec) -> Result<Self, String> {
        Ok(match spec {
            DeviceSpec::Modbus { poller, map } => {
                Device::Modbus(ModbusPoller::new(poller.clone(), map.clone()))
            }
            DeviceSpec::OpcUa { config, points } => Device::OpcUa(
                OpcUaReader::start(config.clone(), points.clone()).map_err(|e| e.to_string())?,
            ),
        })
    }

    async fn poll(&mut self) -> PollOutcome {
        match self {
            Device::Modbus(poller) => poller.poll().await,
            Device::OpcUa(reader) => reader.poll().await,
        }
    }

    fn opcua_status(&self) -> Option<OpcUaStatus> {
        match self {
            Device::Modbus(_) => None,
            Device::OpcUa(reader) => Some(reader.status()),
        }
    }

    async fn read(&mut self, point: &RegisterPoint) -> Result<f64, WriteError> {
        match self {
            Device::Modbus(poller) => poller.read(point).await,
            Device::OpcUa(_) => Err(WriteError::Link(NO_OPCUA_SETPOINTS.into())),
        }
    }

    async fn write(
        &mut self,
        point: &RegisterPoint,
        value: f64,
    ) -> Result<WriteOutcome, WriteError> {
        match self {
            Device::Modbus(poller) => poller.write(point, value).await,
            Device::OpcUa(_) => Err(WriteError::Link(NO_OPCUA_SETPOINTS.into())),
        }
    }
}

const NO_OPCUA_SETPOINTS: &str = "setpoints are written over Modbus; this device is OPC-UA";

/// A value operators may write to the device (a setpoint), with its limits.
#[derive(Debug, Clone, Serialize)]
pub struct SetpointSpec {
    /// Identifier within the equipment.
    pub id: String,
    pub name: String,
    /// Engineering unit.
    pub unit: String,
    /// Lowest value accepted.
    pub min: f64,
    /// Highest value accepted.
    pub max: f64,
    /// Where it lives in the device.
    #[serde(skip)]
    pub point: RegisterPoint,
}

/// A setpoint and the value the device holds now.
#[derive(Debug, Clone, Serialize)]
pub struct SetpointReading {
    #[serde(flatten)]
    pub spec: SetpointSpec,
    /// Its value read from the device just now, if the read succeeded.
    pub value: Option<f64>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// Why a setpoint was not written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetpointError {
    /// The equipment has no such setpoint.
    #[error("no setpoint {0:?}")]
    Unknown(String),
    /// The value is outside the setpoint's limits.
    #[error("{value} is outside the limits of {id}: {min} to {max}")]
    OutOfRange {
        /// The setpoint.
        id: String,
        /// Asked for.
        value: f64,
        /// Lowest accepted.
        min: f64,
        /// Highest accepted.
        max: f64,
    },
    /// The device did not take it, or reading back did not confirm it.
    #[error(transparent)]
    Device(#[from] WriteError),
}

/// Polls a connection may fall behind and still catch up on.
const MAX_BACKLOG: u32 = 5;

/// Health of a connection as operators and `/health/ready` see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectionStatus {
    pub id: String,
    /// Device address.
    pub endpoint: String,
    /// `modbus_tcp`, `modbus_rtu_over_tcp` or `opcua`.
    pub protocol: &'static str,
    pub link: LinkState,
    /// Time of the last fully good poll (ms since the Unix epoch).
    pub last_success_ms: Option<i64>,
    /// Polls since start.
    pub polls: u64,
    /// Failed requests since start.
    pub errors: u64,
    /// Re-established links since start.
    pub reconnects: u64,
    /// The same failures by kind (connect, timeout, exception, malformed,
    /// garbled, link) and the stray answers discarded.
    pub error_counts: ErrorCounts,
    /// The last error seen.
    pub last_error: Option<String>,
    /// Polling slowed down because storage pushes back (its spool is full).
    pub throttled: bool,
    /// OPC-UA only: subscriptions or polling, notifications, subscriptions
    /// the server dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opcua: Option<OpcUaStatus>,
}

/// A connection's status, shared with the façade (readable while a poll runs).
pub type SharedStatus = Arc<Mutex<ConnectionStatus>>;

/// What a connection actor starts with.
pub struct ConnectionArgs {
    pub spec: ConnectionSpec,
    /// Where batches go.
    pub equipment: Address<EquipmentMsg>,
    /// Where its status is published.
    pub status: SharedStatus,
    /// Where samples are persisted, if anywhere.
    pub storage: Option<StorageLink>,
    /// Its own address, filled in on start (for setpoint writes).
    pub address: Address<ConnectionMsg>,
}

/// A connection's way to the storage writer.
#[derive(Clone)]
pub struct StorageLink {
    pub writer: Address<WriterMsg>,
    /// Its status, for back-pressure.
    pub status: Arc<StorageStatus>,
    /// Poll period multiplier while storage pushes back.
    pub slowdown: u32,
    /// Database id of each of this connection's sensors.
    pub sensors: Arc<std::collections::HashMap<hydrowatch_models::SensorId, i64>>,
}

impl StorageLink {
    /// Sends one poll's readings to the writer as stored rows. Readings of a
    /// sensor the database does not know (impossible with a plant synchronised
    /// at start) are counted, not stored.
    fn store(&self, batch: &SampleBatch) {
        let mut rows = Vec::with_capacity(batch.readings.len());
        for r in &batch.readings {
            match self.sensors.get(&r.sensor) {
                Some(&sensor) => rows.push(StoredSample {
                    sensor,
                    ts_ms: batch.ts_ms,
                    value: r.value,
                    quality: r.quality,
                }),
                None => metrics::counter!("hydrowatch_storage_unmapped_rows_total").increment(1),
            }
        }
        if self
            .writer
            .cast(WriterMsg::Rows { rows, ack: None })
            .is_err()
        {
            metrics::counter!("hydrowatch_storage_unavailable_batches_total").increment(1);
        }
    }
}

/// Messages of a connection actor.
pub enum ConnectionMsg {
    /// Time to poll.
    Poll,
    /// Write a setpoint and read it back; between two polls, so that the
    /// device sees one request at a time.
    WriteSetpoint {
        id: String,
        /// Engineering value.
        value: f64,
        reply: RpcReplyPort<Result<WriteOutcome, SetpointError>>,
    },
    /// Read every setpoint from the device now.
    ReadSetpoints(RpcReplyPort<Vec<SetpointReading>>),
}

/// The connection actor.
pub struct Connection;

pub struct ConnectionState {
    args: ConnectionArgs,
    device: Device,
    next_poll: Instant,
    meters: Meters,
}

/// Metric handles, resolved once rather than on every poll.
struct Meters {
    polled: metrics::Counter,
    /// By kind, in the order of [`error_kinds`].
    errors: [metrics::Counter; 7],
    reconnects: metrics::Counter,
    duration: metrics::Histogram,
    throttled: metrics::Gauge,
    connected: metrics::Gauge,
    /// OPC-UA connections only.
    opcua: Option<OpcUaMeters>,
}

/// The reader's running totals as counters.
struct OpcUaMeters {
    notifications: metrics::Counter,
    subscriptions_lost: metrics::Counter,
    /// The totals counted so far (the reader's live as long as the actor).
    counted: (u64, u64),
}

impl OpcUaMeters {
    fn count(&mut self, status: &OpcUaStatus) {
        let (notifications, lost) = self.counted;
        self.notifications
            .increment(status.notifications.saturating_sub(notifications));
        self.subscriptions_lost
            .increment(status.subscriptions_lost.saturating_sub(lost));
        self.counted = (status.notifications, status.subscriptions_lost);
    }
}

/// The failure kinds as metric labels, with their counts.
fn error_kinds(c: &ErrorCounts) -> [(&'static str, u64); 7] {
    [
        ("connect", c.connect),
        ("timeout", c.timeout),
        ("exception", c.exception),
        ("malformed", c.malformed),
        ("garbled", c.garbled),
        ("link", c.link),
        ("discarded", c.discarded),
    ]
}

impl Meters {
    fn new(connection: &str, device: &DeviceSpec) -> Self {
        let label = connection.to_owned();
        let opcua = matches!(device, DeviceSpec::OpcUa { .. }).then(|| OpcUaMeters {
            notifications: metrics::counter!("hydrowatch_opcua_notifications_total", "connection" => label.clone()),
            subscriptions_lost: metrics::counter!("hydrowatch_opcua_subscriptions_lost_total", "connection" => label.clone()),
            counted: (0, 0),
        });
        Self {
            opcua,
            polled: metrics::counter!("hydrowatch_samples_polled_total", "connection" => label.clone()),
            errors: error_kinds(&ErrorCounts::default()).map(|(kind, _)| {
                metrics::counter!("hydrowatch_poll_errors_total", "connection" => label.clone(), "kind" => kind)
            }),
            reconnects: metrics::counter!("hydrowatch_reconnects_total", "connection" => label.clone()),
            connected: metrics::gauge!("hydrowatch_connection_up", "connection" => label.clone()),
            throttled: metrics::gauge!("hydrowatch_poll_throttled", "connection" => label),
            duration: metrics::histogram!("hydrowatch_poll_duration_seconds"),
        }
    }
}

impl Actor for Connection {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConnectionMsg>,
        args: ConnectionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        set_link(&args.status, LinkState::Disconnected);
        args.address.set(myself.clone());
        let device = Device::start(&args.spec.device)?;
        // The first poll goes out at once (data on screen right after start); the
        // next one at a random phase within the period, so that a thousand
        // connections started together do not poll (and load the tree) in lockstep.
        myself.cast(ConnectionMsg::Poll)?;
        let period = args.spec.period;
        let phase = period.mul_f64(rand::random::<f64>());
        let meters = Meters::new(&args.spec.id, &args.spec.device);
        Ok(ConnectionState {
            args,
            device,
            // `handle` adds one period after the first poll: the second one comes
            // `phase` after start.
            next_poll: (Instant::now() + phase)
                .checked_sub(period)
                .unwrap_or_else(Instant::now),
            meters,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConnectionMsg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        set_link(&st.args.status, LinkState::Disconnected);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionMsg>,
        msg: ConnectionMsg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConnectionMsg::Poll => {
                poll_once(st).await;
                // Fixed rate. Polls that ran late are caught up at once (the rate
                // holds through a hiccup); more than MAX_BACKLOG periods behind,
                // the backlog is dropped rather than bunched. While storage
                // pushes back, polls come `slowdown` times less often.
                let period = st.args.spec.period * throttle(st);
                let now = Instant::now();
                st.next_poll += period;
                if st.next_poll + period * MAX_BACKLOG <= now {
                    st.next_poll = now;
                }
                let delay = st.next_poll.saturating_duration_since(now);
                if delay.is_zero() {
                    myself.cast(ConnectionMsg::Poll)?;
                } else {
                    myself.send_after(delay, || ConnectionMsg::Poll);
                }
            }
            ConnectionMsg::WriteSetpoint { id, value, reply } => {
                // The caller was already told it timed out (a long poll ran
                // first): a write it no longer waits for must not happen.
                if reply.is_closed() {
                    tracing::warn!(connection = %st.args.spec.id, setpoint = %id, value, "setpoint write abandoned: the caller stopped waiting");
                    metrics::counter!("hydrowatch_setpoint_writes_total", "outcome" => "abandoned")
                        .increment(1);
                    return Ok(());
                }
                let outcome = write_setpoint(st, &id, value).await;
                let _ = reply.send(outcome);
            }
            ConnectionMsg::ReadSetpoints(reply) => {
                let mut out = Vec::with_capacity(st.args.spec.setpoints.len());
                // Once the device is unreachable, the rest would only try to
                // connect again, one connect timeout each.
                let mut unreachable: Option<String> = None;
                for spec in &st.args.spec.setpoints {
                    let read = match &unreachable {
                        Some(why) => Err(why.clone()),
                        None => st.device.read(&spec.point).await.map_err(|e| {
                            let why = e.to_string();
                            if matches!(e, WriteError::Link(_)) {
                                unreachable = Some(why.clone());
                            }
                            why
                        }),
                    };
                    let (value, error) = match read {
                        Ok(v) => (Some(v), None),
                        Err(why) => (None, Some(why)),
                    };
                    out.push(SetpointReading {
                        spec: spec.clone(),
                        value,
                        error,
                    });
                }
                let _ = reply.send(out);
            }
        }
        Ok(())
    }
}

async fn write_setpoint(
    st: &mut ConnectionState,
    id: &str,
    value: f64,
) -> Result<WriteOutcome, SetpointError> {
    let spec = st
        .args
        .spec
        .setpoints
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| SetpointError::Unknown(id.to_owned()))?;
    if !(value.is_finite() && spec.min <= value && value <= spec.max) {
        return Err(SetpointError::OutOfRange {
            id: spec.id.clone(),
            value,
            min: spec.min,
            max: spec.max,
        });
    }
    let outcome = st.device.write(&spec.point, value).await;
    match &outcome {
        Ok(done) => {
            tracing::info!(connection = %st.args.spec.id, setpoint = %spec.id, value, read_back = done.read_back, "setpoint written and verified");
            metrics::counter!("hydrowatch_setpoint_writes_total", "outcome" => "verified")
                .increment(1);
        }
        Err(err) => {
            tracing::warn!(connection = %st.args.spec.id, setpoint = %spec.id, value, error = %err, "setpoint write failed");
            metrics::counter!("hydrowatch_setpoint_writes_total", "outcome" => "failed")
                .increment(1);
        }
    }
    Ok(outcome?)
}

/// The poll period multiplier: 1, or the storage's slowdown while it pushes back.
fn throttle(st: &ConnectionState) -> u32 {
    let factor = match &st.args.storage {
        Some(link) if link.status.backpressure() => link.slowdown.max(1),
        _ => 1,
    };
    let throttled = factor > 1;
    if let Ok(mut status) = st.args.status.lock() {
        if status.throttled != throttled {
            status.throttled = throttled;
            if throttled {
                tracing::warn!(connection = %st.args.spec.id, factor, "storage pushes back: polling slower");
            } else {
                tracing::info!(connection = %st.args.spec.id, "polling at full rate again");
            }
        }
    }
    st.meters.throttled.set(if throttled { 1.0 } else { 0.0 });
    factor
}

fn set_link(status: &SharedStatus, link: LinkState) {
    if let Ok(mut status) = status.lock() {
        status.link = link;
    }
}

async fn poll_once(st: &mut ConnectionState) {
    let started = Instant::now();
    let outcome = st.device.poll().await;
    st.meters.duration.record(started.elapsed().as_secs_f64());
    st.meters.polled.increment(outcome.readings.len() as u64);
    for (meter, (_, n)) in st.meters.errors.iter().zip(error_kinds(&outcome.counts)) {
        if n > 0 {
            meter.increment(n);
        }
    }
    st.meters
        .connected
        .set(if outcome.link == LinkState::Connected {
            1.0
        } else {
            0.0
        });
    st.meters.reconnects.increment(outcome.reconnected as u64);
    let ts_ms = now_ms();
    let all_good = outcome.readings.iter().all(|r| r.quality == Quality::Good);
    if let Ok(mut status) = st.args.status.lock() {
        status.link = outcome.link;
        status.polls += 1;
        status.reconnects += outcome.reconnected as u64;
        status.error_counts.add(&outcome.counts);
        status.errors = status.error_counts.failures();
        status.opcua = st.device.opcua_status();
        if let (Some(meters), Some(opcua)) = (st.meters.opcua.as_mut(), &status.opcua) {
            meters.count(opcua);
        }
        if all_good {
            status.last_success_ms = Some(ts_ms);
        }
        if outcome.error.is_some() {
            status.last_error = outcome.error.clone();
        }
    }
    let batch = SampleBatch {
        equipment: st.args.spec.equipment.clone(),
        ts_ms,
        readings: outcome.readings,
    };
    if let Some(link) = &st.args.storage {
        link.store(&batch);
    }
    if st
        .args
        .equipment
        .cast(EquipmentMsg::Samples(batch))
        .is_err()
    {
        metrics::counter!("hydrowatch_batches_undeliverable_total").increment(1);
    }
}
