//! The `cinderblock` command: `serve` runs the daemon, `migrate` only runs migrations.

use std::path::PathBuf;
use std::process::ExitCode;

use cinderblock::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cinderblock", version, about = "Self-hosted block storage with EVS and Cinder APIs")]
struct Cli {
    /// TOML configuration file (default: ./cinderblock.toml when present, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Manage projects, users, roles and AK/SK credentials (runs migrations first).
    #[command(subcommand)]
    Admin(cinderblock::admin::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cinderblock: {e}");
            return ExitCode::from(2);
        }
    };
    // The AK/SK credential key lives beside the config file unless set (or beside SQLite).
    if config.auth.credential_key_file.is_none() && !config.database.url.starts_with("sqlite:") {
        if let Some(dir) = cli.config.as_deref().and_then(std::path::Path::parent) {
            config.auth.credential_key_file = Some(dir.join("credential.key"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cinderblock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => cinderblock::app::serve(config).await,
            Command::Migrate => cinderblock::app::open_db(&config).await.map(|db| {
                tracing::info!("migrations applied");
                drop(db);
            }),
            Command::Admin(cmd) => cinderblock::admin::run(&config, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cinderblock: {e}");
            ExitCode::FAILURE
        }
    }
}
