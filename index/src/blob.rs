use crate::id::{BlobId, PackId};

/// What a blob holds. Data and tree blobs never share a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// An encoded directory listing.
    Tree,
}

impl BlobType {
    /// The byte stored in pack headers and index files.
    pub fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    /// Inverse of [`BlobType::to_byte`]; `None` for unknown values.
    pub fn from_byte(b: u8) -> Option<BlobType> {
        match b {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
}

/// How a blob's plaintext was encoded before sealing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Stored as is (compression did not pay).
    None,
    /// One zstd frame.
    Zstd,
}

impl Compression {
    /// The byte stored in pack headers and index files.
    pub fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }

    /// Inverse of [`Compression::to_byte`]; `None` for unknown values.
    pub fn from_byte(b: u8) -> Option<Compression> {
        match b {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// One blob as recorded in a pack header or index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedBlob {
    /// blake3 of the plaintext.
    pub id: BlobId,
    /// Data or tree.
    pub blob_type: BlobType,
    /// Byte offset of the sealed blob inside its pack.
    pub offset: u32,
    /// Length of the sealed blob in the pack (nonce, ciphertext and tag).
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
    /// Encoding of the plaintext inside the seal.
    pub compression: Compression,
}

/// Where a blob is stored: everything needed to read it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobLocation {
    /// The pack holding the blob.
    pub pack: PackId,
    /// The blob's entry in that pack.
    pub blob: PackedBlob,
}
