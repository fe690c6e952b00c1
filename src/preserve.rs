//! `declare`: record an incident and preserve its sources (FORMAT.md
//! §11 (write ordering), "Declare writes").
//!
//! 1. One segment with `incident_declared` (when the incident is new) and
//!    `preservation_started`: the declaration is on record before any
//!    evidence is read, and survives whatever happens next.
//! 2. Sources are read through the pipeline; artifact entries wait until
//!    about [`SEAL_BYTES`] of them are pending, then the current pack is
//!    flushed and they are sealed into a segment.
//! 3. A final segment ends with `preservation_finished`.

use crate::ingest::{Locator, Pipeline, PipelineError, Stats};
use crate::keys::VaultSigner;
use crate::progress::Progress;
use crate::segment::{
    Entry, IncidentDeclared, PreservationFinished, PreservationStarted, SourceSpec, Status, Tool,
};
use crate::sources::{self, Found, Pending, RunContext};
use crate::time::Time;
use crate::vault::{Appended, Vault, VaultError};

/// Pending artifact entries (JSON bytes) that trigger a seal.
pub const SEAL_BYTES: usize = 4 << 20;

/// What to declare and preserve.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// Incident id.
    pub incident: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Option<String>,
    /// When it was discovered.
    pub discovered_at: Option<Time>,
    /// What happened, as known now.
    pub description: Option<String>,
    /// How it was detected.
    pub detection_source: Option<String>,
    /// Regulatory regimes whose clocks apply.
    pub regimes: Vec<String>,
    /// Who declares.
    pub by: String,
    /// Host name.
    pub host: String,
    /// Collector name.
    pub collector: String,
    /// Sources to preserve.
    pub sources: Vec<SourceSpec>,
    /// Files never to preserve, by (device, inode): the signing key file.
    pub refuse: Vec<(u64, u64)>,
}

/// Why `declare` stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    /// The vault refused or storage failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The pack writer failed (for example, the disk is full).
    #[error("couldn't store evidence: {0}")]
    Pipeline(String),
    /// The declaration itself is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// One artifact that was not captured completely.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Source name.
    pub source: String,
    /// Path or command line.
    pub path: String,
    /// partial or failed.
    pub status: Status,
    /// Reason or error.
    pub detail: String,
}

/// What `declare` did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Incident id.
    pub incident: String,
    /// Run id.
    pub run: String,
    /// Whether this run declared the incident (or re-preserved a known one).
    pub newly_declared: bool,
    /// Artifacts by status.
    pub complete: u64,
    /// Partial artifacts.
    pub partial: u64,
    /// Failed artifacts.
    pub failed: u64,
    /// Incomplete artifacts and key files, in order.
    pub problems: Vec<Problem>,
    /// Key files described (FORMAT.md §9.12).
    pub key_files: u64,
    /// Keys found in them.
    pub keys: u64,
    /// Key files whose bytes were withheld or sealed (they hold secrets or
    /// content that is not understood).
    pub key_files_not_in_clear: u64,
    /// Pipeline counters.
    pub stats: Stats,
    /// Segments written.
    pub segments: Vec<u64>,
    /// Log after the last segment.
    pub last: Appended,
    /// Things that went wrong without losing evidence (a checkpoint that
    /// could not be updated).
    pub warnings: Vec<String>,
}

fn random_hex16() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Checks an incident id: printable, no slashes or spaces, at most 128 bytes.
///
/// # Errors
/// What is wrong.
pub fn check_incident_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:#".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "incident id {id:?} must be 1-128 characters of A-Z a-z 0-9 - _ . : #"
        ))
    }
}

/// Declares the incident (unless already declared) and preserves `d.sources`.
///
/// # Errors
/// See [`DeclareError`]. Item failures are not errors: they are recorded.
pub fn declare(
    vault: &mut Vault,
    signer: &VaultSigner,
    d: &Declaration,
    progress: &dyn Progress,
) -> Result<Summary, DeclareError> {
    check_incident_id(&d.incident).map_err(DeclareError::Invalid)?;
    for spec in &d.sources {
        crate::config::check_source(spec)
            .map_err(|m| DeclareError::Invalid(format!("source {:?}: {m}", spec.name)))?;
    }
    vault.check_signer(signer)?;
    // Before anything is written: this may read the log again, which can
    // fail, and a run once started must not stop for want of hints.
    let earlier = vault.take_earlier()?;
    let run = random_hex16();
    let newly_declared = !vault.index().incidents.contains_key(&d.incident);
    let now = Time::now();
    let mut first = Vec::new();
    if newly_declared {
        first.push(Entry::IncidentDeclared(IncidentDeclared {
            incident: d.incident.clone(),
            title: d.title.clone(),
            severity: d.severity.clone(),
            discovered_at: d.discovered_at.clone(),
            declared_at: now.clone(),
            declared_by: d.by.clone(),
            host: d.host.clone(),
            tool: Tool::this(),
            description: d.description.clone(),
            detection_source: d.detection_source.clone(),
            regimes: d.regimes.clone(),
        }));
    }
    first.push(Entry::PreservationStarted(PreservationStarted {
        incident: d.incident.clone(),
        run: run.clone(),
        started_at: now,
        by: d.by.clone(),
        host: d.host.clone(),
        tool: Tool::this(),
        sources: d.sources.clone(),
    }));
    let mut warnings = Vec::new();
    let note = |a: Appended, warnings: &mut Vec<String>| {
        if let Some(e) = &a.checkpoint_error {
            warnings.push(format!(
                "segment {} is committed but the checkpoint was not updated: {e}",
                a.seq
            ));
        }
        a
    };
    let mut segments = vec![note(vault.append(signer, first, Time::now)?, &mut warnings).seq];

    let ctx = RunContext {
        incident: d.incident.clone(),
        run: run.clone(),
        host: d.host.clone(),
        collector: d.collector.clone(),
        refuse: d.refuse.clone(),
    };
    // Deduplicate only against chunks whose pack is still there: a pack
    // deleted from the store must not swallow new copies of its chunks.
    let present: std::collections::HashSet<_> = vault
        .store()
        .list(crate::layout::PACKS_DIR)
        .map_err(VaultError::from)?
        .iter()
        .filter(|o| o.irregular.is_none())
        .filter_map(|o| crate::layout::parse_pack_path(&o.key))
        .collect();
    // The vault's own index, taken rather than copied, and given back
    // whatever happens (without the chunks of packs no longer listed), with
    // the chunks the run stored: the vault does not gather them twice.
    let mut known = vault.take_chunks()?;
    known.retain(|_, c| present.contains(&c.pack));
    let store = vault.store().clone();
    let mut tally = Tally::default();
    let mut placed = None;
    let ran = std::thread::scope(|scope| -> Result<(Stats, Vec<Appended>), DeclareError> {
        let mut pipe = Pipeline::start(scope, store, &known).with_earlier(&earlier);
        placed = Some(pipe.locator());
        // Sealing overlaps reading: each batch goes to the sealer with a
        // flush ticket, and the sealer appends it once its packs are stored
        // (FORMAT.md §11 (write ordering)), in order, while this thread
        // reads on.
        let locator = pipe.locator();
        let (seal_tx, seal_rx) = crossbeam_channel::bounded::<Seal>(2);
        let vault = &mut *vault;
        let sealer = scope.spawn(move || -> Result<Vec<Appended>, DeclareError> {
            let mut appended = Vec::new();
            for batch in seal_rx {
                let entries = match batch {
                    Seal::Batch(pending, ticket) => {
                        ticket.wait()?;
                        resolve_with(&locator, pending)?
                    }
                    Seal::Last(entries) => entries,
                };
                appended.push(vault.append(signer, entries, Time::now)?);
            }
            Ok(appended)
        });
        let read = (|| -> Result<Stats, DeclareError> {
            let mut pending: Vec<Found> = Vec::new();
            let mut pending_bytes = 0usize;
            let seal = |pipe: &mut Pipeline<'_, '_>, pending: &mut Vec<Found>| {
                let ticket = pipe.flush_later()?;
                seal_tx
                    .send(Seal::Batch(std::mem::take(pending), ticket))
                    .map_err(|_| DeclareError::Pipeline(SEALER_STOPPED.into()))
            };
            let mut emit = |pipe: &mut Pipeline<'_, '_>, f: Found| -> Result<(), DeclareError> {
                tally.count(&f);
                let size = match &f {
                    Found::Artifact(p) => entry_estimate(p),
                    Found::KeyFile(k) => serde_json::to_vec(k).map_or(SEAL_BYTES, |j| j.len() * 3),
                };
                // A large entry goes into a segment of its own rather than
                // pushing a batch past the segment size limit.
                if !pending.is_empty() && pending_bytes + size > SEAL_BYTES {
                    seal(pipe, &mut pending)?;
                    pending_bytes = 0;
                }
                pending_bytes += size;
                pending.push(f);
                if pending_bytes >= SEAL_BYTES {
                    seal(pipe, &mut pending)?;
                    pending_bytes = 0;
                }
                Ok(())
            };
            for spec in &d.sources {
                sources::preserve_source(spec, &ctx, &mut pipe, progress, &mut emit)?;
            }
            pipe.flush()?;
            let mut last_entries = resolve(&pipe, pending)?;
            let stats = pipe.finish()?;
            last_entries.push(Entry::PreservationFinished(PreservationFinished {
                incident: d.incident.clone(),
                run: run.clone(),
                ended_at: Time::now(),
                complete: tally.artifacts[0],
                partial: tally.artifacts[1],
                failed: tally.artifacts[2],
                bytes_read: stats.bytes_read,
                bytes_stored: stats.bytes_stored,
                bytes_deduplicated: stats.bytes_deduplicated,
            }));
            seal_tx
                .send(Seal::Last(last_entries))
                .map_err(|_| DeclareError::Pipeline(SEALER_STOPPED.into()))?;
            Ok(stats)
        })();
        drop(seal_tx);
        let sealed = sealer
            .join()
            .map_err(|_| DeclareError::Pipeline("the sealing thread panicked".into()))?;
        match (read, sealed) {
            // The sealer's own error says why it stopped.
            (Err(DeclareError::Pipeline(m)), Err(e)) if m == SEALER_STOPPED => Err(e),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(stats), Ok(appended)) => Ok((stats, appended)),
        }
    });
    let placed = placed.map(Locator::into_placed).unwrap_or_default();
    vault.give_back_chunks(known, placed);
    let (stats, appended) = ran?;
    let mut last = None;
    for a in appended {
        let a = note(a, &mut warnings);
        segments.push(a.seq);
        last = Some(a);
    }
    let last = last
        .ok_or_else(|| DeclareError::Pipeline("the run's last segment was not appended".into()))?;
    Ok(Summary {
        incident: d.incident.clone(),
        run,
        newly_declared,
        complete: tally.artifacts[0],
        partial: tally.artifacts[1],
        failed: tally.artifacts[2],
        problems: tally.problems,
        key_files: tally.key_files[0],
        keys: tally.key_files[1],
        key_files_not_in_clear: tally.key_files[2],
        stats,
        segments,
        last,
        warnings,
    })
}

/// What a run found, as its summary reports it.
#[derive(Default)]
struct Tally {
    /// Artifacts complete, partial, failed.
    artifacts: [u64; 3],
    /// Key files, keys in them, key files not stored in clear.
    key_files: [u64; 3],
    /// Every item not complete, with why.
    problems: Vec<Problem>,
}

impl Tally {
    fn count(&mut self, f: &Found) {
        let (status, source, path, detail) = match f {
            Found::Artifact(p) => {
                let a = &p.artifact;
                let i = match a.status {
                    Status::Complete => 0,
                    Status::Partial => 1,
                    Status::Failed => 2,
                };
                self.artifacts[i] += 1;
                (
                    a.status,
                    &a.source,
                    &a.path,
                    a.reason.as_ref().or(a.error.as_ref()),
                )
            }
            Found::KeyFile(k) => {
                self.key_files[0] += 1;
                self.key_files[1] += k.keys.len() as u64;
                if k.content != crate::segment::KeyContent::Stored {
                    self.key_files[2] += 1;
                }
                (
                    k.status,
                    &k.source,
                    &k.path,
                    k.reason.as_ref().or(k.error.as_ref()),
                )
            }
        };
        if status != Status::Complete {
            self.problems.push(Problem {
                source: source.clone(),
                path: path.clone(),
                status,
                detail: detail.cloned().unwrap_or_default(),
            });
        }
    }
}

/// Work for the sealing thread of [`declare`].
enum Seal {
    /// Artifacts to seal once the ticket's packs are stored.
    Batch(Vec<Found>, crate::ingest::FlushTicket),
    /// The run's last entries, resolved.
    Last(Vec<Entry>),
}

/// What the reading side says when the sealing thread has stopped (its
/// own error is the one reported).
const SEALER_STOPPED: &str = "the sealing thread stopped";

/// A generous estimate of an artifact entry's bytes in a segment envelope
/// (JSON, then base64 in the envelope).
fn entry_estimate(p: &Pending) -> usize {
    let a = &p.artifact;
    let text = a.path.len()
        + a.reason.as_ref().map_or(0, String::len)
        + a.error.as_ref().map_or(0, String::len)
        + a.link_target.as_ref().map_or(0, String::len)
        + a.command.as_ref().map_or(0, |c| {
            c.stderr.len() * 6 + c.argv.iter().map(String::len).sum::<usize>()
        });
    (1200 + text * 2 + p.chunks.len() * 250) * 4 / 3
}

/// Fills in chunk locations; every chunk must be in the vault or in a pack
/// flushed by this run (`custody agent` ships the result to the server).
///
/// # Errors
/// A chunk no flushed pack holds.
pub fn resolve(pipe: &Pipeline<'_, '_>, pending: Vec<Found>) -> Result<Vec<Entry>, DeclareError> {
    resolve_with(&pipe.locator(), pending)
}

/// [`resolve`] from another thread than the pipeline's.
fn resolve_with(locator: &Locator<'_>, pending: Vec<Found>) -> Result<Vec<Entry>, DeclareError> {
    pending
        .into_iter()
        .map(|f| {
            let p = match f {
                Found::KeyFile(k) => return Ok(Entry::KeyFile(k)),
                Found::Artifact(p) => *p,
            };
            let mut a = p.artifact;
            a.chunks = p
                .chunks
                .iter()
                .map(|(id, _)| {
                    locator.locate(id).ok_or_else(|| {
                        DeclareError::Pipeline(format!(
                            "chunk {} of {} has no pack",
                            id.short(),
                            a.path
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Entry::Artifact(Box::new(a)))
        })
        .collect()
}

impl From<PipelineError> for DeclareError {
    fn from(e: PipelineError) -> Self {
        Self::Pipeline(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{Blake3Id, Sha256Digest};
    use crate::segment::{
        ChunkRef, CommandOutcome, ItemKind, MAX_ARTIFACT_CHUNKS, MAX_SEGMENT_BYTES,
        SEGMENT_PAYLOAD_TYPE, Segment, SourceKind,
    };

    /// The largest artifact the writer allows, with a full stderr, fits one
    /// segment, and the writer's estimate is not below what it takes.
    #[test]
    fn the_largest_artifact_fits_one_segment() {
        let chunks: Vec<_> = (0..MAX_ARTIFACT_CHUNKS)
            .map(|i| ChunkRef {
                id: Blake3Id::of(&i.to_le_bytes()),
                pack: Blake3Id::of(&(i / 16).to_le_bytes()),
                offset: u64::MAX,
                stored: u32::MAX,
                size: u32::MAX,
                skip: Some(u32::MAX),
            })
            .collect();
        let stderr = "\u{1}".repeat(crate::sources::STDERR_KEEP);
        let artifact = crate::segment::Artifact {
            incident: "I".repeat(128),
            run: "0".repeat(32),
            source: "s".into(),
            source_kind: SourceKind::Command,
            kind: ItemKind::Command,
            path: "p".repeat(4096),
            status: Status::Failed,
            reason: None,
            error: Some("e".repeat(200)),
            size: u64::MAX,
            blake3: Blake3Id([0; 32]),
            sha256: Sha256Digest([0; 32]),
            chunks: Vec::new(),
            link_target: None,
            offset: None,
            file: None,
            command: Some(CommandOutcome {
                argv: vec!["a".repeat(4096)],
                exit_code: Some(1),
                signal: None,
                stderr,
                stderr_bytes: u64::MAX,
            }),
            host: "h".into(),
            collector: "c".into(),
            tool: Tool::this(),
            started_at: Time::from_unix(0),
            ended_at: Time::from_unix(0),
        };
        let pending = Pending {
            artifact: artifact.clone(),
            chunks: chunks.iter().map(|c| (c.id, c.size)).collect(),
        };
        let mut full = artifact;
        full.chunks = chunks;
        let seg = Segment {
            format: 1,
            vault: Some(Sha256Digest([1; 32])),
            seq: u64::MAX,
            prev: Some(Sha256Digest([2; 32])),
            sealed_at: Time::from_unix(0),
            entries: vec![Entry::Artifact(Box::new(full))],
        };
        let signer = VaultSigner::from_seed("o", [1; 32]);
        let bytes = crate::dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&signer]);
        assert!(
            (bytes.len() as u64) < MAX_SEGMENT_BYTES,
            "{} bytes",
            bytes.len()
        );
        assert!(
            entry_estimate(&pending) >= bytes.len(),
            "estimate {} < {}",
            entry_estimate(&pending),
            bytes.len()
        );
    }
}
