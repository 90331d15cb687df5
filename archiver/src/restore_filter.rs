//! Which snapshot entries a restore selects: `--include` / `--exclude`
//! patterns (and their case-insensitive variants), matched against the
//! entry's absolute path inside the snapshot.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::GlobSet;

use crate::error::ArchiveError;
use crate::select::glob_set;

/// What to do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Leave it (and, for a directory, everything below) out.
    Skip,
    /// Restore it, and for a directory everything below that is not excluded.
    All,
    /// A directory that no include matches: look inside; it is restored
    /// only if something below it is.
    Tentative,
}

/// The compiled patterns.
pub(crate) struct RestoreFilter {
    includes: Option<GlobSet>,
    excludes: GlobSet,
}

impl RestoreFilter {
    pub(crate) fn new(
        includes: &[String],
        iincludes: &[String],
        excludes: &[String],
        iexcludes: &[String],
    ) -> Result<RestoreFilter, ArchiveError> {
        let inc: Vec<_> =
            includes.iter().map(|p| (p, false)).chain(iincludes.iter().map(|p| (p, true))).collect();
        let exc: Vec<_> =
            excludes.iter().map(|p| (p, false)).chain(iexcludes.iter().map(|p| (p, true))).collect();
        let includes = if inc.is_empty() { None } else { Some(glob_set("include", &inc)?) };
        Ok(RestoreFilter { includes, excludes: glob_set("exclude", &exc)? })
    }

    /// The selection of the entry at `snap_path` (absolute, inside the
    /// snapshot); `inherited` is true below a directory selected with
    /// [`Selection::All`].
    pub(crate) fn select(&self, snap_path: &[u8], is_dir: bool, inherited: bool) -> Selection {
        let path = Path::new(OsStr::from_bytes(snap_path));
        if self.excludes.is_match(path) {
            return Selection::Skip;
        }
        match &self.includes {
            None => Selection::All,
            Some(_) if inherited => Selection::All,
            Some(inc) if inc.is_match(path) => Selection::All,
            Some(_) if is_dir => Selection::Tentative,
            Some(_) => Selection::Skip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(inc: &[&str], exc: &[&str]) -> RestoreFilter {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RestoreFilter::new(&s(inc), &[], &s(exc), &[]).unwrap()
    }

    #[test]
    fn patterns() {
        let x = f(&[], &["*.o", "/src/build"]);
        assert_eq!(x.select(b"/src/a/b.o", false, false), Selection::Skip);
        assert_eq!(x.select(b"/src/build", true, false), Selection::Skip);
        assert_eq!(x.select(b"/other/src/build", true, false), Selection::All);
        let i = f(&["*.txt"], &[]);
        assert_eq!(i.select(b"/a/b.txt", false, false), Selection::All);
        assert_eq!(i.select(b"/a/b.md", false, false), Selection::Skip);
        assert_eq!(i.select(b"/a", true, false), Selection::Tentative);
        assert_eq!(i.select(b"/a/b.md", false, true), Selection::All);
    }
}
