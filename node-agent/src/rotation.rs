//! Rotation of the kubelet's certificates, as upstream's certificate manager
//! (k8s.io/client-go/util/certificate) with the kubelet's file stores: the client
//! certificate (`rotateCertificates`) and the serving certificate (`serverTLSBootstrap`:
//! requested with signer `kubernetes.io/kubelet-serving` for the node's host name and
//! IPs, `<cert-dir>/kubelet-server-current.pem`; none is served until one is approved and
//! issued, as upstream).
//!
//! For the client certificate:
//! The current certificate comes from `<cert-dir>/kubelet-client-current.pem`, else from
//! the kubeconfig's client certificate (which is then rotated at once, as upstream does
//! with initial credentials given in a kubeconfig). Once 70-90% (jittered) of its
//! lifetime has passed, a new ECDSA P-256 key and a CertificateSigningRequest
//! (`generateName: csr-`, signer `kubernetes.io/kube-apiserver-client-kubelet`,
//! `CN=system:node:<node>, O=system:nodes`) are made; the issued certificate is written
//! to `kubelet-client-<timestamp>.pem` behind the `-current.pem` symlink and used for
//! every new connection of the API clients made by [`client_with_certificate`], with no
//! restart. Failures are retried as upstream (2, 4, 8, 16 s, then every 32 s) and counted
//! in `kubelet_certificate_manager_client_expiration_renew_errors`; the certificate's
//! remaining lifetime is `kubelet_certificate_manager_client_ttl_seconds`.
//!
//! ```
//! use kubelet_node_agent::rotation::rotation_deadline;
//! use k8s_openapi::jiff::{Timestamp, ToSpan};
//!
//! let not_before: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
//! let not_after = not_before + 100.hours();
//! // The deadline falls between 70% and 90% of the lifetime.
//! assert_eq!(rotation_deadline(not_before, not_after, 0.0), not_before + 70.hours());
//! assert_eq!(rotation_deadline(not_before, not_after, 1.0), not_before + 90.hours());
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::client::ConfigExt;
use kubelet_core::metrics::Family;
use kubelet_core::metrics::kubelet::KubeletMetrics;
use rcgen::KeyPair;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{SignatureScheme, crypto::CryptoProvider};

use crate::bootstrap::{
    KUBELET_CLIENT_SIGNER, NODE_CLIENT_USAGES, PAIR_PREFIX, blocking, current_entries, load_data,
    wait_for_certificate, write_pair,
};
use crate::{Error, Result};

/// How long a rotation waits for its request to be approved and issued (upstream's).
const ISSUE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The waits between the first failed attempts of a rotation (upstream's backoff).
const BACKOFF: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];
/// The wait between attempts once the backoff is spent.
const RETRY: Duration = Duration::from_secs(32);
/// How long the kubelet runs on with an expired certificate it cannot renew before it
/// exits, so that its supervisor restarts it (and bootstrap credentials can apply).
const EXPIRED_EXIT_AFTER: Duration = Duration::from_secs(5 * 60);
/// How often the TTL gauge is refreshed while nothing else happens.
const TTL_REFRESH: Duration = Duration::from_secs(60);

/// The signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// The usages a serving certificate asks for with an ECDSA key.
const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

/// Which of the kubelet's certificates is rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The client certificate the API clients present.
    Client,
    /// The serving certificate of the kubelet API, for these names and addresses.
    Serving {
        /// The node's host names (DNS SANs).
        dns_names: Vec<String>,
        /// The node's addresses (IP SANs).
        ips: Vec<IpAddr>,
    },
}

impl Purpose {
    fn signer(&self) -> &'static str {
        match self {
            Self::Client => KUBELET_CLIENT_SIGNER,
            Self::Serving { .. } => KUBELET_SERVING_SIGNER,
        }
    }

    fn usages(&self) -> &'static [&'static str] {
        match self {
            Self::Client => &NODE_CLIENT_USAGES,
            Self::Serving { .. } => &SERVING_USAGES,
        }
    }

    /// The store's file prefix (upstream's pair names).
    fn prefix(&self) -> &'static str {
        match self {
            Self::Client => PAIR_PREFIX,
            Self::Serving { .. } => "kubelet-server",
        }
    }

    fn ttl_metric<'m>(&self, metrics: &'m KubeletMetrics) -> &'m Family {
        match self {
            Self::Client => &metrics.certificate_manager_client_ttl,
            Self::Serving { .. } => &metrics.certificate_manager_server_ttl,
        }
    }

    fn renew_errors_metric<'m>(&self, metrics: &'m KubeletMetrics) -> &'m Family {
        match self {
            Self::Client => &metrics.certificate_manager_client_renew_errors,
            Self::Serving { .. } => &metrics.server_expiration_renew_errors,
        }
    }
}

/// A certificate of the kubelet, replaced when rotated: presented by the API clients
/// (client) or served by the kubelet API (serving).
#[derive(Debug)]
pub struct RotatingCertificate {
    current: RwLock<Option<Current>>,
    provider: Arc<CryptoProvider>,
    purpose: Purpose,
}

/// The client certificate.
pub type ClientCertificate = RotatingCertificate;

#[derive(Debug, Clone)]
struct Current {
    key: Arc<CertifiedKey>,
    not_before: Timestamp,
    not_after: Timestamp,
    /// Whether it is what would be requested now (`CN=system:node:<node>,
    /// O=system:nodes`, and for serving the node's names and addresses).
    is_node_certificate: bool,
    /// It came from the kubeconfig, not the store: rotated at once, as upstream.
    from_kubeconfig: bool,
}

impl RotatingCertificate {
    /// The current client certificate of `node_name`: the store's in `cert_dir`, else
    /// the client certificate of `kubeconfig`'s current user.
    pub async fn load(kubeconfig: &Path, cert_dir: &Path, node_name: &str) -> Result<Arc<Self>> {
        let (kubeconfig, store, node) = (
            kubeconfig.to_owned(),
            cert_dir.join(format!("{}-current.pem", Purpose::Client.prefix())),
            node_name.to_owned(),
        );
        blocking("loading the client certificate", move || {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let purpose = Purpose::Client;
            let current = match read_store(&store)? {
                Some(pem) => parse_pair(&pem, &pem, &store, &node, &purpose, &provider)?,
                None => {
                    let (cert, key) = kubeconfig_pair(&kubeconfig)?;
                    let mut current =
                        parse_pair(&cert, &key, &kubeconfig, &node, &purpose, &provider)?;
                    current.from_kubeconfig = true;
                    current
                }
            };
            Ok(Arc::new(Self {
                current: RwLock::new(Some(current)),
                provider,
                purpose,
            }))
        })
        .await
    }

    /// The serving certificate of `node_name` for `dns_names` and `ips`: the store's in
    /// `cert_dir`, else none yet (requested at once by [`rotate`]).
    pub async fn load_serving(
        cert_dir: &Path,
        node_name: &str,
        dns_names: Vec<String>,
        ips: Vec<IpAddr>,
    ) -> Result<Arc<Self>> {
        let purpose = Purpose::Serving { dns_names, ips };
        let store = cert_dir.join(format!("{}-current.pem", purpose.prefix()));
        let node = node_name.to_owned();
        blocking("loading the serving certificate", move || {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let current = match read_store(&store)? {
                Some(pem) => match parse_pair(&pem, &pem, &store, &node, &purpose, &provider) {
                    Ok(current) => Some(current),
                    Err(e) => {
                        tracing::warn!(error = %e, "the stored serving certificate cannot be used; requesting a new one");
                        None
                    }
                },
                None => None,
            };
            Ok(Arc::new(Self {
                current: RwLock::new(current),
                provider,
                purpose,
            }))
        })
        .await
    }

    /// When the current certificate expires (the epoch when there is none).
    pub fn not_after(&self) -> Timestamp {
        self.read().map_or(Timestamp::UNIX_EPOCH, |c| c.not_after)
    }

    fn read(&self) -> Option<Current> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, current: Current) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(current);
    }

    /// When the current certificate is to be replaced: now when there is none, when it
    /// came from the kubeconfig or is not what would be requested now, else the jittered
    /// deadline.
    fn deadline(&self, jitter: f64) -> Timestamp {
        match self.read() {
            Some(current) if !current.from_kubeconfig && current.is_node_certificate => {
                rotation_deadline(current.not_before, current.not_after, jitter)
            }
            _ => Timestamp::now(),
        }
    }
}

/// The store's current pair, `None` when there is none yet.
fn read_store(store: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(store) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            operation: "reading",
            path: store.to_owned(),
            source,
        }),
    }
}

impl ResolvesClientCert for RotatingCertificate {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.read().map(|c| c.key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for RotatingCertificate {
    /// The serving certificate; none (the handshake fails) until one is issued, as
    /// upstream's kubelet with serverTLSBootstrap.
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.read().map(|c| c.key)
    }
}

/// Upstream's `nextRotationDeadline`: `notBefore` plus 70% of the lifetime plus
/// `jitter` (0..=1) times another 20%.
pub fn rotation_deadline(not_before: Timestamp, not_after: Timestamp, jitter: f64) -> Timestamp {
    let total = not_after.duration_since(not_before).as_secs_f64().max(0.0);
    let offset = total * (0.7 + 0.2 * jitter.clamp(0.0, 1.0));
    let offset = k8s_openapi::jiff::SignedDuration::try_from_secs_f64(offset).unwrap_or_default();
    not_before.checked_add(offset).unwrap_or(not_after)
}

/// The client certificate and key of the kubeconfig's current user (PEM).
fn kubeconfig_pair(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let invalid = |reason: String| Error::Kubeconfig {
        path: path.to_owned(),
        reason,
    };
    let config = kube::config::Kubeconfig::read_from(path).map_err(|e| invalid(e.to_string()))?;
    let (_, user) = current_entries(&config).map_err(invalid)?;
    let cert = load_data(
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
    )
    .map_err(invalid)?
    .ok_or_else(|| {
        invalid(
            "rotateCertificates needs a client certificate, and the current user has none".into(),
        )
    })?;
    let key_data = user
        .client_key_data
        .as_ref()
        .map(|k| secrecy::ExposeSecret::expose_secret(k).to_owned());
    let key = load_data(key_data.as_deref(), user.client_key.as_deref())
        .map_err(invalid)?
        .ok_or_else(|| invalid("the current user's client certificate has no key".into()))?;
    Ok((cert, key))
}

/// A certificate chain and its key, checked to belong together, with the leaf's
/// validity and whether it names `node`.
fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    path: &Path,
    node: &str,
    purpose: &Purpose,
    provider: &CryptoProvider,
) -> Result<Current> {
    let what = match purpose {
        Purpose::Client => "client",
        Purpose::Serving { .. } => "serving",
    };
    let invalid = |reason: String| Error::Certificate {
        what: format!("the {what} certificate {}", path.display()),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("no CERTIFICATE block".into()))?;
    let (not_before, not_after, is_node_certificate) = {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| invalid(e.to_string()))?;
        let time = |t: i64| Timestamp::from_second(t).map_err(|e| invalid(e.to_string()));
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .last();
        let orgs: Vec<&str> = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect();
        let sans_match = match purpose {
            Purpose::Client => true,
            Purpose::Serving { dns_names, ips } => {
                let (mut names, mut addresses) = (Vec::new(), Vec::new());
                if let Ok(Some(san)) = cert.subject_alternative_name() {
                    for name in &san.value.general_names {
                        match name {
                            x509_parser::extensions::GeneralName::DNSName(n) => {
                                names.push((*n).to_owned());
                            }
                            x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                                    addresses.push(IpAddr::from(v4));
                                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                                    addresses.push(IpAddr::from(v6));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                let (mut want_names, mut want_ips) = (dns_names.clone(), ips.clone());
                for list in [&mut names, &mut want_names] {
                    list.sort();
                    list.dedup();
                }
                for list in [&mut addresses, &mut want_ips] {
                    list.sort();
                    list.dedup();
                }
                names == want_names && addresses == want_ips
            }
        };
        (
            time(cert.validity().not_before.timestamp())?,
            time(cert.validity().not_after.timestamp())?,
            common_name == Some(&format!("system:node:{node}"))
                && orgs == ["system:nodes"]
                && sans_match,
        )
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid(e.to_string()))?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| invalid(e.to_string()))?;
    Ok(Current {
        key: Arc::new(key),
        not_before,
        not_after,
        is_node_certificate,
        from_kubeconfig: false,
    })
}

/// A client for the API server from `kubeconfig` (its server, CA and headers) that
/// presents `certificate`'s current certificate on every new connection, and nothing
/// else (as upstream's rotating transport, tokens of the kubeconfig are not sent).
/// Made as `options` say, as [`crate::client_from_kubeconfig`]; give [`rotate`] the
/// same `options.connections`, so that a rotation closes the connections that present
/// the old certificate.
pub async fn client_with_certificate(
    kubeconfig: &Path,
    options: &crate::ClientOptions,
    certificate: Arc<ClientCertificate>,
) -> Result<kube::Client> {
    let invalid = |reason: String| crate::client::invalid(kubeconfig, reason);
    let mut config = crate::client::load(kubeconfig).await?;
    // The certificate manager's certificate only: no token, no basic auth.
    config.auth_info = kube::config::AuthInfo::default();
    let mut tls = config
        .rustls_client_config()
        .map_err(|e| invalid(e.to_string()))?;
    tls.client_auth_cert_resolver = certificate;
    // A resumed TLS session keeps the identity of the handshake that made it (the API
    // server restores its peer certificates from the ticket), so after a rotation new
    // connections would go on presenting the old certificate, refused once it expires.
    // Every connection makes a full handshake with the current one, as upstream's.
    tls.resumption = rustls::client::Resumption::disabled();
    crate::client::build(config, tls, options).map_err(invalid)
}

/// Rotates `certificate` for ever (a task of the kubelet): waits for its deadline, then
/// requests, stores and uses a new one through `client`. Returns an error only when the
/// client certificate has been expired for five minutes and still cannot be renewed, so
/// that the kubelet exits and is restarted. The certificate's TTL, renewal errors and
/// (serving) lifetime at rotation go to `metrics`. Each rotation closes `presenting`,
/// the connections made with the old certificate, so that every request presents the
/// new one (upstream: "Certificate rotation detected, shutting down client
/// connections"); the API server checks a client certificate on every request, so a
/// connection kept past the old one's expiry would fail.
pub async fn rotate(
    certificate: Arc<RotatingCertificate>,
    client: kube::Client,
    cert_dir: PathBuf,
    node_name: String,
    metrics: Arc<KubeletMetrics>,
    presenting: Option<crate::Connections>,
) -> Result<()> {
    let what = match certificate.purpose {
        Purpose::Client => "client",
        Purpose::Serving { .. } => "serving",
    };
    loop {
        let deadline = certificate.deadline(crate::random_unit());
        tracing::info!(certificate = what, expiration = %certificate.not_after(), %deadline, "certificate rotation deadline determined");
        wait_until(deadline, &certificate, &metrics).await;
        let mut attempt = 0;
        loop {
            let previous = certificate.read();
            match rotate_once(&certificate, &client, &cert_dir, &node_name).await {
                Ok(name) => {
                    tracing::info!(certificate = what, csr = %name, expiration = %certificate.not_after(), "certificate rotated");
                    if let (Purpose::Serving { .. }, Some(previous)) =
                        (&certificate.purpose, previous)
                    {
                        let lived = Timestamp::now().duration_since(previous.not_before);
                        metrics
                            .certificate_manager_server_rotation_seconds
                            .observe(&[], lived.as_secs_f64());
                    }
                    set_ttl(&certificate, &metrics);
                    if let Some(connections) = &presenting {
                        tracing::info!(
                            certificate = what,
                            "closing the connections that present the old certificate"
                        );
                        connections.close_all();
                    }
                    break;
                }
                Err(e) => {
                    certificate.purpose.renew_errors_metric(&metrics).inc(&[]);
                    tracing::warn!(certificate = what, error = %e, "rotating the certificate failed");
                    let expired_for = Timestamp::now().duration_since(certificate.not_after());
                    if certificate.purpose == Purpose::Client
                        && expired_for.as_secs_f64() > EXPIRED_EXIT_AFTER.as_secs_f64()
                    {
                        return Err(Error::Certificate {
                            what: "the client certificate".into(),
                            reason: format!(
                                "expired at {} and could not be renewed for {}s: {e}",
                                certificate.not_after(),
                                EXPIRED_EXIT_AFTER.as_secs()
                            ),
                        });
                    }
                    let wait = BACKOFF.get(attempt).copied().unwrap_or(RETRY);
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Sleeps until `deadline`, refreshing the TTL gauge meanwhile.
async fn wait_until(
    deadline: Timestamp,
    certificate: &RotatingCertificate,
    metrics: &KubeletMetrics,
) {
    loop {
        set_ttl(certificate, metrics);
        let left = deadline.duration_since(Timestamp::now());
        if left.is_negative() || left.is_zero() {
            return;
        }
        let left = Duration::try_from(left).unwrap_or(TTL_REFRESH);
        tokio::time::sleep(left.min(TTL_REFRESH)).await;
    }
}

/// `kubelet_certificate_manager_{client,server}_ttl_seconds`: whole seconds until
/// expiry, +Inf without a certificate (upstream's value for "unused").
fn set_ttl(certificate: &RotatingCertificate, metrics: &KubeletMetrics) {
    let ttl = match certificate.read() {
        Some(current) => current
            .not_after
            .duration_since(Timestamp::now())
            .as_secs_f64()
            .trunc(),
        None => f64::INFINITY,
    };
    certificate.purpose.ttl_metric(metrics).set(&[], ttl);
}

/// One rotation: a new key and request, the issued certificate stored and used; the
/// request's name.
async fn rotate_once(
    certificate: &RotatingCertificate,
    client: &kube::Client,
    cert_dir: &Path,
    node_name: &str,
) -> Result<String> {
    let key = blocking("making a private key", || {
        KeyPair::generate().map_err(|e| Error::Certificate {
            what: "a new private key".into(),
            reason: e.to_string(),
        })
    })
    .await?;
    let purpose = &certificate.purpose;
    let request = request_pem(&key, node_name, purpose)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request.into_bytes()),
            signer_name: purpose.signer().to_owned(),
            usages: Some(purpose.usages().iter().map(|u| (*u).to_owned()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|source| Error::Api {
            operation: format!(
                "creating a certificate signing request for signer {}",
                purpose.signer()
            ),
            source,
        })?;
    let name = created.metadata.name.unwrap_or_default();
    let uid = created.metadata.uid.unwrap_or_default();
    tracing::info!(csr = %name, signer = purpose.signer(), "waiting for the certificate to be approved and issued");
    let cert_pem = wait_for_certificate(&api, &name, &uid, ISSUE_TIMEOUT).await?;
    let key_pem = key.serialize_pem();
    let (dir, node, provider, purpose) = (
        cert_dir.to_owned(),
        node_name.to_owned(),
        certificate.provider.clone(),
        purpose.clone(),
    );
    let current = blocking("storing the rotated certificate", move || {
        let now = k8s_openapi::jiff::Zoned::now().datetime();
        let path = write_pair(&dir, purpose.prefix(), &cert_pem, &key_pem, now)?;
        let pem = std::fs::read(&path).map_err(|source| Error::Io {
            operation: "reading",
            path: path.clone(),
            source,
        })?;
        parse_pair(&pem, &pem, &path, &node, &purpose, &provider)
    })
    .await?;
    certificate.set(current);
    Ok(name)
}

/// The PEM certificate request for `CN=system:node:<node>, O=system:nodes` with `key`,
/// with the node's names and addresses as SANs for a serving certificate.
fn request_pem(key: &KeyPair, node_name: &str, purpose: &Purpose) -> Result<String> {
    let common_name = format!("system:node:{node_name}");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name.as_str());
    if let Purpose::Serving { dns_names, ips } = purpose {
        for name in dns_names {
            let name = name
                .as_str()
                .try_into()
                .map_err(|e: rcgen::Error| Error::Certificate {
                    what: format!("the serving certificate's name {name:?}"),
                    reason: e.to_string(),
                })?;
            params.subject_alt_names.push(rcgen::SanType::DnsName(name));
        }
        for ip in ips {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(*ip));
        }
    }
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| Error::Certificate {
            what: format!("making the certificate request for {common_name}"),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::ToSpan;

    fn pair(cn: &str, org: &str, days: i64) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_deadline_is_seventy_to_ninety_percent_of_the_lifetime() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let end = start + 10.minutes();
        assert_eq!(rotation_deadline(start, end, 0.5), start + 8.minutes());
        assert_eq!(rotation_deadline(start, end, 7.0), start + 9.minutes());
        let samples: Vec<f64> = (0..100).map(|_| crate::random_unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(samples.iter().any(|x| *x != samples[0]), "jittered");
    }

    #[tokio::test]
    async fn the_store_comes_first_and_a_kubeconfig_certificate_is_rotated_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair("system:node:n1", "system:nodes", 10);
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(dir.path().join("c.pem"), &cert).expect("write");
        std::fs::write(dir.path().join("k.pem"), &key).expect("write");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{{name: x, cluster: {{server: https://127.0.0.1:6443}}}}]\n\
                 contexts: [{{name: c, context: {{cluster: x, user: u}}}}]\n\
                 users: [{{name: u, user: {{client-certificate: {0}/c.pem, client-key: {0}/k.pem}}}}]\n",
                dir.path().display()
            ),
        )
        .expect("write kubeconfig");
        let store = dir.path().join("pki");
        let loaded = ClientCertificate::load(&kubeconfig, &store, "n1")
            .await
            .expect("load");
        assert!(
            loaded.deadline(0.0) <= Timestamp::now(),
            "initial credentials rotate at once"
        );

        // The store's pair, once written, wins, and its deadline is in the future.
        let (cert, key) = pair("system:node:n1", "system:nodes", 100);
        let now = k8s_openapi::jiff::Zoned::now().datetime();
        write_pair(&store, PAIR_PREFIX, cert.as_bytes(), &key, now).expect("store");
        let stored = ClientCertificate::load(&kubeconfig, &store, "n1")
            .await
            .expect("load");
        assert!(stored.deadline(0.0) > Timestamp::now() + (60 * 24).hours());
        assert!(stored.not_after() > loaded.not_after());

        // A certificate for another subject is replaced at once.
        let (cert, key) = pair("admin", "system:masters", 100);
        write_pair(&store, PAIR_PREFIX, cert.as_bytes(), &key, now).expect("store");
        let other = ClientCertificate::load(&kubeconfig, &store, "n1")
            .await
            .expect("load");
        assert!(other.deadline(1.0) <= Timestamp::now());
        assert!(other.resolve(&[], &[]).is_some());
    }

    #[tokio::test]
    async fn a_mismatched_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = pair("system:node:n1", "system:nodes", 10);
        let (_, other_key) = pair("system:node:n1", "system:nodes", 10);
        let now = k8s_openapi::jiff::Zoned::now().datetime();
        write_pair(dir.path(), PAIR_PREFIX, cert.as_bytes(), &other_key, now).expect("store");
        let err = ClientCertificate::load(&dir.path().join("none"), dir.path(), "n1")
            .await
            .expect_err("mismatch");
        assert!(err.to_string().contains("client certificate"), "{err}");
    }
}
