//! Bundles for auditors (FORMAT.md §13b): one tar file holding an inclusion
//! proof for an incident's segments, every chunk its artifacts need (as the
//! stored zstd frames), and a README. `verify_bundle` checks it with no
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
use crate::segment::{Artifact, ItemKind};
use crate::vault::{Vault, VaultError};

/// Name of the proof inside a bundle.
pub const PROOF_NAME: &str = "proof.json";
/// Name of the auditor's README inside a bundle.
pub const README_NAME: &str = "README.txt";
/// Directory of chunk frames inside a bundle.
pub const CHUNKS_DIR: &str = "chunks";
/// Largest stored frame of one chunk (zstd never grows 4 MiB by more).
const MAX_FRAME: u64 = CHUNK_MAX as u64 + (1 << 16);
/// Most entries a bundle may hold.
const MAX_ENTRIES: usize = 10_000_000;

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
    add(
        README_NAME,
        readme(incident, &proof.vault_id, artifacts.len()).as_bytes(),
    )?;
    add(PROOF_NAME, &proof_json)?;
    let mut reader = ChunkReader::new();
    let mut seen = BTreeSet::new();
    let mut count = 0u64;
    for a in artifacts {
        for c in &a.chunks {
            if !seen.insert(c.id) {
                continue;
            }
            // Check the chunk before handing it out.
            reader
                .read(vault.store(), c)
                .map_err(|e| BundleError::Damaged(format!("{} ({e})", a.path)))?;
            let frame = vault
                .store()
                .get_range(
                    &crate::layout::pack_path(&c.pack),
                    c.offset..c.offset + u64::from(c.stored),
                )
                .map_err(VaultError::from)?;
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
         segment of the incident with its RFC 6962 audit path. chunks/<id> are the\n\
         stored zstd frames of the artifacts' content; each decompresses to bytes\n\
         whose BLAKE3 is <id>. The segments list, per artifact, its chunks in order\n\
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
    /// Segments proven.
    pub segments: usize,
    /// The artifacts, each re-hashed.
    pub artifacts: Vec<Checked>,
}

impl BundleReport {
    /// Whether every artifact checked out.
    pub fn ok(&self) -> bool {
        self.artifacts.iter().all(|a| a.problem.is_none())
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

/// Checks a bundle read from `r` against `anchor`, with no vault. With
/// `extract`, writes every artifact that checks out there, with
/// `SHA256SUMS` and `B3SUMS`.
///
/// # Errors
/// [`BundleError::Refused`] for hostile or malformed bundles; the proof's
/// errors; I/O errors. Damaged artifacts are reported in the report.
pub fn verify_bundle(
    r: impl Read,
    anchor: &Anchor,
    extract: Option<&Path>,
) -> Result<BundleReport, BundleError> {
    let refuse = |why: String| BundleError::Refused(why);
    let scratch = tempfile::tempdir()?;
    let mut proof_bytes = None;
    let mut chunk_files: BTreeMap<Blake3Id, std::path::PathBuf> = BTreeMap::new();
    let mut archive = tar::Archive::new(r);
    for (n, entry) in archive.entries()?.enumerate() {
        if n >= MAX_ENTRIES {
            return Err(refuse(format!("more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
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
        let size = entry.header().size()?;
        let limit = if name == PROOF_NAME {
            proof::MAX_PROOF_BYTES
        } else if name == README_NAME {
            1 << 20
        } else {
            MAX_FRAME
        };
        if size > limit {
            return Err(refuse(format!(
                "entry {name} is {size} bytes, more than {limit}"
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry).take(limit + 1).read_to_end(&mut bytes)?;
        if name == PROOF_NAME {
            if proof_bytes.replace(bytes).is_some() {
                return Err(refuse("two proof.json entries".into()));
            }
        } else if name == README_NAME {
        } else if let Some(id) = name
            .strip_prefix("chunks/")
            .and_then(|h| Blake3Id::parse(h).ok())
        {
            let file = scratch.path().join(id.to_hex());
            if chunk_files.insert(id, file.clone()).is_some() {
                return Err(refuse(format!("two entries for chunk {id}")));
            }
            std::fs::write(file, bytes)?;
        } else {
            return Err(refuse(format!("unexpected entry {name}")));
        }
    }
    let proof_bytes = proof_bytes.ok_or_else(|| refuse("no proof.json".into()))?;
    let verified = proof::verify_proof(&proof_bytes, anchor)?;
    if let Some(dir) = extract {
        std::fs::create_dir_all(dir)?;
    }
    let mut report = BundleReport {
        vault_id: verified.vault_id,
        checkpoint_size: verified.checkpoint.size,
        segments: verified.segments.len(),
        artifacts: Vec::new(),
    };
    let mut sums = (String::new(), String::new());
    let mut z = zstd::bulk::Decompressor::new()?;
    let mut buf = vec![0u8; CHUNK_MAX as usize];
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
        // Extracted content streams to a file, kept only if it checks out.
        let name = extract_name(i, a);
        let mut out = match (extract, &name) {
            (Some(dir), Some(name)) => Some((
                dir.join(format!("{name}.partial")),
                std::io::BufWriter::new(std::fs::File::create(
                    dir.join(format!("{name}.partial")),
                )?),
            )),
            _ => None,
        };
        let mut sha = sha2::Sha256::new();
        let mut b3 = blake3::Hasher::new();
        let mut total = 0u64;
        for c in &a.chunks {
            let problem = (|| -> Result<(), String> {
                let file = chunk_files
                    .get(&c.id)
                    .ok_or_else(|| format!("chunk {} is not in the bundle", c.id.short()))?;
                let frame = std::fs::read(file).map_err(|e| e.to_string())?;
                if c.size > CHUNK_MAX {
                    return Err(format!(
                        "chunk {} declares more than {CHUNK_MAX} bytes",
                        c.id.short()
                    ));
                }
                let n = z
                    .decompress_to_buffer(&frame[..], &mut buf[..c.size as usize])
                    .map_err(|e| {
                        format!(
                            "chunk {} does not decompress within {} bytes: {e}",
                            c.id.short(),
                            c.size
                        )
                    })?;
                if n != c.size as usize || Blake3Id::of(&buf[..n]) != c.id {
                    return Err(format!("chunk {} does not hash to its id", c.id.short()));
                }
                Ok(())
            })();
            if let Err(p) = problem {
                checked.problem = Some(p);
                break;
            }
            let plain = &buf[..c.size as usize];
            sha.update(plain);
            b3.update(plain);
            total += plain.len() as u64;
            if let Some((_, w)) = &mut out {
                w.write_all(plain)?;
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
        if let (Some((partial, w)), Some(name), Some(dir)) = (out, &name, extract) {
            drop(w.into_inner().map_err(|e| e.into_error())?);
            if checked.problem.is_none() {
                std::fs::rename(&partial, dir.join(name))?;
                sums.0.push_str(&format!("{}  {name}\n", a.sha256));
                sums.1.push_str(&format!("{}  {name}\n", a.blake3));
                checked.extracted = Some(name.clone());
            } else {
                std::fs::remove_file(&partial)?;
            }
        }
        report.artifacts.push(checked);
    }
    if let Some(dir) = extract {
        std::fs::write(dir.join("SHA256SUMS"), sums.0)?;
        std::fs::write(dir.join("B3SUMS"), sums.1)?;
    }
    Ok(report)
}
