//! TLS for the admin API: the node serves it with `admin_tls.cert`/`key`
//! (required when `admin_addr` is reachable beyond loopback, since every
//! call carries the admin token), and the CLI checks the node's certificate
//! against a CA it is given. `usher cluster certs --admin` makes such a pair.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::AdminTlsConfig;
use crate::tls_files::{certificates, identity, invalid, read, TlsFileError};

/// A DNS name every generated admin certificate carries, for reaching a node
/// by an address its certificate does not name (`--tls-server-name`).
pub use crate::peer::tls::ADMIN_SERVER_NAME as SERVER_NAME;

/// How long a caller has to finish the TLS handshake on the admin port.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin server's TLS, if `admin_tls` names a certificate: the files are
/// read and the key checked against the certificate before anything listens.
pub fn server(config: &AdminTlsConfig) -> Result<Option<ServerTlsConfig>, TlsFileError> {
    let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
        // The config check refuses one without the other.
        return Ok(None);
    };
    crate::tls_files::install_crypto_provider();
    let cert_pem = read("admin_tls.cert", cert)?;
    let key_pem = read("admin_tls.key", key)?;
    identity(
        ("admin_tls.cert", "admin_tls.key"),
        (cert, key),
        &cert_pem,
        &key_pem,
    )?;
    Ok(Some(
        ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            // tonic waits for handshakes without a limit otherwise.
            .timeout(HANDSHAKE_TIMEOUT),
    ))
}

/// The CLI's side: trust `ca` (named `key` in errors) and expect the server
/// certificate to name `server_name`.
pub fn client(
    key: &'static str,
    ca: &Path,
    server_name: &str,
) -> Result<ClientTlsConfig, TlsFileError> {
    crate::tls_files::install_crypto_provider();
    let pem = read(key, ca)?;
    certificates(key, ca, &pem)?;
    if server_name.is_empty() {
        return Err(invalid(
            key,
            ca,
            "no server name to check the certificate for",
        ));
    }
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name(server_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_loads_a_generated_pair_and_refuses_a_key_of_another() {
        let dir = tempfile::tempdir().unwrap();
        crate::peer::tls::generate(dir.path(), &[1], false).unwrap();
        crate::peer::tls::generate_admin(dir.path(), &[]).unwrap();
        let config = |key: &str| AdminTlsConfig {
            cert: Some(dir.path().join("admin.pem")),
            key: Some(dir.path().join(key)),
            ca: None,
        };
        assert!(server(&config("admin.key")).unwrap().is_some());
        let err = server(&config("node-1.key")).unwrap_err().to_string();
        assert!(err.starts_with("admin_tls.key ("), "{err}");
        assert!(server(&AdminTlsConfig::default()).unwrap().is_none());
        let err = client("--ca-file", &dir.path().join("nope.pem"), "usher-admin")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--ca-file (") && err.contains("nope.pem"),
            "{err}"
        );
    }
}
