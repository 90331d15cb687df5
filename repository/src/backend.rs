use std::fmt;
use std::time::Duration;

use crate::error::BackendError;
use crate::staging::StagingFile;

/// The kinds of objects a repository stores. Each maps to a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The single `config` object.
    Config,
    /// `keys/<id>`: password-wrapped master keys.
    Key,
    /// `snapshots/<id>`.
    Snapshot,
    /// `index/<id>`.
    Index,
    /// `data/<2 hex>/<id>`: pack files.
    Pack,
    /// `locks/<id>`.
    Lock,
}

impl FileKind {
    /// Every kind, in the order `init` creates their folders.
    pub const ALL: [FileKind; 6] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Pack,
        FileKind::Lock,
    ];

    /// Folder name (or file name for config) inside the repository.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "data",
            FileKind::Lock => "locks",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Config => "config",
            FileKind::Key => "key",
            FileKind::Snapshot => "snapshot",
            FileKind::Index => "index",
            FileKind::Pack => "pack",
            FileKind::Lock => "lock",
        })
    }
}

/// A stored object's name and size, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The object's name (64 hex characters, or "config").
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Storage for a repository's objects.
///
/// The contract, which every backend (local, S3, SFTP, REST) must honour:
///
/// - Objects are whole and written once. [`Backend::create`] stores all of
///   `data` under a name or fails; a reader never sees a partial object, and
///   a name is never rewritten with different content (content-addressed
///   names make a second create of the same name harmless; backends may
///   return `AlreadyExists` or succeed).
/// - Durability: when `create` returns `Ok`, the object survives a crash of
///   this process and of the machine (local: data and directory fsynced).
/// - [`Backend::read_range`] returns exactly the requested bytes or an error
///   (`ShortRead` if the object is shorter).
/// - [`Backend::list`] returns every object of a kind that was fully created
///   before the call started; it never lists temporary files.
/// - [`Backend::delete`] of a missing object is an error (`NotFound`).
/// - All methods are safe to call from many threads at once.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A human-readable location, used in messages.
    fn location(&self) -> &str;
    /// Whether a repository exists here (its config object is present).
    fn exists(&self) -> Result<bool, BackendError>;
    /// Prepares an empty location to hold a repository (folders, buckets).
    fn create_layout(&self) -> Result<(), BackendError>;
    /// Stores a whole object; see the trait docs for the guarantees.
    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError>;
    /// A new, empty [`StagingFile`] to write an object of `kind` into
    /// before its name is known, for [`Backend::create_from_file`].
    ///
    /// The default is an unnamed file in the system temp folder, which a
    /// crash cannot leave behind. Backends that can move a file into place
    /// (local) stage inside the repository instead, under a temporary name
    /// that `list` ignores.
    fn staging_file(&self, _kind: FileKind) -> Result<StagingFile, BackendError> {
        StagingFile::anonymous()
    }
    /// Stores the whole content of `staged` as an object, with the same
    /// guarantees as [`Backend::create`] (whole, durable, never replacing
    /// an existing object with other bytes).
    ///
    /// The default reads the file into memory and calls `create`, so
    /// remote backends work unchanged (at the cost of holding the object in
    /// memory while it uploads). The local backend overrides it to move its
    /// own staging file into place without reading it. Wrappers must
    /// forward it. On return the caller drops `staged`, which removes a
    /// staging file that was not moved.
    fn create_from_file(
        &self,
        kind: FileKind,
        name: &str,
        staged: &mut StagingFile,
    ) -> Result<(), BackendError> {
        let data = staged.read_all()?;
        self.create(kind, name, &data)
    }
    /// Removes temporary files that a crashed writer left (a staging file
    /// of a killed backup, a half-written object) and that were last
    /// written more than `older_than` ago; returns how many. Only for
    /// callers that hold the repository exclusively (prune): a temporary
    /// file of a running writer would otherwise go. Backends whose writes
    /// leave nothing behind keep the default, which removes nothing.
    fn remove_stale_temp_files(&self, _older_than: Duration) -> Result<u64, BackendError> {
        Ok(0)
    }
    /// Reads a whole object.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError>;
    /// Reads a whole object into `buf`, replacing what it held. A backend
    /// that can read into the caller's buffer reuses its capacity, so a
    /// caller reading many packs keeps one buffer instead of allocating one
    /// per pack; the default reads into a new buffer.
    fn read_into(&self, kind: FileKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        *buf = self.read(kind, name)?;
        Ok(())
    }
    /// Reads `length` bytes at `offset`.
    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError>;
    /// Lists every object of a kind.
    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError>;
    /// Deletes an object.
    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError>;
    /// How many calls this backend is configured to serve at once (for
    /// remote backends, `-o connections=N`). Callers size their upload and
    /// read pools from it; more threads than this only wait.
    fn connections(&self) -> usize {
        2
    }
    /// Tells a caching wrapper ([`CachedBackend`](crate::CachedBackend))
    /// which packs hold tree blobs, so it keeps those locally: the whole
    /// set after the index is loaded (`complete`, and cached packs outside
    /// it may go), or one more before a new tree pack is stored. Backends
    /// without a cache ignore it; wrappers pass it on.
    fn tree_packs(&self, _packs: &[String], _complete: bool) {}
    /// A hint that these byte ranges of an object will be read soon: a
    /// backend that can fetch them in the background starts to (a local
    /// one has the kernel read them into the page cache), so the reads
    /// that follow do not wait for the device. It never fails; the reads
    /// report what went wrong. Backends that cannot ignore it; wrappers
    /// pass it on.
    fn prefetch(&self, _kind: FileKind, _name: &str, _ranges: &[std::ops::Range<u64>]) {}
}

/// `buf` as the answer to a read of `length` bytes at `offset` of an
/// object: cut to `length`, or [`BackendError::ShortRead`] when the object
/// ended first. Every backend's `read_range` ends here, so the contract's
/// "exactly the requested bytes or an error" holds in one place.
pub(crate) fn exact_range(
    mut buf: Vec<u8>,
    kind: FileKind,
    name: &str,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, BackendError> {
    let got = buf.len() as u64;
    if got < length {
        return Err(BackendError::ShortRead { kind, name: name.to_string(), offset, want: length, got });
    }
    buf.truncate(length as usize);
    Ok(buf)
}
