//! The `cinderblock` command: `serve` runs the daemon, `migrate` only runs migrations, `admin`
//! manages accounts, and `status`, `volume`, `job` and `pool` are the operator's read-only
//! views (src/ops/cli.rs); `completion` prints a shell completion script.

use std::path::PathBuf;
use std::process::ExitCode;

use cinderblock::config::{Config, LogFormat};
use cinderblock::ops::cli::{self, Format, JobCommand, OpsCommand, PoolCommand, VolumeCommand};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cinderblock", version, about = "Self-hosted block storage with EVS and Cinder APIs")]
struct Cli {
    /// TOML configuration file (default: ./cinderblock.toml when present, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Output of the operator commands: `table` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where `status` and `pool list` reach the running daemon (`host:port` of its API or
    /// `[metrics] listen`); default: `[metrics] listen`, else `listen`, from the config.
    #[arg(long, global = true)]
    daemon: Option<std::net::SocketAddr>,
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
    /// Version, daemon state and uptime, pools with capacity and health, volumes by status,
    /// exports, jobs in flight and recent failures.
    Status,
    /// Volumes of every project (read from the database).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Jobs of every project, failed ones with their reasons.
    #[command(subcommand)]
    Job(JobCommand),
    /// Storage pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Print a shell completion script (`cinderblock completion bash > /etc/bash_completion.d/cinderblock`).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "cinderblock", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        // One object a line; the request span (its id) rides along in `span`/`spans`.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
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
            Command::Status => cli::run(&config, OpsCommand::Status, cli.format, cli.daemon).await,
            Command::Volume(c) => cli::run(&config, OpsCommand::Volume(c), cli.format, cli.daemon).await,
            Command::Job(c) => cli::run(&config, OpsCommand::Job(c), cli.format, cli.daemon).await,
            Command::Pool(c) => cli::run(&config, OpsCommand::Pool(c), cli.format, cli.daemon).await,
            // Handled before the configuration is read.
            Command::Completion { .. } => Ok(()),
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
