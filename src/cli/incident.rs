//! `custody incident ...`: the lifecycle of an incident after its
//! declaration, and the shared machinery every command that writes a
//! lifecycle entry or a custody event uses (FORMAT.md §9).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use custody::config::Config;
use custody::hold::{self as holds, HoldIndex};
use custody::incident::{Book, Incident};
use custody::keys::VaultSigner;
use custody::segment::{
    Action, Actor, CheckpointRef, CustodyEvent, Entry, FactLearned, Hold, IncidentClosed, Note,
    PreservationOrder, ReportFiled, Subject, Tool,
};
use custody::time::Time;
use custody::vault::{Appended, Vault};

use super::outln;
use super::{VaultArg, host_name, open_store, os_user, resolve_key};

/// Who is acting and with which key: every command that records an entry
/// flattens this.
#[derive(Debug, Args, Clone, Default)]
pub(super) struct ActorArgs {
    /// Signing key file, to record the action in the vault [default: from custody.toml, else
    /// ~/.config/custody/keys/<origin>.key]
    #[arg(long, env = "CUSTODY_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Record the action under this name instead of the OS user (needs --as-reason)
    #[arg(long = "as", value_name = "NAME", requires = "as_reason")]
    pub as_name: Option<String>,
    /// Why the action is recorded under another name (for example "on behalf of the DPO")
    #[arg(long, value_name = "WHY", requires = "as_name")]
    pub as_reason: Option<String>,
}

impl ActorArgs {
    pub fn actor(&self) -> Result<Actor> {
        let os = os_user();
        let (name, as_reason) = match (&self.as_name, &self.as_reason) {
            (Some(n), Some(r)) if !n.trim().is_empty() && !r.trim().is_empty() => {
                (n.clone(), Some(r.clone()))
            }
            (None, None) => (os.clone(), None),
            _ => bail!("--as needs a name and --as-reason a reason, both non-empty"),
        };
        Ok(Actor {
            name,
            os_user: os,
            as_reason,
            host: host_name(),
            tool: Tool::this(),
        })
    }
}

/// A vault opened for writing lifecycle entries: the log's incidents, the
/// signing key, and the config.
pub(super) struct Session {
    pub vault: Vault,
    pub book: Book,
    pub holds: HoldIndex,
    pub cfg: Config,
    /// Where to say that the log grew, for witnesses asked elsewhere (the
    /// service asks them off its session lock); `None`: asked here, after
    /// each append.
    pub witness_later: Option<std::sync::mpsc::SyncSender<()>>,
    /// Opened for entries of the whole vault only ([`Session::open_vault_wide`]).
    vault_wide: bool,
}

impl Session {
    pub fn open(v: &VaultArg) -> Result<Self> {
        let (store, cfg) = open_store(v)?;
        let mut book = Book::default();
        let mut holds = HoldIndex::default();
        // Lean: a session records incident steps and custody events; the
        // chunk index and earlier content are for declares.
        let vault = Vault::open_lean(store, |seq, seg| {
            book.absorb(seq, seg);
            holds.absorb(seq, seg);
        })?;
        Ok(Self {
            vault,
            book,
            holds,
            cfg,
            witness_later: None,
            vault_wide: false,
        })
    }

    /// A session for entries of the whole vault only (a verification, a
    /// probe): the log is read and checked, but its incidents and holds are
    /// not gathered, as the book keeps a copy of every incident's entries,
    /// about a kilobyte per file preserved. [`Session::record`] refuses an
    /// incident's entry here.
    pub fn open_vault_wide(v: &VaultArg) -> Result<Self> {
        let (store, cfg) = open_store(v)?;
        Ok(Self {
            vault: Vault::open_lean(store, |_, _| {})?,
            book: Book::default(),
            holds: HoldIndex::default(),
            cfg,
            witness_later: None,
            vault_wide: true,
        })
    }

    /// Reads what other writers appended since the session was opened.
    ///
    /// # Errors
    /// A new segment that does not check out, storage failures.
    pub fn catch_up(&mut self) -> Result<u64> {
        let Self {
            vault, book, holds, ..
        } = self;
        Ok(vault.catch_up(&mut |seq, seg| {
            book.absorb(seq, seg);
            holds.absorb(seq, seg);
        })?)
    }

    pub fn incident(&self, id: &str) -> Result<&Incident> {
        Ok(self.book.require(id)?)
    }

    pub fn signer(&self, key: Option<PathBuf>) -> Result<VaultSigner> {
        let (signer, _) = resolve_key(key, &self.cfg, &self.vault.root().genesis.origin)?;
        self.vault.check_signer(&signer)?;
        Ok(signer)
    }

    /// The log as this session read it.
    pub fn checkpoint(&self) -> CheckpointRef {
        CheckpointRef {
            size: self.vault.size(),
            root: self.vault.index().tree.root(),
        }
    }

    /// Checks `entries` against the incident's state, then appends them as
    /// one segment. Nothing is written when a check fails.
    pub fn record(&mut self, signer: &VaultSigner, entries: Vec<Entry>) -> Result<Appended> {
        if self.vault_wide
            && let Some(id) = entries.iter().find_map(Entry::incident)
        {
            bail!("incident {id}: a session opened for the whole vault does not know its state");
        }
        let now = Time::now();
        for e in &entries {
            self.book.check(e, &now)?;
        }
        let appended = self.vault.append(signer, entries.clone(), Time::now)?;
        // Segments another writer appended first are part of the state.
        for (seq, seg) in self.vault.take_foreign() {
            self.book.absorb(seq, &seg);
            self.holds.absorb(seq, &seg);
        }
        // The book follows the log: later steps of the command see the entry.
        let seg = custody::segment::Segment {
            format: custody::segment::FORMAT_VERSION,
            vault: Some(self.vault.id()),
            seq: appended.seq,
            prev: None,
            sealed_at: now,
            entries,
        };
        self.book.absorb(appended.seq, &seg);
        self.holds.absorb(appended.seq, &seg);
        // A new segment of a held incident is protected like the rest of
        // it (FORMAT.md §11.2).
        let key = custody::layout::segment_path(appended.seq);
        for e in &seg.entries {
            if let Some(id) = e.incident()
                && self.holds.held(id)
                && let Err(err) = self.vault.store().set_hold(&key, true)
            {
                eprintln!(
                    "custody: warning: {key} of held incident {id} is not protected by the store: {err}"
                );
                break;
            }
        }
        if let Some(e) = &appended.checkpoint_error {
            eprintln!(
                "custody: warning: segment {} is committed but the checkpoint was not updated: {e}",
                appended.seq
            );
        }
        match &self.witness_later {
            // Full: a round is already due, and it will see this segment.
            Some(tx) => {
                let _ = tx.try_send(());
            }
            None => super::witness::after_append(&self.vault, &self.cfg),
        }
        Ok(appended)
    }

    /// A custody event on `incident` (or the whole vault) by `actor`.
    pub fn event(
        &self,
        incident: Option<&str>,
        action: Action,
        via: &str,
        actor: Actor,
        purpose: Option<String>,
    ) -> CustodyEvent {
        CustodyEvent {
            incident: incident.map(str::to_owned),
            action,
            via: via.into(),
            subjects: Vec::new(),
            purpose,
            recipient: None,
            output: None,
            from: None,
            to: None,
            result: None,
            checkpoint: self.checkpoint(),
            at: Time::now(),
            actor,
        }
    }
}

pub(super) fn subject(a: &custody::segment::Artifact) -> Subject {
    Subject {
        path: a.path.clone(),
        run: a.run.clone(),
        sha256: a.sha256,
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum IncidentCommand {
    /// Record a preservation order received from an authority.
    #[command(after_help = "\
Example:
  custody incident order INC-1 --authority 'Personal Information Protection Commission' \\
      --reference 'PIPC-2025-118' --received-at 2025-11-20T10:00:00+09:00 \\
      --source 'auth servers' --source 'token service' \\
      --from 2025-04-01T00:00:00+09:00 --until 2025-11-20T00:00:00+09:00")]
    Order(OrderArgs),
    /// Place a legal hold on the incident's evidence: recorded in the log, and enforced by the store.
    #[command(after_help = "\
The store enforces the hold where it can: on an s3:// vault whose bucket has
Object Lock, every segment and pack of the incident gets an S3 legal hold
(no one can delete or overwrite that version until it is lifted); on a local
vault, their files are made read-only. Evidence added to the incident later
is protected too. `release` lifts the protection of objects no other hold
in place covers (packs are shared between incidents). Exit status 1 when the
hold is recorded but the store could not enforce it (for example a bucket
without Object Lock); `custody verify` then reports hold_missing.")]
    Hold(HoldArgs),
    /// Release a legal hold placed earlier.
    Release(HoldArgs),
    /// Re-apply the store's protection to every object of the incident's holds in place.
    #[command(after_help = "\
A hold is recorded in the log and enforced by the store: on S3, a legal
hold on every segment and pack of the incident (the bucket needs Object
Lock); on a local vault, read-only files. `custody verify` reports an object
a hold covers that the store does not protect (hold_missing); this command
puts the protection back without writing a new entry.")]
    Protect(ProtectArgs),
    /// Record a report filed with an authority (it closes the matching regulatory clock).
    #[command(after_help = "\
Regimes and filing kinds: `custody incident status` lists them for the
incident's regimes; `other` records a filing under no built-in regime.
Example:
  custody incident report INC-1 --regime kr-network-act --kind report \\
      --authority KISA --filed-at 2025-11-19T21:35:00+09:00 --reference K-77 --channel portal")]
    Report(ReportArgs),
    /// Record a fact learned after the declaration (starts a new clock where a regime says so).
    Fact(FactArgs),
    /// Add a note to the incident's record.
    Note(NoteArgs),
    /// Hand the evidence from one custodian to another.
    Transfer(TransferArgs),
    /// Close the incident (holds stay in place until released).
    Close(CloseArgs),
    /// Show an incident's state: lifecycle, holds, custody, and regulatory clocks.
    Status(StatusArgs),
    /// List the incidents in the vault.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(super) struct Common {
    #[command(flatten)]
    pub v: VaultArg,
    #[command(flatten)]
    pub actor: ActorArgs,
    /// Print the written entry as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(super) struct OrderArgs {
    /// Incident id
    incident: String,
    /// Who issued the order
    #[arg(long)]
    authority: String,
    /// The order's reference (docket or letter number)
    #[arg(long)]
    reference: String,
    /// When it was received (RFC 3339 with offset) [default: now]
    #[arg(long, value_name = "RFC3339")]
    received_at: Option<String>,
    /// A source the order names (system, host, log); repeatable
    #[arg(long = "source", value_name = "TEXT")]
    sources: Vec<String>,
    /// Start of the time range the order covers
    #[arg(long, value_name = "RFC3339")]
    from: Option<String>,
    /// End of the time range the order covers
    #[arg(long, value_name = "RFC3339")]
    until: Option<String>,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct HoldArgs {
    /// Incident id
    incident: String,
    /// The hold's name, unique within the incident (for example litigation-2025-11)
    #[arg(long)]
    name: String,
    /// Why
    #[arg(long)]
    reason: String,
    /// On whose authority (a person, an order reference)
    #[arg(long)]
    authorisation: String,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct ProtectArgs {
    /// Incident id
    incident: String,
    #[command(flatten)]
    v: VaultArg,
}

#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// Incident id
    incident: String,
    /// Regime filed under (kr-network-act, gdpr, nis2, sec-8k, hipaa, or other)
    #[arg(long)]
    regime: String,
    /// Kind of filing within the regime (see `custody incident status`)
    #[arg(long)]
    kind: String,
    /// The authority it was filed with
    #[arg(long)]
    authority: String,
    /// When it was filed (RFC 3339 with offset) [default: now]
    #[arg(long, value_name = "RFC3339")]
    filed_at: Option<String>,
    /// The filing's reference
    #[arg(long)]
    reference: String,
    /// How it was filed (portal, e-mail, letter, phone)
    #[arg(long)]
    channel: String,
    /// Why it is late, when it is (GDPR Art. 33(1) asks for the reasons)
    #[arg(long, value_name = "WHY")]
    late_reason: Option<String>,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct FactArgs {
    /// Incident id
    incident: String,
    /// What was learned
    text: String,
    /// When it was learned (RFC 3339 with offset) [default: now]
    #[arg(long, value_name = "RFC3339")]
    learned_at: Option<String>,
    /// This fact is the determination that the incident is material (starts the SEC 8-K clock)
    #[arg(long)]
    materiality: bool,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct NoteArgs {
    /// Incident id
    incident: String,
    /// The note
    text: String,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct TransferArgs {
    /// Incident id
    incident: String,
    /// The custodian handing the evidence over [default: the current custodian]
    #[arg(long)]
    from: Option<String>,
    /// The custodian receiving it
    #[arg(long)]
    to: String,
    /// Why, or under which authorisation
    #[arg(long)]
    purpose: String,
    /// Only these artifacts (paths as `custody show` prints them); repeatable [default: all]
    #[arg(long = "path", value_name = "P")]
    paths: Vec<String>,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct CloseArgs {
    /// Incident id
    incident: String,
    /// Why, or the outcome
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    c: Common,
}

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// Incident id
    incident: String,
    #[command(flatten)]
    v: VaultArg,
    /// Evaluate the clocks at this time instead of now (RFC 3339 with offset)
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    v: VaultArg,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

pub(super) fn time_arg(flag: &str, v: Option<&str>) -> Result<Time> {
    match v {
        Some(s) => Time::parse(s).map_err(|e| anyhow!("--{flag}: {e}")),
        None => Ok(Time::now()),
    }
}

pub(super) fn opt_time(flag: &str, v: Option<&str>) -> Result<Option<Time>> {
    v.map(|s| Time::parse(s).map_err(|e| anyhow!("--{flag}: {e}")))
        .transpose()
}

pub(super) fn non_empty(flag: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        bail!("--{flag} must not be empty");
    }
    Ok(())
}

pub(super) fn run(cmd: IncidentCommand) -> Result<ExitCode> {
    match cmd {
        IncidentCommand::Status(a) => status(a),
        IncidentCommand::List(a) => list(a),
        IncidentCommand::Order(a) => {
            let entry = Entry::PreservationOrder(PreservationOrder {
                incident: a.incident.clone(),
                authority: a.authority,
                reference: a.reference,
                received_at: time_arg("received-at", a.received_at.as_deref())?,
                sources: a.sources,
                from: opt_time("from", a.from.as_deref())?,
                until: opt_time("until", a.until.as_deref())?,
                at: Time::now(),
                actor: a.c.actor.actor()?,
            });
            write(&a.c, entry, "preservation order recorded")
        }
        IncidentCommand::Hold(a) | IncidentCommand::Release(a) if a.name.trim().is_empty() => {
            bail!("--name must not be empty")
        }
        IncidentCommand::Hold(a) => {
            let h = hold(&a)?;
            write(&a.c, Entry::HoldPlaced(h), "hold placed")?;
            protect(&a.c.v, &a.incident, true)
        }
        IncidentCommand::Release(a) => {
            let h = hold(&a)?;
            write(&a.c, Entry::HoldReleased(h), "hold released")?;
            protect(&a.c.v, &a.incident, false)
        }
        IncidentCommand::Protect(a) => {
            let s = Session::open(&a.v)?;
            s.incident(&a.incident)?;
            if !s.holds.held(&a.incident) {
                bail!(
                    "incident {} has no hold in place: there is nothing to protect",
                    a.incident
                );
            }
            protect(&a.v, &a.incident, true)
        }
        IncidentCommand::Report(a) => {
            for (flag, v) in [
                ("authority", &a.authority),
                ("reference", &a.reference),
                ("channel", &a.channel),
            ] {
                non_empty(flag, v)?;
            }
            check_filing(&a.regime, &a.kind)?;
            let entry = Entry::ReportFiled(ReportFiled {
                incident: a.incident.clone(),
                regime: a.regime,
                kind: a.kind,
                authority: a.authority,
                filed_at: time_arg("filed-at", a.filed_at.as_deref())?,
                reference: a.reference,
                channel: a.channel,
                late_reason: a.late_reason,
                at: Time::now(),
                actor: a.c.actor.actor()?,
            });
            write(&a.c, entry, "report recorded")
        }
        IncidentCommand::Fact(a) => {
            non_empty("text", &a.text)?;
            let entry = Entry::FactLearned(FactLearned {
                incident: a.incident.clone(),
                learned_at: time_arg("learned-at", a.learned_at.as_deref())?,
                text: a.text,
                materiality: a.materiality,
                at: Time::now(),
                actor: a.c.actor.actor()?,
            });
            write(&a.c, entry, "fact recorded")
        }
        IncidentCommand::Note(a) => {
            non_empty("text", &a.text)?;
            let entry = Entry::Note(Note {
                incident: a.incident.clone(),
                text: a.text,
                at: Time::now(),
                actor: a.c.actor.actor()?,
            });
            write(&a.c, entry, "note recorded")
        }
        IncidentCommand::Close(a) => {
            non_empty("reason", &a.reason)?;
            let entry = Entry::IncidentClosed(IncidentClosed {
                incident: a.incident.clone(),
                reason: a.reason,
                at: Time::now(),
                actor: a.c.actor.actor()?,
            });
            write(&a.c, entry, "incident closed")
        }
        IncidentCommand::Transfer(a) => transfer(a),
    }
}

/// Places (`on`) or lifts the store's own protection of the incident's
/// objects after a hold was placed or released (FORMAT.md §11.2): a legal
/// hold on S3, read-only files on a local vault. An object another hold in
/// place still covers keeps its protection. Exit status 1 when the store
/// could not protect every object (the hold itself is recorded).
pub(super) fn protect(v: &VaultArg, incident: &str, on: bool) -> Result<ExitCode> {
    let s = Session::open(v)?;
    let r = if on {
        holds::place(s.vault.store(), &s.holds, incident)
    } else {
        holds::lift(s.vault.store(), &s.holds, incident)
    };
    if let Some(why) = &r.unsupported {
        eprintln!(
            "custody: warning: the hold is recorded, but the store does not enforce it: {why}"
        );
        return Ok(ExitCode::from(1));
    }
    for (key, why) in &r.failed {
        eprintln!("custody: warning: {key}: {why}");
    }
    let what = if s.vault.store().local_root().is_some() {
        if on {
            "made read-only"
        } else {
            "made writable again"
        }
    } else if on {
        "put under legal hold"
    } else {
        "released from legal hold"
    };
    if on {
        eprintln!(
            "{incident}: {} of {} objects newly {what}; {} failed",
            r.changed,
            r.objects,
            r.failed.len()
        );
    } else if s.holds.held(incident) {
        eprintln!("{incident}: another hold is still in place; its objects stay protected");
    } else {
        eprintln!(
            "{incident}: {} of {} objects {what} (objects another incident's hold covers stay protected)",
            r.changed, r.objects,
        );
    }
    Ok(if r.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn hold(a: &HoldArgs) -> Result<Hold> {
    non_empty("reason", &a.reason)?;
    non_empty("authorisation", &a.authorisation)?;
    Ok(Hold {
        incident: a.incident.clone(),
        hold: a.name.clone(),
        reason: a.reason.clone(),
        authorisation: a.authorisation.clone(),
        at: Time::now(),
        actor: a.c.actor.actor()?,
    })
}

/// The regime and kind must be known, so that a filing closes a clock.
pub(super) fn check_filing(regime: &str, kind: &str) -> Result<()> {
    if regime == "other" {
        return non_empty("kind", kind);
    }
    let Some(r) = custody::clocks::regime(regime) else {
        let known: Vec<_> = custody::clocks::REGIMES.iter().map(|r| r.id).collect();
        bail!(
            "unknown regime {regime:?}: known regimes are {}, or `other`",
            known.join(", ")
        );
    };
    let kinds = custody::clocks::kinds(r.id);
    if !kinds.contains(&kind) {
        bail!(
            "{} has no filing kind {kind:?}: its kinds are {}",
            r.name,
            kinds.join(", ")
        );
    }
    Ok(())
}

fn write(c: &Common, entry: Entry, what: &str) -> Result<ExitCode> {
    let mut s = Session::open(&c.v)?;
    let signer = s.signer(c.actor.key.clone())?;
    let incident = entry.incident().unwrap_or_default().to_owned();
    let appended = s.record(&signer, vec![entry.clone()])?;
    if c.json {
        let out = serde_json::json!({
            "incident": incident, "segment": appended.seq,
            "checkpoint": {"size": appended.size, "root": appended.root},
            "entry": entry,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("{incident}: {what} in segment {}", appended.seq);
    }
    Ok(ExitCode::SUCCESS)
}

fn transfer(a: TransferArgs) -> Result<ExitCode> {
    non_empty("to", &a.to)?;
    non_empty("purpose", &a.purpose)?;
    let mut s = Session::open(&a.c.v)?;
    let signer = s.signer(a.c.actor.key.clone())?;
    let inc = s.incident(&a.incident)?;
    let current = inc.custodian().map(str::to_owned);
    let from = match (a.from, current) {
        (Some(f), Some(cur)) if f != cur => bail!(
            "the evidence is with {cur:?} (the last transfer), not {f:?}: pass --from {cur:?}"
        ),
        (Some(f), _) => f,
        (None, Some(cur)) => cur,
        (None, None) => bail!(
            "no transfer is recorded yet: name the first custodian with --from (for example the responder who collected it)"
        ),
    };
    if from == a.to {
        bail!("--from and --to name the same custodian {from:?}");
    }
    let mut subjects = Vec::new();
    for p in &a.paths {
        let found: Vec<_> = inc.artifacts().filter(|(_, art)| &art.path == p).collect();
        if found.is_empty() {
            bail!(
                "incident {} has no artifact with path {p:?}; `custody show {}` lists them",
                a.incident,
                a.incident
            );
        }
        subjects.extend(found.into_iter().map(|(_, art)| subject(art)));
    }
    let mut e = s.event(
        Some(&a.incident),
        Action::Transferred,
        "incident transfer",
        a.c.actor.actor()?,
        Some(a.purpose),
    );
    e.subjects = subjects;
    e.from = Some(from.clone());
    e.to = Some(a.to.clone());
    let entry = Entry::CustodyEvent(e);
    let appended = s.record(&signer, vec![entry.clone()])?;
    if a.c.json {
        let out =
            serde_json::json!({"incident": a.incident, "segment": appended.seq, "entry": entry});
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "{}: custody transferred from {from} to {} in segment {}",
            a.incident,
            a.to,
            appended.seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let s = Session::open(&a.v)?;
    let rows: Vec<_> = s
        .book
        .incidents()
        .map(|i| {
            serde_json::json!({
                "incident": i.id(), "title": i.declared.title, "state": i.state(),
                "severity": i.declared.severity, "declared_at": i.declared.declared_at,
                "artifacts": i.artifacts().count(), "regimes": i.declared.regimes,
            })
        })
        .collect();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "no incidents")?;
    }
    for i in s.book.incidents() {
        writeln!(
            out,
            "{:<20} {:<16} {:<26} {:>6} artifacts  {}",
            i.id(),
            i.state(),
            i.declared.declared_at.to_string(),
            i.artifacts().count(),
            i.declared.title
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn status(a: StatusArgs) -> Result<ExitCode> {
    let s = Session::open(&a.v)?;
    let inc = s.incident(&a.incident)?;
    let now = match &a.at {
        Some(t) => Time::parse(t).map_err(|e| anyhow!("--at: {e}"))?,
        None => Time::now(),
    };
    let clocks = super::clocks_of(inc, &now)?;
    let holds = inc.holds();
    if a.json {
        let out = serde_json::json!({
            "incident": inc.declared, "state": inc.state(), "custodian": inc.custodian(),
            "evaluated_at": now,
            "runs": inc.runs().len(), "artifacts": inc.artifacts().count(),
            "orders": inc.entries.iter().filter_map(|(seq, e)| match e { Entry::PreservationOrder(o) => Some(serde_json::json!({"segment": seq, "order": o})), _ => None }).collect::<Vec<_>>(),
            "holds": holds.iter().map(|h| serde_json::json!({"hold": h.placed.1, "segment": h.placed.0, "released": h.released.map(|(_, r)| r)})).collect::<Vec<_>>(),
            "filings": inc.filings().iter().map(|(seq, f)| serde_json::json!({"segment": seq, "filing": f})).collect::<Vec<_>>(),
            "facts": inc.facts().iter().map(|(seq, f)| serde_json::json!({"segment": seq, "fact": f})).collect::<Vec<_>>(),
            "clocks": clocks.iter().map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                // The filing index points into the regime filings; name it.
                if let Some(i) = v["filing"].as_u64()
                    && let Some((seq, f)) = inc.clock_filings().get(i as usize)
                {
                    v["closed_by"] = serde_json::json!({"segment": seq, "filed_at": f.filed_at,
                        "reference": f.reference, "authority": f.authority});
                }
                v
            }).collect::<Vec<_>>(),
            "closed": inc.closed().map(|(_, c)| c),
            "manifests": inc.manifests().iter().map(|(seq, m)| serde_json::json!({"segment": seq, "sha256": m.sha256})).collect::<Vec<_>>(),
            "custody_events": inc.events().len(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let d = &inc.declared;
    let mut out = std::io::stdout().lock();
    writeln!(out, "incident    {}  {}", d.incident, d.title)?;
    writeln!(out, "state       {}", inc.state())?;
    writeln!(
        out,
        "aware       {}{}",
        inc.aware_at(),
        if d.discovered_at.is_some() {
            " (discovered)"
        } else {
            " (declared; no discovery time was given)"
        }
    )?;
    writeln!(out, "declared    {} by {}", d.declared_at, d.declared_by)?;
    writeln!(
        out,
        "custodian   {}",
        inc.custodian()
            .unwrap_or("the vault operator (no transfer recorded)")
    )?;
    writeln!(
        out,
        "evidence    {} artifact(s) in {} run(s); {} custody event(s); {} manifest(s)",
        inc.artifacts().count(),
        inc.runs().len(),
        inc.events().len(),
        inc.manifests().len()
    )?;
    for (_, e) in &inc.entries {
        if let Entry::PreservationOrder(o) = e {
            writeln!(
                out,
                "order       {} {} received {}",
                o.authority, o.reference, o.received_at
            )?;
        }
    }
    for h in &holds {
        let (_, p) = h.placed;
        match h.released {
            None => writeln!(
                out,
                "hold        {} IN PLACE since {} ({}; authorised by {})",
                p.hold, p.at, p.reason, p.authorisation
            )?,
            Some((_, r)) => writeln!(
                out,
                "hold        {} placed {}, released {} ({})",
                p.hold, p.at, r.at, r.reason
            )?,
        }
    }
    for (_, f) in inc.filings() {
        writeln!(
            out,
            "filed       {} {} with {} at {} (ref {}, {})",
            f.regime, f.kind, f.authority, f.filed_at, f.reference, f.channel
        )?;
    }
    if let Some((_, c)) = inc.closed() {
        writeln!(
            out,
            "closed      {} by {}: {}",
            c.at, c.actor.name, c.reason
        )?;
    }
    super::print_clocks(&mut out, &clocks, &inc.clock_filings(), &now)?;
    Ok(ExitCode::SUCCESS)
}
