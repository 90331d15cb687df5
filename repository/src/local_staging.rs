//! How the local backend stages objects in the repository and moves them
//! into place without ever replacing an existing object, and how it clears
//! temporary files a crash left.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::staging::{temp_name, TMP_PREFIX};

/// Creates `<dir>/.tmp-staging-<random>` exclusively, mode 0600, for
/// reading and writing.
pub(crate) fn create_staging(dir: &Path) -> io::Result<(File, std::path::PathBuf)> {
    let path = dir.join(temp_name("staging")?);
    let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
    Ok((file, path))
}

/// Moves `src` to `dst` unless `dst` exists (then `AlreadyExists`, and
/// `src` is left alone). Both are in the same file system.
///
/// `renameat2(RENAME_NOREPLACE)` does it in one step; file systems without
/// it get link + unlink, which also refuses an existing `dst`. Only a file
/// system without hard links falls back to a checked rename, whose window
/// between check and rename can only meet a writer of the same name, that
/// is of the same bytes.
pub(crate) fn move_no_replace(src: &Path, dst: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (s, d) = (c(src)?, c(dst)?);
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            s.as_ptr(),
            libc::AT_FDCWD,
            d.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) {
        return Err(e);
    }
    match fs::hard_link(src, dst) {
        Ok(()) => {
            // The object is in place; a leftover source name is only a
            // temporary file, which prune clears.
            let _ = fs::remove_file(src);
            Ok(())
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK)) => {
            if dst.exists() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(src, dst)
        }
        Err(e) => Err(e),
    }
}

/// Drops a stored file's pages from the page cache (only a hint), so a
/// nightly backup does not push the machine's working set out with packs
/// it will not read again. Call only after the data is synced: dirty pages
/// are not dropped.
pub(crate) fn drop_cache(file: &File) {
    crate::direct_read::advise(file, 0, 0, libc::POSIX_FADV_DONTNEED);
}

/// Removes `.tmp-*` files directly in `dir` last modified more than
/// `older_than` ago; returns how many. A missing folder holds none.
pub(crate) fn remove_stale_in(dir: &Path, older_than: Duration) -> io::Result<u64> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries {
        let e = e?;
        if !e.file_name().as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
            continue;
        }
        let meta = match e.metadata() {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        if meta.is_file() && age > older_than {
            match fs::remove_file(e.path()) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::backend::{Backend, FileKind};
    use crate::error::BackendError;
    use crate::local::LocalBackend;

    const NAME: &str = "abababababababababababababababababababababababababababababababab";

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.create_layout().unwrap();
        (dir, b)
    }

    /// Every `.tmp-*` file anywhere in the repository.
    fn temp_files(root: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    out.push(e.path());
                }
            }
        }
        out
    }

    #[test]
    fn a_staged_object_is_moved_into_place_and_leaves_no_staging_file() {
        let (dir, b) = backend();
        let mut staged = b.staging_file(FileKind::Pack).unwrap();
        let staging_path = staged.path().unwrap().to_path_buf();
        assert_eq!(staging_path.parent().unwrap(), dir.path().join("data"));
        staged.file().write_all(b"pack bytes").unwrap();
        assert!(b.list(FileKind::Pack).unwrap().is_empty(), "a staging file is not an object");
        b.create_from_file(FileKind::Pack, NAME, &mut staged).unwrap();
        drop(staged);
        assert_eq!(b.read(FileKind::Pack, NAME).unwrap(), b"pack bytes");
        assert_eq!(b.list(FileKind::Pack).unwrap().len(), 1);
        let stored = dir.path().join("data/ab").join(NAME);
        assert_eq!(fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(temp_files(dir.path()).is_empty(), "{:?}", temp_files(dir.path()));
    }

    #[test]
    fn create_from_file_never_replaces_an_object() {
        let (dir, b) = backend();
        b.create(FileKind::Pack, NAME, b"first").unwrap();
        let mut staged = b.staging_file(FileKind::Pack).unwrap();
        staged.file().write_all(b"second").unwrap();
        // Same name: content-addressed, so the existing object stands.
        b.create_from_file(FileKind::Pack, NAME, &mut staged).unwrap();
        drop(staged);
        assert_eq!(b.read(FileKind::Pack, NAME).unwrap(), b"first");
        assert!(temp_files(dir.path()).is_empty());

        b.create(FileKind::Config, "config", b"one").unwrap();
        let mut staged = b.staging_file(FileKind::Config).unwrap();
        staged.file().write_all(b"two").unwrap();
        let e = b.create_from_file(FileKind::Config, "config", &mut staged).unwrap_err();
        assert!(matches!(e, BackendError::AlreadyExists { .. }), "{e}");
        drop(staged);
        assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"one");
        assert!(temp_files(dir.path()).is_empty());

        // The low-level move refuses too, leaving both files alone.
        let (src, dst) = (dir.path().join(".tmp-a"), dir.path().join("b"));
        fs::write(&src, b"a").unwrap();
        fs::write(&dst, b"b").unwrap();
        assert_eq!(move_no_replace(&src, &dst).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dst).unwrap(), b"b");
        assert!(src.exists());
    }

    #[test]
    fn a_staging_file_from_elsewhere_is_copied_in() {
        let (dir, b) = backend();
        let mut staged = crate::StagingFile::anonymous().unwrap();
        staged.file().write_all(b"from a temp dir").unwrap();
        b.create_from_file(FileKind::Index, NAME, &mut staged).unwrap();
        assert_eq!(b.read(FileKind::Index, NAME).unwrap(), b"from a temp dir");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn a_crashed_writers_staging_file_is_not_listed_and_is_removed_once_stale() {
        let (dir, b) = backend();
        b.create(FileKind::Pack, NAME, b"object").unwrap();
        // A killed backup: the staging file is never dropped.
        let staged = b.staging_file(FileKind::Pack).unwrap();
        staged.file().write_all(b"half a pack").unwrap();
        let leftover = staged.path().unwrap().to_path_buf();
        std::mem::forget(staged);
        let in_folder = dir.path().join("data/ab").join(format!("{TMP_PREFIX}{NAME}-0123456789abcdef"));
        fs::write(&in_folder, b"half an object").unwrap();
        let names: Vec<String> = b.list(FileKind::Pack).unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, vec![NAME.to_string()]);
        // Fresh: it may belong to a running writer, so it stays.
        assert_eq!(b.remove_stale_temp_files(Duration::from_secs(3600)).unwrap(), 0);
        assert!(leftover.exists());
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        for p in [&leftover, &in_folder] {
            File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(b.remove_stale_temp_files(Duration::from_secs(3600)).unwrap(), 2);
        assert!(temp_files(dir.path()).is_empty());
        assert_eq!(b.read(FileKind::Pack, NAME).unwrap(), b"object");
    }
}
