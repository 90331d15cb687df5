//! `dump`: a file's content, or a directory as a tar or zip stream, written
//! straight from the repository (nothing is restored to disk, and at most
//! one blob per file is held in memory).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use arch_index::BlobType;
use arch_repository::{Node, NodeKind, Repository, Timestamp};

use crate::browse::{escape_path, subtree_of, walk_tree, ContentReader, WalkControl};
use crate::error::ArchiveError;

/// Archive format of a directory dump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// POSIX tar with GNU long names and PAX records for nanosecond mtimes
    /// and xattrs (GNU tar and bsdtar read both). Keeps modes, owners,
    /// symlinks, hard links, fifos and devices.
    #[default]
    Tar,
    /// Zip (deflate). Keeps modes, mtimes (2-second resolution) and
    /// symlinks; hard links become copies; fifos, devices and sockets are
    /// left out (zip has no way to store them); names that are not UTF-8
    /// are stored with U+FFFD.
    Zip,
}

/// What a dump wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpStats {
    /// Archive entries written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries the format cannot hold (sockets; for zip also fifos and
    /// devices), left out.
    pub skipped: u64,
}

/// Writes the content of the file `node` to `out`, blob by blob. Returns
/// the number of bytes written. Fails if `node` is not a regular file.
pub fn dump_file(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64, ArchiveError> {
    if node.kind != NodeKind::File {
        return Err(ArchiveError::Invalid(format!("{} is not a regular file", escape_path(&node.name))));
    }
    check_size(repo, node, &node.name)?;
    let mut r = ContentReader::new(repo, node.content.clone());
    io::copy(&mut r, out).map_err(|e| write_error(e, "dump"))
}

/// Writes `node` as an archive to `out`: for a directory, everything
/// inside it with paths relative to it (so extracting into `T` gives what
/// a restore of the directory into `T` gives); for any other node, one
/// entry named after it.
pub fn dump_archive(
    repo: &Repository,
    node: &Node,
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<DumpStats, ArchiveError> {
    let mut w: Box<dyn EntrySink + '_> = match format {
        ArchiveFormat::Tar => Box::new(TarSink { b: tar::Builder::new(out), links: HashMap::new() }),
        ArchiveFormat::Zip => Box::new(ZipSink { z: zip::ZipWriter::new_stream(out) }),
    };
    let mut stats = DumpStats::default();
    if node.kind == NodeKind::Dir {
        let sub = subtree_of(node, &node.name)?;
        walk_tree(repo, &sub, b"", &mut |path, n| {
            w.entry(repo, &path[1..], n, &mut stats)?;
            Ok(WalkControl::Continue)
        })?;
    } else {
        w.entry(repo, &node.name, node, &mut stats)?;
    }
    w.finish()?;
    Ok(stats)
}

fn write_error(e: io::Error, what: &str) -> ArchiveError {
    // A blob read failure travels through io::Read as an "other" error
    // wrapping the repository error; unwrap it so it keeps its meaning.
    match e.downcast::<arch_repository::RepoError>() {
        Ok(r) => ArchiveError::Repo(r),
        Err(e) => ArchiveError::io("write", format!("<{what} output>"), e),
    }
}

/// The blobs of a file must add up to its size, or an archive header
/// written up front would lie.
fn check_size(repo: &Repository, node: &Node, path: &[u8]) -> Result<(), ArchiveError> {
    let mut total = 0u64;
    for id in &node.content {
        total += u64::from(repo.locate(BlobType::Data, id)?.blob.raw_length);
    }
    if total != node.size {
        return Err(ArchiveError::Repo(arch_repository::RepoError::Corrupt {
            what: format!("file {}", escape_path(path)),
            detail: format!("blobs add up to {total} bytes but the node says {}", node.size),
        }));
    }
    Ok(())
}

trait EntrySink {
    fn entry(
        &mut self,
        repo: &Repository,
        path: &[u8],
        n: &Node,
        stats: &mut DumpStats,
    ) -> Result<(), ArchiveError>;
    fn finish(self: Box<Self>) -> Result<(), ArchiveError>;
}

struct TarSink<W: Write> {
    b: tar::Builder<W>,
    /// (device, inode) of hardlinked files -> the first path written.
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "<len> <key>=<value>\n", where <len> counts the whole record,
    // its own digits included.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() != rest.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

impl<W: Write> EntrySink for TarSink<W> {
    fn entry(
        &mut self,
        repo: &Repository,
        path: &[u8],
        n: &Node,
        stats: &mut DumpStats,
    ) -> Result<(), ArchiveError> {
        use tar::EntryType;
        let io_err = |e| write_error(e, "tar");
        let p = Path::new(OsStr::from_bytes(path));
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode);
        h.set_uid(u64::from(n.uid));
        h.set_gid(u64::from(n.gid));
        // Names longer than the header's 32 bytes are left out; the ids stay.
        let _ = h.set_username(&n.user);
        let _ = h.set_groupname(&n.group);
        h.set_mtime(n.mtime.0.max(0) as u64);
        h.set_size(0);
        let mut pax = Vec::new();
        if n.mtime.1 != 0 && n.mtime.0 >= 0 {
            pax_record(&mut pax, "mtime", format!("{}.{:09}", n.mtime.0, n.mtime.1).as_bytes());
        }
        for x in &n.xattrs {
            if let Ok(name) = std::str::from_utf8(&x.name) {
                pax_record(&mut pax, &format!("SCHILY.xattr.{name}"), &x.value);
            }
        }
        let hardlink = match n.kind {
            NodeKind::File if n.links > 1 => {
                let key = (n.device, n.inode);
                match self.links.get(&key) {
                    Some(first) => Some(first.clone()),
                    None => {
                        self.links.insert(key, path.to_vec());
                        None
                    }
                }
            }
            _ => None,
        };
        if n.kind == NodeKind::Socket {
            stats.skipped += 1;
            return Ok(());
        }
        if !pax.is_empty() {
            let mut ph = tar::Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(pax.len() as u64);
            self.b.append_data(&mut ph, "././@PaxHeader", &pax[..]).map_err(io_err)?;
        }
        stats.entries += 1;
        if let Some(first) = hardlink {
            h.set_entry_type(EntryType::Link);
            return self.b.append_link(&mut h, p, Path::new(OsStr::from_bytes(&first))).map_err(io_err);
        }
        match n.kind {
            NodeKind::File => {
                check_size(repo, n, path)?;
                h.set_entry_type(EntryType::Regular);
                h.set_size(n.size);
                let r = ContentReader::new(repo, n.content.clone());
                self.b.append_data(&mut h, p, r).map_err(io_err)?;
                stats.bytes += n.size;
                Ok(())
            }
            NodeKind::Dir => {
                h.set_entry_type(EntryType::Directory);
                self.b.append_data(&mut h, p, io::empty()).map_err(io_err)
            }
            NodeKind::Symlink => {
                h.set_entry_type(EntryType::Symlink);
                let target = n.target.clone().unwrap_or_default();
                self.b.append_link(&mut h, p, Path::new(OsStr::from_bytes(&target))).map_err(io_err)
            }
            NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                h.set_entry_type(match n.kind {
                    NodeKind::Fifo => EntryType::Fifo,
                    NodeKind::Chardev => EntryType::Char,
                    _ => EntryType::Block,
                });
                if n.kind != NodeKind::Fifo {
                    h.set_device_major(major(n.rdev) as u32).map_err(io_err)?;
                    h.set_device_minor(minor(n.rdev) as u32).map_err(io_err)?;
                }
                self.b.append_data(&mut h, p, io::empty()).map_err(io_err)
            }
            NodeKind::Socket => unreachable!("skipped above"),
        }
    }

    fn finish(self: Box<Self>) -> Result<(), ArchiveError> {
        let mut w = self.b.into_inner().map_err(|e| write_error(e, "tar"))?;
        w.flush().map_err(|e| write_error(e, "tar"))
    }
}

struct ZipSink<W: Write> {
    z: zip::ZipWriter<zip::write::StreamWriter<W>>,
}

fn zip_time(t: Timestamp) -> Option<zip::DateTime> {
    use chrono::{Datelike, TimeZone, Timelike};
    let local = chrono::Local.timestamp_opt(t.0, 0).single()?;
    zip::DateTime::from_date_and_time(
        u16::try_from(local.year()).ok()?,
        local.month() as u8,
        local.day() as u8,
        local.hour() as u8,
        local.minute() as u8,
        local.second() as u8,
    )
    .ok()
}

fn zip_error(e: zip::result::ZipError) -> ArchiveError {
    match e {
        zip::result::ZipError::Io(e) => write_error(e, "zip"),
        e => ArchiveError::io("write", "<zip output>", io::Error::other(e)),
    }
}

impl<W: Write> EntrySink for ZipSink<W> {
    fn entry(
        &mut self,
        repo: &Repository,
        path: &[u8],
        n: &Node,
        stats: &mut DumpStats,
    ) -> Result<(), ArchiveError> {
        let name = String::from_utf8_lossy(path).into_owned();
        let mut opts = zip::write::SimpleFileOptions::default().unix_permissions(n.mode);
        if let Some(t) = zip_time(n.mtime) {
            opts = opts.last_modified_time(t);
        }
        match n.kind {
            NodeKind::File => {
                check_size(repo, n, path)?;
                let opts = opts
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(n.size >= u64::from(u32::MAX));
                self.z.start_file(name, opts).map_err(zip_error)?;
                let mut r = ContentReader::new(repo, n.content.clone());
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let k = r.read(&mut buf).map_err(|e| write_error(e, "zip"))?;
                    if k == 0 {
                        break;
                    }
                    self.z.write_all(&buf[..k]).map_err(|e| write_error(e, "zip"))?;
                }
                stats.bytes += n.size;
            }
            NodeKind::Dir => self.z.add_directory(format!("{name}/"), opts).map_err(zip_error)?,
            NodeKind::Symlink => {
                let target = String::from_utf8_lossy(n.target.as_deref().unwrap_or_default()).into_owned();
                self.z.add_symlink(name, target, opts).map_err(zip_error)?;
            }
            _ => {
                stats.skipped += 1;
                return Ok(());
            }
        }
        stats.entries += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ArchiveError> {
        let w = self.z.finish().map_err(zip_error)?;
        let mut inner = w.into_inner();
        inner.flush().map_err(|e| write_error(e, "zip"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pax_record_lengths_count_themselves() {
        for value_len in 0..300 {
            let mut out = Vec::new();
            super::pax_record(&mut out, "mtime", &vec![b'1'; value_len]);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "{text:?}");
        }
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        // makedev(8, 1) and makedev(259, 70000)
        assert_eq!((super::major(0x801), super::minor(0x801)), (8, 1));
        let dev = ((259u64 & 0xfff) << 8) | ((70000u64 & 0xff) | ((70000u64 & !0xff) << 12));
        assert_eq!((super::major(dev), super::minor(dev)), (259, 70000));
    }
}
