//! A quick walk beside the backup that counts what will be read, so
//! progress can show a percentage and an ETA. It applies the same selection
//! and reports running totals; it never blocks the backup and stops on cancel.

use std::path::PathBuf;

use crate::error::ArchiveError;
use crate::options::BackupOptions;
use crate::progress::Progress;
use crate::scope::Scope;
use crate::select::{too_large, walk_selected, Selector};

pub(crate) fn run(
    scope: &Scope,
    paths: &[PathBuf],
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let mut selector = Selector::new(opts)?;
    let (mut files, mut bytes, mut seen) = (0u64, 0u64, 0u64);
    for top in paths {
        for entry in walk_selected(top, opts, &mut selector).flatten() {
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
