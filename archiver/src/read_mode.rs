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
    cached_pages(file, len as u64).or_else(|| resident_pages(file, len)).is_some_and(|n| n > 0)
}

/// Pages of the first `len` bytes of `file` in the page cache, from
/// `mincore` on a mapping of them.
fn resident_pages(file: &File, len: usize) -> Option<u64> {
    let map = Mapping::new(file, len).ok()?;
    let page = 4096usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: the mapping is len bytes and vec has one byte per page of it
    // (the page size is at least 4096, so this is enough).
    let rc = unsafe { libc::mincore(map.ptr, len, vec.as_mut_ptr()) };
    (rc == 0).then(|| vec.iter().filter(|&&b| b & 1 != 0).count() as u64)
}

/// Pages of the first `len` bytes of `file` in the page cache, from
/// `cachestat` (Linux 6.5): one call, where asking `mincore` takes a
/// mapping of the file. `None` where the kernel does not have it.
fn cached_pages(file: &File, len: u64) -> Option<u64> {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        /// The same number on every architecture but alpha.
        const SYS_CACHESTAT: libc::c_long = 451;
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            nr_cache: u64,
            nr_dirty: u64,
            nr_writeback: u64,
            nr_evicted: u64,
            nr_recently_evicted: u64,
        }
        let range = Range { off: 0, len };
        let mut stat = Stat::default();
        // SAFETY: cachestat reads `range` and writes `stat`, both live
        // for the call; flags must be 0.
        let rc = unsafe {
            libc::syscall(SYS_CACHESTAT, file.as_raw_fd(), &range as *const Range, &mut stat as *mut Stat, 0)
        };
        if rc == 0 {
            return Some(stat.nr_cache);
        }
    }
    None
}

/// Has the kernel start reading `len` bytes of `file` at `offset` into
/// the page cache in the background.
pub(crate) fn will_need(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else { return };
    // SAFETY: a hint on a valid descriptor; failure changes nothing.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED) };
}

/// Tells the kernel the file's cached pages are no longer needed.
pub(crate) fn drop_cache(file: &File) {
    // SAFETY: a hint on a valid descriptor; failure changes nothing.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_of_asking_the_page_cache_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).expect("write");
        let f = File::open(&path).expect("open");
        f.sync_all().expect("fsync");
        drop_cache(&f);
        let len = 1 << 20;
        if resident_pages(&f, len) != Some(0) {
            eprintln!("this filesystem keeps pages despite DONTNEED (tmpfs?): nothing to check");
            return;
        }
        assert!(!is_cached(&f, len as u64));
        std::io::copy(&mut &f, &mut std::io::sink()).expect("read");
        assert_eq!(resident_pages(&f, len), Some(256));
        assert!(is_cached(&f, len as u64));
        if let Some(n) = cached_pages(&f, len as u64) {
            assert_eq!(n, 256, "cachestat counts the pages mincore sees");
        }
    }
}
