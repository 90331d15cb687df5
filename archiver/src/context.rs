use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_repository::{Node, Repository};
use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::metadata::NameCache;
use crate::policy::{Decision, ErrorPolicy};
use crate::progress::Progress;
use crate::scope::Scope;
use crate::stats::Stats;

/// A per-file problem that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// What every pool of one backup shares.
pub(crate) struct Ctx<'a> {
    pub(crate) repo: &'a Repository,
    /// This backup's pending blobs (dropped with the run, so a cancelled or
    /// dry run leaves nothing pending for the next backup to trust).
    pub(crate) pending: arch_index::PendingSession<'a>,
    pub(crate) scope: &'a Scope,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) policy: &'a dyn ErrorPolicy,
    pub(crate) stats: Stats,
    pub(crate) names: NameCache,
    pub(crate) warnings: Mutex<Vec<Warning>>,
    pub(crate) root_tree: Mutex<Option<arch_index::Id>>,
    /// Root tree of the parent snapshot used for change detection.
    pub(crate) parent_tree: Option<arch_index::Id>,
    pub(crate) rules: crate::parent::ChangeRules,
    /// Compute everything, store nothing.
    pub(crate) dry_run: bool,
    /// Keep access times in nodes.
    pub(crate) with_atime: bool,
    /// How file content is read.
    pub(crate) read_mode: crate::read_mode::ReadMode,
    /// zstd level of the blobs this run stores.
    pub(crate) compression_level: i32,
    /// Buffers of new chunks, FileSaver -> BlobSaver -> back.
    pub(crate) chunk_bufs: crate::pool::BufPool,
    /// Bytes of chunk buffers between FileSaver and BlobSaver (queued or
    /// being sealed), charged by capacity: what bounds chunk memory.
    pub(crate) chunk_budget: crate::budget::ByteBudget,
    #[cfg(test)]
    pub(crate) fault: Option<crate::fault::Fault>,
    /// Test builds: runs after a source file is opened, before it is read.
    #[cfg(test)]
    pub(crate) on_open: Option<crate::fault::OpenHook>,
}

impl Ctx<'_> {
    /// Test builds: fails the given pool at the configured item, to prove
    /// every pool's error cancels the whole run. Release builds: nothing.
    #[inline]
    pub(crate) fn inject(&self, _stage: crate::fault::Stage) -> Result<(), ArchiveError> {
        #[cfg(test)]
        if let Some(f) = &self.fault {
            return f.check(_stage);
        }
        Ok(())
    }

    /// Hands a per-file problem to the policy: Ok to skip, Err to abort.
    pub(crate) fn file_problem(&self, path: &Path, err: &std::io::Error) -> Result<(), ArchiveError> {
        match self.policy.on_error(path, err) {
            Decision::Abort => {
                Err(ArchiveError::Aborted { path: path.to_path_buf(), reason: err.to_string() })
            }
            _ => {
                self.progress.warning(path, &err.to_string());
                self.warnings.lock().push(Warning { path: path.to_path_buf(), message: err.to_string() });
                Ok(())
            }
        }
    }

    /// Reports a finished child to its directory and, if that completes
    /// the directory, queues it for the TreeSaver. Never blocks (the tree
    /// queue is unbounded, see backup.rs).
    pub(crate) fn finish_child(
        &self,
        dir: &Arc<DirState>,
        node: Option<Node>,
        tree_tx: &Sender<Arc<DirState>>,
    ) -> Result<(), ArchiveError> {
        if dir.finish_one(node) {
            self.scope.send(tree_tx, Arc::clone(dir))?;
        }
        Ok(())
    }
}
