//! Filesystem work of a restore: replacing entries safely, writing,
//! verifying and applying metadata.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use arch_index::Id;
use arch_repository::{Node, NodeKind, Timestamp};
use parking_lot::Mutex;

use crate::context::Warning;
use crate::error::ArchiveError;
use crate::metadata::write_xattr;

/// Open write handles, shared by the pack workers (a file's blobs may come
/// from many packs). Bounded so a restore of millions of files does not
/// exhaust descriptors.
#[derive(Default)]
pub(crate) struct FileHandles {
    open: Mutex<HashMap<u64, Arc<File>>>,
}

impl FileHandles {
    /// The write handle of `path`, known to the caller as `file`.
    pub(crate) fn get(&self, file: u64, path: &Path) -> Result<Arc<File>, ArchiveError> {
        let mut open = self.open.lock();
        if let Some(f) = open.get(&file) {
            return Ok(Arc::clone(f));
        }
        if open.len() >= 256 {
            open.clear();
        }
        let f = Arc::new(open_for_writing(path).map_err(|e| ArchiveError::io("open for writing", path, e))?);
        open.insert(file, Arc::clone(&f));
        Ok(f)
    }
}

/// Opens an existing file for writing; never through a symlink.
pub(crate) fn open_for_writing(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Creates a file that must not exist yet (one in the way is replaced),
/// private until its metadata is applied.
pub(crate) fn create_new(path: &Path) -> Result<File, ArchiveError> {
    replace_with(path, || OpenOptions::new().write(true).create_new(true).mode(0o600).open(path))
}

/// Checks a restored file against its chunks: the error says where it differs.
pub(crate) fn verify_file(path: &Path, chunks: &[(Id, u32)], buf: &mut Vec<u8>) -> Result<(), String> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let len = f.metadata().map_err(|e| format!("cannot stat: {e}"))?.len();
    let want: u64 = chunks.iter().map(|(_, n)| u64::from(*n)).sum();
    if len != want {
        return Err(format!("size is {len} bytes, the snapshot has {want}"));
    }
    let mut off = 0u64;
    for (id, n) in chunks {
        buf.resize(*n as usize, 0);
        f.read_exact_at(buf, off).map_err(|e| format!("cannot read at offset {off}: {e}"))?;
        if Id::hash(buf) != *id {
            return Err(format!("content differs from the snapshot in bytes {off}..{}", off + u64::from(*n)));
        }
        off += u64::from(*n);
    }
    Ok(())
}

pub(crate) fn is_zero(b: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to splits correctly.
    let (pre, mid, post) = unsafe { b.align_to::<u128>() };
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

/// Runs `create`; if the path exists (restoring over a tree), removes what
/// is there (not a directory) and tries once more.
pub(crate) fn replace_with<T>(
    path: &Path,
    create: impl Fn() -> std::io::Result<T>,
) -> Result<T, ArchiveError> {
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(path).map_err(|e| ArchiveError::io("stat", path, e))?;
            if md.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
                .map_err(|e| ArchiveError::io("replace", path, e))?;
            create().map_err(|e| ArchiveError::io("create", path, e))
        }
        r => r.map_err(|e| ArchiveError::io("create", path, e)),
    }
}

/// Creates a directory; one already there is reused only if it is a real
/// directory. Anything else in the way (a file, or a symlink that could
/// lead the restore out of its target) is replaced.
pub(crate) fn make_dir(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => {
            std::fs::remove_file(path).map_err(|e| ArchiveError::io("replace", path, e))?;
            std::fs::create_dir(path).map_err(|e| ArchiveError::io("create directory", path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(path).map_err(|e| ArchiveError::io("create directory", path, e))
        }
        Err(e) => Err(ArchiveError::io("stat", path, e)),
    }
}

pub(crate) fn cstr(path: &Path) -> Result<CString, ArchiveError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ArchiveError::Invalid(format!("path {} contains a NUL byte", path.display())))
}

pub(crate) fn timespec(t: Timestamp) -> libc::timespec {
    libc::timespec { tv_sec: t.0 as libc::time_t, tv_nsec: t.1 as libc::c_long }
}

pub(crate) fn apply_metadata(
    path: &Path,
    node: &Node,
    is_root: bool,
    warnings: &mut Vec<Warning>,
) -> Result<(), ArchiveError> {
    let c = cstr(path)?;
    let mut warn = |what: &str, e: std::io::Error| {
        warnings.push(Warning { path: path.to_path_buf(), message: format!("{what}: {e}") });
    };
    if is_root {
        // SAFETY: c is a valid path.
        if unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } != 0 {
            warn("set owner", std::io::Error::last_os_error());
        }
    }
    for x in &node.xattrs {
        if let Err(e) = write_xattr(path, x) {
            warn("set extended attribute", e);
        }
    }
    if node.kind != NodeKind::Symlink {
        // After chown, which clears set-id bits.
        // SAFETY: c is a valid path.
        if unsafe { libc::chmod(c.as_ptr(), node.mode as libc::mode_t) } != 0 {
            return Err(ArchiveError::io("set mode", path, std::io::Error::last_os_error()));
        }
    }
    // No recorded atime (the default): use the mtime, as a fresh copy would.
    let atime = if node.atime == Timestamp::default() { node.mtime } else { node.atime };
    let times = [timespec(atime), timespec(node.mtime)];
    // SAFETY: c is a valid path and times has two entries.
    let rc =
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        return Err(ArchiveError::io("set times", path, std::io::Error::last_os_error()));
    }
    Ok(())
}
