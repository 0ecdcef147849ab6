//! `usher account …`: what the admin API knows about an account.

use clap::Subcommand;
use serde_json::json;

use super::{connect, status_error, time, Connection};
use usher::admin::proto::{GetAccountOriginRequest, LiftQuarantineRequest, RemoveAccountRequest};

#[derive(Subcommand)]
pub enum Action {
    /// Who invited the account, its invite tree, and what it may mint now.
    Origin { username: String },
    /// Removes the account: its sessions end, it leaves its contacts' rosters,
    /// its invites are revoked and the name is quarantined.
    Remove { username: String },
    /// Lets a removed account's name be registered again now.
    Unquarantine { username: String },
}

// Long because it is one flat arm per `usher account` subcommand: each arm is
// a request and how its answer is printed, read in place.
pub async fn run(conn: Connection, action: Action) -> anyhow::Result<()> {
    let mut client = connect(&conn).await?;
    match action {
        Action::Remove { username } => {
            client
                .remove_account(RemoveAccountRequest {
                    username: username.clone(),
                })
                .await
                .map_err(status_error)?;
            if conn.json {
                println!("{}", json!({ "username": username, "removed": true }));
            } else {
                println!("removed {username}");
            }
        }
        Action::Unquarantine { username } => {
            let lifted = client
                .lift_quarantine(LiftQuarantineRequest {
                    username: username.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .lifted;
            if conn.json {
                println!("{}", json!({ "username": username, "lifted": lifted }));
            } else if lifted {
                println!("{username} may be registered again");
            } else {
                println!("{username} was not quarantined");
            }
        }
        Action::Origin { username } => {
            let o = client
                .get_account_origin(GetAccountOriginRequest { username })
                .await
                .map_err(status_error)?
                .into_inner();
            let blocked =
                (o.minting_blocked_until_ms > 0).then(|| time(o.minting_blocked_until_ms));
            if conn.json {
                let some = |s: &String| (!s.is_empty()).then(|| s.clone());
                let origin = o.has_origin.then(|| {
                    json!({
                        "invite": o.invite,
                        "inviter": some(&o.inviter),
                        "tree": o.tree,
                        "depth": o.depth,
                        "registered_at": time(o.registered_at_ms),
                        "chain_started_at": time(o.chain_started_at_ms),
                        "tree_size": o.tree_size,
                    })
                });
                let out = json!({
                    "username": o.username,
                    "admin": o.admin,
                    "origin": origin,
                    "live_invites": o.live_invites,
                    "invite_quota": o.invite_quota,
                    "tree_limit": o.tree_limit,
                    "minting_blocked_until": blocked,
                });
                println!("{out}");
                return Ok(());
            }
            println!("account:     {}", o.username);
            if o.has_origin {
                let by = if o.inviter.is_empty() {
                    "an operator".to_owned()
                } else {
                    o.inviter.clone()
                };
                println!("invited by:  {by} (invite {})", o.invite);
                println!("registered:  {}", time(o.registered_at_ms));
                println!(
                    "tree:        {} ({} invites{}), depth {}",
                    o.tree,
                    o.tree_size,
                    o.tree_limit.map(|l| format!(" of {l}")).unwrap_or_default(),
                    o.depth
                );
            } else {
                println!("invited by:  nobody (registered without an invite)");
            }
            match o.invite_quota {
                Some(q) => println!("invites:     {} live of {q} allowed", o.live_invites),
                None => println!(
                    "invites:     {} live, no limit (administrator)",
                    o.live_invites
                ),
            }
            if let Some(until) = blocked {
                println!("minting:     blocked until {until} (young invite chain)");
            }
        }
    }
    Ok(())
}
