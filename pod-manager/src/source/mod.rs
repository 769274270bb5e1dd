//! Pod sources: where the pods a kubelet runs come from.
//!
//! - [`FileSource`]: the static pod directory (upstream `--pod-manifest-path`,
//!   `staticPodPath`), or a single manifest file.
//! - [`UrlSource`]: a manifest URL (upstream `--manifest-url`, `staticPodURL`).
//! - [`PodSet`]: merges the [`SourceUpdate`](crate::SourceUpdate)s of all sources into one set of
//!   pods keyed by UID and reports what was added, updated or removed ([`PodChange`]).
//!
//! Each source runs as a task that sends a full snapshot of its pods (a
//! [`SourceUpdate`](crate::SourceUpdate)) at start and whenever that snapshot changes, never when nothing
//! changed; a watch-fed source (the API server's, in the node agent) may follow its first
//! snapshot with only what each event changed ([`UpdateKind::Changes`](crate::UpdateKind)). Manifests that cannot be used are reported in the snapshot as
//! [`RejectedManifest`](crate::RejectedManifest)s (and logged) without affecting the other pods.
//!
//! Static pods are defaulted and validated as upstream does
//! ([`apply_api_defaults`], [`prepare_static_pod`], [`validate_pod`]).
//!
//! ```no_run
//! # async fn example() {
//! use kubelet_pod_manager::source::{FileSource, PodSet};
//! let (tx, mut rx) = tokio::sync::mpsc::channel(16);
//! tokio::spawn(FileSource::new("/etc/kubernetes/manifests", "node-1").run(tx));
//! let mut pods = PodSet::new();
//! while let Some(update) = rx.recv().await {
//!     for change in pods.apply(update) {
//!         println!("{change:?}");
//!     }
//! }
//! # }
//! ```

mod defaults;
mod file;
mod http;
pub(crate) mod manifest;
mod merge;
mod spew;
pub(crate) mod validation;

use std::fmt;
use std::path::PathBuf;

pub use defaults::apply_api_defaults;
pub use file::{DEFAULT_FILE_CHECK_FREQUENCY, FileSource};
pub use http::{DEFAULT_HTTP_CHECK_FREQUENCY, UrlSource};
pub use manifest::{MAX_MANIFEST_BYTES, prepare_static_pod};
pub use merge::{PodChange, PodSet};
pub use validation::{FieldError, FieldErrorKind, format_field_errors, validate_pod};

use crate::PodSource;

/// Annotation holding the hash of a static pod's manifest (its UID), upstream
/// `ConfigHashAnnotationKey`.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// Annotation naming the source of a pod (`file`, `http`, `api`), upstream
/// `ConfigSourceAnnotationKey`.
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// Annotation with the time the kubelet first saw a pod, upstream
/// `ConfigFirstSeenAnnotationKey`.
pub const CONFIG_SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
/// Annotation marking a mirror pod, upstream `ConfigMirrorAnnotationKey`.
pub const CONFIG_MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Where a static pod's manifest was read from; part of the UID of pods whose manifest
/// sets none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManifestOrigin {
    /// A file (the full path, as the file source names it).
    File(PathBuf),
    /// A manifest URL.
    Url(String),
}

impl ManifestOrigin {
    /// The source such a manifest belongs to.
    pub fn source(&self) -> PodSource {
        match self {
            Self::File(_) => PodSource::File,
            Self::Url(_) => PodSource::Http,
        }
    }
}

impl fmt::Display for ManifestOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// The current time as upstream writes `kubernetes.io/config.seen`: RFC 3339 with
/// nanoseconds (upstream `RFC3339NanoFixed`), here always in UTC.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}
