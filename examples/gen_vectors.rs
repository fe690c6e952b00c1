//! Generates the test vectors in `tests/vectors/` (FORMAT.md §1, §13).
//!
//! Usage: `scripts/gen-vectors.sh`, or
//! `cargo run --example gen_vectors -- [OUT_DIR]` (default `tests/vectors`).
//! It removes the `*.vault` files already in OUT_DIR, then writes one file per
//! vector:
//!
//! ```text
//! expect: <finding kind of FORMAT.md §13, or ok>
//! about: <one line: what was done to the base vault>
//! pin: <64 hex>                          optional: verify with this vault id pinned
//! trusted: <base64>                      optional: verify against this saved checkpoint
//! object <key> <base64 of the object's bytes>
//! object <key> <base64 ...>               one line per object, sorted by key
//! ```
//!
//! A vector is named after the finding it expects (`chunk_corrupt`); other
//! vectors for the same finding, or for `ok`, add what they exercise
//! (`chunk_corrupt_short`, `ok_checkpoint_cosigned`).
//!
//! Every vector starts from one base vault, written through the library's
//! append path: segment 0 (genesis); segment 1 (`incident_declared`,
//! `preservation_started`); segment 2 (three artifacts: a log file in three
//! chunks over two packs, an empty file and a symbolic link); segment 3
//! (`preservation_finished`); and the checkpoint for those four segments.
//! Each vector then does one thing to it, as an adversary with write access
//! to the storage would (FORMAT.md §14 (a)), or, where the damage needs a
//! signature, as a writer holding the vault key.
//!
//! Deterministic: a fixed seed key, a fixed clock, fixed nonces and run ids,
//! chunk boundaries chosen here (not by FastCDC) and zstd level 3. Running it
//! twice gives the same bytes; `tests/vectors.rs` regenerates the vectors and
//! fails when the committed ones differ, so a format change comes with a
//! reviewable diff of `tests/vectors/`.
//!
//! Not here: checking the vectors (`tests/vectors.rs` runs `verify` on each).

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use custody::dsse::{self, Envelope};
use custody::hash::{Blake3Id, Sha256Digest};
use custody::ingest::{CHUNK_MAX, PACK_MAGIC};
use custody::keys::VaultSigner;
use custody::layout;
use custody::log::{self, Tree};
use custody::segment::{
    Action, Actor, Artifact, BackendProbed, CheckpointRef, ChunkRef, CustodyEvent, Entry,
    FactLearned, FileMeta, Genesis, Heartbeat, Hold, IncidentClosed, IncidentDeclared, ItemKind,
    KeyContent, KeyFile, KeyRevoked, KeyRotated, ManifestSealed, Note, PreservationFinished,
    PreservationOrder, PreservationStarted, ProbeResult, ReportFiled, SEGMENT_PAYLOAD_TYPE,
    Segment, SourceKind, SourceSpec, Status, Subject, Tool,
};
use custody::store::Store;
use custody::time::Time;
use custody::vault::{InitOptions, Vault};
use object_store::memory::InMemory;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Object key to object bytes: a whole vault.
type Objects = BTreeMap<String, Vec<u8>>;

/// The vault's origin (checkpoint origin line and note key name).
const ORIGIN: &str = "vectors.custody.example/vault";
/// Seed of the vault key. A test key: never use it for evidence.
const SEED: [u8; 32] = [0x11; 32];
/// Seed of a key the vault does not know.
const OTHER_SEED: [u8; 32] = [0x22; 32];
/// Genesis nonce of the base vault.
const NONCE: &str = "000102030405060708090a0b0c0d0e0f";
/// Genesis nonce of a second vault with the same key and origin.
const OTHER_NONCE: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
/// The run id of the base vault's preservation run.
const RUN: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
const INCIDENT: &str = "INC-2027-0042";
const HOST: &str = "web-1";
const SOURCE: &str = "auth-logs";
/// zstd level of every frame (FORMAT.md §6: a writer choice, 3 by default).
const ZSTD_LEVEL: i32 = 3;

/// The fixed clock: `n` seconds after 2027-01-15T08:00:00Z.
fn t(n: i64) -> Time {
    Time::from_unix(1_800_000_000 + n)
}

fn vault_key() -> VaultSigner {
    VaultSigner::from_seed(ORIGIN, SEED)
}

/// One test vector, ready to be written.
struct Vector {
    name: &'static str,
    expect: &'static str,
    about: &'static str,
    pin: Option<Sha256Digest>,
    trusted: Option<Vec<u8>>,
    objects: Objects,
}

impl Vector {
    fn new(
        name: &'static str,
        expect: &'static str,
        about: &'static str,
        objects: Objects,
    ) -> Self {
        Self {
            name,
            expect,
            about,
            pin: None,
            trusted: None,
            objects,
        }
    }

    /// The file's text (see the module documentation).
    fn render(&self) -> String {
        let mut s = format!("expect: {}\nabout: {}\n", self.expect, self.about);
        if let Some(pin) = self.pin {
            s.push_str(&format!("pin: {pin}\n"));
        }
        if let Some(trusted) = &self.trusted {
            s.push_str(&format!("trusted: {}\n", B64.encode(trusted)));
        }
        for (key, bytes) in &self.objects {
            s.push_str(&format!("object {key} {}\n", B64.encode(bytes)));
        }
        s
    }
}

// ---------------------------------------------------------------- evidence

/// What the artifact segment holds, before it is sealed: the packs to create
/// first and the artifact entries that reference them. Vectors that need a
/// validly signed but wrong artifact change this before the vault is built.
struct Evidence {
    packs: Vec<Vec<u8>>,
    artifacts: Vec<Artifact>,
}

/// One zstd frame with its content size set (FORMAT.md §6).
fn frame(plain: &[u8]) -> Vec<u8> {
    let f = zstd::bulk::compress(plain, ZSTD_LEVEL).expect("zstd compresses into a Vec");
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&f).ok().flatten(),
        Some(plain.len() as u64),
        "frames carry their content size"
    );
    f
}

/// Pack bytes (magic, then the frames) and each frame's (offset, stored).
fn pack(frames: &[&[u8]]) -> (Vec<u8>, Vec<(u64, u32)>) {
    let mut bytes = PACK_MAGIC.to_vec();
    let mut at = Vec::new();
    for f in frames {
        at.push((bytes.len() as u64, f.len() as u32));
        bytes.extend_from_slice(f);
    }
    (bytes, at)
}

/// The content of the multi-chunk artifact: an `auth.log` excerpt.
fn auth_log() -> Vec<u8> {
    (0..40u32)
        .map(|i| {
            format!(
                "Jan 15 07:{:02}:{:02} {HOST} sshd[{}]: Failed password for root from 203.0.113.{} port {} ssh2\n",
                10 + i / 6,
                (i % 6) * 10,
                4000 + i,
                i + 1,
                40000 + i * 7
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn file_meta(mode: &str, ino: u64, mtime: i64) -> FileMeta {
    FileMeta {
        mtime: t(mtime),
        ctime: t(mtime),
        mode: mode.into(),
        uid: 0,
        gid: 4,
        owner: Some("root".into()),
        group: Some("adm".into()),
        dev: 2049,
        ino,
    }
}

/// A complete artifact of `content`, stored as `chunks`.
fn artifact(
    kind: ItemKind,
    path: &str,
    content: &[u8],
    chunks: Vec<ChunkRef>,
    file: FileMeta,
    at: i64,
) -> Artifact {
    Artifact {
        incident: INCIDENT.into(),
        run: RUN.into(),
        source: SOURCE.into(),
        source_kind: SourceKind::Files,
        kind,
        path: path.into(),
        status: Status::Complete,
        reason: None,
        error: None,
        size: content.len() as u64,
        blake3: Blake3Id::of(content),
        sha256: Sha256Digest::of(content),
        chunks,
        link_target: None,
        offset: None,
        file: Some(file),
        command: None,
        host: HOST.into(),
        collector: HOST.into(),
        tool: Tool::this(),
        started_at: t(at),
        ended_at: t(at + 1),
    }
}

/// The base vault's evidence: `auth.log` cut into three chunks (two in pack
/// A, one in pack B), an empty file (no chunks) and a symbolic link.
fn evidence() -> Evidence {
    let log = auth_log();
    let cuts = [0, 1000, 2300, log.len()];
    let plain: Vec<&[u8]> = cuts.windows(2).map(|w| &log[w[0]..w[1]]).collect();
    let frames: Vec<Vec<u8>> = plain.iter().map(|p| frame(p)).collect();
    let (pack_a, at_a) = pack(&[&frames[0], &frames[1]]);
    let (pack_b, at_b) = pack(&[&frames[2]]);
    let (id_a, id_b) = (Blake3Id::of(&pack_a), Blake3Id::of(&pack_b));
    let places = [(id_a, at_a[0]), (id_a, at_a[1]), (id_b, at_b[0])];
    let chunks = plain
        .iter()
        .zip(places)
        .map(|(p, (pack, (offset, stored)))| ChunkRef {
            id: Blake3Id::of(p),
            pack,
            offset,
            stored,
            size: p.len() as u32,
            skip: None,
        })
        .collect();
    let mut link = artifact(
        ItemKind::Symlink,
        "/var/log/auth.current",
        b"",
        vec![],
        file_meta("120777", 131_076, -7200),
        14,
    );
    link.link_target = Some("auth.log".into());
    Evidence {
        packs: vec![pack_a, pack_b],
        artifacts: vec![
            artifact(
                ItemKind::File,
                "/var/log/auth.log",
                &log,
                chunks,
                file_meta("100640", 131_074, -60),
                11,
            ),
            artifact(
                ItemKind::File,
                "/var/log/empty.log",
                b"",
                vec![],
                file_meta("100640", 131_075, -86400),
                13,
            ),
            link,
        ],
    }
}

/// A built vault: its objects and its id.
struct Built {
    objects: Objects,
    vault_id: Sha256Digest,
}

/// Builds the base vault (genesis `nonce`) through the library's append
/// path, after `tweak` has changed its evidence.
fn build(nonce: &str, tweak: impl FnOnce(&mut Evidence)) -> Result<Built> {
    let mut ev = evidence();
    tweak(&mut ev);
    let store = Store::from_object_store(Arc::new(InMemory::new()), "memory:vectors");
    let k = vault_key();
    let mut vault = Vault::init(
        store.clone(),
        &k,
        InitOptions {
            origin: ORIGIN.into(),
            created_by: "alice".into(),
            host: HOST.into(),
            now: t(0),
            nonce: nonce.into(),
        },
    )?;
    let declare = vec![
        Entry::IncidentDeclared(IncidentDeclared {
            incident: INCIDENT.into(),
            title: "Brute-force logins on web-1".into(),
            severity: Some("high".into()),
            discovered_at: Some(t(-600)),
            declared_at: t(5),
            declared_by: "alice".into(),
            host: HOST.into(),
            tool: Tool::this(),
            description: Some("Password spraying against sshd from one address".into()),
            detection_source: Some("fail2ban alert".into()),
            regimes: vec!["gdpr".into(), "kr-network-act".into()],
        }),
        Entry::PreservationStarted(PreservationStarted {
            incident: INCIDENT.into(),
            run: RUN.into(),
            started_at: t(6),
            by: "alice".into(),
            host: HOST.into(),
            tool: Tool::this(),
            sources: vec![SourceSpec {
                name: SOURCE.into(),
                kind: SourceKind::Files,
                paths: vec![
                    "/var/log/auth.log".into(),
                    "/var/log/empty.log".into(),
                    "/var/log/auth.current".into(),
                ],
                exclude: vec![],
                argv: vec![],
                timeout_secs: None,
                seal_to: vec![],
            }],
        }),
    ];
    vault.append(&k, declare, || t(10))?;
    // Packs before the segment that references them (FORMAT.md §11).
    let mut bytes_stored = 0;
    for p in &ev.packs {
        store.put_once(&layout::pack_path(&Blake3Id::of(p)), Bytes::from(p.clone()))?;
        bytes_stored += p.len() as u64;
    }
    let count = |s: Status| ev.artifacts.iter().filter(|a| a.status == s).count() as u64;
    let finished = PreservationFinished {
        incident: INCIDENT.into(),
        run: RUN.into(),
        ended_at: t(29),
        complete: count(Status::Complete),
        partial: count(Status::Partial),
        failed: count(Status::Failed),
        bytes_read: ev.artifacts.iter().map(|a| a.size).sum(),
        bytes_stored,
        bytes_deduplicated: 0,
    };
    let artifacts = ev
        .artifacts
        .into_iter()
        .map(|a| Entry::Artifact(Box::new(a)))
        .collect();
    vault.append(&k, artifacts, || t(20))?;
    vault.append(&k, vec![Entry::PreservationFinished(finished)], || t(30))?;
    let mut objects = Objects::new();
    for o in store.list("")? {
        let bytes = store
            .get(&o.key, u64::MAX)?
            .ok_or("a listed object vanished")?;
        objects.insert(o.key, bytes.to_vec());
    }
    Ok(Built {
        objects,
        vault_id: vault.id(),
    })
}

// ---------------------------------------------------------------- damage

fn seg(n: u64) -> String {
    layout::segment_path(n)
}

fn get<'a>(o: &'a Objects, key: &str) -> &'a [u8] {
    o.get(key)
        .unwrap_or_else(|| panic!("the base vault has {key}"))
}

fn leaf(o: &Objects, n: u64) -> Sha256Digest {
    log::leaf_hash(get(o, &seg(n)))
}

/// The tree over segments 0, 1, … as stored in `o` (stops at the first gap).
fn log_tree(o: &Objects) -> Tree {
    let mut tree = Tree::new();
    let mut n = 0;
    while let Some(bytes) = o.get(&seg(n)) {
        tree.push(log::leaf_hash(bytes));
        n += 1;
    }
    tree
}

/// Replaces the checkpoint by one the vault key signs for `size` and `root`.
fn set_checkpoint(o: &mut Objects, size: u64, root: Sha256Digest) {
    o.insert(
        layout::CHECKPOINT.into(),
        log::sign_checkpoint(&vault_key(), size, root),
    );
}

/// Re-checkpoints the whole stored log, as the vault's writer would.
fn recheckpoint(o: &mut Objects) {
    let tree = log_tree(o);
    set_checkpoint(o, tree.size(), tree.root());
}

/// [`recheckpoint`] signed by `k`.
fn recheckpoint_with(o: &mut Objects, k: &VaultSigner) {
    let tree = log_tree(o);
    o.insert(
        layout::CHECKPOINT.into(),
        log::sign_checkpoint(k, tree.size(), tree.root()),
    );
}

fn envelope(bytes: &[u8]) -> Envelope {
    let env: Envelope = serde_json::from_slice(bytes).expect("the base vault's envelopes parse");
    assert_eq!(
        serde_json::to_vec(&env).expect("serialises"),
        bytes,
        "envelopes re-serialise to their stored bytes"
    );
    env
}

fn payload(bytes: &[u8]) -> Segment {
    let p = B64
        .decode(envelope(bytes).payload)
        .expect("the base vault's payloads are base64");
    Segment::decode(&p).expect("the base vault's payloads decode")
}

/// Seals `s` as a segment signed by `k`.
fn seal(s: &Segment, k: &VaultSigner) -> Vec<u8> {
    dsse::sign(SEGMENT_PAYLOAD_TYPE, &s.encode(), &[k])
}

/// `s` with its character at `at` replaced by another base64 character.
fn flip_b64_char(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Rewrites the pack at `index` to `bytes`, renaming it after its new hash in
/// every chunk reference (so it stays correctly named and referenced).
fn replace_pack(ev: &mut Evidence, index: usize, bytes: Vec<u8>) {
    let (old, new) = (Blake3Id::of(&ev.packs[index]), Blake3Id::of(&bytes));
    ev.packs[index] = bytes;
    for c in ev.artifacts.iter_mut().flat_map(|a| a.chunks.iter_mut()) {
        if c.pack == old {
            c.pack = new;
        }
    }
}

/// Adds an artifact recorded as `content` in one chunk (id, size and digests
/// of `content`) whose stored frame is `frame`, alone in a new pack.
fn lone_chunk_artifact(ev: &mut Evidence, path: &str, frame: &[u8], content: &[u8]) {
    let (bytes, at) = pack(&[frame]);
    let chunk = ChunkRef {
        id: Blake3Id::of(content),
        pack: Blake3Id::of(&bytes),
        offset: at[0].0,
        stored: at[0].1,
        size: content.len() as u32,
        skip: None,
    };
    ev.packs.push(bytes);
    ev.artifacts.push(artifact(
        ItemKind::File,
        path,
        content,
        vec![chunk],
        file_meta("100640", 131_080, -30),
        15,
    ));
}

/// Adds one artifact per entry of `contents` (path, content), each one
/// chunk, the chunks sharing one frame in a new pack (FORMAT.md §6): the
/// frame is `frame` when given, else the contents compressed together.
/// Returns the index of the first artifact added.
fn shared_frame_artifacts(
    ev: &mut Evidence,
    contents: &[(&str, &[u8])],
    frame_bytes: Option<Vec<u8>>,
) -> usize {
    let joined: Vec<u8> = contents
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect();
    let f = frame_bytes.unwrap_or_else(|| frame(&joined));
    let (bytes, at) = pack(&[&f]);
    let pack_id = Blake3Id::of(&bytes);
    ev.packs.push(bytes);
    let first = ev.artifacts.len();
    let mut skip = 0u32;
    for (n, (path, content)) in contents.iter().enumerate() {
        let chunk = ChunkRef {
            id: Blake3Id::of(content),
            pack: pack_id,
            offset: at[0].0,
            stored: at[0].1,
            size: content.len() as u32,
            skip: Some(skip),
        };
        skip += content.len() as u32;
        ev.artifacts.push(artifact(
            ItemKind::File,
            path,
            content,
            vec![chunk],
            file_meta("100640", 131_090 + n as u64, -30),
            15,
        ));
    }
    first
}

/// Two small logs whose chunks share a frame: the same length, so that
/// pointing one at the other's bytes is a pure hash mismatch.
const SHARED: [(&str, &[u8]); 2] = [
    (
        "/etc/cron.d/backup",
        b"0 3 * * * root /usr/local/bin/backup --all\n",
    ),
    (
        "/etc/cron.d/rotate",
        b"0 4 * * * root /usr/sbin/logrotate /etc/lr\n",
    ),
];

/// A segment 4 for the base vault, signed by `k`: right vault, seq and prev.
/// One entry of every lifecycle and custody-event kind (FORMAT.md §9).
fn lifecycle_entries(o: &Objects) -> Vec<Entry> {
    let actor = |name: &str| Actor {
        name: name.into(),
        os_user: "alice".into(),
        as_reason: (name != "alice").then(|| "on behalf of the DPO".into()),
        host: HOST.into(),
        tool: Tool::this(),
    };
    let tree = log_tree(o);
    let checkpoint = CheckpointRef {
        size: tree.size(),
        root: tree.root(),
    };
    let artifact = payload(get(o, &seg(2)))
        .entries
        .into_iter()
        .find_map(|e| match e {
            Entry::Artifact(a) => Some(Subject {
                path: a.path.clone(),
                run: a.run.clone(),
                sha256: a.sha256,
            }),
            _ => None,
        })
        .expect("the base vault has artifacts");
    let event = |action, via: &str, at| CustodyEvent {
        incident: Some(INCIDENT.into()),
        action,
        via: via.into(),
        subjects: vec![artifact.clone()],
        purpose: Some("root-cause analysis".into()),
        recipient: None,
        output: None,
        from: None,
        to: None,
        result: None,
        checkpoint,
        at: t(at),
        actor: actor("alice"),
    };
    let hold = |at| Hold {
        incident: INCIDENT.into(),
        hold: "litigation-1".into(),
        reason: "expected litigation".into(),
        authorisation: "general counsel".into(),
        at: t(at),
        actor: actor("alice"),
    };
    vec![
        Entry::PreservationOrder(PreservationOrder {
            incident: INCIDENT.into(),
            authority: "Data Protection Authority".into(),
            reference: "DPA-2027-17".into(),
            received_at: t(31),
            sources: vec!["web-1 auth logs".into()],
            from: Some(t(-86_400)),
            until: Some(t(0)),
            at: t(31),
            actor: actor("alice"),
        }),
        Entry::HoldPlaced(hold(32)),
        Entry::ReportFiled(ReportFiled {
            incident: INCIDENT.into(),
            regime: "gdpr".into(),
            kind: "notification".into(),
            authority: "Data Protection Authority".into(),
            filed_at: t(33),
            reference: "N-1".into(),
            channel: "portal".into(),
            late_reason: None,
            at: t(33),
            actor: actor("dpo"),
        }),
        Entry::FactLearned(FactLearned {
            incident: INCIDENT.into(),
            learned_at: t(34),
            text: "the attacker reached a second host".into(),
            materiality: false,
            at: t(34),
            actor: actor("alice"),
        }),
        Entry::Note(Note {
            incident: INCIDENT.into(),
            text: "logs handed to the forensic lab".into(),
            at: t(35),
            actor: actor("alice"),
        }),
        Entry::CustodyEvent(event(Action::Accessed, "cat", 36)),
        Entry::CustodyEvent(CustodyEvent {
            recipient: Some("forensic lab".into()),
            output: Some("inc.tar".into()),
            ..event(Action::Exported, "export", 37)
        }),
        Entry::CustodyEvent(CustodyEvent {
            from: Some("alice".into()),
            to: Some("forensic lab".into()),
            ..event(Action::Transferred, "incident transfer", 38)
        }),
        Entry::CustodyEvent(CustodyEvent {
            incident: None,
            subjects: vec![],
            purpose: None,
            result: Some("ok: no damage; 0 information finding(s)".into()),
            ..event(Action::Verified, "verify", 39)
        }),
        Entry::ManifestSealed(ManifestSealed {
            incident: INCIDENT.into(),
            sha256: Sha256Digest::of(b"a manifest"),
            previous: None,
            subjects: 2,
            checkpoint,
            at: t(40),
            actor: actor("alice"),
        }),
        Entry::BackendProbed(BackendProbed {
            location: "s3://evidence/vault".into(),
            probes: vec![ProbeResult {
                name: "create_once".into(),
                holds: Some(true),
                detail: "a second create of the same key was refused".into(),
            }],
            multi_writer_safe: true,
            immutable: false,
            at: t(40),
            actor: actor("alice"),
        }),
        Entry::HoldReleased(hold(41)),
        Entry::IncidentClosed(IncidentClosed {
            incident: INCIDENT.into(),
            reason: "contained; no data left the host".into(),
            at: t(42),
            actor: actor("alice"),
        }),
    ]
}

/// Two key files of the base run (FORMAT.md §9.12): one withheld (a
/// private key, described only), one whose bytes are stored as the given
/// `file` artifact of the same run (which must have its digests).
fn key_file_entries(o: &Objects, content: KeyContent, path: &str) -> Vec<Entry> {
    use custody::keymaterial::{Form, KeyRecord, commitment};
    let artifacts = payload(get(o, &seg(2))).entries;
    let backing = artifacts.iter().find_map(|e| match e {
        Entry::Artifact(a) if a.path == path => Some(a),
        _ => None,
    });
    let (size, blake3, sha256) = backing.map_or(
        (5, Blake3Id::of(b"other"), Sha256Digest::of(b"other")),
        |a| (a.size, a.blake3, a.sha256),
    );
    let record: KeyRecord = serde_json::from_value(serde_json::json!({
        "index": 0, "container": "pem PRIVATE KEY", "part": "private",
        "algorithm": "ed25519", "curve": "Ed25519",
        "jwk_thumbprint": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
        "spki_sha256": Sha256Digest::of(b"spki").to_hex(),
        "commitment": commitment("ed25519", &[0x42; 32]).to_hex(),
    }))
    .expect("a key record");
    let file = |path: &str,
                content,
                form,
                keys: Vec<KeyRecord>,
                digests: (u64, Blake3Id, Sha256Digest)| {
        Entry::KeyFile(Box::new(KeyFile {
            incident: INCIDENT.into(),
            run: RUN.into(),
            source: SOURCE.into(),
            path: path.into(),
            status: Status::Complete,
            reason: None,
            error: None,
            size: digests.0,
            blake3: digests.1,
            sha256: digests.2,
            file: None,
            form,
            content,
            sealed_to: vec![],
            keys,
            notes: vec![],
            host: HOST.into(),
            collector: HOST.into(),
            tool: Tool::this(),
            started_at: t(21),
            ended_at: t(21),
        }))
    };
    vec![
        file(
            "/etc/ssl/private/token-signing.pem",
            KeyContent::Withheld,
            Form::Private,
            vec![record],
            (
                119,
                Blake3Id::of(b"key file"),
                Sha256Digest::of(b"key file"),
            ),
        ),
        file(path, content, Form::Public, vec![], (size, blake3, sha256)),
    ]
}

/// Seed of the key rotated in by the key-lifecycle vectors.
const NEW_SEED: [u8; 32] = [0x44; 32];

fn key_actor() -> Actor {
    Actor {
        name: "alice".into(),
        os_user: "alice".into(),
        as_reason: None,
        host: HOST.into(),
        tool: Tool::this(),
    }
}

/// The base vault with segment 4 rotating the vault key to [`NEW_SEED`]'s
/// key, signed by `signers`, and the checkpoint re-signed by the new key.
fn rotated(base: &Objects, signers: &[&VaultSigner]) -> Objects {
    let new = VaultSigner::from_seed(ORIGIN, NEW_SEED);
    let mut o = base.clone();
    let s = next_segment(
        &o,
        vec![Entry::KeyRotated(KeyRotated {
            old: vault_key().key_id().to_string(),
            new: new.public(),
            reason: Some("yearly rotation".into()),
            at: t(40),
            actor: key_actor(),
        })],
    );
    o.insert(
        seg(4),
        dsse::sign(SEGMENT_PAYLOAD_TYPE, &s.encode(), signers),
    );
    recheckpoint_with(&mut o, &new);
    o
}

/// Appends segment `seq` holding `entries`, signed by `k`, and re-signs the
/// checkpoint with `cp_key`.
fn append_segment(
    o: &mut Objects,
    seq: u64,
    entries: Vec<Entry>,
    k: &VaultSigner,
    cp_key: &VaultSigner,
) {
    let s = Segment {
        seq,
        prev: Some(leaf(o, seq - 1)),
        sealed_at: t(40 + i64::try_from(seq).unwrap_or(0)),
        entries,
        ..payload(get(o, &seg(seq - 1)))
    };
    o.insert(seg(seq), seal(&s, k));
    recheckpoint_with(o, cp_key);
}

/// The key lifecycle (FORMAT.md §5): a rotation, an old key signing after
/// it, a rotation the new key did not sign, a revocation.
fn key_vectors(base: &Objects) -> Vec<Vector> {
    let old = vault_key();
    let new = VaultSigner::from_seed(ORIGIN, NEW_SEED);
    let note = |text: &str| {
        Entry::Note(Note {
            incident: INCIDENT.into(),
            text: text.into(),
            at: t(50),
            actor: key_actor(),
        })
    };
    let mut out = Vec::new();

    let mut o = rotated(base, &[&old, &new]);
    append_segment(&mut o, 5, vec![note("after the rotation")], &new, &new);
    out.push(Vector::new(
        "ok_key_rotated",
        "ok",
        "segment 4 rotates the vault key (signed by the old and the new key), segment 5 and the checkpoint are signed by the new key",
        o,
    ));

    let mut o = rotated(base, &[&old, &new]);
    append_segment(&mut o, 5, vec![note("forged with the old key")], &old, &new);
    out.push(Vector::new(
        "segment_retired_key",
        "segment_retired_key",
        "segment 5, after the rotation in segment 4, is signed only by the old key",
        o,
    ));

    let o = rotated(base, &[&old]);
    out.push(Vector::new(
        "key_entry_invalid",
        "key_entry_invalid",
        "segment 4 rotates the vault key but only the old key signs it",
        o,
    ));

    let mut o = rotated(base, &[&old, &new]);
    append_segment(
        &mut o,
        5,
        vec![Entry::KeyRevoked(KeyRevoked {
            key: old.key_id().to_string(),
            compromised_since: t(15),
            reason: "copied by an insider".into(),
            at: t(45),
            actor: key_actor(),
        })],
        &new,
        &new,
    );
    out.push(Vector::new(
        "signed_in_compromise_window",
        "signed_in_compromise_window",
        "segment 5 revokes the old key as compromised since t+15 s: segments 2 and 3, sealed at t+20 s and t+30 s by the old key alone, are suspect",
        o,
    ));
    out
}

fn next_segment(o: &Objects, entries: Vec<Entry>) -> Segment {
    Segment {
        seq: 4,
        prev: Some(leaf(o, 3)),
        sealed_at: t(40),
        entries,
        ..payload(get(o, &seg(3)))
    }
}

/// Signs `payload` (raw bytes, possibly not a valid segment) as a segment.
fn seal_raw(payload: &str, k: &VaultSigner) -> Vec<u8> {
    dsse::sign(SEGMENT_PAYLOAD_TYPE, payload.as_bytes(), &[k])
}

/// A signed note of `body` by `signers`.
fn note(body: &str, signers: &[&dyn signed_note::Signer]) -> Result<Vec<u8>> {
    let mut note = signed_note::Note::new(body.as_bytes(), &[])?;
    note.add_sigs(signers)?;
    Ok(note.to_bytes())
}

/// The checkpoint body (C2SP tlog-checkpoint) for `origin`, `size`, `root`.
fn checkpoint_body(origin: &str, size: u64, root: Sha256Digest, extension: &str) -> String {
    format!("{origin}\n{size}\n{}\n{extension}", B64.encode(root.0))
}

/// All vectors: every finding kind of FORMAT.md §13, and a few more for the
/// rules around them.
fn vectors() -> Result<Vec<Vector>> {
    let base = build(NONCE, |_| {})?;
    let other = build(OTHER_NONCE, |_| {})?;
    let mut out = ok_vectors(&base.objects)?;
    out.extend(genesis_vectors(&base.objects, other.vault_id));
    out.extend(segment_vectors(&base.objects, &other.objects)?);
    out.extend(checkpoint_vectors(&base.objects)?);
    out.extend(trusted_vectors(&base.objects)?);
    out.extend(pack_vectors(&base.objects)?);
    out.extend(content_vectors()?);
    out.extend(key_vectors(&base.objects));
    Ok(out)
}

/// Vaults that MUST verify without damage.
fn ok_vectors(base: &Objects) -> Result<Vec<Vector>> {
    let k = vault_key();
    let mut out = vec![Vector::new(
        "ok",
        "ok",
        "the base vault: genesis, declaration, three artifacts in two packs, finish, checkpoint",
        base.clone(),
    )];

    // FORMAT.md §7: signatures by other keys are ignored.
    let mut o = base.clone();
    let s = payload(get(&o, &seg(3)));
    let stranger = VaultSigner::from_seed(ORIGIN, OTHER_SEED);
    o.insert(
        seg(3),
        dsse::sign(SEGMENT_PAYLOAD_TYPE, &s.encode(), &[&k, &stranger]),
    );
    recheckpoint(&mut o);
    out.push(Vector::new(
        "ok_segment_extra_signature",
        "ok",
        "segment 3 signed by the vault key and by a key the vault does not know, checkpoint re-signed",
        o,
    ));

    // FORMAT.md §10: unknown signatures (witnesses, later) and extension
    // lines are ignored.
    let mut o = base.clone();
    let tree = log_tree(&o);
    let witness = VaultSigner::from_seed("witness.example/w1", [0x33; 32]);
    let body = checkpoint_body(ORIGIN, tree.size(), tree.root(), "");
    o.insert(layout::CHECKPOINT.into(), note(&body, &[&k, &witness])?);
    out.push(Vector::new(
        "ok_checkpoint_cosigned",
        "ok",
        "the checkpoint signed by the vault key and by a key named witness.example/w1",
        o,
    ));

    // FORMAT.md §9: every lifecycle entry and custody event kind.
    let mut o = base.clone();
    let lifecycle = next_segment(&o, lifecycle_entries(&o));
    o.insert(seg(4), seal(&lifecycle, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "ok_lifecycle",
        "ok",
        "segment 4 holds one entry of every lifecycle and custody-event kind, checkpoint re-signed",
        o,
    ));

    // FORMAT.md §9.12: key files, withheld and stored.
    let mut o = base.clone();
    let keys = next_segment(
        &o,
        key_file_entries(&o, KeyContent::Stored, "/var/log/auth.log"),
    );
    o.insert(seg(4), seal(&keys, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "ok_key_files",
        "ok",
        "segment 4 holds a withheld key file and a stored one whose bytes are the run's /var/log/auth.log artifact",
        o,
    ));

    // FORMAT.md §9.4 `offset` and §9.13 `heartbeat` (v1.4): what the
    // service writes for a followed file and an idle log.
    let mut o = base.clone();
    let mut piece = payload(get(&o, &seg(2)))
        .entries
        .into_iter()
        .find_map(|e| match e {
            Entry::Artifact(a) => Some(a),
            _ => None,
        })
        .expect("the base vault has artifacts");
    piece.offset = Some(4096);
    let service = next_segment(
        &o,
        vec![
            Entry::Artifact(piece),
            Entry::Heartbeat(Heartbeat {
                at: t(900),
                host: HOST.into(),
                tool: Tool::this(),
                interval_secs: 300,
            }),
        ],
    );
    o.insert(seg(4), seal(&service, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "ok_service",
        "ok",
        "segment 4 holds a piece of a followed file (segment 2's first artifact again, at offset 4096) and a heartbeat",
        o,
    ));

    let mut o = base.clone();
    let tree = log_tree(&o);
    let body = checkpoint_body(ORIGIN, tree.size(), tree.root(), "ext: ignored by v1\n");
    o.insert(layout::CHECKPOINT.into(), note(&body, &[&k])?);
    out.push(Vector::new(
        "ok_checkpoint_extension",
        "ok",
        "the checkpoint re-signed by the vault key with an extension line after the root",
        o,
    ));
    Ok(out)
}

/// The trust root (FORMAT.md §8, §13).
fn genesis_vectors(base: &Objects, other_id: Sha256Digest) -> Vec<Vector> {
    let k = vault_key();
    let mut out = Vec::new();

    let mut o = base.clone();
    o.remove(&seg(0));
    out.push(Vector::new(
        "genesis_missing",
        "genesis_missing",
        "segment 0 deleted",
        o,
    ));

    let mut o = base.clone();
    let mut env = envelope(get(&o, &seg(0)));
    let mut sig = B64.decode(&env.signatures[0].sig).expect("base64");
    sig[10] ^= 0x01;
    env.signatures[0].sig = B64.encode(sig);
    o.insert(seg(0), serde_json::to_vec(&env).expect("serialises"));
    out.push(Vector::new(
        "genesis_invalid",
        "genesis_invalid",
        "one bit of the genesis segment's self-signature flipped",
        o,
    ));

    let mut o = base.clone();
    let mut genesis = payload(get(&o, &seg(0)));
    let Entry::Genesis(g) = &mut genesis.entries[0] else {
        unreachable!("segment 0 holds the genesis entry");
    };
    g.key.id = VaultSigner::from_seed(ORIGIN, OTHER_SEED).key_id();
    o.insert(seg(0), seal(&genesis, &k));
    out.push(Vector::new(
        "genesis_invalid_key_id",
        "genesis_invalid",
        "segment 0 re-signed by the vault key, its genesis key's id being that of another key",
        o,
    ));

    let mut v = Vector::new(
        "vault_id_mismatch",
        "vault_id_mismatch",
        "the base vault, verified with the pinned id of another vault (same key and origin, other nonce)",
        base.clone(),
    );
    v.pin = Some(other_id);
    out.push(v);
    out
}

/// Segments (FORMAT.md §7, §8, §13, §14).
fn segment_vectors(base: &Objects, other: &Objects) -> Result<Vec<Vector>> {
    let k = vault_key();
    let mut out = Vec::new();

    // FORMAT.md §9.12: a key file that says its bytes are stored, with no
    // artifact of its run holding them (another path, other digests).
    let mut o = base.clone();
    let keys = next_segment(
        &o,
        key_file_entries(&o, KeyContent::Stored, "/etc/ssl/certs/login.pem"),
    );
    o.insert(seg(4), seal(&keys, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "key_file_unbacked",
        "key_file_unbacked",
        "segment 4 holds a key file whose content is `stored` but no artifact of its run has its path and digests",
        o,
    ));

    // FORMAT.md §9.12: a key file holding a private key whose bytes are
    // stored in clear (an artifact of its place has them).
    let mut o = base.clone();
    let mut entries = key_file_entries(&o, KeyContent::Stored, "/var/log/auth.log");
    if let Some(Entry::KeyFile(k)) = entries.last_mut() {
        k.form = custody::keymaterial::Form::Private;
    }
    let keys = next_segment(&o, entries);
    o.insert(seg(4), seal(&keys, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "key_file_in_clear",
        "key_file_in_clear",
        "segment 4 holds a key file of form `private` whose bytes are stored in clear as the run's /var/log/auth.log artifact",
        o,
    ));

    let mut o = base.clone();
    o.remove(&seg(2));
    out.push(Vector::new(
        "segment_missing",
        "segment_missing",
        "segment 2 (the artifacts) deleted from the middle of the log",
        o,
    ));

    let mut o = base.clone();
    let bytes = get(&o, &seg(2));
    o.insert(seg(2), bytes[..bytes.len() / 2].to_vec());
    out.push(Vector::new(
        "segment_malformed",
        "segment_malformed",
        "segment 2 truncated to half its length",
        o,
    ));

    // FORMAT.md §3: one base64 encoding. Setting the unused low bit of the
    // last character keeps the decoded payload, hence the signature, valid
    // for a lenient decoder.
    let mut o = base.clone();
    let n = (1..=3)
        .find(|&n| envelope(get(&o, &seg(n))).payload.ends_with('='))
        .ok_or("no padded payload to make non-canonical")?;
    let mut env = envelope(get(&o, &seg(n)));
    let data = env.payload.trim_end_matches('=').len();
    let last = env.payload.as_bytes()[data - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let index = alphabet.iter().position(|&c| c == last).expect("base64");
    assert_eq!(index & 1, 0, "canonical base64 leaves unused bits zero");
    env.payload
        .replace_range(data - 1..data, &char::from(alphabet[index | 1]).to_string());
    o.insert(seg(n), serde_json::to_vec(&env)?);
    out.push(Vector::new(
        "segment_malformed_base64",
        "segment_malformed",
        "a segment's payload base64 made non-canonical (an unused trailing bit set); it decodes to the signed bytes",
        o,
    ));

    // FORMAT.md §1: an unknown entry type fails closed.
    let mut o = base.clone();
    let empty = String::from_utf8(next_segment(&o, vec![]).encode())?;
    let unknown = empty.replace(
        "\"entries\":[]",
        "\"entries\":[{\"type\":\"key_revoked\",\"key\":\"x\"}]",
    );
    assert_ne!(empty, unknown);
    o.insert(seg(4), seal_raw(&unknown, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "segment_malformed_unknown_entry",
        "segment_malformed",
        "segment 4 appended, signed by the vault key and checkpointed, holding an entry of unknown type key_revoked",
        o,
    ));

    // FORMAT.md §8: strict payloads.
    let mut o = base.clone();
    let text = String::from_utf8(next_segment(&o, vec![]).encode())?;
    let duplicate = text.replacen("\"seq\":4,", "\"seq\":4,\"seq\":4,", 1);
    assert_ne!(text, duplicate);
    o.insert(seg(4), seal_raw(&duplicate, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "segment_malformed_duplicate_field",
        "segment_malformed",
        "segment 4 appended, signed by the vault key and checkpointed, its payload with the seq field twice",
        o,
    ));

    let mut o = base.clone();
    let forged = next_segment(
        &o,
        vec![Entry::Genesis(Genesis {
            origin: ORIGIN.into(),
            key: k.public(),
            created_at: t(40),
            nonce: OTHER_NONCE.into(),
            created_by: "alice".into(),
            host: HOST.into(),
            tool: Tool::this(),
        })],
    );
    o.insert(seg(4), seal(&forged, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "segment_malformed_genesis_entry",
        "segment_malformed",
        "segment 4 appended, signed by the vault key and checkpointed, holding a genesis entry",
        o,
    ));

    let mut o = base.clone();
    let stranger = VaultSigner::from_seed(ORIGIN, OTHER_SEED);
    let forged = next_segment(
        &o,
        vec![Entry::IncidentDeclared(IncidentDeclared {
            incident: "INC-FORGED".into(),
            title: "Nothing to see here".into(),
            severity: None,
            discovered_at: None,
            declared_at: t(40),
            declared_by: "mallory".into(),
            host: HOST.into(),
            tool: Tool::this(),
            description: None,
            detection_source: None,
            regimes: vec![],
        })],
    );
    o.insert(seg(4), seal(&forged, &stranger));
    out.push(Vector::new(
        "segment_unknown_key",
        "segment_unknown_key",
        "segment 4 appended with the right vault, seq and prev, signed by a key the vault does not know",
        o,
    ));

    let mut o = base.clone();
    let mut env = envelope(get(&o, &seg(2)));
    let at = (env.payload.len() / 2) & !3;
    env.payload = flip_b64_char(&env.payload, at);
    o.insert(seg(2), serde_json::to_vec(&env)?);
    out.push(Vector::new(
        "segment_bad_signature",
        "segment_bad_signature",
        "one base64 character in the middle of segment 2's payload replaced by another",
        o,
    ));

    let mut o = base.clone();
    o.insert(seg(3), get(other, &seg(3)).to_vec());
    out.push(Vector::new(
        "segment_wrong_vault",
        "segment_wrong_vault",
        "segment 3 replaced by segment 3 of another vault with the same key and origin (other nonce)",
        o,
    ));

    let mut o = base.clone();
    let (two, three) = (get(&o, &seg(2)).to_vec(), get(&o, &seg(3)).to_vec());
    o.insert(seg(2), three);
    o.insert(seg(3), two);
    out.push(Vector::new(
        "segment_misplaced",
        "segment_misplaced",
        "segments 2 and 3 swapped",
        o,
    ));

    let mut o = base.clone();
    let one = get(&o, &seg(1)).to_vec();
    o.insert(seg(4), one);
    out.push(Vector::new(
        "segment_misplaced_replay",
        "segment_misplaced",
        "segment 1 replayed as segment 4",
        o,
    ));

    let mut o = base.clone();
    let mut s = payload(get(&o, &seg(3)));
    s.prev = Some(leaf(&o, 1));
    o.insert(seg(3), seal(&s, &k));
    recheckpoint(&mut o);
    out.push(Vector::new(
        "chain_broken",
        "chain_broken",
        "segment 3 re-signed by the vault key with prev = leaf hash of segment 1, checkpoint re-signed",
        o,
    ));

    let mut o = base.clone();
    o.insert(
        "notes.txt".into(),
        b"remember to rotate the keys\n".to_vec(),
    );
    out.push(Vector::new(
        "unexpected_object",
        "unexpected_object",
        "an extra object notes.txt",
        o,
    ));
    Ok(out)
}

/// The checkpoint (FORMAT.md §10, §13).
/// A saved checkpoint (`verify --trusted`) against a vault that moved on,
/// was cut back, or was rewritten (FORMAT.md §13, §14).
fn trusted_vectors(base: &Objects) -> Result<Vec<Vector>> {
    let mut out = Vec::new();
    let full = log_tree(base);
    let n = full.size();
    let saved = get(base, layout::CHECKPOINT).to_vec();
    let older = log::sign_checkpoint(&vault_key(), n - 1, full.root_at(n - 1));
    let with = |name, expect, about, objects: Objects, trusted: Vec<u8>| {
        let mut v = Vector::new(name, expect, about, objects);
        v.trusted = Some(trusted);
        v
    };

    out.push(with(
        "trusted_ok",
        "ok",
        "the base vault verified against a checkpoint saved when it held one segment less",
        base.clone(),
        older.clone(),
    ));

    let mut o = base.clone();
    o.remove(&seg(n - 1));
    o.insert(layout::CHECKPOINT.into(), older.clone());
    out.push(with(
        "log_truncated",
        "log_truncated",
        "the last segment deleted and the checkpoint rolled back to the older valid one; the full checkpoint was saved",
        o,
        saved.clone(),
    ));

    let mut o = base.clone();
    let mut last = payload(get(&o, &seg(n - 1)));
    last.sealed_at = t(999);
    o.insert(seg(n - 1), seal(&last, &vault_key()));
    recheckpoint(&mut o);
    out.push(with(
        "log_rewritten",
        "log_rewritten",
        "the last segment re-sealed with another time by a holder of the vault key, and re-checkpointed",
        o,
        saved.clone(),
    ));

    let mut o = base.clone();
    o.insert(layout::CHECKPOINT.into(), older);
    out.push(with(
        "checkpoint_rolled_back",
        "checkpoint_rolled_back",
        "the checkpoint pointer rolled back to the older valid checkpoint, segments intact",
        o,
        saved,
    ));

    let stranger = VaultSigner::from_seed(ORIGIN, OTHER_SEED);
    out.push(with(
        "trusted_checkpoint_invalid",
        "trusted_checkpoint_invalid",
        "the saved checkpoint is signed by a key the vault does not know",
        base.clone(),
        log::sign_checkpoint(&stranger, n, full.root()),
    ));
    Ok(out)
}

fn checkpoint_vectors(base: &Objects) -> Result<Vec<Vector>> {
    let k = vault_key();
    let mut out = Vec::new();

    let mut o = base.clone();
    o.remove(layout::CHECKPOINT);
    out.push(Vector::new(
        "checkpoint_missing",
        "checkpoint_missing",
        "the checkpoint deleted",
        o,
    ));

    let mut o = base.clone();
    let text = String::from_utf8(get(&o, layout::CHECKPOINT).to_vec())?;
    assert!(text.starts_with(&format!("{ORIGIN}\n4\n")));
    o.insert(
        layout::CHECKPOINT.into(),
        text.replacen("\n4\n", "\n3\n", 1).into_bytes(),
    );
    out.push(Vector::new(
        "checkpoint_bad_signature",
        "checkpoint_bad_signature",
        "the checkpoint's size line changed from 4 to 3, signature kept",
        o,
    ));

    let mut o = base.clone();
    let tree = log_tree(&o);
    let stranger = VaultSigner::from_seed(ORIGIN, OTHER_SEED);
    let body = checkpoint_body(ORIGIN, tree.size(), tree.root(), "");
    o.insert(layout::CHECKPOINT.into(), note(&body, &[&stranger])?);
    out.push(Vector::new(
        "checkpoint_bad_signature_unknown_key",
        "checkpoint_bad_signature",
        "the checkpoint signed only by a key the vault does not know, under the vault's origin",
        o,
    ));

    let mut o = base.clone();
    o.insert(
        layout::CHECKPOINT.into(),
        note("this is not a checkpoint\n", &[&k])?,
    );
    out.push(Vector::new(
        "checkpoint_malformed",
        "checkpoint_malformed",
        "the checkpoint replaced by a note signed by the vault key whose body is not a tlog-checkpoint",
        o,
    ));

    let mut o = base.clone();
    let tree = log_tree(&o);
    let body = checkpoint_body("other.custody.example/vault", tree.size(), tree.root(), "");
    o.insert(layout::CHECKPOINT.into(), note(&body, &[&k])?);
    out.push(Vector::new(
        "checkpoint_malformed_origin",
        "checkpoint_malformed",
        "the checkpoint re-signed by the vault key with another origin line in its body",
        o,
    ));

    let mut o = base.clone();
    let mut swapped = Tree::new();
    for n in [0, 1, 3, 2] {
        swapped.push(leaf(&o, n));
    }
    set_checkpoint(&mut o, 4, swapped.root());
    out.push(Vector::new(
        "checkpoint_root_mismatch",
        "checkpoint_root_mismatch",
        "the checkpoint re-signed by the vault key for size 4 with the root of segments 0, 1, 3, 2",
        o,
    ));

    let mut o = base.clone();
    let mut longer = log_tree(&o);
    longer.push(log::leaf_hash(b"a segment that is not stored"));
    set_checkpoint(&mut o, 5, longer.root());
    out.push(Vector::new(
        "checkpoint_beyond_log",
        "checkpoint_beyond_log",
        "the checkpoint re-signed by the vault key for 5 segments; 4 are stored",
        o,
    ));

    let mut o = base.clone();
    let root = log_tree(&o).root_at(3);
    set_checkpoint(&mut o, 3, root);
    out.push(Vector::new(
        "log_beyond_checkpoint",
        "log_beyond_checkpoint",
        "the checkpoint re-signed by the vault key for the first 3 of the 4 segments, with their root",
        o,
    ));
    Ok(out)
}

/// Packs (FORMAT.md §6, §12, §13).
fn pack_vectors(base: &Objects) -> Result<Vec<Vector>> {
    let packs = evidence().packs;
    let pack_key = |i: usize| layout::pack_path(&Blake3Id::of(&packs[i]));
    let mut out = Vec::new();

    let mut o = base.clone();
    o.remove(&pack_key(1));
    out.push(Vector::new(
        "pack_missing",
        "pack_missing",
        "pack B (the last chunk of auth.log) deleted",
        o,
    ));

    let mut o = base.clone();
    let mut a = get(&o, &pack_key(0)).to_vec();
    let last = a.len() - 1;
    a[last] ^= 0x01;
    o.insert(pack_key(0), a);
    out.push(Vector::new(
        "pack_hash_mismatch",
        "pack_hash_mismatch",
        "one bit of pack A's last byte flipped (in the second chunk's frame)",
        o,
    ));

    let built = build(NONCE, |ev| {
        let mut a = ev.packs[0].clone();
        a[..PACK_MAGIC.len()].copy_from_slice(b"not-a-pack-v1!!\n");
        replace_pack(ev, 0, a);
    })?;
    out.push(Vector::new(
        "pack_malformed",
        "pack_malformed",
        "pack A written with other 16 bytes in place of the magic, named by its hash and referenced by segment 2",
        built.objects,
    ));

    let mut o = base.clone();
    let (left, _) = pack(&[&frame(b"left over by an interrupted run\n")]);
    o.insert(layout::pack_path(&Blake3Id::of(&left)), left);
    out.push(Vector::new(
        "pack_unreferenced",
        "pack_unreferenced",
        "an extra, well-formed pack that no segment references",
        o,
    ));
    Ok(out)
}

/// Content (FORMAT.md §6, §9.4, §12, §13): every segment validly signed by
/// the vault key, the damage is in what the artifacts claim.
fn content_vectors() -> Result<Vec<Vector>> {
    let mut out = Vec::new();

    let built = build(NONCE, |ev| {
        lone_chunk_artifact(
            ev,
            "/var/log/bomb.log",
            &frame(&vec![0; 1 << 20]),
            &[0; 100],
        );
    })?;
    out.push(Vector::new(
        "chunk_corrupt",
        "chunk_corrupt",
        "a fourth artifact whose chunk declares 100 bytes, its frame inflates to 1 MiB of zeros (a decompression bomb)",
        built.objects,
    ));

    let built = build(NONCE, |ev| {
        let short = [b'x'; 100];
        let mut content = short.to_vec();
        content.extend_from_slice(&[b'y'; 100]);
        lone_chunk_artifact(ev, "/var/log/short.log", &frame(&short), &content);
    })?;
    out.push(Vector::new(
        "chunk_corrupt_short",
        "chunk_corrupt",
        "a fourth artifact whose chunk declares 200 bytes, its frame inflates to only 100",
        built.objects,
    ));

    let built = build(NONCE, |ev| {
        let big = vec![0; CHUNK_MAX as usize + 1];
        lone_chunk_artifact(ev, "/var/log/big.log", &frame(&big), &big);
    })?;
    out.push(Vector::new(
        "chunk_corrupt_oversized",
        "chunk_corrupt",
        "a fourth artifact of one chunk declaring 4 MiB + 1 bytes, more than a chunk may hold",
        built.objects,
    ));

    let built = build(NONCE, |ev| ev.artifacts[0].chunks[2].stored += 10)?;
    out.push(Vector::new(
        "chunk_corrupt_beyond_pack",
        "chunk_corrupt",
        "auth.log's last chunk reference claims a frame 10 bytes longer than its pack holds",
        built.objects,
    ));

    // FORMAT.md §9.4, §12.4: a frame lies after the magic (offset >= 16).
    let built = build(NONCE, |ev| {
        let text = b"written where the magic belongs\n";
        let f = frame(text);
        let stored = f.len() as u32;
        let id = Blake3Id::of(&f);
        ev.packs.push(f);
        ev.artifacts.push(artifact(
            ItemKind::File,
            "/var/log/headless.log",
            text,
            vec![ChunkRef {
                id: Blake3Id::of(text),
                pack: id,
                offset: 0,
                stored,
                size: text.len() as u32,
                skip: None,
            }],
            file_meta("100640", 131_081, -30),
            15,
        ));
    })?;
    out.push(Vector::new(
        "chunk_corrupt_in_magic",
        "chunk_corrupt",
        "a fourth artifact whose chunk is at offset 0 of a pack that is a bare zstd frame (no magic)",
        built.objects,
    ));

    // FORMAT.md §6: chunks sharing one frame.
    let built = build(NONCE, |ev| {
        shared_frame_artifacts(ev, &SHARED, None);
    })?;
    out.push(Vector::new(
        "ok_shared_frame",
        "ok",
        "two more artifacts, one chunk each, whose chunks share one zstd frame (skip 0 and skip 43)",
        built.objects,
    ));

    let built = build(NONCE, |ev| {
        let big = vec![b'z'; CHUNK_MAX as usize + 1];
        let first = shared_frame_artifacts(ev, &SHARED, Some(frame(&big)));
        // Each names a slice of the oversized frame's plaintext.
        for a in &mut ev.artifacts[first..] {
            let c = &mut a.chunks[0];
            c.id = Blake3Id::of(&big[..c.size as usize]);
            a.blake3 = c.id;
            a.sha256 = Sha256Digest::of(&big[..c.size as usize]);
        }
    })?;
    out.push(Vector::new(
        "chunk_corrupt_shared_bomb",
        "chunk_corrupt",
        "two artifacts whose chunks lie in a shared frame that inflates to 4 MiB + 1 bytes, more than a frame may hold",
        built.objects,
    ));

    let built = build(NONCE, |ev| {
        let mut joined: Vec<u8> = SHARED.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        joined.extend_from_slice(b"bytes no chunk reference names\n");
        shared_frame_artifacts(ev, &SHARED, Some(frame(&joined)));
    })?;
    out.push(Vector::new(
        "ok_shared_frame_trailing_bytes",
        "ok",
        "two artifacts sharing a frame whose plaintext goes on after their chunks (bytes no reference names)",
        built.objects,
    ));

    // One reference into the shared frame of SHARED changed: (vector, what
    // it must produce, which of the two artifacts, its new skip, about).
    let one_ref_changed: [(&str, &str, usize, Option<u32>, &str); 4] = [
        (
            "chunk_corrupt_beyond_shared_frame",
            "chunk_corrupt",
            1,
            Some(60),
            "two artifacts sharing a frame of 86 bytes; the second's chunk claims bytes 60..103 of it",
        ),
        (
            "chunk_corrupt_shared_frame_without_skip",
            "chunk_corrupt",
            0,
            None,
            "two artifacts sharing a frame; the first's chunk reference has no skip, as if the frame were its alone (it inflates to 86 bytes, not 43)",
        ),
        (
            "chunk_corrupt_shared_skip_overflow",
            "chunk_corrupt",
            1,
            Some(u32::MAX - 10),
            "two artifacts sharing a frame; the second's skip is 2^32 - 11, so skip + size overflows 32 bits",
        ),
        (
            "chunk_hash_mismatch_shared",
            "chunk_hash_mismatch",
            1,
            Some(0),
            "two artifacts sharing a frame; the second's chunk points at the first's bytes (skip 0), which do not hash to its id",
        ),
    ];
    for (name, expect, which, skip, about) in one_ref_changed {
        let built = build(NONCE, |ev| {
            let first = shared_frame_artifacts(ev, &SHARED, None);
            ev.artifacts[first + which].chunks[0].skip = skip;
        })?;
        out.push(Vector::new(name, expect, about, built.objects));
    }

    let built = build(NONCE, |ev| {
        ev.artifacts[0].chunks[1].id = Blake3Id::of(b"not the chunk's plaintext");
    })?;
    out.push(Vector::new(
        "chunk_hash_mismatch",
        "chunk_hash_mismatch",
        "auth.log's second chunk reference names an id that is not the BLAKE3 of its plaintext",
        built.objects,
    ));

    let built = build(NONCE, |ev| ev.artifacts[0].size += 1)?;
    out.push(Vector::new(
        "artifact_size_mismatch",
        "artifact_size_mismatch",
        "auth.log declares one byte more than its chunks hold",
        built.objects,
    ));

    let built = build(NONCE, |ev| {
        ev.artifacts[0].sha256 = Sha256Digest::of(b"other content");
    })?;
    out.push(Vector::new(
        "artifact_hash_mismatch",
        "artifact_hash_mismatch",
        "auth.log's recorded SHA-256 is not that of its content; chunks and BLAKE3 are sound",
        built.objects,
    ));

    let built = build(NONCE, |ev| {
        ev.artifacts[0].blake3 = Blake3Id::of(b"other content");
    })?;
    out.push(Vector::new(
        "artifact_hash_mismatch_blake3",
        "artifact_hash_mismatch",
        "auth.log's recorded BLAKE3 is not that of its content; chunks and SHA-256 are sound",
        built.objects,
    ));
    Ok(out)
}

/// Writes every vector to `out` as `<name>.vault`, after removing the
/// `*.vault` files already there.
///
/// # Errors
/// When the vault cannot be built (a library error) or `out` cannot be
/// written.
pub fn generate(out: &Path) -> Result<()> {
    fs::create_dir_all(out)?;
    for entry in fs::read_dir(out)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "vault") {
            fs::remove_file(&path)?;
        }
    }
    let vectors = vectors()?;
    let mut names = std::collections::BTreeSet::new();
    for v in &vectors {
        assert!(names.insert(v.name), "duplicate vector name {}", v.name);
        fs::write(out.join(format!("{}.vault", v.name)), v.render())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = args
        .next()
        .map_or_else(|| PathBuf::from("tests/vectors"), PathBuf::from);
    if args.next().is_some() {
        return Err("usage: gen_vectors [OUT_DIR]".into());
    }
    generate(&out)?;
    eprintln!("wrote test vectors to {}", out.display());
    Ok(())
}
