//! PEM files named by config keys (peer mTLS, the admin API's TLS): read and
//! parsed, with every error naming the key and the file, never the contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    // `error`, not `source`: the message has it already, once.
    #[error("{key} ({path}): cannot read it: {error}")]
    Read {
        key: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{key} ({path}): {message}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// ring, as everywhere else in usher.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// tonic's TLS builds its rustls configs with the process-wide crypto
/// provider, which cannot be chosen per config here (the CQL driver brings a
/// second one): ring. Idempotent.
pub fn install_crypto_provider() {
    // An error means one is installed already, which is all that matters.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError::Read {
        key,
        path: path.to_path_buf(),
        error,
    })
}

pub(crate) fn invalid(key: &'static str, path: &Path, message: impl Into<String>) -> TlsFileError {
    TlsFileError::Invalid {
        key,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The certificates of a PEM file; at least one.
pub(crate) fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A certificate chain and its private key, checked to belong together.
/// `keys` names the two config keys, `paths` their files.
pub(crate) fn identity(
    keys: (&'static str, &'static str),
    paths: (&Path, &Path),
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let chain = certificates(keys.0, paths.0, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid(keys.1, paths.1, format!("not a PEM private key: {e}")))?;
    CertifiedKey::from_der(chain.clone(), key, &provider()).map_err(|e| {
        invalid(
            keys.1,
            paths.1,
            format!("not the key of {} ({e})", paths.0.display()),
        )
    })?;
    Ok(chain)
}
