//! Subcommands that talk to a running node through its admin API: the
//! connection, its errors, and how times are printed, shared by all of them.

pub mod account;
pub mod cluster;
pub mod invite;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use clap::Args;
use tonic::transport::Endpoint;
use tonic::Code;

use usher::admin::proto::admin_client::AdminClient;
use usher::config::Config;

#[derive(Args)]
pub struct Connection {
    /// Admin API URL [default: http://ADMIN_ADDR from the config]
    #[arg(long, global = true)]
    server: Option<String>,
    /// File with the admin bearer token [default: DATA_DIR/admin.token]
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Config file of the node (for its admin address and data dir)
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    json: bool,
}

type Client = AdminClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        usher::bearer::Attach,
    >,
>;

pub async fn connect(conn: &Connection) -> anyhow::Result<Client> {
    let config = Config::load(conn.config.as_deref()).map_err(|e| anyhow!("configuration: {e}"))?;
    let url = conn
        .server
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.admin_addr));
    let token = match (&conn.token_file, &config.admin_token) {
        (Some(path), _) => read_token(path)?,
        (None, Some(t)) => t.clone(),
        (None, None) => read_token(&usher::admin::token::token_path(&config.data_dir))?,
    };
    let attach = usher::bearer::Attach::new(&token)
        .context("the admin token has characters a header cannot carry")?;
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid admin API URL {url}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| anyhow!("cannot reach the admin API at {url}: {}", source_chain(&e)))?;
    Ok(AdminClient::with_interceptor(channel, attach))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token from {}", path.display()))?;
    Ok(t.trim().to_owned())
}

pub fn status_error(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        Code::Unauthenticated => anyhow!("the admin API refused the token (check --token-file)"),
        Code::Unavailable => anyhow!("the node is unavailable: {}", s.message()),
        Code::NotFound => anyhow!("{}", s.message()),
        _ => anyhow!("{}", s.message()),
    }
}

pub fn time(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Exit status and message for a failed CLI command.
pub fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("usher: {e:#}");
    std::process::ExitCode::FAILURE
}
