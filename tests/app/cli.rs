//! The `hydrowatch` binary: configuration is validated before anything starts.

use std::process::Command;

fn hydrowatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hydrowatch"));
    cmd.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("HYDROWATCH_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A copy of the shipped config in a temp dir, with `edit` applied to one file.
fn config_with(file: &str, edit: impl Fn(String) -> String) -> tempdir::Dir {
    let dir = tempdir::Dir::new();
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    for (src, dst) in [
        ("config/hydrowatch.toml", "config/hydrowatch.toml"),
        ("config/plant.toml", "config/plant.toml"),
        ("supervision.toml", "supervision.toml"),
    ] {
        let text = std::fs::read_to_string(format!("{root}/{src}")).unwrap();
        let text = if dst.ends_with(file) {
            edit(text)
        } else {
            text
        };
        std::fs::write(dir.path().join(dst), text).unwrap();
    }
    dir
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "hydrowatch-cli-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn check(dir: &tempdir::Dir) -> (bool, String) {
    let out = hydrowatch()
        .arg("--config")
        .arg(dir.path().join("config/hydrowatch.toml"))
        .arg("check-config")
        .output()
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn shipped_config_is_valid() {
    let dir = config_with("none", |t| t);
    let (ok, text) = check(&dir);
    assert!(ok, "{text}");
    assert!(text.contains("3 equipment units, 54 sensors"), "{text}");
}

#[test]
fn unknown_key_in_supervision_toml_is_refused_by_name() {
    let dir = config_with("supervision.toml", |t| {
        t.replace("[plant]", "[plant]\nmax_restartz = 4")
    });
    let (ok, text) = check(&dir);
    assert!(!ok);
    assert!(
        text.contains("supervision.toml") && text.contains("max_restartz"),
        "{text}"
    );
}

#[test]
fn impossible_value_in_supervision_toml_is_refused_by_name() {
    let dir = config_with("supervision.toml", |t| {
        t.replacen(
            "max_restarts = 5\nwithin_secs = 10",
            "max_restarts = 5\nwithin_secs = -3",
            1,
        )
    });
    let (ok, text) = check(&dir);
    assert!(!ok);
    assert!(text.contains("equipment.within_secs"), "{text}");
    let dir = config_with("supervision.toml", |t| {
        t.replace("one_for_one", "one_for_some")
    });
    let (ok, text) = check(&dir);
    assert!(!ok);
    assert!(text.contains("one_for_some"), "{text}");
}

#[test]
fn bad_plant_and_server_settings_are_refused_by_name() {
    let dir = config_with("plant.toml", |t| {
        t.replacen("unit = \"bar\"", "unit = \"bar\"\ncolour = \"red\"", 1)
    });
    let (ok, text) = check(&dir);
    assert!(!ok);
    assert!(
        text.contains("plant.toml") && text.contains("colour"),
        "{text}"
    );

    let dir = config_with("plant.toml", |t| {
        t.replacen("period_ms = 500", "period_ms = 0", 1)
    });
    let (ok, text) = check(&dir);
    assert!(!ok);
    assert!(text.contains("equipment[0].connection.period_ms"), "{text}");

    let dir = config_with("hydrowatch.toml", |t| t);
    let out = hydrowatch()
        .arg("--config")
        .arg(dir.path().join("config/hydrowatch.toml"))
        .arg("check-config")
        .env("HYDROWATCH_SERVER__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn serve_refuses_to_start_on_a_bad_config() {
    let dir = config_with("supervision.toml", |t| {
        t.replace("jitter = 0.2", "jitter = 7.0")
    });
    let out = hydrowatch()
        .arg("--config")
        .arg(dir.path().join("config/hydrowatch.toml"))
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backoff.jitter"), "{err}");
}

#[test]
fn simulate_serves_the_rigs_to_any_modbus_client() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    // Port 0: let the OS pick, the command prints where each rig listens.
    let dir = config_with("plant.toml", |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("port = ") {
                    "port = 0".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let mut child = hydrowatch()
        .arg("--config")
        .arg(dir.path().join("config/hydrowatch.toml"))
        .arg("simulate")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulate starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a line per rig").expect("utf-8");
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        addrs.push(addr);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio_modbus::client::{tcp, Reader};
        for addr in &addrs {
            let mut ctx = tcp::connect(addr.parse().unwrap())
                .await
                .expect("modbus connects");
            let regs = ctx
                .read_holding_registers(0, 34)
                .await
                .expect("transport ok")
                .expect("no exception");
            // PS1 as f32 ABCD: a rig pressure in bar.
            let ps1 = f32::from_bits(((regs[0] as u32) << 16) | regs[1] as u32);
            assert!((100.0..250.0).contains(&ps1), "PS1 = {ps1} bar from {addr}");
        }
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = config_with("none", |t| t);
    let out = hydrowatch()
        .arg("--config")
        .arg(dir.path().join("config/hydrowatch.toml"))
        .args(["--log-format", "json", "check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "start-up is logged");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn migrate_creates_the_embedded_database_and_records_the_plant() {
    let dir = config_with("none", |t| t);
    let db = dir.path().join("data/hydrowatch.db");
    let out = hydrowatch()
        .arg("--config")
        .arg(dir.path().join("config/hydrowatch.toml"))
        .arg("migrate")
        .env(
            "HYDROWATCH_STORAGE__URL",
            format!("sqlite://{}", db.display()),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("sqlite schema up to date") && text.contains("54 sensors"),
        "{text}"
    );
    assert!(db.exists());
}

#[test]
fn storage_subcommands_print_json() {
    let dir = config_with("none", |t| t);
    let db = dir.path().join("data/hydrowatch.db");
    let run = |args: &[&str]| {
        let out = hydrowatch()
            .arg("--config")
            .arg(dir.path().join("config/hydrowatch.toml"))
            .arg("storage")
            .args(args)
            .env(
                "HYDROWATCH_STORAGE__URL",
                format!("sqlite://{}", db.display()),
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text, err) = run(&["stats"]);
    assert!(ok, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        (stats["layout"].as_str(), stats["rows"].as_i64()),
        (Some("sqlite"), Some(0))
    );
    let (ok, text, _) = run(&["cleanup", "--retention-days", "30"]);
    assert!(ok);
    assert!(text.contains("\"dropped\": []"), "{text}");
    let (ok, text, err) = run(&["compact", "--start", "0", "--end", "2030-01-01T00:00:00Z"]);
    assert!(ok, "{err}");
    assert!(text.contains("\"blocks\": 0"), "{text}");
    let (ok, _, err) = run(&["compress"]);
    assert!(!ok && err.contains("needs TimescaleDB"), "{err}");
    let (ok, _, err) = run(&["ensure-partitions", "--start", "x", "--end", "0"]);
    assert!(!ok && err.contains("--start"), "{err}");
}

/// A folder in the rig data format: `cycles` cycles whose cooler condition
/// (3 or 100, alternating in runs of 5) shows in TS1; everything else healthy.
fn rig_folder(dir: &std::path::Path, cycles: usize) {
    const SENSORS: [&str; 17] = [
        "PS1", "PS2", "PS3", "PS4", "PS5", "PS6", "EPS1", "FS1", "FS2", "TS1", "TS2", "TS3", "TS4",
        "VS1", "CE", "CP", "SE",
    ];
    std::fs::create_dir_all(dir).unwrap();
    let cooler = |c: usize| if (c / 5).is_multiple_of(2) { 3 } else { 100 };
    for (s, name) in SENSORS.iter().enumerate() {
        let mut text = String::new();
        for c in 0..cycles {
            let base = if *name == "TS1" && cooler(c) == 3 {
                55.0
            } else {
                35.0
            };
            let row: Vec<String> = (0..60)
                .map(|t| format!("{:.3}", base + s as f64 + ((c * 60 + t) % 7) as f64 * 0.1))
                .collect();
            text.push_str(&row.join("\t"));
            text.push('\n');
        }
        std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
    }
    let profile: String = (0..cycles)
        .map(|c| format!("{}\t100\t0\t130\t0\n", cooler(c)))
        .collect();
    std::fs::write(dir.join("profile.txt"), profile).unwrap();
}

#[test]
fn train_and_evaluate_on_a_rig_data_folder() {
    let dir = tempdir::Dir::new();
    let data = dir.path().join("rig");
    rig_folder(&data, 40);
    let models = dir.path().join("models");
    let model = models.join("rf-cycle.json.gz");
    let out = hydrowatch()
        .args(["train", "--trees", "10", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(model.exists());
    assert!(models.join("novelty.json.gz").exists());
    let out = hydrowatch()
        .args(["evaluate", "--json", "--data"])
        .arg(&data)
        .arg("--models")
        .arg(&models)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // The forest (no XGBoost models in that folder) and the ensemble.
    assert_eq!(report[0]["evaluation"], "random_forest", "{report}");
    assert_eq!(report[1]["evaluation"], "ensemble", "{report}");
    // …and the novelty detector on withheld classes, as with --cv.
    let last = report.as_array().unwrap().last().unwrap();
    assert_eq!(last["evaluation"], "novelty, withheld classes", "{report}");
    assert!(!last["classes"].as_array().unwrap().is_empty(), "{report}");
    for r in [&report[0], &report[1]] {
        let cooler = &r["scores"]["targets"][0];
        assert_eq!(cooler[0], "cooler");
        assert_eq!(cooler[1]["accuracy"], 1.0, "{report}");
        assert_eq!(cooler[1]["false_alarm_rate"], 0.0, "{report}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xgboost: not evaluated"), "{err}");
    let out = hydrowatch()
        .args(["evaluate", "--cv", "--trees", "10", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("keeping runs of cycles together"), "{text}");
    // TS1 moves 20 °C with the cooler: a withheld cooler class is novel.
    let novelty = text
        .lines()
        .find(|l| l.trim_start().starts_with("cooler           3"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(novelty.contains("100.00 %"), "{novelty}");
    // With the XGBoost script's out-of-fold predictions (here: perfect
    // ones, written by hand), XGBoost and the ensemble are reported on the
    // same folds.
    let mut csv = String::from("scheme,cycle,component,level,p_degraded\n");
    for scheme in ["stratified", "runs"] {
        for c in 0..40 {
            let cooler = if (c / 5) % 2 == 0 { 3 } else { 100 };
            let p = if cooler == 100 { 0.0 } else { 1.0 };
            csv.push_str(&format!("{scheme},{c},cooler,{cooler},{p}\n"));
            for (component, healthy) in [("valve", 100), ("pump", 0), ("accumulator", 130)] {
                csv.push_str(&format!("{scheme},{c},{component},{healthy},0\n"));
            }
        }
    }
    let predictions = dir.path().join("xgb-cv.csv");
    std::fs::write(&predictions, csv).unwrap();
    let out = hydrowatch()
        .args(["evaluate", "--cv", "--json", "--trees", "10", "--data"])
        .arg(&data)
        .arg("--xgb-cv")
        .arg(&predictions)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let titles: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["evaluation"].as_str())
        .collect();
    let ensemble = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["evaluation"]
                == "ensemble (random forest + xgboost), 5-fold CV keeping runs of cycles together"
        })
        .unwrap_or_else(|| panic!("{titles:?}"));
    let cooler = &ensemble["scores"]["targets"][0];
    assert_eq!(cooler[0], "cooler");
    assert_eq!(cooler[1]["accuracy"], 1.0, "{ensemble}");
    assert!(
        titles.iter().any(|t| t.starts_with("xgboost (out-of-fold")),
        "{titles:?}"
    );

    // A folder that is not rig data is refused, naming the file.
    std::fs::write(data.join("PS3.txt"), "1\t2\n").unwrap();
    let out = hydrowatch()
        .args(["evaluate", "--cv", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("PS3.txt"), "{err}");
}

#[test]
fn user_add_creates_the_first_admin_with_a_password_from_stdin() {
    use std::io::Write;
    let dir = config_with("none", |t| t);
    let db = dir.path().join("data/hydrowatch.db");
    let add = |email: &str, password: &str| {
        let mut child = hydrowatch()
            .arg("--config")
            .arg(dir.path().join("config/hydrowatch.toml"))
            .args([
                "user",
                "add",
                "--email",
                email,
                "--name",
                "First Admin",
                "--role",
                "admin",
            ])
            .env(
                "HYDROWATCH_STORAGE__URL",
                format!("sqlite://{}", db.display()),
            )
            .env("HYDROWATCH_AUTH__HASH__MEMORY_KIB", "64")
            .env("HYDROWATCH_AUTH__HASH__ITERATIONS", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No weak password, even for the first admin.
    let (ok, _, err) = add("admin@plant.example", "password1234");
    assert!(!ok);
    assert!(err.contains("most common"), "{err}");
    let (ok, _, err) = add("admin@plant.example", "short");
    assert!(!ok);
    assert!(err.contains("at least 12"), "{err}");
    let (ok, out, err) = add("Admin@Plant.example", "plant manager keeps the keys");
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(created["role"], "ADMIN");
    assert!(created["id"].as_i64().unwrap() >= 1);
    // The e-mail is taken (whatever its case).
    let (ok, _, err) = add("admin@plant.example", "another long passphrase here");
    assert!(!ok);
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn opcua_trust_lists_and_trusts_a_refused_server_certificate() {
    let pki = tempdir::Dir::new();
    let pki_path = pki.path().display().to_string();
    let dir = config_with("plant.toml", |t| {
        t.replacen("setpoint_set = \"zema-rig\"\n", "", 1).replacen(
            "protocol = \"modbus_tcp\"   # or \"modbus_rtu_over_tcp\" behind a serial gateway",
            &format!(
                "protocol = \"opcua\"\nnode_ids = \"ns=2;s=Rig.{{id}}\"\npki_dir = {pki_path:?}"
            ),
            1,
        )
    });
    // What the OPC-UA stack leaves when it refuses a server: the certificate
    // under its common name and thumbprint.
    let name = "CN=plant server [0123abcd].der";
    std::fs::create_dir_all(pki.path().join("rejected")).unwrap();
    std::fs::write(pki.path().join("rejected").join(name), b"certificate").unwrap();
    let run = |args: &[&str]| {
        hydrowatch()
            .arg("--config")
            .arg(dir.path().join("config/hydrowatch.toml"))
            .arg("opcua-trust")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--equipment", "rig-1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("rejected:\n  {name}\ntrusted:\n")),
        "{text}"
    );

    let out = run(&["nothing-like-it"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no rejected certificate matches"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--equipment", "rig-2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rig-2\" has no OPC-UA connection"));

    let out = run(&["--equipment", "rig-1", "0123AB"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pki.path().join("trusted").join(name).exists());
    assert!(!pki.path().join("rejected").join(name).exists());
    let text = String::from_utf8_lossy(&run(&[]).stdout).into_owned();
    assert!(
        text.contains(&format!("rejected:\ntrusted:\n  {name}")),
        "{text}"
    );
}
