//! Signed manifests of an incident (FORMAT.md §13c): an in-toto Statement v1
//! in a DSSE envelope signed by the vault key. The subjects are the
//! incident's artifacts; the predicate carries the incident's record as the
//! log holds it, with an inclusion proof of every segment it comes from, so
//! that [`verify_manifest`] needs nothing but the envelope and the vault id.
//!
//! The predicate's entries are not trusted by the checker: it re-derives the
//! incident's entries from the proven segments and requires the predicate and
//! the subjects to say exactly the same. Coverage and clocks are the
//! issuer's computations over that record, signed with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dsse;
use crate::hash::Sha256Digest;
use crate::incident::Incident;
use crate::keys::VaultSigner;
use crate::proof::{self, Anchor, InclusionProof, ProofError};
use crate::segment::{Actor, Artifact, CheckpointRef, Entry, IncidentDeclared, ItemKind, Status};
use crate::time::Time;
use crate::vault::Vault;

/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a custody manifest.
pub const PREDICATE_TYPE: &str = "urn:custody:chain-of-custody:v1";
/// Largest manifest envelope a checker reads.
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;

/// An in-toto Statement v1 with a custody predicate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// One per artifact with content.
    pub subject: Vec<ResourceDescriptor>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The record.
    pub predicate: Predicate,
}

/// An in-toto ResourceDescriptor for one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDescriptor {
    /// The artifact's path on its host (or command line).
    pub name: String,
    /// `sha256` and `blake3`, lowercase hex.
    pub digest: BTreeMap<String, String>,
    /// Size, run, source, status, segment.
    pub annotations: Annotations,
}

/// What a subject is, beyond its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotations {
    /// Bytes.
    pub size: u64,
    /// The preservation run.
    pub run: String,
    /// The source's name.
    pub source: String,
    /// `complete` or `partial`.
    pub status: Status,
    /// The segment holding the artifact entry.
    pub segment: u64,
    /// Host collected on.
    pub host: String,
}

/// An entry and the segment holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logged {
    /// Segment number.
    pub segment: u64,
    /// The entry as in the log.
    pub entry: Entry,
}

/// The custody predicate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// The vault id.
    pub vault_id: Sha256Digest,
    /// The declaration.
    pub incident: IncidentDeclared,
    /// The segment holding the declaration.
    pub declared_in: u64,
    /// `open`, `closed`, with `on hold`.
    pub state: String,
    /// Who holds the evidence (last transfer), if anyone but the operator.
    pub custodian: Option<String>,
    /// When the manifest was issued.
    pub issued_at: Time,
    /// Who issued it.
    pub issued_by: Actor,
    /// SHA-256 of the previous manifest envelope of the incident: manifests
    /// chain through their `manifest_sealed` entries.
    pub previous: Option<Sha256Digest>,
    /// Every entry of the incident after the declaration, artifacts
    /// excepted (they are the subjects): runs, orders, holds, filings,
    /// facts, notes, custody events, earlier manifests, closure.
    pub record: Vec<Logged>,
    /// Artifacts that failed or had nothing to capture, stated explicitly.
    pub failures: Vec<Failure>,
    /// Per-source coverage (issuer's reading of the content).
    pub coverage: serde_json::Value,
    /// Regulatory clocks at `issued_at`.
    pub clocks: serde_json::Value,
    /// The checkpoint the proof is against.
    pub checkpoint: CheckpointRef,
    /// Inclusion proof of genesis, the declaration and every segment named.
    pub proof: InclusionProof,
}

/// An artifact with no content to list as a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// Path or command line.
    pub path: String,
    /// Source name.
    pub source: String,
    /// Run.
    pub run: String,
    /// `failed`, or `missing` for a path that did not exist.
    pub status: String,
    /// The recorded error.
    pub error: Option<String>,
    /// Segment.
    pub segment: u64,
}

/// Why a manifest could not be made or does not check out.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The proof inside could not be made or does not check out.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// The envelope or statement is malformed.
    #[error("not a custody manifest: {0}")]
    Malformed(String),
    /// The signature does not verify against the proven vault key.
    #[error("the manifest's signature does not verify against the vault key: {0}")]
    Signature(String),
    /// The statement says something the proven log does not.
    #[error("the manifest disagrees with the proven log: {0}")]
    Disagrees(String),
}

fn subject(seq: u64, a: &Artifact) -> Option<ResourceDescriptor> {
    if a.status == Status::Failed || a.kind == ItemKind::Missing {
        return None;
    }
    let mut digest = BTreeMap::new();
    digest.insert("sha256".to_owned(), a.sha256.to_string());
    digest.insert("blake3".to_owned(), a.blake3.to_string());
    Some(ResourceDescriptor {
        name: a.path.clone(),
        digest,
        annotations: Annotations {
            size: a.size,
            run: a.run.clone(),
            source: a.source.clone(),
            status: a.status,
            segment: seq,
            host: a.host.clone(),
        },
    })
}

fn failure(seq: u64, a: &Artifact) -> Option<Failure> {
    (a.status == Status::Failed || a.kind == ItemKind::Missing).then(|| Failure {
        path: a.path.clone(),
        source: a.source.clone(),
        run: a.run.clone(),
        status: if a.kind == ItemKind::Missing {
            "missing".into()
        } else {
            "failed".into()
        },
        error: a.error.clone(),
        segment: seq,
    })
}

/// Subjects, record and failures of an incident, from its entries.
fn derive(
    declared_seq: u64,
    entries: &[(u64, &Entry)],
) -> (Vec<ResourceDescriptor>, Vec<Logged>, Vec<Failure>) {
    let mut subjects = Vec::new();
    let mut record = Vec::new();
    let mut failures = Vec::new();
    for (seq, e) in entries {
        match e {
            Entry::Artifact(a) => {
                subjects.extend(subject(*seq, a));
                failures.extend(failure(*seq, a));
            }
            Entry::IncidentDeclared(_) if *seq == declared_seq => {}
            e => record.push(Logged {
                segment: *seq,
                entry: (*e).clone(),
            }),
        }
    }
    (subjects, record, failures)
}

/// What the issuer adds to the record.
pub struct Issue {
    /// Who issues it.
    pub actor: Actor,
    /// When.
    pub at: Time,
    /// Per-source coverage.
    pub coverage: serde_json::Value,
    /// Clocks.
    pub clocks: serde_json::Value,
}

/// The `manifest_sealed` entry (FORMAT.md §9.9) of the manifest `bytes`
/// issued as `statement` at `at`, with the manifest's SHA-256.
pub fn sealed(
    incident: &str,
    bytes: &[u8],
    statement: &Statement,
    at: Time,
) -> (Sha256Digest, Entry) {
    let sha256 = Sha256Digest::of(bytes);
    let p = &statement.predicate;
    let entry = Entry::ManifestSealed(crate::segment::ManifestSealed {
        incident: incident.to_owned(),
        sha256,
        previous: p.previous,
        subjects: statement.subject.len() as u64,
        checkpoint: p.checkpoint,
        at,
        actor: p.issued_by.clone(),
    });
    (sha256, entry)
}

/// Builds and signs the manifest of `inc` at the vault's stored checkpoint.
/// Returns the envelope bytes and the statement.
///
/// # Errors
/// A segment not yet covered by the checkpoint, storage failures.
pub fn issue(
    vault: &Vault,
    signer: &VaultSigner,
    inc: &Incident,
    issue: Issue,
) -> Result<(Vec<u8>, Statement), ManifestError> {
    let mut seqs: Vec<u64> = inc.segments.iter().copied().collect();
    if seqs.first() != Some(&0) {
        seqs.insert(0, 0);
    }
    let proof = proof::prove(vault, &seqs)?;
    let entries: Vec<(u64, &Entry)> = inc.entries.iter().map(|(s, e)| (*s, e)).collect();
    let (subject, record, failures) = derive(inc.declared_seq, &entries);
    let previous = inc.manifests().last().map(|(_, m)| m.sha256);
    let size = proof_size(&proof)?;
    let statement = Statement {
        type_: STATEMENT_TYPE.into(),
        subject,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            vault_id: vault.id(),
            incident: inc.declared.clone(),
            declared_in: inc.declared_seq,
            state: inc.state(),
            custodian: inc.custodian().map(str::to_owned),
            issued_at: issue.at,
            issued_by: issue.actor,
            previous,
            record,
            failures,
            coverage: issue.coverage,
            clocks: issue.clocks,
            checkpoint: CheckpointRef {
                size: size.0,
                root: size.1,
            },
            proof,
        },
    };
    let payload = serde_json::to_vec(&statement)
        .map_err(|e| ManifestError::Malformed(format!("does not serialise: {e}")))?;
    Ok((dsse::sign(PAYLOAD_TYPE, &payload, &[signer]), statement))
}

/// Size and root of the checkpoint inside a proof (its second and third
/// lines), as the checker will read them.
fn proof_size(p: &InclusionProof) -> Result<(u64, Sha256Digest), ManifestError> {
    let mut lines = p.checkpoint.lines().skip(1);
    let size = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| ManifestError::Malformed("checkpoint without a size".into()))?;
    let root = lines
        .next()
        .and_then(|l| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(l).ok()
        })
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Sha256Digest)
        .ok_or_else(|| ManifestError::Malformed("checkpoint without a root".into()))?;
    Ok((size, root))
}

/// A manifest that checked out.
#[derive(Debug)]
pub struct VerifiedManifest {
    /// The statement, every claim of which matched the proven log.
    pub statement: Statement,
    /// SHA-256 of the envelope bytes (what `manifest_sealed` records).
    pub sha256: Sha256Digest,
    /// The key id that signed it.
    pub signed_by: String,
}

/// Checks a manifest envelope offline against `anchor`: the inclusion proof
/// inside, the vault key's signature over the statement, and that the
/// subjects and the record are exactly what the proven segments say.
///
/// # Errors
/// [`ManifestError`] naming what does not check out.
pub fn verify_manifest(bytes: &[u8], anchor: &Anchor) -> Result<VerifiedManifest, ManifestError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::Malformed(format!(
            "larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    // The payload is read before its signature is checked only to find the
    // proof that says which key must have signed it; nothing else in it is
    // used until the signature holds.
    let unverified = dsse::payload_unverified(bytes, PAYLOAD_TYPE)
        .map_err(|e| ManifestError::Malformed(e.to_string()))?;
    let statement: Statement = serde_json::from_slice(&unverified)
        .map_err(|e| ManifestError::Malformed(format!("statement: {e}")))?;
    let proof_bytes = serde_json::to_vec(&statement.predicate.proof)
        .map_err(|e| ManifestError::Malformed(e.to_string()))?;
    let proven = proof::verify_proof(&proof_bytes, anchor)?;
    // Signed by a key that may sign at the proven checkpoint (the genesis
    // key, or the one rotated in since, FORMAT.md §5).
    let last = proven.checkpoint.size.saturating_sub(1);
    let signers = crate::keys::Keyring::new(
        proven
            .keyring
            .valid_at(last)
            .map(|s| s.public.clone())
            .collect(),
    );
    let opened = dsse::open(bytes, PAYLOAD_TYPE, &signers)
        .map_err(|e| ManifestError::Signature(e.to_string()))?;
    if opened.payload != unverified {
        return Err(ManifestError::Signature(
            "the signed payload differs from the one read".into(),
        ));
    }
    let st = statement;
    let p = &st.predicate;
    if st.type_ != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
        return Err(ManifestError::Malformed(format!(
            "_type {:?} / predicateType {:?}, expected {STATEMENT_TYPE:?} / {PREDICATE_TYPE:?}",
            st.type_, st.predicate_type
        )));
    }
    let disagree = |m: String| Err(ManifestError::Disagrees(m));
    if p.vault_id != proven.vault_id {
        return disagree(format!(
            "vault_id {} but the proof is of vault {}",
            p.vault_id, proven.vault_id
        ));
    }
    if p.checkpoint.size != proven.checkpoint.size || p.checkpoint.root != proven.checkpoint.root {
        return disagree("the checkpoint named is not the proof's".into());
    }
    let id = &p.incident.incident;
    // The incident's entries in the proven segments, in log order.
    let mut declared_in = None;
    let mut entries = Vec::new();
    for (seq, seg) in &proven.segments {
        for e in &seg.entries {
            if e.incident() != Some(id.as_str()) {
                continue;
            }
            if let Entry::IncidentDeclared(d) = e
                && declared_in.is_none()
            {
                if *d != p.incident {
                    return disagree("the declaration differs from the logged one".into());
                }
                declared_in = Some(*seq);
            }
            entries.push((*seq, e));
        }
    }
    if declared_in != Some(p.declared_in) {
        return disagree(format!(
            "the declaration of {id} is not in proven segment {}",
            p.declared_in
        ));
    }
    let (subjects, record, failures) = derive(p.declared_in, &entries);
    if subjects != st.subject {
        return disagree(format!(
            "{} subjects listed, the proven segments hold {} artifacts with content (or their digests differ)",
            st.subject.len(),
            subjects.len()
        ));
    }
    if record != p.record {
        return disagree("the record of lifecycle entries and custody events differs".into());
    }
    if failures != p.failures {
        return disagree("the failures listed differ from the logged ones".into());
    }
    // Every segment the record names is proven (derive only saw proven ones;
    // a record naming others already differs). Manifests chain: the
    // previous one is the last `manifest_sealed` of the record.
    let previous = p.record.iter().rev().find_map(|l| match &l.entry {
        Entry::ManifestSealed(m) => Some(m.sha256),
        _ => None,
    });
    if previous != p.previous {
        return disagree("`previous` is not the last sealed manifest in the record".into());
    }
    Ok(VerifiedManifest {
        sha256: Sha256Digest::of(bytes),
        signed_by: opened
            .signed_by
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        statement: st,
    })
}
