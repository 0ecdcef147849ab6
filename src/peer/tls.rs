//! Mutual TLS between the nodes of a cluster: every node holds a certificate
//! signed by the cluster CA, presents it both when it serves and when it
//! calls, and admits only peers whose certificate chains to that CA. Every
//! node certificate carries one fixed DNS name, [`SERVER_NAME`], which clients
//! check instead of the peer's address (IPs and pod names change; the CA does
//! not). And `usher cluster certs`: the CA and the node certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

pub use crate::tls_files::Generated;
pub use crate::tls_files::TlsFileError;
use crate::tls_files::{
    ca_dir, ca_mismatch, identity, invalid, provider, read, roots, write_all, Pending,
};

/// The DNS name in every node certificate, and the one clients verify.
pub const SERVER_NAME: &str = "usher-peer";

/// Paths of a node's TLS material, each with the config key naming it.
pub struct PeerTlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

/// A node's identity and the cluster CA, checked to fit together; what the
/// peer server and client are configured with. Its `Debug` shows no key.
#[derive(Clone)]
pub struct PeerTls {
    identity: Identity,
    ca: Certificate,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls { .. }")
    }
}

impl PeerTls {
    /// Reads and checks the files: each parses, the key is the certificate's,
    /// and the certificate chains to the CA, names [`SERVER_NAME`] and may
    /// serve and call. Errors name the config key and the file.
    /// Also installs ring as the process's crypto provider, which tonic's
    /// TLS needs (see [`PeerTls::install_crypto_provider`]).
    pub fn load(files: &PeerTlsFiles<'_>) -> Result<PeerTls, TlsFileError> {
        let cert_pem = read("cluster.tls_cert", files.cert)?;
        let key_pem = read("cluster.tls_key", files.key)?;
        let ca_pem = read("cluster.tls_ca", files.ca)?;
        PeerTls::check(cert_pem, key_pem, ca_pem, files)
    }

    /// [`PeerTls::load`] on contents already read (or not yet written);
    /// `files` only names them in errors.
    fn check(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        ca_pem: Vec<u8>,
        files: &PeerTlsFiles<'_>,
    ) -> Result<PeerTls, TlsFileError> {
        PeerTls::install_crypto_provider();
        let chain = identity(
            ("cluster.tls_cert", "cluster.tls_key"),
            (files.cert, files.key),
            &cert_pem,
            &key_pem,
        )?;
        let roots = roots("cluster.tls_ca", files.ca, &ca_pem)?;
        verify_node_chain(&chain, roots, provider()).map_err(|message| {
            invalid(
                "cluster.tls_cert",
                files.cert,
                format!("{message} (cluster.tls_ca is {})", files.ca.display()),
            )
        })?;
        Ok(PeerTls {
            identity: Identity::from_pem(cert_pem, key_pem),
            ca: Certificate::from_pem(ca_pem),
        })
    }

    /// The peer server's side: this identity, and a client certificate from
    /// the CA required of every caller.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            // tonic waits for handshakes without a limit otherwise: anyone
            // who reaches the peer port could hold sockets open for free.
            .timeout(crate::capped_incoming::HANDSHAKE_TIMEOUT)
    }

    /// The calling side: this identity, and a server certificate from the CA
    /// naming [`SERVER_NAME`], whatever address the peer is reached at.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity.clone())
            .ca_certificate(self.ca.clone())
            .domain_name(SERVER_NAME)
    }

    /// tonic's TLS builds its rustls configs with the process-wide crypto
    /// provider, which cannot be chosen by itself here (the CQL driver brings
    /// a second one): ring, as everywhere else in usher. Idempotent.
    pub fn install_crypto_provider() {
        crate::tls_files::install_crypto_provider();
    }
}

/// Whether a certificate chain would be admitted by peers both as a server
/// (for [`SERVER_NAME`]) and as a client; the reason if not.
fn verify_node_chain(
    chain: &[CertificateDer<'static>],
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<(), String> {
    let (end_entity, intermediates) = chain.split_first().ok_or("no certificate")?;
    let now = UnixTime::now();
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| e.to_string())?
        .verify_server_cert(end_entity, intermediates, &name, &[], now)
        .map_err(|e| {
            format!("peers would refuse it as a server for the name {SERVER_NAME}: {e}")
        })?;
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())?
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(|e| format!("peers would refuse it as a client: {e}"))?;
    Ok(())
}

/// A certificate for `common_name` with [`SERVER_NAME`], good for serving and
/// calling, signed by `issuer`: its PEM and its key's PEM.
fn leaf(
    common_name: &str,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Result<(Vec<u8>, Vec<u8>), TlsFileError> {
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem().into_bytes(), key.serialize_pem().into_bytes()))
}

/// `usher cluster certs`: the CA in `out` (made if absent, else reused, so a
/// node added later gets a certificate from the same CA), `node-N.pem` and
/// `node-N.key` for each node, and `client.pem`/`client.key` for tools that
/// call the peer API (the load harness) if `client`. Keys are mode 0600.
/// Every certificate is checked against the CA as peers would check it
/// before anything is written, so a CA pair that does not fit replaces no
/// file that worked.
pub fn generate(out: &Path, nodes: &[u64], client: bool) -> Result<Generated, TlsFileError> {
    let mut pending = Vec::new();
    let (issuer, ca_pem) = ca_dir(out, &mut pending)?;
    let new_ca = !pending.is_empty();
    let mut stems: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (format!("node-{n}"), format!("usher node {n}")))
        .collect();
    if client {
        stems.push(("client".into(), "usher peer client".into()));
    }
    let ca_path = out.join("ca.pem");
    for (stem, name) in &stems {
        let (cert_pem, key_pem) = leaf(name, &issuer)?;
        let (cert, key) = (
            out.join(format!("{stem}.pem")),
            out.join(format!("{stem}.key")),
        );
        let files = PeerTlsFiles {
            cert: &cert,
            key: &key,
            ca: &ca_path,
        };
        PeerTls::check(cert_pem.clone(), key_pem.clone(), ca_pem.clone(), &files)
            .map_err(|e| ca_mismatch(&ca_path, e))?;
        pending.push(Pending {
            path: key,
            contents: key_pem,
            private: true,
        });
        pending.push(Pending {
            path: cert,
            contents: cert_pem,
            private: false,
        });
    }
    write_all(pending, new_ca)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_files::certificates;
    use std::path::PathBuf;

    fn files<'a>(dir: &'a Path, stem: &str, ca: &'a Path) -> (PathBuf, PathBuf, &'a Path) {
        (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
            ca,
        )
    }

    fn load(cert: &Path, key: &Path, ca: &Path) -> Result<PeerTls, TlsFileError> {
        PeerTls::load(&PeerTlsFiles { cert, key, ca })
    }

    #[test]
    fn node_certificates_verify_against_the_ca_and_carry_the_server_name() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(dir.path(), &[1, 2], true).unwrap();
        assert!(made.new_ca);
        let ca = dir.path().join("ca.pem");
        let roots = roots("c", &ca, &std::fs::read(&ca).unwrap()).unwrap();
        for stem in ["node-1", "node-2", "client"] {
            let (cert, key, ca) = files(dir.path(), stem, &ca);
            load(&cert, &key, ca).unwrap();
            let chain = certificates("c", &cert, &std::fs::read(&cert).unwrap()).unwrap();
            verify_node_chain(&chain, roots.clone(), provider()).unwrap();
            // The name is checked: another one is refused.
            let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .unwrap();
            let other = ServerName::try_from("node1.example").unwrap();
            assert!(verifier
                .verify_server_cert(&chain[0], &[], &other, &[], UnixTime::now())
                .is_err());
        }
        #[cfg(unix)]
        for key in ["ca.key", "node-1.key", "client.key"] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn a_node_added_later_gets_a_certificate_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &[1], false).unwrap();
        let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let again = generate(dir.path(), &[4], false).unwrap();
        assert!(!again.new_ca);
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        let ca = dir.path().join("ca.pem");
        let (cert, key, ca) = files(dir.path(), "node-4", &ca);
        load(&cert, &key, ca).unwrap();
    }

    #[test]
    fn a_ca_pair_that_does_not_fit_replaces_no_file() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(dir.path(), &[1], false).unwrap();
        generate(other.path(), &[1], false).unwrap();
        // ca.key of another CA beside this ca.pem: what it signs cannot verify.
        std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
        let before = std::fs::read(dir.path().join("node-1.pem")).unwrap();
        let err = generate(dir.path(), &[1, 2], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be the pair"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("node-1.pem")).unwrap(),
            before
        );
        assert!(!dir.path().join("node-2.pem").exists());
    }

    #[test]
    fn a_certificate_of_another_ca_or_a_wrong_key_is_refused_naming_the_key() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(a.path(), &[1, 2], false).unwrap();
        generate(b.path(), &[1], false).unwrap();
        let ca_a = a.path().join("ca.pem");
        let foreign = load(
            &b.path().join("node-1.pem"),
            &b.path().join("node-1.key"),
            &ca_a,
        )
        .unwrap_err()
        .to_string();
        assert!(foreign.starts_with("cluster.tls_cert ("), "{foreign}");
        let wrong_key = load(
            &a.path().join("node-1.pem"),
            &a.path().join("node-2.key"),
            &ca_a,
        )
        .unwrap_err()
        .to_string();
        assert!(wrong_key.starts_with("cluster.tls_key ("), "{wrong_key}");
        let missing = load(
            &a.path().join("nope.pem"),
            &a.path().join("node-1.key"),
            &ca_a,
        )
        .unwrap_err();
        // As `usher serve` prints it, with its sources: the cause once.
        let missing = format!("{:#}", anyhow::Error::from(missing));
        assert_eq!(missing.matches("os error").count(), 1, "{missing}");
        assert!(
            missing.contains("cluster.tls_cert") && missing.contains("nope.pem"),
            "{missing}"
        );
        let garbage = a.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem").unwrap();
        let bad_ca = load(
            &a.path().join("node-1.pem"),
            &a.path().join("node-1.key"),
            &garbage,
        )
        .unwrap_err()
        .to_string();
        assert!(bad_ca.starts_with("cluster.tls_ca ("), "{bad_ca}");
        // The key's content is never in a message.
        let key_pem = std::fs::read_to_string(a.path().join("node-2.key")).unwrap();
        let body = key_pem.lines().nth(1).unwrap();
        assert!(!wrong_key.contains(body));
    }
}
