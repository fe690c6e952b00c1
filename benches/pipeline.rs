//! Micro-benchmarks of the data path, so that a regression in one stage
//! shows up on its own (`cargo bench --bench pipeline`): content-defined
//! chunking, the two digests, zstd at the vault's level both ways, the
//! whole capture of one item into an in-memory store, and sealing a
//! segment of artifact entries (JSON encoding and an Ed25519 DSSE
//! signature). Proof verification is `--bench proof`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use custody::dsse;
use custody::hash::{Blake3Id, Sha256Digest};
use custody::ingest::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, Pipeline, ZSTD_LEVEL};
use custody::keys::VaultSigner;
use custody::segment::{
    Artifact, ChunkRef, Entry, FileMeta, ItemKind, SEGMENT_PAYLOAD_TYPE, Segment, SourceKind,
    Status, Tool,
};
use custody::store::Store;
use custody::time::Time;

/// Deterministic log text (a web access log with ids and tokens), about
/// as compressible as the benchmark corpus of scripts/gen-corpus.py.
fn logs(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 256);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let paths = [
        "/api/v1/login",
        "/static/app.js",
        "/api/v1/orders",
        "/health",
    ];
    while out.len() < n {
        let r = next();
        let line = format!(
            "10.{}.{}.{} - - [17/Nov/2025:16:{:02}:{:02} +0900] \"GET {}?req={:016x} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0\" tok={:08x}\n",
            r % 256,
            (r >> 8) % 256,
            (r >> 16) % 256,
            (r >> 24) % 60,
            (r >> 32) % 60,
            paths[(r >> 40) as usize % paths.len()],
            next(),
            [200, 200, 200, 302, 404][(r >> 44) as usize % 5],
            (r >> 48) % 50_000,
            next() as u32,
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(n);
    out
}

fn chunking(c: &mut Criterion) {
    let data = logs(16 << 20);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    g.bench_function("fastcdc_16MiB", |b| {
        b.iter(|| {
            fastcdc::v2020::FastCDC::new(black_box(&data), CHUNK_MIN, CHUNK_AVG, CHUNK_MAX).count()
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let chunk = logs(1 << 20);
    let mut g = c.benchmark_group("hashing");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("blake3_1MiB", |b| {
        b.iter(|| Blake3Id::of(black_box(&chunk)))
    });
    g.bench_function("sha256_1MiB", |b| {
        b.iter(|| Sha256Digest::of(black_box(&chunk)))
    });
    g.finish();
}

fn compression(c: &mut Criterion) {
    let chunk = logs(1 << 20);
    let mut z = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
    let frame = z.compress(&chunk).unwrap();
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    let mut out = Vec::with_capacity(chunk.len());
    let mut g = c.benchmark_group("compression");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("zstd3_compress_1MiB", |b| {
        b.iter(|| z.compress(black_box(&chunk)).unwrap().len())
    });
    g.bench_function("zstd_decompress_1MiB", |b| {
        b.iter(|| {
            out.clear();
            d.decompress_to_buffer(black_box(&frame), &mut out).unwrap()
        })
    });
    g.finish();
}

fn capture(c: &mut Criterion) {
    let data = logs(64 << 20);
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    // `new`: every chunk is compressed and packed; `known`: the same item
    // again in the same run, every chunk deduplicated (a re-declare).
    for (name, again) in [("new_64MiB", false), ("known_64MiB", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let mem = Arc::new(object_store::memory::InMemory::new());
                    let store = Store::from_object_store(mem, "memory");
                    let known = HashMap::new();
                    total += std::thread::scope(|s| {
                        let mut p = Pipeline::start(s, store, &known);
                        if again {
                            p.capture(&data[..], |_| {}).unwrap();
                            p.flush().unwrap();
                        }
                        let t = std::time::Instant::now();
                        black_box(p.capture(&data[..], |_| {}).unwrap());
                        p.flush().unwrap();
                        let took = t.elapsed();
                        p.finish().unwrap();
                        took
                    });
                }
                total
            })
        });
    }
    g.finish();
}

fn artifact(i: u64) -> Entry {
    let id = Blake3Id::of(&i.to_le_bytes());
    Entry::Artifact(Box::new(Artifact {
        incident: "INC-2026-001".into(),
        run: "ab".repeat(16),
        source: "logs".into(),
        source_kind: SourceKind::Files,
        kind: ItemKind::File,
        path: format!("/var/log/app/{i:06}.log"),
        status: Status::Complete,
        reason: None,
        error: None,
        size: 4096,
        blake3: id,
        sha256: Sha256Digest::of(&i.to_le_bytes()),
        chunks: vec![ChunkRef {
            id,
            pack: id,
            offset: 16 + i * 900,
            stored: 900,
            size: 4096,
            skip: None,
        }],
        link_target: None,
        offset: None,
        file: Some(FileMeta {
            mtime: Time::from_unix(1_800_000_000),
            ctime: Time::from_unix(1_800_000_000),
            mode: "100640".into(),
            uid: 0,
            gid: 4,
            owner: Some("root".into()),
            group: Some("adm".into()),
            dev: 2049,
            ino: 1_000_000 + i,
        }),
        command: None,
        host: "web-1".into(),
        collector: "web-1".into(),
        tool: Tool::this(),
        started_at: Time::from_unix(1_800_000_000),
        ended_at: Time::from_unix(1_800_000_001),
    }))
}

fn sealing(c: &mut Criterion) {
    let key = VaultSigner::from_seed("bench.custody.example/vault", [7; 32]);
    let mut g = c.benchmark_group("sealing");
    for n in [1u64, 1000] {
        let seg = Segment {
            format: 1,
            vault: Some(Sha256Digest::of(b"vault")),
            seq: 42,
            prev: Some(Sha256Digest::of(b"prev")),
            sealed_at: Time::from_unix(1_800_000_002),
            entries: (0..n).map(artifact).collect(),
        };
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("artifacts", n), &seg, |b, seg| {
            b.iter(|| dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&key]).len())
        });
    }
    g.finish();
}

criterion_group!(benches, chunking, hashing, compression, capture, sealing);
criterion_main!(benches);
