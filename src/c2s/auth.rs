//! SASL on the stream: SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN, with decoy
//! exchanges for unknown users so that account existence does not leak.

use super::session::Session;
use crate::accounts::Credentials;
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
    /// Server-first sent. `user` is set only when the account exists.
    AwaitingFinal {
        exchange: Box<ScramExchange>,
        user: Option<Username>,
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
                    SaslState::AwaitingFinal { exchange, user } => {
                        self.scram_final(&exchange, user, &payload)
                    }
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
        self.send(&error.to_element());
        metrics::counter!(crate::metrics::SASL, "outcome" => "failure").increment(1);
        if error == SaslError::NotAuthorized {
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
                &first.username,
                self.shared.config.scram_iterations,
            )
        });
        let nonce = crate::secrets::random_id(18);
        let (exchange, server_first) = ScramExchange::start(alg, first, keys, &nonce);
        self.set_sasl(SaslState::AwaitingFinal {
            exchange: Box::new(exchange),
            user: user.filter(|_| known),
        });
        self.challenge(server_first.as_bytes());
    }

    fn scram_final(&mut self, exchange: &ScramExchange, user: Option<Username>, payload: &[u8]) {
        match (exchange.finish(payload), user) {
            (Ok(server_final), Some(user)) => self.sasl_success(user, server_final.as_bytes()),
            (Err(e), _) if e != SaslError::NotAuthorized => self.sasl_failure(e),
            _ => self.sasl_failure(SaslError::NotAuthorized),
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
        let found = credentials.and_then(|c| {
            c.keys_for_plain(preferred)
                .map(|(alg, keys)| (alg, keys.clone()))
        });
        let known = found.is_some();
        // Unknown users cost the same PBKDF2 run as known ones.
        let (alg, keys) = found.unwrap_or_else(|| {
            let decoy = decoy_keys(
                preferred,
                &self.shared.decoy_secret,
                &msg.username,
                self.shared.config.scram_iterations,
            );
            (preferred, decoy)
        });
        let password = prepare_password(&msg.password);
        let verified = match password {
            Some(pw) => self
                .shared
                .cpu
                .run(move || keys.verify_password(alg, &pw))
                .await
                .unwrap_or(false),
            None => false,
        };
        match (verified && known, user) {
            (true, Some(user)) => self.sasl_success(user, b""),
            _ => self.sasl_failure(SaslError::NotAuthorized),
        }
    }
}
