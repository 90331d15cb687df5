//! Uploader pool: stores finished packs and records them in the index
//! (which writes full index files as it goes).

use arch_repository::FinishedPack;
use crossbeam_channel::Receiver;

use crate::context::Ctx;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::stats::add;

pub(crate) fn run(ctx: &Ctx<'_>, packs: &Receiver<FinishedPack>) -> Result<(), ArchiveError> {
    while let Some(pack) = ctx.scope.recv(packs) {
        ctx.inject(Stage::Uploader)?;
        let len = pack.len();
        if !ctx.dry_run {
            ctx.repo.save_pack(pack)?;
        }
        add(&ctx.stats.bytes_added_stored, len);
    }
    Ok(())
}
