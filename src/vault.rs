//! Opening a vault, reading its log, and the append path (FORMAT.md
//! §11 (write ordering)). This is the only module that orders durable writes.
//!
//! The append path, and what recovery does if the process dies at each step:
//! 1. Packs are created (conditional create, fsynced) before any segment that
//!    references them. Death here leaves unreferenced packs: information for
//!    `verify`, never damage; a later run that meets the same chunks stores
//!    them again (packs are never read back for dedup without a segment).
//! 2. Segment N is created with a conditional create. This is the commit
//!    point. If another writer created N first, we re-read the log from N,
//!    re-seal our entries as N+1 (new prev hash, new signature) and retry.
//!    Death after the create leaves a segment beyond the checkpoint:
//!    information; the next append re-checkpoints.
//! 3. The checkpoint pointer is replaced, under the local lock, only by a
//!    checkpoint for a larger log. Death here changes nothing durable.
//!
//! Not here: reading sources (`sources`), chunking and packing (`ingest`),
//! deciding what is damage (`verify`; `open` refuses a vault whose log does
//! not check out and points there).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::dsse;
use crate::hash::{Blake3Id, Sha256Digest};
use crate::keys::{KeyError, Keyring, VaultSigner};
use crate::layout;
use crate::log::{self, Tree};
use crate::segment::{
    ChunkRef, Entry, Genesis, IncidentDeclared, MAX_SEGMENT_BYTES, SEGMENT_PAYLOAD_TYPE, Segment,
    Tool,
};
use crate::store::{Put, Store, StoreError};
use crate::time::Time;

/// What is wrong with one stored segment. `verify` turns these into findings;
/// the append path refuses to extend a log that has any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentFault {
    /// Not a DSSE envelope or not a strict segment payload.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Signed only by keys the vault does not know.
    #[error("signed by a key the vault does not know ({0})")]
    UnknownKey(String),
    /// A known key's signature does not cover the stored bytes.
    #[error("signature does not verify ({0})")]
    BadSignature(String),
    /// The payload names another vault.
    #[error("belongs to vault {found}, not {expected}")]
    WrongVault {
        /// What the payload says (or `none`).
        found: String,
        /// This vault.
        expected: String,
    },
    /// The payload's sequence number is not the one its key names.
    #[error("claims sequence {found} but is stored as {expected}")]
    Misplaced {
        /// Payload seq.
        found: u64,
        /// Key seq.
        expected: u64,
    },
    /// `prev` is not the leaf hash of the previous segment.
    #[error("prev {found} is not the leaf hash {expected} of the previous segment")]
    ChainBroken {
        /// What the payload says.
        found: String,
        /// Leaf hash of the stored previous segment.
        expected: String,
    },
    /// Genesis rules violated (not exactly one genesis entry, a genesis entry
    /// elsewhere, a bad key).
    #[error("{0}")]
    Genesis(String),
    /// Signed only by vault keys that may not sign at this position: rotated
    /// out before it (FORMAT.md §5 (key lifecycle)).
    #[error("signed only by key(s) rotated out before it: {0}")]
    RetiredKey(String),
    /// A `key_rotated` or `key_revoked` entry that breaks the rules of
    /// FORMAT.md §5 (key lifecycle).
    #[error("{0}")]
    KeyRule(String),
}

impl From<dsse::DsseError> for SegmentFault {
    fn from(e: dsse::DsseError) -> Self {
        match e {
            dsse::DsseError::UnknownKey(k) => Self::UnknownKey(k),
            dsse::DsseError::BadSignature(k) => Self::BadSignature(k),
            other => Self::Malformed(other.to_string()),
        }
    }
}

/// Opens a checkpoint note with the vault keys that may sign at its size
/// (FORMAT.md §5 (key lifecycle)): a key rotated out before the
/// checkpoint's last segment cannot sign it, whatever else it signed.
///
/// # Errors
/// As [`log::open_checkpoint`]; a signature only by such a key is
/// [`CheckpointError::Signature`].
pub fn open_checkpoint(
    bytes: &[u8],
    root: &Root,
) -> Result<log::SignedCheckpoint, log::CheckpointError> {
    let origin = &root.genesis.origin;
    let all: Vec<_> = root.keyring.keys().map(|(_, k)| *k).collect();
    let cp = log::open_checkpoint(bytes, origin, &all)?;
    let last = cp.size.saturating_sub(1);
    let valid: Vec<_> = root.keyring.valid_at(last).map(|s| s.key).collect();
    log::open_checkpoint(bytes, origin, &valid).map_err(|_| {
        log::CheckpointError::Signature(format!(
            "signed only by a key rotated out before segment {last}, which may not sign a checkpoint of size {}",
            cp.size
        ))
    })
}

impl Root {
    /// Takes in the key entries of a checked segment (FORMAT.md §5 (key
    /// lifecycle)); call it for every segment, in order, after
    /// [`check_segment`] accepted it.
    pub fn absorb(&mut self, seq: u64, seg: &Segment) {
        for e in &seg.entries {
            match e {
                Entry::KeyRotated(r) => {
                    if let Some((old, _)) = self.keyring.find(&r.old) {
                        self.keyring.rotate(seq, &old, r.new.clone());
                    }
                }
                Entry::KeyRevoked(v) => {
                    if let Some((key, _)) = self.keyring.find(&v.key) {
                        self.keyring.revoke(
                            &key,
                            crate::keys::Revocation {
                                seq,
                                compromised_since: v.compromised_since.clone(),
                                reason: v.reason.clone(),
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// The vault's root of trust, read from the genesis segment.
#[derive(Debug, Clone)]
pub struct Root {
    /// RFC 6962 leaf hash of the genesis segment.
    pub vault_id: Sha256Digest,
    /// The genesis entry.
    pub genesis: Genesis,
    /// The keys signatures are judged by.
    pub keyring: Keyring,
}

/// Opens the genesis segment: the only one whose key comes from itself, so it
/// is parsed before its signature is checked; pinning the vault id is what
/// makes it trusted.
///
/// # Errors
/// The fault found.
pub fn check_genesis(bytes: &[u8]) -> Result<(Root, Segment), SegmentFault> {
    let env: dsse::Envelope =
        serde_json::from_slice(bytes).map_err(|e| SegmentFault::Malformed(e.to_string()))?;
    let payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&env.payload)
            .map_err(|_| SegmentFault::Malformed("payload is not base64".into()))?
    };
    let seg = Segment::decode(&payload).map_err(|e| SegmentFault::Malformed(e.to_string()))?;
    let [Entry::Genesis(genesis)] = seg.entries.as_slice() else {
        return Err(SegmentFault::Genesis(
            "segment 0 must hold exactly one genesis entry".into(),
        ));
    };
    if seg.seq != 0 {
        return Err(SegmentFault::Misplaced {
            found: seg.seq,
            expected: 0,
        });
    }
    if seg.vault.is_some() || seg.prev.is_some() {
        return Err(SegmentFault::Genesis(
            "genesis must have null vault and prev".into(),
        ));
    }
    if !signed_note::is_key_name_valid(&genesis.origin) {
        return Err(SegmentFault::Genesis(format!(
            "origin {:?} is not a valid key name",
            genesis.origin
        )));
    }
    genesis
        .key
        .verifying_key()
        .map_err(|e| SegmentFault::Genesis(format!("genesis key: {e}")))?;
    let keyring = Keyring::new(vec![genesis.key.clone()]);
    dsse::open(bytes, SEGMENT_PAYLOAD_TYPE, &keyring)?;
    let root = Root {
        vault_id: log::leaf_hash(bytes),
        genesis: genesis.clone(),
        keyring,
    };
    Ok((root, seg))
}

/// Checks segment `seq` (> 0) against the vault root and the leaf hash of the
/// stored segment before it (`None` when that one is missing: the chain
/// cannot be checked across a gap).
///
/// # Errors
/// The first fault found, in this order: envelope and signature, payload,
/// vault, position, chain.
pub fn check_segment(
    bytes: &[u8],
    seq: u64,
    prev_leaf: Option<Sha256Digest>,
    root: &Root,
) -> Result<Segment, SegmentFault> {
    check_segment_signers(bytes, seq, prev_leaf, root).map(|(seg, _)| seg)
}

/// [`check_segment`], also returning the vault keys valid at `seq` that
/// signed it.
///
/// # Errors
/// As [`check_segment`].
pub fn check_segment_signers(
    bytes: &[u8],
    seq: u64,
    prev_leaf: Option<Sha256Digest>,
    root: &Root,
) -> Result<(Segment, Vec<crate::keys::KeyId>), SegmentFault> {
    let opened = dsse::open(bytes, SEGMENT_PAYLOAD_TYPE, &root.keyring)?;
    let seg =
        Segment::decode(&opened.payload).map_err(|e| SegmentFault::Malformed(e.to_string()))?;
    if seg.vault != Some(root.vault_id) {
        return Err(SegmentFault::WrongVault {
            found: seg.vault.map_or_else(|| "none".into(), |v| v.to_string()),
            expected: root.vault_id.to_string(),
        });
    }
    if seg.seq != seq {
        return Err(SegmentFault::Misplaced {
            found: seg.seq,
            expected: seq,
        });
    }
    if seg.entries.iter().any(|e| matches!(e, Entry::Genesis(_))) {
        return Err(SegmentFault::Genesis(
            "a genesis entry outside segment 0".into(),
        ));
    }
    if let Some(expected) = prev_leaf {
        if seg.prev != Some(expected) {
            return Err(SegmentFault::ChainBroken {
                found: seg.prev.map_or_else(|| "none".into(), |v| v.to_string()),
                expected: expected.to_string(),
            });
        }
    }
    check_key_rules(bytes, seq, &seg, &opened.signed_by, &root.keyring)?;
    let mut valid: Vec<_> = opened
        .signed_by
        .into_iter()
        .filter(|id| root.keyring.state(id).is_some_and(|s| s.valid_at(seq)))
        .collect();
    // A rotation's new key signed it too (check_key_rules made sure).
    for e in &seg.entries {
        if let Entry::KeyRotated(r) = e {
            valid.push(r.new.id);
        }
    }
    Ok((seg, valid))
}

/// FORMAT.md §5 (key lifecycle): a segment needs a signature by a key valid
/// at its position; a rotation is signed by the current key and the new
/// one; a revocation by a valid key other than the one revoked.
fn check_key_rules(
    bytes: &[u8],
    seq: u64,
    seg: &Segment,
    signed_by: &[crate::keys::KeyId],
    ring: &Keyring,
) -> Result<(), SegmentFault> {
    let valid: Vec<_> = signed_by
        .iter()
        .filter(|id| ring.state(id).is_some_and(|s| s.valid_at(seq)))
        .collect();
    if valid.is_empty() {
        let who = signed_by
            .iter()
            .map(|id| match ring.state(id).and_then(|s| s.until) {
                Some(u) => format!("{id} (rotated out in segment {u})"),
                None => id.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SegmentFault::RetiredKey(who));
    }
    let mut rotations = 0;
    for e in &seg.entries {
        match e {
            Entry::KeyRotated(r) => {
                rotations += 1;
                if rotations > 1 {
                    return Err(SegmentFault::KeyRule(
                        "more than one key_rotated in a segment".into(),
                    ));
                }
                let current = ring.current().map(|s| s.id.to_string());
                if current.as_deref() != Some(r.old.as_str())
                    || !valid.iter().any(|id| id.to_string() == r.old)
                {
                    return Err(SegmentFault::KeyRule(format!(
                        "key_rotated names {} as the old key, but the current key is {} and must sign it",
                        r.old,
                        current.unwrap_or_default()
                    )));
                }
                if let Err(e) = r.new.verifying_key() {
                    return Err(SegmentFault::KeyRule(format!("key_rotated new key: {e}")));
                }
                if ring.find(&r.new.id.to_string()).is_some() {
                    return Err(SegmentFault::KeyRule(format!(
                        "key_rotated brings back key {}, which the vault already had",
                        r.new.id
                    )));
                }
                let new_ring = Keyring::new(vec![r.new.clone()]);
                if dsse::open(bytes, SEGMENT_PAYLOAD_TYPE, &new_ring).is_err() {
                    return Err(SegmentFault::KeyRule(format!(
                        "key_rotated is not signed by its new key {}",
                        r.new.id
                    )));
                }
            }
            Entry::KeyRevoked(v) => {
                let Some(state) = ring.find(&v.key).and_then(|(id, _)| ring.state(&id)) else {
                    return Err(SegmentFault::KeyRule(format!(
                        "key_revoked names key {}, which the vault never had",
                        v.key
                    )));
                };
                if state.revoked.is_some() {
                    return Err(SegmentFault::KeyRule(format!(
                        "key {} is already revoked",
                        v.key
                    )));
                }
                if !valid.iter().any(|id| id.to_string() != v.key) {
                    return Err(SegmentFault::KeyRule(format!(
                        "key_revoked of {} must be signed by another valid key",
                        v.key
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a vault could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key file problems.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// There is no vault at the location.
    #[error(
        "{location} is not a custody vault (no genesis segment); create one with `custody init`"
    )]
    NotAVault {
        /// Where we looked.
        location: String,
    },
    /// `init` found something already there.
    #[error("{location} already holds {what}; refusing to initialise over it")]
    AlreadyExists {
        /// Where.
        location: String,
        /// What was found.
        what: String,
    },
    /// The log does not check out; nothing will be appended to it.
    #[error(
        "vault log is damaged at segment {seq}: {fault}; run `custody verify` for the full report"
    )]
    Damaged {
        /// The segment.
        seq: u64,
        /// What is wrong.
        fault: String,
    },
    /// The signing key is not one of the vault's keys.
    #[error(
        "key {key} is not a key of this vault (vault key: {vault_key}); pass the vault's key with --key"
    )]
    ForeignKey {
        /// The key given.
        key: String,
        /// The vault's key.
        vault_key: String,
    },
    /// The key given was rotated out (FORMAT.md §5 (key lifecycle)).
    #[error(
        "key {key} was rotated out in segment {until} and may no longer sign; the current key is {current}"
    )]
    RetiredKey {
        /// The key given.
        key: String,
        /// The segment that rotated it out.
        until: u64,
        /// The current key.
        current: String,
    },
    /// A key entry this writer was asked to write breaks the rules.
    #[error("{0}")]
    KeyRule(String),
    /// A segment would exceed the size readers accept.
    #[error("segment {seq} would be {size} bytes, more than the {max}-byte limit")]
    SegmentTooLarge {
        /// Its position.
        seq: u64,
        /// Its size.
        size: usize,
        /// The limit.
        max: u64,
    },
    /// The signed checkpoint and the log disagree; nothing will be appended.
    #[error(
        "vault log disagrees with its checkpoint: {0}; run `custody verify` for the full report"
    )]
    CheckpointDisagrees(String),
    /// Another writer kept winning the race for the next sequence number.
    #[error("couldn't claim a sequence number after {0} attempts (many concurrent writers?)")]
    Contended(u32),
    /// The backend was probed and does not keep several writers apart.
    #[error(
        "{location} does not enforce create-once (custody doctor at {at}): several writers could overwrite each other's segments; if this is the only writer, set CUSTODY_SINGLE_WRITER=1 (or single_writer = true in custody.toml)"
    )]
    UnsafeBackend {
        /// Where.
        location: String,
        /// When it was probed.
        at: String,
    },
    /// Single-writer mode read a just-written segment back and found other
    /// bytes: another writer is active.
    #[error(
        "segment {0} was replaced while it was written: another writer is active on a backend that cannot keep writers apart; stop the other writer and run `custody verify`"
    )]
    Overwritten(u64),
}

/// Everything `open` learned from the log that writers and readers need.
#[derive(Debug)]
pub struct LogIndex {
    /// The tree over all segments read.
    pub tree: Tree,
    /// Leaf hash of the last segment.
    pub last_leaf: Option<Sha256Digest>,
    /// Where stored chunks are: every chunk the log's artifacts name (the
    /// first reference wins), and, after a declare on this vault, the chunks
    /// it stored that no segment names (a run that failed part-way; their
    /// packs are durable). A declare takes it out while it runs, and a lean
    /// vault ([`Vault::open_lean`]) has none until a declare reads it.
    pub chunks: HashMap<Blake3Id, ChunkRef>,
    /// Which segments' chunks [`LogIndex::chunks`] gathers.
    gathering: Gathering,
    /// Declared incidents, by id.
    pub incidents: BTreeMap<String, IncidentDeclared>,
    /// The latest `backend_probed` entry, if any.
    pub backend: Option<crate::segment::BackendProbed>,
    /// What the artifacts read tell about their content (cut points, and
    /// each path's last content), for re-preserving known data. `None`
    /// once a declare took it, or in a lean vault ([`Vault::open_lean`]):
    /// nothing is learned then, and the next declare reads it from the log.
    pub earlier: Option<crate::ingest::Earlier>,
    /// Segments holding `key_rotated` or `key_revoked` (proofs carry them).
    pub key_segments: Vec<u64>,
}

/// Which segments' chunks a vault gathers into its chunk index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gathering {
    /// Every segment's.
    All,
    /// Other writers' only: a declare took the index out, and has the
    /// chunks of the segments this vault appends for it.
    Foreign,
    /// None: the vault was opened lean ([`Vault::open_lean`]).
    Nothing,
}

impl Default for LogIndex {
    fn default() -> Self {
        Self {
            tree: Tree::default(),
            last_leaf: None,
            chunks: HashMap::new(),
            gathering: Gathering::All,
            incidents: BTreeMap::new(),
            backend: None,
            earlier: Some(crate::ingest::Earlier::default()),
            key_segments: Vec::new(),
        }
    }
}

impl LogIndex {
    /// Takes in one segment of the log; `own` if this vault appended it.
    fn absorb(&mut self, seg: &Segment, leaf: Sha256Digest, own: bool) {
        self.tree.push(leaf);
        self.last_leaf = Some(leaf);
        if seg
            .entries
            .iter()
            .any(|e| matches!(e, Entry::KeyRotated(_) | Entry::KeyRevoked(_)))
        {
            self.key_segments.push(seg.seq);
        }
        for e in &seg.entries {
            match e {
                Entry::Artifact(a) => {
                    let gather = match self.gathering {
                        Gathering::All => true,
                        Gathering::Foreign => !own,
                        Gathering::Nothing => false,
                    };
                    if gather {
                        for c in &a.chunks {
                            self.chunks.entry(c.id).or_insert(*c);
                        }
                    }
                    let Some(earlier) = &mut self.earlier else {
                        continue;
                    };
                    let chunks = || a.chunks.iter().map(|c| (c.id, c.size));
                    earlier.learn(&a.path, chunks());
                    // A failed artifact's digests may be a client's claim
                    // (FORMAT.md §9.6), and a followed piece is not the
                    // whole file.
                    if a.status != crate::segment::Status::Failed && a.offset.is_none() {
                        earlier.learn_whole(&a.path, a.size, a.blake3, a.sha256, chunks());
                    }
                }
                Entry::IncidentDeclared(d) => {
                    self.incidents
                        .entry(d.incident.clone())
                        .or_insert_with(|| d.clone());
                }
                Entry::BackendProbed(b) => self.backend = Some(b.clone()),
                _ => {}
            }
        }
    }
}

/// An open vault whose log checked out (signatures, chain) when read.
#[derive(Debug)]
pub struct Vault {
    store: Store,
    root: Root,
    index: LogIndex,
    /// Segments other writers appended, read while appending, that the
    /// caller has not taken yet ([`Vault::take_foreign`]).
    foreign: Vec<(u64, Segment)>,
}

/// The outcome of one append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The segment's sequence number.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf: Sha256Digest,
    /// Log size after it.
    pub size: u64,
    /// Root after it.
    pub root: Sha256Digest,
    /// Why the checkpoint could not be updated, if it could not. The segment
    /// is committed regardless; the next write or `verify` sees it.
    pub checkpoint_error: Option<String>,
}

/// Options for [`Vault::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Checkpoint origin and key name.
    pub origin: String,
    /// Who creates the vault.
    pub created_by: String,
    /// Host name.
    pub host: String,
    /// Creation time (injected for test vectors).
    pub now: Time,
    /// 16 random bytes, hex (injected for test vectors).
    pub nonce: String,
}

impl Vault {
    /// Creates a vault in `store` (which must be empty), signed by `signer`.
    /// Writes the genesis segment, then the first checkpoint.
    ///
    /// # Errors
    /// [`VaultError::AlreadyExists`] when the store holds anything; storage
    /// failures.
    pub fn init(store: Store, signer: &VaultSigner, opts: InitOptions) -> Result<Self, VaultError> {
        if let Some(first) = store
            .list("")?
            .into_iter()
            .find(|o| o.key != layout::LOCAL_LOCK)
        {
            let what = if first.key.starts_with(layout::SEGMENTS_DIR) {
                "a custody vault".to_string()
            } else {
                format!("other data ({})", first.key)
            };
            return Err(VaultError::AlreadyExists {
                location: store.location().into(),
                what,
            });
        }
        let genesis = Genesis {
            origin: opts.origin,
            key: signer.public(),
            created_at: opts.now.clone(),
            nonce: opts.nonce,
            created_by: opts.created_by,
            host: opts.host,
            tool: Tool::this(),
        };
        let seg = Segment {
            format: crate::segment::FORMAT_VERSION,
            vault: None,
            seq: 0,
            prev: None,
            sealed_at: opts.now,
            entries: vec![Entry::Genesis(genesis)],
        };
        let bytes = dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[signer]);
        // Commit point of init: a crash before this leaves an empty store.
        if store.put_once(&layout::segment_path(0), Bytes::from(bytes.clone()))?
            == Put::AlreadyExists
        {
            return Err(VaultError::AlreadyExists {
                location: store.location().into(),
                what: "a custody vault (created concurrently)".into(),
            });
        }
        let (root, seg) = check_genesis(&bytes).map_err(|f| VaultError::Damaged {
            seq: 0,
            fault: f.to_string(),
        })?;
        let mut index = LogIndex::default();
        index.absorb(&seg, root.vault_id, false);
        let vault = Self {
            store,
            root,
            index,
            foreign: Vec::new(),
        };
        vault.write_checkpoint(signer)?;
        Ok(vault)
    }

    /// Opens the vault in `store`, reading and checking the whole log;
    /// `visit` sees every segment in order.
    ///
    /// # Errors
    /// [`VaultError::NotAVault`], [`VaultError::Damaged`], storage failures.
    pub fn open_with(store: Store, visit: impl FnMut(u64, &Segment)) -> Result<Self, VaultError> {
        Self::open_inner(store, visit, Gathering::All, true)
    }

    /// As [`Vault::open_with`], without gathering what only a declare uses:
    /// the chunk index and what earlier artifacts tell, about 500 bytes per
    /// file preserved, which a vault that records other entries (incident
    /// steps, custody events, the service) would hold for nothing. A
    /// declare on it reads them from the log first.
    ///
    /// # Errors
    /// As [`Vault::open_with`].
    pub fn open_lean(store: Store, visit: impl FnMut(u64, &Segment)) -> Result<Self, VaultError> {
        Self::open_inner(store, visit, Gathering::Nothing, false)
    }

    /// Opens, gathering chunks as `gathering` says and learning what
    /// earlier artifacts tell if `learn`.
    fn open_inner(
        store: Store,
        mut visit: impl FnMut(u64, &Segment),
        gathering: Gathering,
        learn: bool,
    ) -> Result<Self, VaultError> {
        let Some(bytes) = store.get(&layout::segment_path(0), MAX_SEGMENT_BYTES)? else {
            return Err(VaultError::NotAVault {
                location: store.location().into(),
            });
        };
        let (root, seg) = check_genesis(&bytes).map_err(|f| VaultError::Damaged {
            seq: 0,
            fault: f.to_string(),
        })?;
        // The checkpoint is read before the segments: a writer creates
        // segments before their checkpoint, so an honest log read after it
        // is never shorter than it. Its signature is checked after them,
        // when the keys rotated in since genesis are known.
        let checkpoint_bytes = match store.get(layout::CHECKPOINT, log::MAX_CHECKPOINT_BYTES) {
            Ok(b) => b,
            Err(e @ StoreError::TooLarge { .. }) => {
                return Err(VaultError::CheckpointDisagrees(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        visit(0, &seg);
        let mut index = LogIndex {
            gathering,
            earlier: learn.then(crate::ingest::Earlier::default),
            ..LogIndex::default()
        };
        index.absorb(&seg, root.vault_id, false);
        let mut vault = Self {
            store,
            root,
            index,
            foreign: Vec::new(),
        };
        vault.read_from(1, &mut visit)?;
        // A crash between genesis and the first checkpoint leaves none; the
        // next write creates it.
        let checkpoint = checkpoint_bytes
            .map(|b| {
                open_checkpoint(&b, &vault.root).map_err(|e| {
                    VaultError::CheckpointDisagrees(format!("the checkpoint does not verify ({e})"))
                })
            })
            .transpose()?;
        if let Some(cp) = checkpoint {
            // A signed checkpoint the log does not reach, or a log that does
            // not hash to it, means segments were removed or replaced:
            // appending would bury that under new segments.
            if cp.size > vault.size() {
                return Err(VaultError::CheckpointDisagrees(format!(
                    "the signed checkpoint covers {} segments but the log has {}: segments were removed",
                    cp.size,
                    vault.size()
                )));
            }
            let root = vault.index.tree.root_at(cp.size);
            if root != cp.root {
                return Err(VaultError::CheckpointDisagrees(format!(
                    "the log's first {} segments hash to {root}, the signed checkpoint says {}",
                    cp.size, cp.root
                )));
            }
        }
        Ok(vault)
    }

    /// Segments other writers appended that an append of this vault read
    /// and absorbed on its way: a caller that keeps state from the log
    /// (incidents, holds) absorbs them before its own segment.
    pub fn take_foreign(&mut self) -> Vec<(u64, Segment)> {
        std::mem::take(&mut self.foreign)
    }

    /// Reads the segments other writers appended since this vault was last
    /// read, handing each to `visit`; returns how many. Costs one HEAD when
    /// there are none.
    ///
    /// # Errors
    /// As [`Vault::open_with`]: a new segment that does not check out.
    pub fn catch_up(&mut self, visit: &mut dyn FnMut(u64, &Segment)) -> Result<u64, VaultError> {
        let before = self.size();
        for (seq, seg) in self.take_foreign() {
            visit(seq, &seg);
        }
        if self.store.head(&layout::segment_path(before))?.is_none() {
            return Ok(0);
        }
        self.read_from(before, visit)?;
        Ok(self.size() - before)
    }

    /// Opens the vault without visiting segments.
    ///
    /// # Errors
    /// As [`Vault::open_with`].
    pub fn open(store: Store) -> Result<Self, VaultError> {
        Self::open_with(store, |_, _| {})
    }

    /// Reads and checks segments from `from` on, to the end of the log.
    fn read_from(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(u64, &Segment),
    ) -> Result<(), VaultError> {
        let mut seqs: Vec<u64> = self
            .store
            .list(layout::SEGMENTS_DIR)?
            .iter()
            .filter_map(|o| layout::parse_segment_path(&o.key))
            .filter(|&s| s >= from)
            .collect();
        seqs.sort_unstable();
        for (i, seq) in seqs.into_iter().enumerate() {
            let expected = from + i as u64;
            if seq != expected {
                return Err(VaultError::Damaged {
                    seq: expected,
                    fault: "segment is missing".into(),
                });
            }
            let bytes = self
                .store
                .get(&layout::segment_path(seq), MAX_SEGMENT_BYTES)?
                .ok_or_else(|| VaultError::Damaged {
                    seq,
                    fault: "segment vanished while reading".into(),
                })?;
            let seg =
                check_segment(&bytes, seq, self.index.last_leaf, &self.root).map_err(|f| {
                    VaultError::Damaged {
                        seq,
                        fault: f.to_string(),
                    }
                })?;
            visit(seq, &seg);
            self.root.absorb(seq, &seg);
            self.index.absorb(&seg, log::leaf_hash(&bytes), false);
        }
        Ok(())
    }

    /// The storage.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The root of trust.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The vault id.
    pub fn id(&self) -> Sha256Digest {
        self.root.vault_id
    }

    /// Moves what earlier artifacts tell out to a writer, and stops
    /// learning: what the vault would learn while a declare runs is the
    /// run's own artifacts, about 300 bytes a file, held to the end of the
    /// run. Taken again, or from a lean vault, it is read afresh from the
    /// log, which by then holds them (and a lean vault's chunk index with
    /// it, for [`Vault::take_chunks`]).
    ///
    /// # Errors
    /// As [`Vault::open`], when the log is read afresh, and
    /// [`VaultError::Damaged`] if it does not extend the one read before.
    pub(crate) fn take_earlier(&mut self) -> Result<crate::ingest::Earlier, VaultError> {
        if let Some(e) = self.index.earlier.take() {
            return Ok(e);
        }
        let lean = self.index.gathering == Gathering::Nothing;
        let gathering = if lean {
            Gathering::All
        } else {
            Gathering::Nothing
        };
        let fresh = self.read_afresh(gathering, true)?;
        if lean {
            self.index.chunks = fresh.chunks;
            self.index.gathering = Gathering::All;
        }
        Ok(fresh.earlier.unwrap_or_default())
    }

    /// The log read again from the store, gathering as asked; refused
    /// unless it extends the log this vault read (the same vault, the same
    /// segments up to here), as what it tells goes into a declare.
    fn read_afresh(&self, gathering: Gathering, learn: bool) -> Result<LogIndex, VaultError> {
        let fresh = Self::open_inner(self.store.clone(), |_, _| {}, gathering, learn)?;
        let n = self.size();
        if fresh.id() != self.id()
            || fresh.size() < n
            || fresh.index.tree.root_at(n) != self.index.tree.root()
        {
            return Err(VaultError::Damaged {
                seq: n.saturating_sub(1),
                fault: "the log read again does not extend the one read before: segments were replaced or removed meanwhile".into(),
            });
        }
        Ok(fresh.index)
    }

    /// Takes the chunk index ([`LogIndex::chunks`]) out, for a run that
    /// deduplicates against it while this vault appends, instead of a copy
    /// (one entry per chunk the vault holds, about 200 bytes); from a lean
    /// vault, it is read from the log. Give it back with
    /// [`Vault::give_back_chunks`]. Meanwhile the index gathers only the
    /// chunks other writers' segments name: the run has the chunks of its
    /// own segments already, in its index or in those it placed.
    ///
    /// # Errors
    /// As [`Vault::open`], when the log is read afresh, and
    /// [`VaultError::Damaged`] if it does not extend the one read before.
    pub(crate) fn take_chunks(&mut self) -> Result<HashMap<Blake3Id, ChunkRef>, VaultError> {
        let chunks = if self.index.gathering == Gathering::Nothing {
            self.read_afresh(Gathering::All, false)?.chunks
        } else {
            std::mem::take(&mut self.index.chunks)
        };
        self.index.gathering = Gathering::Foreign;
        Ok(chunks)
    }

    /// Puts back what [`Vault::take_chunks`] took (or what of it the run
    /// kept), with `placed`, the chunks the run stored, which must include
    /// every chunk this vault's appends named meanwhile. A chunk known
    /// twice keeps the place it had in the index taken, then in `placed`,
    /// then in other writers' segments.
    pub(crate) fn give_back_chunks(
        &mut self,
        mut taken: HashMap<Blake3Id, ChunkRef>,
        placed: HashMap<Blake3Id, ChunkRef>,
    ) {
        let foreign = std::mem::take(&mut self.index.chunks);
        taken.reserve(placed.len() + foreign.len());
        for (id, c) in placed.into_iter().chain(foreign) {
            taken.entry(id).or_insert(c);
        }
        self.index.chunks = taken;
        self.index.gathering = Gathering::All;
    }

    /// What was read from the log.
    pub fn index(&self) -> &LogIndex {
        &self.index
    }

    /// Number of segments.
    pub fn size(&self) -> u64 {
        self.index.tree.size()
    }

    /// Refuses a signer that is not a vault key.
    ///
    /// # Errors
    /// [`VaultError::ForeignKey`].
    pub fn check_signer(&self, signer: &VaultSigner) -> Result<(), VaultError> {
        if self
            .root
            .keyring
            .find(&signer.key_id().to_string())
            .is_none()
            || signer.name() != self.root.genesis.origin
        {
            let current = self
                .root
                .keyring
                .current()
                .map_or(&self.root.genesis.key, |s| &s.public);
            return Err(VaultError::ForeignKey {
                key: format!("{} ({})", signer.key_id(), signer.name()),
                vault_key: format!("{} ({})", current.id, self.root.genesis.origin),
            });
        }
        if let Some(state) = self.root.keyring.state(&signer.key_id())
            && let Some(until) = state.until
        {
            return Err(VaultError::RetiredKey {
                key: signer.key_id().to_string(),
                until,
                current: self
                    .root
                    .keyring
                    .current()
                    .map(|s| s.id.to_string())
                    .unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Seals `entries` into the next segment, signed by `signer`, then
    /// updates the checkpoint. Every pack the entries reference must already
    /// be durable (FORMAT.md §11 (write ordering)).
    ///
    /// # Errors
    /// Storage failures, a damaged log found while catching up with other
    /// writers, or an oversized segment.
    pub fn append(
        &mut self,
        signer: &VaultSigner,
        entries: Vec<Entry>,
        now: impl Fn() -> Time,
    ) -> Result<Appended, VaultError> {
        self.append_signed(&[signer], entries, now)
    }

    /// [`Vault::append`] signed by several keys: the current key first,
    /// then (for a `key_rotated` entry) the new key, which also signs the
    /// checkpoint. The segment must keep the key rules of FORMAT.md §5.
    ///
    /// # Errors
    /// As [`Vault::append`], and [`VaultError::KeyRule`].
    pub fn append_signed(
        &mut self,
        signers: &[&VaultSigner],
        entries: Vec<Entry>,
        now: impl Fn() -> Time,
    ) -> Result<Appended, VaultError> {
        const ATTEMPTS: u32 = 64;
        let Some(&signer) = signers.first() else {
            return Err(VaultError::KeyRule("a segment needs a signer".into()));
        };
        self.check_signer(signer)?;
        let checkpoint_signer = signers.last().copied().unwrap_or(signer);
        // FORMAT.md §11.1: a backend found not to enforce create-once takes
        // one writer at a time, by the operator's word.
        let single = self.store.single_writer();
        if let Some(b) = self.index.backend.as_ref().filter(|b| !b.multi_writer_safe)
            && !single
        {
            return Err(VaultError::UnsafeBackend {
                location: self.store.location().into(),
                at: b.at.to_string(),
            });
        }
        let mut seg = Segment {
            format: crate::segment::FORMAT_VERSION,
            vault: Some(self.root.vault_id),
            seq: 0,
            prev: None,
            sealed_at: now(),
            entries,
        };
        for _ in 0..ATTEMPTS {
            seg.seq = self.size();
            seg.prev = self.index.last_leaf;
            seg.sealed_at = now();
            let bytes = dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), signers);
            // The writer keeps the key rules it asks readers to keep.
            let ids: Vec<_> = signers.iter().map(|s| s.key_id()).collect();
            check_key_rules(&bytes, seg.seq, &seg, &ids, &self.root.keyring)
                .map_err(|e| VaultError::KeyRule(e.to_string()))?;
            if bytes.len() as u64 > MAX_SEGMENT_BYTES {
                return Err(VaultError::SegmentTooLarge {
                    seq: seg.seq,
                    size: bytes.len(),
                    max: MAX_SEGMENT_BYTES,
                });
            }
            let leaf = log::leaf_hash(&bytes);
            // Commit point (step 2 above).
            match self
                .store
                .put_once(&layout::segment_path(seg.seq), Bytes::from(bytes))?
            {
                Put::Created => {
                    if single {
                        let back = self
                            .store
                            .get(&layout::segment_path(seg.seq), MAX_SEGMENT_BYTES)?;
                        if back.map(|b| log::leaf_hash(&b)) != Some(leaf) {
                            return Err(VaultError::Overwritten(seg.seq));
                        }
                    }
                    self.index.absorb(&seg, leaf, true);
                    self.root.absorb(seg.seq, &seg);
                    // Step 3: a failure here loses nothing; the next append
                    // or verify sees the segment beyond the checkpoint.
                    let checkpoint_error = self
                        .write_checkpoint(checkpoint_signer)
                        .err()
                        .map(|e| e.to_string());
                    return Ok(Appended {
                        seq: seg.seq,
                        leaf,
                        size: self.size(),
                        root: self.index.tree.root(),
                        checkpoint_error,
                    });
                }
                Put::AlreadyExists => {
                    let from = self.size();
                    let mut read = Vec::new();
                    self.read_from(from, &mut |seq, seg| read.push((seq, seg.clone())))?;
                    self.foreign.extend(read);
                }
            }
        }
        Err(VaultError::Contended(ATTEMPTS))
    }

    /// Signs a checkpoint for the whole log read so far and makes it the
    /// latest, unless a checkpoint for a larger log is already there.
    ///
    /// # Errors
    /// Storage failures.
    pub fn write_checkpoint(&self, signer: &VaultSigner) -> Result<bool, VaultError> {
        let size = self.size();
        let cp = log::sign_checkpoint(signer, size, self.index.tree.root());
        let keys: Vec<_> = self.root.keyring.keys().map(|(_, k)| *k).collect();
        let origin = self.root.genesis.origin.clone();
        let wrote = self.store.replace_pointer(
            layout::CHECKPOINT,
            Bytes::from(cp),
            log::MAX_CHECKPOINT_BYTES,
            |cur| match cur.and_then(|c| log::open_checkpoint(c, &origin, &keys).ok()) {
                Some(existing) => existing.size < size,
                None => true,
            },
        )?;
        Ok(wrote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> InitOptions {
        InitOptions {
            origin: "test.example/vault".into(),
            created_by: "tester".into(),
            host: "h".into(),
            now: Time::from_unix(1_700_000_000),
            nonce: "00".repeat(16),
        }
    }

    #[test]
    fn init_append_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let loc = dir.path().to_str().unwrap();
        let k = VaultSigner::from_seed("test.example/vault", [4; 32]);
        let mut v = Vault::init(Store::open(loc).unwrap(), &k, opts()).unwrap();
        let a = v
            .append(&k, vec![], || Time::from_unix(1_700_000_001))
            .unwrap();
        assert_eq!((a.seq, a.size), (1, 2));
        let again = Vault::init(Store::open(loc).unwrap(), &k, opts()).unwrap_err();
        assert!(matches!(again, VaultError::AlreadyExists { .. }), "{again}");

        let mut seen = vec![];
        let v2 = Vault::open_with(Store::open(loc).unwrap(), |s, _| seen.push(s)).unwrap();
        assert_eq!(seen, vec![0, 1]);
        assert_eq!(v2.id(), v.id());
        assert_eq!(v2.index().tree.root(), a.root);

        let other = VaultSigner::from_seed("test.example/vault", [5; 32]);
        assert!(matches!(
            v.append(&other, vec![], Time::now),
            Err(VaultError::ForeignKey { .. })
        ));
    }

    #[test]
    fn losing_writer_retries_at_the_next_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let loc = dir.path().to_str().unwrap();
        let k = VaultSigner::from_seed("test.example/vault", [4; 32]);
        let mut a = Vault::init(Store::open(loc).unwrap(), &k, opts()).unwrap();
        let mut b = Vault::open(Store::open(loc).unwrap()).unwrap();
        assert_eq!(a.append(&k, vec![], Time::now).unwrap().seq, 1);
        // b still thinks the log has one segment: it must lose seq 1 and take 2.
        assert_eq!(b.append(&k, vec![], Time::now).unwrap().seq, 2);
        let v = Vault::open(Store::open(loc).unwrap()).unwrap();
        assert_eq!(v.size(), 3);
    }
}
