//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/)
//! through the same harness function the fuzz target runs, so inputs that
//! once found a bug, and the inputs that cover each decoder's paths, stay
//! tested by the normal suite without a nightly toolchain.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// A fuzz target's harness function.
type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 8] = [
    ("pack_header", harness::pack_header),
    ("index_file", harness::index_file),
    ("tree", harness::tree),
    ("snapshot", harness::snapshot),
    ("key_file", harness::key_file),
    ("config", harness::config),
    ("blob", harness::blob),
    ("cli_parsers", harness::cli_parsers),
];

#[test]
fn every_committed_fuzz_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, run) in TARGETS {
        let dir = root.join(target);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("{target}: {} panics", path.display());
            }
            n += 1;
        }
        assert!(n > 0, "{target}: empty corpus");
    }
}

#[test]
fn inputs_that_once_failed_are_refused_cleanly() {
    use arch_index::{BlobLocation, BlobType, Compression, Id, IndexFile, PackedBlob};
    // An index file of version 2 with no marked packs (not canonical).
    let mut v2 = b"AIDX\x02".to_vec();
    v2.extend_from_slice(&0u32.to_le_bytes());
    v2.extend_from_slice(&0u32.to_le_bytes());
    v2.extend_from_slice(&0u32.to_le_bytes());
    assert!(IndexFile::decode(&v2).is_err());
    // A blob whose index entry claims 3.4 GB of plaintext for a few
    // compressed bytes is refused without allocating it; the true length
    // still decodes.
    let key = arch_repository::Key::generate();
    let data = vec![0u8; 4096];
    let mut sealed = Vec::new();
    let c = arch_repository::BlobEncoder::new(3).unwrap().seal_blob(&key, &data, &mut sealed);
    assert_eq!(c, Compression::Zstd);
    let mut loc = BlobLocation {
        pack: Id::hash(b"p"),
        blob: PackedBlob {
            id: Id::hash(&data),
            blob_type: BlobType::Data,
            offset: 0,
            length: sealed.len() as u32,
            raw_length: 3_440_574_469,
            compression: Compression::Zstd,
        },
    };
    let e = arch_repository::decode_blob(&key, &loc, &sealed).unwrap_err();
    assert!(e.to_string().contains("length differs from the index"), "{e}");
    loc.blob.raw_length = 4096;
    assert_eq!(arch_repository::decode_blob(&key, &loc, &sealed).unwrap(), data);
}
