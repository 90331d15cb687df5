//! Property tests of packs: any set of blobs round-trips through a pack
//! (header and every blob), any changed byte is detected, and blobs are
//! bound to their ids (an authentic blob under another id is refused).

use arch_index::{BlobLocation, BlobType, Id};
use proptest::prelude::*;

use crate::blob_codec::{decode_blob, BlobEncoder};
use crate::crypto::Key;
use crate::pack::{parse_pack, PackWriter};
use crate::staging::StagingFile;

fn blob_data() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Mixed: incompressible and highly compressible blobs, some empty.
    proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000),
            (0usize..5000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ],
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn packs_round_trip(blobs in blob_data(), tree: bool, staged: bool) {
        let key = Key::generate();
        let t = if tree { BlobType::Tree } else { BlobType::Data };
        let mut enc = BlobEncoder::new(3).unwrap();
        let mut w = if staged {
            PackWriter::staged(t, StagingFile::anonymous().unwrap())
        } else {
            PackWriter::new(t, 1 << 16)
        };
        for d in &blobs {
            enc.encode_into(&key, Id::hash(d), d, &mut w).unwrap();
        }
        let p = w.finish(&key).unwrap();
        let data = p.test_bytes();
        prop_assert_eq!(p.len(), data.len() as u64);
        prop_assert_eq!(p.id, Id::hash(&data));
        let header = parse_pack(&key, &p.id, &data).unwrap();
        prop_assert_eq!(&header, &p.blobs);
        for (b, d) in header.iter().zip(&blobs) {
            let sealed = &data[b.offset as usize..(b.offset + b.length) as usize];
            let loc = BlobLocation { pack: p.id, blob: *b };
            prop_assert_eq!(&decode_blob(&key, &loc, sealed).unwrap(), d);
        }
    }

    #[test]
    fn any_changed_byte_is_detected(blobs in blob_data(), at: prop::sample::Index, bit in 0u8..8) {
        let key = Key::generate();
        let mut enc = BlobEncoder::new(3).unwrap();
        let mut w = PackWriter::new(BlobType::Data, 1 << 16);
        for d in &blobs {
            enc.encode_into(&key, Id::hash(d), d, &mut w).unwrap();
        }
        let p = w.finish(&key).unwrap();
        let mut bad = p.test_bytes();
        let i = at.index(bad.len());
        bad[i] ^= 1 << bit;
        // The pack's name no longer matches its bytes, and its header or
        // the blob holding that byte fails to open.
        prop_assert_ne!(Id::hash(&bad), p.id);
        let header_ok = parse_pack(&key, &p.id, &bad).is_ok_and(|h| h == p.blobs);
        let blobs_ok = p.blobs.iter().all(|b| {
            let (s, e) = (b.offset as usize, (b.offset + b.length) as usize);
            decode_blob(&key, &BlobLocation { pack: p.id, blob: *b }, &bad[s..e]).is_ok()
        });
        prop_assert!(!(header_ok && blobs_ok), "flip at {} of {} undetected", i, bad.len());
    }

    #[test]
    fn a_blob_read_under_another_id_is_refused(a in proptest::collection::vec(any::<u8>(), 1..500),
                                               b in proptest::collection::vec(any::<u8>(), 1..500)) {
        prop_assume!(a != b);
        let key = Key::generate();
        let mut enc = BlobEncoder::new(3).unwrap();
        let mut w = PackWriter::new(BlobType::Data, 4096);
        enc.encode_into(&key, Id::hash(&a), &a, &mut w).unwrap();
        enc.encode_into(&key, Id::hash(&b), &b, &mut w).unwrap();
        let p = w.finish(&key).unwrap();
        let (x, y) = (p.blobs[0], p.blobs[1]);
        // y's authentic bytes presented where the index says x is.
        let sealed_y = &p.test_bytes()[y.offset as usize..(y.offset + y.length) as usize];
        let mut entry = x;
        entry.length = y.length;
        entry.raw_length = y.raw_length;
        entry.compression = y.compression;
        let e = decode_blob(&key, &BlobLocation { pack: p.id, blob: entry }, sealed_y).unwrap_err();
        prop_assert!(e.to_string().contains("hash mismatch"), "{}", e);
    }
}
