//! Bundles for auditors (FORMAT.md §13b): one tar file holding an inclusion
//! proof for an incident's segments, every chunk its artifacts need (each a
//! zstd frame of that chunk alone), and a README. `verify_bundle` checks it with no
//! access to the vault and can extract the artifacts.
//!
//! A bundle is untrusted input: only regular files with the three expected
//! kinds of name are accepted (no `..`, no absolute paths, no links), sizes
//! are bounded, and every chunk is decompressed within its signed size.
//! Not here: encryption of bundles (later).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path};

use sha2::Digest as _;

use crate::hash::{Blake3Id, Sha256Digest};
use crate::ingest::CHUNK_MAX;
use crate::proof::{self, Anchor, ProofError};
use crate::restore::ChunkReader;
use crate::segment::ChunkRef;
use crate::segment::{Artifact, Entry, ItemKind};
use crate::vault::{Vault, VaultError};

/// Name of the proof inside a bundle.
pub const PROOF_NAME: &str = "proof.json";
/// Name of the auditor's README inside a bundle.
pub const README_NAME: &str = "README.txt";
/// Directory of chunk frames inside a bundle.
pub const CHUNKS_DIR: &str = "chunks";
/// Largest stored frame of one chunk (zstd never grows 4 MiB by more).
const MAX_FRAME: u64 = CHUNK_MAX as u64 + (1 << 16);

/// Why a bundle could not be written or did not check out.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The vault could not be read.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The proof part failed.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bundle is not acceptable (hostile or malformed content).
    #[error("bundle refused: {0}")]
    Refused(String),
    /// Evidence in the vault is damaged; nothing was exported.
    #[error("the vault's copy of {0} is damaged; run `custody verify`")]
    Damaged(String),
}

/// Writes a bundle for `incident` (its segments `seqs` and `artifacts`) to
/// `out`.
///
/// # Errors
/// Storage failures, or damaged evidence (every chunk is checked on the way).
pub fn export(
    vault: &Vault,
    seqs: &[u64],
    artifacts: &[Artifact],
    incident: &str,
    out: impl Write,
) -> Result<u64, BundleError> {
    let proof = proof::prove(vault, seqs)?;
    let proof_json = serde_json::to_vec_pretty(&proof).expect("a proof serialises");
    let mut tar = tar::Builder::new(out);
    let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes)
    };
    add(PROOF_NAME, &proof_json)?;
    add(
        README_NAME,
        readme(incident, &proof.vault_id, artifacts.len()).as_bytes(),
    )?;
    let mut reader = ChunkReader::new();
    let mut z = zstd::bulk::Compressor::new(crate::ingest::ZSTD_LEVEL)?;
    z.include_contentsize(true)?;
    let mut seen = BTreeSet::new();
    let mut count = 0u64;
    for a in artifacts {
        for c in &a.chunks {
            if !seen.insert(c.id) {
                continue;
            }
            // Check the chunk, then write exactly the bytes checked: its
            // stored frame, or, for a chunk in a frame shared with others
            // (whose other chunks may be other incidents' evidence), its
            // plaintext compressed on its own.
            let damaged =
                |e: crate::restore::ChunkError| BundleError::Damaged(format!("{} ({e})", a.path));
            let frame = if c.skip.is_some() {
                let plain = reader.read(vault.store(), c).map_err(damaged)?;
                z.compress(plain)?
            } else {
                let frame = ChunkReader::fetch(vault.store(), c).map_err(damaged)?;
                reader.decode(c, &frame).map_err(damaged)?;
                frame.to_vec()
            };
            add(&format!("{CHUNKS_DIR}/{}", c.id), &frame)?;
            count += 1;
        }
    }
    tar.into_inner()?.flush()?;
    Ok(count)
}

fn readme(incident: &str, vault_id: &Sha256Digest, artifacts: usize) -> String {
    format!(
        "custody evidence bundle\n\
         =======================\n\n\
         Incident: {incident}\n\
         Vault id: {vault_id}\n\
         Artifacts: {artifacts}\n\n\
         Check this bundle against the vault id you were given separately (never\n\
         the one printed above alone), offline:\n\n\
         \x20   custody verify-bundle BUNDLE.tar --vault-id <VAULT ID> --extract DIR\n\n\
         Then `cd DIR && sha256sum -c SHA256SUMS` (and `b3sum -c B3SUMS`).\n\n\
         Contents: proof.json is an inclusion proof (FORMAT.md 13a): the vault's\n\
         genesis segment, its signed checkpoint (a C2SP signed note), and each\n\
         segment of the incident with its RFC 6962 audit path. chunks/<id> are zstd\n\
         frames of the artifacts' content, one per chunk; each decompresses to\n\
         exactly the bytes whose BLAKE3 is <id>. The segments list, per artifact, its chunks in order\n\
         and its SHA-256 and BLAKE3.\n"
    )
}

/// One artifact as checked from a bundle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    /// The incident.
    pub incident: String,
    /// Path on the collecting host.
    pub path: String,
    /// Its recorded status.
    pub status: &'static str,
    /// Recorded size.
    pub size: u64,
    /// Recorded SHA-256.
    pub sha256: Sha256Digest,
    /// Recorded BLAKE3.
    pub blake3: Blake3Id,
    /// Where it was extracted, if it was.
    pub extracted: Option<String>,
    /// What is wrong with it, if anything.
    pub problem: Option<String>,
}

/// The outcome of checking a bundle.
#[derive(Debug, serde::Serialize)]
pub struct BundleReport {
    /// The vault id the proof is anchored in.
    pub vault_id: Sha256Digest,
    /// Checkpoint size of the proof.
    pub checkpoint_size: u64,
    /// The segments proven.
    pub segments: Vec<u64>,
    /// The preservation runs the bundle holds, each checked for wholeness.
    pub runs: Vec<RunCheck>,
    /// The artifacts, each re-hashed.
    pub artifacts: Vec<Checked>,
    /// A problem with the bundle as a whole.
    pub problem: Option<String>,
}

impl BundleReport {
    /// Whether every artifact and run checked out.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
            && self.artifacts.iter().all(|a| a.problem.is_none())
            && self.runs.iter().all(|r| r.problem.is_none())
    }
}

/// The file name an extracted artifact gets: its position and a sanitised
/// base name; none for items without content.
fn extract_name(i: usize, a: &Artifact) -> Option<String> {
    if matches!(a.kind, ItemKind::Missing | ItemKind::Symlink) {
        return None;
    }
    let base: String = a
        .path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || "._-".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let base = base.trim_start_matches('.');
    Some(format!(
        "{:04}-{}",
        i + 1,
        if base.is_empty() { "artifact" } else { base }
    ))
}

fn safe_name(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// What `verify_bundle` is asked to check beyond the proof.
#[derive(Debug, Default, Clone)]
pub struct BundleCheck {
    /// The incident the auditor expects; artifacts of any other are refused.
    pub incident: Option<String>,
    /// Where to write the artifacts that check out (a new or empty
    /// directory).
    pub extract: Option<std::path::PathBuf>,
}

/// One preservation run in a bundle, compared with what it recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunCheck {
    /// The incident.
    pub incident: String,
    /// The run id.
    pub run: String,
    /// Artifacts of the run in the bundle.
    pub artifacts: u64,
    /// What is wrong, if anything (a missing start or end, counts that
    /// differ from what the run recorded).
    pub problem: Option<String>,
}

fn read_entry(
    entry: &mut impl Read,
    size: u64,
    limit: u64,
    name: &str,
) -> Result<Vec<u8>, BundleError> {
    if size > limit {
        return Err(BundleError::Refused(format!(
            "entry {name} is {size} bytes, more than {limit}"
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        return Err(BundleError::Refused(format!(
            "entry {name} holds {} bytes, its header says {size}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Checks a bundle read from `r` against `anchor`, with no vault.
///
/// `proof.json` must come first; then only chunks the proven artifacts name
/// are accepted, so nothing unreferenced is ever stored. Every artifact is
/// re-hashed; every preservation run in the bundle must be whole (its start
/// and end entries present, its artifact counts as it recorded them).
///
/// # Errors
/// [`BundleError::Refused`] for hostile or malformed bundles; the proof's
/// errors; I/O errors. Damaged artifacts and incomplete runs are reported in
/// the report.
pub fn verify_bundle(
    r: impl Read,
    anchor: &Anchor,
    check: &BundleCheck,
) -> Result<BundleReport, BundleError> {
    let refuse = |why: String| BundleError::Refused(why);
    let not_tar = |e: std::io::Error| BundleError::Refused(format!("not a valid tar archive: {e}"));
    let scratch = tempfile::tempdir()?;
    let mut archive = tar::Archive::new(r);
    let entries = archive.entries().map_err(not_tar)?;
    let mut verified = None;
    let mut wanted: BTreeSet<Blake3Id> = BTreeSet::new();
    let mut chunk_files: BTreeMap<Blake3Id, std::path::PathBuf> = BTreeMap::new();
    let mut seen_readme = false;
    for entry in entries {
        let mut entry = entry.map_err(not_tar)?;
        let raw = entry.path().map_err(not_tar)?.into_owned();
        let Some(name) = safe_name(&raw) else {
            return Err(refuse(format!(
                "entry {:?} is not a plain relative path",
                raw.display()
            )));
        };
        if !entry.header().entry_type().is_file() {
            return Err(refuse(format!(
                "entry {name} is not a regular file (links and devices are refused)"
            )));
        }
        let size = entry.header().size().map_err(not_tar)?;
        match (&verified, name.as_str()) {
            (None, PROOF_NAME) => {
                let bytes = read_entry(&mut entry, size, proof::MAX_PROOF_BYTES, &name)?;
                let v = proof::verify_proof(&bytes, anchor)?;
                wanted.extend(v.artifacts().flat_map(|a| a.chunks.iter().map(|c| c.id)));
                verified = Some(v);
            }
            (None, _) => {
                return Err(refuse(format!(
                    "{PROOF_NAME} must be the first entry, found {name}"
                )));
            }
            (Some(_), README_NAME) if !seen_readme => {
                read_entry(&mut entry, size, 1 << 20, &name)?;
                seen_readme = true;
            }
            (Some(_), _) => {
                let id = name
                    .strip_prefix("chunks/")
                    .and_then(|h| Blake3Id::parse(h).ok())
                    .ok_or_else(|| refuse(format!("unexpected or repeated entry {name}")))?;
                if !wanted.contains(&id) {
                    return Err(refuse(format!(
                        "chunk {id} is not named by any proven artifact"
                    )));
                }
                let bytes = read_entry(&mut entry, size, MAX_FRAME, &name)?;
                let file = scratch.path().join(id.to_hex());
                if chunk_files.insert(id, file.clone()).is_some() {
                    return Err(refuse(format!("two entries for chunk {id}")));
                }
                std::fs::write(file, bytes)?;
            }
        }
    }
    let verified = verified.ok_or_else(|| refuse(format!("no {PROOF_NAME}")))?;
    if let Some(dir) = &check.extract {
        match std::fs::read_dir(dir).map(|mut d| d.next().is_some()) {
            Ok(true) => {
                return Err(BundleError::Io(std::io::Error::other(format!(
                    "{} is not empty: extract into a new or empty directory",
                    dir.display()
                ))));
            }
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)?,
            Err(e) => return Err(e.into()),
        }
    }
    let mut report = BundleReport {
        vault_id: verified.vault_id,
        checkpoint_size: verified.checkpoint.size,
        segments: verified.segments.iter().map(|(i, _)| *i).collect(),
        runs: runs(&verified),
        artifacts: Vec::new(),
        problem: None,
    };
    let mut sums = (String::new(), String::new());
    let mut reader = ChunkReader::new();
    for (i, a) in verified.artifacts().enumerate() {
        let mut checked = Checked {
            incident: a.incident.clone(),
            path: a.path.clone(),
            status: a.status.as_str(),
            size: a.size,
            sha256: a.sha256,
            blake3: a.blake3,
            extracted: None,
            problem: None,
        };
        if let Some(expected) = check.incident.as_ref().filter(|e| **e != a.incident) {
            checked.problem = Some(format!(
                "belongs to incident {}, not {expected}",
                a.incident
            ));
            report.artifacts.push(checked);
            continue;
        }
        // Extracted content streams to a new file, kept only if it checks out.
        let name = extract_name(i, a);
        let mut out = match (&check.extract, &name) {
            (Some(dir), Some(name)) => {
                let partial = dir.join(format!("{name}.partial"));
                Some((
                    partial.clone(),
                    std::io::BufWriter::new(create_new(&partial)?),
                ))
            }
            _ => None,
        };
        let mut sha = sha2::Sha256::new();
        let mut b3 = blake3::Hasher::new();
        let mut total = 0u64;
        for c in &a.chunks {
            let plain = match chunk_files.get(&c.id) {
                None => Err(format!("chunk {} is not in the bundle", c.id.short())),
                Some(file) => {
                    // A bundle's chunk is a frame of the chunk alone,
                    // wherever the vault stored it.
                    let frame = std::fs::read(file)?;
                    reader
                        .decode(&ChunkRef { skip: None, ..*c }, &frame)
                        .map(<[u8]>::to_vec)
                        .map_err(|e| e.to_string())
                }
            };
            let plain = match plain {
                Ok(p) => p,
                Err(why) => {
                    checked.problem = Some(why);
                    break;
                }
            };
            sha.update(&plain);
            b3.update(&plain);
            total += plain.len() as u64;
            if let Some((_, w)) = &mut out {
                w.write_all(&plain)?;
            }
        }
        if checked.problem.is_none() {
            let (s, b) = (
                Sha256Digest(sha.finalize().into()),
                Blake3Id::from(b3.finalize()),
            );
            if total != a.size || s != a.sha256 || b != a.blake3 {
                checked.problem =
                    Some("content does not match the recorded size and digests".into());
            }
        }
        if let (Some((partial, w)), Some(name), Some(dir)) = (out, &name, &check.extract) {
            drop(w.into_inner().map_err(|e| e.into_error())?);
            if checked.problem.is_none() {
                std::fs::hard_link(&partial, dir.join(name))?;
                sums.0.push_str(&format!("{}  {name}\n", a.sha256));
                sums.1.push_str(&format!("{}  {name}\n", a.blake3));
                checked.extracted = Some(name.clone());
            }
            std::fs::remove_file(&partial)?;
        }
        report.artifacts.push(checked);
    }
    if report.artifacts.is_empty() {
        report.problem = Some("the bundle proves no artifact".into());
    }
    if let Some(dir) = &check.extract {
        create_new(&dir.join("SHA256SUMS"))?.write_all(sums.0.as_bytes())?;
        create_new(&dir.join("B3SUMS"))?.write_all(sums.1.as_bytes())?;
    }
    Ok(report)
}

/// Every preservation run the proven segments mention, checked for
/// wholeness against its own start and end entries.
fn runs(v: &proof::Verified) -> Vec<RunCheck> {
    use crate::segment::Status;
    #[derive(Default)]
    struct Seen {
        incident: String,
        started: bool,
        finished: Option<[u64; 3]>,
        counts: [u64; 3],
    }
    let mut runs: BTreeMap<String, Seen> = BTreeMap::new();
    for (_, seg) in &v.segments {
        for e in &seg.entries {
            match e {
                Entry::PreservationStarted(p) => {
                    let r = runs.entry(p.run.clone()).or_default();
                    r.incident.clone_from(&p.incident);
                    r.started = true;
                }
                Entry::PreservationFinished(p) => {
                    let r = runs.entry(p.run.clone()).or_default();
                    r.incident.clone_from(&p.incident);
                    r.finished = Some([p.complete, p.partial, p.failed]);
                }
                Entry::Artifact(a) => {
                    let r = runs.entry(a.run.clone()).or_default();
                    r.incident.clone_from(&a.incident);
                    let i = match a.status {
                        Status::Complete => 0,
                        Status::Partial => 1,
                        Status::Failed => 2,
                    };
                    r.counts[i] += 1;
                }
                _ => {}
            }
        }
    }
    runs.into_iter()
        .map(|(run, r)| {
            let problem = match (r.started, r.finished) {
                (false, _) => Some("its preservation_started entry is not in the bundle".to_owned()),
                (true, None) => {
                    Some("its preservation_finished entry is not in the bundle (interrupted, or left out)".to_owned())
                }
                (true, Some(recorded)) if recorded != r.counts => Some(format!(
                    "the run recorded {} complete, {} partial, {} failed; the bundle holds {} / {} / {}",
                    recorded[0], recorded[1], recorded[2], r.counts[0], r.counts[1], r.counts[2]
                )),
                _ => None,
            };
            RunCheck { incident: r.incident, run, artifacts: r.counts.iter().sum(), problem }
        })
        .collect()
}
