//! TLS for the admin API: the node serves it with `admin_tls.cert`/`key`
//! (required when `admin_addr` is reachable beyond loopback, since every
//! call carries the admin token), and the CLI checks the node's certificate
//! against a CA it is given. `usher cluster certs --admin` makes such a pair.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tonic::codegen::http::Uri;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

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

/// Why a client will not call the admin API at a URL.
#[derive(Debug, thiserror::Error)]
pub enum AdminUrlError {
    #[error("invalid admin API URL {url}: {reason}")]
    Invalid { url: String, reason: String },
    #[error(
        "refusing to send the admin token in clear to {host}: use https:// (the node needs \
         admin_tls) or a loopback address (127.0.0.1, ::1)"
    )]
    Clear { host: String },
    #[error(
        "{url} is TLS: the client needs the CA that signed the node's admin certificate \
         (the CLI's --ca-file, or admin_tls.ca)"
    )]
    NoCa { url: String },
    #[error(transparent)]
    Files(#[from] TlsFileError),
    #[error("the admin API's TLS settings: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Whether a call to `url` is inside TLS, and the URL's host (IPv6 without
/// brackets). Plain `http://` is allowed to a literal loopback address only:
/// every call carries the admin token. A name such as `localhost` is not
/// trusted, since it resolves to whatever the resolver says.
pub fn url_policy(url: &str) -> Result<(bool, String), AdminUrlError> {
    let invalid = |reason: &str| AdminUrlError::Invalid {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    match uri.scheme_str() {
        Some("https") => Ok((true, host)),
        Some("http") if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) => {
            Ok((false, host))
        }
        Some("http") => Err(AdminUrlError::Clear { host }),
        _ => Err(invalid("it starts with https:// or http://")),
    }
}

/// An admin API endpoint for `url` as [`url_policy`] allows it: for https,
/// checked with `ca` (its name in errors, its path) for `server_name` or
/// else the URL's host.
pub fn endpoint(
    url: &str,
    ca: Option<(&'static str, &Path)>,
    server_name: Option<&str>,
) -> Result<Endpoint, AdminUrlError> {
    let (tls, host) = url_policy(url)?;
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| AdminUrlError::Invalid {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if !tls {
        return Ok(endpoint);
    }
    let (key, ca) = ca.ok_or_else(|| AdminUrlError::NoCa {
        url: url.to_owned(),
    })?;
    Ok(endpoint.tls_config(client(key, ca, server_name.unwrap_or(&host))?)?)
}

/// The client's side: trust `ca` (named `key` in errors) and expect the
/// server certificate to name `server_name`.
fn client(
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

    #[test]
    fn the_token_travels_in_clear_only_to_a_literal_loopback_address() {
        for (url, host) in [
            ("http://127.0.0.1:5290", "127.0.0.1"),
            ("http://127.0.0.9:5290", "127.0.0.9"),
            ("HTTP://127.0.0.1:5290", "127.0.0.1"),
            ("http://[::1]:5290", "::1"),
        ] {
            assert_eq!(url_policy(url).unwrap(), (false, host.to_owned()), "{url}");
        }
        for (url, host) in [
            ("https://10.0.0.1:5290", "10.0.0.1"),
            ("HTTPS://usher-admin:5290", "usher-admin"),
            ("https://[::ffff:10.0.0.1]:5290", "::ffff:10.0.0.1"),
        ] {
            assert_eq!(url_policy(url).unwrap(), (true, host.to_owned()), "{url}");
        }
        for url in [
            "http://10.0.0.1:5290",
            "HTTP://10.0.0.1:5290",
            // The host is what comes after the userinfo.
            "http://127.0.0.1@10.0.0.1:5290",
            "http://localhost:5290",
            "http://localhost.:5290",
            "http://[::ffff:127.0.0.1]:5290",
            "http://[::ffff:10.0.0.1]:5290",
            "http://0.0.0.0:5290",
            "http://usher-admin:5290",
        ] {
            let policy = url_policy(url);
            assert!(
                matches!(policy, Err(AdminUrlError::Clear { .. })),
                "{url}: {policy:?}"
            );
        }
        for url in [
            "127.0.0.1:5290",
            "unix:/run/usher.sock",
            "ftp://127.0.0.1",
            "http://",
        ] {
            let policy = url_policy(url);
            assert!(
                matches!(policy, Err(AdminUrlError::Invalid { .. })),
                "{url}: {policy:?}"
            );
        }
        // https needs a CA to check by; nothing is dialled to say so.
        assert!(matches!(
            endpoint("https://10.0.0.1:5290", None, None),
            Err(AdminUrlError::NoCa { .. })
        ));
    }
}
