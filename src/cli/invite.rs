//! `usher invite …`: create, list, show and revoke invites through the admin API.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use tonic::Code;

use usher::admin::proto::admin_client::AdminClient;
use usher::admin::proto::{
    self, CreateInviteRequest, GetInviteRequest, ListInvitesRequest, RevokeInviteRequest,
};
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

#[derive(Subcommand)]
pub enum Action {
    /// Create an invite; prints its URI as the last line.
    Create {
        /// Bind the invite to this username.
        #[arg(long, conflicts_with_all = ["reset", "contact"])]
        username: Option<String>,
        /// A password-reset invite for this existing account.
        #[arg(long, conflicts_with = "contact")]
        reset: Option<String>,
        /// A contact invite of this user (who gets the invitee as a contact).
        #[arg(long)]
        contact: Option<String>,
        /// With --contact: the invite does not allow registering an account.
        #[arg(long, requires = "contact")]
        no_register: bool,
        /// A group the new account joins (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A role the new account gets (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How many accounts it may create (more than 1 makes a group invite).
        #[arg(long, conflicts_with = "unlimited")]
        uses: Option<u32>,
        /// Any number of accounts until it expires (a group invite).
        #[arg(long)]
        unlimited: bool,
        /// Lifetime, e.g. 7d, 12h, 30m [default: the server's]
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// List invites, newest first.
    List {
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long, value_enum)]
        state: Option<StateArg>,
    },
    /// Show one invite.
    Show {
        /// Tokens may start with '-' (URL-safe base64).
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
    /// Revoke an invite.
    Revoke {
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    Account,
    Reset,
    Contact,
    Group,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StateArg {
    Active,
    Expired,
    Revoked,
    UsedUp,
}

/// Adds the bearer token to every request.
type AddToken =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

type Client = AdminClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AddToken>,
>;

async fn connect(conn: &Connection) -> anyhow::Result<Client> {
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
    let header: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("the admin token has characters a header cannot carry")?;
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid admin API URL {url}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| anyhow!("cannot reach the admin API at {url}: {}", source_chain(&e)))?;
    let add_token: AddToken = Box::new(move |mut req| {
        req.metadata_mut().insert("authorization", header.clone());
        Ok(req)
    });
    Ok(AdminClient::with_interceptor(channel, add_token))
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

fn status_error(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        Code::Unauthenticated => anyhow!("the admin API refused the token (check --token-file)"),
        Code::Unavailable => anyhow!("the node is unavailable: {}", s.message()),
        Code::NotFound => anyhow!("{}", s.message()),
        _ => anyhow!("{}", s.message()),
    }
}

pub async fn run(conn: Connection, action: Action) -> anyhow::Result<()> {
    let mut client = connect(&conn).await?;
    match action {
        Action::Create {
            username,
            reset,
            contact,
            no_register,
            groups,
            roles,
            uses,
            unlimited,
            ttl,
        } => {
            let kind = if reset.is_some() {
                proto::InviteKind::Reset
            } else if contact.is_some() {
                proto::InviteKind::Contact
            } else if unlimited || uses.is_some_and(|n| n > 1) {
                proto::InviteKind::Group
            } else {
                proto::InviteKind::Account
            };
            let request = CreateInviteRequest {
                kind: kind as i32,
                username: reset.or(username).unwrap_or_default(),
                inviter: contact.unwrap_or_default(),
                allow_registration: !no_register,
                max_uses: uses,
                unlimited,
                roles,
                groups,
                ttl_seconds: ttl.map(|d| d.as_secs().max(1)),
            };
            let invite = client
                .create_invite(request)
                .await
                .map_err(status_error)?
                .into_inner();
            if conn.json {
                println!("{}", to_json(&invite));
            } else {
                if !invite.landing_url.is_empty() {
                    println!("{}", invite.landing_url);
                }
                println!("{}", invite.uri);
            }
        }
        Action::List { kind, state } => {
            let mut page_token = String::new();
            let mut all = Vec::new();
            loop {
                let request = ListInvitesRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    kind: kind.map_or(proto::InviteKind::Unspecified, kind_proto) as i32,
                    state: state.map_or(proto::InviteState::Unspecified, state_proto) as i32,
                };
                let page = client
                    .list_invites(request)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                all.extend(page.invites);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if conn.json {
                println!(
                    "{}",
                    serde_json::Value::Array(all.iter().map(to_json).collect())
                );
            } else {
                for i in &all {
                    println!(
                        "{}  {:<7}  {:<7}  {:>7}  expires {}",
                        i.token,
                        kind_name(i.kind),
                        state_name(i.state),
                        uses(i),
                        time(i.expires_at_ms)
                    );
                }
            }
        }
        Action::Show { token } => {
            let invite = client
                .get_invite(GetInviteRequest { token })
                .await
                .map_err(status_error)?
                .into_inner();
            print_invite(&invite, conn.json);
        }
        Action::Revoke { token } => {
            let invite = client
                .revoke_invite(RevokeInviteRequest { token })
                .await
                .map_err(status_error)?
                .into_inner();
            if conn.json {
                println!("{}", to_json(&invite));
            } else {
                println!("revoked {}", invite.token);
            }
        }
    }
    Ok(())
}

fn kind_proto(k: KindArg) -> proto::InviteKind {
    match k {
        KindArg::Account => proto::InviteKind::Account,
        KindArg::Reset => proto::InviteKind::Reset,
        KindArg::Contact => proto::InviteKind::Contact,
        KindArg::Group => proto::InviteKind::Group,
    }
}

fn state_proto(s: StateArg) -> proto::InviteState {
    match s {
        StateArg::Active => proto::InviteState::Active,
        StateArg::Expired => proto::InviteState::Expired,
        StateArg::Revoked => proto::InviteState::Revoked,
        StateArg::UsedUp => proto::InviteState::UsedUp,
    }
}

fn kind_name(k: i32) -> &'static str {
    match proto::InviteKind::try_from(k) {
        Ok(proto::InviteKind::Account) => "account",
        Ok(proto::InviteKind::Reset) => "reset",
        Ok(proto::InviteKind::Contact) => "contact",
        Ok(proto::InviteKind::Group) => "group",
        _ => "unknown",
    }
}

fn state_name(s: i32) -> &'static str {
    match proto::InviteState::try_from(s) {
        Ok(proto::InviteState::Active) => "active",
        Ok(proto::InviteState::Expired) => "expired",
        Ok(proto::InviteState::Revoked) => "revoked",
        Ok(proto::InviteState::UsedUp) => "used-up",
        _ => "unknown",
    }
}

fn uses(i: &proto::Invite) -> String {
    match i.max_uses {
        Some(max) => format!("{}/{max}", i.uses),
        None => format!("{}/∞", i.uses),
    }
}

fn time(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn to_json(i: &proto::Invite) -> serde_json::Value {
    json!({
        "token": i.token,
        "kind": kind_name(i.kind),
        "state": state_name(i.state),
        "username": (!i.username.is_empty()).then_some(&i.username),
        "inviter": (!i.inviter.is_empty()).then_some(&i.inviter),
        "allow_registration": i.allow_registration,
        "max_uses": i.max_uses,
        "uses": i.uses,
        "pending": i.pending,
        "roles": i.roles,
        "groups": i.groups,
        "created_at": time(i.created_at_ms),
        "expires_at": time(i.expires_at_ms),
        "created_by": i.created_by,
        "uri": i.uri,
        "landing_url": (!i.landing_url.is_empty()).then_some(&i.landing_url),
    })
}

fn print_invite(i: &proto::Invite, json: bool) {
    if json {
        println!("{}", to_json(i));
        return;
    }
    println!("token:    {}", i.token);
    println!("kind:     {}", kind_name(i.kind));
    println!("state:    {}", state_name(i.state));
    if !i.username.is_empty() {
        println!("username: {}", i.username);
    }
    if !i.inviter.is_empty() {
        println!(
            "inviter:  {} (registration {})",
            i.inviter,
            if i.allow_registration {
                "allowed"
            } else {
                "not allowed"
            }
        );
    }
    println!("uses:     {} ({} pending)", uses(i), i.pending);
    if !i.roles.is_empty() {
        println!("roles:    {}", i.roles.join(", "));
    }
    if !i.groups.is_empty() {
        println!("groups:   {}", i.groups.join(", "));
    }
    println!("created:  {}", time(i.created_at_ms));
    println!("expires:  {}", time(i.expires_at_ms));
    if !i.landing_url.is_empty() {
        println!("landing:  {}", i.landing_url);
    }
    println!("uri:      {}", i.uri);
}

/// Exit status and message for a failed CLI command.
pub fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("usher: {e:#}");
    std::process::ExitCode::FAILURE
}
