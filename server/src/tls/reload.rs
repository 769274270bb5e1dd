//! The swappable halves of the kubelet API's TLS configuration: the serving certificate
//! and the client CA verifier, replaced while connections keep being accepted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// A file and the contents last read from it.
pub(crate) struct Watched {
    path: PathBuf,
    contents: Vec<u8>,
}

impl Watched {
    pub(crate) fn new(path: PathBuf, contents: Vec<u8>) -> Self {
        Self { path, contents }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn contents(&self) -> &[u8] {
        &self.contents
    }

    /// Reads the file again: `Some` when its contents differ from the last read (now
    /// kept). A file that cannot be read (being replaced) counts as unchanged.
    pub(crate) async fn changed(&mut self) -> Option<()> {
        match tokio::fs::read(&self.path).await {
            Ok(contents) if contents != self.contents => {
                self.contents = contents;
                Some(())
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "cannot read a TLS file; keeping what was loaded");
                None
            }
        }
    }
}

/// The serving certificate, replaced when its files change.
#[derive(Debug)]
pub(crate) struct ReloadingCert(RwLock<Arc<CertifiedKey>>);

impl ReloadingCert {
    pub(crate) fn new(key: CertifiedKey) -> Self {
        Self(RwLock::new(Arc::new(key)))
    }

    pub(crate) fn set(&self, key: CertifiedKey) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The client certificate verifier, replaced when the CA bundle changes.
#[derive(Debug)]
pub(crate) struct ReloadingClientCa(RwLock<Arc<dyn ClientCertVerifier>>);

impl ReloadingClientCa {
    pub(crate) fn new(verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Self(RwLock::new(verifier))
    }

    pub(crate) fn set(&self, verifier: Arc<dyn ClientCertVerifier>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = verifier;
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No CA names are hinted: the bundle can change under a borrowed list. Clients
    /// (the API server, metrics-server, curl) send their one certificate regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}
