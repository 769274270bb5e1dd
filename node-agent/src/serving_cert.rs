//! The self-signed serving certificate of the kubelet API, made when neither
//! `tlsCertFile`/`tlsPrivateKeyFile` nor `serverTLSBootstrap` provide one, as upstream's
//! `InitializeTLS`: `kubelet.crt` and `kubelet.key` in `<root-dir>/pki`, kept across
//! restarts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::bootstrap::write_private;
use crate::{Error, Result};

/// How long a self-signed serving certificate is valid, as upstream's (one year).
const SELF_SIGNED_VALIDITY: time::Duration = time::Duration::days(365);

/// Makes the self-signed certificate files in `dir` unless both are there already;
/// returns their paths (certificate, key). The key is written owner-only.
///
/// # Errors
///
/// When the certificate cannot be made or written.
pub async fn ensure_self_signed(
    dir: &Path,
    node_name: &str,
    ips: &[IpAddr],
) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("kubelet.crt");
    let key = dir.join("kubelet.key");
    let (dir, node_name, ips) = (dir.to_owned(), node_name.to_owned(), ips.to_vec());
    let (cert_path, key_path) = (cert.clone(), key.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let exists = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
        if exists(&cert_path) && exists(&key_path) {
            tracing::debug!(cert = %cert_path.display(), "using the self-signed serving certificate");
            return Ok(());
        }
        let (cert_pem, key_pem) = self_signed(&node_name, &ips)?;
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            operation: "creating",
            path: dir.clone(),
            source,
        })?;
        write_private(&key_path, key_pem.as_bytes())?;
        std::fs::write(&cert_path, cert_pem).map_err(|source| Error::Io {
            operation: "writing",
            path: cert_path.clone(),
            source,
        })?;
        tracing::info!(cert = %cert_path.display(), key = %key_path.display(), "wrote a self-signed serving certificate");
        Ok(())
    })
    .await
    .map_err(|e| Error::Certificate {
        what: "self-signed serving certificate".to_owned(),
        reason: e.to_string(),
    })??;
    Ok((cert, key))
}

/// A self-signed serving certificate (ECDSA P-256) for `node_name` and `ips`, valid
/// from an hour ago for a year, as PEM certificate and key; its subject is upstream's
/// `<node name>@<unix time>`.
///
/// # Errors
///
/// When the node's name is no certificate name or signing fails.
pub fn self_signed(node_name: &str, ips: &[IpAddr]) -> Result<(String, String)> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let fail = |reason: String| Error::Certificate {
        what: format!("self-signed serving certificate for {node_name:?}"),
        reason,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(vec![node_name.to_owned()])
        .map_err(|e| fail(format!("the node name is no certificate name: {e}")))?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("{node_name}@{}", now.unix_timestamp()),
    );
    params.distinguished_name = name;
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + SELF_SIGNED_VALIDITY;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| fail(format!("generating a key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| fail(format!("signing the certificate: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_certificates_name_the_node() {
        let ips: Vec<IpAddr> = vec!["10.88.0.1".parse().expect("ip")];
        let (cert, key) = self_signed("vm", &ips).expect("certificate");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.contains("PRIVATE KEY"), "{key}");
        let der = pem_der(&cert);
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .expect("CN");
        assert!(cn.starts_with("vm@"), "{cn}");
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }

    #[test]
    fn private_files_are_owner_only_even_when_they_existed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, b"secret").expect("write_private");
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn self_signed_files_are_made_once_owner_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = dir.path().join("pki");
        let ips = ["10.88.0.1".parse().expect("ip")];
        let (cert, key) = ensure_self_signed(&pki, "vm", &ips).await.expect("made");
        assert_eq!(
            (cert.clone(), key.clone()),
            (pki.join("kubelet.crt"), pki.join("kubelet.key"))
        );
        let first = std::fs::read(&cert).expect("certificate written");
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        ensure_self_signed(&pki, "vm", &ips).await.expect("again");
        assert_eq!(
            std::fs::read(&cert).expect("certificate"),
            first,
            "reused on restart"
        );
    }
}
