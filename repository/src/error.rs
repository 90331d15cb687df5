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
