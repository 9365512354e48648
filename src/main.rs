//! The `hydrowatch` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hydrowatch::config::{self, LogFormat};
use hydrowatch::{App, Exit};

/// Real-time supervision of industrial hydraulic equipment.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// hydrowatch.toml to use (default: config/hydrowatch.toml if present, else
    /// the built-in demo configuration).
    #[arg(long, global = true, env = "HYDROWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, env = "HYDROWATCH_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the supervision server (and the demo plant's simulators).
    Serve,
    /// Run only the rig simulators, on the ports in plant.toml, for any Modbus client.
    Simulate,
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// OPC-UA: list the server certificates a connection refused and those it
    /// trusts, or trust a refused one (moved from rejected/ to trusted/; a
    /// connection that is retrying picks it up by itself).
    OpcuaTrust {
        /// The equipment whose connection's certificate store is meant
        /// (default: the first OPC-UA connection's).
        #[arg(long)]
        equipment: Option<String>,
        /// Trust the refused certificate whose file name contains this (its
        /// thumbprint, or the server's name). Without it: list.
        pattern: Option<String>,
    },
    /// Create or upgrade the database schema (storage.url) and record the plant.
    Migrate,
    /// Train the RandomForest cycle classifiers on rig data (a folder in the
    /// format of the hydraulic rig data set) and write them as JSON.
    Train {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// Where to write the model.
        #[arg(long, default_value = "models/artifacts/rf-cycle.json.gz")]
        out: PathBuf,
        /// Trees per target.
        #[arg(long, default_value_t = 100)]
        trees: u16,
    },
    /// Evaluate the cycle classifiers on rig data: the trained model on a
    /// folder, or (--cv) cross-validation on it.
    Evaluate {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// Folder of the trained models to evaluate (without --cv): each
        /// member (XGBoost needs ONNX Runtime: ORT_DYLIB_PATH) and the ensemble.
        #[arg(long, default_value = "models/artifacts")]
        models: PathBuf,
        /// Stratified 5-fold CV and 5-fold CV that keeps runs of cycles together.
        #[arg(long)]
        cv: bool,
        /// Trees per target in CV.
        #[arg(long, default_value_t = 100)]
        trees: u16,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// With --cv: out-of-fold predictions of the XGBoost script
        /// (`train_xgb.py --cv-predictions FILE`), to report XGBoost and the
        /// ensemble on the same folds.
        #[arg(long)]
        xgb_cv: Option<PathBuf>,
    },
    /// Write the cycle features of rig data as CSV (one row per cycle: its
    /// index, run-keeping and stratified CV folds, the five labels, the 439
    /// features), for training outside Rust (models/xgboost/train_xgb.py) on
    /// exactly the features the running system computes.
    ExportFeatures {
        /// The data folder.
        #[arg(long)]
        data: PathBuf,
        /// Where to write the CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Operate on the samples' layout in storage.url (prints JSON).
    #[command(subcommand)]
    Storage(StorageOp),
    /// Manage users (the first admin comes from here; there is no default
    /// password).
    #[command(subcommand)]
    User(UserOp),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditOp),
}

/// `hydrowatch audit …`.
#[derive(Subcommand)]
enum AuditOp {
    /// Walks the hash chain; prints JSON and exits 1 when a row was edited,
    /// inserted or deleted.
    Verify,
}

/// `hydrowatch user …`.
#[derive(Subcommand)]
enum UserOp {
    /// Create a user. The password is read from standard input (one line)
    /// and must meet the policy (12+ characters, not a common password).
    Add {
        /// E-mail (the login name).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// admin, engineer or viewer.
        #[arg(long)]
        role: String,
        /// Require a new password at first login.
        #[arg(long)]
        must_change_password: bool,
    },
}

/// `hydrowatch storage …`: the same operations as `/api/v1/admin/storage/…`.
#[derive(Subcommand)]
enum StorageOp {
    /// Create the partitions a time range needs (native PostgreSQL layout).
    EnsurePartitions {
        /// Table to act on (only `sample_blocks` is managed).
        #[arg(long, default_value = "sample_blocks")]
        table: String,
        /// Start: RFC 3339 or ms since the epoch.
        #[arg(long)]
        start: String,
        /// End (exclusive): RFC 3339 or ms since the epoch.
        #[arg(long)]
        end: String,
        /// Partition length in hours (default: storage.chunk_interval_hours).
        #[arg(long)]
        chunk_interval_hours: Option<u32>,
    },
    /// Drop samples older than the retention (partitions, chunks or blocks).
    Cleanup {
        /// Table to act on (only `sample_blocks` is managed).
        #[arg(long, default_value = "sample_blocks")]
        table: String,
        /// Days to keep (default: storage.retention_days).
        #[arg(long)]
        retention_days: Option<u32>,
    },
    /// Compress chunks older than an age (TimescaleDB only).
    Compress {
        /// Table to act on (only `sample_blocks` is managed).
        #[arg(long, default_value = "sample_blocks")]
        table: String,
        /// Age in days (default: storage.compress_after_days).
        #[arg(long)]
        older_than_days: Option<u32>,
    },
    /// Merge the fragments of each minute in a range into one row per sensor.
    Compact {
        /// Start: RFC 3339 or ms since the epoch.
        #[arg(long)]
        start: String,
        /// End (exclusive): RFC 3339 or ms since the epoch.
        #[arg(long)]
        end: String,
    },
    /// Partitions or chunks with their ranges, sizes and rows.
    Stats {
        /// Table to act on (only `sample_blocks` is managed).
        #[arg(long, default_value = "sample_blocks")]
        table: String,
    },
    /// TimescaleDB: extension, jobs, failures.
    TimescaleHealth,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.config.clone().or_else(config::default_path);
    // All of it: HYDROWATCH_* override settings, and a connection's
    // password_env may name any variable.
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = match config::load(path.as_deref(), &env) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("hydrowatch: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let format = cli.log_format.unwrap_or(loaded.settings.log.format);
    hydrowatch::telemetry::init_logging(format, &loaded.settings.log.filter);
    tracing::info!(sources = ?loaded.sources, "configuration loaded");

    if let Command::CheckConfig = cli.command {
        println!(
            "configuration ok: {} equipment units, {} sensors, {} connections ({})",
            loaded.plant.equipment.len(),
            loaded
                .plant
                .equipment
                .iter()
                .map(|e| e.sensors.len())
                .sum::<usize>(),
            loaded.plant.connections.len(),
            loaded.sources.join(", ")
        );
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("hydrowatch: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(loaded).await,
            Command::Simulate => simulate(loaded).await,
            Command::Migrate => migrate(loaded).await,
            Command::Storage(op) => storage(loaded, op).await,
            Command::User(op) => user(loaded, op).await,
            Command::Audit(AuditOp::Verify) => audit_verify(loaded).await,
            Command::Train { data, out, trees } => train(&data, &out, trees),
            Command::ExportFeatures { data, out } => export_features(&data, &out),
            Command::Evaluate {
                data,
                models,
                cv,
                trees,
                json,
                xgb_cv,
            } => evaluate(&data, &models, cv, trees, json, xgb_cv.as_deref()),
            Command::CheckConfig => Ok(ExitCode::SUCCESS),
            Command::OpcuaTrust { equipment, pattern } => {
                opcua_trust(&loaded, equipment.as_deref(), pattern.as_deref())
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "hydrowatch failed");
            eprintln!("hydrowatch: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(loaded: config::Loaded) -> anyhow::Result<ExitCode> {
    let app = App::start(loaded).await?;
    Ok(match app.run_until(shutdown_signal()).await {
        Exit::Stopped => ExitCode::SUCCESS,
        Exit::RootFailed(why) => {
            eprintln!("hydrowatch: supervision tree gave up: {why}");
            ExitCode::FAILURE
        }
    })
}

async fn migrate(loaded: config::Loaded) -> anyhow::Result<ExitCode> {
    let (store, ids) = hydrowatch::app::open_storage(&loaded).await?;
    println!(
        "{} schema up to date; plant recorded: {} equipment units, {} sensors",
        store.backend(),
        loaded.plant.equipment.len(),
        ids.sensors.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn user(loaded: config::Loaded, op: UserOp) -> anyhow::Result<ExitCode> {
    use hydrowatch::auth::{roles::Role, Auth, AuthCore, NewUser};
    let UserOp::Add {
        email,
        name,
        role,
        must_change_password,
    } = op;
    let role = Role::parse(&role)
        .ok_or_else(|| anyhow::anyhow!("--role {role:?}: admin, engineer or viewer"))?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| anyhow::anyhow!("reading the password from standard input: {e}"))?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let (store, _) = hydrowatch::app::open_storage(&loaded).await?;
    let audit = std::sync::Arc::new(hydrowatch::audit::AuditLog::new(
        store.clone(),
        &loaded.settings.audit,
    ));
    // Creating a user touches no session: nothing to share across nodes.
    let cross_node = std::sync::Arc::new(hydrowatch::cross_node::CrossNode::new(None));
    let core = AuthCore::new(loaded.settings.auth.clone(), store, audit, cross_node)
        .map_err(|e| anyhow::anyhow!("auth: {e}"))?;
    let id = Auth::new(core)
        .users
        .add(
            &NewUser {
                email,
                name,
                role,
                password,
                must_change_password,
            },
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::json!({"id": id, "role": role}));
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(loaded: config::Loaded) -> anyhow::Result<ExitCode> {
    let (store, _) = hydrowatch::app::open_storage(&loaded).await?;
    let audit = hydrowatch::audit::AuditLog::new(store, &loaded.settings.audit);
    let found = audit.verify().await?;
    println!("{}", serde_json::to_string(&found)?);
    Ok(if found.problem.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A command-line instant (RFC 3339 or ms), the option named in the error.
fn instant_arg(text: &str, option: &str) -> anyhow::Result<i64> {
    hydrowatch::instant::parse_instant(text).map_err(|e| anyhow::anyhow!("{option}: {e}"))
}

async fn storage(loaded: config::Loaded, op: StorageOp) -> anyhow::Result<ExitCode> {
    let (store, _) = hydrowatch::app::open_storage(&loaded).await?;
    let settings = &loaded.settings.storage;
    let json = match op {
        StorageOp::EnsurePartitions {
            table,
            start,
            end,
            chunk_interval_hours,
        } => {
            let start = instant_arg(&start, "--start")?;
            let end = instant_arg(&end, "--end")?;
            let chunk = chunk_interval_hours.unwrap_or(settings.chunk_interval_hours);
            let created = store
                .ensure_partitions_for_range(&table, start, end, chunk)
                .await?;
            serde_json::json!({ "created": created })
        }
        StorageOp::Cleanup {
            table,
            retention_days,
        } => {
            let days = retention_days.unwrap_or(settings.retention_days);
            let dropped = store.cleanup_old_partitions(&table, days).await?;
            serde_json::json!({ "dropped": dropped })
        }
        StorageOp::Compress {
            table,
            older_than_days,
        } => {
            let days = older_than_days.unwrap_or(settings.compress_after_days);
            let compressed = store.compress_old_chunks(&table, days).await?;
            serde_json::json!({ "compressed": compressed })
        }
        StorageOp::Compact { start, end } => {
            let start = instant_arg(&start, "--start")?;
            let end = instant_arg(&end, "--end")?;
            let (mut blocks, mut fragments) = (0, 0);
            loop {
                let round = store.compact_blocks(start, end, 2000).await?;
                if round.blocks == 0 {
                    break;
                }
                blocks += round.blocks;
                fragments += round.fragments;
            }
            serde_json::json!({ "blocks": blocks, "fragments": fragments })
        }
        StorageOp::Stats { table } => serde_json::to_value(store.layout_stats(&table).await?)?,
        StorageOp::TimescaleHealth => serde_json::to_value(store.timescale_health().await?)?,
    };
    println!("{}", serde_json::to_string_pretty(&json)?);
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn load_rig(
    dir: &std::path::Path,
) -> anyhow::Result<(
    hydrowatch::rigdata::RigData,
    Vec<[f64; hydrowatch_models::cycle::FEATURES]>,
)> {
    use anyhow::Context as _;
    let data = hydrowatch::rigdata::RigData::load(dir)
        .with_context(|| format!("reading rig data in {}", dir.display()))?;
    let features = hydrowatch::evaluate::features_of(&data).map_err(anyhow::Error::msg)?;
    eprintln!("{} cycles from {}", data.cycles.len(), dir.display());
    Ok((data, features))
}

fn export_features(data: &std::path::Path, out: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use hydrowatch::evaluate as ev;
    use std::fmt::Write as _;
    let (data, features) = load_rig(data)?;
    let runs = ev::folds_by_runs(&data.conditions, 5);
    let stratified = ev::folds_stratified(&data.conditions, 5, 1);
    let mut csv =
        String::from("cycle,fold_runs,fold_stratified,cooler,valve,pump,accumulator,stable");
    for name in hydrowatch_models::cycle::feature_names() {
        let _ = write!(csv, ",{name}");
    }
    csv.push('\n');
    for (i, row) in features.iter().enumerate() {
        let _ = write!(csv, "{i},{},{}", runs[i], stratified[i]);
        for label in data.conditions[i].labels() {
            let _ = write!(csv, ",{label}");
        }
        for v in row {
            // Shortest text that reads back to the same f64.
            let _ = write!(csv, ",{v:?}");
        }
        csv.push('\n');
    }
    std::fs::write(out, csv).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} cycles × {} features → {}",
        features.len(),
        hydrowatch_models::cycle::FEATURES,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn train(data: &std::path::Path, out: &std::path::Path, trees: u16) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use hydrowatch::scoring::{write_json, NoveltyArtifact, NOVELTY_ARTIFACT};
    use hydrowatch_models::novelty::{Novelty, NoveltyParams};
    let (data, features) = load_rig(data)?;
    let params = hydrowatch_models::forest::ForestParams {
        n_trees: trees,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let labels: Vec<[i32; 5]> = data.conditions.iter().map(|c| c.labels()).collect();
    let forests = hydrowatch::evaluate::Forests::train(&features, &labels, &params)?;
    let size = write_json(out, &forests).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "trained {} forests of {trees} trees in {:.1} s; {} ({} KiB)",
        forests.forests.len(),
        started.elapsed().as_secs_f64(),
        out.display(),
        size / 1024
    );
    // The novelty detectors: of cycles (their features) and of single
    // sample vectors (every second of every cycle), fitted on all of them.
    let started = std::time::Instant::now();
    let rows: Vec<Vec<f64>> = features.iter().map(|f| f.to_vec()).collect();
    let cycle = Novelty::fit(&rows, &NoveltyParams::default())?;
    let samples: Vec<Vec<f64>> = data
        .cycles
        .iter()
        .flat_map(|c| {
            (0..hydrowatch_models::cycle::CYCLE_SECONDS)
                .map(move |t| c.values.iter().map(|row| row[t]).collect())
        })
        .collect();
    let sample = Novelty::fit(&samples, &NoveltyParams::default())?;
    let path = out.with_file_name(NOVELTY_ARTIFACT);
    let size = write_json(&path, &NoveltyArtifact { cycle, sample })
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "fitted the novelty detectors in {:.1} s; {} ({} KiB)",
        started.elapsed().as_secs_f64(),
        path.display(),
        size / 1024
    );
    Ok(ExitCode::SUCCESS)
}

fn evaluate(
    data: &std::path::Path,
    models: &std::path::Path,
    cv: bool,
    trees: u16,
    json: bool,
    xgb_cv: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use hydrowatch::evaluate as ev;
    let (data, features) = load_rig(data)?;
    let reports = if cv {
        cross_validated(&data, &features, trees, xgb_cv)?
    } else {
        as_loaded(&data, &features, models)?
    };
    // The novelty detector is judged the same way in both modes: fitted
    // without each fault class in turn, on run-keeping folds.
    let novelty = ev::novelty_withheld(&features, &data.conditions, &Default::default())
        .map_err(anyhow::Error::msg)?;
    if json {
        let mut out: Vec<serde_json::Value> = reports
            .iter()
            .map(|(title, s)| serde_json::json!({ "evaluation": title, "scores": s }))
            .collect();
        out.push(
            serde_json::json!({ "evaluation": "novelty, withheld classes", "classes": novelty }),
        );
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (title, scores) in &reports {
            println!("{}", ev::render(title, scores));
        }
        println!("{}", ev::render_novelty(&novelty));
    }
    Ok(ExitCode::SUCCESS)
}

/// The forest (and, given `xgb_cv`, XGBoost's out-of-fold predictions and
/// the ensemble) on stratified and on run-keeping 5-fold CV.
fn cross_validated(
    data: &hydrowatch::rigdata::RigData,
    features: &[[f64; hydrowatch_models::cycle::FEATURES]],
    trees: u16,
    xgb_cv: Option<&std::path::Path>,
) -> anyhow::Result<Vec<(String, hydrowatch::evaluate::Scores)>> {
    use hydrowatch::evaluate as ev;
    let params = hydrowatch_models::forest::ForestParams {
        n_trees: trees,
        ..Default::default()
    };
    let stratified = ev::folds_stratified(&data.conditions, 5, 1);
    let runs = ev::folds_by_runs(&data.conditions, 5);
    let mut reports = Vec::new();
    for (scheme, folds, title) in [
        ("stratified", &stratified, "stratified 5-fold CV"),
        ("runs", &runs, "5-fold CV keeping runs of cycles together"),
    ] {
        let (scores, forest) = ev::cross_validate(features, &data.conditions, folds, &params)?;
        reports.push((format!("random forest, {title}"), scores));
        let Some(path) = xgb_cv else {
            continue;
        };
        // The XGBoost script's out-of-fold predictions on the same folds,
        // combined with the forest's as the ensemble does.
        let xgb = ev::read_xgb_cv(path, scheme, features.len()).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            xgb.iter().all(Option::is_some),
            "{}: not every cycle has a {scheme} prediction (other data?)",
            path.display()
        );
        let config = hydrowatch_models::ensemble::EnsembleConfig::default();
        reports.push((
            format!("xgboost (out-of-fold, {}), {title}", path.display()),
            ev::ensemble_scores(&config, &[&xgb], &data.conditions),
        ));
        reports.push((
            format!("ensemble (random forest + xgboost), {title}"),
            ev::ensemble_scores(&config, &[&forest, &xgb], &data.conditions),
        ));
    }
    Ok(reports)
}

/// Each member and the ensemble as the running system loads them (ONNX
/// Runtime from ORT_DYLIB_PATH for the XGBoost member).
fn as_loaded(
    data: &hydrowatch::rigdata::RigData,
    features: &[[f64; hydrowatch_models::cycle::FEATURES]],
    models: &std::path::Path,
) -> anyhow::Result<Vec<(String, hydrowatch::evaluate::Scores)>> {
    use anyhow::Context as _;
    let settings = hydrowatch::config::ModelsSettings {
        dir: Some(models.to_path_buf()),
        ..Default::default()
    };
    let scorer = hydrowatch::scoring::load_scorer(&settings)
        .with_context(|| format!("loading the models of {}", models.display()))?;
    for (name, reason) in scorer.unavailable() {
        eprintln!("{name}: not evaluated: {reason}");
    }
    Ok(hydrowatch::evaluate::evaluate_members(
        &scorer,
        features,
        &data.conditions,
    ))
}

fn opcua_trust(
    loaded: &config::Loaded,
    equipment: Option<&str>,
    pattern: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use hydrowatch_protocols::opcua::trust;
    let connection = loaded
        .plant
        .connections
        .iter()
        .filter(|c| c.config.protocol == config::Protocol::Opcua)
        .find(|c| equipment.is_none_or(|e| c.equipment.as_str() == e))
        .ok_or_else(|| match equipment {
            Some(e) => anyhow::anyhow!("equipment {e:?} has no OPC-UA connection"),
            None => anyhow::anyhow!("the plant has no OPC-UA connection"),
        })?;
    let pki = &connection.config.pki_dir;
    match pattern {
        None => {
            println!(
                "certificate store {} ({})",
                pki.display(),
                connection.equipment
            );
            for (label, certs) in [
                ("rejected", trust::rejected(pki)?),
                ("trusted", trust::trusted(pki)?),
            ] {
                println!("{label}:");
                for cert in certs {
                    println!("  {}", cert.file);
                }
            }
        }
        Some(pattern) => {
            let cert = trust::trust(pki, pattern)?;
            println!("trusted {} ({})", cert.file, cert.path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn simulate(loaded: config::Loaded) -> anyhow::Result<ExitCode> {
    let simulators = hydrowatch::app::start_simulators(&loaded.plant, true).await?;
    for (id, sim) in &simulators {
        let sim = sim.lock().await;
        let protocol = match sim.protocol() {
            "modbus_tcp" => "Modbus TCP",
            "modbus_rtu_over_tcp" => "Modbus RTU-over-TCP",
            _ => "OPC-UA",
        };
        println!(
            "{id}: {protocol} simulator on {} replaying {} (write holding register {} to switch condition)",
            sim.endpoint(),
            sim.condition(),
            hydrowatch_protocols::modbus::CONDITION_REGISTER
        );
    }
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
