use std::path::Path;

/// What to do about a per-file problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Warn, leave the entry out, and go on.
    Skip,
    /// End the run with this problem as its error.
    Abort,
}

/// Decides about per-file problems (vanished file, permission denied,
/// unreadable directory). Repository and backend errors always abort and
/// never reach the policy.
pub trait ErrorPolicy: Send + Sync {
    /// Called once per problem, from a worker thread.
    fn on_error(&self, _path: &Path, _error: &std::io::Error) -> Decision {
        Decision::Skip
    }
}

/// The default policy: skip every per-file problem (the run ends with the
/// problems listed as warnings).
#[derive(Clone, Copy, Debug, Default)]
pub struct SkipErrors;

impl ErrorPolicy for SkipErrors {}

/// A policy that aborts on the first per-file problem.
#[derive(Clone, Copy, Debug, Default)]
pub struct AbortOnError;

impl ErrorPolicy for AbortOnError {
    fn on_error(&self, _path: &Path, _error: &std::io::Error) -> Decision {
        Decision::Abort
    }
}
