//! `custody verify`: checks a vault in named phases and reports every
//! finding, not just the first (FORMAT.md §13 (verification)). A damaged vault is
//! a [`Report`] with findings, never an `Err`; `Err` means the check could not
//! run at all.
//!
//! Phases, in order: `segments` (genesis, signatures, chain), `checkpoint`
//! (signature, size, root), `packs` (existence, magic, pack hash), `content`
//! (every chunk decompresses within its declared size and re-hashes to its
//! id; every artifact re-hashes to its BLAKE3 and SHA-256). Findings come
//! in that order; the work overlaps: listed packs are read and hashed on
//! the other cores while the segments are checked, and the content phase
//! runs on all cores (see `check_content`).
//!
//! Not here: pinned checkpoints beyond the vault id, consistency proofs,
//! bundles (later).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::Digest as _;

use crate::hash::{Blake3Id, Sha256Digest};
use crate::ingest::{CHUNK_MAX, MAX_PACK_BYTES, PACK_MAGIC};
use crate::layout;
use crate::log::{self, CheckpointError, Tree};
use crate::progress::Progress;
use crate::restore::{ChunkError, ChunkReader};
use crate::segment::{Artifact, ChunkRef, Entry, ItemKind, KeyContent, KeyFile, MAX_SEGMENT_BYTES};
use crate::store::{Store, StoreError};
use crate::vault::{self, Root, SegmentFault};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Evidence or its proof is damaged or missing, or a protection the
    /// log says is in place is not (a hold the store does not enforce):
    /// verify exits 1.
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
    HoldMissing = "hold_missing", Damage;
    CheckpointUnwitnessed = "checkpoint_unwitnessed", Damage;
    KeyFileUnbacked = "key_file_unbacked", Damage;
    KeyFileInClear = "key_file_in_clear", Damage;
    SegmentRetiredKey = "segment_retired_key", Damage;
    KeyEntryInvalid = "key_entry_invalid", Damage;
    SignedInCompromiseWindow = "signed_in_compromise_window", Damage;
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
    /// Witnesses whose cosignatures count (FORMAT.md §10a).
    pub witnesses: Vec<crate::witness::Witness>,
    /// How many of them must cosign the latest checkpoint (with witnesses).
    pub quorum: usize,
}

/// What the witnesses attest for one checkpoint size.
#[derive(Debug, Clone, Serialize)]
pub struct WitnessedInfo {
    /// The checkpoint size: segments `0..size` existed when cosigned.
    pub size: u64,
    /// Valid cosignatures: witness name and POSIX time.
    pub witnesses: Vec<(String, u64)>,
    /// With a quorum: the time by which a quorum had cosigned (the
    /// quorum-th earliest timestamp), a third-party bound on when those
    /// segments existed.
    pub quorum_at: Option<u64>,
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
    /// Witness cosignatures found, by checkpoint size (with witnesses).
    pub witnessed: Vec<WitnessedInfo>,
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
    /// Artifacts with the same chunk references as an earlier one, in the
    /// same order: checked against the digests of that content, hashed
    /// once.
    pub artifacts_same_chunks: u64,
    /// Whether the content phase ran.
    pub content_checked: bool,
    /// Objects a hold in place covers, whose protection by the store was
    /// checked.
    pub held_objects: u64,
    /// Every finding, in phase order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding is damage.
    pub fn damaged(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Damage)
    }

    /// The `result` of a `verified` custody event (FORMAT.md §9.8):
    /// `ok: …` or `damaged: …` with counts.
    pub fn result_line(&self) -> String {
        let damage = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Damage)
            .count();
        if damage > 0 {
            format!(
                "damaged: {damage} damage finding(s) of {}",
                self.findings.len()
            )
        } else {
            format!(
                "ok: no damage; {} information finding(s)",
                self.findings.len()
            )
        }
    }

    /// What the report proves, in one sentence for a person.
    pub fn conclusion(&self) -> String {
        let damage = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Damage)
            .count();
        let unprotected = self
            .findings
            .iter()
            .filter(|f| f.kind == Kind::HoldMissing)
            .count();
        if damage > 0 && damage == unprotected {
            return format!(
                "NOT PROTECTED ({damage} finding(s)): the evidence checks out, but objects under a hold are not protected by the store"
            );
        }
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

fn names(cosigned: &[(String, u64)]) -> String {
    cosigned
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// FORMAT.md §10a: the cosignatures stored under `witnessed/`, by size,
/// counted only where the cosigned checkpoint is this log's (origin and the
/// root of its first `size` segments); the latest checkpoint needs the
/// quorum.
fn check_witnesses(
    store: &Store,
    opts: &Options,
    root: &Root,
    leaves: &BTreeMap<u64, Sha256Digest>,
    current: Option<&CheckpointInfo>,
    f: &mut Findings,
) -> Result<Vec<WitnessedInfo>, StoreError> {
    // The tree over the contiguous stored segments.
    let mut tree = Tree::new();
    for (i, (seq, leaf)) in leaves.iter().enumerate() {
        if *seq != i as u64 {
            break;
        }
        tree.push(*leaf);
    }
    let mut by_size: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    let mut foreign = 0usize;
    for o in store.list(layout::WITNESSED_DIR)? {
        let Some(size) = layout::parse_witnessed_path(&o.key) else {
            continue;
        };
        // A planted object too large or not a file is noted, never a
        // reason not to finish (storage failures still are).
        let bytes = match store.get(&o.key, log::MAX_CHECKPOINT_BYTES + 4096) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                let why = object_problem(e)?;
                f.add(
                    Kind::UnexpectedObject,
                    &o.key,
                    format!("not a cosigned checkpoint: {why}"),
                );
                continue;
            }
        };
        let Ok((body, _)) = crate::witness::split_note(&bytes) else {
            foreign += 1;
            continue;
        };
        let Ok(cp) = tlog_tiles::Checkpoint::from_bytes(body) else {
            foreign += 1;
            continue;
        };
        if cp.origin() != root.genesis.origin || cp.size() != size {
            foreign += 1;
            continue;
        }
        // A checkpoint of this log the witnesses saw, beyond the log or with
        // another root: segments were removed, or history was rewritten.
        let cosigned = crate::witness::cosignatures(&bytes, &opts.witnesses);
        if !cosigned.is_empty() && size > tree.size() {
            f.add(
                Kind::LogTruncated,
                &o.key,
                format!(
                    "witness(es) {} cosigned a checkpoint of {size} segments, but the log has {}: segments were removed and the checkpoint rolled back",
                    names(&cosigned),
                    tree.size()
                ),
            );
            continue;
        }
        if size > tree.size() || Sha256Digest(cp.hash().0) != tree.root_at(size) {
            if cosigned.is_empty() {
                foreign += 1;
            } else {
                f.add(
                    Kind::LogRewritten,
                    &o.key,
                    format!(
                        "witness(es) {} cosigned another root for the first {size} segments: the log was rewritten",
                        names(&cosigned)
                    ),
                );
            }
            continue;
        }
        let entry = by_size.entry(size).or_default();
        for (name, ts) in crate::witness::cosignatures(&bytes, &opts.witnesses) {
            if !entry.iter().any(|(n, _)| *n == name) {
                entry.push((name, ts));
            }
        }
    }
    let quorum = opts.quorum.max(1);
    let out: Vec<WitnessedInfo> = by_size
        .into_iter()
        .map(|(size, mut witnesses)| {
            witnesses.sort_by_key(|(_, ts)| *ts);
            let quorum_at = witnesses.get(quorum - 1).map(|(_, ts)| *ts);
            WitnessedInfo {
                size,
                witnesses,
                quorum_at,
            }
        })
        .collect();
    if let Some(cp) = current {
        let got = out
            .iter()
            .find(|w| w.size == cp.size)
            .map_or(0, |w| w.witnesses.len());
        if got < quorum {
            let prev = f.phase;
            f.phase = "checkpoint";
            f.add(
                Kind::CheckpointUnwitnessed,
                layout::CHECKPOINT,
                format!(
                    "the checkpoint (size {}) has {got} of the {quorum} witness cosignatures required{}; run `custody witness catch-up`",
                    cp.size,
                    if foreign > 0 {
                        format!(" ({foreign} stored cosigned checkpoint(s) are not of this log)")
                    } else {
                        String::new()
                    }
                ),
            );
            f.phase = prev;
        }
    }
    Ok(out)
}

/// FORMAT.md §5 (key lifecycle): a segment that only a revoked key signed,
/// sealed at or after the key's `compromised_since`, is suspect unless a
/// saved checkpoint (`--trusted`) already covered it. (`sealed_at` is the
/// signer's claim: a thief can backdate it, which is why a checkpoint held
/// outside the vault is what clears a segment.)
fn check_compromise(
    root: &Root,
    signed: &BTreeMap<u64, (Vec<crate::keys::KeyId>, crate::time::Time)>,
    trusted: Option<&CheckpointInfo>,
    witnessed: &[WitnessedInfo],
    f: &mut Findings,
) {
    for state in root.keyring.states() {
        let Some(rev) = &state.revoked else { continue };
        // Covered: by the saved checkpoint, or by a checkpoint a quorum of
        // witnesses cosigned before the compromise began.
        let since = u64::try_from(rev.compromised_since.timestamp().as_second()).unwrap_or(0);
        let by_witnesses = witnessed
            .iter()
            .filter(|w| w.quorum_at.is_some_and(|t| t < since))
            .map(|w| w.size)
            .max()
            .unwrap_or(0);
        let covered = trusted.map_or(0, |t| t.size).max(by_witnesses);
        for (seq, (signers, sealed_at)) in signed.range(covered..) {
            let only_revoked = signers.iter().all(|id| *id == state.id) && !signers.is_empty();
            if !only_revoked {
                continue;
            }
            // `sealed_at` is the signer's claim: a thief backdates it at
            // will, so a time before the compromise clears nothing.
            let when = if sealed_at.timestamp() >= rev.compromised_since.timestamp() {
                format!("sealed at {sealed_at}, inside the window")
            } else {
                format!("claims to be sealed at {sealed_at}, before it, which only its signer says")
            };
            let prev = f.phase;
            f.phase = "segments";
            f.add(
                Kind::SignedInCompromiseWindow,
                layout::segment_path(*seq),
                format!(
                    "signed only by key {}, revoked in segment {} as compromised since {} ({}); {when}; no saved or witnessed checkpoint from before the compromise covers it",
                    state.id, rev.seq, rev.compromised_since, rev.reason
                ),
            );
            f.phase = prev;
        }
    }
}

/// What [`verify`] will say of these key files and artifacts
/// (`key_file_in_clear`, `key_file_unbacked`), for a writer that checks
/// before it seals (the service). Sequence numbers order them as segments.
pub fn key_file_findings(
    key_files: &[(u64, KeyFile)],
    artifacts: &[(u64, Artifact)],
) -> Vec<Finding> {
    let mut f = Findings {
        list: Vec::new(),
        phase: "segments",
    };
    let mut names = Interned::default();
    let held: Vec<_> = artifacts
        .iter()
        .map(|(seq, a)| (*seq, Held::of(a, &mut names)))
        .collect();
    check_key_files(key_files, &held, &mut f);
    f.list
}

/// What verification keeps of an artifact once its segment is read: the
/// rest of the entry (file metadata, times, hosts, a command's outcome) is
/// dropped, as a vault of many small files holds about a kilobyte of it per
/// file. Run and source names are shared among the artifacts that have them.
struct Held {
    run: Arc<str>,
    source: Arc<str>,
    kind: ItemKind,
    path: Box<str>,
    size: u64,
    blake3: Blake3Id,
    sha256: Sha256Digest,
    chunks: Box<[ChunkRef]>,
}

/// Run and source names already seen, each held once.
#[derive(Default)]
struct Interned(HashSet<Arc<str>>);

impl Interned {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        a
    }
}

impl Held {
    fn of(a: &Artifact, names: &mut Interned) -> Self {
        Self {
            run: names.get(&a.run),
            source: names.get(&a.source),
            kind: a.kind,
            path: a.path.as_str().into(),
            size: a.size,
            blake3: a.blake3,
            sha256: a.sha256,
            chunks: a.chunks.as_slice().into(),
        }
    }
}

/// A key file whose bytes are said to be in the vault (FORMAT.md §9.12)
/// needs the artifact that holds them: of the same run, source and path, in
/// the same or an earlier segment, a `file` with the key file's digests when
/// `stored`, a `sealed` one when `sealed`.
fn check_key_files(key_files: &[(u64, KeyFile)], artifacts: &[(u64, Held)], f: &mut Findings) {
    if key_files.is_empty() {
        return;
    }
    // (run, source, path) to the artifacts there, with their segments.
    type Place<'a> = (&'a str, &'a str, &'a str);
    let mut by_place: HashMap<Place<'_>, Vec<(u64, &Held)>> = HashMap::new();
    for (seq, a) in artifacts {
        by_place
            .entry((&*a.run, &*a.source, &*a.path))
            .or_default()
            .push((*seq, a));
    }
    for (seq, k) in key_files {
        // Bytes of a file that is not public only, in clear: said so by the
        // entry, or found as a `file` artifact of its place.
        if k.form != crate::keymaterial::Form::Public {
            let in_clear = k.content == KeyContent::Stored
                || by_place
                    .get(&(k.run.as_str(), k.source.as_str(), k.path.as_str()))
                    .into_iter()
                    .flatten()
                    .any(|(_, a)| a.kind == ItemKind::File && a.sha256 == k.sha256 && a.size > 0);
            if in_clear {
                f.add(
                    Kind::KeyFileInClear,
                    layout::segment_path(*seq),
                    format!(
                        "key file {} holds {} key material but its bytes are stored in clear",
                        k.path,
                        k.form.as_str()
                    ),
                );
            }
        }
        let want = match k.content {
            KeyContent::Withheld => continue,
            KeyContent::Stored => ItemKind::File,
            KeyContent::Sealed => ItemKind::Sealed,
        };
        let found = by_place
            .get(&(k.run.as_str(), k.source.as_str(), k.path.as_str()))
            .into_iter()
            .flatten()
            .any(|(aseq, a)| {
                *aseq <= *seq
                    && a.kind == want
                    && (want == ItemKind::Sealed
                        || (a.sha256 == k.sha256 && a.blake3 == k.blake3 && a.size == k.size))
            });
        if !found {
            f.add(
                Kind::KeyFileUnbacked,
                layout::segment_path(*seq),
                format!(
                    "key file {} says its bytes are {} in the vault, but no {} artifact of run {} holds them",
                    k.path,
                    k.content.as_str(),
                    if want == ItemKind::Sealed { "sealed" } else { "file" },
                    k.run
                ),
            );
        }
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
        SegmentFault::RetiredKey(_) => Kind::SegmentRetiredKey,
        SegmentFault::KeyRule(_) => Kind::KeyEntryInvalid,
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
        witnessed: Vec::new(),
        segments: 0,
        artifacts: 0,
        packs: 0,
        chunks_checked: 0,
        bytes_checked: 0,
        artifacts_same_chunks: 0,
        content_checked: false,
        held_objects: 0,
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
            || o.key == layout::LOCAL_LOCK
            || layout::parse_witnessed_path(&o.key).is_some()
            // `custody doctor`'s canaries (FORMAT.md §11.1).
            || o.key.starts_with(crate::doctor::PREFIX);
        if !ours {
            f.add(
                Kind::UnexpectedObject,
                &o.key,
                "not part of the vault layout; ignored",
            );
        }
    }
    report.segments = segment_seqs.len() as u64;
    // Packs are immutable once stored: start reading the listed ones now,
    // on the other cores, while the segments are checked here.
    let early = (!opts.quick).then(|| {
        let listed = stored_packs
            .iter()
            .filter(|&(_, &size)| size <= MAX_PACK_BYTES)
            .map(|(id, _)| (*id, layout::pack_path(id)))
            .collect();
        PackReads::start(store, listed, threads().saturating_sub(1).max(1))
    });

    // Phase: segments.
    let Some(mut root) = check_genesis_phase(store, opts, &segment_seqs, &mut f)? else {
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
    let mut artifacts: Vec<(u64, Held)> = Vec::new();
    let mut names = Interned::default();
    let mut key_files: Vec<(u64, KeyFile)> = Vec::new();
    // Per segment: the valid vault keys that signed it, and its seal time.
    let mut signed: BTreeMap<u64, (Vec<crate::keys::KeyId>, crate::time::Time)> = BTreeMap::new();
    let mut expected = 1u64;
    let mut holds = crate::hold::HoldIndex::default();
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
        match vault::check_segment_signers(&bytes, seq, prev, &root) {
            Ok((seg, signers)) => {
                root.absorb(seq, &seg);
                signed.insert(seq, (signers, seg.sealed_at.clone()));
                holds.absorb(seq, &seg);
                for e in seg.entries {
                    match e {
                        Entry::Artifact(a) => artifacts.push((seq, Held::of(&a, &mut names))),
                        Entry::KeyFile(k) => key_files.push((seq, *k)),
                        _ => {}
                    }
                }
            }
            Err(fault) => f.add(fault_kind(&fault), &key, fault.to_string()),
        }
        leaves.insert(seq, leaf);
    }
    report.artifacts = artifacts.len() as u64;
    check_key_files(&key_files, &artifacts, &mut f);

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
    if !opts.witnesses.is_empty() {
        report.witnessed = check_witnesses(
            store,
            opts,
            &root,
            &leaves,
            report.checkpoint.as_ref(),
            &mut f,
        )?;
    }
    check_compromise(
        &root,
        &signed,
        report.trusted.as_ref(),
        &report.witnessed,
        &mut f,
    );

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
    // Which packs to read whole, decided in order; read on all cores; their
    // findings then made in the same order.
    let mut to_read: Vec<(Blake3Id, String, u64)> = Vec::new();
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
        to_read.push((*id, key, size));
    }
    let mut read = match early {
        Some(early) => early.finish(
            store,
            to_read.iter().map(|(id, ..)| *id).collect(),
            progress,
        ),
        None => HashMap::new(),
    };
    if progress.cancelled() {
        return Err(StoreError::Cancelled);
    }
    for (id, key, size) in &to_read {
        let read = read
            .remove(id)
            .expect("every pack to read was read: it was listed within the limit");
        let (magic, actual) = match read {
            Ok(Some(r)) => r,
            Ok(None) => {
                f.add(Kind::PackMissing, key, "listed but gone when read");
                continue;
            }
            Err(e) => {
                f.add(Kind::PackMalformed, key, object_problem(e)?);
                continue;
            }
        };
        if !magic {
            f.add(
                Kind::PackMalformed,
                key,
                "does not start with the pack magic",
            );
        }
        if actual != *id {
            f.add(
                Kind::PackHashMismatch,
                key,
                format!("bytes hash to {actual}, not to the pack's name"),
            );
        }
        progress.bytes(0);
        usable.insert(*id, *size);
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
        let (chunks, bytes, shared) = check_content(store, &artifacts, &usable, &mut f, progress)?;
        report.chunks_checked = chunks;
        report.bytes_checked = bytes;
        report.artifacts_same_chunks = shared;
    }

    // Phase: holds. Every object a hold in place covers must be protected
    // by the store itself (FORMAT.md §11.2).
    f.phase = "holds";
    let covered = holds.covered();
    report.held_objects = covered.len() as u64;
    match crate::hold::check(store, &covered) {
        Ok(open) => {
            for u in open {
                f.add(
                    Kind::HoldMissing,
                    &u.key,
                    format!(
                        "incident {} is under hold {:?}, but the store does not protect this object: {}",
                        u.incident, u.hold, u.why
                    ),
                );
            }
        }
        Err(e) => f.add(
            Kind::HoldMissing,
            store.location(),
            format!("couldn't check that held objects are protected: {e}"),
        ),
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
        StoreError::S3(e) => Ok(format!("unreadable: {e}")),
        e @ (StoreError::Location { .. } | StoreError::Cancelled) => Err(e),
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
    let pinned = match vault::open_checkpoint(bytes, root) {
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
    let cp = match vault::open_checkpoint(&bytes, root) {
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

/// How many threads the read-heavy phases use.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
}

/// One pack read whole: whether it starts with the pack magic, and what it
/// hashes to; `None` when it was gone.
type PackRead = Result<Option<(bool, Blake3Id)>, StoreError>;

/// Reads pack `key` whole through `buf`, hashing it.
fn read_pack(store: &Store, key: &str, buf: &mut Vec<u8>) -> PackRead {
    let mut head = Vec::with_capacity(PACK_MAGIC.len());
    let mut hasher = blake3::Hasher::new();
    let found = store.read_each(key, MAX_PACK_BYTES, buf, |piece| {
        let want = PACK_MAGIC.len().saturating_sub(head.len());
        head.extend_from_slice(&piece[..want.min(piece.len())]);
        hasher.update(piece);
    })?;
    Ok(found.map(|_| {
        (
            head.as_slice() == PACK_MAGIC,
            Blake3Id::from(hasher.finalize()),
        )
    }))
}

/// Packs read whole and hashed from the listing on, on background threads,
/// while the segments (which say which packs matter) are checked.
struct PackReads {
    shared: std::sync::Arc<PackQueue>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The packs to read and what was read, shared with the background threads.
struct PackQueue {
    /// Listed packs within the size limit: (id, key).
    packs: Vec<(Blake3Id, String)>,
    /// The next entry of `packs` to read.
    next: AtomicUsize,
    /// Once known, the packs still worth reading (the referenced ones).
    wanted: std::sync::OnceLock<HashSet<Blake3Id>>,
    /// Read nothing more: the verification was cancelled.
    stop: std::sync::atomic::AtomicBool,
    results: Mutex<HashMap<Blake3Id, PackRead>>,
}

impl PackQueue {
    /// Reads packs until none is left (or, once `wanted` is set, none
    /// wanted is left).
    fn work(&self, store: &Store, progress: Option<&dyn Progress>) {
        let mut buf = Vec::new();
        loop {
            if progress.is_some_and(|p| p.cancelled()) {
                self.stop.store(true, Ordering::Relaxed);
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some((id, key)) = self.packs.get(i) else {
                break;
            };
            if self.wanted.get().is_some_and(|w| !w.contains(id)) {
                continue;
            }
            let r = read_pack(store, key, &mut buf);
            self.results.lock().expect("not poisoned").insert(*id, r);
        }
    }
}

impl PackReads {
    fn start(store: &Store, packs: Vec<(Blake3Id, String)>, threads: usize) -> Self {
        let shared = std::sync::Arc::new(PackQueue {
            packs,
            next: AtomicUsize::new(0),
            wanted: std::sync::OnceLock::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
            results: Mutex::new(HashMap::new()),
        });
        let threads = (0..threads.min(shared.packs.len()))
            .map(|_| {
                let (shared, store) = (shared.clone(), store.clone());
                std::thread::spawn(move || shared.work(&store, None))
            })
            .collect();
        Self { shared, threads }
    }

    /// Narrows the reading to `wanted`, helps with what is left, and
    /// returns what was read (every wanted pack that was listed within the
    /// size limit, and perhaps some others), unless `progress` is
    /// cancelled meanwhile.
    fn finish(
        mut self,
        store: &Store,
        wanted: HashSet<Blake3Id>,
        progress: &dyn Progress,
    ) -> HashMap<Blake3Id, PackRead> {
        let _ = self.shared.wanted.set(wanted);
        self.shared.work(store, Some(progress));
        self.join();
        std::mem::take(&mut *self.shared.results.lock().expect("not poisoned"))
    }

    fn join(&mut self) {
        for t in self.threads.drain(..) {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for PackReads {
    /// Verification ended early: read nothing more, and wait for the reads
    /// under way.
    fn drop(&mut self) {
        let _ = self.shared.wanted.set(HashSet::new());
        if !std::thread::panicking() {
            self.join();
        }
    }
}

/// Re-hashes every artifact from its chunks, on all cores.
///
/// Artifacts are taken largest first, so that the last ones to start are
/// small and the cores finish together. Once a core has nothing left to
/// start, a worker still inside a large artifact hands the artifact's
/// SHA-256 to a helper thread, chunk by chunk, and keeps fetching,
/// decompressing, id-checking and BLAKE3-hashing the whole: a large
/// artifact then uses two cores. The findings are put in log order
/// afterwards, so the report does not depend on which thread finished
/// first.
fn check_content(
    store: &Store,
    artifacts: &[(u64, Held)],
    usable: &HashMap<Blake3Id, u64>,
    f: &mut Findings,
    progress: &dyn Progress,
) -> Result<(u64, u64, u64), StoreError> {
    let (found, chunks, bytes, shared) =
        content_findings(store, artifacts, usable, progress, threads(), 0);
    if progress.cancelled() {
        return Err(StoreError::Cancelled);
    }
    for (kind, object, message) in found {
        f.add(kind, object, message);
    }
    Ok((chunks, bytes, shared))
}

/// The content phase on `threads` workers, `spare` cores being free for
/// helpers from the start: the findings in log order, the chunks and the
/// bytes checked, and how many artifacts had the chunks of an earlier one.
fn content_findings(
    store: &Store,
    artifacts: &[(u64, Held)],
    usable: &HashMap<Blake3Id, u64>,
    progress: &dyn Progress,
    threads: usize,
    spare: usize,
) -> (Vec<(Kind, String, String)>, u64, u64, u64) {
    // Artifacts with the same chunk references, in the same order, have
    // the same content (an unchanged file declared again references the
    // chunks stored the first time): it is read and hashed once, for the
    // first of them in log order, and each is checked against the digests
    // it gave. Artifacts without chunks (links, missing items, empty files)
    // cost nothing to check and stay apart.
    let mut first_with: HashMap<&[ChunkRef], usize> = HashMap::new();
    let mut same: Vec<Vec<usize>> = vec![Vec::new(); artifacts.len()];
    for (i, (_, a)) in artifacts.iter().enumerate() {
        let first = if a.chunks.is_empty() {
            i
        } else {
            *first_with.entry(&a.chunks).or_insert(i)
        };
        same[first].push(i);
    }
    let mut order: Vec<usize> = (0..artifacts.len())
        .filter(|&i| !same[i].is_empty())
        .collect();
    let shared = (artifacts.len() - order.len()) as u64;
    // The work an artifact costs is what its chunks hold (its declared size
    // may lie); ties stay in log order. Artifacts that begin in a frame
    // shared with others (small files) come last, by frame, and the
    // artifacts of one frame go to one worker together: it decompresses
    // the frame once for all of them.
    let in_frame = |i: usize| {
        artifacts[i]
            .1
            .chunks
            .first()
            .filter(|c| c.skip.is_some())
            .map(|c| (c.pack, c.offset))
    };
    order.sort_by_key(|&i| {
        let work: u64 = artifacts[i]
            .1
            .chunks
            .iter()
            .map(|c| u64::from(c.size))
            .sum();
        (in_frame(i), std::cmp::Reverse(work))
    });
    // A group holds what one frame can (a forged log may claim more).
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    let mut group_bytes = 0u64;
    for (n, &i) in order.iter().enumerate() {
        let bytes: u64 = artifacts[i]
            .1
            .chunks
            .iter()
            .map(|c| u64::from(c.size))
            .sum();
        match groups.last_mut() {
            Some(g)
                if in_frame(i).is_some()
                    && in_frame(order[g.start]) == in_frame(i)
                    && group_bytes + bytes <= u64::from(CHUNK_MAX) =>
            {
                g.end = n + 1;
                group_bytes += bytes;
            }
            _ => {
                groups.push(n..n + 1);
                group_bytes = bytes;
            }
        }
    }
    let ctx = Content {
        store,
        artifacts,
        same,
        usable,
        progress,
        order,
        groups,
        next: AtomicUsize::new(0),
        spare: AtomicUsize::new(spare),
        chunks: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        found: Mutex::new(Vec::new()),
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            let ctx = &ctx;
            s.spawn(move || ctx.worker(s));
        }
    });
    let mut found = ctx.found.into_inner().expect("not poisoned");
    found.sort_by_key(|x| (x.artifact, x.position));
    // One finding per damaged chunk, however many artifacts share it: the
    // first artifact in log order names it.
    let mut reported = HashSet::new();
    let found = found
        .into_iter()
        .filter(|x| x.chunk.is_none_or(|at| reported.insert(at)))
        .map(|x| (x.kind, x.object, x.message))
        .collect();
    (
        found,
        ctx.chunks.into_inner(),
        ctx.bytes.into_inner(),
        shared,
    )
}

/// What the content phase shares between its threads.
struct Content<'a> {
    store: &'a Store,
    artifacts: &'a [(u64, Held)],
    /// For the first artifact (log index) of each set with the same chunk
    /// references: the set, itself included; empty for the others.
    same: Vec<Vec<usize>>,
    usable: &'a HashMap<Blake3Id, u64>,
    progress: &'a dyn Progress,
    /// Artifact indices, largest first, those in shared frames last.
    order: Vec<usize>,
    /// What a worker takes at a time: one artifact, or the artifacts that
    /// begin in one shared frame (ranges of `order`).
    groups: Vec<std::ops::Range<usize>>,
    /// The next entry of `groups` to start.
    next: AtomicUsize,
    /// Cores with nothing left to start and not yet lent to a helper.
    spare: AtomicUsize,
    chunks: AtomicU64,
    bytes: AtomicU64,
    found: Mutex<Vec<Found>>,
}

/// A content finding, with where it belongs in the report.
struct Found {
    /// The artifact's index in log order.
    artifact: usize,
    /// The chunk's index in the artifact; the artifact's own findings come
    /// after its chunks'.
    position: usize,
    /// For a chunk finding, the chunk reference (its place, and what it
    /// claims to be there).
    chunk: Option<ChunkRef>,
    kind: Kind,
    object: String,
    message: String,
}

/// Work for a worker's helper thread.
enum ToHelper {
    /// Take over the SHA-256 of artifact `.0` (log index) from here.
    Take(usize, Box<sha2::Sha256>),
    /// The artifact's next plaintext: the first `.1` bytes of the buffer,
    /// which goes back to the worker when hashed.
    Plain(Vec<u8>, usize),
    /// The artifact ends: every chunk checked out when `complete`, and
    /// the chunks hold `total` bytes that BLAKE3-hash to `blake3`.
    Finish {
        complete: bool,
        total: u64,
        blake3: Blake3Id,
    },
}

/// Plaintext buffers per worker (decoding one, one queued, one being
/// hashed when a helper runs).
const BUFFERS: usize = 3;

impl Content<'_> {
    fn worker<'s>(&'s self, s: &'s std::thread::Scope<'s, '_>) {
        let mut reader = ChunkReader::new();
        let mut helper: Option<Helper> = None;
        let mut buf = Vec::new();
        loop {
            if self.progress.cancelled() {
                break;
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(group) = self.groups.get(n) else {
                break;
            };
            for &i in &self.order[group.clone()] {
                if self.progress.cancelled() {
                    break;
                }
                self.check_artifact(i, &mut reader, &mut buf, &mut helper, s);
            }
        }
        // Nothing left to start: this core is free for a helper.
        self.spare.fetch_add(1, Ordering::AcqRel);
    }

    /// Claims a spare core, if there is one.
    fn claim_spare(&self) -> bool {
        self.spare
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn push(&self, x: Found) {
        self.found.lock().expect("not poisoned").push(x);
    }

    /// Checks every artifact with the content of artifact `i` (`total`
    /// bytes) against its digests.
    fn finish(&self, i: usize, b: Blake3Id, sha: sha2::Sha256, total: u64) {
        let h = Sha256Digest(sha.finalize().into());
        for &m in &self.same[i] {
            let (seq, a) = &self.artifacts[m];
            if total == a.size && (b != a.blake3 || h != a.sha256) {
                self.push(Found {
                    artifact: m,
                    position: a.chunks.len(),
                    chunk: None,
                    kind: Kind::ArtifactHashMismatch,
                    object: layout::segment_path(*seq),
                    message: format!(
                        "artifact {} re-hashes to blake3 {b} sha256 {h}, recorded {} / {}",
                        a.path, a.blake3, a.sha256
                    ),
                });
            }
        }
    }

    fn check_artifact<'s>(
        &'s self,
        i: usize,
        reader: &mut ChunkReader,
        buf: &mut Vec<u8>,
        helper: &mut Option<Helper>,
        s: &'s std::thread::Scope<'s, '_>,
    ) {
        let a = &self.artifacts[i].1;
        // The BLAKE3 of the whole is computed here; its SHA-256 here or,
        // once handed over, by the helper (SHA-256 is the costlier half).
        let mut b3 = blake3::Hasher::new();
        let mut sha = Some(Box::new(sha2::Sha256::new()));
        let mut total = 0u64;
        let mut complete = true;
        for (k, c) in a.chunks.iter().enumerate() {
            let Some(&pack_len) = self.usable.get(&c.pack) else {
                complete = false;
                continue;
            };
            let within = c
                .offset
                .checked_add(u64::from(c.stored))
                .is_some_and(|end| end <= pack_len);
            let read = if within {
                reader.read_into(self.store, c, buf)
            } else {
                Err(ChunkError::Corrupt {
                    id: c.id.to_string(),
                    object: crate::restore::chunk_object(c),
                    why: format!("lies beyond the end of its {pack_len}-byte pack"),
                })
            };
            let (kind, object, why) = match read {
                Ok(n) => {
                    total += n as u64;
                    self.progress.bytes(n as u64);
                    self.chunks.fetch_add(1, Ordering::Relaxed);
                    self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if !complete {
                        // The whole will not be checked: no need to hash.
                        continue;
                    }
                    // Hand the SHA-256 over when a core is free and more
                    // than this chunk is left.
                    if let Some(d) = sha.take_if(|_| k + 1 < a.chunks.len() && self.claim_spare()) {
                        let h = helper.get_or_insert_with(|| Helper::spawn(self, s));
                        h.send(ToHelper::Take(i, d));
                    }
                    b3.update(&buf[..n]);
                    match (&mut sha, helper.as_mut()) {
                        (Some(d), _) => d.update(&buf[..n]),
                        (None, Some(h)) => {
                            let next = h.free_buffer();
                            h.send(ToHelper::Plain(std::mem::replace(buf, next), n));
                        }
                        (None, None) => unreachable!("the SHA-256 is here or with the helper"),
                    }
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
            self.push(Found {
                artifact: i,
                position: k,
                chunk: Some(*c),
                kind,
                object,
                message: format!("chunk {} of {}: {why}", c.id.short(), a.path),
            });
        }
        let blake3 = Blake3Id::from(b3.finalize());
        match sha {
            Some(d) => {
                if complete {
                    self.finish(i, blake3, *d, total);
                }
            }
            None => {
                let h = helper.as_mut().expect("the helper holds the SHA-256");
                h.send(ToHelper::Finish {
                    complete,
                    total,
                    blake3,
                });
            }
        }
    }
}

/// A worker's helper thread, hashing the artifacts handed to it.
struct Helper {
    to: crossbeam_channel::Sender<ToHelper>,
    free: crossbeam_channel::Receiver<Vec<u8>>,
}

impl Helper {
    fn spawn<'s>(ctx: &'s Content<'_>, s: &'s std::thread::Scope<'s, '_>) -> Self {
        let (to, rx) = crossbeam_channel::bounded::<ToHelper>(BUFFERS);
        let (back, free) = crossbeam_channel::bounded::<Vec<u8>>(BUFFERS);
        for _ in 1..BUFFERS {
            back.send(Vec::new()).expect("room for every buffer");
        }
        s.spawn(move || {
            let mut current: Option<(usize, Box<sha2::Sha256>)> = None;
            for msg in rx {
                match msg {
                    ToHelper::Take(i, d) => current = Some((i, d)),
                    ToHelper::Plain(buf, n) => {
                        let (_, d) = current.as_mut().expect("Take comes first");
                        d.update(&buf[..n]);
                        // The worker may be gone; then the buffer is too.
                        let _ = back.send(buf);
                    }
                    ToHelper::Finish {
                        complete,
                        total,
                        blake3,
                    } => {
                        let (i, d) = current.take().expect("Take comes first");
                        if complete {
                            ctx.finish(i, blake3, *d, total);
                        }
                        // The core lent to this helper is free again.
                        ctx.spare.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        });
        Self { to, free }
    }

    fn send(&self, msg: ToHelper) {
        self.to
            .send(msg)
            .expect("the helper runs while its worker does");
    }

    /// A buffer the helper is done with (waits for one).
    fn free_buffer(&self) -> Vec<u8> {
        self.free
            .recv()
            .expect("the helper runs while its worker does")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::pseudo_random;

    fn artifact(path: &str, data: &[u8], chunks: Vec<crate::segment::ChunkRef>) -> Artifact {
        use crate::segment::{ItemKind, SourceKind, Status, Tool};
        let t = crate::time::Time::from_unix(1_700_000_000);
        Artifact {
            incident: "INC-1".into(),
            run: "00".repeat(16),
            source: "logs".into(),
            source_kind: SourceKind::Files,
            kind: ItemKind::File,
            path: path.into(),
            status: Status::Complete,
            reason: None,
            error: None,
            size: data.len() as u64,
            blake3: Blake3Id::of(data),
            sha256: Sha256Digest::of(data),
            chunks,
            link_target: None,
            offset: None,
            file: None,
            command: None,
            host: "h".into(),
            collector: "h".into(),
            tool: Tool::this(),
            started_at: t.clone(),
            ended_at: t,
        }
    }

    /// Hashing an artifact here or on a helper thread (once a core is
    /// spare) finds the same things: whole-artifact mismatches of either
    /// digest, and one finding per damaged chunk shared by artifacts.
    #[test]
    fn content_findings_do_not_depend_on_helpers_or_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let data = pseudo_random(12 << 20, 7);
        let small = pseudo_random(1000, 8);
        let small2 = pseudo_random(1500, 9);
        let known = HashMap::new();
        let (big, little, little2) = std::thread::scope(|s| {
            let mut p = crate::ingest::Pipeline::start(s, store.clone(), &known);
            let big = p.capture(&data[..], |_| {}).unwrap();
            let little = p.capture(&small[..], |_| {}).unwrap();
            let little2 = p.capture(&small2[..], |_| {}).unwrap();
            p.flush().unwrap();
            let refs = |c: &crate::ingest::Captured| -> Vec<_> {
                c.chunks
                    .iter()
                    .map(|(id, _)| p.locate(id).unwrap())
                    .collect()
            };
            let r = (refs(&big), refs(&little), refs(&little2));
            p.finish().unwrap();
            r
        });
        assert!(big.len() > 3, "12 MiB is cut into several chunks");
        // The small ones share a frame; no chunk of the big one shares one.
        assert!(big.iter().all(|c| c.skip.is_none()));
        assert_eq!((little[0].skip, little2[0].skip), (Some(0), Some(1000)));
        let mut wrong_small2 = artifact("/wrong-small2", &small2, little2.clone());
        wrong_small2.sha256 = Sha256Digest::of(b"other");
        let mut wrong_sha = artifact("/wrong-sha", &data, big.clone());
        wrong_sha.sha256 = Sha256Digest::of(b"other");
        let mut wrong_b3 = artifact("/wrong-b3", &data, big.clone());
        wrong_b3.blake3 = Blake3Id::of(b"other");
        // The first chunks of the big one: other references, hashed apart.
        let head: u64 = big[..2].iter().map(|c| u64::from(c.size)).sum();
        let head_data = &data[..usize::try_from(head).unwrap()];
        let artifacts = [
            (2, artifact("/small", &small, little.clone())),
            (2, artifact("/good", &data, big.clone())),
            (2, wrong_sha),
            (3, wrong_b3),
            (3, artifact("/head", head_data, big[..2].to_vec())),
            // No chunks: checked each, never counted as sharing.
            (3, artifact("/link", b"", Vec::new())),
            (3, artifact("/empty", b"", Vec::new())),
            (3, wrong_small2),
        ];
        let mut names = Interned::default();
        let artifacts: Vec<_> = artifacts
            .iter()
            .map(|(seq, a)| (*seq, Held::of(a, &mut names)))
            .collect();
        let usable: HashMap<Blake3Id, u64> = store
            .list(layout::PACKS_DIR)
            .unwrap()
            .into_iter()
            .map(|o| (layout::parse_pack_path(&o.key).unwrap(), o.size))
            .collect();
        let run = |threads, spare| {
            content_findings(
                &store,
                &artifacts,
                &usable,
                &crate::progress::Silent,
                threads,
                spare,
            )
        };
        let (found, chunks, bytes, shared) = run(1, 0);
        let kinds: Vec<_> = found.iter().map(|x| (x.0, x.1.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::ArtifactHashMismatch, "segments/00000000000000000002"),
                (Kind::ArtifactHashMismatch, "segments/00000000000000000003"),
                (Kind::ArtifactHashMismatch, "segments/00000000000000000003"),
            ]
        );
        assert!(found[2].2.contains("/wrong-small2"), "{found:?}");
        // The three with the big one's chunks are read once, and each is
        // checked against what that content hashes to.
        assert_eq!(shared, 2);
        assert_eq!(chunks, big.len() as u64 + 2 + 2);
        assert_eq!(
            bytes,
            data.len() as u64 + head + small.len() as u64 + small2.len() as u64
        );
        for (threads, spare) in [(1, 1), (2, 0), (2, 2), (4, 1)] {
            assert_eq!(
                run(threads, spare),
                (found.clone(), chunks, bytes, shared),
                "{threads} {spare}"
            );
        }

        // Damage the third chunk: one finding, named by the first artifact in
        // log order holding it; no whole-artifact verdicts for the three
        // (the one left is the small one's).
        let c = &big[2];
        let pack = dir.path().join(layout::pack_path(&c.pack));
        let mut bytes = std::fs::read(&pack).unwrap();
        let at = usize::try_from(c.offset).unwrap() + c.stored as usize / 2;
        bytes[at] ^= 1;
        std::fs::write(&pack, bytes).unwrap();
        let (found, ..) = run(1, 0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].2.contains("/wrong-small2"), "{found:?}");
        assert!(
            matches!(found[0].0, Kind::ChunkCorrupt | Kind::ChunkHashMismatch),
            "{found:?}"
        );
        assert!(found[0].2.contains("/good"), "{found:?}");
        for (threads, spare) in [(1, 1), (2, 0), (2, 2), (4, 1)] {
            assert_eq!(run(threads, spare).0, found, "{threads} {spare}");
        }
    }

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
