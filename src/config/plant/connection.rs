//! A unit's connection in `plant.toml` (Modbus or OPC-UA) and what it
//! becomes at run time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use hydrowatch_actors::connection::SetpointSpec;
use hydrowatch_models::EquipmentId;
use hydrowatch_protocols::modbus::{Framing, ReconnectPolicy};
use hydrowatch_protocols::opcua::{
    check_node_id, OpcUaConfig, OpcUaPoint, OpcUaSecurityMode, OpcUaSecurityPolicy,
};
use hydrowatch_protocols::register::{MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ};
use hydrowatch_protocols::RegisterMap;

use super::*;

/// How an equipment's device is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// `modbus_tcp`, or `modbus_rtu_over_tcp` for a serial gateway.
    pub protocol: Protocol,
    /// `host:port` of the device, or `simulator` for the built-in simulator.
    pub endpoint: String,
    /// Modbus unit id.
    #[serde(default = "default_unit")]
    pub unit_id: u8,
    /// Poll period, ms.
    #[serde(default = "default_period")]
    pub period_ms: u64,
    /// Per-request timeout, ms.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Limit for one connection attempt (default 1000).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Largest register read the device accepts.
    #[serde(default = "default_max_regs")]
    pub max_registers_per_read: u16,
    /// Largest coil or discrete-input read the device accepts.
    #[serde(default = "default_max_bits")]
    pub max_bits_per_read: u16,
    /// Unused registers worth reading to merge two requests.
    #[serde(default)]
    pub max_gap: u16,
    /// OPC-UA: each sensor's variable, `{id}` standing for the sensor id
    /// (`"ns=2;s=Rig.{id}"`); a sensor's own `node_id` wins.
    pub node_ids: Option<String>,
    /// OPC-UA: `none`, `basic256_sha256` or `aes128_sha256_rsa_oaep`.
    #[serde(default)]
    pub security_policy: OpcUaSecurityPolicy,
    /// OPC-UA: `none`, `sign` or `sign_and_encrypt`.
    #[serde(default)]
    pub security_mode: OpcUaSecurityMode,
    /// OPC-UA: user name (anonymous without).
    pub username: Option<String>,
    /// OPC-UA: password of `username`.
    pub password: Option<String>,
    /// OPC-UA: the environment variable holding the password, instead of
    /// writing it here.
    pub password_env: Option<String>,
    /// OPC-UA: the client's certificate store (`own/`, `private/`,
    /// `trusted/`, `rejected/`); trust a server with `hydrowatch opcua-trust`.
    #[serde(default = "default_client_pki")]
    pub pki_dir: PathBuf,
    /// OPC-UA: trust any server certificate (demos only).
    #[serde(default)]
    pub trust_server_certs: bool,
    /// OPC-UA: how often the server sends changes, ms (default: the poll period).
    pub publishing_interval_ms: Option<u64>,
    /// OPC-UA: how often the server samples each variable, ms (default: the poll period).
    pub sampling_interval_ms: Option<f64>,
    /// OPC-UA: use subscriptions (otherwise every poll reads).
    #[serde(default = "yes")]
    pub subscribe: bool,
    /// OPC-UA: values the server queues per item between publishes (1: the
    /// latest only).
    #[serde(default = "one_item")]
    pub queue_size: u32,
    /// First reconnect delay, ms.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// Largest reconnect delay, ms.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
}

fn default_unit() -> u8 {
    1
}

fn default_period() -> u64 {
    1_000
}

fn default_request_timeout() -> u64 {
    500
}

fn default_connect_timeout() -> u64 {
    1_000
}

fn default_max_regs() -> u16 {
    MAX_REGISTERS_PER_READ
}

fn default_client_pki() -> PathBuf {
    PathBuf::from("data/pki/client")
}

pub(super) fn yes() -> bool {
    true
}

fn one_item() -> u32 {
    1
}

fn default_max_bits() -> u16 {
    MAX_BITS_PER_READ
}

fn default_reconnect_initial() -> u64 {
    200
}

fn default_reconnect_max() -> u64 {
    10_000
}

/// Device protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    ModbusTcp,
    /// Modbus RTU frames over TCP (a serial-to-Ethernet gateway).
    ModbusRtuOverTcp,
    /// OPC-UA (binary, `opc.tcp://`).
    Opcua,
}

impl Protocol {
    /// How its frames are delimited, for Modbus.
    pub fn framing(self) -> Option<Framing> {
        match self {
            Protocol::ModbusTcp => Some(Framing::Tcp),
            Protocol::ModbusRtuOverTcp => Some(Framing::RtuOverTcp),
            Protocol::Opcua => None,
        }
    }
}

/// A connection, before the simulator addresses are known.
#[derive(Debug, Clone)]
pub struct PlannedConnection {
    pub equipment: EquipmentId,
    pub config: ConnectionConfig,
    /// Where the device is; `None` = the built-in simulator.
    pub endpoint: Option<SocketAddr>,
    pub map: RegisterMap,
    /// What operators may write.
    pub setpoints: Vec<SetpointSpec>,
    /// OPC-UA: each sensor's variable.
    pub opcua_points: Vec<OpcUaPoint>,
}

impl PlannedConnection {
    /// How the OPC-UA reader reaches `endpoint_url`.
    pub fn opcua_config(&self, endpoint_url: String) -> OpcUaConfig {
        let c = &self.config;
        OpcUaConfig {
            endpoint_url,
            security_policy: c.security_policy,
            security_mode: c.security_mode,
            user: c
                .username
                .clone()
                .map(|u| (u, c.password.clone().unwrap_or_default())),
            pki_dir: c.pki_dir.clone(),
            trust_server_certs: c.trust_server_certs,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            publishing_interval: Duration::from_millis(
                c.publishing_interval_ms.unwrap_or(c.period_ms),
            ),
            reconnect: self.reconnect_policy(),
            max_items_per_subscription: 1_000,
            subscribe: c.subscribe,
        }
    }

    /// The reconnect backoff.
    pub fn reconnect_policy(&self) -> ReconnectPolicy {
        ReconnectPolicy {
            initial: Duration::from_millis(self.config.reconnect_initial_ms),
            max: Duration::from_millis(self.config.reconnect_max_ms),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// The OPC-UA variables of `sensors` on connection `c`.
pub(super) fn opcua_points(
    c: &ConnectionConfig,
    sensors: &[SensorConfig],
) -> Result<Vec<OpcUaPoint>, String> {
    if (c.security_policy == OpcUaSecurityPolicy::None)
        != (c.security_mode == OpcUaSecurityMode::None)
    {
        return Err(format!(
            "security_policy {:?} with security_mode {:?}: none goes with none only",
            c.security_policy, c.security_mode
        ));
    }
    if (c.password.is_some() || c.password_env.is_some()) && c.username.is_none() {
        return Err("a password without a username".into());
    }
    sensors
        .iter()
        .map(|s| {
            let node_id = match (&s.node_id, &c.node_ids) {
                (Some(own), _) => own.clone(),
                (None, Some(pattern)) => pattern.replace("{id}", s.id.as_str()),
                (None, None) => {
                    return Err(format!(
                        "sensor {}: no node_id, and the connection has no node_ids pattern",
                        s.id.as_str()
                    ))
                }
            };
            check_node_id(&node_id).map_err(|m| format!("sensor {}: {m}", s.id.as_str()))?;
            if s.deadband.is_some_and(|d| !(d.is_finite() && d >= 0.0)) {
                return Err(format!(
                    "sensor {}: deadband must be a number ≥ 0",
                    s.id.as_str()
                ));
            }
            Ok(OpcUaPoint {
                sensor: s.id.clone(),
                node_id,
                sampling_interval_ms: c.sampling_interval_ms.unwrap_or(c.period_ms as f64),
                queue_size: c.queue_size,
                deadband: s.deadband,
            })
        })
        .collect()
}

impl ConnectionConfig {
    /// Refuses periods, timeouts and read sizes the device link cannot work
    /// with; `sensors` (of set `set`) decide the widest read needed.
    pub(super) fn check_limits(
        &self,
        ckey: &str,
        sensors: &[SensorConfig],
        set: &str,
    ) -> Result<(), String> {
        if self.period_ms < 5 {
            return Err(format!(
                "{ckey}.period_ms = {}: must be at least 5",
                self.period_ms
            ));
        }
        for (name, ms) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if ms == 0 || ms > 60_000 {
                return Err(format!("{ckey}.{name} = {ms}: must be between 1 and 60000"));
            }
        }
        let widest = sensors
            .iter()
            .map(|s| s.data_type.registers())
            .max()
            .unwrap_or(1);
        if self.max_registers_per_read < widest
            || self.max_registers_per_read > MAX_REGISTERS_PER_READ
        {
            return Err(format!(
                "{ckey}.max_registers_per_read = {}: must be between {widest} (the widest point of sensor set {set:?}) and {MAX_REGISTERS_PER_READ}",
                self.max_registers_per_read
            ));
        }
        if self.max_bits_per_read == 0 || self.max_bits_per_read > MAX_BITS_PER_READ {
            return Err(format!(
                "{ckey}.max_bits_per_read = {}: must be between 1 and {MAX_BITS_PER_READ}",
                self.max_bits_per_read
            ));
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_initial_ms > self.reconnect_max_ms {
            return Err(format!(
                "{ckey}.reconnect_initial_ms = {}: must be at least 1 and at most reconnect_max_ms",
                self.reconnect_initial_ms
            ));
        }
        Ok(())
    }

    /// A Modbus device's socket address; none for OPC-UA, whose URL is
    /// resolved when connecting.
    pub(super) fn device_address(&self, ckey: &str) -> Result<Option<SocketAddr>, String> {
        if self.protocol == Protocol::Opcua {
            if !self.endpoint.starts_with("opc.tcp://") {
                return Err(format!(
                    "{ckey}.endpoint = {:?}: expected opc.tcp://host:port/ or \"simulator\"",
                    self.endpoint
                ));
            }
            return Ok(None);
        }
        self.endpoint.parse::<SocketAddr>().map(Some).map_err(|_| {
            format!(
                "{ckey}.endpoint = {:?}: expected host:port (an IP address) or \"simulator\"",
                self.endpoint
            )
        })
    }

    /// This connection with `password_env` resolved from `env`.
    pub(super) fn with_password_from(
        &self,
        ckey: &str,
        env: &[(String, String)],
    ) -> Result<ConnectionConfig, String> {
        let mut config = self.clone();
        if let Some(var) = &self.password_env {
            if self.password.is_some() {
                return Err(format!("{ckey}: give password or password_env, not both"));
            }
            let value = env.iter().find(|(name, _)| name == var).map(|(_, v)| v);
            config.password = Some(value.cloned().ok_or_else(|| {
                format!("{ckey}.password_env = {var:?}: the environment variable is not set")
            })?);
        }
        Ok(config)
    }
}
