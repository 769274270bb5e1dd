//! The control plane's certificates, made with the `openssl` command: a CA, the
//! apiserver's serving certificate, client certificates, and the service-account key.
//!
//! Keys are EC P-256 in PKCS#8 (read by Go and by rustls alike); certificates are X.509
//! v3 with the extensions rustls/webpki insists on (basicConstraints, keyUsage,
//! extendedKeyUsage, subject and authority key identifiers, SANs on the server).
//! Everything is made once and kept; a certificate is remade when the request it was
//! made from changes (e.g. the host name in the node's certificate) or the CA is new.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::layout::{BRIDGE_ADDR, Layout};
use crate::progress;
use crate::util;

/// How long certificates are valid: longer than any test environment lives.
const DAYS: &str = "3650";

/// The CA's subject.
const CA_CN: &str = "kubelet-test-ca";

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Usage {
    /// A TLS server.
    Server,
    /// A TLS client.
    Client,
}

/// A certificate signed by the CA.
#[derive(Clone, Debug)]
pub struct Cert {
    /// The file name stem: `<name>.crt`, `<name>.key`.
    pub name: &'static str,
    /// The subject's common name.
    cn: String,
    /// The subject's organization (Kubernetes groups), if any.
    org: Option<&'static str>,
    /// Server or client.
    usage: Usage,
    /// subjectAltName entries (`IP:...`, `DNS:...`).
    sans: Vec<String>,
}

/// The PKI of one environment.
pub struct Pki {
    /// The directory with all files.
    pub dir: PathBuf,
    /// The node's name (in its certificate's subject).
    pub node_name: String,
}

impl Pki {
    /// The PKI under the layout's control plane directory.
    pub fn new(l: &Layout, node_name: &str) -> Self {
        Pki {
            dir: l.pki_dir(),
            node_name: node_name.to_string(),
        }
    }

    /// The CA certificate.
    pub fn ca_crt(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// The CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The service-account signing key (RSA, PKCS#8).
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// The service-account public key.
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    /// A certificate's file.
    pub fn crt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
    /// A certificate's key.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// The certificates signed by the CA.
    fn certs(&self) -> Vec<Cert> {
        let client = |name, cn: &str, org| Cert {
            name,
            cn: cn.to_string(),
            org,
            usage: Usage::Client,
            sans: Vec::new(),
        };
        let mut sans = vec![
            "IP:127.0.0.1".to_string(),
            format!("IP:{BRIDGE_ADDR}"),
            "IP:10.96.0.1".to_string(),
        ];
        sans.extend(
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .iter()
            .map(|d| format!("DNS:{d}")),
        );
        vec![
            Cert {
                name: "apiserver",
                cn: "kube-apiserver".to_string(),
                org: None,
                usage: Usage::Server,
                sans,
            },
            client("admin", "kubernetes-admin", Some("system:masters")),
            client("controller-manager", "system:kube-controller-manager", None),
            client("scheduler", "system:kube-scheduler", None),
            client(
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                Some("system:masters"),
            ),
            client(
                "node",
                &format!("system:node:{}", self.node_name),
                Some("system:nodes"),
            ),
            // The aggregation layer's client (allowed by --requestheader-allowed-names).
            client("front-proxy-client", "front-proxy-client", None),
            client("metrics-server", "system:metrics-server", None),
        ]
    }

    /// Makes whatever is missing or out of date; returns true when it made something.
    pub fn ensure(&self) -> Result<bool> {
        util::mkdir(&self.dir)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        let mut made = Vec::new();
        let ca_new = !self.ca_crt().is_file() || !self.ca_key().is_file();
        if ca_new {
            self.make_ca()?;
            made.push("ca");
        }
        for c in self.certs() {
            let cnf_path = self.dir.join(format!("{}.cnf", c.name));
            let cnf = openssl_config(&c);
            let up_to_date = !ca_new
                && self.crt(c.name).is_file()
                && self.key(c.name).is_file()
                && fs::read_to_string(&cnf_path).is_ok_and(|old| old == cnf);
            if up_to_date {
                continue;
            }
            fs::write(&cnf_path, &cnf)
                .with_context(|| format!("cannot write {}", cnf_path.display()))?;
            self.make_signed(&c, &cnf_path)?;
            made.push(c.name);
        }
        if !self.sa_key().is_file() || !self.sa_pub().is_file() {
            genkey(
                &self.sa_key(),
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            )?;
            openssl(&[
                "pkey",
                "-in",
                &s(&self.sa_key()),
                "-pubout",
                "-out",
                &s(&self.sa_pub()),
            ])?;
            made.push("service-account key");
        }
        if !made.is_empty() {
            progress!("PKI in {}: made {}", self.dir.display(), made.join(", "));
        }
        Ok(!made.is_empty())
    }

    /// The self-signed CA.
    fn make_ca(&self) -> Result<()> {
        genkey(&self.ca_key(), &ec_params())?;
        let cnf = self.dir.join("ca.cnf");
        fs::write(
            &cnf,
            format!(
                "# Written by `cargo xtask env up --control-plane`.\n\
                 [req]\ndistinguished_name = dn\nprompt = no\n\n[dn]\nCN = {CA_CN}\n\n\
                 [ext]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n\
                 subjectKeyIdentifier = hash\n"
            ),
        )?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-sha256",
            "-days",
            DAYS,
            "-key",
            &s(&self.ca_key()),
            "-config",
            &s(&cnf),
            "-extensions",
            "ext",
            "-set_serial",
            &serial()?,
            "-out",
            &s(&self.ca_crt()),
        ])
    }

    /// A new key and a certificate for it, signed by the CA.
    fn make_signed(&self, c: &Cert, cnf: &Path) -> Result<()> {
        let key = self.key(c.name);
        genkey(&key, &ec_params())?;
        let csr = self.dir.join(format!("{}.csr", c.name));
        openssl(&[
            "req",
            "-new",
            "-key",
            &s(&key),
            "-config",
            &s(cnf),
            "-out",
            &s(&csr),
        ])?;
        let result = openssl(&[
            "x509",
            "-req",
            "-sha256",
            "-days",
            DAYS,
            "-in",
            &s(&csr),
            "-CA",
            &s(&self.ca_crt()),
            "-CAkey",
            &s(&self.ca_key()),
            "-set_serial",
            &serial()?,
            "-extfile",
            &s(cnf),
            "-extensions",
            "ext",
            "-out",
            &s(&self.crt(c.name)),
        ]);
        let _ = fs::remove_file(&csr);
        result
    }
}

/// The openssl config (subject and extensions) of a certificate. Also its record: a
/// certificate is remade when this text changes.
fn openssl_config(c: &Cert) -> String {
    let mut s = String::from(
        "# Written by `cargo xtask env up --control-plane`.\n\
         [req]\ndistinguished_name = dn\nprompt = no\n\n[dn]\n",
    );
    if let Some(o) = c.org {
        s.push_str(&format!("O = {o}\n"));
    }
    s.push_str(&format!("CN = {}\n\n[ext]\n", c.cn));
    s.push_str("basicConstraints = critical, CA:FALSE\n");
    s.push_str("keyUsage = critical, digitalSignature\n");
    s.push_str(match c.usage {
        Usage::Server => "extendedKeyUsage = serverAuth\n",
        Usage::Client => "extendedKeyUsage = clientAuth\n",
    });
    s.push_str("subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n");
    if !c.sans.is_empty() {
        s.push_str(&format!("subjectAltName = {}\n", c.sans.join(", ")));
    }
    s
}

/// `openssl genpkey` options for an EC P-256 key.
fn ec_params() -> [&'static str; 4] {
    ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
}

/// Writes a new private key (PKCS#8 PEM), readable by its owner only.
fn genkey(path: &Path, params: &[&str]) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut args = vec!["genpkey"];
    args.extend_from_slice(params);
    let out = s(path);
    args.extend_from_slice(&["-out", &out]);
    openssl(&args)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// A random 128-bit serial number (openssl reads hex as unsigned: always positive).
fn serial() -> Result<String> {
    Ok(format!("0x{}", util::random_hex(16)?))
}

/// Runs openssl.
fn openssl(args: &[&str]) -> Result<()> {
    util::run(util::cmd("openssl").args(args))
}

/// A path as a string argument.
fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificate_names_the_node_and_its_group() {
        let l = Layout {
            workspace: "/w".into(),
            state: "/w/target/env".into(),
        };
        let pki = Pki::new(&l, "vm");
        let certs = pki.certs();
        let node = certs.iter().find(|c| c.name == "node");
        let cnf = node.map(openssl_config).unwrap_or_default();
        assert!(cnf.contains("O = system:nodes\nCN = system:node:vm\n"));
        assert!(cnf.contains("extendedKeyUsage = clientAuth\n"));
        let server = certs.iter().find(|c| c.name == "apiserver");
        let cnf = server.map(openssl_config).unwrap_or_default();
        assert!(cnf.contains("IP:10.88.0.1"));
        assert!(cnf.contains("DNS:kubernetes.default.svc.cluster.local"));
        assert!(cnf.contains("extendedKeyUsage = serverAuth\n"));
    }
}
