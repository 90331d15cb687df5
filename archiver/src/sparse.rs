//! Reads a file with holes without reading the holes: the filesystem says
//! where data is (SEEK_DATA/SEEK_HOLE), and holes are produced as zeros.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

/// A reader over a file that serves holes as zeros without reading them.
pub(crate) struct SparseReader {
    file: File,
    pos: u64,
    size: u64,
    /// The current data region [data_start, data_end), if known.
    data_start: u64,
    data_end: u64,
}

impl SparseReader {
    /// `size` is the file's size when it was opened.
    pub(crate) fn new(file: File, size: u64) -> SparseReader {
        SparseReader { file, pos: 0, size, data_start: 0, data_end: 0 }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    fn seek(&self, from: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        // SAFETY: lseek on a valid descriptor has no memory effects.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), from as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Finds the data region at or after `pos`.
    fn locate(&mut self) -> io::Result<()> {
        match self.seek(self.pos, libc::SEEK_DATA)? {
            Some(start) => {
                self.data_start = start;
                self.data_end = self.seek(start, libc::SEEK_HOLE)?.unwrap_or(self.size).min(self.size);
            }
            None => {
                self.data_start = self.size;
                self.data_end = self.size;
            }
        }
        Ok(())
    }
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.size {
            // Data appended after the open is still read, like any file.
            let n = self.file.read_at(buf, self.pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos >= self.data_end {
            self.locate()?;
        }
        if self.pos < self.data_start {
            let n = buf.len().min((self.data_start - self.pos) as usize);
            buf[..n].fill(0);
            self.pos += n as u64;
            return Ok(n);
        }
        let n = buf.len().min((self.data_end - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        if n == 0 {
            // Truncated while reading: the file ends here.
            self.size = self.pos;
            return Ok(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn holes_read_as_zeros_and_data_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut f = File::create(&path).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.seek(SeekFrom::Start(9 << 20)).unwrap();
        f.write_all(b"end").unwrap();
        f.set_len(12 << 20).unwrap();
        drop(f);
        let expected = std::fs::read(&path).unwrap();
        let file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let mut got = Vec::new();
        SparseReader::new(file, size).read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    }
}
