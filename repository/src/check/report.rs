//! What a check reports: problems with their context, and the totals.

use std::fmt;

use arch_index::{BlobId, BlobType, Id, PackId};

/// What is wrong, with the ids needed to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// An index file cannot be read or decoded: the packs it lists look
    /// unreferenced and their blobs missing.
    IndexUnreadable {
        /// The index file.
        index: Id,
        /// Why.
        detail: String,
    },
    /// A snapshot cannot be read or parsed.
    SnapshotUnreadable {
        /// The snapshot.
        snapshot: Id,
        /// Why.
        detail: String,
    },
    /// A pack the index lists is not on the backend.
    PackMissing {
        /// The pack.
        pack: PackId,
        /// Blobs the index says it holds.
        blobs: usize,
    },
    /// A pack's header cannot be read, opened or decoded.
    PackHeader {
        /// The pack.
        pack: PackId,
        /// Why.
        detail: String,
    },
    /// A pack's header and the index (or two index files) disagree.
    PackIndexMismatch {
        /// The pack.
        pack: PackId,
        /// The first difference.
        detail: String,
    },
    /// One blob is indexed several times with entries that cannot all be
    /// right (different plaintext lengths for one content hash).
    IndexConflict {
        /// Blob type.
        blob_type: BlobType,
        /// The blob.
        blob: BlobId,
        /// The conflicting entries.
        detail: String,
    },
    /// A pack's bytes do not hash to its name.
    PackHash {
        /// The pack.
        pack: PackId,
        /// blake3 of what is stored.
        actual: Id,
    },
    /// A pack could not be downloaded.
    PackUnreadable {
        /// The pack.
        pack: PackId,
        /// Why.
        detail: String,
    },
    /// A blob fails authentication, decompression or its content hash.
    BlobDamaged {
        /// The pack holding it.
        pack: PackId,
        /// Blob type.
        blob_type: BlobType,
        /// The blob.
        blob: BlobId,
        /// Why.
        detail: String,
    },
    /// A snapshot needs a blob that is not in the index.
    BlobMissing {
        /// Blob type.
        blob_type: BlobType,
        /// The blob.
        blob: BlobId,
    },
    /// A tree blob cannot be loaded or decoded.
    TreeDamaged {
        /// The tree blob.
        tree: BlobId,
        /// The pack it was read from.
        pack: PackId,
        /// Why.
        detail: String,
    },
    /// A tree decodes but is inconsistent (a directory without subtree, a
    /// file whose blobs do not add up to its size).
    TreeInvalid {
        /// The tree blob.
        tree: BlobId,
        /// What is wrong.
        detail: String,
    },
}

pub(super) fn type_name(t: BlobType) -> &'static str {
    match t {
        BlobType::Data => "data",
        BlobType::Tree => "tree",
    }
}

impl ProblemKind {
    /// A stable snake_case name of the variant (for JSON and scripts).
    pub fn name(&self) -> &'static str {
        match self {
            ProblemKind::IndexUnreadable { .. } => "index_unreadable",
            ProblemKind::SnapshotUnreadable { .. } => "snapshot_unreadable",
            ProblemKind::PackMissing { .. } => "pack_missing",
            ProblemKind::PackHeader { .. } => "pack_header",
            ProblemKind::PackIndexMismatch { .. } => "pack_index_mismatch",
            ProblemKind::IndexConflict { .. } => "index_conflict",
            ProblemKind::PackHash { .. } => "pack_hash",
            ProblemKind::PackUnreadable { .. } => "pack_unreadable",
            ProblemKind::BlobDamaged { .. } => "blob_damaged",
            ProblemKind::BlobMissing { .. } => "blob_missing",
            ProblemKind::TreeDamaged { .. } => "tree_damaged",
            ProblemKind::TreeInvalid { .. } => "tree_invalid",
        }
    }

    /// The pack the problem is in, if it is about one.
    pub fn pack(&self) -> Option<PackId> {
        match self {
            ProblemKind::PackMissing { pack, .. }
            | ProblemKind::PackHeader { pack, .. }
            | ProblemKind::PackIndexMismatch { pack, .. }
            | ProblemKind::PackHash { pack, .. }
            | ProblemKind::PackUnreadable { pack, .. }
            | ProblemKind::BlobDamaged { pack, .. }
            | ProblemKind::TreeDamaged { pack, .. } => Some(*pack),
            _ => None,
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::IndexUnreadable { index, detail } => {
                write!(f, "index {index}: unreadable ({detail}); the blobs it lists are not indexed")
            }
            ProblemKind::SnapshotUnreadable { snapshot, detail } => {
                write!(f, "snapshot {snapshot}: unreadable ({detail})")
            }
            ProblemKind::PackMissing { pack, blobs } => {
                write!(f, "pack {pack}: missing (the index lists {blobs} blobs in it)")
            }
            ProblemKind::PackHeader { pack, detail } => write!(f, "pack {pack}: header unreadable: {detail}"),
            ProblemKind::PackIndexMismatch { pack, detail } => {
                write!(f, "pack {pack}: header and index disagree: {detail}")
            }
            ProblemKind::IndexConflict { blob_type, blob, detail } => {
                write!(f, "{} blob {blob}: indexed in conflicting ways: {detail}", type_name(*blob_type))
            }
            ProblemKind::PackHash { pack, actual } => {
                write!(f, "pack {pack}: content does not match its name (its blake3 is {actual}): damaged")
            }
            ProblemKind::PackUnreadable { pack, detail } => {
                write!(f, "pack {pack}: cannot be read: {detail}")
            }
            ProblemKind::BlobDamaged { pack, blob_type, blob, detail } => {
                write!(f, "{} blob {blob} in pack {pack}: damaged: {detail}", type_name(*blob_type))
            }
            ProblemKind::BlobMissing { blob_type, blob } => {
                write!(f, "{} blob {blob}: needed but not in the index", type_name(*blob_type))
            }
            ProblemKind::TreeDamaged { tree, pack, detail } => {
                write!(f, "tree blob {tree} in pack {pack}: cannot be loaded: {detail}")
            }
            ProblemKind::TreeInvalid { tree, detail } => write!(f, "tree {tree}: {detail}"),
        }
    }
}

/// The paths of one snapshot that need a damaged or missing blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The snapshot.
    pub snapshot: Id,
    /// Absolute paths in the snapshot (lossy UTF-8), sorted: files whose
    /// content is damaged, or directories whose listing is.
    pub paths: Vec<String>,
}

/// One problem and what it affects.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The blobs the problem makes unreadable or unverifiable (type, id).
    pub blobs: Vec<(BlobType, BlobId)>,
    /// Snapshots and paths that need those blobs, oldest snapshot first.
    /// Empty if no snapshot needs them (or the check was cancelled first).
    pub needed_by: Vec<Usage>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

/// What a check looked at and found.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Index files read.
    pub index_files: usize,
    /// Packs listed by the index.
    pub packs: usize,
    /// Blob entries in the index (a blob stored twice counts twice).
    pub blobs: usize,
    /// Extra copies of blobs stored more than once (harmless; prune removes them).
    pub duplicate_blobs: usize,
    /// Snapshots read.
    pub snapshots: usize,
    /// Distinct trees loaded and walked.
    pub trees: usize,
    /// Packs on the backend that no index lists, with their sizes. Not an
    /// error: a backup that was interrupted (or is running) leaves them;
    /// prune removes them.
    pub unreferenced_packs: Vec<(PackId, u64)>,
    /// Packs downloaded and verified, sorted.
    pub packs_read: Vec<PackId>,
    /// Bytes downloaded by the data check.
    pub bytes_read: u64,
    /// Blobs decrypted and re-hashed.
    pub blobs_read: usize,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
    /// The check was stopped early; the report covers only what was done.
    pub cancelled: bool,
}

impl CheckReport {
    /// True when nothing is damaged or missing (unreferenced packs and
    /// duplicate blobs are fine) and the check ran to the end.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && !self.cancelled
    }
}
