//! The backup and restore engine of arch, and the library's front door.
//!
//! Open or create a [`Repository`], run a [`Backup`] with options, a
//! [`Progress`] sink, an [`ErrorPolicy`] and a `CancellationToken`, list
//! snapshots, and [`Restore`] one.
//!
//! Besides filesystem paths, a backup can save one stream
//! ([`Backup::stream`] with a [`StreamSource`]) or a tree the caller
//! describes itself ([`Backup::tree`] with a [`TreeSource`]). Maintenance:
//! [`ForgetPolicy`] with [`remove_snapshot`], [`prune`], [`check`], each
//! under a [`Lease`]. The crate's `examples/` show each operation
//! (`backup_progress`, `restore_file`, `forget_prune`, `custom_source`,
//! `cancel_backup`, `tokio_embed`).
//!
//! ```
//! use std::sync::Arc;
//! use arch_archiver::{Backup, InitOptions, KdfParams, LocalBackend, Repository, Restore};
//!
//! let tmp = tempfile::tempdir()?;
//! let source = tmp.path().join("source");
//! std::fs::create_dir_all(source.join("docs"))?;
//! std::fs::write(source.join("docs/hello.txt"), b"hello, world")?;
//!
//! // Create a repository (a cheap key derivation keeps the example fast).
//! let backend = Arc::new(LocalBackend::new(tmp.path().join("repo")));
//! let opts = InitOptions::default().kdf(KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 });
//! let repo = Repository::init(backend, b"secret", &opts)?;
//!
//! // Back up, list, restore.
//! let result = Backup::new(&repo, [&source]).run()?;
//! assert_eq!(repo.list_snapshots()?.len(), 1);
//! let target = tmp.path().join("restored");
//! Restore::new(&repo, &result.snapshot, &target).run()?;
//! let restored = target.join(source.strip_prefix("/")?).join("docs/hello.txt");
//! assert_eq!(std::fs::read(restored)?, b"hello, world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod backup;
mod blob_saver;
mod browse;
mod browse_diff;
mod browse_dump;
mod browse_find;
mod browse_stats;
mod budget;
mod context;
mod copy;
mod dir_state;
mod error;
mod fault;
mod file_saver;
mod metadata;
mod options;
mod packer;
mod parent;
#[cfg(test)]
mod pipeline_tests;
mod policy;
mod pool;
mod prescan;
mod progress;
mod read_mode;
mod restore;
mod restore_content;
mod restore_filter;
mod restore_fs;
mod scanner;
mod scope;
mod select;
#[cfg(test)]
mod select_tests;
mod sparse;
#[cfg(test)]
mod staging_tests;
mod stats;
mod stream;
#[cfg(test)]
mod test_support;
mod tree_saver;
mod tree_source;
mod uploader;

pub use arch_index::{BlobId, BlobType, Id, MasterIndexOptions};
pub use arch_repository::{
    add_key, change_password, find_key, group_snapshots, list_keys, remove_key, remove_snapshot,
    retag_snapshot, ForgetPolicy, GroupBy, GroupKey, KeyFile, RetentionDuration, TagChange, Verdict,
    UNLIMITED,
};
pub use arch_repository::{
    check, CheckOptions, CheckPhase, CheckProgress, CheckReport, NoCheckProgress, Problem, ProblemKind,
    ReadData, Usage,
};
pub use arch_repository::{
    list_locks, remove_locks, Backend, BackendError, Cipher, FileInfo, FileKind, InitOptions, KdfParams,
    Lease, LocalBackend, LockInfo, Node, NodeKind, RepoError, Repository, Snapshot, SnapshotFilter,
    SnapshotSummary, Timestamp, Tree, Xattr,
};
pub use arch_repository::{
    open_backend, with_retries, BackendOptions, BackendUrl, Endpoint, RemoteErrorClass, RetryBackend,
    RetryPolicy,
};
pub use arch_repository::{parse_size, prune, PruneOptions, PruneReport, COMPRESSION_LEVELS};
pub use arch_repository::{CachedBackend, SftpBackend, SftpOptions};
pub use arch_repository::{FaultBackend, FaultEffect, FaultOp, FaultPlan, FaultRule};
pub use backup::{Backup, BackupResult};
pub use browse::{
    diff_trees, dump_archive, dump_file, escape_path, find_node, join_components, metadata_differs,
    path_components, read_pack_header, resolve_blob_prefix, resolve_object_prefix, resolve_snapshot_spec,
    root_node, split_snapshot_spec, stats, walk_tree, ArchiveFormat, Change, Compression, ContentReader,
    DiffOptions, DiffStats, DiffVisitor, DumpStats, FindQuery, FindVisitor, Finder, IdPrefix, IndexFile,
    PackEntry, PackedBlob, RepoStats, StatsMode, WalkControl, WalkVisitor,
};
pub use context::Warning;
pub use copy::{copy_snapshots, CopyReport};
pub use error::ArchiveError;
pub use options::BackupOptions;
pub use policy::{AbortOnError, Decision, ErrorPolicy, SkipErrors};
pub use progress::{NoProgress, Progress};
pub use read_mode::ReadMode;
pub use restore::{OverwriteMode, Restore, RestoreOptions, RestoreResult};
pub use select::read_list_file;
pub use stream::StreamSource;
pub use tokio_util::sync::CancellationToken;
pub use tree_source::TreeSource;
