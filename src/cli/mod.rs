//! Subcommands that talk to a running node through its admin API: the
//! connection, its errors, and how times are printed, shared by all of them.

pub mod account;
pub mod cluster;
pub mod invite;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use clap::Args;
use tonic::Code;

use usher::admin::proto::admin_client::AdminClient;
use usher::config::Config;

#[derive(Args)]
pub struct Connection {
    /// Admin API URL [default: ADMIN_ADDR from the config, https:// if it
    /// sets admin_tls.cert or admin_tls.ca]; http:// only to a loopback address
    #[arg(long, global = true)]
    server: Option<String>,
    /// CA to check the admin API's certificate with (https://)
    /// [default: admin_tls.ca from the config]
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Name the admin API's certificate must carry [default: the URL's host;
    /// `usher cluster certs --admin` certificates also carry usher-admin]
    #[arg(long, global = true)]
    tls_server_name: Option<String>,
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
    let url = conn.server.clone().unwrap_or_else(|| default_url(&config));
    let token = match (&conn.token_file, &config.admin_token) {
        (Some(path), _) => read_token(path)?,
        (None, Some(t)) => t.clone(),
        (None, None) => read_token(&usher::admin::token::token_path(&config.data_dir))?,
    };
    let attach = usher::bearer::Attach::new(&token)
        .context("the admin token has characters a header cannot carry")?;
    let ca = match (&conn.ca_file, &config.admin_tls.ca) {
        (Some(ca), _) => Some(("--ca-file", ca.as_path())),
        (None, Some(ca)) => Some(("admin_tls.ca", ca.as_path())),
        (None, None) => None,
    };
    let endpoint = usher::admin::tls::endpoint(&url, ca, conn.tls_server_name.as_deref())?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| {
            let mut why = source_chain(&e);
            if why.contains("not valid for name") && conn.tls_server_name.is_none() {
                why.push_str(" (a certificate from `usher cluster certs --admin` also names usher-admin: --tls-server-name usher-admin)");
            }
            anyhow!("cannot reach the admin API at {url}: {why}")
        })?;
    Ok(AdminClient::with_interceptor(channel, attach))
}

/// The config's `admin_addr` as a URL: https if the node serves TLS (or the
/// config names a CA to check it by); a wildcard address (0.0.0.0, ::) is
/// reached on loopback.
fn default_url(config: &Config) -> String {
    let mut addr = config.admin_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if config.admin_tls.cert.is_some() || config.admin_tls.ca.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        // Some layers repeat their source's text in their own; say it once.
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_follows_the_config() {
        let mut config = Config::default();
        assert_eq!(default_url(&config), "http://127.0.0.1:5290");
        config.admin_addr = "0.0.0.0:5290".parse().unwrap();
        config.admin_tls.cert = Some("admin.pem".into());
        assert_eq!(default_url(&config), "https://127.0.0.1:5290");
        config.admin_addr = "[::]:5290".parse().unwrap();
        assert_eq!(default_url(&config), "https://[::1]:5290");
    }
}
