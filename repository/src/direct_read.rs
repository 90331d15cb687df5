//! Large reads of pack files that bypass the page cache when it does not
//! hold the data.
//!
//! A restore reads every pack once (so does check, for packs too large to
//! read whole): through the page cache that costs a kernel copy of every
//! byte plus filling (and evicting) cache pages the machine will not use
//! again. When the range
//! is not cached, it is read with `O_DIRECT` straight into our buffer;
//! when it is (prefetched with [`will_need`] while earlier ranges were
//! decoded, or left there by a backup), it is copied from the cache
//! without waiting for the disk, then dropped from it. Filesystems
//! without `O_DIRECT` (tmpfs, some FUSE and network filesystems) get a
//! plain read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

/// Below this a plain read is cheaper than the extra calls.
const MIN_DIRECT: usize = 256 << 10;
/// `O_DIRECT` wants offsets, lengths and memory aligned to the device's
/// logical block size; a page covers every common one.
const ALIGN: usize = 4096;

/// Reads up to `length` bytes at `offset` of `f` (fewer only at the end
/// of the file). A large range leaves no pages in the page cache: one not
/// cached is read past it, and one found there (prefetched with
/// [`will_need`], or still cached from a backup) is dropped once copied,
/// since a pack is read once and its pages would only push out ones the
/// machine uses.
pub(crate) fn read_at(f: &File, offset: u64, length: usize) -> io::Result<Vec<u8>> {
    if length >= MIN_DIRECT {
        if let Some(cached) = read_cached(f, offset, length)? {
            advise(f, offset, length as u64, libc::POSIX_FADV_DONTNEED);
            return Ok(cached);
        }
        match read_direct(f, offset, length) {
            Ok(buf) => return Ok(buf),
            // No O_DIRECT here, or stricter alignment than a page.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    read_plain(f, offset, length)
}

/// The whole range if the page cache holds all of it, without blocking
/// on the disk (`RWF_NOWAIT`); `None` otherwise.
fn read_cached(f: &File, offset: u64, length: usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf: Vec<u8> = Vec::with_capacity(length);
    let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: length };
    // SAFETY: iov describes the capacity of `buf`, which outlives the call.
    let n = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, offset as libc::off_t, libc::RWF_NOWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // Not cached, or a kernel or filesystem without RWF_NOWAIT.
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel initialised the first n bytes.
    unsafe { buf.set_len(n as usize) };
    Ok((n as usize == length).then_some(buf))
}

/// Reads the range with `O_DIRECT` (set on the descriptor for this read
/// only): the aligned span around it lands at an aligned address of one
/// buffer, and the wanted bytes are then moved to its start.
fn read_direct(f: &File, offset: u64, length: usize) -> io::Result<Vec<u8>> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = read_aligned(f, offset, length);
    // SAFETY: as above; restores the flags read before.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    result
}

fn read_aligned(f: &File, offset: u64, length: usize) -> io::Result<Vec<u8>> {
    let start = offset - offset % ALIGN as u64;
    let skip = (offset - start) as usize;
    let span = (skip + length).next_multiple_of(ALIGN);
    // Not zeroed first: the device writes it, and only what it wrote is
    // kept.
    let mut buf: Vec<u8> = Vec::with_capacity(span + ALIGN);
    let pad = buf.as_ptr().align_offset(ALIGN);
    let mut got = 0;
    while got < span {
        // SAFETY: the destination lies within the capacity of `buf`
        // (pad + span <= span + ALIGN), which outlives the call.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                buf.as_mut_ptr().add(pad + got).cast(),
                span - got,
                (start + got as u64) as libc::off_t,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
                continue;
            }
        }
        if got % ALIGN != 0 {
            // A short read ends only at the end of the file.
            break;
        }
    }
    let have = got.min(skip + length).saturating_sub(skip);
    // SAFETY: bytes pad..pad + got were written by the kernel; the kept
    // ones are moved to the front, and only they become the length.
    unsafe {
        std::ptr::copy(buf.as_ptr().add(pad + skip), buf.as_mut_ptr(), have);
        buf.set_len(have);
    }
    Ok(buf)
}

/// Starts reading the range into the page cache in the background, so
/// that a [`read_at`] of it soon after copies it from there instead of
/// waiting for the device.
pub(crate) fn will_need(f: &File, offset: u64, length: u64) {
    advise(f, offset, length, libc::POSIX_FADV_WILLNEED);
}

/// A page-cache hint about a range (length 0: to the end of the file);
/// the kernel may ignore it, and so do we when it fails.
pub(crate) fn advise(f: &File, offset: u64, length: u64, advice: libc::c_int) {
    let (Ok(offset), Ok(length)) = (libc::off_t::try_from(offset), libc::off_t::try_from(length)) else {
        return;
    };
    // SAFETY: fadvise on a descriptor we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), offset, length, advice) };
}

fn read_plain(f: &File, offset: u64, length: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; length];
    let mut got = 0;
    while got < length {
        match f.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn every_path_returns_exactly_the_requested_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pack");
        let data = sample(3 << 20);
        std::fs::write(&path, &data).expect("write");
        let f = File::open(&path).expect("open");
        // Unaligned starts and ends, a range running past the end, and the
        // small-read path.
        for (off, len) in
            [(0, 1 << 20), (123, (1 << 20) + 5), (4095, 300 << 10), ((3 << 20) - 1000, 1 << 20), (17, 100)]
        {
            let want = &data[off.min(data.len())..(off + len).min(data.len())];
            assert_eq!(read_at(&f, off as u64, len).expect("read"), want, "offset {off} length {len}");
            assert_eq!(read_aligned_or_plain(&f, off as u64, len), want, "direct, offset {off} length {len}");
        }
    }

    /// Pages of `range` of the file resident in the page cache.
    fn resident(f: &File, range: std::ops::Range<usize>) -> usize {
        let len = f.metadata().expect("stat").len() as usize;
        // SAFETY: a read-only shared mapping of the whole file, unmapped
        // below; mincore writes one byte per page into `pages`.
        unsafe {
            let map =
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0);
            assert_ne!(map, libc::MAP_FAILED, "mmap");
            let mut pages = vec![0u8; len.div_ceil(4096)];
            assert_eq!(libc::mincore(map, len, pages.as_mut_ptr()), 0, "mincore");
            libc::munmap(map, len);
            pages[range.start / 4096..range.end / 4096].iter().filter(|p| *p & 1 == 1).count()
        }
    }

    #[test]
    fn a_prefetched_range_is_read_from_the_cache_and_then_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pack");
        let data = sample(4 << 20);
        std::fs::write(&path, &data).expect("write");
        let f = File::open(&path).expect("open");
        f.sync_all().expect("fsync");
        advise(&f, 0, 0, libc::POSIX_FADV_DONTNEED);
        if resident(&f, 0..data.len()) != 0 {
            eprintln!("this filesystem keeps pages despite DONTNEED (tmpfs?): nothing to check");
            return;
        }
        let (off, len) = (4096 * 10 + 5, 2 << 20);
        will_need(&f, off as u64, len as u64);
        let mut waited = 0;
        while resident(&f, off..off + len) < len / 4096 - 1 && waited < 500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        assert_eq!(read_at(&f, off as u64, len).expect("read"), &data[off..off + len]);
        assert_eq!(resident(&f, off + 4096..off + len - 4096), 0, "the range read stays in the page cache");
    }

    /// The direct path itself (where the filesystem has it).
    fn read_aligned_or_plain(f: &File, off: u64, len: usize) -> Vec<u8> {
        match read_direct(f, off, len) {
            Ok(b) => b,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => read_plain(f, off, len).expect("plain"),
            Err(e) => panic!("direct read: {e}"),
        }
    }
}
