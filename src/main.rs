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
    /// Create or upgrade the database schema (storage.url) and record the plant.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.config.clone().or_else(config::default_path);
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HYDROWATCH_"))
        .collect();
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
            Command::CheckConfig => Ok(ExitCode::SUCCESS),
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

async fn simulate(loaded: config::Loaded) -> anyhow::Result<ExitCode> {
    let simulators = hydrowatch::app::start_simulators(&loaded.plant, true).await?;
    for (id, sim) in &simulators {
        let sim = sim.lock().await;
        println!(
            "{id}: Modbus TCP simulator on {} replaying {} (write holding register {} to switch condition)",
            sim.addr(),
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
