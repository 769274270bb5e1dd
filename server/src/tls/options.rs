//! `tlsMinVersion`, `tlsCipherSuites` and `tlsCurvePreferences` as upstream reads them
//! (`cliflag.TLSVersion`, `TLSCipherSuites`, `TLSCurvePreferences`), mapped onto what
//! rustls offers. What the TLS library cannot offer stops start-up naming it, instead of
//! serving with other parameters than the operator asked for.

use std::sync::Arc;

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};

use crate::{Error, Result};

/// Go's secure TLS 1.3 suites: accepted, as Go ignores them (TLS 1.3 suites are not
/// configurable there either; all three are always offered).
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Go's TLS 1.2 suite names rustls offers, with the legacy CHACHA20 aliases upstream
/// keeps.
const TLS12_SUITES: [(&str, rustls::SupportedCipherSuite); 8] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Suites Go knows (its CBC suites and those it calls insecure) that rustls does not
/// implement.
const GO_ONLY_SUITES: [&str; 16] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// Go's curve IDs rustls offers: P-256, P-384, X25519.
const CURVES: [(u16, &dyn rustls::crypto::SupportedKxGroup); 3] = [
    (23, kx_group::SECP256R1),
    (24, kx_group::SECP384R1),
    (29, kx_group::X25519),
];

/// Go's curve IDs rustls (with ring) lacks: P-521 and X25519MLKEM768.
const GO_ONLY_CURVES: [u16; 2] = [25, 4588];

/// The TLS parameters of the kubelet API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `tlsMinVersion: VersionTLS13`: TLS 1.2 is not offered.
    pub tls13_only: bool,
    /// `tlsCipherSuites`, Go's names, checked; empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// `tlsCurvePreferences`, Go's curve IDs, checked; empty: rustls' defaults.
    pub curve_preferences: Vec<u16>,
}

impl TlsOptions {
    /// Checks the three fields as upstream does, plus what rustls can offer; the
    /// options and the warnings upstream logs (and ours for a minimum below TLS 1.2).
    pub fn from_config(
        min_version: &str,
        cipher_suites: &[String],
        curve_preferences: &[i32],
    ) -> Result<(Self, Vec<String>)> {
        let mut warnings = Vec::new();
        let config = |field: &'static str, reason: String| Error::Config { field, reason };
        let tls13_only = match min_version {
            "" | "VersionTLS12" => false,
            "VersionTLS13" => true,
            "VersionTLS10" | "VersionTLS11" => {
                warnings.push(format!(
                    "tlsMinVersion {min_version}: this kubelet offers TLS 1.2 and 1.3 only \
                     (rustls), so the minimum is TLS 1.2"
                ));
                false
            }
            other => {
                return Err(config(
                    "tlsMinVersion (--tls-min-version)",
                    format!("unknown tls version {other:?}"),
                ));
            }
        };
        for name in cipher_suites {
            let name = name.as_str();
            if TLS13_SUITES.contains(&name) || TLS12_SUITES.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let reason = if GO_ONLY_SUITES.contains(&name) {
                format!(
                    "cipher suite {name} is not offered by this kubelet's TLS library \
                     (rustls); it offers {}",
                    TLS12_SUITES
                        .iter()
                        .map(|(n, _)| *n)
                        .chain(TLS13_SUITES)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!("Cipher suite {name} not supported or doesn't exist")
            };
            return Err(config("tlsCipherSuites (--tls-cipher-suites)", reason));
        }
        if tls13_only && !cipher_suites.is_empty() {
            warnings.push(
                "TLS 1.3 cipher suites are not configurable, ignoring --tls-cipher-suites"
                    .to_owned(),
            );
        }
        let mut curves = Vec::new();
        for &id in curve_preferences {
            let field = "tlsCurvePreferences (--tls-curve-preferences)";
            let id = u16::try_from(id).ok().filter(|id| *id > 0).ok_or_else(|| {
                config(
                    field,
                    format!("curve preference {id} is out of range (must be 1-65535)"),
                )
            })?;
            if curves.contains(&id) {
                return Err(config(field, format!("duplicate curve preference {id}")));
            }
            if GO_ONLY_CURVES.contains(&id) {
                return Err(config(
                    field,
                    format!(
                        "curve preference {id} is not offered by this kubelet's TLS library \
                         (rustls offers 23 P-256, 24 P-384, 29 X25519)"
                    ),
                ));
            }
            if !CURVES.iter().any(|(c, _)| *c == id) {
                return Err(config(
                    field,
                    format!("curve preference {id} is not supported"),
                ));
            }
            curves.push(id);
        }
        Ok((
            Self {
                tls13_only,
                cipher_suites: cipher_suites.to_vec(),
                curve_preferences: curves,
            },
            warnings,
        ))
    }

    /// The protocol versions offered: TLS 1.3 only, or 1.2 and 1.3 (1.3 only when the
    /// suites listed are all TLS 1.3 ones, as Go then has no 1.2 suite to offer).
    pub(crate) fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        if self.tls13_only || (!self.cipher_suites.is_empty() && self.tls12_suites().is_empty()) {
            &TLS13
        } else {
            rustls::DEFAULT_VERSIONS
        }
    }

    /// The TLS 1.2 suites listed, in their order.
    fn tls12_suites(&self) -> Vec<rustls::SupportedCipherSuite> {
        self.cipher_suites
            .iter()
            .filter_map(|name| TLS12_SUITES.iter().find(|(n, _)| n == name))
            .map(|(_, suite)| *suite)
            .collect()
    }

    /// ring's provider restricted to the suites and curves asked for.
    pub(crate) fn provider(&self) -> Arc<CryptoProvider> {
        let mut provider = default_provider();
        if !self.cipher_suites.is_empty() {
            let tls12 = self.tls12_suites();
            provider
                .cipher_suites
                .retain(|suite| suite.tls13().is_some());
            provider.cipher_suites.extend(tls12);
        }
        if !self.curve_preferences.is_empty() {
            provider.kx_groups = self
                .curve_preferences
                .iter()
                .filter_map(|id| CURVES.iter().find(|(c, _)| c == id))
                .map(|(_, group)| *group)
                .collect();
        }
        Arc::new(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn versions_as_upstream() {
        let (o, w) = TlsOptions::from_config("", &[], &[]).expect("default");
        assert_eq!(o, TlsOptions::default());
        assert!(w.is_empty());
        assert_eq!(o.versions().len(), 2);
        let (o, _) = TlsOptions::from_config("VersionTLS13", &[], &[]).expect("1.3");
        assert_eq!(o.versions().len(), 1);
        let (_, w) = TlsOptions::from_config("VersionTLS10", &[], &[]).expect("1.0");
        assert_eq!(w.len(), 1);
        let err = TlsOptions::from_config("VersionSSL30", &[], &[]).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("unknown tls version \"VersionSSL30\""),
            "{err}"
        );
    }

    #[test]
    fn cipher_suites_as_upstream_and_rustls() {
        let listed = names(&[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ]);
        let (o, _) = TlsOptions::from_config("", &listed, &[]).expect("suites");
        let provider = o.provider();
        let tls12: Vec<_> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_none())
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            [
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(provider.cipher_suites.len(), 5, "three TLS 1.3 suites too");
        let err = TlsOptions::from_config("", &names(&["TLS_RSA_WITH_AES_128_CBC_SHA"]), &[])
            .expect_err("not in rustls");
        assert!(
            err.to_string()
                .contains("cipher suite TLS_RSA_WITH_AES_128_CBC_SHA is not offered"),
            "{err}"
        );
        let err = TlsOptions::from_config("", &names(&["TLS_MADE_UP"]), &[]).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("Cipher suite TLS_MADE_UP not supported or doesn't exist"),
            "{err}"
        );
        let (o, _) =
            TlsOptions::from_config("", &names(&["TLS_AES_128_GCM_SHA256"]), &[]).expect("1.3");
        assert_eq!(
            o.versions().len(),
            1,
            "no TLS 1.2 suite listed: TLS 1.3 only"
        );
        let (_, w) = TlsOptions::from_config("VersionTLS13", &listed, &[]).expect("1.3");
        assert_eq!(
            w,
            ["TLS 1.3 cipher suites are not configurable, ignoring --tls-cipher-suites"]
        );
    }

    #[test]
    fn curves_as_upstream_and_rustls() {
        let (o, _) = TlsOptions::from_config("", &[], &[29, 23]).expect("curves");
        let groups: Vec<_> = o.provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [rustls::NamedGroup::X25519, rustls::NamedGroup::secp256r1]
        );
        for (ids, message) in [
            (vec![0], "out of range"),
            (vec![70000], "out of range"),
            (vec![23, 23], "duplicate curve preference 23"),
            (vec![25], "curve preference 25 is not offered"),
            (vec![99], "curve preference 99 is not supported"),
        ] {
            let err = TlsOptions::from_config("", &[], &ids).expect_err("refused");
            assert!(err.to_string().contains(message), "{ids:?}: {err}");
        }
    }
}
