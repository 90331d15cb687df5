use std::path::PathBuf;

/// Options of one backup. Zero means automatic; each default's reason is
/// written on its setter.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct BackupOptions {
    /// Tags recorded in the snapshot.
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's).
    pub host: Option<String>,
    /// Snapshot time (default: the start of the backup).
    pub time: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Paths never backed up (e.g. the repository itself when it lies
    /// inside a backed-up tree).
    pub exclude_paths: Vec<PathBuf>,
    /// Parent snapshot for change detection (default: the latest snapshot
    /// with the same host and paths).
    pub parent: Option<arch_index::Id>,
    /// Read every file, even those the parent says are unchanged.
    pub force: bool,
    /// Do not compare inode numbers when detecting changes.
    pub ignore_inode: bool,
    /// Do not compare ctimes when detecting changes.
    pub ignore_ctime: bool,
    /// Exclude patterns (see [`BackupOptions::exclude`]).
    pub excludes: Vec<String>,
    /// Case-insensitive exclude patterns.
    pub iexcludes: Vec<String>,
    /// Leave out directories that contain a file with one of these names.
    pub exclude_if_present: Vec<String>,
    /// Leave out directories tagged as caches (CACHEDIR.TAG).
    pub exclude_caches: bool,
    /// Leave out files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    /// Do not descend into other filesystems.
    pub one_file_system: bool,
    /// Honour `.gitignore` files (`.archignore` files are always honoured).
    pub git_ignore: bool,
    /// Record access times (off by default: see [`BackupOptions::with_atime`]).
    pub with_atime: bool,
    /// Count files and bytes beside the backup for a percentage and ETA.
    pub prescan: bool,
    /// Read and compress everything, store nothing, write no snapshot.
    pub dry_run: bool,
    /// Write no snapshot if nothing changed since the parent.
    pub skip_if_unchanged: bool,
    /// Threads that read and chunk files.
    pub file_workers: usize,
    /// Threads that compress and seal new blobs.
    pub blob_workers: usize,
    /// Threads that store finished packs.
    pub upload_workers: usize,
    /// How file content is read (default: `read(2)`).
    pub read_mode: crate::read_mode::ReadMode,
    /// zstd level for this backup's new blobs (default: the repository's).
    pub compression_level: Option<i32>,
}

impl BackupOptions {
    /// Adds a tag.
    pub fn tag(mut self, t: impl Into<String>) -> Self {
        self.tags.push(t.into());
        self
    }
    /// Sets the recorded host name.
    pub fn host(mut self, h: impl Into<String>) -> Self {
        self.host = Some(h.into());
        self
    }
    /// Sets the snapshot time.
    pub fn time(mut self, t: chrono::DateTime<chrono::FixedOffset>) -> Self {
        self.time = Some(t);
        self
    }
    /// Never back up `p` (matched exactly, after making it absolute).
    pub fn exclude_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.exclude_paths.push(p.into());
        self
    }
    /// Uses snapshot `id` as the parent.
    pub fn parent(mut self, id: arch_index::Id) -> Self {
        self.parent = Some(id);
        self
    }
    /// Re-reads every file.
    pub fn force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }
    /// Ignores inode numbers in change detection: for filesystems whose
    /// inodes are not stable (snapshots, network and FUSE mounts).
    pub fn ignore_inode(mut self, yes: bool) -> Self {
        self.ignore_inode = yes;
        self
    }
    /// Ignores ctimes in change detection (for the same filesystems).
    pub fn ignore_ctime(mut self, yes: bool) -> Self {
        self.ignore_ctime = yes;
        self
    }
    /// Leaves out entries matching `pattern`. A pattern starting with `/`
    /// is anchored at the filesystem root; any other matches at any depth
    /// (`*.o`, `node_modules`, `build/tmp`). `*` and `?` do not match `/`,
    /// `**` does. A matching directory is left out with its contents.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Self {
        self.excludes.push(pattern.into());
        self
    }
    /// As [`BackupOptions::exclude`], ignoring case.
    pub fn iexclude(mut self, pattern: impl Into<String>) -> Self {
        self.iexcludes.push(pattern.into());
        self
    }
    /// Leaves out directories holding a file named `name`.
    pub fn exclude_if_present(mut self, name: impl Into<String>) -> Self {
        self.exclude_if_present.push(name.into());
        self
    }
    /// Leaves out directories with a valid CACHEDIR.TAG.
    pub fn exclude_caches(mut self, yes: bool) -> Self {
        self.exclude_caches = yes;
        self
    }
    /// Leaves out files larger than `bytes`.
    pub fn exclude_larger_than(mut self, bytes: u64) -> Self {
        self.exclude_larger_than = Some(bytes);
        self
    }
    /// Stays on the filesystem of each backed-up path.
    pub fn one_file_system(mut self, yes: bool) -> Self {
        self.one_file_system = yes;
        self
    }
    /// Honours `.gitignore` files with git's rules (negation, anchoring,
    /// directory patterns; deeper files take precedence).
    pub fn git_ignore(mut self, yes: bool) -> Self {
        self.git_ignore = yes;
        self
    }
    /// Records access times. Off by default, as in borg: listing a
    /// directory or reading a file updates its atime (with relatime, at
    /// least once a day), so recording it would make every nightly backup
    /// store every directory's tree again. Restore sets atime to mtime when
    /// none was recorded.
    pub fn with_atime(mut self, yes: bool) -> Self {
        self.with_atime = yes;
        self
    }
    /// Runs a pre-scan beside the backup that reports totals through
    /// [`Progress::scan_progress`](crate::Progress::scan_progress). Off by
    /// default: it walks the tree a second time, which only pays when
    /// someone watches the progress.
    pub fn prescan(mut self, yes: bool) -> Self {
        self.prescan = yes;
        self
    }
    /// Reports what would be stored without storing anything.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
    /// Writes no snapshot when the tree equals the parent's.
    pub fn skip_if_unchanged(mut self, yes: bool) -> Self {
        self.skip_if_unchanged = yes;
        self
    }
    /// File reader threads. Default 2: enough to keep one read in flight
    /// while the other thread chunks; more only helps on slow storage.
    pub fn file_workers(mut self, n: usize) -> Self {
        self.file_workers = n;
        self
    }
    /// Compress-and-seal threads. Default: the number of CPUs, since zstd
    /// is the dominant per-byte cost of new data.
    pub fn blob_workers(mut self, n: usize) -> Self {
        self.blob_workers = n;
        self
    }
    /// Pack upload threads. Default: the backend's
    /// [`connections`](arch_repository::Backend::connections) (2 for a
    /// local folder: one pack writing while the next is finished; a remote
    /// backend's `-o connections=N`).
    pub fn upload_workers(mut self, n: usize) -> Self {
        self.upload_workers = n;
        self
    }

    /// How file content is read: [`crate::ReadMode::Mmap`] maps regular
    /// files instead of copying them into a buffer (a file truncated while
    /// mapped then aborts the process with SIGBUS).
    pub fn read_mode(mut self, mode: crate::read_mode::ReadMode) -> Self {
        self.read_mode = mode;
        self
    }

    /// Compresses this backup's new blobs at zstd `level` (1 to 22)
    /// instead of the repository's level. The level trades speed for size
    /// only: blobs of every level are read the same way, and deduplication
    /// does not depend on it. A level outside 1..=22 fails the backup
    /// before anything is read.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = Some(level);
        self
    }

    /// Thread counts, given the backend's connection count.
    pub(crate) fn resolved(&self, connections: usize) -> (usize, usize, usize) {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let pick = |v: usize, d: usize| if v == 0 { d } else { v };
        (
            pick(self.file_workers, 2),
            pick(self.blob_workers, cpus),
            pick(self.upload_workers, connections.max(1)),
        )
    }
}
