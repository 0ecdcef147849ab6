//! The server certificate: from config, or self-signed for the domain at first
//! start and kept in the data dir so clients can pin it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the generated certificate for `domain` lives.
pub fn generated_paths(data_dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (
        dir.join(format!("{domain}.crt")),
        dir.join(format!("{domain}.key")),
    )
}

pub fn acceptor(config: &Config) -> Result<TlsAcceptor, TlsError> {
    let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k) = generated_paths(&config.data_dir, config.domain.as_str());
            if !c.exists() || !k.exists() {
                generate(config.domain.as_str(), &c, &k)?;
                tracing::info!(cert = %c.display(), "generated a self-signed certificate");
            }
            (c, k)
        }
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path,
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn generate(domain: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let certified = rcgen::generate_simple_self_signed(vec![domain.to_owned()])?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    crate::secrets::write_private(key_path, certified.signing_key.serialize_pem().as_bytes())
        .map_err(io(key_path))?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(io(cert_path))?;
    Ok(())
}
