//! BlobSaver pool: compresses and seals new data blobs into packs. Each
//! worker owns its open pack and zstd context, so the hot path takes no lock.

use arch_index::BlobType;
use arch_repository::{BlobEncoder, FinishedPack, PackWriter};
use crossbeam_channel::{Receiver, Sender};

use crate::context::Ctx;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::file_saver::BlobJob;
use crate::stats::add;

pub(crate) fn run(
    ctx: &Ctx<'_>,
    jobs: &Receiver<BlobJob>,
    packs: &Sender<FinishedPack>,
) -> Result<(), ArchiveError> {
    let repo = ctx.repo;
    let mut encoder = BlobEncoder::new(repo.config().compression_level)?;
    let mut packer = Packer::new(BlobType::Data, repo.config().pack_size as usize);
    while let Some(job) = ctx.scope.recv(jobs) {
        ctx.inject(Stage::BlobSaver)?;
        let stored = encoder.encode_into(repo.key(), job.id, &job.data, packer.writer());
        add(&ctx.stats.blobs_added, 1);
        add(&ctx.stats.bytes_added_raw, job.data.len() as u64);
        ctx.progress
            .blob_stored(job.data.len() as u64, stored as u64);
        drop(job);
        packer.send_if_full(ctx, packs)?;
    }
    packer.send_rest(ctx, packs)
}

/// An open pack of one blob type that is sent to the uploader when full.
pub(crate) struct Packer {
    t: BlobType,
    target: usize,
    open: Option<PackWriter>,
}

impl Packer {
    pub(crate) fn new(t: BlobType, target: usize) -> Packer {
        Packer {
            t,
            target,
            open: None,
        }
    }

    pub(crate) fn writer(&mut self) -> &mut PackWriter {
        let (t, cap) = (self.t, self.target + (1 << 20));
        self.open.get_or_insert_with(|| PackWriter::new(t, cap))
    }

    pub(crate) fn send_if_full(
        &mut self,
        ctx: &Ctx<'_>,
        packs: &Sender<FinishedPack>,
    ) -> Result<(), ArchiveError> {
        if self.open.as_ref().is_some_and(|w| w.len() >= self.target) {
            self.send_rest(ctx, packs)?;
        }
        Ok(())
    }

    /// Sends the open pack, if any. After a cancel the partial pack is
    /// dropped: its blobs were never indexed, so nothing refers to them.
    pub(crate) fn send_rest(
        &mut self,
        ctx: &Ctx<'_>,
        packs: &Sender<FinishedPack>,
    ) -> Result<(), ArchiveError> {
        if ctx.scope.is_cancelled() {
            return Ok(());
        }
        match self.open.take() {
            Some(w) if !w.is_empty() => ctx.scope.send(packs, w.finish(ctx.repo.key())),
            _ => Ok(()),
        }
    }
}
