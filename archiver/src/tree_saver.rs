//! TreeSaver: encodes each completed directory, stores its tree blob, and
//! reports the directory to its parent. Completing a parent happens inline
//! in the same loop, so the TreeSaver never sends to itself.

use std::sync::Arc;

use arch_index::{BlobType, Id};
use arch_repository::{BlobEncoder, FinishedPack, Tree};
use crossbeam_channel::{Receiver, Sender};

use crate::context::Ctx;
use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::packer::SharedPacker;
use crate::stats::add;

pub(crate) fn run(
    ctx: &Ctx<'_>,
    dirs: &Receiver<Arc<DirState>>,
    packs: &Sender<FinishedPack>,
) -> Result<(), ArchiveError> {
    // Tree packs are small so that they are cheap to cache and read.
    let target = (ctx.repo.config().pack_size as usize).min(4 << 20);
    let packer = SharedPacker::new(BlobType::Tree, target, 1);
    let result = save_trees(ctx, dirs, &packer, packs);
    let left = packer.leave(ctx, packs);
    result.and(left)
}

fn save_trees(
    ctx: &Ctx<'_>,
    dirs: &Receiver<Arc<DirState>>,
    packer: &SharedPacker,
    packs: &Sender<FinishedPack>,
) -> Result<(), ArchiveError> {
    let mut encoder = BlobEncoder::new(ctx.compression_level)?;
    let mut sealed = Vec::new();
    while let Some(mut dir) = ctx.scope.recv(dirs) {
        ctx.inject(Stage::TreeSaver)?;
        loop {
            let tree = Tree { nodes: dir.take_children() };
            let bytes = tree.encode();
            let id = Id::hash(&bytes);
            if ctx.pending.add_pending(BlobType::Tree, id) {
                packer.store(ctx, &mut encoder, &mut sealed, id, &bytes, packs)?;
            }
            let Some(parent) = dir.parent.clone() else {
                *ctx.root_tree.lock() = Some(id);
                break;
            };
            let mut node = dir.node.lock().take().expect("a non-root directory has a node");
            node.subtree = Some(id);
            add(&ctx.stats.dirs, 1);
            if !parent.finish_one(Some(node)) {
                break;
            }
            dir = parent;
        }
    }
    Ok(())
}
