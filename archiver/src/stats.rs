use std::sync::atomic::{AtomicU64, Ordering};

use arch_repository::SnapshotSummary;

/// Counters updated by the pools of one backup.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) files_new: AtomicU64,
    pub(crate) files_changed: AtomicU64,
    pub(crate) files_unmodified: AtomicU64,
    pub(crate) dirs: AtomicU64,
    pub(crate) others: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_total: AtomicU64,
    pub(crate) blobs_added: AtomicU64,
    pub(crate) bytes_added_raw: AtomicU64,
    pub(crate) bytes_added_stored: AtomicU64,
    pub(crate) files_opened: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    pub(crate) fn summary(&self, duration_secs: f64) -> SnapshotSummary {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = SnapshotSummary::default();
        s.files_new = g(&self.files_new);
        s.files_changed = g(&self.files_changed);
        s.files_unmodified = g(&self.files_unmodified);
        s.dirs = g(&self.dirs);
        s.others = g(&self.others);
        s.bytes_read = g(&self.bytes_read);
        s.bytes_total = g(&self.bytes_total);
        s.blobs_added = g(&self.blobs_added);
        s.bytes_added_raw = g(&self.bytes_added_raw);
        s.bytes_added_stored = g(&self.bytes_added_stored);
        s.duration_secs = duration_secs;
        s
    }
}
