use std::os::unix::fs::PermissionsExt;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use rcgen::{CertificateParams, KeyPair};

use super::*;

/// A self-signed client certificate valid from `not_before` to `not_after` (unix
/// seconds); PEM certificate and key.
fn client_cert(not_before: i64, not_after: i64) -> (String, String) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).expect("time");
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("time");
    params
        .distinguished_name
        .push(DnType::CommonName, "system:node:vm");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A kubeconfig whose user has these client certificate and key entries.
fn kubeconfig_with_user(user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.88.0.1:6443\n\
         users:\n- name: u\n  user:\n{user}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
         current-context: x\n"
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn kubeconfig_validity_follows_the_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubelet.conf");
    assert!(
        !kubeconfig_is_valid(&kubeconfig, now()).expect("missing"),
        "a missing kubeconfig is not valid"
    );

    let t = now().as_second();
    let (cert, key) = client_cert(t - 3600, t + 3600);
    std::fs::write(dir.path().join("pair.pem"), format!("{cert}{key}")).expect("pair");
    // Relative paths are relative to the kubeconfig's directory.
    std::fs::write(
        &kubeconfig,
        kubeconfig_with_user("    client-certificate: pair.pem\n    client-key: pair.pem"),
    )
    .expect("kubeconfig");
    assert!(kubeconfig_is_valid(&kubeconfig, now()).expect("valid"));
    let later = jiff::Timestamp::from_second(t + 7200).expect("later");
    assert!(
        !kubeconfig_is_valid(&kubeconfig, later).expect("expired"),
        "the certificate has expired by then"
    );

    // An expired certificate, embedded.
    let (cert, key) = client_cert(t - 7200, t - 3600);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    std::fs::write(
        &kubeconfig,
        kubeconfig_with_user(&format!(
            "    client-certificate-data: {}\n    client-key-data: {}",
            b64(&cert),
            b64(&key)
        )),
    )
    .expect("kubeconfig");
    assert!(!kubeconfig_is_valid(&kubeconfig, now()).expect("expired"));

    // A token instead of a certificate, a missing key file, garbage: bootstrap again.
    for user in [
        "    token: abcdef.0123456789abcdef".to_owned(),
        "    client-certificate: pair.pem\n    client-key: missing.pem".to_owned(),
    ] {
        std::fs::write(&kubeconfig, kubeconfig_with_user(&user)).expect("kubeconfig");
        assert!(
            !kubeconfig_is_valid(&kubeconfig, now()).expect("unusable"),
            "{user}"
        );
    }
    std::fs::write(&kubeconfig, "{not yaml: [").expect("garbage");
    assert!(!kubeconfig_is_valid(&kubeconfig, now()).expect("garbage"));
}

#[test]
fn csr_name_is_upstreams_digest() {
    // The same inputs through upstream's digestedName (Go, crypto/sha512.New512_256).
    assert_eq!(
        digested_name(
            &[0x30, 0x59, 0x01, 0x02, 0x03],
            "system:node:vm",
            &["system:nodes"],
            &NODE_CLIENT_USAGES
        ),
        "node-csr-tQS-W-NtilzeTxMvi6Kve2Zce9HJMhYKMWm_iH6H3Zc"
    );
}

#[test]
fn csr_names_the_node_with_the_key() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let csr = NodeCsr::new(&key, "vm").expect("csr");
    assert!(csr.name.starts_with("node-csr-"), "{}", csr.name);
    assert_eq!(csr.name, NodeCsr::new(&key, "vm").expect("again").name);
    assert_ne!(csr.name, NodeCsr::new(&key, "other").expect("other").name);

    let (_, block) = x509_parser::pem::parse_x509_pem(csr.pem.as_bytes()).expect("pem");
    assert_eq!(block.label, "CERTIFICATE REQUEST");
    let (_, request) =
        <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<'_, _>>::from_der(&block.contents)
            .expect("request");
    let info = &request.certification_request_info;
    let cn: Vec<_> = info
        .subject
        .iter_common_name()
        .map(|a| a.as_str().expect("cn").to_owned())
        .collect();
    let orgs: Vec<_> = info
        .subject
        .iter_organization()
        .map(|a| a.as_str().expect("o").to_owned())
        .collect();
    assert_eq!(cn, ["system:node:vm"]);
    assert_eq!(orgs, ["system:nodes"]);
    assert_eq!(
        info.subject_pki.raw,
        key.subject_public_key_info().as_slice()
    );
    // No extension (no SANs): what the csrapproving controller accepts for node clients.
    assert!(
        request
            .requested_extensions()
            .is_none_or(|mut e| e.next().is_none())
    );

    let existing = CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr.pem.clone().into_bytes()),
            signer_name: KUBELET_CLIENT_SIGNER.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(check_compatible(&existing, &key), Ok(()));
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    assert!(check_compatible(&existing, &other).is_err());
}

#[test]
fn decisions_follow_the_conditions() {
    let with = |conditions: &[(&str, &str)], cert: &[u8]| CertificateSigningRequest {
        status: Some(CertificateSigningRequestStatus {
            certificate: Some(k8s_openapi::ByteString(cert.to_vec())),
            conditions: Some(
                conditions
                    .iter()
                    .map(|(kind, reason)| CertificateSigningRequestCondition {
                        type_: (*kind).into(),
                        reason: Some((*reason).into()),
                        message: Some("by the test".into()),
                        status: "True".into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
        ..Default::default()
    };
    assert_eq!(
        decision(&CertificateSigningRequest::default()),
        Decision::Pending
    );
    assert_eq!(
        decision(&with(&[("Approved", "AutoApproved")], b"")),
        Decision::Pending,
        "approved, not yet issued"
    );
    assert_eq!(
        decision(&with(&[("Approved", "AutoApproved")], b"PEM")),
        Decision::Issued(b"PEM".to_vec())
    );
    assert_eq!(decision(&with(&[], b"PEM")), Decision::Pending);
    assert_eq!(
        decision(&with(&[("Denied", "NotMine")], b"")),
        Decision::Refused("denied (reason: NotMine, message: by the test)".into())
    );
    assert_eq!(
        decision(&with(&[("Approved", "A"), ("Failed", "SignerError")], b"")),
        Decision::Refused("failed (reason: SignerError, message: by the test)".into())
    );
}

#[test]
fn key_is_kept_until_the_pair_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = dir.path().join("pki");
    let key = load_or_generate_key(&cert_dir).expect("new key");
    let tmp = cert_dir.join(TMP_PRIVATE_KEY_FILE);
    assert_eq!(mode(&tmp), 0o600);
    let again = load_or_generate_key(&cert_dir).expect("same key");
    assert_eq!(
        again.subject_public_key_info(),
        key.subject_public_key_info(),
        "a failed request is retried with the same key"
    );
    std::fs::write(&tmp, "garbage").expect("garbage");
    let err = load_or_generate_key(&cert_dir).expect_err("garbage key");
    assert!(err.to_string().contains("kubelet-client.key.tmp"), "{err}");
}

#[test]
fn pair_and_kubeconfig_are_laid_out_as_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_dir = dir.path().join("pki");
    let key = load_or_generate_key(&cert_dir).expect("key");
    let t = now().as_second();
    let (cert, _) = client_cert(t - 60, t + 3600);
    let at = |s: &str| -> jiff::civil::DateTime { s.parse().expect("date and time") };

    let current = write_pair(
        &cert_dir,
        PAIR_PREFIX,
        cert.as_bytes(),
        &key.serialize_pem(),
        at("2026-05-04T10:20:30"),
    )
    .expect("pair");
    let first = cert_dir.join("kubelet-client-2026-05-04-10-20-30.pem");
    assert_eq!(current, cert_dir.join("kubelet-client-current.pem"));
    assert_eq!(std::fs::read_link(&current).expect("symlink"), first);
    assert_eq!(mode(&first), 0o600);
    let text = std::fs::read_to_string(&current).expect("pair");
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"), "{text}");
    // The key of the current pair is reused.
    assert_eq!(
        load_or_generate_key(&dir.path().join("pki"))
            .expect("key")
            .subject_public_key_info(),
        key.subject_public_key_info()
    );

    // A newer pair replaces the symlink's target.
    write_pair(
        &cert_dir,
        PAIR_PREFIX,
        cert.as_bytes(),
        &key.serialize_pem(),
        at("2026-05-04T11:00:00"),
    )
    .expect("second pair");
    assert_eq!(
        std::fs::read_link(&current).expect("symlink"),
        cert_dir.join("kubelet-client-2026-05-04-11-00-00.pem")
    );
    assert!(first.exists(), "older pairs are kept");
    assert!(!cert_dir.join("kubelet-client-updated.pem").exists());

    assert!(
        write_pair(
            &cert_dir,
            PAIR_PREFIX,
            b"not a certificate",
            "",
            at("2026-05-04T12:00:00")
        )
        .is_err()
    );

    // The kubeconfig: the bootstrap cluster, the pair as certificate and key.
    let bootstrap = Kubeconfig::from_yaml(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.88.0.1:6443\n    certificate-authority-data: Q0E=\n\
         users:\n- name: b\n  user:\n    token: abcdef.0123456789abcdef\n\
         contexts:\n- name: x\n  context:\n    cluster: c\n    user: b\ncurrent-context: x\n",
    )
    .expect("bootstrap kubeconfig");
    let (cluster, _) = current_entries(&bootstrap).expect("entries");
    let kubeconfig = dir.path().join("etc/kubelet.conf");
    write_kubeconfig(&kubeconfig, &cluster, &current).expect("kubeconfig");
    assert_eq!(mode(&kubeconfig), 0o600);
    let written: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&kubeconfig).expect("read")).expect("yaml");
    let pair = current.to_string_lossy();
    assert_eq!(written["current-context"], "default-context");
    assert_eq!(
        written["clusters"][0]["cluster"],
        serde_json::json!({"server": "https://10.88.0.1:6443", "certificate-authority-data": "Q0E="})
    );
    assert_eq!(
        written["users"][0]["user"],
        serde_json::json!({"client-certificate": pair, "client-key": pair})
    );
    assert_eq!(
        written["contexts"][0],
        serde_json::json!({"name": "default-context", "context": {
            "cluster": "default-cluster", "user": "default-auth", "namespace": "default"}})
    );
    assert!(kubeconfig_is_valid(&kubeconfig, now()).expect("valid"));

    // A CA file stays a file.
    let mut with_file = cluster.clone();
    with_file.certificate_authority = Some("/etc/kubernetes/pki/ca.crt".into());
    let text = kubeconfig_text(&with_file, &current).expect("text");
    assert!(
        text.contains("certificate-authority: /etc/kubernetes/pki/ca.crt")
            && !text.contains("Q0E="),
        "{text}"
    );
}
