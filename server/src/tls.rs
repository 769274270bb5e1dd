//! TLS of the kubelet API: the serving certificate (`tlsCertFile`/`tlsPrivateKeyFile`,
//! or a self-signed one kept under `<root-dir>/pki`, as upstream's `InitializeTLS`),
//! client certificates checked against `authentication.x509.clientCAFile`, and the user
//! a client certificate names (CN, and O as groups).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

mod options;
mod reload;

pub use options::TlsOptions;

use crate::Result;
use crate::auth::UserInfo;
use crate::error::{TlsContext, tls_failure};

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingCert {
    /// `tlsCertFile` and `tlsPrivateKeyFile`.
    Files {
        /// The certificate chain (PEM).
        cert: PathBuf,
        /// Its private key (PEM).
        key: PathBuf,
    },
    /// A certificate requested from the API server (`serverTLSBootstrap`), kept current
    /// by whoever requests it; until there is one, handshakes fail.
    Requested(ServingResolver),
    /// The self-signed certificate in `dir` (`kubelet.crt`, `kubelet.key`) for the
    /// node's name and IPs. The node agent makes it
    /// (`kubelet_node_agent::ensure_self_signed`) before the server reads it.
    SelfSigned {
        /// `<root-dir>/pki`.
        dir: PathBuf,
        /// The node's name (the DNS name of the certificate).
        node_name: String,
        /// The node's IPs.
        ips: Vec<IpAddr>,
    },
}

/// Where a requested serving certificate is read from at each handshake.
#[derive(Clone)]
pub struct ServingResolver(pub Arc<dyn rustls::server::ResolvesServerCert>);

impl std::fmt::Debug for ServingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingResolver")
    }
}

impl PartialEq for ServingResolver {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ServingResolver {}

/// The TLS configuration of the kubelet API, and what keeps its certificates current.
#[derive(Debug)]
pub struct ServingTls {
    /// The configuration connections are accepted with.
    pub config: Arc<ServerConfig>,
    /// Re-reads the certificate files when they change.
    pub reloader: Reloader,
}

/// The TLS configuration of the kubelet API: the serving certificate, and client
/// certificates requested but optional, verified against `client_ca` when set, with
/// the protocol versions, suites and curves of `options`. The files are read now; the
/// [`Reloader`] reads them again when they change, as upstream's dynamic certificates.
pub async fn server_config(
    serving: &ServingCert,
    client_ca: Option<&Path>,
    options: &TlsOptions,
) -> Result<ServingTls> {
    let provider = options.provider();
    let (cert_path, key_path) = match serving {
        ServingCert::Files { cert, key } => (cert.clone(), key.clone()),
        ServingCert::SelfSigned { dir, .. } => (dir.join("kubelet.crt"), dir.join("kubelet.key")),
        ServingCert::Requested(resolver) => {
            return finish(resolver.0.clone(), None, client_ca, options, provider).await;
        }
    };
    let cert_pem = read(&cert_path, "serving certificate").await?;
    let key_pem = read(&key_path, "serving key").await?;
    let key = certified_key(&cert_pem, &key_pem, &cert_path, &key_path, &provider)?;
    let serving = Arc::new(reload::ReloadingCert::new(key));
    let files = ServingFiles {
        cert: reload::Watched::new(cert_path, cert_pem),
        key: reload::Watched::new(key_path, key_pem),
        serving: serving.clone(),
    };
    finish(serving, Some(files), client_ca, options, provider).await
}

/// The rest of [`server_config`] once the serving certificate's source is known.
async fn finish(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    files: Option<ServingFiles>,
    client_ca: Option<&Path>,
    options: &TlsOptions,
    provider: Arc<CryptoProvider>,
) -> Result<ServingTls> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(options.versions())
        .context("TLS protocol versions")?;
    let (builder, client_ca) = match client_ca {
        Some(path) => {
            let pem = read(path, "client CA bundle").await?;
            let verifier = Arc::new(reload::ReloadingClientCa::new(client_verifier(
                &pem, path, &provider,
            )?));
            let watched = reload::Watched::new(path.to_owned(), pem);
            (
                builder.with_client_cert_verifier(verifier.clone()),
                Some((watched, verifier)),
            )
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingTls {
        config: Arc::new(config),
        reloader: Reloader {
            files,
            client_ca,
            provider,
        },
    })
}

/// Reads a file of the TLS configuration.
async fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    tokio::fs::read(path)
        .await
        .with_context(|| format!("reading the {what} {}", path.display()))
}

/// The serving certificate chain and its key, checked to belong together.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the serving certificate {}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(tls_failure(format!(
            "the serving certificate {}",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .with_context(|| format!("the serving key {}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "the serving certificate {} and key {}",
            cert_path.display(),
            key_path.display()
        )
    })
}

/// A verifier of client certificates signed by the CAs of the bundle `pem`; clients
/// without one are let through to token or anonymous authentication.
fn client_verifier(
    pem: &[u8],
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.with_context(|| format!("the client CA bundle {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("a certificate of {}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(tls_failure(format!(
            "the client CA bundle {}",
            path.display()
        )));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .with_context(|| format!("client certificates of {}", path.display()))
}

/// Keeps the serving certificate and the client CA bundle current: when a file's
/// contents change, the new certificate (or bundle) is used by the next handshakes; a
/// file that cannot be used is logged and the last good one kept.
pub struct Reloader {
    files: Option<ServingFiles>,
    client_ca: Option<(reload::Watched, Arc<reload::ReloadingClientCa>)>,
    provider: Arc<CryptoProvider>,
}

/// The serving certificate's files and what they were loaded into.
struct ServingFiles {
    cert: reload::Watched,
    key: reload::Watched,
    serving: Arc<reload::ReloadingCert>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("cert", &self.files.as_ref().map(|f| f.cert.path()))
            .field("client_ca", &self.client_ca.as_ref().map(|(w, _)| w.path()))
            .finish_non_exhaustive()
    }
}

impl ServingFiles {
    /// Reloads the serving certificate when its files changed.
    async fn check(&mut self, provider: &CryptoProvider) {
        let cert = self.cert.changed().await;
        let key = self.key.changed().await;
        if cert.is_none() && key.is_none() {
            return;
        }
        match certified_key(
            self.cert.contents(),
            self.key.contents(),
            self.cert.path(),
            self.key.path(),
            provider,
        ) {
            Ok(key) => {
                self.serving.set(key);
                tracing::info!(cert = %self.cert.path().display(), "serving certificate reloaded");
            }
            // A certificate and key written one after the other mismatch for a moment:
            // the next look sees both.
            Err(e) => {
                tracing::warn!(error = %e, "the changed serving certificate cannot be used; keeping the previous one")
            }
        }
    }
}

impl Reloader {
    /// Looks at the files every `interval`, for ever.
    pub async fn run(mut self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.check().await;
        }
    }

    /// Reloads what changed since the last look.
    async fn check(&mut self) {
        if let Some(files) = &mut self.files {
            files.check(&self.provider).await;
        }
        if let Some((watched, verifier)) = &mut self.client_ca
            && watched.changed().await.is_some()
        {
            match client_verifier(watched.contents(), watched.path(), &self.provider) {
                Ok(new) => {
                    verifier.set(new);
                    tracing::info!(bundle = %watched.path().display(), "client CA bundle reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the changed client CA bundle cannot be used; keeping the previous one")
                }
            }
        }
    }
}

/// The user a verified client certificate names: its subject's common name, and its
/// organizations as groups (upstream `CommonNameUserConversion`); `None` without a
/// common name.
pub fn certificate_user(cert: &[u8]) -> Option<UserInfo> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert).ok()?;
    let subject = cert.subject();
    // The last common name, as Go's pkix.Name keeps it.
    let name = subject
        .iter_common_name()
        .filter_map(|attr| attr.as_str().ok())
        .last()
        .filter(|name| !name.is_empty())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|attr| attr.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some(UserInfo {
        name,
        groups,
        ..UserInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_cert(cn: &str, orgs: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        let mut name = rcgen::DistinguishedName::new();
        for org in orgs {
            name.push(rcgen::DnType::OrganizationName, *org);
        }
        if !cn.is_empty() {
            name.push(rcgen::DnType::CommonName, cn);
        }
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    /// `openssl req -x509 -subj "/O=system:masters/O=ops/CN=kube-apiserver-kubelet-client"`
    /// (rcgen keeps one value per attribute type).
    const TWO_ORGANIZATIONS: &str = "-----BEGIN CERTIFICATE-----
MIIB8jCCAZmgAwIBAgIUH8XTJO6Jq4jfkgXRfqnR0EiGmmYwCgYIKoZIzj0EAwIw
TzEXMBUGA1UECgwOc3lzdGVtOm1hc3RlcnMxDDAKBgNVBAoMA29wczEmMCQGA1UE
Awwda3ViZS1hcGlzZXJ2ZXIta3ViZWxldC1jbGllbnQwHhcNMjYxMjAxMjIyMzAw
WhcNMzYxMTI4MjIyMzAwWjBPMRcwFQYDVQQKDA5zeXN0ZW06bWFzdGVyczEMMAoG
A1UECgwDb3BzMSYwJAYDVQQDDB1rdWJlLWFwaXNlcnZlci1rdWJlbGV0LWNsaWVu
dDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNyNZDpsMqiJRPXzPdQinS6DViAT
x/SJYo0AIh/01Ykp1TqR9xI6cnq6y+k5JdRCwbUaPbRhyrhlnNFQLj+m2d6jUzBR
MB0GA1UdDgQWBBQ0LJixT5ZVfHIGkjLr1e71gPRKDzAfBgNVHSMEGDAWgBQ0LJix
T5ZVfHIGkjLr1e71gPRKDzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cA
MEQCIA1ZSehoKOFKsY/xcHeXNDEFU+Bi0XvU92sQ6lZ7/VCjAiA6O2etx+Q5pW0h
9RSc2bih444qVh2AW49nFGd5tQnnqA==
-----END CERTIFICATE-----
";

    #[test]
    fn client_certificates_name_the_user_and_groups() {
        let der = CertificateDer::from_pem_slice(TWO_ORGANIZATIONS.as_bytes()).expect("pem");
        assert_eq!(
            certificate_user(&der),
            Some(UserInfo::new(
                "kube-apiserver-kubelet-client",
                ["system:masters", "ops"]
            ))
        );
        let der = client_cert("system:node:vm", &["system:nodes"]);
        assert_eq!(
            certificate_user(&der),
            Some(UserInfo::new("system:node:vm", ["system:nodes"]))
        );
        assert_eq!(
            certificate_user(&client_cert("", &["x"])),
            None,
            "no CN, no user"
        );
        assert_eq!(certificate_user(b"not a certificate"), None);
        assert_eq!(certificate_user(&[]), None);
    }

    #[tokio::test]
    async fn the_self_signed_pair_is_read_from_its_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = dir.path().join("pki");
        let serving = ServingCert::SelfSigned {
            dir: pki.clone(),
            node_name: "vm".into(),
            ips: vec!["10.88.0.1".parse().expect("ip")],
        };
        // Not made yet: the error names the file.
        let missing = server_config(&serving, None, &TlsOptions::default())
            .await
            .expect_err("no certificate yet");
        assert!(
            format!("{missing:#}").contains(&pki.join("kubelet.crt").display().to_string()),
            "{missing:#}"
        );
        kubelet_node_agent::ensure_self_signed(&pki, "vm", &["10.88.0.1".parse().expect("ip")])
            .await
            .expect("made");
        server_config(&serving, None, &TlsOptions::default())
            .await
            .expect("config");
        let files = ServingCert::Files {
            cert: pki.join("kubelet.crt"),
            key: pki.join("kubelet.key"),
        };
        server_config(
            &files,
            Some(&pki.join("kubelet.crt")),
            &TlsOptions::default(),
        )
        .await
        .expect("files and a client CA");
        let err = server_config(
            &files,
            Some(&dir.path().join("missing.crt")),
            &TlsOptions::default(),
        )
        .await
        .expect_err("missing CA");
        assert!(format!("{err:#}").contains("client CA bundle"), "{err:#}");
    }
}
