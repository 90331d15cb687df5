//! Prune: remove data that no snapshot needs, in two phases.
//!
//! A pack that no snapshot needs is first *marked* (in the index, with the
//! time); a later prune deletes it once the grace period has passed, unless
//! a snapshot written in between needs one of its blobs, which revives it.
//! So a backup that started before a prune (and deduplicated against a
//! pack the prune found unused) never loses data. Packs whose unused share
//! is above a threshold are repacked: their needed blobs are copied (and
//! verified) into new packs, and the old pack is marked.
//!
//! Crash safety, in write order: new packs; new index files, the one that
//! supersedes the old index written last; old index files deleted; expired
//! packs deleted. Stopping after any step leaves a repository whose every
//! snapshot is complete: at worst some packs are unreferenced (the next
//! prune marks and later deletes them).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use arch_index::{BlobType, Id, IndexFile, PackEntry, PackId, PackedBlob};
use serde::Serialize;

use crate::backend::FileKind;
use crate::blob_codec::decode_blob;
use crate::error::RepoError;
use crate::pack::PackWriter;
use crate::repo::Repository;

/// Options of [`prune`]. Zero values mean the documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Repack a pack when more than this share of it is unused (0.0..=1.0).
    pub max_unused: f64,
    /// Repack at most this many bytes of packs in one run (`None`: no limit).
    pub max_repack_size: Option<u64>,
    /// How long a marked pack is kept before it is deleted.
    pub grace: Duration,
    /// Compute and report only; change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    /// 5 % unused before repacking (restic's default: repacking costs a
    /// read and a write of the whole pack, so small waste is left alone);
    /// 24 h grace, longer than any backup that could have started before
    /// the prune without holding a live lease.
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            max_repack_size: None,
            grace: Duration::from_secs(24 * 3600),
            dry_run: false,
        }
    }
}

impl PruneOptions {
    /// Sets [`PruneOptions::max_unused`].
    pub fn max_unused(mut self, share: f64) -> Self {
        self.max_unused = share.clamp(0.0, 1.0);
        self
    }
    /// Sets [`PruneOptions::max_repack_size`].
    pub fn max_repack_size(mut self, bytes: u64) -> Self {
        self.max_repack_size = Some(bytes);
        self
    }
    /// Sets [`PruneOptions::grace`] (zero deletes what is marked at once).
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }
    /// Sets [`PruneOptions::dry_run`].
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
}

/// What a prune did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Packs in the repository before the run.
    pub packs: usize,
    /// Blobs that snapshots need.
    pub blobs_used: usize,
    /// Packs newly marked for deletion (no longer needed, or repacked).
    pub packs_marked: usize,
    /// Bytes of the newly marked packs.
    pub bytes_marked: u64,
    /// Marked packs a snapshot needed again (unmarked).
    pub packs_revived: usize,
    /// Marked packs still in their grace period.
    pub packs_waiting: usize,
    /// Packs deleted (marked earlier, grace period over).
    pub packs_deleted: usize,
    /// Bytes freed by deleting them.
    pub bytes_deleted: u64,
    /// Packs repacked.
    pub packs_repacked: usize,
    /// Bytes of blobs copied into new packs.
    pub bytes_repacked: u64,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Packs found on the backend that no index listed.
    pub packs_unindexed: usize,
    /// Packs the index listed but the backend does not have.
    pub packs_missing: usize,
    /// Index files written.
    pub index_files_written: usize,
    /// Index files removed.
    pub index_files_removed: usize,
    /// Temporary files left by crashed writers (a killed backup's staging
    /// file) that were removed; see [`STALE_TEMP_AGE`].
    pub temp_files_removed: u64,
    /// Bytes that no snapshot needs and that were not marked before the
    /// run: whole unneeded packs plus the unneeded blobs of partly used
    /// ones (what a prune without tolerance for waste would free).
    pub bytes_unused: u64,
}

/// Temporary files older than this are left by a crash, never by a live
/// writer: a writer appends to its staging file far more often, and prune
/// holds the repository exclusively anyway.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

struct PackState {
    blobs: Vec<PackedBlob>,
    marked_at: Option<u64>,
    size: u64,
}

#[derive(PartialEq)]
enum Fate {
    Keep,
    Mark(u64),
    Delete,
    Repack,
}

/// Prunes `repo`. The caller must hold an exclusive lease.
///
/// Refuses (changing nothing) when a snapshot's tree cannot be read or a
/// blob a snapshot needs is stored nowhere: deciding what is unused needs a
/// complete view. Run `arch check` then.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport, RepoError> {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let mut report = PruneReport::default();
    if !opts.dry_run {
        report.temp_files_removed = repo.backend().remove_stale_temp_files(STALE_TEMP_AGE)?;
    }

    // Packs as the live index files describe them.
    let files = repo.index_files()?;
    let superseded: HashSet<Id> = files.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
    let mut packs: HashMap<PackId, PackState> = HashMap::new();
    for (_, f) in files.iter().filter(|(id, _)| !superseded.contains(id)) {
        // Tree lookups below need the index as it is under the lease: the
        // caller may have opened the repository without it, or long before.
        repo.index().load(f);
        for p in &f.packs {
            packs.entry(p.pack).or_insert_with(|| PackState {
                blobs: p.blobs.clone(),
                marked_at: None,
                size: 0,
            });
        }
        for (pack, at) in &f.marked {
            if let Some(s) = packs.get_mut(pack) {
                s.marked_at = Some(s.marked_at.map_or(*at, |m| m.min(*at)));
            }
        }
    }
    let on_disk: HashMap<PackId, u64> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .filter_map(|f| Some((Id::from_hex(&f.name)?, f.size)))
        .collect();
    report.packs = on_disk.len();
    let missing: Vec<PackId> = packs.keys().filter(|p| !on_disk.contains_key(p)).copied().collect();
    report.packs_missing = missing.len();
    for p in &missing {
        packs.remove(p);
    }
    let mut unindexed = IndexFile::default();
    // Packs no index lists (a crashed backup's, or an interrupted prune's):
    // their headers say what they hold, so a needed blob is not lost.
    for (pack, size) in &on_disk {
        if let Some(s) = packs.get_mut(pack) {
            s.size = *size;
            continue;
        }
        report.packs_unindexed += 1;
        let blobs = repo.read_pack_header(pack, *size).unwrap_or_default();
        unindexed.packs.push(PackEntry { pack: *pack, blobs: blobs.clone() });
        packs.insert(*pack, PackState { blobs, marked_at: None, size: *size });
    }
    // Let tree lookups see them too (a lost index must not hide a tree).
    repo.index().load(&unindexed);
    let used = used_blobs(repo)?;
    report.blobs_used = used.len();

    // Each needed blob gets one home: an unmarked pack if possible.
    let mut order: Vec<PackId> = packs.keys().copied().collect();
    order.sort_by_key(|p| (packs[p].marked_at.is_some(), *p));
    let mut home: HashMap<(BlobType, Id), PackId> = HashMap::new();
    for p in &order {
        for b in &packs[p].blobs {
            let key = (b.blob_type, b.id);
            if used.contains(&key) {
                home.entry(key).or_insert(*p);
            }
        }
    }
    if let Some((t, id)) = used.iter().find(|k| !home.contains_key(k)) {
        return Err(RepoError::corrupt(
            format!("{} blob {}", if *t == BlobType::Tree { "tree" } else { "data" }, id.short()),
            "a snapshot needs it but no pack holds it; prune refuses to run. Run 'arch check'",
        ));
    }
    let mut needed: HashMap<PackId, Vec<PackedBlob>> = HashMap::new();
    for p in &order {
        for b in &packs[p].blobs {
            if home.get(&(b.blob_type, b.id)) == Some(p) {
                needed.entry(*p).or_default().push(*b);
            }
        }
    }

    // Decide each pack's fate.
    let mut fates: HashMap<PackId, Fate> = HashMap::new();
    let mut repack: Vec<(u64, PackId)> = Vec::new();
    for p in &order {
        let s = &packs[p];
        let need: u64 = needed.get(p).map_or(0, |v| v.iter().map(|b| u64::from(b.length)).sum());
        if need == 0 && s.marked_at.is_none() {
            report.bytes_unused += s.size;
        }
        let fate = match (need, s.marked_at) {
            (0, Some(at)) if now.saturating_sub(at) >= opts.grace.as_secs() => Fate::Delete,
            (0, Some(at)) => {
                report.packs_waiting += 1;
                Fate::Mark(at)
            }
            (0, None) if opts.grace.is_zero() => Fate::Delete,
            (0, None) => {
                report.packs_marked += 1;
                report.bytes_marked += s.size;
                Fate::Mark(now)
            }
            (_, marked) => {
                if marked.is_some() {
                    report.packs_revived += 1;
                }
                let area: u64 = s.blobs.iter().map(|b| u64::from(b.length)).sum::<u64>().max(1);
                let unused = area.saturating_sub(need);
                report.bytes_unused += unused;
                if unused as f64 / area as f64 > opts.max_unused {
                    repack.push((unused, *p));
                }
                Fate::Keep
            }
        };
        if fate == Fate::Delete {
            report.packs_deleted += 1;
            report.bytes_deleted += s.size;
        }
        fates.insert(*p, fate);
    }
    repack.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut budget = opts.max_repack_size.unwrap_or(u64::MAX);
    for (_, p) in repack {
        let size = packs[&p].size;
        if size > budget {
            continue;
        }
        budget -= size;
        fates.insert(p, Fate::Repack);
        report.packs_repacked += 1;
        report.bytes_repacked += needed[&p].iter().map(|b| u64::from(b.length)).sum::<u64>();
    }

    let changed = report.packs_marked
        + report.packs_revived
        + report.packs_deleted
        + report.packs_repacked
        + report.packs_unindexed
        + report.packs_missing
        > 0;
    if opts.dry_run || !changed {
        return Ok(report);
    }

    // Repack: copy needed blobs (verified) into new packs.
    let mut new_entries: Vec<PackEntry> = Vec::new();
    let pack_size = repo.config().pack_size as usize;
    let mut writers: HashMap<BlobType, PackWriter> = HashMap::new();
    let mut to_repack: Vec<PackId> =
        fates.iter().filter(|(_, f)| **f == Fate::Repack).map(|(p, _)| *p).collect();
    to_repack.sort();
    for p in &to_repack {
        let data = repo.backend().read(FileKind::Pack, &p.to_hex())?;
        if Id::hash(&data) != *p {
            return Err(RepoError::corrupt(format!("pack {}", p.short()), "content does not match its name"));
        }
        for b in &needed[p] {
            let sealed = &data[b.offset as usize..(b.offset + b.length) as usize];
            decode_blob(repo.key(), &arch_index::BlobLocation { pack: *p, blob: *b }, sealed)?;
            let w = match writers.entry(b.blob_type) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(repo.pack_writer(b.blob_type)?),
            };
            w.add_sealed(b.id, sealed, b.raw_length, b.compression)?;
            if w.len() >= pack_size {
                let full = writers.remove(&b.blob_type).expect("just used");
                new_entries.push(store(repo, full)?);
            }
        }
    }
    for (_, w) in writers.drain() {
        if !w.is_empty() {
            new_entries.push(store(repo, w)?);
        }
    }
    report.packs_written = new_entries.len();

    // The new index: every pack that stays, marks included, then the new packs.
    let mut entries: Vec<PackEntry> = Vec::new();
    let mut marks: Vec<(PackId, u64)> = Vec::new();
    // A repacked pack's blobs now live in the new packs: it is marked like
    // an unused one (or, with no grace period, deleted at once).
    for p in &to_repack {
        let size = packs[p].size;
        if opts.grace.is_zero() {
            fates.insert(*p, Fate::Delete);
            report.packs_deleted += 1;
            report.bytes_deleted += size;
        } else {
            fates.insert(*p, Fate::Mark(now));
            report.packs_marked += 1;
            report.bytes_marked += size;
        }
    }
    for p in &order {
        match fates[p] {
            Fate::Delete => continue,
            Fate::Mark(at) => marks.push((*p, at)),
            Fate::Repack | Fate::Keep => {}
        }
        entries.push(PackEntry { pack: *p, blobs: packs[p].blobs.clone() });
    }
    entries.extend(new_entries);
    let old: Vec<Id> = files.iter().map(|(id, _)| *id).collect();
    report.index_files_written = write_index(repo, entries, marks, &old)?;
    for id in &old {
        repo.backend().delete(FileKind::Index, &id.to_hex())?;
        report.index_files_removed += 1;
    }
    for (p, fate) in &fates {
        if *fate == Fate::Delete {
            match repo.backend().delete(FileKind::Pack, &p.to_hex()) {
                Ok(()) | Err(crate::BackendError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(report)
}

/// Every blob any snapshot needs (trees and file contents).
fn used_blobs(repo: &Repository) -> Result<HashSet<(BlobType, Id)>, RepoError> {
    let mut used = HashSet::new();
    for (sid, snap) in repo.list_snapshots()? {
        let mut stack = vec![snap.tree];
        while let Some(t) = stack.pop() {
            if !used.insert((BlobType::Tree, t)) {
                continue;
            }
            let tree = repo.load_tree(&t).map_err(|e| {
                RepoError::corrupt(
                    format!("snapshot {}", sid.short()),
                    format!(
                        "tree {} cannot be read ({e}); prune refuses to run. Run 'arch check'",
                        t.short()
                    ),
                )
            })?;
            for n in tree.nodes {
                used.extend(n.content.into_iter().map(|id| (BlobType::Data, id)));
                stack.extend(n.subtree);
            }
        }
    }
    Ok(used)
}

fn store(repo: &Repository, w: PackWriter) -> Result<PackEntry, RepoError> {
    let (pack, blobs) = repo.store_pack(w.finish(repo.key())?)?;
    Ok(PackEntry { pack, blobs })
}

/// Writes `entries` as index files of at most 50,000 blobs. The last file
/// written carries the `supersedes` list, so the old index stays in force
/// until every new file exists.
fn write_index(
    repo: &Repository,
    entries: Vec<PackEntry>,
    marks: Vec<(PackId, u64)>,
    old: &[Id],
) -> Result<usize, RepoError> {
    const MAX_BLOBS: usize = 50_000;
    let marks: HashMap<PackId, u64> = marks.into_iter().collect();
    let mut files: Vec<IndexFile> = vec![IndexFile::default()];
    for e in entries {
        let cur = files.last_mut().expect("never empty");
        if cur.blob_count() + e.blobs.len() > MAX_BLOBS && !cur.packs.is_empty() {
            files.push(IndexFile::default());
        }
        let cur = files.last_mut().expect("never empty");
        if let Some(at) = marks.get(&e.pack) {
            cur.marked.push((e.pack, *at));
        }
        cur.packs.push(e);
    }
    files.last_mut().expect("never empty").supersedes = old.to_vec();
    let n = files.len();
    for f in files {
        repo.save_object(FileKind::Index, &f.encode())?;
    }
    Ok(n)
}
