//! `custody report`: an incident's chain of custody as a document (Markdown
//! or one self-contained HTML file). The rendering is `custody::report`;
//! this records the export and writes the file.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use custody::report::{self, Context};
use custody::segment::{Action, Entry};
use custody::time::Time;

use super::incident::{ActorArgs, Session};
use super::{VaultArg, stage_beside};

pub(super) const AFTER_HELP: &str = "\
The report has a title block, a summary, a timeline of every entry of the
incident (declaration, runs, orders, holds, filings, facts, notes, custody
events, manifests, closure, and verifications of the vault since), per-source
coverage with every failure, the regulatory clocks and filings, the
verifications, and the SHA-256 and BLAKE3 of every artifact. The HTML is one
file with no scripts and no external resources, and prints as a document.

Producing a report reads the evidence record, so it is recorded first as an
`exported` custody event (via `report`, with --to, --purpose and --out).

Examples:
  custody report INC-1 > inc-1.md
  custody report INC-1 --format html --out inc-1.html --to 'KISA' --purpose 'initial report'";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    /// Markdown (CommonMark with GitHub tables)
    Md,
    /// One self-contained HTML file
    Html,
}

#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// Incident id
    incident: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Md)]
    format: Format,
    /// Write the report here (refused if it exists) [default: standard output]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    v: VaultArg,
    #[command(flatten)]
    actor: ActorArgs,
    /// Why the report is produced, or under which authorisation (recorded)
    #[arg(long, value_name = "WHY")]
    purpose: Option<String>,
    /// Who receives the report (recorded)
    #[arg(long, value_name = "RECIPIENT")]
    to: Option<String>,
}

pub(super) fn report_cmd(a: ReportArgs) -> Result<ExitCode> {
    let mut s = Session::open(&a.v)?;
    let signer = s.signer(a.actor.key.clone())?;
    if let Some(out) = &a.out
        && out.exists()
    {
        bail!(
            "{} exists: a report is never written over a file",
            out.display()
        );
    }
    let now = Time::now();
    // Clocks first: a log this build cannot evaluate fails before anything
    // is recorded.
    let clocks = super::clocks_of(s.incident(&a.incident)?, &now)?;
    let actor = a.actor.actor()?;
    let mut e = s.event(
        Some(&a.incident),
        Action::Exported,
        "report",
        actor.clone(),
        a.purpose.clone(),
    );
    e.recipient = a.to.clone();
    e.output = a.out.as_ref().map(|p| p.display().to_string());
    let recorded = s.record(&signer, vec![Entry::CustodyEvent(e)])?;
    // The incident as the log now tells it, the report's own event included.
    let inc = s.incident(&a.incident)?;
    let coverage = super::coverage_of(&s, inc)?;
    let ctx = Context {
        vault_id: s.vault.id(),
        origin: &s.vault.root().genesis.origin,
        incident: inc,
        vault_events: s.book.vault_events(),
        clocks: &clocks,
        coverage: &coverage,
        checkpoint: s.checkpoint(),
        generated_at: now,
        generated_by: &actor,
    };
    let mut text = match a.format {
        Format::Md => report::markdown(&ctx),
        Format::Html => report::html(&ctx),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match &a.out {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Some(path) => {
            stage_beside(path, text.as_bytes())?
                .persist_noclobber(path)
                .map_err(|e| e.error)
                .with_context(|| {
                    format!(
                        "the report is recorded in segment {} but couldn't be written to {}",
                        recorded.seq,
                        path.display()
                    )
                })?;
            eprintln!(
                "wrote {}; the export is recorded in segment {}",
                path.display(),
                recorded.seq
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
