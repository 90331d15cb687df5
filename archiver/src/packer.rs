//! The open pack of one blob type, shared by all workers of that type.
//!
//! One shared pack instead of one per worker leaves one partial pack per
//! backup instead of one per worker. The pack streams to a staging file of
//! the backend as blobs are added, so an open or finished pack costs a file
//! descriptor, not memory. Workers compress and seal outside the lock; under
//! it they only append the sealed bytes (and hash them: the pack's name is
//! the hash of its bytes in order).

use std::sync::atomic::{AtomicUsize, Ordering};

use arch_index::{BlobId, BlobType, Compression};
use arch_repository::{BlobEncoder, FinishedPack, PackWriter};
use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::context::Ctx;
use crate::error::ArchiveError;
use crate::stats::add;

pub(crate) struct SharedPacker {
    t: BlobType,
    target: usize,
    open: Mutex<Option<PackWriter>>,
    /// Workers still adding; the last one to leave sends the partial pack.
    users: AtomicUsize,
}

impl SharedPacker {
    pub(crate) fn new(t: BlobType, target: usize, users: usize) -> SharedPacker {
        SharedPacker { t, target, open: Mutex::new(None), users: AtomicUsize::new(users) }
    }

    /// Compresses and seals blob `id` (with this worker's `encoder` and
    /// `sealed` scratch buffer, outside the lock), counts it, and adds it.
    pub(crate) fn store(
        &self,
        ctx: &Ctx<'_>,
        encoder: &mut BlobEncoder,
        sealed: &mut Vec<u8>,
        id: BlobId,
        data: &[u8],
        packs: &Sender<FinishedPack>,
    ) -> Result<(), ArchiveError> {
        let compression = encoder.seal_blob(ctx.repo.key(), data, sealed);
        add(&ctx.stats.blobs_added, 1);
        add(&ctx.stats.bytes_added_raw, data.len() as u64);
        ctx.progress.blob_stored(data.len() as u64, sealed.len() as u64);
        self.add(ctx, id, sealed, data.len() as u32, compression, packs)
    }

    /// Adds one sealed blob; sends the pack to the uploaders if it is full.
    fn add(
        &self,
        ctx: &Ctx<'_>,
        id: BlobId,
        sealed: &[u8],
        raw_length: u32,
        compression: Compression,
        packs: &Sender<FinishedPack>,
    ) -> Result<(), ArchiveError> {
        let full = {
            let mut open = self.open.lock();
            let w = match &mut *open {
                Some(w) => w,
                None => open.insert(self.new_pack(ctx)?),
            };
            w.add_sealed(id, sealed, raw_length, compression)?;
            if w.len() >= self.target {
                open.take()
            } else {
                None
            }
        };
        match full {
            // Finishing seals and writes the header: done outside the lock.
            Some(w) => ctx.scope.send(packs, w.finish(ctx.repo.key())?),
            None => Ok(()),
        }
    }

    /// A pack writer streaming to a staging file, or, in a dry run, one
    /// that only counts and hashes (a dry run stores nothing, not even a
    /// temporary file in the repository).
    fn new_pack(&self, ctx: &Ctx<'_>) -> Result<PackWriter, ArchiveError> {
        if ctx.dry_run {
            return Ok(PackWriter::counting(self.t));
        }
        Ok(ctx.repo.pack_writer(self.t)?)
    }

    /// Opens the pack the first blob goes to, if none is open. Creating a
    /// file in a repository whose metadata is not cached took 50 ms on the
    /// bench (the first time only), during which every saver waits on the
    /// lock; done as the pools start, it overlaps with the first reads. An
    /// open pack that receives no blob is dropped by [`Self::leave`].
    pub(crate) fn open_ahead(&self, ctx: &Ctx<'_>) -> Result<(), ArchiveError> {
        let mut open = self.open.lock();
        if open.is_none() {
            *open = Some(self.new_pack(ctx)?);
        }
        Ok(())
    }

    /// Called once by each worker when it stops adding. The last one sends
    /// the partial pack, unless the run was cancelled: then its blobs were
    /// never indexed, nothing refers to them, and it is dropped.
    pub(crate) fn leave(&self, ctx: &Ctx<'_>, packs: &Sender<FinishedPack>) -> Result<(), ArchiveError> {
        if self.users.fetch_sub(1, Ordering::AcqRel) != 1 || ctx.scope.is_cancelled() {
            return Ok(());
        }
        match self.open.lock().take() {
            Some(w) if !w.is_empty() => ctx.scope.send(packs, w.finish(ctx.repo.key())?),
            _ => Ok(()),
        }
    }
}
