//! `verify-proof` on a log of one million segments (issue: well under a
//! millisecond). The log is synthetic: real genesis and proven segment,
//! signed checkpoint, and a million leaf hashes around them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use criterion::{Criterion, criterion_group, criterion_main};
use custody::dsse;
use custody::hash::Sha256Digest;
use custody::keys::VaultSigner;
use custody::log::{self, Tree};
use custody::proof::{Anchor, InclusionProof, LeafProof, PROOF_FORMAT, verify_proof};
use custody::segment::{Entry, Genesis, SEGMENT_PAYLOAD_TYPE, Segment, Tool};
use custody::time::Time;

const SIZE: u64 = 1_000_000;
const PROVEN: u64 = 765_432;

fn document() -> (Vec<u8>, Sha256Digest) {
    let key = VaultSigner::from_seed("bench.custody.example/vault", [3; 32]);
    let genesis = Segment {
        format: 1,
        vault: None,
        seq: 0,
        prev: None,
        sealed_at: Time::from_unix(1_800_000_000),
        entries: vec![Entry::Genesis(Genesis {
            origin: key.name().into(),
            key: key.public(),
            created_at: Time::from_unix(1_800_000_000),
            nonce: "00".repeat(16),
            created_by: "bench".into(),
            host: "bench".into(),
            tool: Tool::this(),
        })],
    };
    let genesis = dsse::sign(SEGMENT_PAYLOAD_TYPE, &genesis.encode(), &[&key]);
    let vault_id = log::leaf_hash(&genesis);
    let proven = Segment {
        format: 1,
        vault: Some(vault_id),
        seq: PROVEN,
        prev: Some(Sha256Digest([7; 32])),
        sealed_at: Time::from_unix(1_800_000_100),
        entries: vec![],
    };
    let proven = dsse::sign(SEGMENT_PAYLOAD_TYPE, &proven.encode(), &[&key]);
    let mut tree = Tree::new();
    for i in 0..SIZE {
        tree.push(match i {
            0 => vault_id,
            PROVEN => log::leaf_hash(&proven),
            _ => Sha256Digest::of(&i.to_le_bytes()),
        });
    }
    let checkpoint = log::sign_checkpoint(&key, SIZE, tree.root());
    let path = tlog_tiles::prove_record(SIZE, PROVEN, &tree).expect("leaf in tree");
    let genesis_path = tlog_tiles::prove_record(SIZE, 0, &tree).expect("leaf in tree");
    let doc = InclusionProof {
        format: PROOF_FORMAT.into(),
        vault_id,
        genesis: B64.encode(&genesis),
        checkpoint: String::from_utf8(checkpoint).expect("text"),
        leaves: vec![
            LeafProof {
                index: 0,
                segment: B64.encode(&genesis),
                audit_path: genesis_path.iter().map(|h| B64.encode(h.0)).collect(),
            },
            LeafProof {
                index: PROVEN,
                segment: B64.encode(&proven),
                audit_path: path.iter().map(|h| B64.encode(h.0)).collect(),
            },
        ],
    };
    (serde_json::to_vec(&doc).expect("serialises"), vault_id)
}

fn bench(c: &mut Criterion) {
    let (doc, vault_id) = document();
    let anchor = Anchor::VaultId(vault_id);
    verify_proof(&doc, &anchor).expect("the synthetic proof checks out");
    c.bench_function("verify_proof, 1M-segment log", |b| {
        b.iter(|| verify_proof(std::hint::black_box(&doc), &anchor).expect("ok"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
