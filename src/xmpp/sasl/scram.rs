//! SCRAM (RFC 5802, RFC 7677) server side without channel binding.
//!
//! The message grammar and the proof check are ours; the primitives (PBKDF2,
//! HMAC, SHA) come from the RustCrypto crates.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::SaslError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

impl HashAlg {
    pub const ALL: [HashAlg; 2] = [HashAlg::Sha1, HashAlg::Sha256];

    /// The configuration name: `sha-1` or `sha-256`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha-1",
            HashAlg::Sha256 => "sha-256",
        }
    }

    /// From a configuration name (case-insensitive).
    pub fn from_name(name: &str) -> Option<HashAlg> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sha-1" | "sha1" => Some(HashAlg::Sha1),
            "sha-256" | "sha256" => Some(HashAlg::Sha256),
            _ => None,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // new_from_slice accepts keys of any length for HMAC.
        match self {
            HashAlg::Sha1 => {
                let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            HashAlg::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with HMAC. This is the expensive step (run it off
    /// the reactor).
    pub fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
            HashAlg::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// What the server keeps per hash instead of a password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    // Keys are password equivalents for offline attacks: keep them out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramKeys {
    pub fn derive(alg: HashAlg, password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = alg.salted_password(password, salt, iterations);
        Self::from_salted(alg, &salted, salt, iterations)
    }

    fn from_salted(alg: HashAlg, salted: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let client_key = alg.hmac(salted, b"Client Key");
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: alg.hash(&client_key),
            server_key: alg.hmac(salted, b"Server Key"),
        }
    }

    /// Checks a plaintext password (SASL PLAIN) against the stored keys.
    pub fn verify_password(&self, alg: HashAlg, password: &str) -> bool {
        let salted = alg.salted_password(password, &self.salt, self.iterations);
        let client_key = alg.hmac(&salted, b"Client Key");
        bool::from(alg.hash(&client_key).ct_eq(&self.stored_key))
    }
}

mod b64 {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The parsed client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// `gs2-header` exactly as sent (echoed back base64 in `c=`).
    pub gs2_header: String,
    pub authzid: Option<String>,
    pub username: String,
    pub client_nonce: String,
    /// `client-first-message-bare`, part of the AuthMessage.
    pub bare: String,
}

/// The parsed client-final-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
    /// `client-final-message-without-proof`, part of the AuthMessage.
    pub without_proof: String,
}

/// Decodes a `saslname` (`=2C` is `,`, `=3D` is `=`).
fn decode_saslname(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).ok_or(SaslError::MalformedRequest)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(SaslError::MalformedRequest),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    Ok(out)
}

fn is_printable_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::MalformedRequest)?;
    let (flag, rest) = text.split_once(',').ok_or(SaslError::MalformedRequest)?;
    match flag {
        // `y`: the client could bind but thinks we cannot; we offer no -PLUS, so that is right.
        "n" | "y" => {}
        // We never advertise -PLUS mechanisms: a client asking for binding is confused.
        f if f.starts_with("p=") => return Err(SaslError::NotAuthorized),
        _ => return Err(SaslError::MalformedRequest),
    }
    let (authz, bare) = rest.split_once(',').ok_or(SaslError::MalformedRequest)?;
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=").ok_or(SaslError::MalformedRequest)?,
        )?),
    };
    let gs2_header = format!("{flag},{authz},");
    let mut attrs = bare.split(',');
    let first = attrs.next().ok_or(SaslError::MalformedRequest)?;
    if first.starts_with("m=") {
        // A mandatory extension we do not know.
        return Err(SaslError::MalformedRequest);
    }
    let username = decode_saslname(
        first
            .strip_prefix("n=")
            .ok_or(SaslError::MalformedRequest)?,
    )?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(SaslError::MalformedRequest)?;
    if !is_printable_nonce(nonce) {
        return Err(SaslError::MalformedRequest);
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        username,
        client_nonce: nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

pub fn parse_client_final(message: &[u8]) -> Result<ClientFinal, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::MalformedRequest)?;
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or(SaslError::MalformedRequest)?;
    let mut attrs = without_proof.split(',');
    let cb = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(SaslError::MalformedRequest)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(SaslError::MalformedRequest)?;
    Ok(ClientFinal {
        channel_binding: B64.decode(cb).map_err(|_| SaslError::IncorrectEncoding)?,
        nonce: nonce.to_owned(),
        proof: B64
            .decode(proof)
            .map_err(|_| SaslError::IncorrectEncoding)?,
        without_proof: without_proof.to_owned(),
    })
}

/// A SCRAM exchange after the server-first-message was sent.
#[derive(Debug)]
pub struct ScramExchange {
    alg: HashAlg,
    client_first: ClientFirst,
    server_first: String,
    nonce: String,
    keys: ScramKeys,
}

impl ScramExchange {
    /// Answers the client-first-message. `keys` are the account's, or stand-ins
    /// for an unknown user (so that the exchange looks the same either way).
    pub fn start(
        alg: HashAlg,
        client_first: ClientFirst,
        keys: ScramKeys,
        server_nonce: &str,
    ) -> (ScramExchange, String) {
        let nonce = format!("{}{}", client_first.client_nonce, server_nonce);
        let server_first = format!(
            "r={},s={},i={}",
            nonce,
            B64.encode(&keys.salt),
            keys.iterations
        );
        let exchange = ScramExchange {
            alg,
            client_first,
            server_first: server_first.clone(),
            nonce,
            keys,
        };
        (exchange, server_first)
    }

    pub fn client_first(&self) -> &ClientFirst {
        &self.client_first
    }

    /// Checks the client-final-message; on success returns the server-final-message.
    pub fn finish(&self, message: &[u8]) -> Result<String, SaslError> {
        let last = parse_client_final(message)?;
        if last.channel_binding != self.client_first.gs2_header.as_bytes()
            || last.nonce != self.nonce
        {
            return Err(SaslError::NotAuthorized);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first.bare, self.server_first, last.without_proof
        );
        let signature = self
            .alg
            .hmac(&self.keys.stored_key, auth_message.as_bytes());
        if last.proof.len() != signature.len() {
            return Err(SaslError::NotAuthorized);
        }
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !bool::from(self.alg.hash(&client_key).ct_eq(&self.keys.stored_key)) {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = self
            .alg
            .hmac(&self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// The client side of SCRAM, used by the load harness and the tests.
#[derive(Debug)]
pub struct ScramClient {
    alg: HashAlg,
    password: String,
    gs2_header: String,
    first_bare: String,
    client_nonce: String,
    server_signature: Option<Vec<u8>>,
}

fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    pub fn new(alg: HashAlg, username: &str, password: &str, client_nonce: &str) -> Self {
        Self::with_gs2_header(alg, username, password, client_nonce, "n,,")
    }

    pub fn with_gs2_header(
        alg: HashAlg,
        username: &str,
        password: &str,
        client_nonce: &str,
        gs2_header: &str,
    ) -> Self {
        ScramClient {
            alg,
            password: password.to_owned(),
            gs2_header: gs2_header.to_owned(),
            first_bare: format!("n={},r={}", encode_saslname(username), client_nonce),
            client_nonce: client_nonce.to_owned(),
            server_signature: None,
        }
    }

    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.first_bare)
    }

    /// Answers the server-first-message (runs PBKDF2).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, SaslError> {
        let text = std::str::from_utf8(server_first).map_err(|_| SaslError::MalformedRequest)?;
        let mut attrs = text.split(',');
        let mut field = |prefix: &str| {
            attrs
                .next()
                .and_then(|a| a.strip_prefix(prefix))
                .ok_or(SaslError::MalformedRequest)
        };
        let nonce = field("r=")?;
        let salt = B64
            .decode(field("s=")?)
            .map_err(|_| SaslError::IncorrectEncoding)?;
        let iterations: u32 = field("i=")?
            .parse()
            .map_err(|_| SaslError::MalformedRequest)?;
        if !nonce.starts_with(&self.client_nonce) || iterations == 0 {
            return Err(SaslError::MalformedRequest);
        }
        let salted = self.alg.salted_password(&self.password, &salt, iterations);
        let keys = ScramKeys::from_salted(self.alg, &salted, &salt, iterations);
        let client_key = self.alg.hmac(&salted, b"Client Key");
        let without_proof = format!("c={},r={}", B64.encode(&self.gs2_header), nonce);
        let auth_message = format!("{},{},{}", self.first_bare, text, without_proof);
        let signature = self.alg.hmac(&keys.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.server_signature = Some(self.alg.hmac(&keys.server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Whether the server proved it knows the keys too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> bool {
        let expected = self
            .server_signature
            .as_ref()
            .map(|s| format!("v={}", B64.encode(s)));
        expected.is_some_and(|e| e.as_bytes() == server_final)
    }
}

/// Length of every salt the server hands out, real or decoy.
pub const SALT_LEN: usize = 16;

/// Deterministic stand-in keys for a username that has no account (or no keys
/// for `alg`). `name` is the normalised username (the raw bytes only when it
/// does not normalise), so `ALICE` and `alice` get the same answer as they do
/// for a real account. The salt is keyed by the node secret and differs per
/// hash, like the two random salts of a real account; no proof can match.
pub fn decoy_keys(alg: HashAlg, secret: &[u8], name: &str, iterations: u32) -> ScramKeys {
    let derive = |purpose: &str| {
        let input = format!("{purpose}\0{}\0{name}", alg.name());
        HashAlg::Sha256.hmac(secret, input.as_bytes())
    };
    let len = match alg {
        HashAlg::Sha1 => 20,
        HashAlg::Sha256 => 32,
    };
    let unmatchable = derive("decoy-key");
    ScramKeys {
        salt: derive("salt")[..SALT_LEN].to_vec(),
        iterations,
        stored_key: unmatchable[..len].to_vec(),
        server_key: unmatchable[..len].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_final(
        alg: HashAlg,
        password: &str,
        first_bare: &str,
        server_first: &str,
        cbind: &str,
    ) -> String {
        let user = first_bare
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("n=");
        let nonce = first_bare
            .split(',')
            .nth(1)
            .unwrap()
            .trim_start_matches("r=");
        let mut client = ScramClient::with_gs2_header(alg, user, password, nonce, cbind);
        client.client_final(server_first.as_bytes()).unwrap()
    }

    #[test]
    fn rfc5802_sha1_vector() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let keys = ScramKeys::derive(HashAlg::Sha1, "pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        let (ex, server_first) =
            ScramExchange::start(HashAlg::Sha1, first, keys, "3rfcNHYJY1ZVvWVs7j");
        assert_eq!(
            server_first,
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let fin = ex
            .finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(fin, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(HashAlg::Sha256, "pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let (ex, _) = ScramExchange::start(
            HashAlg::Sha256,
            first,
            keys,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        );
        let fin = ex
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_password_and_tampering_fail() {
        for alg in [HashAlg::Sha1, HashAlg::Sha256] {
            let keys = ScramKeys::derive(alg, "right", b"0123456789abcdef", 64);
            let bare = "n=bob,r=abc";
            let first = parse_client_first(format!("y,,{bare}").as_bytes()).unwrap();
            let (ex, sf) = ScramExchange::start(alg, first, keys.clone(), "xyz");
            let ok = client_final(alg, "right", bare, &sf, "y,,");
            assert!(ex.finish(ok.as_bytes()).is_ok());
            let bad = client_final(alg, "wrong", bare, &sf, "y,,");
            assert_eq!(ex.finish(bad.as_bytes()), Err(SaslError::NotAuthorized));
            // gs2 header downgrade: c= must echo what the client first sent.
            let downgraded = client_final(alg, "right", bare, &sf, "n,,");
            assert_eq!(
                ex.finish(downgraded.as_bytes()),
                Err(SaslError::NotAuthorized)
            );
            assert!(keys.verify_password(alg, "right"));
            assert!(!keys.verify_password(alg, "Right"));
        }
    }

    #[test]
    fn decoys_are_stable_per_hash_and_never_match() {
        let a = decoy_keys(HashAlg::Sha1, b"secret", "nobody", 4096);
        assert_eq!(a, decoy_keys(HashAlg::Sha1, b"secret", "nobody", 4096));
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_ne!(
            a.salt,
            decoy_keys(HashAlg::Sha1, b"secret", "other", 4096).salt
        );
        // One salt per hash, as a real account has.
        let b = decoy_keys(HashAlg::Sha256, b"secret", "nobody", 4096);
        assert_ne!(a.salt, b.salt);
        assert_eq!(b.salt.len(), SALT_LEN);
        // Keyed by the node secret: another node answers differently.
        assert_ne!(
            a.salt,
            decoy_keys(HashAlg::Sha1, b"other secret", "nobody", 4096).salt
        );
        assert!(!a.verify_password(HashAlg::Sha1, ""));
        assert!(!b.verify_password(HashAlg::Sha256, "nobody"));
    }

    #[test]
    fn parses_client_first_variants() {
        let f = parse_client_first(b"n,a=adm=2Cin,n=us=3Der,r=nonce,x=ext").unwrap();
        assert_eq!(f.authzid.as_deref(), Some("adm,in"));
        assert_eq!(f.username, "us=er");
        assert_eq!(f.bare, "n=us=3Der,r=nonce,x=ext");
        assert_eq!(f.gs2_header, "n,a=adm=2Cin,");
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=a,r=b",
            b"n,,m=ext,n=a,r=b",
            b"n,,n=a",
            b"n,,n=,r=b",
            b"n,,n=a=ZZ,r=b",
            b"n,,n=a,r=",
            b"n,b,n=a,r=x",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=a,r=b"),
            Err(SaslError::NotAuthorized)
        );
        assert!(parse_client_final(b"c=biws,r=x").is_err());
        assert!(parse_client_final(b"c=!!,r=x,p=AAAA").is_err());
    }
}
