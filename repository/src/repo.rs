use std::sync::Arc;

use arch_index::{
    BlobId, BlobLocation, BlobType, Id, IndexFile, IndexSink, MasterIndex, PackId, PackedBlob, SinkError,
};

use crate::backend::{Backend, FileKind};
use crate::blob_codec::decode_blob;
use crate::chunker::Chunker;
use crate::config::{Config, InitOptions};
use crate::crypto::Key;
use crate::error::RepoError;
use crate::filter::SnapshotFilter;
use crate::key_file::{KdfParams, KeyFile};
use crate::object::{open_object, seal_object};
use crate::pack::{decode_pack_header, header_length, FinishedPack, PackBody, PackWriter};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// An open repository: its backend, master key, config and index.
///
/// Every object it writes is sealed with the master key and named by the
/// blake3 of its stored bytes; every object it reads is checked against its
/// name (where content-addressed) and authenticated before it is used.
/// Safe to share between threads.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: Key,
    config: Config,
    index: MasterIndex,
    key_id: Id,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository").field("location", &self.backend.location()).finish()
    }
}

impl Repository {
    /// Creates a repository at an empty location and returns it open.
    /// The config is written last, so an interrupted init leaves no
    /// repository (and init can simply be run again).
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: &InitOptions,
    ) -> Result<Repository, RepoError> {
        if backend.exists()? {
            return Err(RepoError::AlreadyInitialized { location: backend.location().to_string() });
        }
        let config = opts.build_config()?;
        backend.create_layout()?;
        let key = Key::generate();
        let kf =
            KeyFile::create(&key, password, opts.kdf.clone().unwrap_or_default(), &hostname(), &username())?;
        let json = serde_json::to_vec_pretty(&kf).expect("key file serializes");
        let key_id = Id::hash(&json);
        backend.create(FileKind::Key, &key_id.to_hex(), &json)?;
        let sealed = seal_object(
            &key,
            &serde_json::to_vec(&config).expect("config serializes"),
            config.compression_level,
        );
        backend.create(FileKind::Config, "config", &sealed)?;
        let key = key.with_cipher(config.cipher());
        Ok(Repository { backend, key, config, index: MasterIndex::new(Default::default()), key_id })
    }

    /// Opens an existing repository: finds a key file the password opens,
    /// reads the config and loads every index file.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository, RepoError> {
        let repo = Self::open_unindexed(backend, password)?;
        repo.load_index()?;
        Ok(repo)
    }

    /// Opens a repository without reading its index: for callers that take
    /// a lease first and then call [`Repository::load_index`], so that the
    /// index they work with is not older than their lease.
    pub fn open_unindexed(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository, RepoError> {
        let location = backend.location().to_string();
        if !backend.exists()? {
            return Err(RepoError::NoRepository { location });
        }
        // A key file this build cannot use (damaged, or from a newer
        // version) must not lock out the keys it can: skip it, and report
        // it only if no key opened.
        let mut key = None;
        let (mut tried, mut unusable) = (0usize, None);
        for info in backend.list(FileKind::Key)? {
            let what = format!("key {}", &info.name[..8.min(info.name.len())]);
            let bytes = backend.read(FileKind::Key, &info.name)?;
            let opened = check_name(&bytes, &info.name, &what)
                .and_then(|()| {
                    serde_json::from_slice::<KeyFile>(&bytes)
                        .map_err(|e| RepoError::corrupt(what.clone(), e.to_string()))
                })
                .and_then(|kf| kf.open(password, &what));
            match opened {
                Ok(Some(k)) => {
                    key = Id::from_hex(&info.name).map(|id| (k, id));
                    break;
                }
                Ok(None) => tried += 1,
                Err(e) => unusable = unusable.or(Some(e)),
            }
        }
        let (key, key_id) = match (key, unusable) {
            (Some(found), _) => found,
            (None, Some(e)) if tried == 0 => return Err(e),
            (None, _) => return Err(RepoError::WrongPassword { location }),
        };
        let sealed = backend.read(FileKind::Config, "config")?;
        let config = Config::decode(&open_object(&key, &sealed, "config")?)?;
        // Key files and the config are XChaCha20-Poly1305 in every version,
        // so any build can read the version; the rest uses the config's cipher.
        let key = key.with_cipher(config.cipher());
        Ok(Repository { backend, key, config, index: MasterIndex::new(Default::default()), key_id })
    }

    /// Replaces the master index with an empty one with these options
    /// (before [`Repository::load_index`]; what was loaded is dropped).
    pub fn with_index_options(mut self, opts: arch_index::MasterIndexOptions) -> Self {
        self.index = MasterIndex::new(opts);
        self
    }

    /// Replaces the master index's options (before a backup starts); the
    /// loaded entries are kept by reloading.
    pub fn set_index_options(&mut self, opts: arch_index::MasterIndexOptions) -> Result<(), RepoError> {
        self.index = MasterIndex::new(opts);
        self.load_index()
    }

    /// Reads every index file into the in-memory index (adding to what is
    /// there). Index files superseded by another one are skipped.
    pub fn load_index(&self) -> Result<(), RepoError> {
        // Index files superseded by a newer one (written by prune) are
        // skipped: a prune interrupted after writing its new index but
        // before deleting the old ones must still read consistently.
        let files = self.index_files()?;
        let superseded: std::collections::HashSet<Id> =
            files.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
        let mut tree_packs = Vec::new();
        for (id, file) in &files {
            if !superseded.contains(id) {
                self.index.load(file);
                tree_packs.extend(
                    file.packs
                        .iter()
                        .filter(|p| p.blobs.iter().any(|b| b.blob_type == BlobType::Tree))
                        .map(|p| p.pack.to_hex()),
                );
            }
        }
        self.backend.tree_packs(&tree_packs, true);
        Ok(())
    }

    /// Every index file of the repository, decoded (superseded ones too).
    pub fn index_files(&self) -> Result<Vec<(Id, IndexFile)>, RepoError> {
        let mut out = Vec::new();
        for info in self.backend.list(FileKind::Index)? {
            let id = Id::from_hex(&info.name).expect("backend lists valid names");
            out.push((id, self.load_index_file(&id)?));
        }
        Ok(out)
    }

    /// Reads, verifies and decodes one index file.
    pub fn load_index_file(&self, id: &Id) -> Result<IndexFile, RepoError> {
        let plain = self.load_object(FileKind::Index, id)?;
        IndexFile::decode(&plain).map_err(|e| match e {
            arch_index::IndexError::UnsupportedVersion(v) => {
                RepoError::UnsupportedVersion { what: format!("index {}", id.short()), version: u32::from(v) }
            }
            e => RepoError::corrupt(format!("index {}", id.short()), e.to_string()),
        })
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The master key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The key file that opened this repository (for a new one: the key
    /// file `init` wrote).
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    /// The repository config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The master index (every stored blob, plus pending ones of a running backup).
    pub fn index(&self) -> &MasterIndex {
        &self.index
    }

    /// A chunker with this repository's secret parameters.
    pub fn chunker(&self) -> Chunker {
        Chunker::new(self.config.chunker.clone())
    }

    /// Adds a key file for another password.
    pub fn add_key(&self, password: &[u8], params: KdfParams) -> Result<Id, RepoError> {
        let kf = KeyFile::create(&self.key, password, params, &hostname(), &username())?;
        let json = serde_json::to_vec_pretty(&kf).expect("key file serializes");
        let id = Id::hash(&json);
        self.backend.create(FileKind::Key, &id.to_hex(), &json)?;
        Ok(id)
    }

    /// Seals and stores a metadata object; returns its id.
    pub fn save_object(&self, kind: FileKind, payload: &[u8]) -> Result<Id, RepoError> {
        let sealed = seal_object(&self.key, payload, self.config.compression_level);
        let id = Id::hash(&sealed);
        self.backend.create(kind, &id.to_hex(), &sealed)?;
        Ok(id)
    }

    /// Reads, verifies and opens a metadata object.
    pub fn load_object(&self, kind: FileKind, id: &Id) -> Result<Vec<u8>, RepoError> {
        let what = format!("{kind} {}", id.short());
        let bytes = self.backend.read(kind, &id.to_hex())?;
        check_name(&bytes, &id.to_hex(), &what)?;
        open_object(&self.key, &bytes, &what)
    }

    /// A new pack writer for blobs of type `t` that streams the pack to a
    /// staging file of the backend ([`Backend::staging_file`]), so a pack
    /// costs no memory while it fills.
    pub fn pack_writer(&self, t: BlobType) -> Result<PackWriter, RepoError> {
        Ok(PackWriter::staged(t, self.backend.staging_file(FileKind::Pack)?))
    }

    /// Stores a pack, then records it in the index (which may write a full
    /// index file). This order is the crash-safety rule: an index never
    /// lists a pack that is not stored. A staged pack is stored with
    /// [`Backend::create_from_file`] and its staging file is gone when this
    /// returns, stored or not. A counted pack ([`PackWriter::counting`])
    /// has no bytes to store: that is a caller's bug, refused as an error.
    pub fn save_pack(&self, pack: FinishedPack) -> Result<(), RepoError> {
        let (id, blobs) = self.store_pack(pack)?;
        self.index.store_pack(id, &blobs, self)?;
        Ok(())
    }

    /// Stores a pack without indexing it (prune writes its own index);
    /// returns its id and blobs.
    pub(crate) fn store_pack(&self, pack: FinishedPack) -> Result<(PackId, Vec<PackedBlob>), RepoError> {
        let (id, blobs, body) = pack.into_body();
        let name = id.to_hex();
        if blobs.iter().any(|b| b.blob_type == BlobType::Tree) {
            self.backend.tree_packs(std::slice::from_ref(&name), false);
        }
        match body {
            PackBody::Memory(data) => self.backend.create(FileKind::Pack, &name, &data)?,
            PackBody::File(mut staged) => {
                self.backend.create_from_file(FileKind::Pack, &name, &mut staged)?
            }
            PackBody::Nowhere => {
                return Err(RepoError::InvalidOption(format!(
                    "pack {} was only counted (a dry run) and cannot be stored",
                    id.short()
                )))
            }
        }
        Ok((id, blobs))
    }

    /// Writes the open index file, if any. Call after the last pack and
    /// before the snapshot that needs it.
    pub fn flush_index(&self) -> Result<Option<Id>, RepoError> {
        Ok(self.index.flush(self)?)
    }

    /// Stores a snapshot; returns its id.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id, RepoError> {
        let json = serde_json::to_vec(snap).expect("snapshot serializes");
        self.save_object(FileKind::Snapshot, &json)
    }

    /// Loads one snapshot.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot, RepoError> {
        let plain = self.load_object(FileKind::Snapshot, id)?;
        serde_json::from_slice(&plain)
            .map_err(|e| RepoError::corrupt(format!("snapshot {}", id.short()), e.to_string()))
    }

    /// Every snapshot, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<(Id, Snapshot)>, RepoError> {
        let mut out = Vec::new();
        for info in self.backend.list(FileKind::Snapshot)? {
            let id = Id::from_hex(&info.name).expect("backend lists valid names");
            out.push((id, self.load_snapshot(&id)?));
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Resolves "latest" or a unique id prefix (at least 4 hex characters).
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot), RepoError> {
        self.find_snapshot_filtered(spec, &SnapshotFilter::default())
    }

    /// Resolves "latest" (the newest snapshot passing `filter`) or a unique
    /// id prefix (at least 4 hex characters; the filter does not apply to
    /// an explicit id). Errors name what was looked for and how to fix it.
    pub fn find_snapshot_filtered(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(Id, Snapshot), RepoError> {
        if spec == "latest" {
            return self.list_snapshots()?.into_iter().rev().find(|(_, s)| filter.matches(s)).ok_or_else(
                || {
                    let what =
                        if *filter == SnapshotFilter::default() { "" } else { " matching the filters" };
                    RepoError::SnapshotSelection(format!("no snapshots{what} in {}", self.backend.location()))
                },
            );
        }
        match self.match_prefix(FileKind::Snapshot, spec)? {
            PrefixMatch::One(id) => Ok((id, self.load_snapshot(&id)?)),
            PrefixMatch::Invalid => Err(RepoError::SnapshotSelection(format!(
                "snapshot {spec:?}: give 'latest' or at least 4 hex characters of a snapshot id"
            ))),
            PrefixMatch::None => Err(RepoError::SnapshotSelection(format!(
                "no snapshot matches {spec:?} in {}; 'arch snapshots' lists them",
                self.backend.location()
            ))),
            PrefixMatch::Many(n) => Err(RepoError::SnapshotSelection(format!(
                "snapshot prefix {spec:?} is ambiguous ({n} matches); give more characters"
            ))),
        }
    }

    /// Resolves an id prefix (4 to 64 hex characters, either case) among the
    /// stored objects of `kind`; callers word the failures for their users.
    pub fn match_prefix(&self, kind: FileKind, prefix: &str) -> Result<PrefixMatch, RepoError> {
        let p = prefix.to_ascii_lowercase();
        if p.len() < 4 || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(PrefixMatch::Invalid);
        }
        let mut found: Vec<Id> = self
            .backend
            .list(kind)?
            .iter()
            .filter(|i| i.name.starts_with(&p))
            .filter_map(|i| Id::from_hex(&i.name))
            .collect();
        Ok(match found.len() {
            0 => PrefixMatch::None,
            1 => PrefixMatch::One(found.pop().expect("one")),
            n => PrefixMatch::Many(n),
        })
    }

    /// Every snapshot passing `filter`, oldest first.
    pub fn list_snapshots_filtered(&self, filter: &SnapshotFilter) -> Result<Vec<(Id, Snapshot)>, RepoError> {
        Ok(self.list_snapshots()?.into_iter().filter(|(_, s)| filter.matches(s)).collect())
    }

    /// Reads, verifies and returns one blob's plaintext.
    pub fn read_blob(&self, t: BlobType, id: &BlobId) -> Result<Vec<u8>, RepoError> {
        let loc = self.locate(t, id)?;
        let sealed = self.backend.read_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            u64::from(loc.blob.offset),
            u64::from(loc.blob.length),
        )?;
        decode_blob(&self.key, &loc, &sealed)
    }

    /// Where a blob is stored, or [`RepoError::BlobNotIndexed`].
    pub fn locate(&self, t: BlobType, id: &BlobId) -> Result<BlobLocation, RepoError> {
        self.index.lookup(t, id).ok_or(RepoError::BlobNotIndexed {
            kind: match t {
                BlobType::Data => "data",
                BlobType::Tree => "tree",
            },
            id: *id,
        })
    }

    /// Reads and opens the header of a pack of `size` bytes (two range
    /// reads of its tail; the blobs are not read).
    pub fn read_pack_header(&self, pack: &PackId, size: u64) -> Result<Vec<PackedBlob>, RepoError> {
        let name = pack.to_hex();
        let damaged = |d: &str| RepoError::corrupt(format!("pack {}", pack.short()), d);
        let tail_at = size.checked_sub(4).ok_or_else(|| damaged("shorter than its trailer"))?;
        let tail = self.backend.read_range(FileKind::Pack, &name, tail_at, 4)?;
        let tail: [u8; 4] = tail[..].try_into().map_err(|_| damaged("short trailer"))?;
        let hlen = u64::from(header_length(&tail));
        let start = tail_at.checked_sub(hlen).ok_or_else(|| damaged("header length exceeds pack size"))?;
        let sealed = self.backend.read_range(FileKind::Pack, &name, start, hlen)?;
        decode_pack_header(&self.key, pack, &sealed, start)
    }

    /// Loads and decodes a tree blob.
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree, RepoError> {
        let bytes = self.read_blob(BlobType::Tree, id)?;
        Tree::decode(&bytes, || format!("tree {}", id.short()))
    }
}

/// What an id prefix matched (see [`Repository::match_prefix`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixMatch {
    /// Exactly this object.
    One(Id),
    /// Nothing.
    None,
    /// This many objects: the prefix is ambiguous.
    Many(usize),
    /// Not 4 to 64 hex characters.
    Invalid,
}

impl IndexSink for Repository {
    fn save_index(&self, file: &IndexFile) -> Result<Id, SinkError> {
        Ok(self.save_object(FileKind::Index, &file.encode())?)
    }
}

fn check_name(bytes: &[u8], name: &str, what: &str) -> Result<(), RepoError> {
    if Id::hash(bytes).to_hex() != name {
        return Err(RepoError::corrupt(what, "content does not match its name (file damaged or replaced)"));
    }
    Ok(())
}

/// This machine's host name, or "" if it has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
    // on success when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The current user's name from $USER, or the numeric uid.
pub fn username() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        // SAFETY: getuid cannot fail.
        unsafe { libc::getuid() }.to_string()
    })
}
