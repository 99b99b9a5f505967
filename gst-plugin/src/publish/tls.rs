//! TLS for MQTT and HTTP, through rustls with the ring provider: the server is checked
//! against the certificates of a CA file, or, without one, against Mozilla's roots.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::destination::ConfigError;

/// The certificates a server's chain must lead to.
#[derive(Debug, Clone)]
pub enum Roots {
    /// Mozilla's root certificates.
    WebPki,
    /// The certificates of a CA file.
    CaFile(Arc<Vec<CertificateDer<'static>>>),
}

impl Roots {
    /// The certificates of the PEM file `path`.
    pub fn from_ca_file(path: &Path) -> Result<Roots, ConfigError> {
        let bad = |reason: String| ConfigError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("it holds no PEM certificate".into()));
        }
        Ok(Roots::CaFile(Arc::new(certs)))
    }

    /// A rustls client configuration trusting these roots.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
        let mut store = rustls::RootCertStore::empty();
        match self {
            Roots::WebPki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Roots::CaFile(certs) => {
                let (_, refused) = store.add_parsable_certificates(certs.iter().cloned());
                if store.is_empty() {
                    return Err(ConfigError::Tls(format!(
                        "none of the {refused} certificates of the CA file is usable"
                    )));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Tls(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// ureq's TLS configuration trusting these roots.
    pub fn ureq_config(&self) -> ureq::tls::TlsConfig {
        let roots = match self {
            Roots::WebPki => ureq::tls::RootCerts::WebPki,
            Roots::CaFile(certs) => ureq::tls::RootCerts::new_with_certs(
                &certs
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect::<Vec<_>>(),
            ),
        };
        ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .build()
    }
}
