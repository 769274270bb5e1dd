//! The kubelet's configuration file type, `KubeletConfiguration` of
//! `kubelet.config.k8s.io/v1beta1`, with upstream's field names, defaults
//! (`SetDefaults_KubeletConfiguration`) and validation (`ValidateKubeletConfiguration`,
//! the checks that need no host access), and Go-style durations.
//!
//! Reading files, drop-in directories and flags is the binary's job; this module only
//! holds the type and the pure rules, so that other tools can build and check a
//! configuration the kubelet will accept.
//!
//! ```
//! use kubelet_core::config::{KubeletConfiguration, validate};
//!
//! let mut config: KubeletConfiguration = serde_json::from_str(
//!     r#"{"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "maxPods": 50}"#,
//! )
//! .expect("a valid configuration");
//! config.set_defaults();
//! assert_eq!(config.max_pods, 50);
//! assert_eq!(config.node_lease_duration_seconds, 40);
//! assert!(validate(&config).is_empty());
//! ```

mod duration;
pub mod feature_gates;
mod types;
mod validate;

pub use duration::{GoDuration, parse_flag as parse_duration_flag};
pub use types::*;
pub use validate::{HostFacts, validate, validate_host};
