//! SASL on the stream: SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN, with decoy
//! exchanges for unknown users so that account existence does not leak, and
//! guessing slowed across streams (`guessing`): an address out of failures is
//! refused at once, a username past its share is answered late.

use super::guessing::{account_key, AccountKey};
use super::session::Session;
use crate::accounts::{Credentials, RowKind};
use crate::blocking_pool::{PoolError, Queue};
use crate::xmpp::errors::{StreamCondition, StreamError};
use crate::xmpp::jid::{prepare_password, Username};
use crate::xmpp::sasl::scram::{decoy_keys, parse_client_first, ScramExchange};
use crate::xmpp::sasl::{self, plain, HashAlg, Mechanism, SaslError};
use crate::xmpp::{ns, Element};

#[derive(Default)]
pub enum SaslState {
    #[default]
    Idle,
    /// `<auth>` came without an initial response.
    AwaitingFirst(Mechanism),
    /// Server-first sent. `user` is set only when the account exists;
    /// `account` is what a failure is counted under either way.
    AwaitingFinal {
        exchange: Box<ScramExchange>,
        user: Option<Username>,
        account: AccountKey,
    },
}

fn scram_alg(m: Mechanism) -> Option<HashAlg> {
    match m {
        Mechanism::ScramSha256 => Some(HashAlg::Sha256),
        Mechanism::ScramSha1 => Some(HashAlg::Sha1),
        Mechanism::Plain => None,
    }
}

impl Session {
    pub(super) async fn on_sasl(&mut self, el: Element) {
        let Some(state) = self.unauthenticated() else {
            return self.stream_error(
                StreamError::new(StreamCondition::PolicyViolation)
                    .with_text("Already authenticated"),
            );
        };
        match el.name() {
            "auth" => {
                state.sasl = SaslState::Idle;
                let offered = |m: &Mechanism| self.offers(*m);
                let Some(mech) = el
                    .attr("mechanism")
                    .and_then(Mechanism::from_name)
                    .filter(offered)
                else {
                    return self.sasl_failure(SaslError::InvalidMechanism);
                };
                if self.shared.guessing.sasl_blocked(self.peer.ip()) {
                    // Cheap refusal: no lookup, no hashing.
                    crate::metrics::rate_limit_hit("auth_failures_per_address");
                    return self.sasl_refused(SaslError::TemporaryAuthFailure);
                }
                let text = el.text();
                if text.trim().is_empty() {
                    // No initial response: ask for it with an empty challenge.
                    self.set_sasl(SaslState::AwaitingFirst(mech));
                    return self.challenge(b"");
                }
                match sasl::decode_payload(&text) {
                    Ok(payload) => self.sasl_step(mech, payload).await,
                    Err(e) => self.sasl_failure(e),
                }
            }
            "response" => {
                let payload = match sasl::decode_payload(&el.text()) {
                    Ok(p) => p,
                    Err(e) => {
                        self.set_sasl(SaslState::Idle);
                        return self.sasl_failure(e);
                    }
                };
                match self.take_sasl() {
                    SaslState::AwaitingFirst(mech) => self.sasl_step(mech, payload).await,
                    SaslState::AwaitingFinal {
                        exchange,
                        user,
                        account,
                    } => self.scram_final(&exchange, user, account, &payload).await,
                    SaslState::Idle => self.sasl_failure(SaslError::MalformedRequest),
                }
            }
            "abort" => {
                self.set_sasl(SaslState::Idle);
                self.sasl_failure(SaslError::Aborted);
            }
            other => tracing::debug!(element = other, "ignoring unknown SASL element"),
        }
    }

    fn set_sasl(&mut self, sasl: SaslState) {
        if let Some(state) = self.unauthenticated() {
            state.sasl = sasl;
        }
    }

    fn take_sasl(&mut self) -> SaslState {
        self.unauthenticated()
            .map(|state| std::mem::take(&mut state.sasl))
            .unwrap_or_default()
    }

    async fn sasl_step(&mut self, mech: Mechanism, payload: Vec<u8>) {
        match scram_alg(mech) {
            Some(alg) => self.scram_first(alg, &payload).await,
            None => self.plain(&payload).await,
        }
    }

    fn challenge(&mut self, data: &[u8]) {
        let el = Element::new("challenge", ns::SASL).with_text(sasl::encode_payload(data));
        self.send(&el);
    }

    fn sasl_failure(&mut self, error: SaslError) {
        if error == SaslError::NotAuthorized {
            self.sasl_refused(error);
        } else {
            self.send(&error.to_element());
            metrics::counter!(crate::metrics::SASL, "outcome" => "failure").increment(1);
        }
    }

    /// A failure that counts against this stream (a wrong guess, or a refusal
    /// because the address is out of failures); the stream ends at the limit.
    fn sasl_refused(&mut self, error: SaslError) {
        self.send(&error.to_element());
        metrics::counter!(crate::metrics::SASL, "outcome" => "failure").increment(1);
        let failures = self.unauthenticated().map_or(0, |state| {
            state.auth_failures += 1;
            state.auth_failures
        });
        if failures >= self.shared.config.limits.max_auth_failures {
            crate::metrics::rate_limit_hit("sasl_failures");
            self.stream_error(
                StreamError::new(StreamCondition::PolicyViolation)
                    .with_text("Too many failed authentication attempts"),
            );
        }
    }

    /// A wrong password or an unknown user: counted for the address and the
    /// username, and answered late once the username had its share.
    async fn wrong_guess(&mut self, account: AccountKey) {
        let delay = self.shared.guessing.sasl_failed(self.peer.ip(), account);
        if !delay.is_zero() {
            crate::metrics::rate_limit_hit("auth_failures_per_account");
            tokio::time::sleep(delay).await;
        }
        self.sasl_refused(SaslError::NotAuthorized);
    }

    fn sasl_success(&mut self, user: Username, data: &[u8]) {
        let mut el = Element::new("success", ns::SASL);
        if !data.is_empty() {
            el = el.with_text(sasl::encode_payload(data));
        }
        self.send(&el);
        metrics::counter!(crate::metrics::SASL, "outcome" => "success").increment(1);
        self.authenticated(user);
    }

    /// An authzid is accepted only when it names the authenticating account.
    fn authzid_ok(&self, authzid: Option<&str>, user: Option<&Username>) -> bool {
        match (authzid, user) {
            (None, _) => true,
            (Some(a), Some(u)) => a == self.jid_of(u).to_string(),
            // Unknown user: decide at the proof, like any other failure.
            (Some(_), None) => true,
        }
    }

    /// Whether the stream offers this mechanism: SCRAM only for the hashes in
    /// `scram_hashes`, PLAIN always.
    pub(super) fn offers(&self, mech: Mechanism) -> bool {
        scram_alg(mech).is_none_or(|alg| self.shared.config.scram_hashes.contains(&alg))
    }

    /// The hash PLAIN checks passwords with: SHA-256 when configured.
    fn plain_hash(&self) -> HashAlg {
        let algs = &self.shared.config.scram_hashes;
        if algs.contains(&HashAlg::Sha256) || algs.is_empty() {
            HashAlg::Sha256
        } else {
            HashAlg::Sha1
        }
    }

    /// The account's stored credentials, or `None` for an unknown user;
    /// storage errors become a temporary failure.
    async fn stored_credentials(
        &mut self,
        user: Option<&Username>,
    ) -> Result<Option<Credentials>, ()> {
        let Some(user) = user else { return Ok(None) };
        match self.shared.store.get(user).await {
            Ok(account) => Ok(account.map(|a| a.credentials)),
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed during SASL");
                self.sasl_failure(SaslError::TemporaryAuthFailure);
                Err(())
            }
        }
    }

    async fn scram_first(&mut self, alg: HashAlg, payload: &[u8]) {
        let first = match parse_client_first(payload) {
            Ok(f) => f,
            Err(e) => return self.sasl_failure(e),
        };
        let user = Username::parse(&first.username).ok();
        if !self.authzid_ok(first.authzid.as_deref(), user.as_ref()) {
            return self.sasl_failure(SaslError::InvalidAuthzid);
        }
        let Ok(credentials) = self.stored_credentials(user.as_ref()).await else {
            return;
        };
        // An account without keys for this hash fails like an unknown one.
        let keys = credentials.and_then(|c| c.keys(alg).cloned());
        let known = keys.is_some();
        let keys = keys.unwrap_or_else(|| {
            decoy_keys(
                alg,
                &self.shared.decoy_secret,
                decoy_name(user.as_ref(), &first.username),
                self.shared.config.scram_iterations,
            )
        });
        let account = account_key(&first.username);
        let nonce = crate::secrets::random_id(18);
        let (exchange, server_first) = ScramExchange::start(alg, first, keys, &nonce);
        self.set_sasl(SaslState::AwaitingFinal {
            exchange: Box::new(exchange),
            user: user.filter(|_| known),
            account,
        });
        self.challenge(server_first.as_bytes());
    }

    async fn scram_final(
        &mut self,
        exchange: &ScramExchange,
        user: Option<Username>,
        account: AccountKey,
        payload: &[u8],
    ) {
        match (exchange.finish(payload), user) {
            (Ok(server_final), Some(user)) => self.sasl_success(user, server_final.as_bytes()),
            (Err(e), _) if e != SaslError::NotAuthorized => self.sasl_failure(e),
            _ => self.wrong_guess(account).await,
        }
    }

    async fn plain(&mut self, payload: &[u8]) {
        let msg = match plain::parse(payload) {
            Ok(m) => m,
            Err(e) => return self.sasl_failure(e),
        };
        let user = Username::parse(&msg.username).ok();
        if !self.authzid_ok(msg.authzid.as_deref(), user.as_ref()) {
            return self.sasl_failure(SaslError::InvalidAuthzid);
        }
        let preferred = self.plain_hash();
        let Ok(credentials) = self.stored_credentials(user.as_ref()).await else {
            return;
        };
        let found = credentials.as_ref().and_then(|c| {
            c.keys_for_plain(preferred)
                .map(|(alg, keys)| (alg, keys.clone()))
        });
        let known = found.is_some();
        // Unknown users cost the same PBKDF2 run as known ones.
        let (alg, keys) = found.unwrap_or_else(|| {
            let decoy = decoy_keys(
                preferred,
                &self.shared.decoy_secret,
                decoy_name(user.as_ref(), &msg.username),
                self.shared.config.scram_iterations,
            );
            (preferred, decoy)
        });
        let account = account_key(&msg.username);
        let Some(password) = prepare_password(&msg.password) else {
            return self.wrong_guess(account).await;
        };
        let checked = password.clone();
        let verified = self
            .shared
            .cpu
            .run_queued(Queue::Login, move || keys.verify_password(alg, &checked))
            .await;
        let verified = match verified {
            Ok(v) => v,
            Err(PoolError::Busy) => {
                crate::metrics::rate_limit_hit("login_queue");
                return self.sasl_failure(SaslError::TemporaryAuthFailure);
            }
            Err(e) => {
                tracing::error!(error = %e, "password check failed");
                return self.sasl_failure(SaslError::TemporaryAuthFailure);
            }
        };
        match (verified && known, user, credentials) {
            (true, Some(user), Some(credentials)) => {
                self.converge_iterations(&user, &credentials, password)
                    .await;
                self.sasl_success(user, b"");
            }
            _ => self.wrong_guess(account).await,
        }
    }

    /// After a PLAIN login, re-derives the keys when they were made with
    /// another iteration count (or other hashes) than configured, so that old
    /// accounts come to answer SCRAM like new ones and like decoys. Best
    /// effort: a busy queue or a failed write leaves the old keys in place,
    /// and the write is a compare-and-set on the row the password was checked
    /// against, so a password changed meanwhile is never overwritten.
    async fn converge_iterations(
        &mut self,
        user: &Username,
        credentials: &Credentials,
        password: String,
    ) {
        let config = &self.shared.config;
        let iterations = config.scram_iterations;
        let hashes = config.scram_hashes.clone();
        let current = HashAlg::ALL.iter().all(|&alg| {
            let keys = credentials.keys(alg);
            keys.is_some() == hashes.contains(&alg)
                && keys.is_none_or(|k| k.iterations == iterations)
        });
        if current {
            return;
        }
        let derived = self
            .shared
            .cpu
            .run_queued(Queue::Login, move || {
                Credentials::derive(&password, iterations, &hashes)
            })
            .await;
        let Ok(fresh) = derived else {
            return;
        };
        let store = &self.shared.store;
        let row = match store.row(user).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                return tracing::warn!(user = %user, error = %e, "could not re-derive SCRAM keys")
            }
        };
        if row.state != RowKind::Active || row.credentials.as_ref() != Some(credentials) {
            return;
        }
        let mut updated = row.clone();
        updated.credentials = Some(fresh);
        match store.replace_row(row.stamp.as_ref(), updated).await {
            Ok(Some(_)) => tracing::info!(user = %user, iterations, "SCRAM keys re-derived"),
            Ok(None) => {
                tracing::debug!(user = %user, "account changed meanwhile: keys left as they are")
            }
            Err(e) => tracing::warn!(user = %user, error = %e, "could not re-derive SCRAM keys"),
        }
    }
}

/// What a decoy is derived from: the normalised username, or the raw one
/// when it does not normalise.
fn decoy_name<'a>(user: Option<&'a Username>, raw: &'a str) -> &'a str {
    user.map_or(raw, |u| u.as_str())
}
