//! BlobSaver pool: compresses and seals new data blobs and adds them to the
//! shared data pack.

use arch_repository::{BlobEncoder, FinishedPack};
use crossbeam_channel::{Receiver, Sender};

use crate::context::Ctx;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::file_saver::BlobJob;
use crate::packer::SharedPacker;
use crate::stats::add;

pub(crate) fn run(
    ctx: &Ctx<'_>,
    jobs: &Receiver<BlobJob>,
    packer: &SharedPacker,
    packs: &Sender<FinishedPack>,
) -> Result<(), ArchiveError> {
    let result = save_blobs(ctx, jobs, packer, packs);
    // Leave even after an error, so the count of users stays right.
    let left = packer.leave(ctx, packs);
    result.and(left)
}

fn save_blobs(
    ctx: &Ctx<'_>,
    jobs: &Receiver<BlobJob>,
    packer: &SharedPacker,
    packs: &Sender<FinishedPack>,
) -> Result<(), ArchiveError> {
    let repo = ctx.repo;
    let mut encoder = BlobEncoder::new(repo.config().compression_level)?;
    let mut sealed = Vec::new();
    while let Some(job) = ctx.scope.recv(jobs) {
        ctx.inject(Stage::BlobSaver)?;
        let compression = encoder.seal_blob(repo.key(), &job.data, &mut sealed);
        let raw = job.data.len();
        ctx.chunk_bufs.put(job.data);
        add(&ctx.stats.blobs_added, 1);
        add(&ctx.stats.bytes_added_raw, raw as u64);
        ctx.progress.blob_stored(raw as u64, sealed.len() as u64);
        packer.add(ctx, job.id, &sealed, raw as u32, compression, packs)?;
    }
    Ok(())
}
