//! How the FileSaver reads a file: `read(2)` into a reused buffer (the
//! default), or a read-only memory map chunked in place (opt-in: no copy
//! into a buffer, but a file truncated by another process while it is
//! mapped kills the backup with SIGBUS, which `read` turns into a short
//! read). Either way, a file that was not in the page cache before the
//! backup read it is dropped from it afterwards, so a nightly backup does
//! not push the machine's working set out of memory (and files that are in
//! the working set stay cached).

use std::fs::File;
use std::os::unix::io::AsRawFd;

/// How backup reads file content; see [`crate::BackupOptions::read_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadMode {
    /// `read(2)` into a reused buffer.
    #[default]
    Read,
    /// Map each regular file read-only and chunk the mapping in place.
    Mmap,
}

impl std::str::FromStr for ReadMode {
    type Err = String;
    fn from_str(s: &str) -> Result<ReadMode, String> {
        match s {
            "read" => Ok(ReadMode::Read),
            "mmap" => Ok(ReadMode::Mmap),
            _ => Err(format!("unknown read mode {s:?}: use read or mmap")),
        }
    }
}

/// A read-only mapping of a whole file, unmapped on drop.
pub(crate) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; sharing or sending the
// pointer is as safe as sharing a `&[u8]`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (which must be > 0).
    pub(crate) fn new(file: &File, len: usize) -> std::io::Result<Mapping> {
        // SAFETY: a fresh private read-only mapping of a valid descriptor;
        // the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    /// [`Mapping::new`], for reading front to back (the kernel reads
    /// ahead).
    pub(crate) fn sequential(file: &File, len: usize) -> std::io::Result<Mapping> {
        let map = Mapping::new(file, len)?;
        // SAFETY: ptr/len is the mapping just made. Only a hint: failure
        // changes nothing.
        unsafe { libc::madvise(map.ptr, map.len, libc::MADV_SEQUENTIAL) };
        Ok(map)
    }

    /// Unmaps the pages from this process (they stay in the page cache
    /// until [`drop_cache`]), so the cache can actually drop them.
    pub(crate) fn release(&self) {
        // SAFETY: ptr/len is this mapping; nothing borrows it any more
        // (callers release after their last use of bytes()), and reading
        // it again would just fault the pages back in.
        unsafe { libc::madvise(self.ptr, self.len, libc::MADV_DONTNEED) };
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is len readable bytes, alive as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in new.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// Whether any of the first 64 MiB of `file` (`len` bytes) is in the page
/// cache: then someone else uses it, and the backup leaves it there.
pub(crate) fn is_cached(file: &File, len: u64) -> bool {
    let len = len.min(64 << 20) as usize;
    if len == 0 {
        return false;
    }
    let Ok(map) = Mapping::new(file, len) else { return false };
    let page = 4096usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: the mapping is len bytes and vec has one byte per page of it
    // (the page size is at least 4096, so this is enough).
    let rc = unsafe { libc::mincore(map.ptr, len, vec.as_mut_ptr()) };
    rc == 0 && vec.iter().any(|&b| b & 1 != 0)
}

/// Tells the kernel the file's cached pages are no longer needed.
pub(crate) fn drop_cache(file: &File) {
    // SAFETY: a hint on a valid descriptor; failure changes nothing.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}
