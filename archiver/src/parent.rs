//! Change detection against the parent snapshot: an unchanged file reuses
//! the parent's blob list without being opened.

use std::sync::Arc;

use arch_index::{BlobType, Id};
use arch_repository::{Node, NodeKind, Repository, Tree};

/// Which metadata must match for a file to count as unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ChangeRules {
    /// Do not compare inode numbers (snapshot filesystems, network mounts).
    pub(crate) ignore_inode: bool,
    /// Do not compare ctimes.
    pub(crate) ignore_ctime: bool,
}

/// The parent snapshot's listing of one directory (empty if the parent has
/// no such directory, or its tree cannot be read: then everything below is
/// read again, which is always safe).
#[derive(Clone, Default)]
pub(crate) struct ParentDir(Option<Arc<Tree>>);

impl ParentDir {
    /// The parent's root tree, if there is a parent.
    pub(crate) fn root(repo: &Repository, tree: Option<Id>) -> ParentDir {
        ParentDir(tree.and_then(|id| load(repo, &id)))
    }

    /// The parent's node named `name` in this directory.
    pub(crate) fn find(&self, name: &[u8]) -> Option<&Node> {
        let tree = self.0.as_ref()?;
        let i = tree.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok()?;
        Some(&tree.nodes[i])
    }

    /// The parent's listing of subdirectory `name`.
    pub(crate) fn child(&self, repo: &Repository, name: &[u8]) -> ParentDir {
        match self.find(name) {
            Some(Node { kind: NodeKind::Dir, subtree: Some(id), .. }) => ParentDir(load(repo, id)),
            _ => ParentDir(None),
        }
    }
}

fn load(repo: &Repository, id: &Id) -> Option<Arc<Tree>> {
    repo.load_tree(id).ok().map(Arc::new)
}

/// Whether `new` (fresh from lstat) may reuse `old`'s content: same type,
/// size, mtime, ctime and inode, and every blob of `old` is still indexed
/// (a parent whose data is gone is not trusted).
pub(crate) fn unchanged(old: &Node, new: &Node, rules: ChangeRules, repo: &Repository) -> bool {
    old.kind == NodeKind::File
        && new.kind == NodeKind::File
        && old.size == new.size
        && old.mtime == new.mtime
        && (rules.ignore_ctime || old.ctime == new.ctime)
        && (rules.ignore_inode || old.inode == new.inode)
        && old.content.iter().all(|id| repo.index().contains(BlobType::Data, id))
}
