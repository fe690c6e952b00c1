//! `custody export-case`: an incident's record as CASE/UCO JSON-LD
//! (`custody::case`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use custody::segment::{Action, Entry};

use super::incident::{ActorArgs, Session};
use super::{VaultArg, stage_beside};

#[derive(Debug, Args)]
pub(super) struct ExportCaseArgs {
    /// Incident id
    incident: String,
    /// Write the JSON-LD here (refused if it exists) [default: standard output]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
    /// Why it is exported, or under which authorisation (recorded)
    #[arg(long, value_name = "WHY")]
    purpose: Option<String>,
    /// Who receives it (recorded)
    #[arg(long, value_name = "RECIPIENT")]
    to: Option<String>,
}

pub(super) fn export_case_cmd(a: ExportCaseArgs) -> Result<ExitCode> {
    let mut s = Session::open(&a.v)?;
    let signer = s.signer(a.actor.key.clone())?;
    if let Some(out) = &a.out
        && out.exists()
    {
        bail!(
            "{} exists: the export is never written over a file",
            out.display()
        );
    }
    s.incident(&a.incident)?;
    // Exporting reads the incident's record: the export is recorded first,
    // and the graph carries its own record.
    let mut e = s.event(
        Some(&a.incident),
        Action::Exported,
        "export-case",
        a.actor.actor()?,
        a.purpose.clone(),
    );
    e.recipient = a.to.clone();
    e.output = Some(match &a.out {
        Some(p) => p.display().to_string(),
        None => "standard output".into(),
    });
    let recorded = s.record(&signer, vec![Entry::CustodyEvent(e)])?;
    let inc = s.incident(&a.incident)?;
    let doc = custody::case::export(&s.vault.id(), inc, s.book.vault_events());
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    match &a.out {
        Some(out) => {
            stage_beside(out, &bytes)?
                .persist_noclobber(out)
                .map_err(|e| e.error)
                .with_context(|| {
                    format!(
                        "the export is recorded in segment {} but {} was not written",
                        recorded.seq,
                        out.display()
                    )
                })?;
            let nodes = doc["@graph"].as_array().map_or(0, Vec::len);
            eprintln!(
                "wrote {} (CASE {} JSON-LD, {nodes} nodes); the export is recorded in segment {}",
                out.display(),
                custody::case::CASE_VERSION,
                recorded.seq
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&bytes).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("couldn't write to standard output");
                }
                _ => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
