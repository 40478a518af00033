//! TLS configuration with rustls: client roots and options, server certificates from PEM.

use crate::error::{Error, Result, TlsError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a client verifies servers.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ClientTlsOptions {
    /// Extra trusted CA certificates (PEM files), in addition to the Mozilla roots.
    pub ca_files: Vec<PathBuf>,
    /// Accept any server certificate. Only for testing: it disables authentication.
    pub insecure: bool,
    /// Client certificate chain and key (PEM files), for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = |context: String| move |source| Error::from(TlsError::Pem { context, source });
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(pem(format!(
            "cannot read certificates from {}",
            path.display()
        )))?
        .collect::<Result<_, _>>()
        .map_err(pem(format!("bad certificate in {}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::from(TlsError::NoCertificate(path.to_owned())));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| {
        Error::from(TlsError::Pem {
            context: format!("cannot read private key from {}", path.display()),
            source,
        })
    })
}

impl ClientTlsOptions {
    /// Builds the rustls client configuration.
    pub fn build(&self) -> Result<Arc<rustls::ClientConfig>> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::rustls("protocol versions"))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for file in &self.ca_files {
                for cert in load_certs(file)? {
                    roots
                        .add(cert)
                        .map_err(TlsError::rustls(format!("bad CA in {}", file.display())))?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match &self.client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(TlsError::rustls("client certificate"))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// A server TLS configuration from PEM certificate chain and private key files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::rustls("protocol versions"))?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(TlsError::rustls(
            "certificate and key do not form a valid pair",
        ))?;
    Ok(Arc::new(config))
}

/// Accepts every certificate (still checks handshake signatures).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
