use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::backend::{exact_range, Backend, FileInfo, FileKind};
use crate::error::BackendError;
use crate::local_staging::{create_staging, drop_cache, move_no_replace, remove_stale_in};
use crate::staging::StagingFile;

/// A repository in a local directory.
///
/// Every object is first written to a staging file ([`Backend::staging_file`],
/// in the kind's top folder: `data/` for packs), synced, moved into place
/// without ever replacing an object, and the folder synced, so a crash
/// leaves either the whole object or none (at most a `.tmp-*` file, which
/// `list` ignores and [`Backend::remove_stale_temp_files`] clears). Files
/// are created 0600 and folders 0700: a
/// repository holds nothing readable without a key, but there is no reason
/// to share it.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    location: String,
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        let root = root.into();
        let location = root.display().to_string();
        LocalBackend { root, location }
    }

    /// The repository folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.clone(),
            FileKind::Pack => self.root.join("data").join(name.get(..2).unwrap_or("xx")),
            _ => self.root.join(kind.dir()),
        }
    }

    fn path_of(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.join("config"),
            _ => self.dir_of(kind, name).join(name),
        }
    }

    /// Where staging files of `kind` are written: the kind's top folder,
    /// which `list` never reads file names from for packs (they live one
    /// level down) and which holds them under a `.tmp-` name otherwise.
    fn staging_dir(&self, kind: FileKind) -> PathBuf {
        match kind {
            FileKind::Config => self.root.clone(),
            _ => self.root.join(kind.dir()),
        }
    }

    /// Where object `name` of `kind` lives, if the name is valid.
    fn checked_path(&self, kind: FileKind, name: &str) -> Result<PathBuf, BackendError> {
        let path = self.path_of(kind, name);
        if valid_name(kind, name) {
            return Ok(path);
        }
        Err(BackendError::Io {
            op: "create",
            path,
            source: io::Error::new(io::ErrorKind::InvalidInput, "invalid object name"),
        })
    }

    fn not_found(&self, kind: FileKind, name: &str) -> BackendError {
        BackendError::NotFound { kind, name: name.to_string(), location: self.location.clone() }
    }

    fn io(&self, kind: FileKind, name: &str, op: &'static str, path: &Path, e: io::Error) -> BackendError {
        if e.kind() == io::ErrorKind::NotFound {
            self.not_found(kind, name)
        } else {
            BackendError::Io { op, path: path.to_path_buf(), source: e }
        }
    }
}

fn mkdir(path: &Path) -> Result<(), BackendError> {
    match fs::DirBuilder::new().mode(0o700).recursive(true).create(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(BackendError::Io { op: "create directory", path: path.to_path_buf(), source: e }),
    }
}

pub(crate) fn valid_name(kind: FileKind, name: &str) -> bool {
    match kind {
        FileKind::Config => name == "config",
        _ => name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> &str {
        &self.location
    }

    fn exists(&self) -> Result<bool, BackendError> {
        let p = self.root.join("config");
        match fs::metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BackendError::Io { op: "stat", path: p, source: e }),
        }
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        mkdir(&self.root)?;
        for kind in FileKind::ALL {
            if kind != FileKind::Config {
                mkdir(&self.root.join(kind.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mkdir(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let path = self.checked_path(kind, name)?;
        if kind != FileKind::Config && path.exists() {
            // Content-addressed: the object already holds these bytes.
            return Ok(());
        }
        // One write path for every object: staged, synced, moved into place
        // without replacing anything.
        let mut staged = self.staging_file(kind)?;
        staged.write_all("write", data)?;
        self.create_from_file(kind, name, &mut staged)
    }

    fn staging_file(&self, kind: FileKind) -> Result<StagingFile, BackendError> {
        let dir = self.staging_dir(kind);
        let created = match create_staging(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mkdir(&dir)?;
                create_staging(&dir)
            }
            r => r,
        };
        let (file, path) =
            created.map_err(|e| BackendError::Io { op: "create staging file in", path: dir, source: e })?;
        Ok(StagingFile::named(file, path))
    }

    fn create_from_file(
        &self,
        kind: FileKind,
        name: &str,
        staged: &mut StagingFile,
    ) -> Result<(), BackendError> {
        let path = self.checked_path(kind, name)?;
        let ours = staged.path().filter(|p| p.parent() == Some(self.staging_dir(kind).as_path()));
        let Some(src) = ours.map(Path::to_path_buf) else {
            // Staged elsewhere (another file system, perhaps): copy it.
            return self.create(kind, name, &staged.read_all()?);
        };
        // Data first: the name must never point at bytes a crash could lose.
        staged.file().sync_data().map_err(|e| BackendError::Io {
            op: "sync",
            path: src.clone(),
            source: e,
        })?;
        let dir = self.dir_of(kind, name);
        let mut moved = move_no_replace(&src, &path);
        if matches!(&moved, Err(e) if e.kind() == io::ErrorKind::NotFound) && !dir.is_dir() {
            mkdir(&dir)?;
            moved = move_no_replace(&src, &path);
        }
        match moved {
            Ok(()) => staged.moved(),
            // Content-addressed objects with the same name hold the same
            // bytes: the existing one stays, the staging file goes with
            // `staged`. Only the config may never be written twice.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if kind == FileKind::Config {
                    return Err(BackendError::AlreadyExists {
                        kind,
                        name: name.to_string(),
                        location: self.location.clone(),
                    });
                }
                return Ok(());
            }
            Err(e) => return Err(BackendError::Io { op: "move into place", path, source: e }),
        }
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| BackendError::Io {
            op: "sync directory",
            path: dir,
            source: e,
        })?;
        drop_cache(staged.file());
        Ok(())
    }

    fn remove_stale_temp_files(&self, older_than: std::time::Duration) -> Result<u64, BackendError> {
        let mut dirs = vec![self.root.clone()];
        dirs.extend(
            FileKind::ALL.iter().filter(|k| **k != FileKind::Config).map(|k| self.root.join(k.dir())),
        );
        let data = self.root.join(FileKind::Pack.dir());
        if let Ok(entries) = fs::read_dir(&data) {
            dirs.extend(
                entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
            );
        }
        let mut removed = 0;
        for dir in dirs {
            removed += remove_stale_in(&dir, older_than).map_err(|e| BackendError::Io {
                op: "remove temporary files in",
                path: dir,
                source: e,
            })?;
        }
        Ok(removed)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.path_of(kind, name);
        fs::read(&path).map_err(|e| self.io(kind, name, "read", &path, e))
    }

    fn read_into(&self, kind: FileKind, name: &str, buf: &mut Vec<u8>) -> Result<(), BackendError> {
        let path = self.path_of(kind, name);
        let read = |buf: &mut Vec<u8>| -> io::Result<()> {
            let mut f = File::open(&path)?;
            buf.clear();
            // Room for exactly the file: read_to_end then never grows the
            // buffer past it.
            buf.try_reserve_exact(usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX))?;
            io::Read::read_to_end(&mut f, buf).map(drop)
        };
        read(buf).map_err(|e| self.io(kind, name, "read", &path, e))
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let path = self.path_of(kind, name);
        let f = File::open(&path).map_err(|e| self.io(kind, name, "open", &path, e))?;
        let length_usize = usize::try_from(length)
            .map_err(|_| self.io(kind, name, "read", &path, io::ErrorKind::OutOfMemory.into()))?;
        let buf = crate::direct_read::read_at(&f, offset, length_usize)
            .map_err(|e| self.io(kind, name, "read", &path, e))?;
        exact_range(buf, kind, name, offset, length)
    }

    fn prefetch(&self, kind: FileKind, name: &str, ranges: &[std::ops::Range<u64>]) {
        if let Ok(f) = File::open(self.path_of(kind, name)) {
            for r in ranges {
                crate::direct_read::will_need(&f, r.start, r.end - r.start);
            }
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        if kind == FileKind::Config {
            return Ok(match fs::metadata(self.root.join("config")) {
                Ok(m) => vec![FileInfo { name: "config".into(), size: m.len() }],
                Err(_) => vec![],
            });
        }
        let top = self.root.join(kind.dir());
        // A folder that does not exist (a clone of a repository that never
        // had such objects: git keeps no empty folders) holds nothing.
        if !top.is_dir() {
            return Ok(Vec::new());
        }
        let dirs = if kind == FileKind::Pack {
            let mut v = Vec::new();
            for e in fs::read_dir(&top).map_err(|e| self.io(kind, "", "list", &top, e))? {
                let e = e.map_err(|e| self.io(kind, "", "list", &top, e))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    v.push(e.path());
                }
            }
            v
        } else {
            vec![top]
        };
        let mut out = Vec::new();
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(kind, "", "list", &dir, e)),
            };
            for e in entries {
                let e = e.map_err(|e| self.io(kind, "", "list", &dir, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if !valid_name(kind, &name) {
                    continue;
                }
                // An object deleted since read_dir (a lock released by
                // another process) was not there when the listing ended.
                let size = match e.metadata() {
                    Ok(m) => m.len(),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(self.io(kind, &name, "stat", &e.path(), err)),
                };
                out.push(FileInfo { name, size });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let path = self.path_of(kind, name);
        fs::remove_file(&path).map_err(|e| self.io(kind, name, "delete", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_read_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        assert!(!b.exists().unwrap());
        b.create_layout().unwrap();
        let name = "ab".repeat(32);
        b.create(FileKind::Pack, &name, b"hello world").unwrap();
        assert_eq!(b.read(FileKind::Pack, &name).unwrap(), b"hello world");
        assert_eq!(b.read_range(FileKind::Pack, &name, 6, 5).unwrap(), b"world");
        assert!(matches!(
            b.read_range(FileKind::Pack, &name, 6, 50),
            Err(BackendError::ShortRead { got: 5, .. })
        ));
        assert_eq!(b.list(FileKind::Pack).unwrap(), vec![FileInfo { name: name.clone(), size: 11 }]);
        let path = dir.path().join("repo/data/ab").join(&name);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        b.delete(FileKind::Pack, &name).unwrap();
        assert!(matches!(b.read(FileKind::Pack, &name), Err(BackendError::NotFound { .. })));
        assert!(matches!(b.delete(FileKind::Pack, &name), Err(BackendError::NotFound { .. })));
    }

    /// Reading into a buffer replaces its contents and, once it is large
    /// enough, keeps its allocation; a missing object is NotFound as for
    /// `read`.
    #[test]
    fn read_into_reuses_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create_layout().unwrap();
        let (big, small) = ("ab".repeat(32), "cd".repeat(32));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        b.create(FileKind::Pack, &big, &data).unwrap();
        b.create(FileKind::Pack, &small, b"small").unwrap();
        let mut buf = b"old contents".to_vec();
        b.read_into(FileKind::Pack, &big, &mut buf).unwrap();
        assert_eq!(buf, data);
        assert_eq!(buf.capacity(), data.len(), "room for exactly the file");
        let ptr = buf.as_ptr();
        b.read_into(FileKind::Pack, &small, &mut buf).unwrap();
        assert_eq!(buf, b"small");
        b.read_into(FileKind::Pack, &big, &mut buf).unwrap();
        assert_eq!((buf.as_ptr(), &buf[..]), (ptr, &data[..]), "the same allocation is reused");
        let missing = "ef".repeat(32);
        assert!(matches!(
            b.read_into(FileKind::Pack, &missing, &mut buf),
            Err(BackendError::NotFound { .. })
        ));
    }

    #[test]
    fn config_is_write_once_and_temp_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.create_layout().unwrap();
        b.create(FileKind::Config, "config", b"one").unwrap();
        assert!(matches!(
            b.create(FileKind::Config, "config", b"two"),
            Err(BackendError::AlreadyExists { .. })
        ));
        fs::write(dir.path().join("index").join(format!(".tmp-{}-1", "0".repeat(64))), b"x").unwrap();
        fs::remove_dir(dir.path().join("locks")).unwrap();
        assert!(b.list(FileKind::Lock).unwrap().is_empty(), "a missing folder lists as empty");
        assert!(b.list(FileKind::Index).unwrap().is_empty());
        assert!(b.create(FileKind::Index, "../escape", b"x").is_err());
    }
}
