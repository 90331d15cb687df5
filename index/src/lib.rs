//! Blob ids, index files and the in-memory master index of an arch repository.
//!
//! This crate does no repository I/O. The [`MasterIndex`] persists finished
//! index files through the [`IndexSink`] trait, which the repository crate
//! implements by sealing and uploading them; with a memory limit it spills
//! its entries to an unnamed temporary file.
//!
//! ```
//! use arch_index::{BlobId, BlobType, MasterIndex};
//! let index = MasterIndex::new(Default::default());
//! let backup = index.session();
//! let id = BlobId::hash(b"hello");
//! // The first saver of a blob is told to store it; everyone else is not.
//! assert!(backup.add_pending(BlobType::Data, id));
//! assert!(!backup.add_pending(BlobType::Data, id));
//! ```

#![warn(missing_docs)]

mod blob;
mod error;
mod id;
mod index_file;
mod master;
mod table;

pub use blob::{BlobLocation, BlobType, Compression, PackedBlob};
pub use error::IndexError;
pub use id::{BlobId, Id, PackId};
pub use index_file::{IndexFile, PackEntry, MAX_INDEX_ENTRIES};
pub use master::{IndexSink, MasterIndex, MasterIndexOptions, PendingSession, SinkError};
