//! Backing up a tree that the caller describes itself (a sync tool's
//! model of a remote folder, an archive, a database's files): names and
//! metadata from [`TreeSource::entries`], content from
//! [`TreeSource::open`]. It runs through the same pipeline as a filesystem
//! backup: same chunking, deduplication, parent-snapshot reuse and
//! cancellation.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arch_repository::{Node, NodeKind, Timestamp};
use crossbeam_channel::Sender;

use crate::context::Ctx;
use crate::dir_state::DirState;
use crate::error::ArchiveError;
use crate::parent::{unchanged, ParentDir};
use crate::scanner::{FileJob, JobSource};
use crate::stats::add;

/// A tree to back up, described by the caller.
///
/// The backup calls [`entries`](TreeSource::entries) for the root (the
/// empty path) and then for every directory entry it returns, depth first,
/// from one thread; [`open`](TreeSource::open) for every regular file whose
/// content it must read. Paths are relative to the tree's root.
///
/// The tree is stored in the snapshot as directory `/NAME` (see
/// [`Backup::tree`](crate::Backup::tree)). Exclude options of
/// [`BackupOptions`](crate::BackupOptions) do not apply: the source decides
/// what it lists.
pub trait TreeSource: Send {
    /// The entries of directory `dir`, in any order. Each [`Node`] needs
    /// `name` (one path component, not "." or ".."), `kind`, and the
    /// metadata to record (`mode`, `mtime`, `size` for files, `target` for
    /// symlinks, ...); `content` and `subtree` are ignored and filled in by
    /// the backup. A file whose `size`, `mtime`, `ctime` and `inode` equal
    /// those in the parent snapshot is not opened again (keep them stable,
    /// or 0).
    ///
    /// An error skips this directory's content and goes to the backup's
    /// [`ErrorPolicy`](crate::ErrorPolicy), as an unreadable directory
    /// does.
    fn entries(&mut self, dir: &Path) -> io::Result<Vec<Node>>;

    /// Opens regular file `path` for reading. An error (here or while
    /// reading) goes to the [`ErrorPolicy`](crate::ErrorPolicy): by default
    /// the file is left out of the snapshot and reported as a warning.
    fn open(&mut self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
}

/// The directory node the tree is stored under.
fn top_node(name: &str) -> Node {
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    node.mode = 0o755;
    node.uid = uid;
    node.gid = gid;
    node.links = 1;
    // Fixed times: the directory does not look changed on every run.
    node.mtime = Timestamp(0, 0);
    node.ctime = Timestamp(0, 0);
    node
}

/// Whether `name` is one valid path component.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// "Scans" a caller's tree into the pipeline.
pub(crate) fn scan_tree(
    ctx: &Ctx<'_>,
    name: &str,
    source: &mut dyn TreeSource,
    file_tx: &Sender<FileJob>,
    tree_tx: &Sender<Arc<DirState>>,
) -> Result<(), ArchiveError> {
    let root = DirState::new(None, None);
    let parent = ParentDir::root(ctx.repo, ctx.parent_tree).child(ctx.repo, name.as_bytes());
    let top = DirState::new(Some(top_node(name)), Some(Arc::clone(&root)));
    let shown = PathBuf::from("/").join(name);
    let mut walker = Walker { ctx, source, file_tx, tree_tx, shown };
    walker.dir(Path::new(""), &top, &parent)?;
    ctx.finish_child(&top, None, tree_tx)?;
    ctx.finish_child(&root, None, tree_tx)
}

struct Walker<'a, 'c> {
    ctx: &'a Ctx<'c>,
    source: &'a mut dyn TreeSource,
    file_tx: &'a Sender<FileJob>,
    tree_tx: &'a Sender<Arc<DirState>>,
    /// Where progress and warnings say the tree is ("/NAME").
    shown: PathBuf,
}

impl Walker<'_, '_> {
    fn dir(&mut self, rel: &Path, dir: &Arc<DirState>, parent: &ParentDir) -> Result<(), ArchiveError> {
        let ctx = self.ctx;
        let entries = match self.source.entries(rel) {
            Ok(e) => e,
            Err(e) => return ctx.file_problem(&self.shown.join(rel), &e),
        };
        for mut node in entries {
            if ctx.scope.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let path = rel.join(std::ffi::OsStr::from_bytes(&node.name));
            let shown = self.shown.join(&path);
            if !valid_name(&node.name) {
                let e = io::Error::other(format!("invalid name {:?}", String::from_utf8_lossy(&node.name)));
                ctx.file_problem(&shown, &e)?;
                continue;
            }
            node.content.clear();
            node.subtree = None;
            if !ctx.with_atime {
                node.atime = Timestamp::default();
            }
            match node.kind {
                NodeKind::Dir => {
                    let old = parent.child(ctx.repo, &node.name);
                    let child = DirState::new(Some(node), Some(Arc::clone(dir)));
                    self.dir(&path, &child, &old)?;
                    ctx.finish_child(&child, None, self.tree_tx)?;
                }
                NodeKind::File => {
                    let old = parent.find(&node.name);
                    if let Some(old) = old.filter(|o| unchanged(o, &node, ctx.rules, ctx.repo)) {
                        node.content = old.content.clone();
                        add(&ctx.stats.files_unmodified, 1);
                        add(&ctx.stats.bytes_total, node.size);
                        ctx.progress.file_done(&shown, node.size);
                        dir.add_pending();
                        ctx.finish_child(dir, Some(node), self.tree_tx)?;
                        continue;
                    }
                    let reader = match self.source.open(&path) {
                        Ok(r) => r,
                        Err(e) => {
                            ctx.file_problem(&shown, &e)?;
                            continue;
                        }
                    };
                    dir.add_pending();
                    let changed = old.is_some();
                    let job = FileJob {
                        path: shown,
                        node,
                        dir: Arc::clone(dir),
                        changed,
                        source: JobSource::Stream(reader),
                        stream_is_whole_backup: false,
                    };
                    ctx.scope.send(self.file_tx, job)?;
                }
                NodeKind::Socket => ctx.progress.skipped(&shown, "socket"),
                NodeKind::Symlink if node.target.is_none() => {
                    ctx.file_problem(&shown, &io::Error::other("symlink without a target"))?;
                }
                NodeKind::Symlink | NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => {
                    add(&ctx.stats.others, 1);
                    ctx.progress.file_done(&shown, 0);
                    dir.add_pending();
                    ctx.finish_child(dir, Some(node), self.tree_tx)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};
    use std::path::Path;
    use std::sync::Arc;

    use arch_repository::{InitOptions, KdfParams, LocalBackend, Node, NodeKind, Repository};

    use super::TreeSource;
    use crate::{find_node, AbortOnError, ArchiveError, Backup};

    /// Root: `ok` (a file), `bad-read` (fails mid-read), `bad-open`,
    /// `link` (a symlink), `a/b` (an invalid name), `sub/` (unlistable).
    struct Faulty;

    struct FailAfter(usize);
    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    fn file(name: &str, size: u64) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        n.mode = 0o600;
        n.size = size;
        n
    }

    impl TreeSource for Faulty {
        fn entries(&mut self, dir: &Path) -> std::io::Result<Vec<Node>> {
            if dir == Path::new("sub") {
                return Err(std::io::Error::other("listing refused"));
            }
            let mut link = Node::new(b"link".to_vec(), NodeKind::Symlink);
            link.target = Some(b"ok".to_vec());
            Ok(vec![
                file("ok", 5),
                file("bad-read", 100_000),
                file("bad-open", 1),
                file("a/b", 1),
                link,
                Node::new(b"sub".to_vec(), NodeKind::Dir),
            ])
        }
        fn open(&mut self, path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
            match path.to_str() {
                Some("ok") => Ok(Box::new(Cursor::new(b"hello".to_vec()))),
                Some("bad-read") => Ok(Box::new(FailAfter(70_000))),
                _ => Err(std::io::Error::other("no such object")),
            }
        }
    }

    fn repo(dir: &Path) -> Repository {
        let opts = InitOptions::default().kdf(KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 });
        Repository::init(Arc::new(LocalBackend::new(dir)), b"pw", &opts).unwrap()
    }

    #[test]
    fn problems_are_warnings_and_the_rest_is_saved() {
        // Other tests count this process's arch-* threads.
        let _serial = crate::test_support::SERIAL.lock();
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let r = Backup::tree(&repo, "remote", Faulty).run().unwrap();
        let mut warned: Vec<String> = r.warnings.iter().map(|w| w.path.display().to_string()).collect();
        warned.sort();
        assert_eq!(warned, ["/remote/a/b", "/remote/bad-open", "/remote/bad-read", "/remote/sub"]);
        let tree = r.snapshot.tree;
        let ok = find_node(&repo, &tree, b"/remote/ok").unwrap();
        assert_eq!((ok.size, ok.mode), (5, 0o600));
        let link = find_node(&repo, &tree, b"/remote/link").unwrap();
        assert_eq!(link.target.as_deref(), Some(&b"ok"[..]));
        assert_eq!(find_node(&repo, &tree, b"/remote/sub").unwrap().kind, NodeKind::Dir);
        assert!(find_node(&repo, &tree, b"/remote/bad-read").is_err(), "a file that failed is left out");
    }

    #[test]
    fn abort_policy_and_bad_names_fail_the_run() {
        let _serial = crate::test_support::SERIAL.lock();
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let e = Backup::tree(&repo, "remote", Faulty).error_policy(Arc::new(AbortOnError)).run().unwrap_err();
        assert!(matches!(e, ArchiveError::Aborted { .. }), "{e}");
        let e = Backup::tree(&repo, "../x", Faulty).run().unwrap_err();
        assert!(matches!(e, ArchiveError::Invalid(_)), "{e}");
        assert!(repo.list_snapshots().unwrap().is_empty());
    }
}
