//! FileSaver pool: reads files, cuts chunks, hashes them and hands new
//! blobs to the BlobSaver.
//!
//! Hashing and the pending check happen here, where the bytes are hot in
//! cache, rather than in the BlobSaver: a chunk that is already stored (the
//! common case on every backup after the first) then never crosses a
//! channel, and the file's content list is known the moment reading ends,
//! so the file node completes without waiting for any callback.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use arch_index::{BlobId, BlobType, Id};
use arch_repository::{Chunker, Node};
use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};

use crate::context::Ctx;
use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::scanner::FileJob;
use crate::stats::add;

/// A new blob for the BlobSaver. `data` shares the reader's buffer (no copy).
pub(crate) struct BlobJob {
    pub(crate) id: BlobId,
    pub(crate) data: Bytes,
}

/// Why saving one file stopped.
enum FileFailure {
    /// A per-file problem (goes to the error policy).
    Source(std::io::Error),
    /// The run is over (cancelled or a pool failed).
    Run(ArchiveError),
}

pub(crate) fn run(
    ctx: &Ctx<'_>,
    files: &Receiver<FileJob>,
    blobs: &Sender<BlobJob>,
    trees: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    let chunker = ctx.repo.chunker();
    // Read in blocks of at least two maximal chunks so that most cuts in a
    // block are final and the held-back tail is small relative to it.
    let block = (chunker.max_size() * 2).max(8 << 20);
    let mut cuts = Vec::new();
    while let Some(job) = ctx.scope.recv(files) {
        ctx.inject(Stage::FileSaver)?;
        let node = match save_file(ctx, &job.path, job.node, &chunker, block, &mut cuts, blobs) {
            Ok(node) => {
                ctx.progress.file_done(&job.path, node.size);
                Some(node)
            }
            Err(FileFailure::Source(e)) => {
                ctx.file_problem(&job.path, &e)?;
                None
            }
            Err(FileFailure::Run(e)) => return Err(e),
        };
        ctx.finish_child(&job.dir, node, trees)?;
    }
    Ok(())
}

fn open_source(path: &Path) -> std::io::Result<File> {
    // O_NOATIME keeps the backup from touching atimes (allowed for the
    // owner and root); fall back to a plain open otherwise.
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path),
        r => r,
    }
}

fn save_file(
    ctx: &Ctx<'_>,
    path: &Path,
    mut node: Node,
    chunker: &Chunker,
    block: usize,
    cuts: &mut Vec<usize>,
    blobs: &Sender<BlobJob>,
) -> Result<Node, FileFailure> {
    let mut file = open_source(path).map_err(FileFailure::Source)?;
    add(&ctx.stats.files_opened, 1);
    let index = ctx.repo.index();
    // Size the first buffer from the file size so small files cost small
    // allocations; +1 lets EOF be seen without growing.
    let mut buf = BytesMut::with_capacity((node.size as usize).saturating_add(1).min(block));
    let mut content: Vec<Id> = Vec::with_capacity((node.size / (1 << 20)) as usize + 1);
    let mut total = 0u64;
    let mut eof = false;
    while !eof || !buf.is_empty() {
        while !eof && buf.len() < block {
            if ctx.scope.is_cancelled() {
                return Err(FileFailure::Run(ArchiveError::Cancelled));
            }
            if buf.capacity() == buf.len() {
                buf.reserve((block - buf.len()).min(buf.len().max(64 << 10)));
            }
            let start = buf.len();
            let want = (buf.capacity() - start).min(block - start);
            buf.resize(start + want, 0);
            match file.read(&mut buf[start..]) {
                Ok(0) => {
                    buf.truncate(start);
                    eof = true;
                }
                Ok(n) => buf.truncate(start + n),
                Err(e) if e.kind() == ErrorKind::Interrupted => buf.truncate(start),
                Err(e) => return Err(FileFailure::Source(e)),
            }
        }
        if buf.is_empty() {
            break;
        }
        chunker.cut(&buf, eof, cuts);
        let consumed: usize = cuts.iter().sum();
        let done = buf.split_to(consumed).freeze();
        add(&ctx.stats.bytes_read, consumed as u64);
        ctx.progress.bytes_processed(consumed as u64);
        total += consumed as u64;
        let mut off = 0;
        for &len in cuts.iter() {
            let chunk = done.slice(off..off + len);
            off += len;
            let id = Id::hash(&chunk);
            content.push(id);
            if index.add_pending(BlobType::Data, id) {
                ctx.scope
                    .send(blobs, BlobJob { id, data: chunk })
                    .map_err(FileFailure::Run)?;
            }
        }
    }
    // The node describes what was read, even if the file changed size.
    node.size = total;
    node.content = content;
    add(&ctx.stats.files, 1);
    add(&ctx.stats.bytes_total, total);
    Ok(node)
}
