//! `custody manifest` and `custody verify-manifest` (FORMAT.md §13c).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use custody::manifest::{self, Issue};
use custody::time::Time;

use super::incident::{ActorArgs, Session};
use super::outln;
use super::{VaultArg, anchor, does_not_check_out, human, stage_beside};

#[derive(Debug, Args)]
pub(super) struct ManifestArgs {
    /// Incident id
    incident: String,
    /// Where to write the signed manifest (a DSSE envelope, JSON; refused if it exists)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
    /// Print a summary as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct VerifyManifestArgs {
    /// The manifest written by `custody manifest`
    manifest: PathBuf,
    /// The vault id recorded at init
    #[arg(long, value_name = "HEX")]
    vault_id: Option<String>,
    /// The vault's public key as a C2SP note verifier key (origin+hash+base64)
    #[arg(long, value_name = "KEY")]
    pubkey: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

pub(super) fn manifest_cmd(a: ManifestArgs) -> Result<ExitCode> {
    let mut s = Session::open(&a.v)?;
    let signer = s.signer(a.actor.key.clone())?;
    if a.out.exists() {
        bail!(
            "{} exists: a manifest is never written over a file",
            a.out.display()
        );
    }
    let now = Time::now();
    let inc = s.incident(&a.incident)?;
    let clocks = super::clocks_of(inc, &now)?;
    let coverage = super::coverage_of(&s, inc)?;
    let (bytes, statement) = manifest::issue(
        &s.vault,
        &signer,
        inc,
        Issue {
            actor: a.actor.actor()?,
            at: now.clone(),
            coverage: serde_json::to_value(&coverage)?,
            clocks: serde_json::to_value(&clocks)?,
        },
    )?;
    let (sha256, sealed) = manifest::sealed(&a.incident, &bytes, &statement, now);
    // Written beside the target, sealed in the log, then renamed: the file
    // appears only once the log records it.
    let tmp = stage_beside(&a.out, &bytes)?;
    let p = &statement.predicate;
    let appended = s.record(&signer, vec![sealed])?;
    tmp.persist_noclobber(&a.out)
        .map_err(|e| e.error)
        .with_context(|| {
            format!(
                "the manifest (sha256 {sha256}) is sealed in segment {} but couldn't be written to {}",
                appended.seq,
                a.out.display()
            )
        })?;
    if a.json {
        let out = serde_json::json!({
            "incident": a.incident, "out": a.out, "sha256": sha256, "subjects": statement.subject.len(),
            "failures": p.failures.len(), "record_entries": p.record.len(),
            "checkpoint": p.checkpoint, "previous": p.previous, "sealed_in": appended.seq,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "wrote {} ({} subject(s), {} failure(s) stated, {} record entries) at checkpoint size {}",
            a.out.display(),
            statement.subject.len(),
            p.failures.len(),
            p.record.len(),
            p.checkpoint.size
        );
        outln!("sha256 {sha256}, sealed in segment {}", appended.seq);
        outln!(
            "check it offline with\n  custody verify-manifest {} --vault-id {}",
            a.out.display(),
            s.vault.id()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify_manifest_cmd(a: VerifyManifestArgs) -> Result<ExitCode> {
    let anchor = anchor(&a.vault_id, &a.pubkey)?;
    let f = std::fs::File::open(&a.manifest)
        .with_context(|| format!("couldn't open {}", a.manifest.display()))?;
    let mut bytes = Vec::new();
    f.take(manifest::MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    let v = match manifest::verify_manifest(&bytes, &anchor) {
        Ok(v) => v,
        Err(e) => return does_not_check_out(a.json, "manifest", &e),
    };
    let st = &v.statement;
    let p = &st.predicate;
    if a.json {
        let out = serde_json::json!({
            "ok": true, "sha256": v.sha256, "signed_by": v.signed_by, "vault_id": p.vault_id,
            "incident": p.incident.incident, "state": p.state, "issued_at": p.issued_at,
            "issued_by": p.issued_by.name, "checkpoint": p.checkpoint, "previous": p.previous,
            "subjects": st.subject, "failures": p.failures, "record_entries": p.record.len(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "OK: manifest of incident {} ({}) signed by the key of vault {}",
        p.incident.incident, p.state, p.vault_id
    )?;
    writeln!(
        out,
        "issued {} by {}; checkpoint size {} root {}",
        p.issued_at, p.issued_by.name, p.checkpoint.size, p.checkpoint.root
    )?;
    writeln!(
        out,
        "every subject and all {} record entries match the proven log",
        p.record.len()
    )?;
    match &p.previous {
        Some(prev) => writeln!(out, "previous manifest sha256 {prev}")?,
        None => writeln!(out, "first manifest of the incident")?,
    }
    writeln!(out, "subjects ({}):", st.subject.len())?;
    for s in &st.subject {
        writeln!(
            out,
            "  {:<8} {:>10}  {}  sha256 {}",
            s.annotations.status.as_str(),
            human(s.annotations.size),
            s.name,
            s.digest.get("sha256").map_or("", String::as_str)
        )?;
    }
    for f in &p.failures {
        writeln!(
            out,
            "  {:<8} {:>10}  {}  {}",
            f.status,
            "-",
            f.path,
            f.error.as_deref().unwrap_or("")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
