//! Storage, crypto and object formats of an arch repository.
//!
//! A [`Repository`] sits on a [`Backend`] (today [`LocalBackend`]); it seals
//! every object with a per-repository master key ([`Key`], wrapped per
//! password in a [`KeyFile`]), writes blobs into packs ([`PackWriter`],
//! [`BlobEncoder`]) and keeps the [`arch_index::MasterIndex`] of where every
//! blob lives. Trees and snapshots are the metadata a backup leaves behind.
//! The on-disk format is specified in docs/FORMAT.md.
//!
//! ```
//! use std::sync::Arc;
//! use arch_repository::{FileKind, InitOptions, KdfParams, LocalBackend, Repository, RepoError};
//!
//! let dir = tempfile::tempdir()?;
//! let opts = InitOptions::default().kdf(KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 });
//! let repo = Repository::init(Arc::new(LocalBackend::new(dir.path())), b"secret", &opts)?;
//! // Every object is sealed and named by the blake3 of its stored bytes.
//! let id = repo.save_object(FileKind::Snapshot, b"{}")?;
//! assert_eq!(repo.load_object(FileKind::Snapshot, &id)?, b"{}");
//! // The stored bytes do not contain the plaintext.
//! let stored = std::fs::read(dir.path().join("snapshots").join(id.to_hex()))?;
//! assert!(!stored.windows(2).any(|w| w == b"{}"));
//! // A wrong password is refused with its own error.
//! let wrong = Repository::open(Arc::new(LocalBackend::new(dir.path())), b"guess");
//! assert!(matches!(wrong, Err(RepoError::WrongPassword { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod backend;
mod backend_url;
mod blob_codec;
mod cache;
mod check;
mod chunker;
#[cfg(test)]
mod chunker_proptests;
mod config;
mod crypto;
mod direct_read;
mod error;
mod fault_backend;
mod filter;
mod hex;
mod http;
mod key_file;
mod keys;
mod local;
mod local_staging;
mod lock;
mod object;
mod pack;
#[cfg(test)]
mod pack_proptests;
mod prune;
mod repo;
mod rest;
mod retention;
mod retry;
mod s3;
mod s3_auth;
mod sftp;
mod size;
mod snapshot;
mod snapshot_edit;
mod staging;
mod tree;
#[cfg(test)]
mod zeroize_tests;

pub use backend::{Backend, FileInfo, FileKind};
pub use backend_url::{open_backend, with_retries, BackendOptions, BackendUrl, Endpoint};
pub use blob_codec::{decode_blob, BlobDecoder, BlobEncoder};
pub use cache::CachedBackend;
pub use check::{
    check, CancelCheck, CheckOptions, CheckPhase, CheckProgress, CheckReport, NoCheckProgress, Problem,
    ProblemKind, ReadData, Usage,
};
pub use chunker::Chunker;
pub use config::{ChunkerParams, Config, InitOptions, COMPRESSION_LEVELS, FORMAT_VERSION};
pub use crypto::{AuthError, Cipher, Key, SEAL_OVERHEAD};
pub use error::{BackendError, RemoteErrorClass, RepoError};
pub use fault_backend::{FaultBackend, FaultEffect, FaultOp, FaultPlan, FaultRule};
pub use filter::SnapshotFilter;
pub use key_file::{KdfParams, KeyFile};
pub use keys::{add_key, change_password, find_key, list_keys, remove_key};
pub use local::LocalBackend;
pub use lock::{list_locks, remove_locks, Lease, LockInfo, REFRESH_EVERY, STALE_AFTER};
pub use pack::{decode_pack_header, parse_pack, FinishedPack, PackWriter};
pub use prune::{prune, PruneOptions, PruneReport, STALE_TEMP_AGE};
pub use repo::{hostname, username, PrefixMatch, Repository};
pub use retention::{
    group_snapshots, ForgetPolicy, GroupBy, GroupKey, RetentionDuration, Verdict, UNLIMITED,
};
pub use retry::{RetryBackend, RetryPolicy};
pub use sftp::{SftpBackend, SftpOptions, DEFAULT_SFTP_CONNECTIONS};
pub use size::parse_size;
pub use snapshot::{Snapshot, SnapshotSummary};
pub use snapshot_edit::{remove_snapshot, retag_snapshot, TagChange};
pub use staging::StagingFile;
pub use tree::{Node, NodeKind, Timestamp, Tree, Xattr};
