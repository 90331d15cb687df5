//! Micro-benchmarks of the hot paths: chunking, hashing, compress+seal,
//! pack writing, decode (open+decompress+verify) and index lookups.
//! Throughput is reported per byte (or per lookup).

use arch_index::{BlobType, Compression, Id, IndexFile, MasterIndex, PackEntry, PackedBlob};
use arch_micro_bench::{random, text};
use arch_repository::{BlobDecoder, BlobEncoder, Chunker, ChunkerParams, Key, PackWriter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const MIB: usize = 1 << 20;

fn chunker() -> Chunker {
    // The repository defaults (see InitOptions).
    Chunker::new(ChunkerParams {
        min_size: 512 << 10,
        avg_size: MIB as u32,
        max_size: 8 * MIB as u32,
        seed: 7,
        zero_runs: true,
    })
}

fn chunking(c: &mut Criterion) {
    let data = random(32 * MIB, 1);
    let ch = chunker();
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("cut 32 MiB random", |b| {
        let mut cuts = Vec::new();
        b.iter(|| {
            ch.cut(black_box(&data), true, &mut cuts);
            cuts.len()
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash");
    for size in [4 << 10, MIB] {
        let data = random(size, 2);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("blake3 {} KiB", size >> 10), |b| b.iter(|| Id::hash(black_box(&data))));
    }
    g.finish();
}

fn seal(c: &mut Criterion) {
    let key = Key::generate();
    let mut g = c.benchmark_group("compress+seal");
    for (name, data) in [("random 1 MiB", random(MIB, 3)), ("text 1 MiB", text(MIB))] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        let mut enc = BlobEncoder::new(3).expect("encoder");
        let mut out = Vec::new();
        g.bench_function(name, |b| b.iter(|| enc.seal_blob(&key, black_box(&data), &mut out)));
        let mut sealed = Vec::new();
        let compression = enc.seal_blob(&key, &data, &mut sealed);
        let loc = arch_index::BlobLocation {
            pack: Id::hash(b"pack"),
            blob: PackedBlob {
                id: Id::hash(&data),
                blob_type: BlobType::Data,
                offset: 0,
                length: sealed.len() as u32,
                raw_length: data.len() as u32,
                compression,
            },
        };
        let mut dec = BlobDecoder::new().expect("decoder");
        g.bench_function(format!("decode {name}"), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |s| dec.decode(&key, &loc, s).map(|p| p.len()).expect("decodes"),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn pack_writing(c: &mut Criterion) {
    let key = Key::generate();
    let blobs: Vec<(Id, Vec<u8>)> = (0..16u64)
        .map(|i| {
            let d = random(MIB, 10 + i);
            (Id::hash(&d), key.seal(&d))
        })
        .collect();
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes(16 * MIB as u64));
    g.bench_function("write 16 sealed 1 MiB blobs + header", |b| {
        b.iter(|| {
            let mut w = PackWriter::new(BlobType::Data, 17 * MIB);
            for (id, sealed) in &blobs {
                w.add_sealed(*id, sealed, MIB as u32, Compression::None).expect("memory pack");
            }
            w.finish(&key).expect("memory pack").id
        })
    });
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    const N: u32 = 1_000_000;
    let ids: Vec<Id> = (0..N).map(|i| Id::hash(&i.to_le_bytes())).collect();
    let index = MasterIndex::new(Default::default());
    let packs: Vec<PackEntry> = ids
        .chunks(1000)
        .enumerate()
        .map(|(p, chunk)| PackEntry {
            pack: Id::hash(&(p as u64).to_le_bytes()),
            blobs: chunk
                .iter()
                .enumerate()
                .map(|(i, id)| PackedBlob {
                    id: *id,
                    blob_type: BlobType::Data,
                    offset: i as u32 * 100,
                    length: 100,
                    raw_length: 60,
                    compression: Compression::None,
                })
                .collect(),
        })
        .collect();
    index.load(&IndexFile { supersedes: vec![], packs, marked: vec![] });
    let missing: Vec<Id> = (N..N + 1000).map(|i| Id::hash(&i.to_le_bytes())).collect();
    let mut g = c.benchmark_group("index 1M blobs");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("lookup hit", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            index.lookup(BlobType::Data, &ids[i]).is_some()
        })
    });
    g.bench_function("lookup miss", |b| {
        b.iter(|| {
            i = (i + 1) % missing.len();
            index.lookup(BlobType::Data, &missing[i]).is_some()
        })
    });
    g.finish();
}

criterion_group!(benches, chunking, hashing, seal, pack_writing, index_lookup);
criterion_main!(benches);
