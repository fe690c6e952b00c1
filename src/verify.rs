//! `custody verify`: checks a vault in named phases and reports every
//! finding, not just the first (FORMAT.md §13 (verification)). A damaged vault is
//! a [`Report`] with findings, never an `Err`; `Err` means the check could not
//! run at all.
//!
//! Phases, in order: `segments` (genesis, signatures, chain), `checkpoint`
//! (signature, size, root), `packs` (existence, magic, pack hash), `content`
//! (every chunk decompresses within its declared size and re-hashes to its
//! id; every artifact re-hashes to its BLAKE3 and SHA-256).
//!
//! Not here: pinned checkpoints beyond the vault id, consistency proofs,
//! bundles (later).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use sha2::Digest as _;

use crate::hash::{Blake3Id, Sha256Digest};
use crate::ingest::{MAX_PACK_BYTES, PACK_MAGIC};
use crate::layout;
use crate::log::{self, CheckpointError, Tree};
use crate::progress::Progress;
use crate::restore::{ChunkError, ChunkReader};
use crate::segment::{Artifact, Entry, MAX_SEGMENT_BYTES};
use crate::store::{Store, StoreError};
use crate::vault::{self, Root, SegmentFault};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Evidence or its proof is damaged or missing: verify exits 1.
    Damage,
    /// Worth knowing, not damage (a crash left an unreferenced pack).
    Information,
}

macro_rules! kinds {
    ($($variant:ident = $name:literal, $sev:ident;)*) => {
        /// Every kind of finding; the names are FORMAT.md's.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $(#[doc = $name] $variant,)* }
        impl Kind {
            /// The finding's name in FORMAT.md and in `--json`.
            pub fn as_str(self) -> &'static str { match self { $(Self::$variant => $name,)* } }
            /// Its severity.
            pub fn severity(self) -> Severity { match self { $(Self::$variant => Severity::$sev,)* } }
            /// All kinds.
            pub const ALL: &'static [Kind] = &[$(Self::$variant,)*];
        }
    };
}

kinds! {
    CheckpointMissing = "checkpoint_missing", Damage;
    CheckpointMalformed = "checkpoint_malformed", Damage;
    CheckpointBadSignature = "checkpoint_bad_signature", Damage;
    CheckpointRootMismatch = "checkpoint_root_mismatch", Damage;
    CheckpointBeyondLog = "checkpoint_beyond_log", Damage;
    LogBeyondCheckpoint = "log_beyond_checkpoint", Information;
    TrustedCheckpointInvalid = "trusted_checkpoint_invalid", Damage;
    LogTruncated = "log_truncated", Damage;
    LogRewritten = "log_rewritten", Damage;
    CheckpointRolledBack = "checkpoint_rolled_back", Damage;
    GenesisMissing = "genesis_missing", Damage;
    GenesisInvalid = "genesis_invalid", Damage;
    VaultIdMismatch = "vault_id_mismatch", Damage;
    SegmentMissing = "segment_missing", Damage;
    SegmentMalformed = "segment_malformed", Damage;
    SegmentUnknownKey = "segment_unknown_key", Damage;
    SegmentBadSignature = "segment_bad_signature", Damage;
    SegmentWrongVault = "segment_wrong_vault", Damage;
    SegmentMisplaced = "segment_misplaced", Damage;
    ChainBroken = "chain_broken", Damage;
    UnexpectedObject = "unexpected_object", Information;
    PackMissing = "pack_missing", Damage;
    PackMalformed = "pack_malformed", Damage;
    PackHashMismatch = "pack_hash_mismatch", Damage;
    PackUnreferenced = "pack_unreferenced", Information;
    ChunkCorrupt = "chunk_corrupt", Damage;
    ChunkHashMismatch = "chunk_hash_mismatch", Damage;
    ArtifactSizeMismatch = "artifact_size_mismatch", Damage;
    ArtifactHashMismatch = "artifact_hash_mismatch", Damage;
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One thing verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: Kind,
    /// How bad.
    pub severity: Severity,
    /// The phase that found it.
    pub phase: &'static str,
    /// The object concerned (a key in the vault).
    pub object: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip the content phase (packs are only checked to exist).
    pub quick: bool,
    /// The vault id the caller trusts, recorded out of band.
    pub vault_id: Option<Sha256Digest>,
    /// A checkpoint the caller saved earlier (signed note bytes): the log
    /// must be an append-only extension of it.
    pub trusted: Option<Vec<u8>>,
}

/// The checkpoint verification found, if its signature held.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    /// Segments covered.
    pub size: u64,
    /// Root hash.
    pub root: Sha256Digest,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub vault: String,
    /// The vault id (leaf hash of the genesis segment), when it exists.
    pub vault_id: Option<Sha256Digest>,
    /// Whether the vault id was pinned by the caller.
    pub pinned: bool,
    /// The vault's origin.
    pub origin: Option<String>,
    /// The latest checkpoint, when its signature held.
    pub checkpoint: Option<CheckpointInfo>,
    /// The pinned checkpoint, when one was given and its signature held.
    pub trusted: Option<CheckpointInfo>,
    /// Segments stored.
    pub segments: u64,
    /// Artifacts in valid segments.
    pub artifacts: u64,
    /// Packs referenced.
    pub packs: u64,
    /// Chunks decompressed and re-hashed.
    pub chunks_checked: u64,
    /// Plaintext bytes re-hashed.
    pub bytes_checked: u64,
    /// Whether the content phase ran.
    pub content_checked: bool,
    /// Every finding, in phase order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding is damage.
    pub fn damaged(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Damage)
    }

    /// What the report proves, in one sentence for a person.
    pub fn conclusion(&self) -> String {
        let damage = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Damage)
            .count();
        if damage > 0 {
            return format!(
                "DAMAGED ({damage} finding(s)): the evidence or its proof is not intact"
            );
        }
        let what = if self.content_checked {
            "every segment, checkpoint, pack and artifact checks out"
        } else {
            "every segment and the checkpoint check out and every pack exists (content not re-read: --quick)"
        };
        let cp = self.checkpoint.as_ref().map_or(0, |c| c.size);
        let scope = if self.pinned {
            "the log descends from the pinned vault id"
        } else {
            "self-consistency only: pass --vault-id to prove this is the vault you recorded"
        };
        let tail = match &self.trusted {
            Some(t) => format!(
                "the log is an append-only extension of the pinned checkpoint (size {}): nothing it covers was removed or rewritten",
                t.size
            ),
            None => "removal of the newest segments together with a roll-back of the checkpoint is only detectable against a saved checkpoint (--trusted)".to_owned(),
        };
        format!("OK: {what}, up to checkpoint size {cp}; {scope}; {tail}")
    }

    /// Whether a finding of `kind` was made.
    pub fn has(&self, kind: Kind) -> bool {
        self.findings.iter().any(|f| f.kind == kind)
    }
}

struct Findings {
    list: Vec<Finding>,
    phase: &'static str,
}

impl Findings {
    fn add(&mut self, kind: Kind, object: impl Into<String>, message: impl Into<String>) {
        self.list.push(Finding {
            kind,
            severity: kind.severity(),
            phase: self.phase,
            object: object.into(),
            message: message.into(),
        });
    }
}

fn fault_kind(f: &SegmentFault) -> Kind {
    match f {
        SegmentFault::Malformed(_) => Kind::SegmentMalformed,
        SegmentFault::UnknownKey(_) => Kind::SegmentUnknownKey,
        SegmentFault::BadSignature(_) => Kind::SegmentBadSignature,
        SegmentFault::WrongVault { .. } => Kind::SegmentWrongVault,
        SegmentFault::Misplaced { .. } => Kind::SegmentMisplaced,
        SegmentFault::ChainBroken { .. } => Kind::ChainBroken,
        SegmentFault::Genesis(_) => Kind::SegmentMalformed,
    }
}

/// Verifies the vault in `store`.
///
/// # Errors
/// Only when the check cannot run (the store cannot be listed or read).
pub fn verify(
    store: &Store,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<Report, StoreError> {
    let mut f = Findings {
        list: Vec::new(),
        phase: "segments",
    };
    let mut report = Report {
        vault: store.location().to_owned(),
        vault_id: None,
        pinned: opts.vault_id.is_some(),
        origin: None,
        checkpoint: None,
        trusted: None,
        segments: 0,
        artifacts: 0,
        packs: 0,
        chunks_checked: 0,
        bytes_checked: 0,
        content_checked: false,
        findings: Vec::new(),
    };

    // Read in the reverse of the order writers create objects (packs, then
    // a segment, then the checkpoint): checkpoint first, then segments,
    // then packs. A writer running meanwhile then only ever adds segments
    // beyond the checkpoint (information) and packs nobody references yet
    // (information), never a false gap or a false missing pack.
    let checkpoint = match store.get(layout::CHECKPOINT, log::MAX_CHECKPOINT_BYTES) {
        Ok(b) => Ok(b),
        Err(e) => Err(object_problem(e)?),
    };
    let mut segment_seqs = BTreeSet::new();
    for o in store.list(layout::SEGMENTS_DIR)? {
        match layout::parse_segment_path(&o.key) {
            Some(seq) => {
                segment_seqs.insert(seq);
            }
            None => f.add(
                Kind::UnexpectedObject,
                &o.key,
                "not a segment name; ignored",
            ),
        }
    }
    let mut stored_packs = BTreeMap::new();
    for o in store.list(layout::PACKS_DIR)? {
        match layout::parse_pack_path(&o.key) {
            Some(id) => {
                stored_packs.insert(id, o.size);
            }
            None => f.add(Kind::UnexpectedObject, &o.key, "not a pack name; ignored"),
        }
    }
    for o in store.list("")? {
        let ours = o.key.starts_with(&format!("{}/", layout::SEGMENTS_DIR))
            || o.key.starts_with(&format!("{}/", layout::PACKS_DIR))
            || o.key == layout::CHECKPOINT
            || o.key == layout::LOCAL_LOCK;
        if !ours {
            f.add(
                Kind::UnexpectedObject,
                &o.key,
                "not part of the vault layout; ignored",
            );
        }
    }
    report.segments = segment_seqs.len() as u64;

    // Phase: segments.
    let Some(root) = check_genesis_phase(store, opts, &segment_seqs, &mut f)? else {
        report.findings = f.list;
        return Ok(report);
    };
    report.vault_id = Some(root.vault_id);
    report.origin = Some(root.genesis.origin.clone());
    // Iterate over what is stored, never over the numbers it claims: one
    // object named segments/18446744073709551615 must not make verify
    // count to it. A run of missing numbers is one finding.
    let log_len = segment_seqs
        .iter()
        .next_back()
        .map_or(0, |s| s.saturating_add(1));
    let mut leaves: BTreeMap<u64, Sha256Digest> = BTreeMap::from([(0, root.vault_id)]);
    let mut artifacts: Vec<(u64, Artifact)> = Vec::new();
    let mut expected = 1u64;
    for &seq in segment_seqs.iter().filter(|&&s| s > 0) {
        if seq > expected {
            let (from, to) = (expected, seq - 1);
            let what = if from == to {
                format!("segment {from} is missing: the log has a gap")
            } else {
                format!(
                    "segments {from} to {to} are missing ({} segments): the log has a gap",
                    to - from + 1
                )
            };
            f.add(Kind::SegmentMissing, layout::segment_path(from), what);
        }
        expected = seq.saturating_add(1);
        let key = layout::segment_path(seq);
        let bytes = match store.get(&key, MAX_SEGMENT_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => {
                f.add(Kind::SegmentMissing, &key, "listed but gone when read");
                continue;
            }
            Err(e) => {
                f.add(Kind::SegmentMalformed, &key, object_problem(e)?);
                continue;
            }
        };
        let leaf = log::leaf_hash(&bytes);
        let prev = leaves.get(&(seq - 1)).copied();
        match vault::check_segment(&bytes, seq, prev, &root) {
            Ok(seg) => {
                for e in seg.entries {
                    if let Entry::Artifact(a) = e {
                        artifacts.push((seq, *a));
                    }
                }
            }
            Err(fault) => f.add(fault_kind(&fault), &key, fault.to_string()),
        }
        leaves.insert(seq, leaf);
    }
    report.artifacts = artifacts.len() as u64;

    // Phase: checkpoint.
    f.phase = "checkpoint";
    report.checkpoint = check_checkpoint(checkpoint, &root, &leaves, log_len, &mut f);
    if let Some(trusted) = &opts.trusted {
        report.trusted = check_trusted(
            trusted,
            report.checkpoint.as_ref(),
            &root,
            &leaves,
            log_len,
            &mut f,
        );
    }

    // Phase: packs.
    f.phase = "packs";
    let mut referenced: BTreeMap<Blake3Id, usize> = BTreeMap::new();
    for (seq, a) in &artifacts {
        let sum: u64 = a.chunks.iter().map(|c| u64::from(c.size)).sum();
        if sum != a.size {
            f.add(
                Kind::ArtifactSizeMismatch,
                layout::segment_path(*seq),
                format!(
                    "artifact {} declares {} bytes but its chunks hold {sum}",
                    a.path, a.size
                ),
            );
        }
        for c in &a.chunks {
            *referenced.entry(c.pack).or_default() += 1;
        }
    }
    report.packs = referenced.len() as u64;
    let mut usable: HashMap<Blake3Id, u64> = HashMap::new();
    for (id, refs) in &referenced {
        let key = layout::pack_path(id);
        let Some(&size) = stored_packs.get(id) else {
            f.add(
                Kind::PackMissing,
                &key,
                format!("referenced by {refs} chunk(s) but not stored"),
            );
            continue;
        };
        if opts.quick {
            usable.insert(*id, size);
            continue;
        }
        if size > MAX_PACK_BYTES {
            f.add(
                Kind::PackMalformed,
                &key,
                format!("{size} bytes, more than the {MAX_PACK_BYTES}-byte limit"),
            );
            continue;
        }
        let bytes = match store.get(&key, MAX_PACK_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => {
                f.add(Kind::PackMissing, &key, "listed but gone when read");
                continue;
            }
            Err(e) => {
                f.add(Kind::PackMalformed, &key, object_problem(e)?);
                continue;
            }
        };
        if !bytes.starts_with(PACK_MAGIC) {
            f.add(
                Kind::PackMalformed,
                &key,
                "does not start with the pack magic",
            );
        }
        let actual = Blake3Id::of(&bytes);
        if actual != *id {
            f.add(
                Kind::PackHashMismatch,
                &key,
                format!("bytes hash to {actual}, not to the pack's name"),
            );
        }
        progress.bytes(0);
        usable.insert(*id, size);
    }
    let segments_damaged = f
        .list
        .iter()
        .any(|x| x.phase == "segments" && x.severity == Severity::Damage);
    let why = if segments_damaged {
        "no valid segment references this pack; a damaged segment may have (see its finding)"
    } else {
        "no segment references this pack (left by an interrupted run); it is not evidence"
    };
    for id in stored_packs
        .keys()
        .filter(|id| !referenced.contains_key(id))
    {
        f.add(Kind::PackUnreferenced, layout::pack_path(id), why);
    }

    // Phase: content.
    if !opts.quick {
        f.phase = "content";
        report.content_checked = true;
        let (chunks, bytes) = check_content(store, &artifacts, &usable, &mut f, progress)?;
        report.chunks_checked = chunks;
        report.bytes_checked = bytes;
    }
    report.findings = f.list;
    Ok(report)
}

/// What is wrong with one object that could not be read, as a finding's
/// message; `Err` when the store itself failed (verify cannot run).
fn object_problem(e: StoreError) -> Result<String, StoreError> {
    match e {
        StoreError::TooLarge { size, max, .. } => {
            Ok(format!("{size} bytes, more than the {max}-byte limit"))
        }
        StoreError::NotRegular { what, .. } => Ok(format!("not a regular file ({what})")),
        StoreError::Backend { source, .. } => Ok(format!("unreadable: {source}")),
        e @ StoreError::Location { .. } => Err(e),
    }
}

fn check_genesis_phase(
    store: &Store,
    opts: &Options,
    seqs: &BTreeSet<u64>,
    f: &mut Findings,
) -> Result<Option<Root>, StoreError> {
    let key = layout::segment_path(0);
    let bytes = match store.get(&key, MAX_SEGMENT_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => {
            let what = if seqs.is_empty() {
                "no segments at all: not a vault"
            } else {
                "the genesis segment is missing"
            };
            f.add(Kind::GenesisMissing, &key, what);
            return Ok(None);
        }
        Err(e) => {
            f.add(Kind::GenesisInvalid, &key, object_problem(e)?);
            return Ok(None);
        }
    };
    let leaf = log::leaf_hash(&bytes);
    if let Some(pinned) = opts.vault_id {
        if pinned != leaf {
            f.add(
                Kind::VaultIdMismatch,
                &key,
                format!("genesis hashes to vault id {leaf}, not the pinned {pinned}"),
            );
        }
    }
    match vault::check_genesis(&bytes) {
        Ok((root, _)) => Ok(Some(root)),
        Err(fault) => {
            f.add(Kind::GenesisInvalid, &key, fault.to_string());
            Ok(None)
        }
    }
}

/// The tree over the leading run of stored segments (up to the first gap).
fn prefix_tree(leaves: &BTreeMap<u64, Sha256Digest>) -> Tree {
    let mut tree = Tree::new();
    for (i, (seq, leaf)) in leaves.iter().enumerate() {
        if *seq != i as u64 {
            break;
        }
        tree.push(*leaf);
    }
    tree
}

/// Checks that the log is an append-only extension of a checkpoint the
/// caller saved: the log holds at least its segments, their root is its
/// root, and an RFC 6962 consistency proof from it to the vault's current
/// checkpoint verifies.
fn check_trusted(
    bytes: &[u8],
    current: Option<&CheckpointInfo>,
    root: &Root,
    leaves: &BTreeMap<u64, Sha256Digest>,
    log_len: u64,
    f: &mut Findings,
) -> Option<CheckpointInfo> {
    const KEY: &str = "trusted checkpoint";
    let keys: Vec<_> = root.keyring.keys().map(|(_, k)| *k).collect();
    let pinned = match log::open_checkpoint(bytes, &root.genesis.origin, &keys) {
        Ok(cp) => cp,
        Err(e) => {
            f.add(
                Kind::TrustedCheckpointInvalid,
                KEY,
                format!("{e} (is it a checkpoint of this vault?)"),
            );
            return None;
        }
    };
    let info = CheckpointInfo {
        size: pinned.size,
        root: pinned.root,
    };
    if pinned.size > log_len {
        f.add(
            Kind::LogTruncated,
            KEY,
            format!(
                "the pinned checkpoint covers {} segments but the vault holds {log_len}: segments were removed",
                pinned.size
            ),
        );
        return Some(info);
    }
    if let Some(cur) = current.filter(|c| c.size == pinned.size && c.root != pinned.root) {
        // Two validly signed checkpoints for one size with different roots: a
        // fork, whatever the stored segments say.
        f.add(
            Kind::LogRewritten,
            KEY,
            format!("the vault's checkpoint and the pinned one both cover {} segments but differ: {} vs {}", cur.size, cur.root, pinned.root),
        );
        return Some(info);
    }
    let tree = prefix_tree(leaves);
    if tree.size() >= pinned.size {
        let actual = tree.root_at(pinned.size);
        if actual != pinned.root {
            f.add(
                Kind::LogRewritten,
                KEY,
                format!(
                    "the vault's first {} segments hash to {actual}, the pinned checkpoint says {}: history was rewritten",
                    pinned.size, pinned.root
                ),
            );
            return Some(info);
        }
    }
    if let Some(cur) = current {
        if cur.size < pinned.size {
            f.add(
                Kind::CheckpointRolledBack,
                layout::CHECKPOINT,
                format!(
                    "the vault's checkpoint (size {}) is older than the pinned one (size {})",
                    cur.size, pinned.size
                ),
            );
        } else if tree.size() >= cur.size {
            // The proof an auditor holding only the two checkpoints would
            // be given (RFC 6962 §2.1.2), checked as such.
            let proof = tlog_tiles::prove_tree(cur.size, pinned.size, &tree);
            let ok = proof.is_ok_and(|p| {
                tlog_tiles::check_tree(
                    &p,
                    cur.size,
                    tlog_tiles::Hash(cur.root.0),
                    pinned.size,
                    tlog_tiles::Hash(pinned.root.0),
                )
                .is_ok()
            });
            if !ok {
                f.add(
                    Kind::LogRewritten,
                    KEY,
                    format!("no consistency proof from the pinned checkpoint (size {}) to the vault's (size {})", pinned.size, cur.size),
                );
            }
        }
    }
    Some(info)
}

fn check_checkpoint(
    read: Result<Option<bytes::Bytes>, String>,
    root: &Root,
    leaves: &BTreeMap<u64, Sha256Digest>,
    log_len: u64,
    f: &mut Findings,
) -> Option<CheckpointInfo> {
    let key = layout::CHECKPOINT;
    let bytes = match read {
        Ok(Some(b)) => b,
        Ok(None) => {
            f.add(Kind::CheckpointMissing, key, "there is no checkpoint");
            return None;
        }
        Err(why) => {
            f.add(Kind::CheckpointMalformed, key, why);
            return None;
        }
    };
    let keys: Vec<_> = root.keyring.keys().map(|(_, k)| *k).collect();
    let cp = match log::open_checkpoint(&bytes, &root.genesis.origin, &keys) {
        Ok(cp) => cp,
        Err(e @ CheckpointError::Signature(_)) => {
            f.add(Kind::CheckpointBadSignature, key, e.to_string());
            return None;
        }
        Err(e) => {
            f.add(Kind::CheckpointMalformed, key, e.to_string());
            return None;
        }
    };
    let stored = log_len;
    // The leaves the checkpoint covers, if every one of them was read.
    let covered: Vec<Sha256Digest> = leaves.range(..cp.size).map(|(_, l)| *l).collect();
    if cp.size > stored {
        f.add(
            Kind::CheckpointBeyondLog,
            key,
            format!(
                "checkpoint covers {} segments but only {stored} exist",
                cp.size
            ),
        );
    } else if covered.len() as u64 == cp.size {
        let mut tree = Tree::new();
        covered.into_iter().for_each(|l| tree.push(l));
        let actual = tree.root();
        if actual != cp.root {
            f.add(
                Kind::CheckpointRootMismatch,
                key,
                format!(
                    "root of the {} stored segments is {actual}, the checkpoint says {}",
                    cp.size, cp.root
                ),
            );
        }
        if cp.size < stored {
            f.add(
                Kind::LogBeyondCheckpoint,
                key,
                format!(
                    "{} segment(s) after the checkpoint (size {}); an interrupted write, or the pointer was rolled back; the next write re-checkpoints",
                    stored - cp.size,
                    cp.size
                ),
            );
        }
    }
    Some(CheckpointInfo {
        size: cp.size,
        root: cp.root,
    })
}

/// Re-hashes every artifact from its chunks, on all cores.
fn check_content(
    store: &Store,
    artifacts: &[(u64, Artifact)],
    usable: &HashMap<Blake3Id, u64>,
    f: &mut Findings,
    progress: &dyn Progress,
) -> Result<(u64, u64), StoreError> {
    let next = AtomicUsize::new(0);
    let shared = Mutex::new(Shared::default());
    let failure: Mutex<Option<StoreError>> = Mutex::new(None);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut reader = ChunkReader::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((seq, a)) = artifacts.get(i) else {
                        break;
                    };
                    if failure.lock().expect("not poisoned").is_some() {
                        break;
                    }
                    if let Err(e) =
                        check_artifact(store, *seq, a, usable, &mut reader, &shared, progress)
                    {
                        *failure.lock().expect("not poisoned") = Some(e);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let shared = shared.into_inner().expect("not poisoned");
    for (kind, object, message) in shared.findings {
        f.add(kind, object, message);
    }
    Ok((shared.chunks, shared.bytes))
}

#[derive(Default)]
struct Shared {
    findings: Vec<(Kind, String, String)>,
    reported: HashSet<(Blake3Id, u64)>,
    chunks: u64,
    bytes: u64,
}

fn check_artifact(
    store: &Store,
    seq: u64,
    a: &Artifact,
    usable: &HashMap<Blake3Id, u64>,
    reader: &mut ChunkReader,
    shared: &Mutex<Shared>,
    progress: &dyn Progress,
) -> Result<(), StoreError> {
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut total = 0u64;
    let mut complete = true;
    for c in &a.chunks {
        let Some(&pack_len) = usable.get(&c.pack) else {
            complete = false;
            continue;
        };
        let within = c
            .offset
            .checked_add(u64::from(c.stored))
            .is_some_and(|end| end <= pack_len);
        let read = if within {
            reader.read(store, c)
        } else {
            Err(ChunkError::Corrupt {
                id: c.id.to_string(),
                object: crate::restore::chunk_object(c),
                why: format!("lies beyond the end of its {pack_len}-byte pack"),
            })
        };
        let (kind, object, why) = match read {
            Ok(plain) => {
                sha.update(plain);
                b3.update(plain);
                total += plain.len() as u64;
                progress.bytes(plain.len() as u64);
                let mut s = shared.lock().expect("not poisoned");
                s.chunks += 1;
                s.bytes += plain.len() as u64;
                continue;
            }
            Err(ChunkError::Store(e)) => (
                Kind::ChunkCorrupt,
                crate::restore::chunk_object(c),
                format!("unreadable: {e}"),
            ),
            Err(ChunkError::Corrupt { object, why, .. }) => (Kind::ChunkCorrupt, object, why),
            Err(ChunkError::HashMismatch { actual, object, .. }) => (
                Kind::ChunkHashMismatch,
                object,
                format!("hashes to {actual}, not its id {}", c.id),
            ),
        };
        complete = false;
        let mut s = shared.lock().expect("not poisoned");
        // One finding per damaged chunk, however many artifacts share it.
        if s.reported.insert((c.pack, c.offset)) {
            s.findings.push((
                kind,
                object,
                format!("chunk {} of {}: {why}", c.id.short(), a.path),
            ));
        }
    }
    if complete {
        let (b, h) = (
            Blake3Id::from(b3.finalize()),
            Sha256Digest(sha.finalize().into()),
        );
        if total == a.size && (b != a.blake3 || h != a.sha256) {
            shared.lock().expect("not poisoned").findings.push((
                Kind::ArtifactHashMismatch,
                layout::segment_path(seq),
                format!(
                    "artifact {} re-hashes to blake3 {b} sha256 {h}, recorded {} / {}",
                    a.path, a.blake3, a.sha256
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique_and_snake_case() {
        let names: HashSet<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), Kind::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
