use std::path::PathBuf;

/// What went wrong loading the configuration or running a plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file or directory, or the plugin directory, cannot be read.
    #[error("credential provider config {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not a CredentialProviderConfig.
    #[error("credential provider config {path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why, naming the field when there is one.
        reason: String,
    },
    /// The configuration decoded but is not valid, as upstream's
    /// `validateCredentialProviderConfig`; one line per problem, each naming its field.
    #[error("credential provider config {path}: failed to validate: {}", problems.join(", "))]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// Each problem, `providers.<field>: <what>` as upstream words it.
        problems: Vec<String>,
    },
    /// The plugin binary directory or a provider's binary is missing.
    #[error("{what} {path} did not exist")]
    Missing {
        /// `plugin binary directory` or `plugin binary executable`.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A plugin could not be run, failed, timed out or answered nonsense.
    #[error("credential provider plugin {plugin} for image {image}: {reason}")]
    Plugin {
        /// The provider's name.
        plugin: String,
        /// The image credentials were asked for.
        image: String,
        /// Why, with the plugin's stderr when it wrote one.
        reason: String,
    },
    /// The service account or its token for token mode cannot be had.
    #[error("credential provider plugin {plugin}: service account {namespace}/{name}: {reason}")]
    ServiceAccount {
        /// The provider's name.
        plugin: String,
        /// The pod's namespace.
        namespace: String,
        /// The service account.
        name: String,
        /// Why.
        reason: String,
    },
    /// The failure of a plugin run shared by concurrent callers.
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
