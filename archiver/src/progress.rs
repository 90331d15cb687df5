use std::path::Path;

/// Receives progress of a backup or restore. Every method has a no-op
/// default, so an implementation overrides only what it shows. Methods are
/// called from worker threads and must return quickly.
pub trait Progress: Send + Sync {
    /// Totals counted so far by the pre-scan (see
    /// [`BackupOptions::prescan`](crate::BackupOptions::prescan)): regular
    /// files and their bytes; `done` once the count is complete.
    fn scan_progress(&self, _files: u64, _bytes: u64, _done: bool) {}
    /// Reading of a file started.
    fn file_started(&self, _path: &Path) {}
    /// A file (or other node) was fully processed; `bytes` is its size.
    fn file_done(&self, _path: &Path, _bytes: u64) {}
    /// File content was read (backup) or written (restore).
    fn bytes_processed(&self, _n: u64) {}
    /// A new blob was stored: plaintext and stored (sealed) sizes.
    fn blob_stored(&self, _raw: u64, _stored: u64) {}
    /// An entry was deliberately not saved (e.g. a socket), with the reason.
    fn skipped(&self, _path: &Path, _reason: &str) {}
    /// A per-file problem was skipped.
    fn warning(&self, _path: &Path, _message: &str) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
