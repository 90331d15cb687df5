//! One function per fuzz target: feeds arbitrary bytes to a decoder of
//! repository bytes (or a parser of command-line values). Shared by the
//! fuzz targets and by the replay test of the normal suite
//! (tests/fuzz_replay.rs), so the committed corpus is replayed through
//! exactly the code that was fuzzed. Each must return (error or not)
//! without panicking, hanging or allocating without bound.

#![allow(dead_code)] // each target uses one function

use arch_index::{BlobLocation, BlobType, Compression, Id, IndexFile, PackedBlob};
use arch_repository::{
    decode_blob, decode_pack_header, parse_pack, parse_size, Config, GroupBy, Key, KeyFile,
    RetentionDuration, Snapshot, Tree,
};

fn key() -> Key {
    Key::from_bytes(&[7u8; 32])
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

/// The bytes as a whole pack file (trailer arithmetic, header
/// authentication), then `blobs_end (u32) || header plaintext` sealed with
/// the right key, so the header parser itself sees hostile plaintext.
pub fn pack_header(data: &[u8]) {
    let k = key();
    let id = Id::hash(b"pack");
    let _ = parse_pack(&k, &id, data);
    if data.len() >= 4 {
        let sealed = k.seal(&data[4..]);
        let _ = decode_pack_header(&k, &id, &sealed, u64::from(u32_at(data, 0)));
    }
}

/// An index file's plaintext.
pub fn index_file(data: &[u8]) {
    if let Ok(f) = IndexFile::decode(data) {
        // What decodes re-encodes to the same bytes (the format is canonical).
        assert_eq!(f.encode(), data, "index file decode/encode is not canonical");
    }
}

/// A tree blob's plaintext (CBOR).
pub fn tree(data: &[u8]) {
    if let Ok(t) = Tree::decode(data, || "tree".to_string()) {
        // A decoded tree encodes and decodes to itself.
        let again = Tree::decode(&t.encode(), || "tree".to_string()).expect("re-encoded tree decodes");
        assert_eq!(again, t);
    }
}

/// A snapshot's plaintext (JSON).
pub fn snapshot(data: &[u8]) {
    let _ = serde_json::from_slice::<Snapshot>(data);
}

/// A key file (plaintext JSON), opened with a password when its KDF cost
/// is small enough for a fuzzer (the decoder itself bounds it at 4 GiB).
pub fn key_file(data: &[u8]) {
    if let Ok(kf) = serde_json::from_slice::<KeyFile>(data) {
        if kf.params.memory_kib <= 64 && kf.params.iterations <= 2 {
            let _ = kf.open(b"password", "key fuzz");
        }
    }
}

/// The config's plaintext (JSON), validated as `open` does.
pub fn config(data: &[u8]) {
    if let Ok(c) = serde_json::from_slice::<Config>(data) {
        let _ = c.validate();
    }
}

/// `compression (1) || raw_length (u32) || blob plaintext`, sealed with the
/// right key and decoded as a blob of that index entry.
pub fn blob(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let k = key();
    let payload = &data[5..];
    let sealed = k.seal(payload);
    let loc = BlobLocation {
        pack: Id::hash(b"pack"),
        blob: PackedBlob {
            id: Id::hash(payload),
            blob_type: BlobType::Data,
            offset: 0,
            length: sealed.len() as u32,
            raw_length: u32_at(data, 1),
            compression: if data[0] & 1 == 1 { Compression::Zstd } else { Compression::None },
        },
    };
    let _ = decode_blob(&k, &loc, &sealed);
}

/// The value parsers behind command-line options: sizes, retention
/// durations, grouping.
pub fn cli_parsers(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = parse_size(s);
    let _ = s.parse::<RetentionDuration>();
    let _ = s.parse::<GroupBy>();
}
