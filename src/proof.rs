//! Inclusion proofs (FORMAT.md §13a): a self-contained JSON document proving
//! that given segments are in the log at a signed checkpoint, checkable
//! offline with nothing but the vault id (or the vault's public key).
//!
//! A proof carries the genesis segment (so the vault id pins the key), the
//! signed checkpoint, and for each proven segment its stored bytes, its leaf
//! index and its RFC 6962 audit path. Nothing in it is trusted: the checker
//! re-derives every claim. Not here: consistency proofs between two
//! checkpoints (`verify --trusted`), bundles (later).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use tlog_tiles::Hash;

use crate::hash::Sha256Digest;
use crate::keys::PublicKey;
use crate::layout;
use crate::log::{self, SignedCheckpoint};
use crate::segment::{MAX_SEGMENT_BYTES, Segment};
use crate::vault::{self, Root, Vault, VaultError};

/// The `format` value of a proof document.
pub const PROOF_FORMAT: &str = "custody-inclusion-proof-v1";
/// Largest proof document a checker reads.
pub const MAX_PROOF_BYTES: u64 = 256 << 20;
/// Most segments one proof document may prove.
const MAX_LEAVES: usize = 4096;

/// A proof document, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// The vault id (leaf hash of `genesis`); informative, re-derived.
    pub vault_id: Sha256Digest,
    /// Base64 of the genesis segment's stored bytes.
    pub genesis: String,
    /// The checkpoint, a C2SP signed note, as text.
    pub checkpoint: String,
    /// The proven segments.
    pub leaves: Vec<LeafProof>,
}

/// One proven segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeafProof {
    /// Its index in the log (its sequence number).
    pub index: u64,
    /// Base64 of the segment's stored bytes (a DSSE envelope).
    pub segment: String,
    /// The RFC 6962 audit path to the checkpoint's root, base64 hashes,
    /// leaf side first.
    pub audit_path: Vec<String>,
}

/// Why a proof could not be made or did not check out.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The vault could not be read.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The segment is not covered by the stored checkpoint yet.
    #[error(
        "segment {seq} is not covered by the checkpoint (size {size}); the next write re-checkpoints"
    )]
    NotCovered {
        /// The segment.
        seq: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// The document is not a well-formed proof.
    #[error("not a custody inclusion proof: {0}")]
    Malformed(String),
    /// The genesis does not hash to the expected vault id.
    #[error("the proof's genesis hashes to vault id {found}, not {expected}")]
    WrongVault {
        /// Leaf hash of the proof's genesis.
        found: Sha256Digest,
        /// The pinned id.
        expected: Sha256Digest,
    },
    /// A signature, hash or path does not check out.
    #[error("{0}")]
    Invalid(String),
}

/// Proves that segments `seqs` are in `vault`'s log at its stored
/// checkpoint.
///
/// # Errors
/// A segment not covered by the checkpoint; storage failures.
pub fn prove(vault: &Vault, seqs: &[u64]) -> Result<InclusionProof, ProofError> {
    let store = vault.store();
    let read = |key: &str, max| -> Result<Vec<u8>, ProofError> {
        store
            .get(key, max)
            .map_err(VaultError::from)?
            .map(|b| b.to_vec())
            .ok_or_else(|| ProofError::Invalid(format!("{key} vanished")))
    };
    let note = read(layout::CHECKPOINT, log::MAX_CHECKPOINT_BYTES)?;
    let cp = open_note(&note, vault.root())?;
    let tree = &vault.index().tree;
    // Another writer may have moved the checkpoint since the vault was read.
    if cp.size > tree.size() || tree.root_at(cp.size) != cp.root {
        return Err(ProofError::Invalid(
            "the vault changed while the proof was being made; run it again".into(),
        ));
    }
    // Leaf 0 (genesis) is always proven too: it binds the checkpoint to this
    // vault even where two vaults share a key and origin.
    let mut wanted: Vec<u64> = seqs.to_vec();
    wanted.push(0);
    // And every key rotation and revocation the checkpoint covers, so that a
    // verifier knows which key may sign where (FORMAT.md §5, §13a).
    wanted.extend(
        vault
            .index()
            .key_segments
            .iter()
            .copied()
            .filter(|s| *s < cp.size),
    );
    wanted.sort_unstable();
    wanted.dedup();
    let mut leaves = Vec::new();
    for seq in wanted {
        if seq >= cp.size {
            return Err(ProofError::NotCovered { seq, size: cp.size });
        }
        let path = tlog_tiles::prove_record(cp.size, seq, tree)
            .map_err(|e| ProofError::Invalid(e.to_string()))?;
        leaves.push(LeafProof {
            index: seq,
            segment: B64.encode(read(&layout::segment_path(seq), MAX_SEGMENT_BYTES)?),
            audit_path: path.iter().map(|h| B64.encode(h.0)).collect(),
        });
    }
    Ok(InclusionProof {
        format: PROOF_FORMAT.into(),
        vault_id: vault.id(),
        genesis: B64.encode(read(&layout::segment_path(0), MAX_SEGMENT_BYTES)?),
        checkpoint: String::from_utf8(note)
            .map_err(|_| ProofError::Malformed("checkpoint is not text".into()))?,
        leaves,
    })
}

fn open_note(note: &[u8], root: &Root) -> Result<SignedCheckpoint, ProofError> {
    vault::open_checkpoint(note, root).map_err(|e| ProofError::Invalid(format!("checkpoint: {e}")))
}

/// What a proof checks against: the vault id recorded at `init`, or the
/// vault's public key as a C2SP note verifier key (`origin+hash+base64`).
#[derive(Debug, Clone)]
pub enum Anchor {
    /// The vault id.
    VaultId(Sha256Digest),
    /// A C2SP signed-note verifier key.
    NoteKey(String),
}

/// A proof that checked out.
#[derive(Debug)]
pub struct Verified {
    /// The vault id (leaf hash of the proof's genesis).
    pub vault_id: Sha256Digest,
    /// The checkpoint the segments are proven against.
    pub checkpoint: SignedCheckpoint,
    /// The proven segments, decoded after their signatures were checked.
    pub segments: Vec<(u64, Segment)>,
    /// The vault keys as the proven key segments leave them.
    pub keyring: crate::keys::Keyring,
}

impl Verified {
    /// The artifact entries of the proven segments, in log order.
    pub fn artifacts(&self) -> impl Iterator<Item = &crate::segment::Artifact> {
        self.segments
            .iter()
            .flat_map(|(_, s)| s.entries.iter())
            .filter_map(|e| match e {
                crate::segment::Entry::Artifact(a) => Some(&**a),
                _ => None,
            })
    }
}

/// Checks a proof document against `anchor`, offline.
///
/// # Errors
/// [`ProofError`] naming the first thing that does not check out.
pub fn verify_proof(bytes: &[u8], anchor: &Anchor) -> Result<Verified, ProofError> {
    if bytes.len() as u64 > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed(format!(
            "larger than {MAX_PROOF_BYTES} bytes"
        )));
    }
    let p: InclusionProof =
        serde_json::from_slice(bytes).map_err(|e| ProofError::Malformed(e.to_string()))?;
    if p.format != PROOF_FORMAT {
        return Err(ProofError::Malformed(format!(
            "format {:?}, expected {PROOF_FORMAT:?}",
            p.format
        )));
    }
    if p.leaves.is_empty() || p.leaves.len() > MAX_LEAVES {
        return Err(ProofError::Malformed(format!(
            "{} leaves; 1 to {MAX_LEAVES} expected",
            p.leaves.len()
        )));
    }
    let b64 = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|_| ProofError::Malformed(format!("{what} is not base64")))
    };
    if p.genesis.len() as u64 > MAX_SEGMENT_BYTES * 4 / 3 + 4 {
        return Err(ProofError::Malformed("genesis is too large".into()));
    }
    let genesis = b64("genesis", &p.genesis)?;
    // The cheap check first: is this the pinned vault at all?
    if let Anchor::VaultId(id) = anchor {
        let found = log::leaf_hash(&genesis);
        if found != *id {
            return Err(ProofError::WrongVault {
                found,
                expected: *id,
            });
        }
    }
    let (mut root, _) =
        vault::check_genesis(&genesis).map_err(|f| ProofError::Invalid(format!("genesis: {f}")))?;
    // The checkpoint may be signed by a key rotated in after genesis: open it
    // with the keys the proof's segments name, each of which must then
    // check out below, in log order, before the proof is accepted.
    let mut all: Vec<_> = root.keyring.keys().map(|(_, k)| *k).collect();
    for leaf in p.leaves.iter().skip(1) {
        if let Ok(bytes) = b64("segment", &leaf.segment)
            && bytes.len() as u64 <= MAX_SEGMENT_BYTES
            && let Ok(env) = serde_json::from_slice::<crate::dsse::Envelope>(&bytes)
            && let Ok(payload) = B64.decode(&env.payload)
            && let Ok(seg) = crate::segment::Segment::decode(&payload)
        {
            for e in &seg.entries {
                if let crate::segment::Entry::KeyRotated(r) = e
                    && let Ok(k) = r.new.verifying_key()
                {
                    all.push(k);
                }
            }
        }
    }
    // Any candidate key, to learn size and root; the strict check (a key
    // that may sign at that size) follows once the key segments are in.
    let cp = log::open_checkpoint(p.checkpoint.as_bytes(), &root.genesis.origin, &all)
        .map_err(|e| ProofError::Invalid(format!("checkpoint: {e}")))?;
    if !p.leaves.windows(2).all(|w| w[0].index < w[1].index) {
        return Err(ProofError::Malformed(
            "leaf indices must be strictly increasing".into(),
        ));
    }
    if p.leaves[0].index != 0 || p.leaves[0].segment != p.genesis {
        return Err(ProofError::Malformed(
            "the first leaf must be the genesis segment (index 0)".into(),
        ));
    }
    let mut segments = Vec::new();
    for leaf in &p.leaves {
        let seg_bytes = b64("segment", &leaf.segment)?;
        if seg_bytes.len() as u64 > MAX_SEGMENT_BYTES {
            return Err(ProofError::Malformed(format!(
                "segment {} is too large",
                leaf.index
            )));
        }
        if leaf.audit_path.len() > 64 {
            return Err(ProofError::Malformed(format!(
                "audit path of segment {} is too long",
                leaf.index
            )));
        }
        let path = leaf
            .audit_path
            .iter()
            .map(|h| {
                let raw = b64("audit path hash", h)?;
                <[u8; 32]>::try_from(raw)
                    .map(Hash)
                    .map_err(|_| ProofError::Malformed("audit path hash is not 32 bytes".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if leaf.index >= cp.size {
            return Err(ProofError::Invalid(format!(
                "segment {} is beyond the checkpoint (size {})",
                leaf.index, cp.size
            )));
        }
        let hash = log::leaf_hash(&seg_bytes);
        tlog_tiles::check_record(&path, cp.size, Hash(cp.root.0), leaf.index, Hash(hash.0)).map_err(|_| {
            ProofError::Invalid(format!("segment {} is not in the log at checkpoint size {} (audit path does not lead to the root)", leaf.index, cp.size))
        })?;
        // Inclusion proves the bytes; the signature and payload say what
        // they mean. The chain link needs the previous segment and is not
        // checked here: inclusion in a signed tree already fixes the order.
        let seg = if leaf.index == 0 {
            vault::check_genesis(&seg_bytes).map(|(_, s)| s)
        } else {
            vault::check_segment(&seg_bytes, leaf.index, None, &root)
        }
        .map_err(|f| ProofError::Invalid(format!("segment {}: {f}", leaf.index)))?;
        root.absorb(leaf.index, &seg);
        segments.push((leaf.index, seg));
    }
    // The checkpoint's key must be one the segments proved, valid at its
    // size; with a key as the anchor, that very key (the genesis key, or
    // one rotated in since: an auditor pins the current key).
    open_note(p.checkpoint.as_bytes(), &root)?;
    if let Anchor::NoteKey(k) = anchor {
        let last = cp.size.saturating_sub(1);
        let signer = root
            .keyring
            .valid_at(last)
            .map(|s| s.key)
            .find(|key| PublicKey::note_verifier_key(key, &root.genesis.origin) == *k);
        let Some(key) = signer else {
            return Err(ProofError::Invalid(format!(
                "the given key {k} is not a vault key that may sign this checkpoint"
            )));
        };
        log::open_checkpoint(p.checkpoint.as_bytes(), &root.genesis.origin, &[key]).map_err(
            |_| ProofError::Invalid(format!("the checkpoint is not signed by the given key {k}")),
        )?;
    }
    Ok(Verified {
        vault_id: root.vault_id,
        checkpoint: cp,
        segments,
        keyring: root.keyring,
    })
}
