//! The RFC 6962 log over segments and its checkpoints (FORMAT.md §10), on
//! the C2SP crates `tlog_tiles` and `signed_note`. Pure: no
//! I/O.
//!
//! A leaf is a segment's stored bytes: leaf hash = SHA-256(0x00 || bytes). A
//! checkpoint is a C2SP tlog-checkpoint body signed as a C2SP signed note by
//! a vault key, whose key name is the vault's origin.
//!
//! Not here: tiles (derived data for large logs; later) and witness
//! cosignatures (later).

use ed25519_dalek::VerifyingKey;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, HashReader};

use crate::hash::Sha256Digest;
use crate::keys::{PublicKey, VaultSigner};

/// Largest checkpoint a reader accepts, in bytes.
pub const MAX_CHECKPOINT_BYTES: u64 = 64 << 10;

/// RFC 6962 leaf hash of a segment's stored bytes.
pub fn leaf_hash(segment_bytes: &[u8]) -> Sha256Digest {
    Sha256Digest(tlog_tiles::record_hash(segment_bytes).0)
}

/// An in-memory RFC 6962 tree that grows one leaf at a time; it keeps the
/// stored hashes of `tlog_tiles` (about two per leaf).
#[derive(Debug, Default, Clone)]
pub struct Tree {
    size: u64,
    stored: Vec<Hash>,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.stored.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Sha256Digest) {
        let hashes = tlog_tiles::stored_hashes_for_record_hash(self.size, Hash(leaf.0), self)
            .expect("a tree reads only hashes it stored");
        self.stored.extend(hashes);
        self.size += 1;
    }

    /// The root of the first `n` leaves (`n <= size`).
    pub fn root_at(&self, n: u64) -> Sha256Digest {
        assert!(n <= self.size, "root_at beyond the tree");
        Sha256Digest(
            tlog_tiles::tree_hash(n, self)
                .expect("stored hashes are complete")
                .0,
        )
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Sha256Digest {
        self.root_at(self.size)
    }
}

/// Why a checkpoint was rejected.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a signed note, or the body is not a tlog-checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// Not signed by any vault key, or a vault key's signature is invalid.
    #[error("checkpoint signature does not verify against the vault key: {0}")]
    Signature(String),
    /// The origin line is not the vault's.
    #[error("checkpoint origin {found:?} is not the vault's origin {expected:?}")]
    Origin {
        /// What the checkpoint says.
        found: String,
        /// The vault's origin.
        expected: String,
    },
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The origin line.
    pub origin: String,
    /// Number of segments covered.
    pub size: u64,
    /// Root hash over those segments.
    pub root: Sha256Digest,
}

/// Signs a checkpoint for `size` segments with `root`; returns the note's
/// bytes (C2SP tlog-checkpoint body, then a blank line and one signature).
pub fn sign_checkpoint(signer: &VaultSigner, size: u64, root: Sha256Digest) -> Vec<u8> {
    let body =
        Checkpoint::new(signer.name(), size, Hash(root.0), "").expect("origin is a valid key name");
    let mut note = Note::new(&body.to_bytes(), &[]).expect("checkpoint text is a valid note");
    note.add_sigs(&[signer])
        .expect("origin is a valid key name");
    note.to_bytes()
}

/// Verifies a checkpoint's signature with the vault's keys, then parses it.
///
/// # Errors
/// See [`CheckpointError`].
pub fn open_checkpoint(
    bytes: &[u8],
    origin: &str,
    keys: &[VerifyingKey],
) -> Result<SignedCheckpoint, CheckpointError> {
    let note =
        Note::from_bytes(bytes).map_err(|_| CheckpointError::Malformed("not a signed note"))?;
    let verifiers: Vec<Box<dyn signed_note::Verifier>> = keys
        .iter()
        .filter_map(|k| StandardVerifier::new(&PublicKey::note_verifier_key(k, origin)).ok())
        .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
        .collect();
    note.verify(&VerifierList::new(verifiers))
        .map_err(|e| CheckpointError::Signature(e.to_string()))?;
    let cp = Checkpoint::from_bytes(note.text())
        .map_err(|_| CheckpointError::Malformed("body is not a tlog-checkpoint"))?;
    if cp.origin() != origin {
        return Err(CheckpointError::Origin {
            found: cp.origin().into(),
            expected: origin.into(),
        });
    }
    Ok(SignedCheckpoint {
        origin: cp.origin().into(),
        size: cp.size(),
        root: Sha256Digest(cp.hash().0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962 §2.1 by recursion, as an independent reference.
    fn reference_root(leaves: &[Sha256Digest]) -> Sha256Digest {
        use sha2::Digest;
        match leaves.len() {
            0 => Sha256Digest::of(b""),
            1 => leaves[0],
            n => {
                let k = n.next_power_of_two() / 2;
                let (l, r) = (reference_root(&leaves[..k]), reference_root(&leaves[k..]));
                let mut h = sha2::Sha256::new();
                h.update([1u8]);
                h.update(l.0);
                h.update(r.0);
                Sha256Digest(h.finalize().into())
            }
        }
    }

    proptest! {
        #[test]
        fn tree_matches_rfc6962(n in 0usize..70) {
            let leaves: Vec<_> = (0..n).map(|i| leaf_hash(format!("seg {i}").as_bytes())).collect();
            let mut tree = Tree::new();
            for l in &leaves { tree.push(*l); }
            for k in 0..=n {
                prop_assert_eq!(tree.root_at(k as u64), reference_root(&leaves[..k]));
            }
        }
    }

    proptest! {
        #[test]
        fn checkpoint_sign_open_round_trip(size in any::<u64>(), root in any::<[u8; 32]>(), seed in any::<[u8; 32]>()) {
            let k = VaultSigner::from_seed("prop.example/vault", seed);
            let bytes = sign_checkpoint(&k, size, Sha256Digest(root));
            let cp = open_checkpoint(&bytes, "prop.example/vault", &[k.verifying_key()]).unwrap();
            prop_assert_eq!((cp.size, cp.root), (size, Sha256Digest(root)));
        }

        #[test]
        fn checkpoint_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let k = VaultSigner::from_seed("prop.example/vault", [1; 32]);
            let _ = open_checkpoint(&bytes, "prop.example/vault", &[k.verifying_key()]);
        }
    }

    #[test]
    fn checkpoint_round_trip_and_rejections() {
        let k = VaultSigner::from_seed("example.org/vault", [2; 32]);
        let other = VaultSigner::from_seed("example.org/vault", [3; 32]);
        let root = leaf_hash(b"x");
        let bytes = sign_checkpoint(&k, 1, root);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("example.org/vault\n1\n"), "{text}");
        let cp = open_checkpoint(&bytes, "example.org/vault", &[k.verifying_key()]).unwrap();
        assert_eq!((cp.size, cp.root), (1, root));

        assert!(matches!(
            open_checkpoint(&bytes, "example.org/vault", &[other.verifying_key()]),
            Err(CheckpointError::Signature(_))
        ));
        let forged = text.replacen("\n1\n", "\n2\n", 1);
        assert!(matches!(
            open_checkpoint(forged.as_bytes(), "example.org/vault", &[k.verifying_key()]),
            Err(CheckpointError::Signature(_))
        ));
        assert!(open_checkpoint(b"junk", "example.org/vault", &[k.verifying_key()]).is_err());
        assert!(open_checkpoint(&bytes, "other", &[k.verifying_key()]).is_err());
    }
}
