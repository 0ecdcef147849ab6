//! Resolves reservations whose lease ran out (the node that made them died or
//! stalled between reserve and commit): if the account they were writing
//! stands and carries the reservation id, the use is committed; else the
//! janitor first fences the name against the reservation in the account store
//! (`fence::settle`), so the write can no longer land, and only then releases.
//! Also forgets invites long expired, and prunes resolved reservations and
//! audit events past the retention.

use std::sync::Arc;
use std::time::Duration;

use super::apply;
use super::fence::{self, Claim, Settle};
use crate::accounts::{AccountStore, StoreError};
use crate::clock::now_millis;
use crate::invites::{Command, Outcome, Purpose};
use crate::ledger::LedgerHandle;
use crate::xmpp::jid::Username;

/// Expired invites are kept this long (for listing) before they are forgotten.
const RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

pub fn spawn_janitor(
    ledger: LedgerHandle,
    accounts: Arc<dyn AccountStore>,
    every: Duration,
    audit_retention: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            if let Err(e) = resolve_expired_leases(&ledger, accounts.as_ref()).await {
                tracing::warn!(error = %e, "lease janitor round failed");
            }
            rounds += 1;
            if rounds % 3600 == 1 {
                let before = now_millis().saturating_sub(RETENTION_MS);
                let events_before = now_millis().saturating_sub(audit_retention.as_millis() as u64);
                let sweep = Command::Sweep {
                    before,
                    events_before,
                };
                if let Ok(Outcome::Swept(n)) = ledger.propose(sweep).await {
                    if n > 0 {
                        tracing::info!(forgotten = n, "swept expired invites");
                    }
                }
            }
        }
    })
}

/// One round; public for tests.
pub async fn resolve_expired_leases(
    ledger: &LedgerHandle,
    accounts: &dyn AccountStore,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let now = now_millis();
    // Each shard's leader settles that shard's leases, so the work moves
    // with leadership and no two nodes decide the same lease.
    let mut expired = Vec::new();
    for shard in ledger.led_here() {
        expired.extend(ledger.read_now(shard, |l| l.expired_leases(now))?);
    }
    let mut resolved = 0;
    for (id, token, reservation) in expired {
        let claim = Claim {
            reservation: id.clone(),
            reserved_at: reservation.reserved_at,
        };
        let commit = match reservation.purpose {
            Purpose::Register => match decide(accounts, &reservation.username, &claim).await {
                Ok(Some(commit)) => commit,
                // The store did not answer or the row kept changing: the
                // use stays held (nothing may be released unfenced) and
                // the next round tries again.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, invite = %token.redacted(), "cannot settle an expired reservation yet");
                    continue;
                }
            },
            // A subscription writes no account row, and pairs only after
            // its commit: giving the use back is always safe.
            _ => false,
        };
        let command = if commit {
            Command::Commit {
                token: token.clone(),
                reservation: id.clone(),
            }
        } else {
            Command::Release {
                token: token.clone(),
                reservation: id.clone(),
            }
        };
        let outcome = ledger.propose(command).await?;
        tracing::info!(
            invite = %token.redacted(),
            committed = commit,
            ?outcome,
            "resolved an expired reservation"
        );
        resolved += 1;
    }
    Ok(resolved)
}

/// Whether the use of `claim` is to be committed (true) or released (false,
/// once the name is fenced against it); `None` if the row kept changing.
async fn decide(
    accounts: &dyn AccountStore,
    username: &Username,
    claim: &Claim,
) -> Result<Option<bool>, StoreError> {
    for _ in 0..3 {
        let row = accounts.row(username).await?;
        match fence::settle(username, row.as_ref(), claim) {
            Settle::Commit => return Ok(Some(true)),
            Settle::Release => return Ok(Some(false)),
            Settle::Fence(write) => {
                if apply(accounts, &write).await?.is_some() {
                    return Ok(Some(false));
                }
            }
        }
    }
    Ok(None)
}
