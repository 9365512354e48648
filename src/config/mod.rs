//! Layered, typed configuration: built-in defaults, then the files, then
//! `HYDROWATCH_*` environment variables; validated before anything starts.
//!
//! Files:
//! - `hydrowatch.toml` — the server (this module's [`Settings`]);
//! - `plant.toml` — sites, equipment, sensors, register maps ([`PlantConfig`]);
//! - `supervision.toml` — the supervision tree ([`SupervisionConfig`]).
//!
//! An environment variable `HYDROWATCH_SECTION__KEY=value` overrides `key` in
//! `[section]` of `hydrowatch.toml` (e.g. `HYDROWATCH_SERVER__LISTEN=0.0.0.0:8080`).

use std::path::{Path, PathBuf};

use hydrowatch_actors::SupervisionConfig;

mod env;
mod plant;
mod settings;

use env::apply_env;
pub use plant::*;
pub use settings::*;

/// The demo configuration compiled into the binary, used when no file is found.
pub const EMBEDDED_SETTINGS: &str = include_str!("../../config/hydrowatch.toml");

/// The demo plant compiled into the binary.
pub const EMBEDDED_PLANT: &str = include_str!("../../config/plant.toml");

/// The supervision tree compiled into the binary.
pub const EMBEDDED_SUPERVISION: &str = include_str!("../../supervision.toml");

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file (or `environment`).
    pub file: String,
    /// What is wrong, naming the key.
    pub message: String,
}

fn err(file: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Everything loaded and validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Server settings.
    pub settings: Settings,
    pub plant: Plant,
    pub supervision: SupervisionConfig,
    /// Where each piece came from, for the start-up log.
    pub sources: Vec<String>,
}

/// Loads the configuration starting at `path` (or the embedded demo when `None`),
/// applying `env` overrides (`HYDROWATCH_*` pairs).
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let (settings_text, settings_name, base) = match path {
        Some(p) => (
            read(p)?,
            p.display().to_string(),
            Some(p.parent().unwrap_or(Path::new(".")).to_path_buf()),
        ),
        None => (
            EMBEDDED_SETTINGS.to_owned(),
            "embedded hydrowatch.toml".to_owned(),
            None,
        ),
    };
    let mut value: toml::Table =
        toml::from_str(&settings_text).map_err(|e| err(&settings_name, e.to_string()))?;
    apply_env(&mut value, env)?;
    // Re-serialised so that errors quote the offending line, key included.
    let merged = toml::to_string(&value).map_err(|e| err(&settings_name, e.to_string()))?;
    let settings: Settings = toml::from_str(&merged).map_err(|e| {
        let note = if env.iter().any(|(k, _)| k.starts_with("HYDROWATCH_")) {
            " (after HYDROWATCH_* overrides)"
        } else {
            ""
        };
        err(&settings_name, format!("{e}{note}"))
    })?;
    settings.validate(&settings_name)?;

    let (plant_text, plant_name) = match &base {
        Some(dir) => {
            let p = dir.join(&settings.files.plant);
            (read(&p)?, p.display().to_string())
        }
        None => (EMBEDDED_PLANT.to_owned(), "embedded plant.toml".to_owned()),
    };
    let plant_cfg: PlantConfig =
        toml::from_str(&plant_text).map_err(|e| err(&plant_name, e.to_string()))?;
    let plant = plant_cfg.build(&plant_name, env)?;

    let (sup_text, sup_name) = match &base {
        Some(dir) => {
            let p = dir.join(&settings.files.supervision);
            (read(&p)?, p.display().to_string())
        }
        None => (
            EMBEDDED_SUPERVISION.to_owned(),
            "embedded supervision.toml".to_owned(),
        ),
    };
    let supervision: SupervisionConfig =
        toml::from_str(&sup_text).map_err(|e| err(&sup_name, e.to_string()))?;
    supervision
        .validate()
        .map_err(|e| err(&sup_name, e.to_string()))?;

    Ok(Loaded {
        settings,
        plant,
        supervision,
        sources: vec![settings_name, plant_name, sup_name],
    })
}

/// The default configuration file: `config/hydrowatch.toml` if it exists here.
pub fn default_path() -> Option<PathBuf> {
    let p = PathBuf::from("config/hydrowatch.toml");
    p.exists().then_some(p)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| err(&path.display().to_string(), format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydrowatch_protocols::RegisterKind;

    #[test]
    fn alert_channels_must_be_well_formed() {
        let plant =
            EMBEDDED_PLANT.replacen("channels = [\"wallboard\"]", "channels = [\"pager\"]", 1);
        assert_ne!(plant, EMBEDDED_PLANT);
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(
            e.contains("alerting.policies.default.steps[0]") && e.contains("\"pager\""),
            "{e}"
        );
        let plant = EMBEDDED_PLANT.replacen(
            "id = \"oil-hot\"",
            "id = \"oil-hot\"\nchannels = [\"webhook\"]",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("alerting.rules[0].channels[0]"), "{e}");
    }

    #[test]
    fn a_cycle_section_needs_the_timer_and_the_rigs_sensors() {
        let plant =
            EMBEDDED_PLANT.replacen("phase_sensor = \"CYC\"", "phase_sensor = \"CLOCK\"", 1);
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(
            e.contains("equipment[0].cycle.phase_sensor = \"CLOCK\""),
            "{e}"
        );
        // A set without PS3 cannot feed the cycle models.
        let plant = EMBEDDED_PLANT.replacen("id = \"PS3\"", "id = \"PX3\"", 1);
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(
            e.contains("equipment[0].cycle") && e.contains("lacks PS3"),
            "{e}"
        );
        let plant = EMBEDDED_PLANT.replacen(
            "[equipment.simulator]",
            "[equipment.simulator]\nspeed = 0.0",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("equipment[0].simulator.speed = 0"), "{e}");
    }

    /// The error building the demo plant after replacing `from` (once) with `to`.
    fn plant_error(from: &str, to: &str) -> String {
        let plant = EMBEDDED_PLANT.replacen(from, to, 1);
        assert_ne!(plant, EMBEDDED_PLANT, "no {from:?} in the demo plant");
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        cfg.build("plant.toml", &[]).unwrap_err().to_string()
    }

    #[test]
    fn field_points_and_setpoints_are_checked() {
        // An order given twice.
        let e = plant_error(
            "type = \"f32\"\nbyte_order",
            "type = \"f32\"\norder = \"cdab\"\nbyte_order",
        );
        assert!(
            e.contains("sensor_sets.zema-rig.PS1: give either order"),
            "{e}"
        );
        // A register type on a bit table.
        let e = plant_error(
            "address = 0\ntype = \"f32\"",
            "register = \"coil\"\naddress = 0\ntype = \"f32\"",
        );
        assert!(e.contains("coils and discrete inputs are `bool`"), "{e}");
        // A setpoint in a read-only table, or outside its set.
        let e = plant_error("address = 1102", "register = \"input\"\naddress = 1102");
        assert!(e.contains("setpoint_sets.zema-rig[1].register"), "{e}");
        let e = plant_error("setpoint_set = \"zema-rig\"", "setpoint_set = \"press\"");
        assert!(
            e.contains("equipment[0].setpoint_set = \"press\": no such setpoint set"),
            "{e}"
        );
        let e = plant_error("address = 1102", "address = 1101");
        assert!(e.contains("overlap"), "{e}");
    }

    #[test]
    fn an_opcua_connection_is_checked() {
        let opcua = |extra: &str| {
            EMBEDDED_PLANT.replacen(
                "protocol = \"modbus_tcp\"   # or \"modbus_rtu_over_tcp\" behind a serial gateway",
                &format!("protocol = \"opcua\"\n{extra}"),
                1,
            )
        };
        let build = |plant: String| {
            let cfg: PlantConfig = toml::from_str(&plant).unwrap();
            cfg.build("plant.toml", &[])
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // Setpoints are Modbus-only.
        let e = build(opcua("node_ids = \"ns=2;s=Rig.{id}\"")).unwrap_err();
        assert!(
            e.contains("equipment[0].setpoint_set: setpoints are written over Modbus"),
            "{e}"
        );
        let without_setpoints =
            |extra: &str| opcua(extra).replacen("setpoint_set = \"zema-rig\"\n", "", 1);
        assert_eq!(
            build(without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"")),
            Ok(())
        );
        let e = build(without_setpoints("")).unwrap_err();
        assert!(e.contains("sensor PS1: no node_id"), "{e}");
        // Read by node id, an OPC-UA unit's sensors need no register address;
        // a Modbus unit's do, and the message names the first without one.
        let mut cfg: PlantConfig =
            toml::from_str(&without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"")).unwrap();
        for sensor in cfg.sensor_sets.values_mut().flatten() {
            sensor.address = None;
        }
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(
            e.contains("sensor_sets.zema-rig.PS1.address: needed to read it over Modbus"),
            "{e}"
        );
        cfg.equipment
            .retain(|e| e.connection.protocol == Protocol::Opcua);
        let built = cfg
            .build("plant.toml", &[])
            .expect("OPC-UA without addresses");
        let sensors = cfg.sensor_sets["zema-rig"].len();
        assert_eq!(built.connections[0].opcua_points.len(), sensors);
        assert!(built.connections[0].map.points.is_empty());

        let e = build(without_setpoints("node_ids = \"Rig.{id}\"")).unwrap_err();
        assert!(e.contains("is not a node id"), "{e}");
        let e = build(without_setpoints(
            "node_ids = \"ns=2;s=Rig.{id}\"\nsecurity_policy = \"basic256_sha256\"",
        ))
        .unwrap_err();
        assert!(e.contains("none goes with none only"), "{e}");
        let e = build(
            without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"").replacen(
                "endpoint = \"simulator\"\nunit_id",
                "endpoint = \"10.0.0.5:4840\"\nunit_id",
                1,
            ),
        )
        .unwrap_err();
        assert!(e.contains("expected opc.tcp://host:port/"), "{e}");
        // Faults of the protocol's own kind.
        let with_faults = |faults: &str| {
            without_setpoints("node_ids = \"ns=2;s=Rig.{id}\"").replacen(
                "port = 5020",
                &format!("port = 5020\n[equipment.simulator.faults]\n{faults}"),
                1,
            )
        };
        let cfg: PlantConfig = toml::from_str(&with_faults("no_response = true")).unwrap();
        let built = cfg.build("plant.toml", &[]).unwrap();
        assert!(built.simulators[0].opcua_faults.no_response);
        assert_eq!(built.simulators[0].protocol, Protocol::Opcua);
        let e = build(with_faults("garbage = true")).unwrap_err();
        assert!(e.contains("equipment[0].simulator.faults (OPC-UA)"), "{e}");
        // The password from the environment, not from the file.
        let user = |password: &str| {
            without_setpoints(&format!(
                "node_ids = \"ns=2;s=Rig.{{id}}\"\nusername = \"operator\"\n{password}"
            ))
        };
        let e = build(user("password_env = \"HYDROWATCH_TEST_NO_SUCH_VARIABLE\"")).unwrap_err();
        assert!(
            e.contains("password_env = \"HYDROWATCH_TEST_NO_SUCH_VARIABLE\": the environment variable is not set"),
            "{e}"
        );
        let e = build(user("password = \"x\"\npassword_env = \"PATH\"")).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        // The variable's value, from the environment `load` was given,
        // becomes the password.
        let cfg: PlantConfig = toml::from_str(&user("password_env = \"OPCUA_PASSWORD\"")).unwrap();
        let env = [(
            "OPCUA_PASSWORD".to_owned(),
            "from the environment".to_owned(),
        )];
        let built = cfg.build("plant.toml", &env).unwrap();
        assert_eq!(
            built.connections[0].config.password.as_deref(),
            Some("from the environment")
        );
    }

    #[test]
    fn demo_setpoints_and_simulator_faults_load() {
        let loaded = load(None, &[]).unwrap();
        let setpoints = &loaded.plant.connections[0].setpoints;
        let ids: Vec<&str> = setpoints.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["pump_pressure", "fan_speed", "cooler_enabled"]);
        assert_eq!(setpoints[2].point.kind, RegisterKind::Coil);
        let plant = EMBEDDED_PLANT.replacen(
            "port = 5020",
            "port = 5020\n[equipment.simulator.faults]\nlatency_ms = 20\nprobability = 0.1",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let built = cfg.build("plant.toml", &[]).unwrap();
        assert_eq!(built.simulators[0].faults.latency_ms, 20);
        let plant = EMBEDDED_PLANT.replacen(
            "port = 5020",
            "port = 5020\n[equipment.simulator.faults]\nprobability = 1.5",
            1,
        );
        let cfg: PlantConfig = toml::from_str(&plant).unwrap();
        let e = cfg.build("plant.toml", &[]).unwrap_err().to_string();
        assert!(
            e.contains("equipment[0].simulator.faults.probability 1.5"),
            "{e}"
        );
    }

    #[test]
    fn embedded_demo_loads() {
        let loaded = load(None, &[]).unwrap();
        assert_eq!(loaded.plant.equipment.len(), 3);
        // The rig's 17 sensors and the PLC's cycle timer; every rig is scored.
        assert!(loaded.plant.equipment.iter().all(|e| e.sensors.len() == 18));
        assert!(loaded.plant.equipment.iter().all(|e| e.cycle.is_some()));
        assert_eq!(loaded.plant.simulators.len(), 3);
        assert!(
            loaded.settings.auth.break_glass_token.is_empty(),
            "no break-glass token by default"
        );
    }

    #[test]
    fn env_overrides_and_names_unknown_keys() {
        let env = vec![(
            "HYDROWATCH_SERVER__LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        )];
        let loaded = load(None, &env).unwrap();
        assert_eq!(loaded.settings.server.listen.port(), 9999);
        let env = vec![("HYDROWATCH_SERVER__LISTN".to_owned(), "x".to_owned())];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn a_numeric_token_stays_a_string() {
        let digits = "12345678901234567890123456789012";
        let env = vec![(
            "HYDROWATCH_AUTH__BREAK_GLASS_TOKEN".to_owned(),
            digits.to_owned(),
        )];
        let loaded = load(None, &env).unwrap();
        assert_eq!(loaded.settings.auth.break_glass_token, digits);
        let env = vec![(
            "HYDROWATCH_AUTH__BREAK_GLASS_TOKEN".to_owned(),
            "short".to_owned(),
        )];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("at least 32 characters"), "{e}");
        let env = vec![("HYDROWATCH_ADMIN__TOKEN".to_owned(), digits.to_owned())];
        let e = load(None, &env).unwrap_err();
        assert!(
            e.to_string().contains("hydrowatch user add --role admin"),
            "{e}"
        );
        let env = vec![(
            "HYDROWATCH_LIVE__ACTOR_TIMEOUT_MS".to_owned(),
            "soon".to_owned(),
        )];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("actor_timeout_ms"), "{e}");
    }

    #[test]
    fn impossible_value_is_named() {
        let env = vec![(
            "HYDROWATCH_WEBSOCKET__IDLE_TIMEOUT_SECS".to_owned(),
            "1".to_owned(),
        )];
        let e = load(None, &env).unwrap_err();
        assert!(e.to_string().contains("websocket.idle_timeout_secs"), "{e}");
    }

    #[test]
    fn environment_overrides_reach_nested_tables_and_bad_names_are_refused() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let env = [
            pair(
                "HYDROWATCH_NOTIFY__WEBHOOKS__OPS__URL",
                "http://127.0.0.1:9/hook",
            ),
            pair(
                "HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET",
                "0123456789abcdef0123",
            ),
            pair("HYDROWATCH_NOTIFY__MAX_ATTEMPTS", "3"),
        ];
        let loaded = load(None, &env).unwrap();
        let ops = &loaded.settings.notify.webhooks["ops"];
        assert_eq!(ops.secret, "0123456789abcdef0123");
        assert_eq!(loaded.settings.notify.max_attempts, 3);
        let bad = load(None, &[pair("HYDROWATCH_NOTIFY", "x")]).unwrap_err();
        assert!(bad.message.contains("HYDROWATCH_<SECTION>__<KEY>"), "{bad}");
        assert!(load(None, &[pair("HYDROWATCH_NOTIFY____X", "x")]).is_err());
        // A secret too short to sign with is refused at start-up.
        let weak = [
            pair(
                "HYDROWATCH_NOTIFY__WEBHOOKS__OPS__URL",
                "http://127.0.0.1:9/hook",
            ),
            pair("HYDROWATCH_NOTIFY__WEBHOOKS__OPS__SECRET", "short"),
        ];
        assert!(load(None, &weak).unwrap_err().message.contains("secret"));
    }
}
