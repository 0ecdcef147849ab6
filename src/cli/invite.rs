//! `usher invite …`: create, list, show and revoke invites through the admin API.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::{connect, status_error, time, Connection};
use usher::admin::proto::{
    self, CreateInviteRequest, GetInviteRequest, ListInviteEventsRequest, ListInvitesRequest,
    RevokeInviteRequest,
};

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
        /// Mint as this local user, under their invite quota and tree limits.
        #[arg(long)]
        as_user: Option<String>,
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
    /// Everything that happened to one invite, in order.
    History {
        #[arg(allow_hyphen_values = true)]
        token: String,
    },
    /// The audit trail of all invites, oldest first.
    Events {
        /// Invites attributed to this user or creator (e.g. admin-api).
        #[arg(long)]
        inviter: Option<String>,
        /// Events about this account.
        #[arg(long)]
        account: Option<String>,
        /// From this time: RFC 3339, or a duration ago such as 2h.
        #[arg(long, value_parser = parse_when)]
        since: Option<u64>,
        /// Before this time: RFC 3339, or a duration ago.
        #[arg(long, value_parser = parse_when)]
        until: Option<u64>,
    },
}

/// Milliseconds since the epoch from RFC 3339, or from a duration before now.
fn parse_when(s: &str) -> Result<u64, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s)
                .map_err(|_| format!("'{s}' is neither an RFC 3339 time nor a duration"))?;
            std::time::SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| format!("'{s}' reaches before 1970"))?
        }
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("'{s}' is before 1970"))
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

// Long because it is one flat arm per `usher invite` subcommand: each arm is
// a request and how its answer is printed, read in place.
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
            as_user,
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
                as_user: as_user.unwrap_or_default(),
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
        Action::History { token } => {
            // Fails clearly on an unknown token rather than printing nothing.
            client
                .get_invite(GetInviteRequest {
                    token: token.clone(),
                })
                .await
                .map_err(status_error)?;
            let request = ListInviteEventsRequest {
                token,
                ..Default::default()
            };
            print_events(&mut client, request, conn.json).await?;
        }
        Action::Events {
            inviter,
            account,
            since,
            until,
        } => {
            let request = ListInviteEventsRequest {
                inviter: inviter.unwrap_or_default(),
                account: account.unwrap_or_default(),
                since_ms: since,
                until_ms: until,
                ..Default::default()
            };
            print_events(&mut client, request, conn.json).await?;
        }
    }
    Ok(())
}

async fn print_events(
    client: &mut super::Client,
    mut request: ListInviteEventsRequest,
    json: bool,
) -> anyhow::Result<()> {
    request.page_size = 1000;
    let mut all = Vec::new();
    loop {
        let page = client
            .list_invite_events(request.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if json {
        let events: Vec<_> = all.iter().map(event_json).collect();
        println!("{}", serde_json::Value::Array(events));
        return Ok(());
    }
    for e in &all {
        let detail = match e.event.as_str() {
            "created" => format!("{} by {}", kind_name(e.kind), or_dash(&e.inviter)),
            "reserved" | "redeemed" => {
                format!("{} via {} on {}", e.account, e.path, or_dash(&e.node))
            }
            "released" => e.account.clone(),
            _ => String::new(),
        };
        println!("{}  {}  {:<8}  {detail}", time(e.at_ms), e.token, e.event);
    }
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn event_json(e: &proto::InviteEvent) -> serde_json::Value {
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    json!({
        "seq": (e.event != "expired").then_some(e.seq),
        "at": time(e.at_ms),
        "at_ms": e.at_ms,
        "token": e.token,
        "event": e.event,
        "inviter": some(&e.inviter),
        "account": some(&e.account),
        "node": some(&e.node),
        "path": some(&e.path),
        "kind": (e.event == "created").then(|| kind_name(e.kind)),
        "roles": e.roles,
        "groups": e.groups,
    })
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
        "remaining": i.remaining,
        "minted_by": (!i.minted_by.is_empty()).then_some(&i.minted_by),
        "tree": (!i.tree.is_empty()).then_some(&i.tree),
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
    match i.remaining {
        Some(left) => println!("uses:     {} ({} pending, {left} left)", uses(i), i.pending),
        None => println!("uses:     {} ({} pending)", uses(i), i.pending),
    }
    if !i.minted_by.is_empty() {
        println!("minted by: {}", i.minted_by);
    }
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
