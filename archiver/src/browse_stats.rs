//! `stats`: sizes of snapshots and of the repository, and the
//! deduplication ratio.

use std::collections::{HashMap, HashSet};

use arch_index::{BlobId, BlobType, Id};
use arch_repository::{FileKind, NodeKind, Repository};

use crate::browse::subtree_of;
use crate::error::ArchiveError;

/// Which number `stats` is about (all are always computed; the mode only
/// picks the headline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatsMode {
    /// What a restore would write: the sum of file sizes, each set of
    /// hardlinks counted once per snapshot.
    #[default]
    RestoreSize,
    /// Unique file contents: files with the same list of blobs count once.
    FilesByContents,
    /// Unique blobs the snapshots refer to, as stored (compressed, sealed).
    RawData,
}

/// The result of [`stats`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RepoStats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Files in those snapshots (every name; hardlinks once per snapshot).
    pub files: u64,
    /// Directories in those snapshots.
    pub dirs: u64,
    /// Symlinks, fifos, devices.
    pub others: u64,
    /// Sum of file sizes, hardlinks counted once per snapshot.
    pub restore_size: u64,
    /// Files with distinct content.
    pub unique_files: u64,
    /// Sum of the sizes of the files with distinct content.
    pub unique_files_size: u64,
    /// Distinct blobs (data and tree) the snapshots refer to.
    pub blobs: u64,
    /// Their plaintext size.
    pub blobs_raw_size: u64,
    /// Their stored size (compressed and sealed): what these snapshots
    /// take in the repository, pack headers aside.
    pub blobs_stored_size: u64,
    /// `restore_size / blobs_stored_size` (0 when nothing is stored): how
    /// many bytes of restored files one stored byte gives.
    pub dedup_ratio: f64,
    /// Blobs in the whole repository index.
    pub repo_blobs: u64,
    /// Packs in the repository index.
    pub repo_packs: u64,
    /// Bytes of every object in the repository (packs, index files,
    /// snapshots, keys).
    pub repo_size: u64,
}

/// Computes [`RepoStats`] over the snapshots whose root trees are `trees`.
/// Memory grows with the number of distinct blobs, file contents and
/// directories (a few dozen bytes each), never with the size of the files.
///
/// A directory tree already counted (in an earlier snapshot, or twice in
/// one) is not read again: its blobs and contents are already in the sets,
/// and its file and byte counts are remembered. Only trees holding
/// hardlinked files are always walked, because hardlinks count once per
/// snapshot.
pub fn stats(repo: &Repository, trees: &[Id]) -> Result<RepoStats, ArchiveError> {
    let mut s = RepoStats { snapshots: trees.len() as u64, ..RepoStats::default() };
    let mut w = Walker {
        repo,
        blobs: HashSet::new(),
        contents: HashSet::new(),
        done: HashMap::new(),
        links: HashSet::new(),
        scratch: Vec::new(),
    };
    for tree in trees {
        w.links.clear();
        w.add_blob(&mut s, BlobType::Tree, tree)?;
        let t = w.tree(&mut s, tree)?;
        s.files += t.files;
        s.dirs += t.dirs;
        s.others += t.others;
        s.restore_size += t.restore_size;
    }
    if s.blobs_stored_size > 0 {
        s.dedup_ratio = s.restore_size as f64 / s.blobs_stored_size as f64;
    }
    s.repo_blobs = (repo.index().blob_count(BlobType::Data) + repo.index().blob_count(BlobType::Tree)) as u64;
    s.repo_packs = repo.index().pack_count() as u64;
    for kind in [FileKind::Key, FileKind::Snapshot, FileKind::Index, FileKind::Pack] {
        s.repo_size += repo
            .backend()
            .list(kind)
            .map_err(arch_repository::RepoError::from)?
            .iter()
            .map(|f| f.size)
            .sum::<u64>();
    }
    Ok(s)
}

/// What one directory tree adds to the per-snapshot counters.
#[derive(Clone, Copy, Default)]
struct TreeTotals {
    files: u64,
    dirs: u64,
    others: u64,
    restore_size: u64,
    /// Holds a file with more than one link: must be walked every time.
    hardlinks: bool,
}

struct Walker<'r> {
    repo: &'r Repository,
    blobs: HashSet<(BlobType, BlobId)>,
    contents: HashSet<Id>,
    /// Trees already walked, with their totals.
    done: HashMap<Id, TreeTotals>,
    /// (device, inode) of hardlinked files counted in this snapshot.
    links: HashSet<(u64, u64)>,
    scratch: Vec<u8>,
}

impl Walker<'_> {
    fn add_blob(&mut self, s: &mut RepoStats, t: BlobType, id: &BlobId) -> Result<(), ArchiveError> {
        if self.blobs.insert((t, *id)) {
            let loc = self.repo.locate(t, id)?;
            s.blobs += 1;
            s.blobs_raw_size += u64::from(loc.blob.raw_length);
            s.blobs_stored_size += u64::from(loc.blob.length);
        }
        Ok(())
    }

    fn tree(&mut self, s: &mut RepoStats, id: &Id) -> Result<TreeTotals, ArchiveError> {
        if let Some(t) = self.done.get(id) {
            if !t.hardlinks {
                return Ok(*t);
            }
        }
        let tree = self.repo.load_tree(id)?;
        let mut t = TreeTotals::default();
        for n in &tree.nodes {
            match n.kind {
                NodeKind::File => {
                    t.files += 1;
                    if n.links > 1 {
                        t.hardlinks = true;
                    }
                    if n.links <= 1 || self.links.insert((n.device, n.inode)) {
                        t.restore_size += n.size;
                    }
                    self.scratch.clear();
                    for b in &n.content {
                        self.scratch.extend_from_slice(&b.0);
                    }
                    if self.contents.insert(Id::hash(&self.scratch)) {
                        s.unique_files += 1;
                        s.unique_files_size += n.size;
                    }
                    for b in &n.content {
                        self.add_blob(s, BlobType::Data, b)?;
                    }
                }
                NodeKind::Dir => {
                    t.dirs += 1;
                    let sub = subtree_of(n, &n.name)?;
                    self.add_blob(s, BlobType::Tree, &sub)?;
                    let c = self.tree(s, &sub)?;
                    t.files += c.files;
                    t.dirs += c.dirs;
                    t.others += c.others;
                    t.restore_size += c.restore_size;
                    t.hardlinks |= c.hardlinks;
                }
                _ => t.others += 1,
            }
        }
        self.done.insert(*id, t);
        Ok(t)
    }
}
