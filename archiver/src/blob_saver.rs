//! BlobSaver pool: compresses and seals new data blobs and adds them to the
//! shared data pack.

use arch_repository::{BlobEncoder, FinishedPack};
use crossbeam_channel::{Receiver, Sender};

use crate::context::Ctx;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::file_saver::BlobJob;
use crate::packer::SharedPacker;

pub(crate) fn run(
    ctx: &Ctx<'_>,
    jobs: &Receiver<BlobJob<'_>>,
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
    jobs: &Receiver<BlobJob<'_>>,
    packer: &SharedPacker,
    packs: &Sender<FinishedPack>,
) -> Result<(), ArchiveError> {
    let mut encoder = BlobEncoder::new(ctx.compression_level)?;
    let mut sealed = Vec::new();
    while let Some(job) = ctx.scope.recv(jobs) {
        ctx.inject(Stage::BlobSaver)?;
        packer.store(ctx, &mut encoder, &mut sealed, job.id, &job.data, packs)?;
        ctx.chunk_bufs.put(job.data);
    }
    Ok(())
}
