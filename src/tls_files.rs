//! PEM files named by config keys (peer mTLS, the admin API's TLS): read and
//! parsed, with every error naming the key and the file, never the contents;
//! and the CA directory `usher cluster certs` signs with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
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

/// The CA certificates of a PEM file, as trust anchors.
pub(crate) fn roots(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Arc<RootCertStore>, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(key, path, pem)? {
        roots
            .add(cert)
            .map_err(|e| invalid(key, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// Common name of the CA `usher cluster certs` makes; its issuer name when it
/// signs with a CA it made before.
const CA_NAME: &str = "usher cluster CA";

/// What `usher cluster certs` wrote.
#[derive(Debug)]
pub struct Generated {
    /// Whether the CA was made now (else the one in the directory signed).
    pub new_ca: bool,
    pub written: Vec<PathBuf>,
}

fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A file `usher cluster certs` is about to write.
pub(crate) struct Pending {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    /// A key: mode 0600.
    pub private: bool,
}

/// The CA in `out`, made (in memory, to be written with the rest) if `ca.pem`
/// and `ca.key` are not both there; with the CA certificate's PEM.
pub(crate) fn ca_dir(
    out: &Path,
    pending: &mut Vec<Pending>,
) -> Result<(rcgen::Issuer<'static, rcgen::KeyPair>, Vec<u8>), TlsFileError> {
    std::fs::create_dir_all(out).map_err(|error| TlsFileError::Write {
        path: out.to_path_buf(),
        error,
    })?;
    let (cert_path, key_path) = (out.join("ca.pem"), out.join("ca.key"));
    let params = ca_params()?;
    if cert_path.exists() && key_path.exists() {
        let ca_pem = read("the CA certificate", &cert_path)?;
        let pem = std::fs::read_to_string(&key_path).map_err(|error| TlsFileError::Read {
            key: "the CA key",
            path: key_path.clone(),
            error,
        })?;
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| {
            invalid(
                "the CA key",
                &key_path,
                format!("not a PEM private key: {e}"),
            )
        })?;
        return Ok((rcgen::Issuer::new(params, key), ca_pem));
    }
    if cert_path.exists() || key_path.exists() {
        return Err(invalid(
            "the CA",
            out,
            "has only one of ca.pem and ca.key: restore the other, or remove both \
             (and every certificate it signed) to start a new CA",
        ));
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let ca_pem = cert.pem().into_bytes();
    pending.push(Pending {
        path: key_path,
        contents: key.serialize_pem().into_bytes(),
        private: true,
    });
    pending.push(Pending {
        path: cert_path,
        contents: ca_pem.clone(),
        private: false,
    });
    Ok((rcgen::Issuer::new(params, key), ca_pem))
}

/// What `usher cluster certs` says when a certificate it just signed does
/// not verify against `ca.pem`: the CA files are not a pair.
pub(crate) fn ca_mismatch(ca_path: &Path, e: impl std::fmt::Display) -> TlsFileError {
    invalid(
        "the CA",
        ca_path,
        format!(
            "a certificate signed with ca.key does not verify against it ({e}): \
             ca.pem and ca.key must be the pair this command made"
        ),
    )
}

/// Writes what was checked, keys readable by the owner only.
pub(crate) fn write_all(pending: Vec<Pending>, new_ca: bool) -> Result<Generated, TlsFileError> {
    for file in &pending {
        let written = if file.private {
            crate::secrets::write_private(&file.path, &file.contents)
        } else {
            std::fs::write(&file.path, &file.contents)
        };
        written.map_err(|error| TlsFileError::Write {
            path: file.path.clone(),
            error,
        })?;
    }
    Ok(Generated {
        new_ca,
        written: pending.into_iter().map(|f| f.path).collect(),
    })
}
