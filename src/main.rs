//! The `usher` command line.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use usher::config::Config;

mod cli;

#[derive(Parser)]
#[command(
    name = "usher",
    version,
    about = "Invite-based XMPP account onboarding"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a node's settings come from: `serve` runs with them, `check-config`
/// only validates them.
#[derive(clap::Args)]
struct NodeArgs {
    /// TOML config file; every key can also be set as USHER_<KEY> in the environment.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Create a new cluster with this node as its first member (cluster.bootstrap).
    #[arg(long, conflicts_with = "join")]
    bootstrap: bool,
    /// Join a cluster through this member's peer address (cluster.join).
    #[arg(long)]
    join: Option<String>,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a node (single node, embedded storage, unless configured otherwise).
    Serve(NodeArgs),
    /// Load and validate the configuration `serve` would run with, then exit
    /// (0: valid, 2: invalid, with the reason).
    CheckConfig(NodeArgs),
    /// Create, list, show and revoke invites, and read their history.
    Invite {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        action: cli::invite::Action,
    },
    /// A cluster: status of members and shards, adding and removing nodes.
    Cluster {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        action: cli::cluster::Action,
    },
    /// Accounts on a running node: where they came from.
    Account {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        action: cli::account::Action,
    },
}

/// Runs one admin API call to its end on a small runtime.
fn admin_call(call: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return cli::fail(&anyhow::anyhow!("starting the runtime: {e}")),
    };
    match runtime.block_on(call) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(&e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Invite { connection, action } => admin_call(cli::invite::run(connection, action)),
        Command::Cluster { connection, action } => {
            admin_call(cli::cluster::run(connection, action))
        }
        Command::Account { connection, action } => {
            admin_call(cli::account::run(connection, action))
        }
        Command::CheckConfig(args) => match load_config(args) {
            Ok(c) => {
                let storage = if c.scylla.nodes.is_empty() {
                    "embedded".to_owned()
                } else {
                    format!("CQL at {}", c.scylla.nodes.join(", "))
                };
                let role = match c.cluster.node_id {
                    0 => "standalone node".to_owned(),
                    id => format!("cluster node {id}"),
                };
                println!(
                    "configuration valid: {role} of {}, accounts {storage}",
                    c.domain
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve(args) => {
            let config = match load_config(args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(&config.log);
            let ignored = Config::ignored_variables();
            if !ignored.is_empty() {
                tracing::info!(variables = ?ignored, "USHER_ variables that are no setting, ignored");
            }
            if !usher::failpoint::COMPILED && std::env::var_os("USHER_FAILPOINTS").is_some() {
                // A crash test run against a release build would wait for a
                // crash that cannot come; say so where it looks.
                tracing::warn!("USHER_FAILPOINTS is set, but this build has no failpoints");
            }
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("usher: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The configuration with the command line's cluster flags; on error, says
/// why on stderr and gives exit code 2.
fn load_config(
    NodeArgs {
        config,
        bootstrap,
        join,
    }: NodeArgs,
) -> Result<Config, ExitCode> {
    let loaded = Config::load(config.as_deref()).and_then(|mut c| {
        c.cluster.bootstrap |= bootstrap;
        if join.is_some() {
            c.cluster.join = join;
        }
        c.validate().map(|()| c)
    });
    loaded.map_err(|e| {
        eprintln!("usher: invalid configuration: {e}");
        ExitCode::from(2)
    })
}

fn init_logging(filter: &str) {
    // The filter was validated with the config.
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Each client is a socket: lift the soft descriptor limit to the hard one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let system = actix::System::with_tokio_rt(move || runtime);
    system
        .block_on(usher::node::run(config))
        .context("node failed")
}
