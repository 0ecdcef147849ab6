//! TLS for the admin API: the node serves it with `admin_tls.cert`/`key`
//! (required when `admin_addr` is reachable beyond loopback, since every
//! call carries the admin token), and the CLI checks the node's certificate
//! against a CA it is given. `usher cluster certs --admin` makes such a pair
//! (`generate_admin`).

use std::net::IpAddr;
use std::path::Path;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::{ServerName, UnixTime};

use tonic::codegen::http::Uri;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::config::AdminTlsConfig;
use crate::peer::tls::SERVER_NAME as PEER_NAME;
use crate::tls_files::{
    ca_dir, ca_mismatch, certificates, identity, invalid, provider, read, roots,
};
use crate::tls_files::{write_all, Generated, Pending, TlsFileError};

/// A DNS name every generated admin certificate carries, for reaching a node
/// by an address its certificate does not name (`--tls-server-name`).
pub const SERVER_NAME: &str = "usher-admin";

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
            .timeout(crate::capped_incoming::HANDSHAKE_TIMEOUT),
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

/// `usher cluster certs --admin`: `admin.pem` and `admin.key`, a server
/// certificate for the admin API signed by the CA in `out` (made if absent),
/// naming [`SERVER_NAME`], `localhost`, `127.0.0.1`, `::1`
/// and each of `names` (DNS names or IP addresses). Checked as the CLI would
/// check it before anything is written.
pub fn generate_admin(out: &Path, names: &[String]) -> Result<Generated, TlsFileError> {
    let mut pending = Vec::new();
    let (issuer, ca_pem) = ca_dir(out, &mut pending)?;
    let new_ca = !pending.is_empty();
    if let Some(peer) = names.iter().find(|n| n.eq_ignore_ascii_case(PEER_NAME)) {
        // Signed by the cluster CA for serving, it would pass as a peer.
        return Err(invalid(
            "--admin-name",
            out,
            format!("{peer} is the name peers check each other by"),
        ));
    }
    let mut sans: Vec<String> = [SERVER_NAME, "localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .into();
    sans.extend(
        names
            .iter()
            .filter(|n| !sans.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut params = rcgen::CertificateParams::new(sans)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "usher admin API");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_pem, key_pem) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
    let ca_path = out.join("ca.pem");
    let chain = certificates("admin.pem", &out.join("admin.pem"), &cert_pem)?;
    let roots = roots("the CA", &ca_path, &ca_pem)?;
    let name =
        ServerName::try_from(SERVER_NAME).map_err(|e| invalid("admin.pem", out, e.to_string()))?;
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| invalid("the CA", &ca_path, e.to_string()))?
        .verify_server_cert(&chain[0], &[], &name, &[], UnixTime::now())
        .map_err(|e| ca_mismatch(&ca_path, e))?;
    pending.push(Pending {
        path: out.join("admin.key"),
        contents: key_pem,
        private: true,
    });
    pending.push(Pending {
        path: out.join("admin.pem"),
        contents: cert_pem,
        private: false,
    });
    write_all(pending, new_ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_certificate_names_what_the_cli_checks_and_shares_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        crate::peer::tls::generate(dir.path(), &[1], false).unwrap();
        let made =
            generate_admin(dir.path(), &["admin.example.org".into(), "10.0.0.7".into()]).unwrap();
        assert!(!made.new_ca, "signed by the cluster CA already there");
        let ca = dir.path().join("ca.pem");
        let roots = roots("c", &ca, &std::fs::read(&ca).unwrap()).unwrap();
        let cert = dir.path().join("admin.pem");
        let chain = certificates("c", &cert, &std::fs::read(&cert).unwrap()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .unwrap();
        let check = |name: &'static str| {
            let name = ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(&chain[0], &[], &name, &[], UnixTime::now())
        };
        for name in [
            SERVER_NAME,
            "localhost",
            "127.0.0.1",
            "::1",
            "admin.example.org",
            "10.0.0.7",
        ] {
            check(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(check("usher-peer").is_err() && check("10.0.0.8").is_err());
        let err = generate_admin(dir.path(), &["USHER-PEER".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("peers check each other by"), "{err}");
        // A server certificate only: no peer admits it as a node.
        let as_peer = crate::peer::PeerTls::load(&crate::peer::PeerTlsFiles {
            cert: &cert,
            key: &dir.path().join("admin.key"),
            ca: &ca,
        });
        assert!(as_peer.is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("admin.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_node_loads_a_generated_pair_and_refuses_a_key_of_another() {
        let dir = tempfile::tempdir().unwrap();
        crate::peer::tls::generate(dir.path(), &[1], false).unwrap();
        generate_admin(dir.path(), &[]).unwrap();
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
