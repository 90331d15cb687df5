//! The content stage of a restore: pack readers and blob writers that run
//! for the whole restore, fed one planned batch after another, so that
//! planning, reading and writing overlap.
//!
//! A dispatcher hands out the packs of each batch (biggest first), and
//! asks the backend to prefetch each as it queues it, so the disk reads
//! ahead while the CPUs decode what came before (without holding more of
//! our memory); readers read what a pack holds for the batch in windows
//! of at most [`READ_WINDOW`] bytes; writers authenticate, decompress,
//! verify and write every blob of a window with positional writes. Reading is
//! separate from writing so that the disk is busy while the CPUs decode: a
//! worker that did both would leave its core idle during every read. The
//! bytes read and not yet written are bounded by a budget, so a slow disk
//! stalls the readers, never memory. A batch is done when its last window
//! is written; done batches go to the finisher, which applies metadata in
//! planning order.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arch_index::{BlobLocation, PackId};
use arch_repository::{BlobDecoder, FileKind, Repository};
use crossbeam_channel::{Receiver, Sender};

use crate::budget::{ByteBudget, Permit};
use crate::error::ArchiveError;
use crate::progress::Progress;
use crate::restore::Batch;
use crate::restore_fs::{create_new, is_zero, FileHandles};
use crate::scope::Scope;

/// One blob occurrence: where in which file it goes.
#[derive(Clone, Copy)]
pub(crate) struct Placement {
    pub(crate) file: u32,
    pub(crate) file_offset: u64,
    /// The file does not exist yet and this blob is all of it: the writer
    /// of the blob creates it (one open instead of a create, a resize and
    /// a reopen; most files of a tree are one chunk).
    pub(crate) fresh: bool,
}

/// The blobs needed from one pack, each with where it goes.
pub(crate) type PackBlobs = Vec<(BlobLocation, Vec<Placement>)>;

/// The most bytes one pack read covers; a bigger blob is one read of its own.
const READ_WINDOW: u64 = 4 << 20;

/// Bytes read and not yet written: a window for each writer and one read
/// ahead, or one for each reader where there are more (a remote backend
/// keeps many reads in flight; a local disk keeps up with one ahead).
pub(crate) fn window_budget(readers: usize, writers: usize) -> ByteBudget {
    ByteBudget::new(READ_WINDOW as usize * readers.max(writers + 1))
}

/// Unneeded bytes between two needed blobs that are read rather than
/// skipped with a new read.
const READ_GAP: u64 = 256 << 10;

/// A planned batch on its way through the content stage.
pub(crate) struct Running<'b> {
    /// Planning order: the finisher takes batches in this order.
    pub(crate) seq: u64,
    pub(crate) batch: Batch,
    /// The batch's packs, biggest first; each pack's blobs in pack order.
    packs: Vec<(PackId, PackBlobs)>,
    /// Packs not yet read to the end, plus windows not yet written, plus
    /// one until every pack has been handed out: zero means done.
    pending: AtomicUsize,
    /// The batch's planned entries, held until it is finished.
    _entries: Permit<'b>,
}

impl<'b> Running<'b> {
    /// Takes the batch's packs out of `batch` into read order.
    pub(crate) fn new(seq: u64, mut batch: Batch, entries: Permit<'b>) -> Running<'b> {
        let mut packs: Vec<(PackId, PackBlobs)> = std::mem::take(&mut batch.packs).into_iter().collect();
        // Bigger packs first so the tail of the run is not one big pack.
        packs.sort_by_key(|(id, blobs)| (std::cmp::Reverse(blobs.len()), *id));
        for (_, blobs) in &mut packs {
            blobs.sort_by_key(|(l, _)| l.blob.offset);
        }
        let pending = AtomicUsize::new(packs.len() + 1);
        Running { seq, batch, packs, pending, _entries: entries }
    }

    /// Ends one pending unit; the one that ends the last sends the batch
    /// to the finisher.
    fn release(self: &Arc<Self>, scope: &Scope, done: &Sender<Arc<Running<'b>>>) -> Result<(), ArchiveError> {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            scope.send(done, Arc::clone(self))?;
        }
        Ok(())
    }
}

/// Needed bytes of one pack, read at once.
pub(crate) struct Window<'b> {
    run: Arc<Running<'b>>,
    pack: usize,
    blobs: Range<usize>,
    start: u64,
    data: Vec<u8>,
    _bytes: Permit<'b>,
}

/// A pack of a running batch, for a reader.
pub(crate) type PackJob<'b> = (Arc<Running<'b>>, usize);

/// Hands out the packs of each batch as it arrives, in order, each
/// prefetched as it is queued.
pub(crate) fn dispatch<'b>(
    scope: &Scope,
    repo: &Repository,
    batches: Receiver<Arc<Running<'b>>>,
    jobs: Sender<PackJob<'b>>,
    done: Sender<Arc<Running<'b>>>,
) -> Result<(), ArchiveError> {
    while let Some(run) = scope.recv(&batches) {
        for i in 0..run.packs.len() {
            let (id, blobs) = &run.packs[i];
            let spans: Vec<Range<u64>> = windows(blobs).map(|(_, span)| span).collect();
            repo.backend().prefetch(FileKind::Pack, &id.to_hex(), &spans);
            scope.send(&jobs, (Arc::clone(&run), i))?;
        }
        run.release(scope, &done)?;
    }
    Ok(())
}

/// The reads that cover the needed blobs of a pack, in pack order: each
/// the blobs it holds and its byte span. A read covers at most
/// [`READ_WINDOW`] bytes (a bigger blob is one read of its own), and a run
/// of unneeded blobs longer than [`READ_GAP`] starts a new one.
fn windows(blobs: &PackBlobs) -> impl Iterator<Item = (Range<usize>, Range<u64>)> + '_ {
    let span =
        |l: &BlobLocation| u64::from(l.blob.offset)..u64::from(l.blob.offset) + u64::from(l.blob.length);
    let mut at = 0;
    std::iter::from_fn(move || {
        let (first, _) = blobs.get(at)?;
        let Range { start, mut end } = span(first);
        let mut n = 1;
        for (l, _) in &blobs[at + 1..] {
            let next = span(l);
            if next.end - start > READ_WINDOW || next.start > end + READ_GAP {
                break;
            }
            end = end.max(next.end);
            n += 1;
        }
        at += n;
        Some((at - n..at, start..end))
    })
}

/// Reads the needed blobs of each pack handed out, a window at a time.
pub(crate) fn read_packs<'b>(
    scope: &Scope,
    repo: &Repository,
    budget: &'b ByteBudget,
    jobs: Receiver<PackJob<'b>>,
    windows_out: Sender<Window<'b>>,
    done: Sender<Arc<Running<'b>>>,
) -> Result<(), ArchiveError> {
    while let Some((run, pack)) = scope.recv(&jobs) {
        let (id, blobs) = &run.packs[pack];
        for (range, span) in windows(blobs) {
            let bytes = budget.acquire(scope, (span.end - span.start) as usize)?;
            let data = repo
                .backend()
                .read_range(FileKind::Pack, &id.to_hex(), span.start, span.end - span.start)
                .map_err(arch_repository::RepoError::from)?;
            run.pending.fetch_add(1, Ordering::AcqRel);
            let w =
                Window { run: Arc::clone(&run), pack, blobs: range, start: span.start, data, _bytes: bytes };
            scope.send(&windows_out, w)?;
        }
        run.release(scope, &done)?;
    }
    Ok(())
}

/// Where blobs are written, and how.
pub(crate) struct BlobWriter<'r> {
    pub(crate) repo: &'r Repository,
    /// Write all-zero blobs as data instead of leaving holes.
    pub(crate) dense: bool,
    pub(crate) progress: &'r dyn Progress,
    /// Open files of every batch, by batch and file number.
    pub(crate) handles: FileHandles,
}

impl BlobWriter<'_> {
    /// Decodes and writes the windows read until the readers are done.
    pub(crate) fn write_windows<'b>(
        &self,
        scope: &Scope,
        windows: Receiver<Window<'b>>,
        done: Sender<Arc<Running<'b>>>,
    ) -> Result<(), ArchiveError> {
        let mut decoder = BlobDecoder::new()?;
        while let Some(mut w) = scope.recv(&windows) {
            let run = Arc::clone(&w.run);
            for (loc, places) in &run.packs[w.pack].1[w.blobs.clone()] {
                let from = (u64::from(loc.blob.offset) - w.start) as usize;
                let sealed = &mut w.data[from..from + loc.blob.length as usize];
                let plain = decoder.decode(self.repo.key(), loc, sealed)?;
                self.write_blob(plain, places, &run)?;
            }
            // The window's memory goes back before the batch may finish.
            drop(w);
            run.release(scope, &done)?;
        }
        Ok(())
    }

    /// Writes one decoded blob everywhere it goes (an all-zero one stays a
    /// hole unless `dense`).
    fn write_blob(&self, plain: &[u8], places: &[Placement], run: &Running<'_>) -> Result<(), ArchiveError> {
        use std::os::unix::fs::FileExt;
        let hole = !self.dense && is_zero(plain);
        for p in places {
            let path = &run.batch.files[p.file as usize];
            if p.fresh {
                let f = create_new(path)?;
                if hole { f.set_len(plain.len() as u64) } else { std::io::Write::write_all(&mut &f, plain) }
                    .map_err(|e| ArchiveError::io("write", path, e))?;
            } else if !hole {
                let f = self.handles.get((run.seq << 32) | u64::from(p.file), path)?;
                f.write_all_at(plain, p.file_offset).map_err(|e| ArchiveError::io("write", path, e))?;
            }
            self.progress.bytes_processed(plain.len() as u64);
        }
        Ok(())
    }
}
