//! Which entries a backup leaves out: exclude patterns, ignore files,
//! marker files, size limits.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use walkdir::DirEntry;

use crate::error::ArchiveError;
use crate::options::BackupOptions;

/// The file that marks a cache directory (https://bford.info/cachedir/).
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
/// Ignore file that is always honoured, in gitignore syntax.
pub(crate) const ARCH_IGNORE: &str = ".archignore";

/// Reads a list file (exclude patterns, or paths): one entry per line;
/// blank lines and lines starting with `#` are skipped, surrounding
/// whitespace is trimmed.
pub fn read_list_file(path: &Path) -> Result<Vec<String>, ArchiveError> {
    let text = std::fs::read_to_string(path).map_err(|e| ArchiveError::io("read list file", path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Applies the selection options while the scanner walks. Must see the
/// entries in walk order (it keeps the ignore files of the current
/// directory chain).
pub(crate) struct Selector {
    globs: GlobSet,
    markers: Vec<(String, Option<&'static [u8]>)>,
    git_ignore: bool,
    /// Ignore rules of the directories above the current entry: (depth of
    /// the directory holding the files, rules).
    ignores: Vec<(usize, Gitignore)>,
    /// Ignore files that had invalid lines (reported as warnings).
    pub(crate) problems: Vec<(PathBuf, String)>,
}

/// Turns a restic-style pattern into a glob on absolute paths: a pattern
/// starting with `/` is anchored at the root; any other pattern matches at
/// any depth (`*.o`, `cache`, `build/out`). `*` does not cross `/`; `**`
/// does. A matching directory is left out with everything below it.
fn glob_for(pattern: &str) -> String {
    let p = pattern.trim_end_matches('/');
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("**/{p}")
    }
}

/// Compiles patterns (each with "ignore case") in that language; `what`
/// ("exclude", "include") names them in errors.
pub(crate) fn glob_set(what: &str, patterns: &[(&String, bool)]) -> Result<GlobSet, ArchiveError> {
    let mut set = GlobSetBuilder::new();
    for (pattern, insensitive) in patterns {
        let glob = GlobBuilder::new(&glob_for(pattern))
            .literal_separator(true)
            .case_insensitive(*insensitive)
            .backslash_escape(true)
            .build()
            .map_err(|e| ArchiveError::Invalid(format!("{what} pattern {pattern:?}: {e}")))?;
        set.add(glob);
    }
    set.build().map_err(|e| ArchiveError::Invalid(format!("{what} patterns: {e}")))
}

impl Selector {
    pub(crate) fn new(opts: &BackupOptions) -> Result<Selector, ArchiveError> {
        let cases: Vec<_> = opts
            .excludes
            .iter()
            .map(|p| (p, false))
            .chain(opts.iexcludes.iter().map(|p| (p, true)))
            .collect();
        let globs = glob_set("exclude", &cases)?;
        let mut markers: Vec<_> = opts.exclude_if_present.iter().map(|n| (n.clone(), None)).collect();
        if opts.exclude_caches {
            markers.push((CACHEDIR_TAG.to_string(), Some(CACHEDIR_SIGNATURE)));
        }
        for (name, _) in &markers {
            if name.is_empty() || name.contains('/') {
                return Err(ArchiveError::Invalid(format!(
                    "--exclude-if-present {name:?}: give a file name without slashes"
                )));
            }
        }
        Ok(Selector {
            globs,
            markers,
            git_ignore: opts.git_ignore,
            ignores: Vec::new(),
            problems: Vec::new(),
        })
    }

    /// Whether to leave `e` (and, for a directory, everything below) out.
    pub(crate) fn excluded(&mut self, e: &DirEntry) -> bool {
        let depth = e.depth();
        // Rules of directories at this depth or deeper do not apply here.
        while self.ignores.last().is_some_and(|(d, _)| *d >= depth) {
            self.ignores.pop();
        }
        let path = e.path();
        let is_dir = e.file_type().is_dir();
        if self.globs.is_match(path) {
            return true;
        }
        // The deepest ignore file that has an opinion decides, as in git.
        for (_, gi) in self.ignores.iter().rev() {
            let m = gi.matched(path, is_dir);
            if m.is_ignore() {
                return true;
            }
            if m.is_whitelist() {
                break;
            }
        }
        if is_dir {
            if self.markers.iter().any(|(name, sig)| has_marker(path, name, *sig)) {
                return true;
            }
            self.load_ignores(path, depth);
        }
        false
    }

    fn load_ignores(&mut self, dir: &Path, depth: usize) {
        let mut names = Vec::with_capacity(2);
        if self.git_ignore {
            names.push(".gitignore");
        }
        // Last, so its rules win over .gitignore's.
        names.push(ARCH_IGNORE);
        let mut builder: Option<GitignoreBuilder> = None;
        for name in names {
            let file = dir.join(name);
            if !file.is_file() {
                continue;
            }
            let b = builder.get_or_insert_with(|| GitignoreBuilder::new(dir));
            if let Some(err) = b.add(&file) {
                self.problems.push((file, format!("ignore file has invalid lines: {err}")));
            }
        }
        if let Some(b) = builder {
            match b.build() {
                Ok(gi) if !gi.is_empty() => self.ignores.push((depth, gi)),
                Ok(_) => {}
                Err(err) => self.problems.push((dir.to_path_buf(), format!("ignore rules: {err}"))),
            }
        }
    }
}

fn has_marker(dir: &Path, name: &str, signature: Option<&[u8]>) -> bool {
    let file = dir.join(name);
    match signature {
        None => std::fs::symlink_metadata(&file).is_ok(),
        Some(sig) => {
            use std::io::Read;
            let mut head = vec![0u8; sig.len()];
            std::fs::File::open(&file).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == sig
        }
    }
}

/// Walks `top` in name order without following symlinks (a symlink given
/// as the path itself is saved as a symlink, not walked), leaving out what
/// the options and `selector` exclude, with the subtrees below them.
pub(crate) fn walk_selected<'a>(
    top: &Path,
    opts: &'a BackupOptions,
    selector: &'a mut Selector,
) -> impl Iterator<Item = walkdir::Result<DirEntry>> + 'a {
    let excludes = &opts.exclude_paths;
    walkdir::WalkDir::new(top)
        .follow_links(false)
        .follow_root_links(false)
        .same_file_system(opts.one_file_system)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
        .into_iter()
        .filter_entry(move |e| !(excludes.iter().any(|x| x == e.path()) || selector.excluded(e)))
}

/// Whether a file is over the size limit.
pub(crate) fn too_large(md: &std::fs::Metadata, limit: Option<u64>) -> bool {
    md.is_file() && limit.is_some_and(|l| md.size() > l)
}
