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
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use arch_index::{BlobId, BlobType, Id};
use arch_repository::{Chunker, Node};
use crossbeam_channel::{Receiver, Sender};

use crate::budget::Permit;
use crate::context::Ctx;
use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::fault::Stage;
use crate::read_mode::{drop_cache, is_cached, will_need, Mapping, ReadMode};
use crate::scanner::{FileJob, JobSource};
use crate::sparse::SparseReader;
use crate::stats::add;

/// The read window of a FileSaver's buffer: a few average chunks, so the
/// tail held back for the next read is small next to what each read
/// consumes (the window widens for a longer chunk).
const READ_BLOCK: usize = 4 << 20;

/// How far ahead of a FileSaver's reads the kernel is asked to read a
/// large file, on top of its own read-ahead: with only the kernel's
/// window, the cores waited on the disk while large files were read (three
/// more blocks made a first backup 3 % faster).
const READ_AHEAD: u64 = 3 * READ_BLOCK as u64;

/// A new blob for the BlobSaver, with the budget its buffer holds (given
/// back when the job is dropped, processed or not).
pub(crate) struct BlobJob<'a> {
    pub(crate) id: BlobId,
    pub(crate) data: Vec<u8>,
    pub(crate) _held: Permit<'a>,
}

/// Why saving one file stopped.
enum FileFailure {
    /// A per-file problem (goes to the error policy).
    Source(std::io::Error),
    /// The run is over (cancelled or a pool failed).
    Run(ArchiveError),
}

pub(crate) fn run<'c>(
    ctx: &'c Ctx<'_>,
    files: &Receiver<FileJob>,
    blobs: &Sender<BlobJob<'c>>,
    trees: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    let chunker = ctx.repo.chunker();
    // One read buffer per worker, reused for every file. Room for one
    // maximal chunk plus 1 MiB: the first chunk of a full buffer always
    // ends before the buffer does, so every cut makes progress. Reads use
    // only a READ_BLOCK window of it unless a chunk is longer, and pages
    // never written are never resident, so the buffer costs what the
    // longest chunk seen needs, not the maximal chunk size.
    let mut buf = Vec::with_capacity(chunker.max_size() + (1 << 20));
    let mut cuts = Vec::new();
    while let Some(job) = ctx.scope.recv(files) {
        ctx.inject(Stage::FileSaver)?;
        ctx.progress.file_started(&job.path);
        let streamed = job.stream_is_whole_backup;
        let source = match job.source {
            JobSource::Stream(s) => Ok(Opened { source: Source::Stream(s), keep_cached: true }),
            JobSource::File(opened) => opened.map_err(FileFailure::Source),
        };
        let saved = source
            .and_then(|src| save_file(ctx, &job.path, job.node, src, &chunker, &mut buf, &mut cuts, blobs));
        let node = match saved {
            Ok(node) => {
                add(if job.changed { &ctx.stats.files_changed } else { &ctx.stats.files_new }, 1);
                ctx.progress.file_done(&job.path, node.size);
                Some(node)
            }
            // A stream has nothing to skip to: its failure fails the run.
            Err(FileFailure::Source(e)) if streamed => {
                return Err(ArchiveError::io("read stream", &job.path, e));
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
    // owner and root); fall back to a plain open otherwise. O_NONBLOCK: a
    // file replaced by a FIFO since the scan must not block the open (it
    // is then refused below as no longer a regular file); reads of a
    // regular file ignore it.
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    match OpenOptions::new().read(true).custom_flags(flags | libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            OpenOptions::new().read(true).custom_flags(flags).open(path)
        }
        r => r,
    }
}

/// Clears `O_NONBLOCK` again: reads of a regular file ignore it on local
/// filesystems, but a FUSE one may not.
fn blocking(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An opened source file, and whether its pages were cached already.
pub(crate) struct Opened {
    source: Source,
    keep_cached: bool,
}

/// Opens a regular file ahead of its FileSaver (the scanner does, as it
/// queues the file), hole-aware when it is sparse, and has the kernel
/// start reading its first block: a tree of small files is otherwise read
/// one synchronous disk read per file and worker, with the cores idle in
/// between.
pub(crate) fn open_ahead(ctx: &Ctx<'_>, path: &Path) -> std::io::Result<Opened> {
    let file = open_source(path)?;
    add(&ctx.stats.files_opened, 1);
    #[cfg(test)]
    if let Some(hook) = &ctx.on_open {
        hook(path);
    }
    let opened = file.metadata()?;
    if !opened.is_file() {
        return Err(std::io::Error::other("no longer a regular file"));
    }
    blocking(&file)?;
    let keep_cached = is_cached(&file, opened.len());
    // Fewer allocated blocks than the size says: the file has holes, which
    // are produced as zeros without reading them.
    let source = if opened.blocks() * 512 < opened.len() {
        Source::Sparse(SparseReader::new(file, opened.len()))
    } else if ctx.read_mode == ReadMode::Mmap && opened.len() > 0 && usize::try_from(opened.len()).is_ok() {
        let map = Mapping::sequential(&file, opened.len() as usize)?;
        Source::Mapped(file, map)
    } else {
        Source::Plain(file)
    };
    if let (false, Source::Plain(f) | Source::Mapped(f, _)) = (keep_cached, &source) {
        will_need(f, 0, READ_BLOCK as u64);
    }
    Ok(Opened { source, keep_cached })
}

#[allow(clippy::too_many_arguments)]
fn save_file<'c>(
    ctx: &'c Ctx<'_>,
    path: &Path,
    mut node: Node,
    opened: Opened,
    chunker: &Chunker,
    buf: &mut Vec<u8>,
    cuts: &mut Vec<usize>,
    blobs: &Sender<BlobJob<'c>>,
) -> Result<Node, FileFailure> {
    let Opened { source: mut file, keep_cached } = opened;
    let cap = buf.capacity();
    let mut block = READ_BLOCK.min(cap);
    let mut content: Vec<Id> = Vec::with_capacity((node.size >> 20) as usize + 1);
    let mut total = 0u64;
    let mut eof = false;
    // Where the kernel was last asked to read ahead to; the first block
    // was asked for when the file was opened.
    let mut ahead = READ_BLOCK as u64;
    buf.clear();
    if let Source::Mapped(_, map) = &file {
        // Chunked in place, a block at a time, nothing copied unless new.
        let bytes = map.bytes();
        while (total as usize) < bytes.len() {
            if ctx.scope.is_cancelled() {
                return Err(FileFailure::Run(ArchiveError::Cancelled));
            }
            let rest = &bytes[total as usize..];
            let at_eof = rest.len() <= cap;
            let window = &rest[..rest.len().min(cap)];
            chunker.cut(window, at_eof, cuts);
            let off = save_chunks(ctx, window, cuts, &mut content, blobs)?;
            total += off as u64;
        }
        map.release();
        eof = true;
    }
    loop {
        if eof && buf.is_empty() {
            break;
        }
        // Fill the block (or reach EOF). A block without a final cut is
        // widened below, up to the capacity, which exceeds the largest
        // chunk, so every pass makes progress.
        while !eof && buf.len() < block {
            if ctx.scope.is_cancelled() {
                return Err(FileFailure::Run(ArchiveError::Cancelled));
            }
            let start = buf.len();
            if let (false, Source::Plain(f)) = (keep_cached, &file) {
                let at = total + start as u64;
                while ahead < node.size.min(at + READ_AHEAD) {
                    will_need(f, ahead, READ_BLOCK as u64);
                    ahead += READ_BLOCK as u64;
                }
            }
            // SAFETY: the bytes between len and capacity are only exposed
            // to read(), which writes them; len is set to what it wrote.
            let spare = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().add(start), block - start) };
            match file.read(spare) {
                Ok(0) => eof = true,
                // SAFETY: read initialised n bytes after start.
                Ok(n) => unsafe { buf.set_len(start + n) },
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(FileFailure::Source(e)),
            }
        }
        if buf.is_empty() {
            break;
        }
        chunker.cut(buf, eof, cuts);
        if cuts.is_empty() && !eof && block < cap {
            // A chunk longer than the window: widen it and read on. Cuts
            // before a window's end are final whatever its size.
            block = (block * 2).min(cap);
            continue;
        }
        let off = save_chunks(ctx, buf, cuts, &mut content, blobs)?;
        total += off as u64;
        buf.drain(..off);
        if eof && buf.is_empty() {
            break;
        }
    }
    // A file written to while it was read is saved as read, with a warning;
    // its new mtime makes the next backup read it again.
    if let Some(f) = file.file() {
        if !keep_cached {
            drop_cache(f);
        }
        let after = f.metadata().map_err(FileFailure::Source)?;
        if after.len() != total || after.mtime() != node.mtime.0 || after.mtime_nsec() as u32 != node.mtime.1
        {
            let e =
                std::io::Error::other("file changed while it was read; the snapshot holds the bytes as read");
            ctx.file_problem(path, &e).map_err(FileFailure::Run)?;
        }
    }
    // The node describes what was read, even if the file changed size.
    node.size = total;
    node.content = content;
    add(&ctx.stats.bytes_total, total);
    Ok(node)
}

/// Hashes the chunks `cuts` of `buf` and hands the new ones to the
/// BlobSaver; returns the bytes consumed.
fn save_chunks<'c>(
    ctx: &'c Ctx<'_>,
    buf: &[u8],
    cuts: &[usize],
    content: &mut Vec<Id>,
    blobs: &Sender<BlobJob<'c>>,
) -> Result<usize, FileFailure> {
    let mut off = 0;
    for &len in cuts {
        let chunk = &buf[off..off + len];
        off += len;
        let id = Id::hash(chunk);
        content.push(id);
        // Only new chunks are copied out of the read buffer (or mapping);
        // the buffer itself is reused for the whole run.
        if ctx.pending.add_pending(BlobType::Data, id) {
            let mut data = ctx.chunk_bufs.get(len);
            let held = ctx.chunk_budget.acquire(ctx.scope, data.capacity()).map_err(FileFailure::Run)?;
            data.extend_from_slice(chunk);
            ctx.scope.send(blobs, BlobJob { id, data, _held: held }).map_err(FileFailure::Run)?;
        }
    }
    add(&ctx.stats.bytes_read, off as u64);
    ctx.progress.bytes_processed(off as u64);
    Ok(off)
}

/// What a FileSaver reads: a file, plainly or hole-aware, mapped, or a
/// stream.
enum Source {
    Plain(File),
    Mapped(File, Mapping),
    Sparse(SparseReader),
    Stream(Box<dyn Read + Send>),
}

impl Source {
    fn file(&self) -> Option<&File> {
        match self {
            Source::Plain(f) | Source::Mapped(f, _) => Some(f),
            Source::Sparse(s) => Some(s.file()),
            Source::Stream(_) => None,
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Plain(f) | Source::Mapped(f, _) => f.read(buf),
            Source::Sparse(s) => s.read(buf),
            Source::Stream(s) => s.read(buf),
        }
    }
}
