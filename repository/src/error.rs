use std::path::PathBuf;

use crate::backend::FileKind;

/// Errors of a [`Backend`](crate::Backend) call. Every variant names the
/// object it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The object does not exist.
    #[error("{kind} {name} not found in {location}")]
    NotFound {
        /// Object kind.
        kind: FileKind,
        /// Object name.
        name: String,
        /// The repository location.
        location: String,
    },
    /// A write-once object already exists.
    #[error("{kind} {name} already exists in {location}")]
    AlreadyExists {
        /// Object kind.
        kind: FileKind,
        /// Object name.
        name: String,
        /// The repository location.
        location: String,
    },
    /// An I/O error on a path of the local backend.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A read returned fewer bytes than asked for.
    #[error("{kind} {name}: short read ({got} of {want} bytes at offset {offset})")]
    ShortRead {
        /// Object kind.
        kind: FileKind,
        /// Object name.
        name: String,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        want: u64,
        /// Bytes returned.
        got: u64,
    },
    /// A call to a remote service (S3, REST, SFTP) failed.
    #[error("{op} {object} at {location}: {cause}")]
    Remote {
        /// What was being done ("upload", "read", "list", "delete", ...).
        op: &'static str,
        /// The object, e.g. "pack 1a2b3c4d…", "config", "the list of packs".
        object: String,
        /// The repository location (without credentials).
        location: String,
        /// What the service or the network said.
        cause: String,
        /// Whether trying again may help.
        class: RemoteErrorClass,
    },
    /// A remote call kept failing with transient errors until the retry
    /// budget ran out.
    #[error("{last} (gave up after {attempts} attempts in {:.1}s)", elapsed.as_secs_f64())]
    RetriesExhausted {
        /// How many times the call was made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: std::time::Duration,
        /// The last error.
        last: Box<BackendError>,
    },
    /// A repository location string is malformed.
    #[error("invalid repository location {url:?}: {reason}")]
    InvalidUrl {
        /// The string as given (credentials masked).
        url: String,
        /// What is wrong and what the expected form is.
        reason: String,
    },
    /// A backend option (`-o key=value`) is unknown or has a bad value.
    #[error("invalid backend option {key:?}: {reason}")]
    InvalidOption {
        /// The option key (or the whole argument if it has no `=`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend cannot be used as configured (missing credentials, a
    /// backend this build does not have).
    #[error("{location}: {reason}")]
    Unavailable {
        /// The repository location.
        location: String,
        /// Why, and what to do.
        reason: String,
    },
}

/// How a [`BackendError::Remote`] should be treated by callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteErrorClass {
    /// Network trouble, a timeout, throttling or a server error (5xx):
    /// the same call may succeed later.
    Transient,
    /// The request was refused for good (4xx other than auth): retrying
    /// cannot help.
    Permanent,
    /// Bad or missing credentials, or no permission (401, 403).
    Auth,
}

impl BackendError {
    /// Whether the same call may succeed if tried again: remote network
    /// and server errors classed transient, and I/O errors that timed out.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Remote { class, .. } => *class == RemoteErrorClass::Transient,
            BackendError::Io { source, .. } => source.kind() == std::io::ErrorKind::TimedOut,
            _ => false,
        }
    }

    /// Whether this is an authentication or permission failure (possibly
    /// after retries).
    pub fn is_auth(&self) -> bool {
        match self {
            BackendError::Remote { class, .. } => *class == RemoteErrorClass::Auth,
            BackendError::RetriesExhausted { last, .. } => last.is_auth(),
            _ => false,
        }
    }
}

/// Errors of repository operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// There is no repository at the location.
    #[error("no repository at {location}: run 'arch init' to create one, or check the path")]
    NoRepository {
        /// Where one was expected.
        location: String,
    },
    /// `init` found an existing repository.
    #[error("a repository already exists at {location}")]
    AlreadyInitialized {
        /// The location.
        location: String,
    },
    /// No key file of the repository opens with the password.
    #[error("wrong password for repository {location}: no key opens with it")]
    WrongPassword {
        /// The repository location.
        location: String,
    },
    /// Another process holds a conflicting lease.
    #[error("repository {location} is locked: {by}; wait for it to finish, retry with --retry-lock, or run 'arch unlock' if that process is gone")]
    Locked {
        /// The repository.
        location: String,
        /// Who holds the lease.
        by: String,
    },
    /// A backend call failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A stored object failed authentication, hashing or decoding.
    #[error("{what} is damaged: {detail}")]
    Corrupt {
        /// The object, e.g. "pack 1a2b3c4d".
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A blob the caller needs is not in the index.
    #[error("{kind} blob {id} is not in the index; run 'arch check'")]
    BlobNotIndexed {
        /// "data" or "tree".
        kind: &'static str,
        /// The blob id.
        id: arch_index::BlobId,
    },
    /// The repository was written by a newer, incompatible version.
    #[error("{what} uses format version {version}, which this build of arch cannot read; upgrade arch")]
    UnsupportedVersion {
        /// The object.
        what: String,
        /// Its version.
        version: u32,
    },
    /// A snapshot reference matched nothing or more than one snapshot.
    #[error("{0}")]
    SnapshotSelection(String),
    /// An invalid option value.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Index error (malformed index file, or writing one failed).
    #[error(transparent)]
    Index(#[from] arch_index::IndexError),
}

impl RepoError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> RepoError {
        RepoError::Corrupt { what: what.into(), detail: detail.into() }
    }
}
