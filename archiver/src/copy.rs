//! Copying snapshots between repositories with different keys.

use std::collections::HashSet;

use arch_index::{BlobType, Id};
use arch_repository::{BlobEncoder, FinishedPack, Repository, Snapshot};
use tokio_util::sync::CancellationToken;

use crate::error::ArchiveError;

/// What [`copy_snapshots`] did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CopyReport {
    /// Snapshots written into the target.
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots the target already had (same time, host, paths,
    /// tags and tree).
    pub skipped: Vec<Id>,
    /// Blobs the target lacked and received.
    pub blobs_copied: u64,
    /// Plaintext bytes of those blobs.
    pub bytes_copied: u64,
    /// The repositories chunk with different parameters: copied data does
    /// not deduplicate against data backed up into the target directly.
    pub chunker_differs: bool,
}

/// Copies `snapshots` of `src` into `dst`, transferring only blobs `dst`
/// lacks; each blob is verified as it is read and sealed with `dst`'s key.
///
/// Guarantees the same write order as a backup: packs, then the index,
/// then each snapshot; a copy that fails or is cancelled writes no
/// snapshot whose data is not stored. A copied snapshot keeps its content
/// and records the source id in `original` (unless it already had one).
pub fn copy_snapshots(
    src: &Repository,
    dst: &Repository,
    snapshots: &[(Id, Snapshot)],
    cancel: &CancellationToken,
) -> Result<CopyReport, ArchiveError> {
    let mut report =
        CopyReport { chunker_differs: src.config().chunker != dst.config().chunker, ..CopyReport::default() };
    let existing = dst.list_snapshots()?;
    let same = |a: &Snapshot, b: &Snapshot| {
        a.time == b.time
            && a.tree == b.tree
            && a.hostname == b.hostname
            && a.paths == b.paths
            && a.tags == b.tags
    };
    let session = dst.index().session();
    let mut encoder = BlobEncoder::new(dst.config().compression_level)?;
    let pack_size = dst.config().pack_size as usize;
    let mut data_pack = dst.pack_writer(BlobType::Data)?;
    let mut tree_pack = dst.pack_writer(BlobType::Tree)?;
    let mut pending: Vec<(Id, Snapshot)> = Vec::new();
    let mut seen_trees: HashSet<Id> = HashSet::new();
    for (id, snap) in snapshots {
        if existing.iter().any(|(_, e)| same(e, snap)) {
            report.skipped.push(*id);
            continue;
        }
        let mut stack = vec![snap.tree];
        while let Some(tree_id) = stack.pop() {
            if cancel.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = src.load_tree(&tree_id)?;
            for node in &tree.nodes {
                for blob in &node.content {
                    if session.add_pending(BlobType::Data, *blob) {
                        let data = src.read_blob(BlobType::Data, blob)?;
                        report.blobs_copied += 1;
                        report.bytes_copied += data.len() as u64;
                        encoder.encode_into(dst.key(), *blob, &data, &mut data_pack)?;
                        if data_pack.len() >= pack_size {
                            let full = std::mem::replace(&mut data_pack, dst.pack_writer(BlobType::Data)?);
                            save(dst, full.finish(dst.key())?)?;
                        }
                    }
                }
                stack.extend(node.subtree);
            }
            if session.add_pending(BlobType::Tree, tree_id) {
                let bytes = src.read_blob(BlobType::Tree, &tree_id)?;
                report.blobs_copied += 1;
                report.bytes_copied += bytes.len() as u64;
                encoder.encode_into(dst.key(), tree_id, &bytes, &mut tree_pack)?;
                if tree_pack.len() >= pack_size.min(4 << 20) {
                    let full = std::mem::replace(&mut tree_pack, dst.pack_writer(BlobType::Tree)?);
                    save(dst, full.finish(dst.key())?)?;
                }
            }
        }
        pending.push((*id, snap.clone()));
    }
    for w in [data_pack, tree_pack] {
        if !w.is_empty() {
            save(dst, w.finish(dst.key())?)?;
        }
    }
    dst.flush_index()?;
    for (id, mut snap) in pending {
        snap.original = snap.original.or(Some(id));
        let new = dst.save_snapshot(&snap)?;
        report.copied.push((id, new));
    }
    Ok(report)
}

fn save(dst: &Repository, pack: FinishedPack) -> Result<(), ArchiveError> {
    Ok(dst.save_pack(pack)?)
}
