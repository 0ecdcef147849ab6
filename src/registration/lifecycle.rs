//! What happens to an account after it exists: a password change, removal
//! and the removed name's quarantine. Removal leaves nothing a later holder
//! of the name could inherit: its sessions end on every node, its roster goes
//! and it leaves its contacts' rosters (with roster pushes), the invites
//! bound to the name or minted by it are revoked in the ledger, and the row
//! becomes a tombstone that keeps the name for `account_quarantine`.

use super::Registrar;
use crate::accounts::{AccountRow, Credentials, RowKind, StoreError};
use crate::clock::now_unix;
use crate::invites::{Command, Outcome};
use crate::sessions::{end_session, roster_push};
use crate::xmpp::jid::{BareJid, Username};
use crate::xmpp::{ns, Element};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no such account")]
    NoAccount,
    #[error("the account kept changing; try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the invite ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// How often a row change is tried again when the row changes under it.
const ATTEMPTS: usize = 4;

impl Registrar {
    /// Sets `user`'s new credentials and ends their sessions but the
    /// connection `keep` (on this node; every session elsewhere ends).
    pub async fn change_password(
        &self,
        user: &Username,
        credentials: Credentials,
        keep: Option<u64>,
    ) -> Result<(), LifecycleError> {
        self.change_row(user, |row| {
            let mut new = row.clone();
            new.credentials = Some(credentials.clone());
            new
        })
        .await?;
        self.directory
            .deliver_except(user, &end_session("Password changed"), keep);
        tracing::info!(user = %user, "password changed");
        Ok(())
    }

    /// Removes `user`'s account and everything that could pass to a later
    /// holder of the name. Safe to run again if a step failed part-way.
    pub async fn remove_account(&self, user: &Username) -> Result<(), LifecycleError> {
        let until = now_unix().saturating_add(self.config.account_quarantine.as_secs());
        self.change_row(user, |row| tombstone(row, until)).await?;
        // No session outlives the account, on any node: one left open could
        // write to the roster the next holder of the name gets.
        self.directory
            .deliver_except(user, &end_session("Account removed"), None);
        self.forget_contacts(user).await?;
        let revoked = self
            .ledger
            .propose(Command::RevokeUser {
                username: user.clone(),
            })
            .await?;
        let revoked = match revoked {
            Outcome::RevokedAll(n) => n,
            _ => 0,
        };
        tracing::info!(user = %user, invites_revoked = revoked, "account removed");
        Ok(())
    }

    /// Lets a quarantined name be registered again now; false when the name
    /// is not quarantined.
    pub async fn lift_quarantine(&self, user: &Username) -> Result<bool, LifecycleError> {
        for _ in 0..ATTEMPTS {
            let Some(row) = self.store.row(user).await? else {
                return Ok(false);
            };
            if row.state != RowKind::Deleted || row.quarantine_until <= now_unix() {
                return Ok(false);
            }
            let mut lifted = row.clone();
            lifted.quarantine_until = 0;
            if self
                .store
                .replace_row(row.stamp.as_ref(), lifted)
                .await?
                .is_some()
            {
                tracing::info!(user = %user, "quarantine lifted");
                return Ok(true);
            }
        }
        Err(LifecycleError::Contended)
    }

    /// Changes the active account row by compare-and-set.
    async fn change_row(
        &self,
        user: &Username,
        change: impl Fn(&AccountRow) -> AccountRow,
    ) -> Result<(), LifecycleError> {
        for _ in 0..ATTEMPTS {
            let row = self
                .store
                .row(user)
                .await?
                .filter(|r| r.state == RowKind::Active)
                .ok_or(LifecycleError::NoAccount)?;
            if self
                .store
                .replace_row(row.stamp.as_ref(), change(&row))
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(LifecycleError::Contended)
    }

    /// Takes `user` out of each contact's roster (telling their sessions),
    /// then drops `user`'s own roster with its pending requests.
    async fn forget_contacts(&self, user: &Username) -> Result<(), LifecycleError> {
        let domain = &self.config.domain;
        let me = BareJid::user(user.clone(), domain.clone()).to_string();
        for item in self.store.roster(user).await? {
            let Some(contact) = local_user(&item.jid, domain.as_str()) else {
                continue;
            };
            if self.store.remove_roster_item(&contact, &me).await? {
                let gone = Element::new("item", ns::ROSTER)
                    .with_attr("jid", me.clone())
                    .with_attr("subscription", "remove");
                self.directory
                    .deliver_except(&contact, &roster_push(gone), None);
            }
        }
        self.store.delete_user_data(user).await?;
        Ok(())
    }
}

/// The removed account's row: no credentials, roles or reservation; the
/// fence kept (it only grows) and the name held until `until`.
fn tombstone(row: &AccountRow, until: u64) -> AccountRow {
    AccountRow {
        username: row.username.clone(),
        state: RowKind::Deleted,
        credentials: None,
        created_at: row.created_at,
        roles: Vec::new(),
        reservation: None,
        generation: None,
        fenced_until: row.fenced_until,
        quarantine_until: until,
        stamp: None,
    }
}

/// The local user a roster JID names, if it is one of this domain's.
fn local_user(jid: &str, domain: &str) -> Option<Username> {
    let (local, host) = jid.split_once('@')?;
    if !host.eq_ignore_ascii_case(domain) {
        return None;
    }
    Username::parse(local).ok()
}
