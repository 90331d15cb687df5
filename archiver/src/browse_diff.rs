//! `diff`: what changed between two snapshots (or any two trees).
//!
//! The two trees are merged name by name. A directory whose subtree id is
//! the same on both sides is identical all the way down (tree ids are
//! content hashes of the whole directory, children's metadata included),
//! so it is skipped without being read: that is what makes diffing two
//! large, mostly unchanged snapshots fast.

use std::cmp::Ordering;

use arch_index::Id;
use arch_repository::{Node, NodeKind, Repository};

use crate::browse::{subtree_of, walk_tree, WalkControl};
use crate::error::ArchiveError;

/// One difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// Only in the second tree (`+`).
    Added,
    /// Only in the first tree (`-`).
    Removed,
    /// Same type, different content: a file's blobs, a symlink's target or
    /// a device number (`M`).
    Modified,
    /// The entry's type changed, e.g. a file became a directory (`T`).
    TypeChanged,
    /// Only metadata changed: mode, owner, mtime or xattrs (`U`; reported
    /// only when [`DiffOptions::metadata`] is set).
    Metadata,
}

impl Change {
    /// The one-character marker: `+`, `-`, `M`, `T` or `U`.
    pub fn marker(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }

    /// A lower-case name for JSON: "added", "removed", "modified",
    /// "type_changed", "metadata".
    pub fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::TypeChanged => "type_changed",
            Change::Metadata => "metadata",
        }
    }
}

/// Options of a diff.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DiffOptions {
    /// Also report entries whose metadata alone changed.
    pub metadata: bool,
}

impl DiffOptions {
    /// Report metadata-only changes.
    pub fn metadata(mut self, yes: bool) -> Self {
        self.metadata = yes;
        self
    }
}

/// Counts of a diff. An entry counts as a file, a directory or an
/// "other" (symlink, fifo, device, socket).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffStats {
    /// Files added.
    pub files_added: u64,
    /// Directories added.
    pub dirs_added: u64,
    /// Other entries added.
    pub others_added: u64,
    /// Files removed.
    pub files_removed: u64,
    /// Directories removed.
    pub dirs_removed: u64,
    /// Other entries removed.
    pub others_removed: u64,
    /// Entries modified (`M`).
    pub modified: u64,
    /// Entries whose type changed (`T`).
    pub type_changed: u64,
    /// Entries with only metadata changes (`U`, counted only with
    /// [`DiffOptions::metadata`]).
    pub metadata_changed: u64,
    /// Bytes of files that are new in the second tree: added files, and
    /// the new size of modified ones.
    pub bytes_added: u64,
    /// Bytes of files that are gone from the first tree: removed files,
    /// and the old size of modified ones.
    pub bytes_removed: u64,
}

/// The callback of [`diff_trees`]: the change, the entry's absolute path,
/// and its node in the first and second tree (either may be absent).
pub type DiffVisitor<'v> =
    dyn FnMut(Change, &[u8], Option<&Node>, Option<&Node>) -> Result<(), ArchiveError> + 'v;

/// Compares the trees `a` and `b` and calls `visit` for every difference,
/// in path order (a directory before its children). Added and removed
/// directories are followed by every entry inside them. Holds at most one
/// pair of decoded trees per directory level.
pub fn diff_trees(
    repo: &Repository,
    a: &Id,
    b: &Id,
    opts: &DiffOptions,
    visit: &mut DiffVisitor<'_>,
) -> Result<DiffStats, ArchiveError> {
    let mut d = Differ { repo, opts, stats: DiffStats::default(), visit };
    if a != b {
        let mut path = Vec::new();
        d.trees(a, b, &mut path)?;
    }
    Ok(d.stats)
}

struct Differ<'r, 'v, 'w> {
    repo: &'r Repository,
    opts: &'r DiffOptions,
    stats: DiffStats,
    visit: &'w mut DiffVisitor<'v>,
}

impl Differ<'_, '_, '_> {
    fn trees(&mut self, a: &Id, b: &Id, path: &mut Vec<u8>) -> Result<(), ArchiveError> {
        let ta = self.repo.load_tree(a)?;
        let tb = self.repo.load_tree(b)?;
        let len = path.len();
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            path.truncate(len);
            path.push(b'/');
            match order {
                Ordering::Less => {
                    path.extend_from_slice(&ta.nodes[i].name);
                    self.one_side(Change::Removed, &ta.nodes[i], path)?;
                    i += 1;
                }
                Ordering::Greater => {
                    path.extend_from_slice(&tb.nodes[j].name);
                    self.one_side(Change::Added, &tb.nodes[j], path)?;
                    j += 1;
                }
                Ordering::Equal => {
                    path.extend_from_slice(&ta.nodes[i].name);
                    self.both(&ta.nodes[i], &tb.nodes[j], path)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        path.truncate(len);
        Ok(())
    }

    fn both(&mut self, x: &Node, y: &Node, path: &mut Vec<u8>) -> Result<(), ArchiveError> {
        if x.kind != y.kind {
            self.stats.type_changed += 1;
            if x.kind == NodeKind::File {
                self.stats.bytes_removed += x.size;
            }
            if y.kind == NodeKind::File {
                self.stats.bytes_added += y.size;
            }
            (self.visit)(Change::TypeChanged, path, Some(x), Some(y))?;
            // What was inside a directory is gone, or new.
            if x.kind == NodeKind::Dir {
                self.contents(Change::Removed, x, path)?;
            }
            if y.kind == NodeKind::Dir {
                self.contents(Change::Added, y, path)?;
            }
            return Ok(());
        }
        let modified = match x.kind {
            NodeKind::File => x.size != y.size || x.content != y.content,
            NodeKind::Symlink => x.target != y.target,
            NodeKind::Chardev | NodeKind::Blockdev => x.rdev != y.rdev,
            _ => false,
        };
        if modified {
            self.stats.modified += 1;
            self.stats.bytes_removed += x.size;
            self.stats.bytes_added += y.size;
            (self.visit)(Change::Modified, path, Some(x), Some(y))?;
        } else if self.opts.metadata && metadata_differs(x, y) {
            self.stats.metadata_changed += 1;
            (self.visit)(Change::Metadata, path, Some(x), Some(y))?;
        }
        if x.kind == NodeKind::Dir {
            let (sa, sb) = (subtree_of(x, path)?, subtree_of(y, path)?);
            if sa != sb {
                self.trees(&sa, &sb, path)?;
            }
        }
        Ok(())
    }

    /// An entry on one side only, and everything inside it.
    fn one_side(&mut self, change: Change, node: &Node, path: &[u8]) -> Result<(), ArchiveError> {
        self.count(change, node);
        match change {
            Change::Added => (self.visit)(change, path, None, Some(node))?,
            _ => (self.visit)(change, path, Some(node), None)?,
        }
        if node.kind == NodeKind::Dir {
            self.contents(change, node, path)?;
        }
        Ok(())
    }

    fn contents(&mut self, change: Change, dir: &Node, path: &[u8]) -> Result<(), ArchiveError> {
        let sub = subtree_of(dir, path)?;
        let repo = self.repo;
        walk_tree(repo, &sub, path, &mut |p, n| {
            self.count(change, n);
            match change {
                Change::Added => (self.visit)(change, p, None, Some(n))?,
                _ => (self.visit)(change, p, Some(n), None)?,
            }
            Ok(WalkControl::Continue)
        })?;
        Ok(())
    }

    fn count(&mut self, change: Change, n: &Node) {
        let s = &mut self.stats;
        let added = change == Change::Added;
        match n.kind {
            NodeKind::File => {
                if added {
                    s.files_added += 1;
                    s.bytes_added += n.size;
                } else {
                    s.files_removed += 1;
                    s.bytes_removed += n.size;
                }
            }
            NodeKind::Dir if added => s.dirs_added += 1,
            NodeKind::Dir => s.dirs_removed += 1,
            _ if added => s.others_added += 1,
            _ => s.others_removed += 1,
        }
    }
}

/// Whether the metadata a restore applies differs: mode, owner (ids and
/// names), mtime, xattrs. Inode, device, link count, ctime and atime are
/// not compared: they change without the user changing anything.
pub fn metadata_differs(x: &Node, y: &Node) -> bool {
    x.mode != y.mode
        || x.uid != y.uid
        || x.gid != y.gid
        || x.user != y.user
        || x.group != y.group
        || x.mtime != y.mtime
        || x.xattrs != y.xattrs
}
