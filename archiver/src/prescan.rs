//! A quick walk beside the backup that counts what will be read, so
//! progress can show a percentage and an ETA. It applies the same selection
//! and reports running totals; it never blocks the backup and stops on cancel.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use walkdir::WalkDir;

use crate::error::ArchiveError;
use crate::options::BackupOptions;
use crate::progress::Progress;
use crate::scope::Scope;
use crate::select::{too_large, Selector};

pub(crate) fn run(
    scope: &Scope,
    paths: &[PathBuf],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let mut selector = Selector::new(opts)?;
    let (mut files, mut bytes, mut seen) = (0u64, 0u64, 0u64);
    for top in paths {
        let excludes = &opts.exclude_paths;
        let walker = WalkDir::new(top)
            .follow_links(false)
            // A symlink given as a path is saved as a symlink, not walked.
            .follow_root_links(false)
            .same_file_system(opts.one_file_system)
            .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
            .into_iter()
            .filter_entry(|e| !(excludes.iter().any(|x| x == e.path()) || selector.excluded(e)));
        for entry in walker.flatten() {
            if scope.is_cancelled() {
                return Ok(());
            }
            if entry.file_type().is_file() {
                let Ok(md) = entry.metadata() else { continue };
                if too_large(&md, opts.exclude_larger_than) {
                    continue;
                }
                files += 1;
                bytes += md.len();
            }
            seen += 1;
            if seen.is_multiple_of(1000) {
                progress.scan_progress(files, bytes, false);
            }
        }
    }
    progress.scan_progress(files, bytes, true);
    Ok(())
}
