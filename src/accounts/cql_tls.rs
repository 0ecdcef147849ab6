//! TLS to the CQL database: a rustls client config that always verifies the
//! server, against a configured CA bundle or the web PKI roots, and against a
//! configured name when the certificates name hosts rather than addresses.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::StoreError;
use crate::config::ScyllaConfig;

fn tls_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("CQL TLS setup: {e}"))
}

/// The client config for `config`, or `None` when TLS is off.
pub fn client_config(config: &ScyllaConfig) -> Result<Option<Arc<ClientConfig>>, StoreError> {
    if !config.tls {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match &config.tls_ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                roots.add(cert).map_err(tls_error)?;
            }
            if roots.is_empty() {
                return Err(tls_error(format!("no certificate in {}", path.display())));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(tls_error)?;
    let verifier: Arc<dyn ServerCertVerifier> = match &config.tls_server_name {
        Some(name) => Arc::new(FixedName {
            inner: webpki,
            name: ServerName::try_from(name.clone()).map_err(tls_error)?,
        }),
        None => webpki,
    };
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(tls)))
}

/// Verifies every node's certificate against one configured name (the driver
/// would otherwise check the address it dialled). Still full verification.
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
