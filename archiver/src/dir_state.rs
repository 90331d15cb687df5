use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arch_repository::Node;
use parking_lot::Mutex;

/// A directory whose tree is being assembled.
///
/// `pending` counts 1 for "still being scanned" plus one per child not yet
/// finished. Whoever brings it to zero hands the directory to the
/// TreeSaver; nobody ever waits for it.
pub(crate) struct DirState {
    /// This directory's own node (`None` for the snapshot root).
    pub(crate) node: Mutex<Option<Node>>,
    children: Mutex<Vec<Node>>,
    pending: AtomicUsize,
    pub(crate) parent: Option<Arc<DirState>>,
}

impl DirState {
    pub(crate) fn new(node: Option<Node>, parent: Option<Arc<DirState>>) -> Arc<DirState> {
        if let Some(p) = &parent {
            p.add_pending();
        }
        Arc::new(DirState {
            node: Mutex::new(node),
            children: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(1),
            parent,
        })
    }

    /// Registers one more child that will finish later.
    pub(crate) fn add_pending(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a finished child (`None` if it was skipped) or the end of
    /// scanning; true if the directory is now complete.
    pub(crate) fn finish_one(&self, child: Option<Node>) -> bool {
        if let Some(n) = child {
            self.children.lock().push(n);
        }
        self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// The children, sorted by name (called once, when complete).
    pub(crate) fn take_children(&self) -> Vec<Node> {
        let mut v = std::mem::take(&mut *self.children.lock());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}
