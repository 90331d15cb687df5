//! Staging files: an object written to disk before its name is known (a
//! pack is named by the hash of bytes that are still being appended), then
//! handed to [`Backend::create_from_file`](crate::Backend::create_from_file).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::BackendError;

/// Name prefix of every temporary file a backend writes (`.tmp-...`):
/// never 64 hex characters, so `list` never shows one as an object.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// A fresh temporary name for `stem`: `.tmp-<stem>-<16 random hex digits>`.
pub(crate) fn temp_name(stem: &str) -> io::Result<String> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd)
        .map_err(|e| io::Error::other(format!("no random bytes for a temporary name: {e}")))?;
    Ok(format!("{TMP_PREFIX}{stem}-{:016x}", u64::from_le_bytes(rnd)))
}

/// A file that will become one stored object.
///
/// Guarantees: it starts empty; whatever was written to [`StagingFile::file`]
/// is the object's content when it is stored. A named staging file is
/// removed when this value is dropped, unless a backend moved it into place;
/// an anonymous one has no name to leave behind even if the process dies.
#[derive(Debug)]
pub struct StagingFile {
    file: File,
    path: Option<PathBuf>,
}

impl StagingFile {
    /// An unnamed file in the system temp folder (`O_TMPFILE` where the
    /// file system has it, otherwise created and unlinked at once): the
    /// staging file of backends that upload from memory.
    pub fn anonymous() -> Result<StagingFile, BackendError> {
        let file = tempfile_in_temp_dir()?;
        Ok(StagingFile { file, path: None })
    }

    /// A staging file that already has a name (removed on drop unless
    /// [`StagingFile::moved`] says a backend renamed it into place).
    pub fn named(file: File, path: PathBuf) -> StagingFile {
        StagingFile { file, path: Some(path) }
    }

    /// The open file, for writing the content and for reading it back.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file's name, if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records that the named file was moved into place as an object, so
    /// dropping this value must not remove it.
    pub fn moved(&mut self) {
        self.path = None;
    }

    /// Appends `bytes`; a failure is an error of `op` on this file.
    pub fn write_all(&self, op: &'static str, bytes: &[u8]) -> Result<(), BackendError> {
        (&self.file).write_all(bytes).map_err(|e| BackendError::Io { op, path: self.describe(), source: e })
    }

    /// The whole content, read with positional reads (the write position
    /// is left alone).
    pub fn read_all(&self) -> Result<Vec<u8>, BackendError> {
        let err = |e| BackendError::Io { op: "read staging file", path: self.describe(), source: e };
        let len = self.file.metadata().map_err(err)?.len();
        let len = usize::try_from(len).map_err(|_| err(io::Error::other("staging file too large")))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, 0).map_err(err)?;
        Ok(buf)
    }

    /// The path, or a placeholder naming an unnamed file, for messages.
    pub(crate) fn describe(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| std::env::temp_dir().join("(unnamed staging file)"))
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn tempfile_in_temp_dir() -> Result<File, BackendError> {
    tempfile::tempfile().map_err(|e| BackendError::Io {
        op: "create staging file in",
        path: std::env::temp_dir(),
        source: e,
    })
}
