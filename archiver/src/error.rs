use std::path::PathBuf;

use arch_repository::RepoError;

/// Errors of backup and restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The run was cancelled through its CancellationToken.
    #[error("interrupted")]
    Cancelled,
    /// A repository or backend operation failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A local file operation failed (a source that must be read, or a
    /// restore target).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A per-file problem that the error policy chose to treat as fatal.
    #[error("{}: {reason}", path.display())]
    Aborted {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A restore target holds files and overwriting was not allowed.
    #[error("restore target {} is not empty; restore into an empty or new directory, or allow overwriting", path.display())]
    TargetNotEmpty {
        /// The target directory.
        path: PathBuf,
    },
    /// Invalid arguments or options.
    #[error("{0}")]
    Invalid(String),
    /// A worker thread panicked: a bug in arch.
    #[error("internal error: {0} worker panicked (this is a bug; please report it)")]
    WorkerPanic(&'static str),
}

impl ArchiveError {
    /// Whether this error only reports that the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ArchiveError::Cancelled)
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> ArchiveError {
        ArchiveError::Io { op, path: path.into(), source }
    }
}
