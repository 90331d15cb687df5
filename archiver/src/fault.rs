//! Points where tests inject an I/O error into a pool of the pipeline.

/// A pool of the backup pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Stage {
    Scanner,
    FileSaver,
    BlobSaver,
    TreeSaver,
    Uploader,
}

/// Called with a file's path after it is opened (test builds only).
#[cfg(test)]
pub(crate) type OpenHook = Box<dyn Fn(&std::path::Path) + Send + Sync>;

/// Fails `stage` on its `after`-th item (test builds only).
#[cfg(test)]
pub(crate) struct Fault {
    pub(crate) stage: Stage,
    pub(crate) after: usize,
    pub(crate) seen: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl Fault {
    pub(crate) fn check(&self, stage: Stage) -> Result<(), crate::ArchiveError> {
        use std::sync::atomic::Ordering;
        if stage == self.stage && self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.after {
            return Err(crate::ArchiveError::Io {
                op: "injected fault in",
                path: format!("{stage:?}").into(),
                source: std::io::Error::other("injected"),
            });
        }
        Ok(())
    }
}
