//! Resolves reservations whose lease ran out (the node that made them died or
//! stalled between reserve and commit): if the account they were creating
//! exists and carries the reservation id, the use is committed, else released.
//! Also forgets invites long expired.

use std::sync::Arc;
use std::time::Duration;

use crate::accounts::AccountStore;
use crate::clock::now_millis;
use crate::invites::{Command, Outcome, Purpose};
use crate::ledger::LedgerHandle;

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
        let account_has_it = match reservation.purpose {
            Purpose::Register => accounts
                .get(&reservation.username)
                .await?
                .is_some_and(|a| a.reservation.as_ref() == Some(&id)),
            // A subscription leaves no account row behind: give the use back.
            _ => false,
        };
        let command = if account_has_it {
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
            committed = account_has_it,
            ?outcome,
            "resolved an expired reservation"
        );
        resolved += 1;
    }
    Ok(resolved)
}
