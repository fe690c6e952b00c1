//! Segment payloads and the entries they carry (FORMAT.md §8 (segment payload), §9 (entries)).
//! Pure: encode and decode only, no I/O, no signing (see `dsse`).
//!
//! A segment is the unit of append, of signing and of the chain: it names its
//! vault, its sequence number and the RFC 6962 leaf hash of the segment before
//! it. Decoding is strict: unknown fields, duplicate fields and trailing bytes
//! are errors, so one segment has one meaning.

use serde::{Deserialize, Serialize};

use crate::hash::{Blake3Id, Sha256Digest};
use crate::keys::PublicKey;
use crate::time::Time;

/// DSSE payload type of a format-1 segment.
pub const SEGMENT_PAYLOAD_TYPE: &str = "application/vnd.custody.segment.v1+json";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest segment envelope a reader accepts, in bytes.
pub const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// Most chunks one artifact may list, so that its entry fits a segment
/// (about 300 envelope bytes per chunk; about 146 GiB at the average chunk
/// size). A longer item is preserved up to here and recorded `partial`.
pub const MAX_ARTIFACT_CHUNKS: usize = 150_000;

/// A segment's signed payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Always [`FORMAT_VERSION`].
    pub format: u32,
    /// The vault id; `None` only in the genesis segment, whose leaf hash *is*
    /// the vault id.
    #[serde(deserialize_with = "Option::deserialize")]
    pub vault: Option<Sha256Digest>,
    /// Position in the log, from 0.
    pub seq: u64,
    /// RFC 6962 leaf hash of segment `seq - 1`; `None` only for genesis.
    #[serde(deserialize_with = "Option::deserialize")]
    pub prev: Option<Sha256Digest>,
    /// When the segment was sealed.
    pub sealed_at: Time,
    /// The entries, in order.
    pub entries: Vec<Entry>,
}

/// Why a payload did not decode.
#[derive(Debug, thiserror::Error)]
#[error("segment payload does not decode: {0}")]
pub struct DecodeError(pub String);

impl Segment {
    /// The payload bytes (compact JSON, fields in declaration order).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a segment always serialises")
    }

    /// Decodes payload bytes strictly.
    ///
    /// # Errors
    /// Malformed JSON, unknown or duplicate fields, trailing bytes, or a
    /// format version other than 1.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.first() != Some(&b'{') || bytes.last() != Some(&b'}') {
            return Err(DecodeError(
                "leading or trailing bytes around the JSON object".into(),
            ));
        }
        let seg: Segment = serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))?;
        if seg.format != FORMAT_VERSION {
            return Err(DecodeError(format!(
                "unsupported format version {}",
                seg.format
            )));
        }
        seg.check_ids()?;
        Ok(seg)
    }
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Segment {
    /// Identifiers have one form: run ids and nonces 32 lowercase hex
    /// digits, incident ids as `declare` accepts them (FORMAT.md §9 (entries)).
    fn check_ids(&self) -> Result<(), DecodeError> {
        let bad = |what: &str, v: &str| {
            let shown: String = v.chars().take(64).collect();
            Err(DecodeError(format!(
                "{what} {shown:?} is not in its required form"
            )))
        };
        for e in &self.entries {
            if let Entry::Genesis(g) = e {
                if !is_hex32(&g.nonce) {
                    return bad("genesis nonce", &g.nonce);
                }
                continue;
            }
            let run = match e {
                Entry::PreservationStarted(p) => Some(&p.run),
                Entry::Artifact(a) => Some(&a.run),
                Entry::PreservationFinished(p) => Some(&p.run),
                Entry::KeyFile(k) => Some(&k.run),
                Entry::CustodyEvent(c) => {
                    if let Some(s) = c.subjects.iter().find(|s| !is_hex32(&s.run)) {
                        return bad("run id", &s.run);
                    }
                    None
                }
                _ => None,
            };
            if let Some(incident) = e.incident()
                && crate::preserve::check_incident_id(incident).is_err()
            {
                return bad("incident id", incident);
            }
            if let Some(run) = run.filter(|r| !is_hex32(r)) {
                return bad("run id", run);
            }
        }
        Ok(())
    }
}

/// The software that wrote an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Program name.
    pub name: String,
    /// Program version.
    pub version: String,
}

impl Tool {
    /// This build of custody.
    pub fn this() -> Self {
        Self {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// One typed record in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// The first entry of the genesis segment: the log's name and first key.
    Genesis(Genesis),
    /// An incident was declared.
    IncidentDeclared(IncidentDeclared),
    /// A preservation run began: what was asked to be preserved.
    PreservationStarted(PreservationStarted),
    /// One preserved item.
    Artifact(Box<Artifact>),
    /// A preservation run ended: totals.
    PreservationFinished(PreservationFinished),
    /// A preservation order was received for an incident.
    PreservationOrder(PreservationOrder),
    /// A legal hold was placed on an incident's evidence.
    HoldPlaced(Hold),
    /// A legal hold was released.
    HoldReleased(Hold),
    /// A report was filed with an authority.
    ReportFiled(ReportFiled),
    /// A fact about the incident was learned after the declaration.
    FactLearned(FactLearned),
    /// A free-form note.
    Note(Note),
    /// The incident was closed.
    IncidentClosed(IncidentClosed),
    /// Someone accessed, exported, transferred, verified or (through the service) sent evidence.
    CustodyEvent(CustodyEvent),
    /// A signed manifest of an incident was issued.
    ManifestSealed(ManifestSealed),
    /// `custody doctor` probed what the storage backend enforces.
    BackendProbed(BackendProbed),
    /// A file of a `keys` source, described key by key.
    KeyFile(Box<KeyFile>),
    /// The vault's signing key was rotated (FORMAT.md §5).
    KeyRotated(KeyRotated),
    /// A vault key was revoked (FORMAT.md §5).
    KeyRevoked(KeyRevoked),
    /// The server was up and nothing else was appended for a while
    /// (format 1.4).
    Heartbeat(Heartbeat),
}

impl Entry {
    /// The incident the entry belongs to; `None` for genesis and for
    /// vault-wide custody events (a verification).
    pub fn incident(&self) -> Option<&str> {
        Some(match self {
            Entry::Genesis(_)
            | Entry::BackendProbed(_)
            | Entry::KeyRotated(_)
            | Entry::KeyRevoked(_)
            | Entry::Heartbeat(_) => return None,
            Entry::IncidentDeclared(d) => &d.incident,
            Entry::PreservationStarted(p) => &p.incident,
            Entry::Artifact(a) => &a.incident,
            Entry::PreservationFinished(p) => &p.incident,
            Entry::PreservationOrder(o) => &o.incident,
            Entry::HoldPlaced(h) | Entry::HoldReleased(h) => &h.incident,
            Entry::ReportFiled(r) => &r.incident,
            Entry::FactLearned(f) => &f.incident,
            Entry::Note(n) => &n.incident,
            Entry::IncidentClosed(c) => &c.incident,
            Entry::CustodyEvent(e) => return e.incident.as_deref(),
            Entry::ManifestSealed(m) => &m.incident,
            Entry::KeyFile(k) => &k.incident,
        })
    }

    /// The `type` tag, as in the log.
    pub fn type_name(&self) -> &'static str {
        match self {
            Entry::Genesis(_) => "genesis",
            Entry::IncidentDeclared(_) => "incident_declared",
            Entry::PreservationStarted(_) => "preservation_started",
            Entry::Artifact(_) => "artifact",
            Entry::PreservationFinished(_) => "preservation_finished",
            Entry::PreservationOrder(_) => "preservation_order",
            Entry::HoldPlaced(_) => "hold_placed",
            Entry::HoldReleased(_) => "hold_released",
            Entry::ReportFiled(_) => "report_filed",
            Entry::FactLearned(_) => "fact_learned",
            Entry::Note(_) => "note",
            Entry::IncidentClosed(_) => "incident_closed",
            Entry::CustodyEvent(_) => "custody_event",
            Entry::ManifestSealed(_) => "manifest_sealed",
            Entry::BackendProbed(_) => "backend_probed",
            Entry::KeyFile(_) => "key_file",
            Entry::KeyRotated(_) => "key_rotated",
            Entry::KeyRevoked(_) => "key_revoked",
            Entry::Heartbeat(_) => "heartbeat",
        }
    }
}

/// Who did something, where, with what (FORMAT.md §9 (actors)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The name the action is recorded under: the OS user, or the name given
    /// with `--as`.
    pub name: String,
    /// The OS user that ran the tool, always.
    pub os_user: String,
    /// Why the action is recorded under another name than the OS user's;
    /// required exactly when `name` differs from `os_user`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub as_reason: Option<String>,
    /// The host.
    pub host: String,
    /// The tool.
    pub tool: Tool,
}

/// A preservation order (a legal or regulatory demand to keep evidence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreservationOrder {
    /// The incident.
    pub incident: String,
    /// Who issued the order.
    pub authority: String,
    /// The order's reference (docket, letter number).
    pub reference: String,
    /// When it was received.
    pub received_at: Time,
    /// The sources it names (free text: hosts, systems, source names).
    pub sources: Vec<String>,
    /// Start of the time range it covers, if it names one.
    #[serde(deserialize_with = "Option::deserialize")]
    pub from: Option<Time>,
    /// End of the time range it covers, if it names one.
    #[serde(deserialize_with = "Option::deserialize")]
    pub until: Option<Time>,
    /// When it was recorded.
    pub at: Time,
    /// Who recorded it.
    pub actor: Actor,
}

/// A legal hold placed or released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// The incident.
    pub incident: String,
    /// The hold's name, unique within the incident.
    pub hold: String,
    /// Why it is placed or released.
    pub reason: String,
    /// On whose authority (a person, an order reference).
    pub authorisation: String,
    /// When.
    pub at: Time,
    /// Who recorded it.
    pub actor: Actor,
}

/// A report filed with an authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFiled {
    /// The incident.
    pub incident: String,
    /// The regime it was filed under (`gdpr`, `nis2`, ...; see `custody
    /// incident status`), or `other`.
    pub regime: String,
    /// The kind of filing within the regime (`notification`, ...).
    pub kind: String,
    /// The authority it was filed with.
    pub authority: String,
    /// When it was filed.
    pub filed_at: Time,
    /// The authority's or the filer's reference.
    pub reference: String,
    /// How (portal, e-mail, letter, phone).
    pub channel: String,
    /// Why it was late, when it was.
    #[serde(deserialize_with = "Option::deserialize")]
    pub late_reason: Option<String>,
    /// When it was recorded.
    pub at: Time,
    /// Who recorded it.
    pub actor: Actor,
}

/// A fact learned after the declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactLearned {
    /// The incident.
    pub incident: String,
    /// When it became known.
    pub learned_at: Time,
    /// What.
    pub text: String,
    /// Whether this is the determination that the incident is material
    /// (the start of the SEC Form 8-K clock).
    pub materiality: bool,
    /// When it was recorded.
    pub at: Time,
    /// Who recorded it.
    pub actor: Actor,
}

/// A free-form note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The incident.
    pub incident: String,
    /// The note.
    pub text: String,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// The incident was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentClosed {
    /// The incident.
    pub incident: String,
    /// Why, or the outcome.
    pub reason: String,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// What was done with evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read through custody (`show`, `cat`).
    Accessed,
    /// Written out for someone (`export`, `manifest`, `report`, `export-case`).
    Exported,
    /// Handed from one custodian to another.
    Transferred,
    /// Checked by `custody verify`.
    Verified,
    /// Stored for a caller of the service without an entry of its own: a
    /// pack an agent sent (`serve PutPack`).
    Received,
}

impl Action {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accessed => "accessed",
            Self::Exported => "exported",
            Self::Transferred => "transferred",
            Self::Verified => "verified",
            Self::Received => "received",
        }
    }
}

/// An artifact named by a custody event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Its path as recorded.
    pub path: String,
    /// Its run.
    pub run: String,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
}

/// A checkpoint, by size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// Number of segments.
    pub size: u64,
    /// RFC 6962 root.
    pub root: Sha256Digest,
}

/// One action on evidence (FORMAT.md §9 (custody events)). `collected` is
/// not one of these: every artifact entry is the record of its collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyEvent {
    /// The incident; `None` for a verification of the whole vault.
    #[serde(deserialize_with = "Option::deserialize")]
    pub incident: Option<String>,
    /// What was done.
    pub action: Action,
    /// Which command did it (`cat`, `show`, `export`, ...).
    pub via: String,
    /// The artifacts it touched; empty when it touched the incident's record
    /// as a whole.
    pub subjects: Vec<Subject>,
    /// Why (the purpose or the authorisation given).
    #[serde(deserialize_with = "Option::deserialize")]
    pub purpose: Option<String>,
    /// For `exported`: to whom.
    #[serde(deserialize_with = "Option::deserialize")]
    pub recipient: Option<String>,
    /// For `exported`: what was written (file name) and its SHA-256, when
    /// known; for `received`: the object stored (`packs/…`).
    #[serde(deserialize_with = "Option::deserialize")]
    pub output: Option<String>,
    /// For `transferred`: the custodian before.
    #[serde(deserialize_with = "Option::deserialize")]
    pub from: Option<String>,
    /// For `transferred`: the custodian after.
    #[serde(deserialize_with = "Option::deserialize")]
    pub to: Option<String>,
    /// For `verified`: `ok`, `damaged` or `findings`, with counts.
    #[serde(deserialize_with = "Option::deserialize")]
    pub result: Option<String>,
    /// For `verified`: the checkpoint verified against; for the others, the
    /// log as the actor saw it.
    pub checkpoint: CheckpointRef,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// One probe of the storage backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    /// `create_once`, `compare_and_swap`, `overwrite_refused`,
    /// `delete_refused`.
    pub name: String,
    /// Whether it holds; null when it does not apply.
    #[serde(deserialize_with = "Option::deserialize")]
    pub holds: Option<bool>,
    /// What was seen.
    pub detail: String,
}

/// What `custody doctor` found the backend to enforce (FORMAT.md §9.11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendProbed {
    /// The vault location probed.
    pub location: String,
    /// Each probe.
    pub probes: Vec<ProbeResult>,
    /// Whether several writers may append at once.
    pub multi_writer_safe: bool,
    /// Whether the backend refuses overwrites and deletes.
    pub immutable: bool,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// A manifest was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSealed {
    /// The incident.
    pub incident: String,
    /// SHA-256 of the manifest's DSSE envelope, as written.
    pub sha256: Sha256Digest,
    /// SHA-256 of the previous manifest of this incident, if any: manifests
    /// chain.
    #[serde(deserialize_with = "Option::deserialize")]
    pub previous: Option<Sha256Digest>,
    /// How many subjects (artifacts) it lists.
    pub subjects: u64,
    /// The checkpoint it is anchored to.
    pub checkpoint: CheckpointRef,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// The genesis entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The checkpoint origin line (C2SP tlog-checkpoint), also the key name.
    pub origin: String,
    /// The first signing key.
    pub key: PublicKey,
    /// When the vault was created.
    pub created_at: Time,
    /// 16 random bytes in hex, so that two vaults never share an id.
    pub nonce: String,
    /// Who created it.
    pub created_by: String,
    /// Where.
    pub host: String,
    /// With what.
    pub tool: Tool,
}

/// An incident declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentDeclared {
    /// The incident id, chosen by the responder.
    pub incident: String,
    /// A short title.
    pub title: String,
    /// Free-form severity (for example `sev1`, `high`).
    #[serde(deserialize_with = "Option::deserialize")]
    pub severity: Option<String>,
    /// When the incident was discovered, if told.
    #[serde(deserialize_with = "Option::deserialize")]
    pub discovered_at: Option<Time>,
    /// When it was declared (the time of this entry).
    pub declared_at: Time,
    /// Who declared it.
    pub declared_by: String,
    /// Where it was declared.
    pub host: String,
    /// With what.
    pub tool: Tool,
    /// What happened, as known at declaration (added in format 1.1: absent
    /// in older segments, read as `null`).
    #[serde(default)]
    pub description: Option<String>,
    /// How it was detected (alert name, tool, person); format 1.1.
    #[serde(default)]
    pub detection_source: Option<String>,
    /// Regulatory regimes whose clocks apply (`gdpr`, `nis2`, ...); format
    /// 1.1, absent = none.
    #[serde(default)]
    pub regimes: Vec<String>,
}

/// What a preservation run was asked to preserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreservationStarted {
    /// The incident it preserves for.
    pub incident: String,
    /// Run id: 16 random bytes in hex; artifacts name it.
    pub run: String,
    /// When it began.
    pub started_at: Time,
    /// Who ran it.
    pub by: String,
    /// Where.
    pub host: String,
    /// With what.
    pub tool: Tool,
    /// The sources, as configured.
    pub sources: Vec<SourceSpec>,
}

/// A configured source, as recorded in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The source's name.
    pub name: String,
    /// Its kind.
    pub kind: SourceKind,
    /// Paths and globs (`files`, `keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Exclude globs (`files`, `keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// The argv (`command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Seconds a `command` may run before it is killed (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// age recipients that key files holding secrets are sealed to (`keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seal_to: Vec<String>,
}

/// Kinds of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Files, directories and globs.
    Files,
    /// A command's standard output.
    Command,
    /// Files of key material.
    Keys,
}

impl SourceKind {
    /// The name used in config files and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::Command => "command",
            Self::Keys => "keys",
        }
    }
}

/// How completely an artifact was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every byte, and the item did not change while read.
    Complete,
    /// Captured, but the item changed while read (see `reason`).
    Partial,
    /// Not captured, or the command failed (see `error`).
    Failed,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// What kind of item an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A regular file's contents.
    File,
    /// A symbolic link (its target, never followed).
    Symlink,
    /// A command's standard output.
    Command,
    /// Nothing was captured (the path did not exist, the glob matched nothing).
    Missing,
    /// A key file's bytes encrypted with age to the source's `seal_to`
    /// recipients (FORMAT.md §9.12).
    Sealed,
}

/// A field omitted when absent: present, it holds a value, never `null`
/// (one entry, one encoding; FORMAT.md §9 (optional fields)).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Where a chunk of an artifact is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's plaintext.
    pub id: Blake3Id,
    /// The pack holding it.
    pub pack: Blake3Id,
    /// Byte offset of its zstd frame in the pack.
    pub offset: u64,
    /// Length of the zstd frame.
    pub stored: u32,
    /// Length of the plaintext.
    pub size: u32,
    /// For a chunk in a frame it shares with others (format 1.5): where it
    /// begins in the frame's plaintext. Absent when the frame is the
    /// chunk's alone.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub skip: Option<u32>,
}

/// File metadata as found at capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMeta {
    /// Modification time.
    pub mtime: Time,
    /// Status change time.
    pub ctime: Time,
    /// Permission and type bits, octal string (for example `100640`).
    pub mode: String,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner name, when the host knows it.
    #[serde(deserialize_with = "Option::deserialize")]
    pub owner: Option<String>,
    /// Group name, when the host knows it.
    #[serde(deserialize_with = "Option::deserialize")]
    pub group: Option<String>,
    /// Device and inode, to tell a rotated file from the same file.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// A command's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandOutcome {
    /// The argv run.
    pub argv: Vec<String>,
    /// Exit code, when it exited.
    #[serde(deserialize_with = "Option::deserialize")]
    pub exit_code: Option<i32>,
    /// Signal number, when killed by one.
    #[serde(deserialize_with = "Option::deserialize")]
    pub signal: Option<i32>,
    /// The start of standard error (lossy UTF-8), bounded.
    pub stderr: String,
    /// Total bytes written to standard error.
    pub stderr_bytes: u64,
}

/// A heartbeat of `custody serve` (FORMAT.md §9.13): written when the log
/// has been idle for `interval_secs`, so that silence is attested too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// When.
    pub at: Time,
    /// The server's host.
    pub host: String,
    /// The tool.
    pub tool: Tool,
    /// The configured interval: the next heartbeat, or another segment, is
    /// due within it while the server runs.
    pub interval_secs: u64,
}

/// One preserved item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The incident.
    pub incident: String,
    /// The preservation run.
    pub run: String,
    /// The source's name.
    pub source: String,
    /// The source's kind.
    pub source_kind: SourceKind,
    /// What kind of item.
    pub kind: ItemKind,
    /// Path on the host, or the command line.
    pub path: String,
    /// How completely it was captured.
    pub status: Status,
    /// For `partial`: what changed.
    #[serde(deserialize_with = "Option::deserialize")]
    pub reason: Option<String>,
    /// For `failed`: the error.
    #[serde(deserialize_with = "Option::deserialize")]
    pub error: Option<String>,
    /// Bytes captured.
    pub size: u64,
    /// BLAKE3 of the bytes captured.
    pub blake3: Blake3Id,
    /// SHA-256 of the bytes captured.
    pub sha256: Sha256Digest,
    /// The bytes, in order.
    pub chunks: Vec<ChunkRef>,
    /// For symlinks: the target, as stored in the link.
    #[serde(deserialize_with = "Option::deserialize")]
    pub link_target: Option<String>,
    /// For files and symlinks: metadata before the read.
    #[serde(deserialize_with = "Option::deserialize")]
    pub file: Option<FileMeta>,
    /// For a file followed while its incident is held (format 1.4): the
    /// byte of the file (`file.dev`, `file.ino`) this artifact starts at;
    /// its content is the file's bytes `offset..offset + size`. Absent for
    /// an artifact of the whole file.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub offset: Option<u64>,
    /// For commands: how it ended.
    #[serde(deserialize_with = "Option::deserialize")]
    pub command: Option<CommandOutcome>,
    /// Host it was collected on.
    pub host: String,
    /// Collector (the configured name, or the host).
    pub collector: String,
    /// The tool.
    pub tool: Tool,
    /// Capture start.
    pub started_at: Time,
    /// Capture end.
    pub ended_at: Time,
}

/// A rotation of the vault's signing key (FORMAT.md §5 (key lifecycle)):
/// the segment holding it is signed by the old and the new key; the old key
/// signs no later segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotated {
    /// Key id of the key rotated out (the current key).
    pub old: String,
    /// The new key.
    pub new: PublicKey,
    /// Why.
    #[serde(deserialize_with = "Option::deserialize")]
    pub reason: Option<String>,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// A revocation of a vault key (FORMAT.md §5 (key lifecycle)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevoked {
    /// Key id of the key revoked.
    pub key: String,
    /// Since when the key is to be taken as in other hands.
    pub compromised_since: Time,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Time,
    /// Who.
    pub actor: Actor,
}

/// Where a key file's bytes are (FORMAT.md §9.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyContent {
    /// In clear, as the `file` artifact of the same run and path: the file
    /// holds public key material only.
    Stored,
    /// Encrypted to `sealed_to`, as the `sealed` artifact of the same run
    /// and path.
    Sealed,
    /// Not in the vault: only the digests, the metadata and the key records.
    Withheld,
}

impl KeyContent {
    /// The name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Sealed => "sealed",
            Self::Withheld => "withheld",
        }
    }
}

/// A file of a `keys` source, described key by key (FORMAT.md §9.12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The incident.
    pub incident: String,
    /// The preservation run.
    pub run: String,
    /// The source's name.
    pub source: String,
    /// Path on the host.
    pub path: String,
    /// How completely the file was read.
    pub status: Status,
    /// For `partial`: what changed.
    #[serde(deserialize_with = "Option::deserialize")]
    pub reason: Option<String>,
    /// For `failed`: the error.
    #[serde(deserialize_with = "Option::deserialize")]
    pub error: Option<String>,
    /// Bytes read.
    pub size: u64,
    /// BLAKE3 of the bytes read.
    pub blake3: Blake3Id,
    /// SHA-256 of the bytes read.
    pub sha256: Sha256Digest,
    /// Metadata of the file as opened.
    #[serde(deserialize_with = "Option::deserialize")]
    pub file: Option<FileMeta>,
    /// What the file holds as a whole.
    pub form: crate::keymaterial::Form,
    /// Where its bytes are.
    pub content: KeyContent,
    /// For `sealed`: the age recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed_to: Vec<String>,
    /// The keys found, in file order.
    pub keys: Vec<crate::keymaterial::KeyRecord>,
    /// What was not understood.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Host it was collected on.
    pub host: String,
    /// Collector.
    pub collector: String,
    /// The tool.
    pub tool: Tool,
    /// Read start.
    pub started_at: Time,
    /// Read end.
    pub ended_at: Time,
}

/// The totals of a preservation run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreservationFinished {
    /// The incident.
    pub incident: String,
    /// The run.
    pub run: String,
    /// When it ended.
    pub ended_at: Time,
    /// Artifacts captured completely.
    pub complete: u64,
    /// Artifacts captured partially.
    pub partial: u64,
    /// Artifacts that failed.
    pub failed: u64,
    /// Bytes read from sources.
    pub bytes_read: u64,
    /// Bytes written to new packs.
    pub bytes_stored: u64,
    /// Plaintext bytes not stored again because the vault had them.
    pub bytes_deduplicated: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::VaultSigner;
    use proptest::prelude::*;

    fn t(s: u32) -> Time {
        Time::from_unix(1_700_000_000 + i64::from(s))
    }

    pub(crate) fn sample_artifact(n: u32) -> Artifact {
        let data = format!("line {n}\n");
        Artifact {
            incident: "INC-1".into(),
            run: "00".repeat(16),
            source: "logs".into(),
            source_kind: SourceKind::Files,
            kind: ItemKind::File,
            path: format!("/var/log/{n}.log"),
            status: Status::Complete,
            reason: None,
            error: None,
            size: data.len() as u64,
            blake3: Blake3Id::of(data.as_bytes()),
            sha256: Sha256Digest::of(data.as_bytes()),
            chunks: vec![ChunkRef {
                id: Blake3Id::of(data.as_bytes()),
                pack: Blake3Id::of(b"pack"),
                offset: 16,
                stored: 20,
                size: data.len() as u32,
                skip: None,
            }],
            link_target: None,
            offset: None,
            file: None,
            command: None,
            host: "h".into(),
            collector: "h".into(),
            tool: Tool::this(),
            started_at: t(n),
            ended_at: t(n + 1),
        }
    }

    #[test]
    fn decode_is_strict() {
        let seg = Segment {
            format: 1,
            vault: None,
            seq: 0,
            prev: None,
            sealed_at: t(0),
            entries: vec![Entry::Genesis(Genesis {
                origin: "o".into(),
                key: VaultSigner::from_seed("o", [1; 32]).public(),
                created_at: t(0),
                nonce: "00".repeat(16),
                created_by: "me".into(),
                host: "h".into(),
                tool: Tool::this(),
            })],
        };
        let bytes = seg.encode();
        assert_eq!(Segment::decode(&bytes).unwrap(), seg);
        let text = String::from_utf8(bytes).unwrap();
        let cases = [
            format!("{text} "),
            text.replacen("{", "{\"extra\":1,", 1),
            text.replacen("{", "{\"seq\":5,", 1),
            text.replacen("\"format\":1", "\"format\":2", 1),
            text.replacen("\"type\":\"genesis\"", "\"type\":\"unknown\"", 1),
            text.replacen(",\"prev\":null", "", 1),
            text.replacen(&"0".repeat(32), &"0".repeat(31), 1),
            text.replacen(&"0".repeat(32), &"A".repeat(32), 1),
        ];
        for bad in cases {
            assert!(Segment::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    /// The fields written only when they have a value (`skip`, `offset`)
    /// read back as written, are absent otherwise, and are never `null`.
    #[test]
    fn fields_omitted_when_absent_are_never_null() {
        let mut a = sample_artifact(1);
        a.chunks[0].skip = Some(7);
        a.offset = Some(9);
        let with = serde_json::to_string(&a).unwrap();
        assert!(with.contains("\"size\":7,\"skip\":7}"), "{with}");
        assert_eq!(serde_json::from_str::<Artifact>(&with).unwrap(), a);
        let plain = serde_json::to_string(&sample_artifact(1)).unwrap();
        assert!(!plain.contains("skip") && !plain.contains("\"offset\":null"));
        for bad in [
            with.replace("\"skip\":7", "\"skip\":null"),
            with.replace("\"offset\":9", "\"offset\":null"),
            with.replace("\"skip\":7", "\"skip\":-1"),
        ] {
            assert!(serde_json::from_str::<Artifact>(&bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_junk(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Segment::decode(&bytes);
        }

        #[test]
        fn segment_round_trip(seq in 1u64.., n in 0u32..50, prev in any::<[u8; 32]>()) {
            let seg = Segment {
                format: 1,
                vault: Some(Sha256Digest([7; 32])),
                seq,
                prev: Some(Sha256Digest(prev)),
                sealed_at: t(n),
                entries: (0..n).map(|i| Entry::Artifact(Box::new(sample_artifact(i)))).collect(),
            };
            prop_assert_eq!(Segment::decode(&seg.encode()).unwrap(), seg);
        }
    }
}
