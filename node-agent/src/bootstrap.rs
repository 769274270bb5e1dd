//! TLS bootstrapping of the kubelet's client certificate (`--bootstrap-kubeconfig`), as
//! upstream's `pkg/kubelet/certificate/bootstrap` (`LoadClientCert`).
//!
//! When the `--kubeconfig` file is missing, or its client certificate cannot be read or has
//! expired, the kubelet uses the bootstrap kubeconfig (usually a bootstrap token) to ask for
//! a client certificate: it keeps an ECDSA P-256 key in `<cert-dir>/kubelet-client.key.tmp`
//! until the request succeeds, creates the CertificateSigningRequest
//! `node-csr-<hash of key, subject and usages>` for `CN=system:node:<node>, O=system:nodes`
//! with signer `kubernetes.io/kube-apiserver-client-kubelet`, waits until it is approved
//! and issued, writes certificate and key to `<cert-dir>/kubelet-client-<timestamp>.pem`
//! behind the symlink `<cert-dir>/kubelet-client-current.pem`, and writes the
//! `--kubeconfig` file with the bootstrap kubeconfig's server and CA and that file as
//! client certificate and key. Rotating the certificate later (upstream's
//! `rotateCertificates`) would replace the file behind the same symlink.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{AuthInfo, Cluster, Kubeconfig};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use sha2::Digest;

use super::is_conflict;
use crate::{Error, Result};

/// The signer of kubelet client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// How long the kubelet waits for its certificate to be approved and issued (upstream's).
pub const CERTIFICATE_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The usages a node client certificate asks for with an ECDSA key (an RSA key would add
/// `key encipherment`).
pub const NODE_CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];

/// The prefix of the client certificate files in the cert directory (upstream's file
/// store).
pub(crate) const PAIR_PREFIX: &str = "kubelet-client";

/// The private key kept until the certificate request succeeds.
const TMP_PRIVATE_KEY_FILE: &str = "kubelet-client.key.tmp";

/// How long the kubelet waits for the API server to answer before asking anyway.
const SERVER_WAIT: Duration = Duration::from_secs(60);

/// What [`load_client_cert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrapped {
    /// The `--kubeconfig` file exists and its client certificate is valid: nothing done.
    Reused,
    /// A certificate was issued for the CertificateSigningRequest `csr`, written to
    /// `cert` (the `kubelet-client-current.pem` symlink) and the kubeconfig written.
    Issued {
        /// The CertificateSigningRequest's name.
        csr: String,
        /// `<cert-dir>/kubelet-client-current.pem`.
        cert: PathBuf,
    },
}

/// The path of the current certificate and key (a symlink to the newest pair file).
pub fn current_pair_path(cert_dir: &Path) -> PathBuf {
    cert_dir.join(format!("{PAIR_PREFIX}-current.pem"))
}

/// Makes sure `kubeconfig` holds a valid client certificate, bootstrapping one with
/// `bootstrap_kubeconfig` when it does not (upstream's `LoadClientCert`); waits at most
/// [`CERTIFICATE_WAIT_TIMEOUT`] for the certificate.
pub async fn load_client_cert(
    kubeconfig: &Path,
    bootstrap_kubeconfig: &Path,
    cert_dir: &Path,
    node_name: &str,
) -> Result<Bootstrapped> {
    load_client_cert_within(
        kubeconfig,
        bootstrap_kubeconfig,
        cert_dir,
        node_name,
        CERTIFICATE_WAIT_TIMEOUT,
    )
    .await
}

/// [`load_client_cert`] waiting at most `timeout` for the certificate to be issued.
pub async fn load_client_cert_within(
    kubeconfig: &Path,
    bootstrap_kubeconfig: &Path,
    cert_dir: &Path,
    node_name: &str,
    timeout: Duration,
) -> Result<Bootstrapped> {
    let path = kubeconfig.to_owned();
    if blocking("checking the kubeconfig", move || {
        kubeconfig_is_valid(&path, jiff::Timestamp::now())
    })
    .await?
    {
        tracing::debug!(path = %kubeconfig.display(), "kubeconfig exists and is valid, skipping bootstrap");
        return Ok(Bootstrapped::Reused);
    }
    tracing::info!(
        kubeconfig = %kubeconfig.display(),
        bootstrap = %bootstrap_kubeconfig.display(),
        "using the bootstrap kubeconfig to request a client certificate"
    );
    let path = bootstrap_kubeconfig.to_owned();
    let cluster = blocking("reading the bootstrap kubeconfig", move || {
        let bootstrap = read_kubeconfig(&path)?;
        let (cluster, _) =
            current_entries(&bootstrap).map_err(|reason| Error::Kubeconfig { path, reason })?;
        Ok(cluster)
    })
    .await?;
    // Watches the request: no request deadline (the wait has its own).
    let client =
        super::client_from_kubeconfig(bootstrap_kubeconfig, &super::ClientOptions::default())
            .await?;

    let dir = cert_dir.to_owned();
    let key = blocking("loading or making the private key", move || {
        load_or_generate_key(&dir)
    })
    .await?;
    wait_for_server(&client).await;
    let request = NodeCsr::new(&key, node_name)?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let uid = request.create(&api, &key).await?;
    tracing::info!(csr = %request.name, "waiting for the client certificate to be issued");
    let certificate = wait_for_certificate(&api, &request.name, &uid, timeout).await?;

    let (dir, key_pem, name, path) = (
        cert_dir.to_owned(),
        key.serialize_pem(),
        request.name.clone(),
        kubeconfig.to_owned(),
    );
    let current = blocking("writing the certificate and kubeconfig", move || {
        let current = write_pair(&dir, PAIR_PREFIX, &certificate, &key_pem, jiff::Zoned::now().datetime())
            .map_err(|e| Error::CertificateRequest {
                name,
                reason: e.to_string(),
            })?;
        let tmp_key = dir.join(TMP_PRIVATE_KEY_FILE);
        if let Err(e) = std::fs::remove_file(&tmp_key)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %tmp_key.display(), error = %e, "could not remove the temporary private key");
        }
        write_kubeconfig(&path, &cluster, &current)?;
        Ok(current)
    })
    .await?;
    tracing::info!(
        csr = %request.name,
        cert = %current.display(),
        kubeconfig = %kubeconfig.display(),
        "client certificate issued; kubeconfig written"
    );
    Ok(Bootstrapped::Issued {
        csr: request.name,
        cert: current,
    })
}

/// Runs file work (reading and writing keys, certificates and kubeconfigs) off the async
/// threads.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Certificate {
            what: what.to_owned(),
            reason: e.to_string(),
        })?
}

/// Whether the kubeconfig file exists and its current user's client certificate can be
/// read and has not expired at `now` (upstream's `isClientConfigStillValid`). A file that
/// exists but cannot be used is logged and answered `false` (bootstrap again); only a
/// file that cannot even be looked at is an error.
pub fn kubeconfig_is_valid(path: &Path, now: jiff::Timestamp) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(Error::Io {
                operation: "looking at the kubeconfig",
                path: path.to_owned(),
                source,
            });
        }
    }
    match client_certificate_expiry(path) {
        Ok(not_after) if not_after.iter().all(|t| *t > now) => Ok(true),
        Ok(not_after) => {
            tracing::warn!(path = %path.display(), not_after = ?not_after, "the kubeconfig's client certificate has expired");
            Ok(false)
        }
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "cannot use the existing kubeconfig");
            Ok(false)
        }
    }
}

/// The expiry of each certificate of the kubeconfig's client certificate (at least one),
/// after checking that its key is readable.
fn client_certificate_expiry(path: &Path) -> std::result::Result<Vec<jiff::Timestamp>, String> {
    let config = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let (_, user) = current_entries(&config)?;
    let cert = load_data(
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
    )?
    .ok_or("no client certificate")?;
    if user.client_key_data.is_none() {
        load_data(None, user.client_key.as_deref())?.ok_or("no client key")?;
    }
    let expiry = certificates_not_after(&cert)?;
    if expiry.is_empty() {
        return Err("no certificate in the client certificate data".into());
    }
    Ok(expiry)
}

/// The `notAfter` of every certificate in PEM data.
fn certificates_not_after(pem: &[u8]) -> std::result::Result<Vec<jiff::Timestamp>, String> {
    let mut expiry = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("reading the PEM data: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| format!("parsing a certificate: {e}"))?;
        let seconds = cert.validity().not_after.timestamp();
        expiry.push(
            jiff::Timestamp::from_second(seconds)
                .map_err(|e| format!("certificate expiry {seconds}: {e}"))?,
        );
    }
    Ok(expiry)
}

/// Base64 data, else the contents of a file, else nothing.
pub(crate) fn load_data(
    data: Option<&str>,
    file: Option<&str>,
) -> std::result::Result<Option<Vec<u8>>, String> {
    if let Some(data) = data.filter(|d| !d.is_empty()) {
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(Some)
            .map_err(|e| format!("invalid base64 data: {e}"));
    }
    match file.filter(|f| !f.is_empty()) {
        Some(file) => std::fs::read(file)
            .map(Some)
            .map_err(|e| format!("reading {file}: {e}")),
        None => Ok(None),
    }
}

/// Reads a kubeconfig file.
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The cluster and user of the kubeconfig's current context.
pub(crate) fn current_entries(
    config: &Kubeconfig,
) -> std::result::Result<(Cluster, AuthInfo), String> {
    let name = config
        .current_context
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or("no current-context")?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| format!("context {name:?} not found"))?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| format!("cluster {:?} not found", context.cluster))?;
    let user = match &context.user {
        Some(user) => config
            .auth_infos
            .iter()
            .find(|u| &u.name == user)
            .and_then(|u| u.auth_info.clone())
            .ok_or_else(|| format!("user {user:?} not found"))?,
        None => AuthInfo::default(),
    };
    Ok((cluster, user))
}

/// The private key for the request: the current pair's (as upstream reuses it), else
/// the one kept in `kubelet-client.key.tmp` from an earlier attempt, else a new ECDSA
/// P-256 key written there (mode 0600) so that a failed request is retried with it.
fn load_or_generate_key(cert_dir: &Path) -> Result<KeyPair> {
    if let Ok(text) = std::fs::read_to_string(current_pair_path(cert_dir))
        && let Some(key) = private_key_block(&text).and_then(|k| KeyPair::from_pem(&k).ok())
    {
        return Ok(key);
    }
    let path = cert_dir.join(TMP_PRIVATE_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return KeyPair::from_pem(&text).map_err(|e| Error::Certificate {
                what: format!("private key {}", path.display()),
                reason: format!(
                    "{e} (a PKCS#8 ECDSA key is expected; remove the file to make a new one)"
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                operation: "reading",
                path,
                source,
            });
        }
    }
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| Error::Certificate {
            what: "generating an ECDSA P-256 key".into(),
            reason: e.to_string(),
        })?;
    create_dir(cert_dir)?;
    write_private(&path, key.serialize_pem().as_bytes())?;
    Ok(key)
}

/// The first private key block of PEM text.
fn private_key_block(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN PRIVATE KEY-----")?;
    let end_marker = "-----END PRIVATE KEY-----";
    let end = text[start..].find(end_marker)? + start + end_marker.len();
    Some(text[start..end].to_owned())
}

/// Waits up to a minute for the API server to answer (any answer, an error status
/// included), as upstream's `waitForServer`; carries on either way.
async fn wait_for_server(client: &kube::Client) {
    let deadline = tokio::time::Instant::now() + SERVER_WAIT;
    loop {
        match client.apiserver_version().await {
            Ok(_) | Err(kube::Error::Api(_)) => return,
            Err(e) => {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(error = %e, "timed out waiting to connect to the API server");
                    return;
                }
                tracing::info!(error = %e, "failed to connect to the API server, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The certificate request of a node's client certificate.
#[derive(Debug)]
pub(crate) struct NodeCsr {
    /// `node-csr-<hash>`.
    pub(crate) name: String,
    /// The PEM `CERTIFICATE REQUEST`.
    pub(crate) pem: String,
}

impl NodeCsr {
    /// The request for `CN=system:node:<node>, O=system:nodes` signed with `key`.
    pub(crate) fn new(key: &KeyPair, node_name: &str) -> Result<Self> {
        let common_name = format!("system:node:{node_name}");
        let organizations = ["system:nodes"];
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        for org in organizations {
            subject.push(DnType::OrganizationName, org);
        }
        subject.push(DnType::CommonName, common_name.as_str());
        params.distinguished_name = subject;
        let pem = params
            .serialize_request(key)
            .and_then(|csr| csr.pem())
            .map_err(|e| Error::Certificate {
                what: format!("making the certificate request for {common_name}"),
                reason: e.to_string(),
            })?;
        Ok(Self {
            name: digested_name(
                &key.subject_public_key_info(),
                &common_name,
                &organizations,
                &NODE_CLIENT_USAGES,
            ),
            pem,
        })
    }

    /// Creates the CertificateSigningRequest, or takes the existing one of that name
    /// when it was made with the same key and signer (an earlier attempt); its UID.
    async fn create(&self, api: &Api<CertificateSigningRequest>, key: &KeyPair) -> Result<String> {
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(self.pem.clone().into_bytes()),
                signer_name: KUBELET_CLIENT_SIGNER.to_owned(),
                usages: Some(NODE_CLIENT_USAGES.iter().map(|u| (*u).to_owned()).collect()),
                ..CertificateSigningRequestSpec::default()
            },
            status: None,
        };
        let error = |operation: &str, source| Error::Api {
            operation: format!("{operation} certificate signing request {}", self.name),
            source,
        };
        let created = match api.create(&PostParams::default(), &csr).await {
            Ok(created) => {
                tracing::info!(csr = %self.name, "certificate signing request created");
                created
            }
            Err(e) if is_conflict(&e) => {
                let existing = api
                    .get(&self.name)
                    .await
                    .map_err(|e| error("reading the existing", e))?;
                check_compatible(&existing, key).map_err(|reason| Error::CertificateRequest {
                    name: self.name.clone(),
                    reason: format!("exists and is not compatible: {reason}"),
                })?;
                tracing::info!(csr = %self.name, "certificate signing request for this node already exists, reusing it");
                existing
            }
            Err(e) => return Err(error("creating", e)),
        };
        Ok(created.metadata.uid.unwrap_or_default())
    }
}

/// Whether an existing request of our name was made with our key and signer.
fn check_compatible(
    existing: &CertificateSigningRequest,
    key: &KeyPair,
) -> std::result::Result<(), String> {
    if existing.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Err(format!(
            "signer {:?}, not {KUBELET_CLIENT_SIGNER:?}",
            existing.spec.signer_name
        ));
    }
    let (_, block) = x509_parser::pem::parse_x509_pem(&existing.spec.request.0)
        .map_err(|e| format!("reading its request: {e}"))?;
    let (_, request) =
        <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<'_, _>>::from_der(&block.contents)
            .map_err(|e| format!("parsing its request: {e}"))?;
    if request.certification_request_info.subject_pki.raw
        != key.subject_public_key_info().as_slice()
    {
        return Err("its request is for another key".into());
    }
    Ok(())
}

/// The request's name from what matters in it, as upstream's `digestedName`: SHA-512/256
/// over the base64url (unpadded) public key (PKIX DER), common name, organizations and
/// usages, each followed by `|`, as base64url after `node-csr-`.
pub fn digested_name(
    public_key_der: &[u8],
    common_name: &str,
    organizations: &[&str],
    usages: &[&str],
) -> String {
    let encode = |data: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
    let mut hash = sha2::Sha512_256::new();
    let mut write = |data: &[u8]| {
        hash.update(encode(data).as_bytes());
        hash.update(b"|");
    };
    write(public_key_der);
    write(common_name.as_bytes());
    for org in organizations {
        write(org.as_bytes());
    }
    for usage in usages {
        write(usage.as_bytes());
    }
    format!("node-csr-{}", encode(&hash.finalize()))
}

/// Where a request stands.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Neither refused nor issued yet.
    Pending,
    /// Approved and issued: the PEM certificate.
    Issued(Vec<u8>),
    /// Refused: `reason: message` of the Denied or Failed condition.
    Refused(String),
}

/// The state of a request, as upstream's `WaitForCertificate` reads it.
fn decision(csr: &CertificateSigningRequest) -> Decision {
    let Some(status) = &csr.status else {
        return Decision::Pending;
    };
    let mut approved = false;
    for condition in status.conditions.iter().flatten() {
        match condition.type_.as_str() {
            "Denied" | "Failed" => {
                return Decision::Refused(format!(
                    "{} (reason: {}, message: {})",
                    if condition.type_ == "Denied" {
                        "denied"
                    } else {
                        "failed"
                    },
                    condition.reason.as_deref().unwrap_or_default(),
                    condition.message.as_deref().unwrap_or_default()
                ));
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    match &status.certificate {
        Some(cert) if approved && !cert.0.is_empty() => Decision::Issued(cert.0.clone()),
        _ => Decision::Pending,
    }
}

/// Watches the request until it is issued or refused, at most `timeout`.
pub(crate) async fn wait_for_certificate(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    uid: &str,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let fail = |reason: String| Error::CertificateRequest {
        name: name.to_owned(),
        reason,
    };
    let decided = |csr: Option<&CertificateSigningRequest>| {
        csr.is_none_or(|csr| decision(csr) != Decision::Pending)
    };
    let wait = async {
        loop {
            match kube::runtime::wait::await_condition(api.clone(), name, decided).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    // A broken watch is retried, as upstream's informer does.
                    tracing::warn!(csr = name, error = %e, "watching the certificate signing request");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    let found: Option<CertificateSigningRequest> = match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(fail(format!(
                "not approved and issued within {}s",
                timeout.as_secs()
            )));
        }
    };
    let Some(csr) = found else {
        return Err(fail("was deleted".into()));
    };
    if !uid.is_empty() && csr.metadata.uid.as_deref() != Some(uid) {
        return Err(fail("was replaced (its UID changed)".into()));
    }
    match decision(&csr) {
        Decision::Issued(cert) => Ok(cert),
        Decision::Refused(reason) => Err(fail(reason)),
        Decision::Pending => Err(fail("watch ended before a decision".into())),
    }
}

/// Writes the issued certificate(s) and the key to `kubelet-client-<timestamp>.pem`
/// (0600) and points `kubelet-client-current.pem` at it (through
/// `kubelet-client-updated.pem`, renamed over it), as upstream's file store; returns the
/// current path. `now` is the local time (UTC without a time zone database).
pub(crate) fn write_pair(
    cert_dir: &Path,
    prefix: &str,
    cert_pem: &[u8],
    key_pem: &str,
    now: jiff::civil::DateTime,
) -> Result<PathBuf> {
    let invalid = |reason: String| Error::Certificate {
        what: "the issued certificate".into(),
        reason,
    };
    let expiry = certificates_not_after(cert_pem).map_err(invalid)?;
    if expiry.is_empty() {
        return Err(invalid("no CERTIFICATE block".into()));
    }
    let mut data = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(cert_pem).flatten() {
        if block.label == "CERTIFICATE" {
            data.extend_from_slice(pem_block("CERTIFICATE", &block.contents).as_bytes());
        }
    }
    data.extend_from_slice(key_pem.as_bytes());
    if !key_pem.ends_with('\n') {
        data.push(b'\n');
    }
    create_dir(cert_dir)?;
    let stamp = now.strftime("%Y-%m-%d-%H-%M-%S").to_string();
    let pair = cert_dir.join(format!("{prefix}-{stamp}.pem"));
    write_private(&pair, &data)?;
    let pair = std::path::absolute(&pair).map_err(|source| Error::Io {
        operation: "resolving",
        path: pair.clone(),
        source,
    })?;
    let current = cert_dir.join(format!("{prefix}-current.pem"));
    if let Ok(meta) = std::fs::symlink_metadata(&current)
        && !meta.file_type().is_symlink()
    {
        return Err(Error::Certificate {
            what: current.display().to_string(),
            reason: "expected a symlink but it is a file".into(),
        });
    }
    let updated = cert_dir.join(format!("{prefix}-updated.pem"));
    match std::fs::symlink_metadata(&updated) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(&updated).map_err(|source| Error::Io {
                operation: "removing",
                path: updated.clone(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(Error::Certificate {
                what: updated.display().to_string(),
                reason: "expected a symlink but it is a file".into(),
            });
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&pair, &updated).map_err(|source| Error::Io {
        operation: "making the symlink",
        path: updated.clone(),
        source,
    })?;
    std::fs::rename(&updated, &current).map_err(|source| Error::Io {
        operation: "renaming the symlink into",
        path: current.clone(),
        source,
    })?;
    Ok(current)
}

/// A PEM block with 64-column base64 lines.
fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// The kubeconfig upstream's `writeKubeconfigFromBootstrapping` writes: the bootstrap
/// cluster's server, TLS verification and CA (its file, else its data), and `pair` as
/// client certificate and key.
fn kubeconfig_text(cluster: &Cluster, pair: &Path) -> Result<String> {
    let mut stanza = serde_json::Map::new();
    stanza.insert(
        "server".into(),
        cluster.server.clone().unwrap_or_default().into(),
    );
    if cluster.insecure_skip_tls_verify == Some(true) {
        stanza.insert("insecure-skip-tls-verify".into(), true.into());
    }
    match (
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    ) {
        (Some(file), _) if !file.is_empty() => {
            stanza.insert("certificate-authority".into(), file.clone().into());
        }
        (_, Some(data)) if !data.is_empty() => {
            stanza.insert("certificate-authority-data".into(), data.clone().into());
        }
        _ => {}
    }
    let pair = pair.to_string_lossy();
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": stanza}],
        "users": [{"name": "default-auth", "user": {
            "client-certificate": pair,
            "client-key": pair,
        }}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster",
            "user": "default-auth",
            "namespace": "default",
        }}],
        "current-context": "default-context",
    });
    serde_yaml::to_string(&config).map_err(|e| Error::Certificate {
        what: "writing the kubeconfig".into(),
        reason: e.to_string(),
    })
}

/// Writes the kubeconfig (0600; through a temporary file renamed over it).
fn write_kubeconfig(path: &Path, cluster: &Cluster, pair: &Path) -> Result<()> {
    let text = kubeconfig_text(cluster, pair)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        operation: "renaming the new kubeconfig into",
        path: path.to_owned(),
        source,
    })
}

/// Creates a directory and its parents (0755, as upstream).
fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        operation: "creating",
        path: dir.to_owned(),
        source,
    })
}

/// Writes `data` to `path` readable and writable by its owner only (mode 0600, also
/// when the file existed with another mode), and syncs it: for private keys and the
/// kubeconfigs that carry them.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |source| Error::Io {
        operation: "writing",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    // An existing file keeps its mode on open: make sure it is private.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(data).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests;
