use arch_index::Id;
use serde::{Deserialize, Serialize};

use crate::crypto::Cipher;
use crate::error::RepoError;
use crate::key_file::KdfParams;

/// The newest repository format version this build reads and writes.
/// Version 1 seals everything with XChaCha20-Poly1305; version 2 names the
/// cipher of everything but key files and the config in `cipher`.
/// New repositories are version 2 unless made with XChaCha20-Poly1305,
/// which stays version 1 so that older builds keep reading them.
pub const FORMAT_VERSION: u32 = 2;

/// The zstd levels a repository, or a single backup, may compress at.
pub const COMPRESSION_LEVELS: std::ops::RangeInclusive<i32> = 1..=22;

/// Content-defined chunking parameters. The seed is secret (the config is
/// sealed), so chunk boundaries do not fingerprint content across
/// repositories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk, bytes.
    pub min_size: u32,
    /// Target average chunk, bytes.
    pub avg_size: u32,
    /// Largest chunk, bytes.
    pub max_size: u32,
    /// Secret gear-table seed.
    pub seed: u64,
    /// Whether a chunk also ends after 64 zero bytes (see
    /// [`crate::Chunker`]). Repositories created before this rule existed
    /// lack the field and keep cutting without it, so their new backups
    /// still deduplicate against their old ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_runs: bool,
}

/// The repository's sealed `config` object. Written once by `init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version; readers refuse versions they do not know.
    pub version: u32,
    /// Random repository id.
    pub id: Id,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// zstd level for blobs and metadata.
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// The AEAD of everything but key files and the config (version 2
    /// only; version 1 is XChaCha20-Poly1305 throughout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<Cipher>,
}

/// Options for creating a repository. Zero means the default, documented
/// on each setter.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct InitOptions {
    /// zstd level.
    pub compression_level: i32,
    /// Target pack size.
    pub pack_size: u32,
    /// Chunk size bounds (min, avg, max).
    pub chunk_sizes: Option<(u32, u32, u32)>,
    /// Key derivation cost.
    pub kdf: Option<KdfParams>,
    /// Chunker parameters including the secret seed (to share another
    /// repository's, so copied data deduplicates).
    pub chunker: Option<ChunkerParams>,
    /// The AEAD for packs, indexes, snapshots and locks.
    pub cipher: Option<Cipher>,
}

impl InitOptions {
    /// zstd level 1..=22. Default 3: on text it compresses about as well as
    /// level 6 at twice the speed, and it is zstd's own default.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level;
        self
    }
    /// Target pack size in bytes (64 KiB ..= 1 GiB). Default 16 MiB: big
    /// enough for sequential writes and few files, small enough that a
    /// failed upload or a repack is cheap.
    pub fn pack_size(mut self, bytes: u32) -> Self {
        self.pack_size = bytes;
        self
    }
    /// Chunk sizes. Default 512 KiB / 1 MiB / 8 MiB, as restic: fewer,
    /// larger chunks keep the index small at little dedup cost.
    pub fn chunk_sizes(mut self, min: u32, avg: u32, max: u32) -> Self {
        self.chunk_sizes = Some((min, avg, max));
        self
    }
    /// Uses exactly these chunker parameters, seed included (taken from
    /// another repository so data copied between them deduplicates).
    pub fn chunker(mut self, params: ChunkerParams) -> Self {
        self.chunker = Some(params);
        self
    }
    /// The AEAD for packs, indexes, snapshots and locks. Default:
    /// [`Cipher::preferred`] for this machine.
    pub fn cipher(mut self, cipher: Cipher) -> Self {
        self.cipher = Some(cipher);
        self
    }
    /// Argon2id cost for the first key. Default: [`KdfParams::default`].
    pub fn kdf(mut self, params: KdfParams) -> Self {
        self.kdf = Some(params);
        self
    }

    pub(crate) fn build_config(&self) -> Result<Config, RepoError> {
        let (min, avg, max) = self.chunk_sizes.unwrap_or((512 << 10, 1 << 20, 8 << 20));
        let pack_size = if self.pack_size == 0 { 16 << 20 } else { self.pack_size };
        let level = if self.compression_level == 0 { 3 } else { self.compression_level };
        let mut seed = [0u8; 8];
        crate::crypto::fill_random(&mut seed);
        let mut id = [0u8; 32];
        crate::crypto::fill_random(&mut id);
        let cipher = self.cipher.unwrap_or_else(Cipher::preferred);
        let v1 = cipher == Cipher::XChaCha20Poly1305;
        let config = Config {
            version: if v1 { 1 } else { 2 },
            cipher: (!v1).then_some(cipher),
            id: Id(id),
            chunker: self.chunker.clone().unwrap_or(ChunkerParams {
                min_size: min,
                avg_size: avg,
                max_size: max,
                seed: u64::from_le_bytes(seed),
                zero_runs: true,
            }),
            compression_level: level,
            pack_size,
        };
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    /// Parses and validates the config's JSON. The version is read first: a
    /// newer format may add values (a cipher) this build cannot parse, and
    /// must be refused as newer, not as damaged.
    pub(crate) fn decode(json: &[u8]) -> Result<Config, RepoError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let corrupt = |e: serde_json::Error| RepoError::corrupt("config", e.to_string());
        let Version { version } = serde_json::from_slice(json).map_err(corrupt)?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(RepoError::UnsupportedVersion { what: "repository config".into(), version });
        }
        let config: Config = serde_json::from_slice(json).map_err(corrupt)?;
        config.validate()?;
        Ok(config)
    }

    /// The AEAD of everything but key files and the config.
    pub fn cipher(&self) -> Cipher {
        self.cipher.unwrap_or(Cipher::XChaCha20Poly1305)
    }

    /// Checks every field is in the range this build supports.
    pub fn validate(&self) -> Result<(), RepoError> {
        match (self.version, self.cipher) {
            (1, None) | (2, Some(_)) => {}
            (1 | 2, _) => {
                return Err(RepoError::corrupt(
                    "config",
                    format!(
                        "format version {} with cipher {:?}",
                        self.version,
                        self.cipher.map(Cipher::name)
                    ),
                ))
            }
            (version, _) => {
                return Err(RepoError::UnsupportedVersion { what: "repository config".into(), version })
            }
        }
        let c = &self.chunker;
        let ok = (64..=1 << 20).contains(&c.min_size)
            && (256..=4 << 20).contains(&c.avg_size)
            && (1024..=16 << 20).contains(&c.max_size)
            && c.min_size <= c.avg_size
            && c.avg_size <= c.max_size
            && c.min_size.is_multiple_of(2)
            && c.avg_size.is_multiple_of(2)
            && c.max_size.is_multiple_of(2);
        if !ok {
            return Err(RepoError::InvalidOption(format!(
                "chunk sizes {}/{}/{} out of range (min 64..1M, avg 256..4M, max 1K..16M, even, ordered)",
                c.min_size, c.avg_size, c.max_size
            )));
        }
        if !COMPRESSION_LEVELS.contains(&self.compression_level) {
            return Err(RepoError::InvalidOption(format!(
                "compression level {} (1..22)",
                self.compression_level
            )));
        }
        if !(64 << 10..=1 << 30).contains(&self.pack_size) {
            return Err(RepoError::InvalidOption(format!("pack size {} (64 KiB .. 1 GiB)", self.pack_size)));
        }
        Ok(())
    }
}
