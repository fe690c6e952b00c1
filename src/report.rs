//! The chain-of-custody report: an incident's record rendered as a document
//! a regulator or a court can read (Markdown, or one self-contained HTML
//! file). It covers the declaration, preservation with per-source coverage,
//! every lifecycle entry and custody event (FORMAT.md §9.6 to §9.9), the
//! regulatory clocks and filings (§9.10), verifications, manifests (§13c)
//! and the digest of every artifact (§9.4).
//!
//! Pure: [`markdown`] and [`html`] read a [`Context`] and return text. They
//! do no I/O and compute nothing that is not in the log or in the clocks
//! and coverage the caller passes; the CLI records the custody event that
//! producing a report is, before rendering. A report is a reading of the
//! log, not evidence of its own: it is not signed, and says how to check it
//! against the vault (`custody verify`, `custody verify-manifest`,
//! `sha256sum`).
//!
//! Both formats are built from one intermediate document, so they say the
//! same things. Every string from the log is escaped on output: HTML-escaped
//! in the HTML (which also forbids scripts with a Content-Security-Policy),
//! backslash-escaped in Markdown, with `|` and line breaks escaped in table
//! cells.

use std::fmt::Write as _;

use crate::clocks::{Clock, State, format_duration};
use crate::hash::Sha256Digest;
use crate::incident::Incident;
use crate::segment::{Action, Actor, CheckpointRef, CustodyEvent, Entry, ReportFiled, Status};
use crate::time::Time;

/// Everything a report is rendered from.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The vault id (SHA-256 leaf hash of the genesis segment).
    pub vault_id: Sha256Digest,
    /// The vault's origin line.
    pub origin: &'a str,
    /// The incident, as the log tells it.
    pub incident: &'a Incident,
    /// Custody events that name no incident (verifications of the whole
    /// vault), with their segments, as `Book::vault_events` returns them;
    /// those in or after the incident's declaration segment are shown.
    pub vault_events: &'a [(u64, CustodyEvent)],
    /// The incident's regulatory clocks, evaluated at `generated_at`.
    pub clocks: &'a [Clock],
    /// Per-source coverage: a JSON array of
    /// `{"source", "kind", "complete", "partial", "failed", "bytes",
    /// "failures": [{"path", "status", "why"}]}`, optionally with `"first"`,
    /// `"last"`, `"gaps"`, `"unknown"`, `"before_scope"`, `"after_scope"`;
    /// whatever is absent is not shown.
    pub coverage: &'a serde_json::Value,
    /// The log as it was read for the report.
    pub checkpoint: CheckpointRef,
    /// When the report was produced.
    pub generated_at: Time,
    /// Who produced it.
    pub generated_by: &'a Actor,
}

/// The report as Markdown (CommonMark with GitHub tables).
pub fn markdown(ctx: &Context<'_>) -> String {
    render_markdown(&build(ctx))
}

/// The report as one self-contained HTML file: inline CSS with a print
/// stylesheet, no scripts, no external resources.
pub fn html(ctx: &Context<'_>) -> String {
    render_html(&build(ctx))
}

// ------------------------------------------------------------ document model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Good,
    Warn,
    Bad,
    Plain,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Plain => "plain",
        }
    }
}

#[derive(Debug, Clone)]
enum Span {
    Text(String),
    Strong(String),
    Code(String),
    /// A file path: code that may break after each `/`.
    Path(String),
    /// A digest: code that may break anywhere.
    Hash(String),
    Time(Time),
    Badge(Tone, String),
    Muted(String),
    Break,
}

/// A run of inline content (a table cell, a value, a paragraph).
#[derive(Debug, Clone, Default)]
struct Line(Vec<Span>);

impl Line {
    fn t(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Text(s.into()));
        self
    }
    fn strong(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Strong(s.into()));
        self
    }
    fn code(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Code(s.into()));
        self
    }
    fn hash(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Hash(s.into()));
        self
    }
    fn path(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Path(s.into()));
        self
    }
    fn time(mut self, t: &Time) -> Self {
        self.0.push(Span::Time(t.clone()));
        self
    }
    fn badge(mut self, tone: Tone, s: impl Into<String>) -> Self {
        self.0.push(Span::Badge(tone, s.into()));
        self
    }
    fn muted(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Muted(s.into()));
        self
    }
    /// A line break, unless the line is still empty.
    fn br(mut self) -> Self {
        if !self.0.is_empty() {
            self.0.push(Span::Break);
        }
        self
    }
    /// A line break, always (for a line that is appended to another).
    fn nl(mut self) -> Self {
        self.0.push(Span::Break);
        self
    }
    fn extend(mut self, other: Line) -> Self {
        self.0.extend(other.0);
        self
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn text(s: impl Into<String>) -> Line {
    Line::default().t(s)
}

fn code(s: impl Into<String>) -> Line {
    Line::default().code(s)
}

fn time(t: &Time) -> Line {
    Line::default().time(t)
}

fn dash() -> Line {
    text("—")
}

#[derive(Debug)]
struct Row {
    alert: bool,
    cells: Vec<Line>,
}

#[derive(Debug)]
struct Table {
    class: &'static str,
    /// Column headings; a heading starting with `#` is right-aligned
    /// (numbers), the `#` is not shown.
    head: &'static [&'static str],
    rows: Vec<Row>,
}

#[derive(Debug)]
enum Block {
    Para(Line),
    Facts(Vec<(String, Line)>),
    Table(Table),
    Sub(&'static str),
    /// Numbered steps, each an explanation and a shell command.
    Steps(Vec<(Line, String)>),
}

#[derive(Debug)]
struct Section {
    id: &'static str,
    title: &'static str,
    blocks: Vec<Block>,
}

#[derive(Debug)]
struct Doc {
    incident: String,
    title: String,
    facts: Vec<(String, Line)>,
    sections: Vec<Section>,
    footer: Section,
}

// ------------------------------------------------------------ building

fn build(ctx: &Context<'_>) -> Doc {
    let inc = ctx.incident;
    let d = &inc.declared;
    // The incident id and title are the heading.
    let facts = vec![
        ("Severity".into(), opt_text(d.severity.as_deref())),
        ("State".into(), state_line(inc)),
        (
            "Vault".into(),
            Line::default()
                .hash(ctx.vault_id.to_hex())
                .br()
                .muted(format!("origin {}", ctx.origin)),
        ),
        ("Checkpoint".into(), checkpoint_line(&ctx.checkpoint)),
        (
            "Generated".into(),
            time(&ctx.generated_at)
                .t(" by ")
                .extend(who(ctx.generated_by)),
        ),
    ];
    Doc {
        incident: d.incident.clone(),
        title: d.title.clone(),
        facts,
        sections: vec![
            summary(ctx),
            timeline(ctx),
            coverage(ctx),
            clocks(ctx),
            verification(ctx),
            digests(ctx),
        ],
        footer: footer(ctx),
    }
}

fn opt_text(s: Option<&str>) -> Line {
    match s {
        Some(s) if !s.is_empty() => text(s),
        _ => dash(),
    }
}

fn state_line(inc: &Incident) -> Line {
    let state = inc.state();
    let tone = if state.starts_with("closed") {
        Tone::Plain
    } else {
        Tone::Warn
    };
    Line::default().badge(tone, state)
}

fn checkpoint_line(cp: &CheckpointRef) -> Line {
    text(format!("size {}, root ", cp.size)).hash(cp.root.to_hex())
}

/// Who acted: the recorded name, and under which OS user and why when it
/// differs; the host.
fn who(a: &Actor) -> Line {
    let mut l = Line::default().t(a.name.clone());
    if let Some(reason) = &a.as_reason {
        l = l
            .br()
            .muted(format!("{} as {} because {reason}", a.os_user, a.name));
    }
    l.br().muted(format!("on {}", a.host))
}

fn who_plain(name: &str, host: &str) -> Line {
    text(name).br().muted(format!("on {host}"))
}

fn short_run(run: &str) -> String {
    run.get(..8).unwrap_or(run).to_owned()
}

/// A byte count with the exact number beside the rounded one.
fn human(n: u64) -> String {
    let h = crate::progress::human_bytes(n);
    if n < 1024 { h } else { format!("{h} ({n} B)") }
}

/// `2025-11-17 16:00:00 +09:00`: the wall clock as written, to the second,
/// with its offset.
fn human_time(t: &Time) -> String {
    let s = t.as_str();
    let b = s.as_bytes();
    if b.len() < 20 || b[10] != b'T' {
        return s.to_owned();
    }
    let rest = &s[19..];
    let offset = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = if offset == "Z" { "UTC" } else { offset };
    format!("{} {} {offset}", &s[..10], &s[11..19])
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The filings that clocks index ([`State::Met`] and [`State::Late`]): the
/// incident's filings under a built-in regime, in log order (as
/// `Incident::clocks` passes them).
fn clock_filings(inc: &Incident) -> Vec<(u64, &ReportFiled)> {
    inc.filings()
        .into_iter()
        .filter(|(_, f)| f.regime != "other")
        .collect()
}

fn clock_status(c: &Clock) -> (Tone, String) {
    match &c.state {
        State::NotStarted { why } => (Tone::Plain, format!("not started: {why}")),
        State::Open { left } => (Tone::Warn, format!("open, {} left", format_duration(*left))),
        State::Overdue { by } => (Tone::Bad, format!("overdue by {}", format_duration(*by))),
        State::Met { margin, .. } => (
            Tone::Good,
            format!("met, {} to spare", format_duration(*margin)),
        ),
        State::Late { by, .. } => (Tone::Bad, format!("late by {}", format_duration(*by))),
    }
}

fn summary(ctx: &Context<'_>) -> Section {
    let inc = ctx.incident;
    let d = &inc.declared;
    let mut facts: Vec<(String, Line)> = Vec::new();
    facts.push((
        "Aware at".into(),
        time(inc.aware_at()).t(if d.discovered_at.is_some() {
            " (discovered)"
        } else {
            " (the declaration; no discovery time was given)"
        }),
    ));
    facts.push((
        "Declared".into(),
        time(&d.declared_at)
            .t(format!(" by {} on {}", d.declared_by, d.host))
            .muted(format!(" (segment {})", inc.declared_seq)),
    ));
    if let Some(desc) = &d.description {
        facts.push(("Description".into(), text(desc.clone())));
    }
    if let Some(src) = &d.detection_source {
        facts.push(("Detected by".into(), text(src.clone())));
    }
    facts.push((
        "Custodian".into(),
        match inc.custodian() {
            Some(c) => text(c).muted(" (the last transfer)"),
            None => text("the vault operator (no transfer recorded)"),
        },
    ));
    facts.push((
        "Regimes".into(),
        if d.regimes.is_empty() {
            text("none named at declaration")
        } else {
            let mut l = Line::default();
            for (i, r) in d.regimes.iter().enumerate() {
                if i > 0 {
                    l = l.t(", ");
                }
                l = l.code(r.clone());
            }
            l
        },
    ));

    let (mut complete, mut partial, mut failed, mut bytes) = (0, 0, 0, 0u64);
    for (_, a) in inc.artifacts() {
        match a.status {
            Status::Complete => complete += 1,
            Status::Partial => partial += 1,
            Status::Failed => failed += 1,
        }
        bytes += a.size;
    }
    let runs = inc.runs();
    facts.push((
        "Evidence".into(),
        text(format!(
            "{} in {}: {complete} complete, {partial} partial, {failed} failed; {} captured",
            plural(complete + partial + failed, "artifact", "artifacts"),
            plural(runs.len(), "preservation run", "preservation runs"),
            human(bytes)
        )),
    ));
    let events = inc.events();
    let count = |a: Action| events.iter().filter(|(_, e)| e.action == a).count();
    facts.push((
        "Custody events".into(),
        text(format!(
            "{} on the incident ({} accessed, {} exported, {} transferred, {} verified, {} \
             received); {} of the whole vault since the declaration",
            events.len(),
            count(Action::Accessed),
            count(Action::Exported),
            count(Action::Transferred),
            count(Action::Verified),
            count(Action::Received),
            plural(
                vault_verifications(ctx).count(),
                "verification",
                "verifications"
            ),
        )),
    ));
    let notes = inc
        .entries
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Note(_)))
        .count();
    let orders = inc
        .entries
        .iter()
        .filter(|(_, e)| matches!(e, Entry::PreservationOrder(_)))
        .count();
    facts.push((
        "Record".into(),
        text(format!(
            "{}, {}, {}, {}, {}",
            plural(orders, "preservation order", "preservation orders"),
            plural(inc.filings().len(), "filing", "filings"),
            plural(inc.facts().len(), "fact learned", "facts learned"),
            plural(notes, "note", "notes"),
            plural(inc.manifests().len(), "manifest", "manifests")
        )),
    ));
    let holds = inc.holds();
    let active: Vec<_> = holds.iter().filter(|h| h.released.is_none()).collect();
    facts.push((
        "Holds in place".into(),
        if active.is_empty() {
            text(if holds.is_empty() {
                "none"
            } else {
                "none (all released)"
            })
        } else {
            let mut l = Line::default();
            for h in active {
                let (_, p) = h.placed;
                l = l
                    .br()
                    .badge(Tone::Warn, p.hold.clone())
                    .t(" since ")
                    .time(&p.at)
                    .t(format!(", authorised by {}: {}", p.authorisation, p.reason));
            }
            l
        },
    ));
    facts.push((
        "Closed".into(),
        match inc.closed() {
            Some((_, c)) => time(&c.at).t(format!(" by {}: {}", c.actor.name, c.reason)),
            None => text("no"),
        },
    ));

    let mut blocks = vec![Block::Facts(facts)];
    blocks.push(Block::Sub("Clocks at a glance"));
    if ctx.clocks.is_empty() {
        blocks.push(Block::Para(text(
            "No regulatory clock applies: no regime was named at declaration.",
        )));
    } else {
        let glance = ctx
            .clocks
            .iter()
            .map(|c| {
                let (tone, status) = clock_status(c);
                let mut l = Line::default().badge(tone, status);
                if let Some(dl) = &c.deadline {
                    l = l.t(" deadline ").time(dl);
                }
                (c.name.clone(), l)
            })
            .collect();
        blocks.push(Block::Facts(glance));
    }
    Section {
        id: "summary",
        title: "Summary",
        blocks,
    }
}

struct Event {
    at: Time,
    seq: Option<u64>,
    what: Line,
    who: Line,
    details: Line,
    alert: bool,
}

fn recorded(at: &Time, when: &Time) -> Line {
    if at.timestamp() == when.timestamp() {
        Line::default()
    } else {
        Line::default()
            .nl()
            .muted(format!("recorded {}", human_time(at)))
    }
}

fn custody_details(e: &CustodyEvent) -> Line {
    let mut l = text("via ").code(e.via.clone());
    if let Some(p) = &e.purpose {
        l = l.br().t(format!("purpose: {p}"));
    }
    if let Some(r) = &e.recipient {
        l = l.br().t(format!("recipient: {r}"));
    }
    if let Some(o) = &e.output {
        l = l.br().t("output: ").path(o.clone());
    }
    if e.from.is_some() || e.to.is_some() {
        l = l.br().t(format!(
            "from {} to {}",
            e.from.as_deref().unwrap_or("?"),
            e.to.as_deref().unwrap_or("?")
        ));
    }
    if let Some(r) = &e.result {
        l = l.br().badge(result_tone(r), r.clone());
    }
    match e.subjects.len() {
        0 => match e.action {
            Action::Verified => {}
            Action::Received => {
                if let Some(o) = &e.output {
                    l = l.br().path(o.clone());
                }
            }
            _ => l = l.br().muted("the incident's record as a whole"),
        },
        n if n <= 3 => {
            for s in &e.subjects {
                l = l.br().path(s.path.clone());
            }
        }
        n => l = l.br().t(format!("{n} artifacts")),
    }
    l.br()
        .muted(format!("log read at checkpoint size {}", e.checkpoint.size))
}

fn result_tone(r: &str) -> Tone {
    if r.starts_with("ok") {
        Tone::Good
    } else if r.starts_with("damaged") {
        Tone::Bad
    } else {
        Tone::Warn
    }
}

fn action_title(a: Action) -> &'static str {
    match a {
        Action::Accessed => "Evidence accessed",
        Action::Exported => "Evidence exported",
        Action::Transferred => "Custody transferred",
        Action::Verified => "Evidence verified",
        Action::Received => "Evidence received",
    }
}

fn timeline(ctx: &Context<'_>) -> Section {
    let inc = ctx.incident;
    let d = &inc.declared;
    let late_filings: Vec<&ReportFiled> = {
        let filings = clock_filings(inc);
        ctx.clocks
            .iter()
            .filter_map(|c| match c.state {
                State::Late { filing, .. } => filings.get(filing).map(|(_, f)| *f),
                _ => None,
            })
            .collect()
    };
    let runs = inc.runs();
    let mut rows: Vec<Event> = Vec::new();
    if let Some(t) = &d.discovered_at {
        rows.push(Event {
            at: t.clone(),
            seq: Some(inc.declared_seq),
            what: Line::default().strong("Incident discovered"),
            who: dash(),
            details: text("the awareness time: regulatory clocks run from here")
                .br()
                .muted("as stated in the declaration"),
            alert: false,
        });
    }
    let mut decl = text(d.title.clone());
    if let Some(s) = &d.severity {
        decl = decl.br().t(format!("severity {s}"));
    }
    if !d.regimes.is_empty() {
        decl = decl.br().t(format!("regimes: {}", d.regimes.join(", ")));
    }
    if let Some(s) = &d.detection_source {
        decl = decl.br().t(format!("detected by: {s}"));
    }
    rows.push(Event {
        at: d.declared_at.clone(),
        seq: Some(inc.declared_seq),
        what: Line::default().strong("Incident declared"),
        who: who_plain(&d.declared_by, &d.host),
        details: decl,
        alert: false,
    });
    for (seq, e) in &inc.entries {
        let seq = Some(*seq);
        let ev = match e {
            Entry::Artifact(_)
            | Entry::KeyFile(_)
            | Entry::KeyRotated(_)
            | Entry::KeyRevoked(_)
            | Entry::Genesis(_)
            | Entry::IncidentDeclared(_)
            | Entry::BackendProbed(_)
            | Entry::Heartbeat(_) => continue,
            Entry::PreservationStarted(p) => {
                let mut l = text("run ").code(short_run(&p.run)).t(", sources:");
                for s in &p.sources {
                    l = l
                        .br()
                        .t(s.name.clone())
                        .muted(format!(" ({})", s.kind.as_str()));
                }
                Event {
                    at: p.started_at.clone(),
                    seq,
                    what: Line::default().strong("Preservation started"),
                    who: who_plain(&p.by, &p.host),
                    details: l,
                    alert: false,
                }
            }
            Entry::PreservationFinished(p) => {
                let by = runs
                    .iter()
                    .find(|r| r.started.1.run == p.run)
                    .map_or_else(dash, |r| who_plain(&r.started.1.by, &r.started.1.host));
                Event {
                    at: p.ended_at.clone(),
                    seq,
                    what: Line::default().strong("Preservation finished"),
                    who: by,
                    details: text("run ")
                        .code(short_run(&p.run))
                        .t(format!(
                            ": {} complete, {} partial, {} failed",
                            p.complete, p.partial, p.failed
                        ))
                        .br()
                        .muted(format!(
                            "{} read, {} stored, {} deduplicated",
                            human(p.bytes_read),
                            human(p.bytes_stored),
                            human(p.bytes_deduplicated)
                        )),
                    alert: p.failed > 0,
                }
            }
            Entry::PreservationOrder(o) => {
                let mut l = text(format!("{}, reference {}", o.authority, o.reference));
                if !o.sources.is_empty() {
                    l = l.br().t(format!("sources named: {}", o.sources.join(", ")));
                }
                if o.from.is_some() || o.until.is_some() {
                    l = l.br().t("range ");
                    l = match &o.from {
                        Some(f) => l.time(f),
                        None => l.t("(open)"),
                    };
                    l = l.t(" to ");
                    l = match &o.until {
                        Some(u) => l.time(u),
                        None => l.t("(open)"),
                    };
                }
                Event {
                    at: o.received_at.clone(),
                    seq,
                    what: Line::default().strong("Preservation order received"),
                    who: who(&o.actor),
                    details: l.extend(recorded(&o.at, &o.received_at)),
                    alert: false,
                }
            }
            Entry::HoldPlaced(h) | Entry::HoldReleased(h) => Event {
                at: h.at.clone(),
                seq,
                what: Line::default().strong(if matches!(e, Entry::HoldPlaced(_)) {
                    "Legal hold placed"
                } else {
                    "Legal hold released"
                }),
                who: who(&h.actor),
                details: code(h.hold.clone())
                    .t(format!(": {}", h.reason))
                    .br()
                    .t(format!("authorised by {}", h.authorisation)),
                alert: false,
            },
            Entry::ReportFiled(r) => {
                let late = late_filings.iter().any(|f| std::ptr::eq(*f, r));
                let mut l = Line::default();
                if late {
                    l = l.badge(Tone::Bad, "late").t(" ");
                }
                l = l
                    .code(format!("{} {}", r.regime, r.kind))
                    .t(format!(" with {}", r.authority))
                    .br()
                    .t(format!("reference {}, via {}", r.reference, r.channel));
                if let Some(why) = &r.late_reason {
                    l = l.br().t(format!("reason for the delay: {why}"));
                }
                Event {
                    at: r.filed_at.clone(),
                    seq,
                    what: Line::default().strong("Report filed"),
                    who: who(&r.actor),
                    details: l.extend(recorded(&r.at, &r.filed_at)),
                    alert: late,
                }
            }
            Entry::FactLearned(f) => Event {
                at: f.learned_at.clone(),
                seq,
                what: Line::default().strong(if f.materiality {
                    "Materiality determined"
                } else {
                    "Fact learned"
                }),
                who: who(&f.actor),
                details: text(f.text.clone()).extend(recorded(&f.at, &f.learned_at)),
                alert: false,
            },
            Entry::Note(n) => Event {
                at: n.at.clone(),
                seq,
                what: Line::default().strong("Note"),
                who: who(&n.actor),
                details: text(n.text.clone()),
                alert: false,
            },
            Entry::IncidentClosed(c) => Event {
                at: c.at.clone(),
                seq,
                what: Line::default().strong("Incident closed"),
                who: who(&c.actor),
                details: text(c.reason.clone()),
                alert: false,
            },
            Entry::CustodyEvent(c) => Event {
                at: c.at.clone(),
                seq,
                what: Line::default().strong(action_title(c.action)),
                who: who(&c.actor),
                details: custody_details(c),
                alert: c
                    .result
                    .as_deref()
                    .is_some_and(|r| result_tone(r) == Tone::Bad),
            },
            Entry::ManifestSealed(m) => Event {
                at: m.at.clone(),
                seq,
                what: Line::default().strong("Manifest sealed"),
                who: who(&m.actor),
                details: text("sha256 ").hash(m.sha256.to_hex()).br().t(format!(
                    "{} subjects, at checkpoint size {}",
                    m.subjects, m.checkpoint.size
                )),
                alert: false,
            },
        };
        rows.push(ev);
    }
    for (seq, e) in vault_verifications(ctx) {
        rows.push(Event {
            at: e.at.clone(),
            seq: Some(seq),
            what: Line::default().strong("Vault verified"),
            who: who(&e.actor),
            details: custody_details(e),
            alert: e
                .result
                .as_deref()
                .is_some_and(|r| result_tone(r) == Tone::Bad),
        });
    }
    // Entries at the same instant stay in log order (the sort is stable, and
    // vault verifications are placed by their segment).
    rows.sort_by_key(|r| (r.at.timestamp(), r.seq));
    let table = Table {
        class: "timeline",
        head: &["Time", "#Seg.", "Event", "By", "Details"],
        rows: rows
            .into_iter()
            .map(|r| Row {
                alert: r.alert,
                cells: vec![
                    time(&r.at),
                    r.seq.map_or_else(dash, |s| text(s.to_string())),
                    r.what,
                    r.who,
                    r.details,
                ],
            })
            .collect(),
    };
    Section {
        id: "timeline",
        title: "Timeline",
        blocks: vec![
            Block::Para(text(
                "Every entry the log holds for the incident, in time order (entries at the same \
                 time in log order), with the segment that records it; verifications of the \
                 whole vault since the declaration are included. Orders, filings and facts are \
                 placed at the time they were received, filed or learned; the time they were \
                 recorded is noted when it differs. Artifacts are listed under Evidence digests.",
            )),
            Block::Table(table),
        ],
    }
}

/// Verifications of the whole vault in or after the declaration's segment.
fn vault_verifications<'a>(ctx: &Context<'a>) -> impl Iterator<Item = (u64, &'a CustodyEvent)> {
    let from = ctx.incident.declared_seq;
    ctx.vault_events
        .iter()
        .filter(move |(seq, _)| *seq >= from)
        .map(|(seq, e)| (*seq, e))
}

/// A JSON scalar as text; `None` for null and absent values.
fn jtext(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// A JSON value that should be a time: shown as a time when it is one.
fn jtime(v: &serde_json::Value) -> Line {
    match jtext(v) {
        None => dash(),
        Some(s) => match Time::parse(&s) {
            Ok(t) => time(&t),
            Err(_) => text(s),
        },
    }
}

fn jcount(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn coverage(ctx: &Context<'_>) -> Section {
    let inc = ctx.incident;
    let mut blocks = vec![Block::Para(text(
        "Each artifact entry is the record of its collection: by whom, on which host, with \
         which tool, when, and with which digests. A run without a finish entry was \
         interrupted; what it sealed remains evidence.",
    ))];

    blocks.push(Block::Sub("Preservation runs"));
    let runs = inc.runs();
    if runs.is_empty() {
        blocks.push(Block::Para(text("No preservation run is recorded.")));
    } else {
        let rows = runs
            .iter()
            .map(|r| {
                let (seq, p) = r.started;
                let sources = p.sources.iter().fold(Line::default(), |l, s| {
                    l.br()
                        .t(s.name.clone())
                        .muted(format!(" ({})", s.kind.as_str()))
                });
                let (ended, result, alert) = match r.finished {
                    Some((_, f)) => (
                        time(&f.ended_at),
                        text(format!(
                            "{} complete, {} partial, {} failed",
                            f.complete, f.partial, f.failed
                        ))
                        .br()
                        .muted(format!("{} read", human(f.bytes_read))),
                        f.failed > 0,
                    ),
                    None => (
                        dash(),
                        Line::default().badge(Tone::Warn, "interrupted: no finish entry"),
                        true,
                    ),
                };
                Row {
                    alert,
                    cells: vec![
                        code(short_run(&p.run)),
                        text(seq.to_string()),
                        time(&p.started_at),
                        who_plain(&p.by, &p.host),
                        sources,
                        ended,
                        result,
                    ],
                }
            })
            .collect();
        blocks.push(Block::Table(Table {
            class: "runs",
            head: &[
                "Run", "#Seg.", "Started", "By", "Sources", "Ended", "Result",
            ],
            rows,
        }));
    }

    let orders: Vec<_> = inc
        .entries
        .iter()
        .filter_map(|(seq, e)| match e {
            Entry::PreservationOrder(o) => Some((*seq, o)),
            _ => None,
        })
        .collect();
    if !orders.is_empty() {
        blocks.push(Block::Sub("Preservation orders"));
        blocks.push(Block::Table(Table {
            class: "orders",
            head: &[
                "Received",
                "#Seg.",
                "Authority",
                "Reference",
                "Sources named",
                "Range",
            ],
            rows: orders
                .into_iter()
                .map(|(seq, o)| Row {
                    alert: false,
                    cells: vec![
                        time(&o.received_at),
                        text(seq.to_string()),
                        text(o.authority.clone()),
                        text(o.reference.clone()),
                        if o.sources.is_empty() {
                            dash()
                        } else {
                            text(o.sources.join(", "))
                        },
                        match (&o.from, &o.until) {
                            (None, None) => dash(),
                            (f, u) => f
                                .as_ref()
                                .map_or_else(|| text("(open)"), time)
                                .t(" to ")
                                .extend(u.as_ref().map_or_else(|| text("(open)"), time)),
                        },
                    ],
                })
                .collect(),
        }));
    }

    blocks.push(Block::Sub("Coverage by source"));
    let sources: &[serde_json::Value] = ctx.coverage.as_array().map_or(&[], Vec::as_slice);
    if sources.is_empty() {
        blocks.push(Block::Para(text("No source has been preserved.")));
        return Section {
            id: "coverage",
            title: "Preservation and coverage",
            blocks,
        };
    }
    let has_span = sources
        .iter()
        .any(|s| s.get("first").is_some() || s.get("last").is_some());
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut gaps = Vec::new();
    let mut notes: Vec<(String, Line)> = Vec::new();
    for s in sources {
        let name = jtext(&s["source"]).unwrap_or_else(|| "?".into());
        let failed = jcount(&s["failed"]);
        let partial = jcount(&s["partial"]);
        let mut cells = vec![
            text(name.clone()),
            opt_text(jtext(&s["kind"]).as_deref()),
            text(jcount(&s["complete"]).to_string()),
            if partial > 0 {
                Line::default().badge(Tone::Warn, partial.to_string())
            } else {
                text("0")
            },
            if failed > 0 {
                Line::default().badge(Tone::Bad, failed.to_string())
            } else {
                text("0")
            },
            text(human(jcount(&s["bytes"]))),
        ];
        if has_span {
            cells.push(jtime(&s["first"]));
            cells.push(jtime(&s["last"]));
        }
        rows.push(Row {
            alert: failed > 0,
            cells,
        });
        for f in s["failures"].as_array().into_iter().flatten() {
            let status = jtext(&f["status"]).unwrap_or_else(|| "failed".into());
            let tone = if status == "partial" {
                Tone::Warn
            } else {
                Tone::Bad
            };
            failures.push(Row {
                alert: tone == Tone::Bad,
                cells: vec![
                    text(name.clone()),
                    Line::default().path(jtext(&f["path"]).unwrap_or_default()),
                    Line::default().badge(tone, status),
                    opt_text(jtext(&f["why"]).as_deref()),
                ],
            });
        }
        for g in s["gaps"].as_array().into_iter().flatten() {
            gaps.push(Row {
                alert: true,
                cells: vec![
                    text(name.clone()),
                    jtime(&g["from"]),
                    jtime(&g["until"]),
                    opt_text(jtext(&g["after"]).as_deref()),
                    opt_text(jtext(&g["before"]).as_deref()),
                ],
            });
        }
        let unknown: Vec<String> = s["unknown"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(jtext)
            .collect();
        if !unknown.is_empty() {
            let l = unknown
                .into_iter()
                .fold(text("record times unknown for:"), |l, u| l.br().path(u));
            notes.push((name.clone(), l));
        }
        for (key, label) in [
            ("before_scope", "before the scope"),
            ("after_scope", "after the scope"),
        ] {
            if let Some([from, until]) = s[key].as_array().map(Vec::as_slice) {
                notes.push((
                    name.clone(),
                    Line::default()
                        .badge(Tone::Warn, label)
                        .t(" ")
                        .extend(jtime(from))
                        .t(" to ")
                        .extend(jtime(until)),
                ));
            }
        }
    }
    blocks.push(Block::Table(Table {
        class: "coverage",
        head: if has_span {
            &[
                "Source",
                "Kind",
                "#Complete",
                "#Partial",
                "#Failed",
                "#Bytes",
                "First record",
                "Last record",
            ]
        } else {
            &[
                "Source",
                "Kind",
                "#Complete",
                "#Partial",
                "#Failed",
                "#Bytes",
            ]
        },
        rows,
    }));
    blocks.push(Block::Sub("Not captured, or not whole"));
    if failures.is_empty() {
        blocks.push(Block::Para(text(
            "None: every artifact was captured complete.",
        )));
    } else {
        blocks.push(Block::Table(Table {
            class: "failures",
            head: &["Source", "Path", "Status", "Why"],
            rows: failures,
        }));
    }
    if !gaps.is_empty() {
        blocks.push(Block::Sub("Gaps in the records"));
        blocks.push(Block::Table(Table {
            class: "gaps",
            head: &["Source", "From", "Until", "After", "Before"],
            rows: gaps,
        }));
    }
    if !notes.is_empty() {
        blocks.push(Block::Sub("Coverage notes"));
        blocks.push(Block::Facts(notes));
    }
    Section {
        id: "coverage",
        title: "Preservation and coverage",
        blocks,
    }
}

fn clocks(ctx: &Context<'_>) -> Section {
    let inc = ctx.incident;
    let mut blocks = Vec::new();
    if ctx.clocks.is_empty() {
        blocks.push(Block::Para(text(
            "No regulatory regime was named when the incident was declared, so no \
             notification clock applies.",
        )));
    } else {
        blocks.push(Block::Para(
            text(
                "Clocks are computed from the log (FORMAT.md §9.10): each starts at the \
                 awareness time, a fact learned or a filing, and is closed by the earliest \
                 filing of its kind at or after its start. Open and overdue clocks are \
                 measured at ",
            )
            .time(&ctx.generated_at)
            .t("."),
        ));
        let filings = clock_filings(inc);
        let rows = ctx
            .clocks
            .iter()
            .map(|c| {
                let (tone, status) = clock_status(c);
                let mut st = Line::default().badge(tone, status);
                let filing = match c.state {
                    State::Met { filing, .. } | State::Late { filing, .. } => {
                        filings.get(filing).copied()
                    }
                    _ => None,
                };
                if let State::Late {
                    reason_missing: true,
                    ..
                } = c.state
                {
                    st = st.br().t("no reason for the delay was given");
                }
                let filed = match filing {
                    Some((seq, f)) => time(&f.filed_at)
                        .br()
                        .t(format!("{}, reference {}", f.authority, f.reference))
                        .br()
                        .muted(format!("segment {seq}")),
                    None => dash(),
                };
                Row {
                    alert: tone == Tone::Bad,
                    cells: vec![
                        Line::default()
                            .strong(c.name.clone())
                            .br()
                            .code(c.regime)
                            .br()
                            .muted(c.cite),
                        c.started_at.as_ref().map_or_else(dash, time),
                        c.deadline.as_ref().map_or_else(dash, time),
                        st,
                        filed,
                    ],
                }
            })
            .collect();
        blocks.push(Block::Table(Table {
            class: "clocks",
            head: &[
                "Clock (regime, rule)",
                "Starts",
                "Deadline",
                "Status",
                "Closed by",
            ],
            rows,
        }));
    }
    blocks.push(Block::Sub("Filings"));
    let all = inc.filings();
    if all.is_empty() {
        blocks.push(Block::Para(text("No report has been filed.")));
    } else {
        blocks.push(Block::Table(Table {
            class: "filings",
            head: &[
                "Filed",
                "#Seg.",
                "Regime, kind",
                "Authority",
                "Reference",
                "Channel",
                "Late reason",
                "By",
            ],
            rows: all
                .into_iter()
                .map(|(seq, f)| Row {
                    alert: false,
                    cells: vec![
                        time(&f.filed_at),
                        text(seq.to_string()),
                        code(format!("{} {}", f.regime, f.kind)),
                        text(f.authority.clone()),
                        text(f.reference.clone()),
                        text(f.channel.clone()),
                        opt_text(f.late_reason.as_deref()),
                        who(&f.actor),
                    ],
                })
                .collect(),
        }));
    }
    Section {
        id: "clocks",
        title: "Regulatory clocks and filings",
        blocks,
    }
}

fn verification(ctx: &Context<'_>) -> Section {
    let inc = ctx.incident;
    let mut verified: Vec<(u64, &CustodyEvent)> = inc
        .events()
        .into_iter()
        .filter(|(_, e)| e.action == Action::Verified)
        .chain(vault_verifications(ctx))
        .collect();
    verified.sort_by_key(|(seq, e)| (e.at.timestamp(), *seq));
    let mut blocks = Vec::new();
    if verified.is_empty() {
        blocks.push(Block::Para(
            text("No verification is recorded since the incident was declared; ")
                .code("custody verify")
                .t(" with a signing key records one."),
        ));
    } else {
        blocks.push(Block::Para(text(
            "Each verification re-checked every signature, the chain, the checkpoint and \
             (unless quick) every byte of content, and was recorded as a custody event.",
        )));
        blocks.push(Block::Table(Table {
            class: "verifications",
            head: &[
                "Time",
                "#Seg.",
                "Command",
                "Result",
                "Checkpoint verified",
                "By",
            ],
            rows: verified
                .into_iter()
                .map(|(seq, e)| {
                    let tone = e.result.as_deref().map_or(Tone::Plain, result_tone);
                    Row {
                        alert: tone == Tone::Bad,
                        cells: vec![
                            time(&e.at),
                            text(seq.to_string()),
                            code(e.via.clone()).extend(if e.incident.is_none() {
                                Line::default().nl().muted("whole vault")
                            } else {
                                Line::default()
                            }),
                            match &e.result {
                                Some(r) => Line::default().badge(tone, r.clone()),
                                None => dash(),
                            },
                            checkpoint_line(&e.checkpoint),
                            who(&e.actor),
                        ],
                    }
                })
                .collect(),
        }));
    }
    blocks.push(Block::Sub("Manifests"));
    let manifests = inc.manifests();
    if manifests.is_empty() {
        blocks.push(Block::Para(
            text("No signed manifest has been issued for the incident (")
                .code("custody manifest")
                .t(")."),
        ));
    } else {
        blocks.push(Block::Table(Table {
            class: "manifests",
            head: &[
                "Issued",
                "#Seg.",
                "SHA-256 of the manifest",
                "#Subjects",
                "Checkpoint",
                "By",
            ],
            rows: manifests
                .into_iter()
                .map(|(seq, m)| Row {
                    alert: false,
                    cells: vec![
                        time(&m.at),
                        text(seq.to_string()),
                        Line::default()
                            .hash(m.sha256.to_hex())
                            .extend(match &m.previous {
                                Some(p) => {
                                    Line::default().nl().muted(format!("follows {}", p.short()))
                                }
                                None => Line::default(),
                            }),
                        text(m.subjects.to_string()),
                        checkpoint_line(&m.checkpoint),
                        who(&m.actor),
                    ],
                })
                .collect(),
        }));
    }
    blocks.push(Block::Para(
        text("This report reads the log at checkpoint ")
            .extend(checkpoint_line(&ctx.checkpoint))
            .t("."),
    ));
    Section {
        id: "verification",
        title: "Verification",
        blocks,
    }
}

fn digests(ctx: &Context<'_>) -> Section {
    let rows: Vec<Row> = ctx
        .incident
        .artifacts()
        .map(|(seq, a)| {
            let tone = match a.status {
                Status::Complete => Tone::Good,
                Status::Partial => Tone::Warn,
                Status::Failed => Tone::Bad,
            };
            let mut path = Line::default().path(a.path.clone());
            if let Some(t) = &a.link_target {
                path = path.br().muted("symbolic link to ").path(t.clone());
            }
            let mut status = Line::default().badge(tone, a.status.as_str());
            if let Some(why) = a.reason.as_ref().or(a.error.as_ref()) {
                status = status.br().muted(why.clone());
            }
            Row {
                alert: a.status == Status::Failed,
                cells: vec![
                    path,
                    status,
                    text(human(a.size)),
                    Line::default().hash(a.sha256.to_hex()),
                    Line::default().hash(a.blake3.to_hex()),
                    code(short_run(&a.run)),
                    text(seq.to_string()),
                ],
            }
        })
        .collect();
    let mut blocks = vec![Block::Para(
        text("Every artifact preserved for the incident, in log order. SHA-256 is what ")
            .code("sha256sum")
            .t(" prints for the restored file, BLAKE3 what ")
            .code("b3sum")
            .t(
                " prints; a failed artifact's digests are of whatever was captured (the \
                 empty string when nothing was).",
            ),
    )];
    if rows.is_empty() {
        blocks.push(Block::Para(text("No artifact is recorded.")));
    } else {
        blocks.push(Block::Table(Table {
            class: "digests",
            head: &[
                "Path", "Status", "#Size", "SHA-256", "BLAKE3", "Run", "#Seg.",
            ],
            rows,
        }));
    }
    Section {
        id: "digests",
        title: "Evidence digests",
        blocks,
    }
}

fn footer(ctx: &Context<'_>) -> Section {
    let id = shell_words::quote(ctx.incident.id()).into_owned();
    let vid = ctx.vault_id.to_hex();
    Section {
        id: "check",
        title: "How to check this report",
        blocks: vec![
            Block::Para(
                text(
                    "This report is a reading of the vault's log, not evidence of its own: it is \
                     not signed. Every statement in it comes from a signed entry whose segment is \
                     named. Its production is itself recorded, as an ",
                )
                .code("exported")
                .t(" custody event via ")
                .code("report")
                .t(". To check it independently, with the vault id given to you separately:"),
            ),
            Block::Steps(vec![
                (
                    text(
                        "Verify the whole vault: every signature, the hash chain, the signed \
                         checkpoint and every byte of content.",
                    ),
                    format!("custody verify --vault VAULT --vault-id {vid}"),
                ),
                (
                    text(
                        "Issue a signed manifest of the incident (an in-toto statement in a DSSE \
                         envelope with an inclusion proof) and check it offline; it carries the \
                         same record, digests and clocks as this report.",
                    ),
                    format!(
                        "custody manifest {id} --vault VAULT --out manifest.json\n\
                         custody verify-manifest manifest.json --vault-id {vid}"
                    ),
                ),
                (
                    text(
                        "Restore an artifact and compare its SHA-256 with the table of evidence \
                         digests (or export a bundle, extract it, and check all at once).",
                    ),
                    format!(
                        "custody cat {id} PATH --vault VAULT --purpose WHY > artifact\n\
                         sha256sum artifact\n\
                         custody export {id} --vault VAULT --to WHO --purpose WHY --out bundle.tar\n\
                         custody verify-bundle bundle.tar --vault-id {vid} --extract out/ && \
                         (cd out && sha256sum -c SHA256SUMS)"
                    ),
                ),
            ]),
            Block::Para(
                text(format!(
                    "Generated by {} {} at ",
                    ctx.generated_by.tool.name, ctx.generated_by.tool.version
                ))
                .time(&ctx.generated_at)
                .t(format!(" for incident {}.", ctx.incident.id())),
            ),
        ],
    }
}

// ------------------------------------------------------------ Markdown

/// Backslash-escapes what CommonMark would read as markup (any ASCII
/// punctuation may be escaped), so log text is shown as written and inline
/// HTML in it stays text; line breaks become `<br>`.
fn md_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
}

/// A code span that holds `s` verbatim: a fence longer than any run of
/// backticks in it. In a table, `|` is escaped (GFM reads `\|` as `|` even
/// in code) and line breaks become spaces.
fn md_code(s: &str, in_table: bool, out: &mut String) {
    let s: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let s = if in_table { s.replace('|', "\\|") } else { s };
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') || s.is_empty() {
        " "
    } else {
        ""
    };
    let _ = write!(out, "{fence}{pad}{s}{pad}{fence}");
}

/// Where Markdown inline content goes: what a line break becomes, and
/// whether `|` must be escaped inside code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Md {
    Para,
    Item,
    Cell,
}

fn md_line(l: &Line, mode: Md, out: &mut String) {
    let in_table = mode == Md::Cell;
    for span in &l.0 {
        match span {
            Span::Text(s) | Span::Muted(s) => md_text(s, out),
            Span::Strong(s) => {
                out.push_str("**");
                md_text(s, out);
                out.push_str("**");
            }
            Span::Code(s) | Span::Path(s) | Span::Hash(s) => md_code(s, in_table, out),
            Span::Time(t) => md_text(&human_time(t), out),
            Span::Badge(tone, s) => {
                let strong = matches!(tone, Tone::Bad | Tone::Warn);
                if strong {
                    out.push_str("**");
                }
                md_text(s, out);
                if strong {
                    out.push_str("**");
                }
            }
            Span::Break => out.push_str(if mode == Md::Para { "  \n" } else { "<br>" }),
        }
    }
}

fn md_blocks(blocks: &[Block], out: &mut String) {
    for b in blocks {
        match b {
            Block::Para(l) => {
                md_line(l, Md::Para, out);
                out.push_str("\n\n");
            }
            Block::Facts(facts) => {
                for (k, v) in facts {
                    out.push_str("- **");
                    md_text(k, out);
                    out.push_str(":** ");
                    md_line(v, Md::Item, out);
                    out.push('\n');
                }
                out.push('\n');
            }
            Block::Sub(title) => {
                let _ = write!(out, "### {title}\n\n");
            }
            Block::Table(t) => {
                out.push('|');
                for h in t.head {
                    let _ = write!(out, " {} |", h.trim_start_matches('#'));
                }
                out.push_str("\n|");
                for h in t.head {
                    out.push_str(if h.starts_with('#') { "---:|" } else { "---|" });
                }
                out.push('\n');
                for r in &t.rows {
                    out.push('|');
                    for c in &r.cells {
                        out.push(' ');
                        if c.is_empty() {
                            out.push('—');
                        }
                        md_line(c, Md::Cell, out);
                        out.push_str(" |");
                    }
                    out.push('\n');
                }
                out.push('\n');
            }
            Block::Steps(steps) => {
                for (i, (l, cmd)) in steps.iter().enumerate() {
                    let _ = write!(out, "{}. ", i + 1);
                    md_line(l, Md::Para, out);
                    out.push_str("\n\n   ```sh\n");
                    for line in cmd.lines() {
                        let _ = writeln!(out, "   {line}");
                    }
                    out.push_str("   ```\n\n");
                }
            }
        }
    }
}

fn render_markdown(doc: &Doc) -> String {
    let mut out = String::new();
    out.push_str("# Chain of custody report: ");
    md_text(&doc.incident, &mut out);
    out.push_str("\n\n**");
    md_text(&doc.title, &mut out);
    out.push_str("**\n\n");
    md_blocks(&[Block::Facts(doc.facts.clone())], &mut out);
    for (i, s) in doc.sections.iter().enumerate() {
        let _ = write!(out, "## {}. {}\n\n", i + 1, s.title);
        md_blocks(&s.blocks, &mut out);
    }
    out.push_str("---\n\n");
    let _ = write!(out, "## {}\n\n", doc.footer.title);
    md_blocks(&doc.footer.blocks, &mut out);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

// ------------------------------------------------------------ HTML

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Escaped text, line breaks as `<br>`.
fn esc_text(s: &str, out: &mut String) {
    for (i, part) in s.split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        esc(part, out);
    }
}

fn html_line(l: &Line, out: &mut String) {
    for span in &l.0 {
        match span {
            Span::Text(s) => esc_text(s, out),
            Span::Strong(s) => {
                out.push_str("<strong>");
                esc_text(s, out);
                out.push_str("</strong>");
            }
            Span::Code(s) => {
                out.push_str("<code>");
                esc(s, out);
                out.push_str("</code>");
            }
            Span::Hash(s) => {
                out.push_str("<code class=\"hash\">");
                esc(s, out);
                out.push_str("</code>");
            }
            Span::Path(s) => {
                out.push_str("<code class=\"path\">");
                for (i, part) in s.split('/').enumerate() {
                    if i > 0 {
                        out.push_str("/<wbr>");
                    }
                    esc(part, out);
                }
                out.push_str("</code>");
            }
            Span::Time(t) => {
                out.push_str("<time datetime=\"");
                esc(t.as_str(), out);
                out.push_str("\">");
                // The offset stays with the time of day when a line breaks.
                let shown = human_time(t);
                match shown.rsplit_once(' ') {
                    Some((day_time, offset)) => {
                        esc(day_time, out);
                        out.push('\u{a0}');
                        esc(offset, out);
                    }
                    None => esc(&shown, out),
                }
                out.push_str("</time>");
            }
            Span::Badge(tone, s) => {
                let _ = write!(out, "<span class=\"badge {}\">", tone.class());
                esc(s, out);
                out.push_str("</span>");
            }
            Span::Muted(s) => {
                out.push_str("<span class=\"muted\">");
                esc_text(s, out);
                out.push_str("</span>");
            }
            Span::Break => out.push_str("<br>"),
        }
    }
}

fn html_facts(facts: &[(String, Line)], out: &mut String) {
    out.push_str("<dl class=\"facts\">\n");
    for (k, v) in facts {
        out.push_str("<dt>");
        esc(k, out);
        out.push_str("</dt><dd>");
        html_line(v, out);
        out.push_str("</dd>\n");
    }
    out.push_str("</dl>\n");
}

fn html_blocks(blocks: &[Block], out: &mut String) {
    for b in blocks {
        match b {
            Block::Para(l) => {
                out.push_str("<p>");
                html_line(l, out);
                out.push_str("</p>\n");
            }
            Block::Facts(f) => html_facts(f, out),
            Block::Sub(title) => {
                out.push_str("<h3>");
                esc(title, out);
                out.push_str("</h3>\n");
            }
            Block::Table(t) => {
                let _ = write!(
                    out,
                    "<div class=\"table\"><table class=\"{}\">\n<thead><tr>",
                    t.class
                );
                let numeric: Vec<bool> = t.head.iter().map(|h| h.starts_with('#')).collect();
                for h in t.head {
                    if let Some(h) = h.strip_prefix('#') {
                        out.push_str("<th class=\"num\" scope=\"col\">");
                        esc(h, out);
                    } else {
                        out.push_str("<th scope=\"col\">");
                        esc(h, out);
                    }
                    out.push_str("</th>");
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in &t.rows {
                    out.push_str(if r.alert {
                        "<tr class=\"alert\">"
                    } else {
                        "<tr>"
                    });
                    for (i, c) in r.cells.iter().enumerate() {
                        out.push_str(if numeric.get(i).copied().unwrap_or(false) {
                            "<td class=\"num\">"
                        } else {
                            "<td>"
                        });
                        html_line(c, out);
                        out.push_str("</td>");
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody></table></div>\n");
            }
            Block::Steps(steps) => {
                out.push_str("<ol class=\"steps\">\n");
                for (l, cmd) in steps {
                    out.push_str("<li><p>");
                    html_line(l, out);
                    out.push_str("</p><pre><code>");
                    esc(cmd, out);
                    out.push_str("</code></pre></li>\n");
                }
                out.push_str("</ol>\n");
            }
        }
    }
}

const CSS: &str = r#"
:root {
  --ink: #1c1e21; --muted: #5b6168; --rule: #d5d8dc; --accent: #1f3a5f; --paper: #fff;
  --good: #14632c; --good-bg: #e2f3e6; --warn: #7a4d00; --warn-bg: #fff1c7;
  --bad: #9f1c1c; --bad-bg: #fde7e7; --plain: #454b52; --plain-bg: #eef0f2;
}
* { box-sizing: border-box; }
html { background: #eeece6; }
body {
  margin: 2rem auto; max-width: 72rem; padding: 3rem 3.5rem 2.5rem;
  background: var(--paper); color: var(--ink);
  font: 15px/1.55 "Iowan Old Style", "Palatino Linotype", Palatino, "Book Antiqua", Georgia, "DejaVu Serif", serif;
  box-shadow: 0 1px 3px rgba(0,0,0,.12), 0 8px 24px rgba(0,0,0,.06);
}
h1, h2, h3, nav, table, .kicker, dl.facts dt, .badge {
  font-family: "Helvetica Neue", Helvetica, Arial, "Liberation Sans", "DejaVu Sans", sans-serif;
}
header { border-bottom: 3px double var(--ink); padding-bottom: 1rem; margin-bottom: 1.5rem; }
.kicker { margin: 0 0 .35rem; font-size: .72rem; letter-spacing: .16em; text-transform: uppercase; color: var(--muted); }
h1 { margin: 0 0 1.1rem; font-size: 1.85rem; line-height: 1.2; font-weight: 700; }
h1 .id { display: block; font-size: 1rem; font-weight: 600; color: var(--accent); letter-spacing: .02em; margin-bottom: .2rem; }
h2 { margin: 2.4rem 0 .8rem; padding-bottom: .3rem; border-bottom: 1px solid var(--rule); font-size: 1.3rem; color: var(--accent); break-after: avoid; }
h2 .n { color: var(--muted); font-weight: 400; margin-right: .55rem; }
h3 { margin: 1.5rem 0 .5rem; font-size: 1rem; break-after: avoid; }
p { margin: .5rem 0 .9rem; max-width: 48rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.4rem; margin: .5rem 0 1rem; }
dl.facts dt { color: var(--muted); font-size: .82em; padding-top: .18rem; }
dl.facts dd { margin: 0; }
nav { font-size: .82rem; margin-top: 1rem; }
nav ol { display: flex; flex-wrap: wrap; gap: .2rem 1.4rem; margin: 0; padding: 0; list-style: none; counter-reset: toc; }
nav li { counter-increment: toc; }
nav li::before { content: counter(toc) ". "; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; }
.table { overflow-x: auto; margin: .5rem 0 1.2rem; }
table { width: 100%; border-collapse: collapse; font-size: .84em; line-height: 1.4; }
thead th { text-align: left; font-weight: 600; padding: .4rem .55rem; border-bottom: 1.5px solid var(--ink); vertical-align: bottom; white-space: nowrap; }
tbody td { padding: .4rem .55rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
tbody tr:last-child td { border-bottom: 1px solid var(--ink); }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.alert td { background: var(--bad-bg); }
tr.alert td:first-child { box-shadow: inset 3px 0 0 var(--bad); }
code { font-family: "DejaVu Sans Mono", "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: .9em; overflow-wrap: break-word; }
td code { white-space: nowrap; }
td code.path { white-space: normal; }
code.hash, td code.hash { white-space: normal; word-break: break-all; font-size: .82em; }
td.num { white-space: nowrap; }
table.digests td:first-child { min-width: 11rem; }
table.digests td:nth-child(4), table.digests td:nth-child(5) { min-width: 12rem; }
table.timeline td:nth-child(3) { min-width: 8.5rem; }
table.timeline td:nth-child(5) { min-width: 16rem; }
table.clocks td:first-child { min-width: 14rem; }
time { white-space: nowrap; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); font-size: .92em; }
.badge { display: inline-block; padding: .04rem .5rem; border-radius: .75rem; border: 1px solid; font-size: .86em; font-weight: 600; line-height: 1.45; white-space: nowrap; }
.badge.good { color: var(--good); background: var(--good-bg); border-color: #9fd3ad; }
.badge.warn { color: var(--warn); background: var(--warn-bg); border-color: #e9cf7d; }
.badge.bad { color: var(--bad); background: var(--bad-bg); border-color: #eba3a3; }
.badge.plain { color: var(--plain); background: var(--plain-bg); border-color: #cdd1d6; }
footer { margin-top: 2.8rem; padding-top: .8rem; border-top: 3px double var(--ink); font-size: .94em; }
footer h2 { margin-top: .6rem; border: 0; }
ol.steps { padding-left: 1.3rem; }
ol.steps li { margin-bottom: .8rem; }
ol.steps p { margin: 0 0 .35rem; }
pre { margin: 0; padding: .55rem .8rem; background: #f5f6f7; border: 1px solid var(--rule); border-radius: 3px; font-size: .84em; white-space: pre-wrap; overflow-wrap: anywhere; }
pre code { font-size: 1em; }
@page { size: A4; margin: 16mm 13mm 18mm; }
@media print {
  html { background: none; }
  body { margin: 0; padding: 0; max-width: none; box-shadow: none; font-size: 9.5pt; }
  nav { display: none; }
  .table { overflow: visible; }
  td { min-width: 0 !important; }
  time { white-space: normal; }
  thead { display: table-header-group; }
  tr, .badge, pre, dl.facts > * { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

fn render_html(doc: &Doc) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // No script, no external resource, whatever the log holds.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<meta name=\"generator\" content=\"custody {}\">",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("<title>");
    esc(&doc.incident, &mut out);
    out.push_str(" — ");
    esc(&doc.title, &mut out);
    out.push_str(" · chain of custody report</title>\n<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n<header>\n");
    out.push_str("<p class=\"kicker\">Chain of custody report</p>\n<h1><span class=\"id\">");
    esc(&doc.incident, &mut out);
    out.push_str("</span>");
    esc(&doc.title, &mut out);
    out.push_str("</h1>\n");
    html_facts(&doc.facts, &mut out);
    out.push_str("<nav aria-label=\"Contents\"><ol>");
    for s in doc.sections.iter().chain([&doc.footer]) {
        let _ = write!(out, "<li><a href=\"#{}\">", s.id);
        esc(s.title, &mut out);
        out.push_str("</a></li>");
    }
    out.push_str("</ol></nav>\n</header>\n<main>\n");
    for (i, s) in doc.sections.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2><span class=\"n\">{}</span>",
            s.id,
            i + 1
        );
        esc(s.title, &mut out);
        out.push_str("</h2>\n");
        html_blocks(&s.blocks, &mut out);
        out.push_str("</section>\n");
    }
    let _ = write!(out, "</main>\n<footer id=\"{}\">\n<h2>", doc.footer.id);
    esc(doc.footer.title, &mut out);
    out.push_str("</h2>\n");
    html_blocks(&doc.footer.blocks, &mut out);
    out.push_str("</footer>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Book;
    use crate::segment::{Hold, IncidentDeclared, Note, ReportFiled, Segment, Tool};

    const EVIL: &str = "Forged <script>alert(1)</script> | tokens & keys";

    fn t(s: &str) -> Time {
        Time::parse(s).unwrap()
    }

    fn actor(name: &str, as_reason: Option<&str>) -> Actor {
        Actor {
            name: name.into(),
            os_user: "ana".into(),
            as_reason: as_reason.map(Into::into),
            host: "ir-01".into(),
            tool: Tool::this(),
        }
    }

    fn seg(seq: u64, entries: Vec<Entry>) -> Segment {
        Segment {
            format: 1,
            vault: None,
            seq,
            prev: None,
            sealed_at: t("2025-11-20T00:00:00+09:00"),
            entries,
        }
    }

    /// The worked example of FORMAT.md §9.10: discovered 16:00, reported
    /// 29h35m after the 24-hour deadline.
    fn book() -> Book {
        let mut book = Book::default();
        book.absorb(
            1,
            &seg(
                1,
                vec![Entry::IncidentDeclared(IncidentDeclared {
                    incident: "INC-1".into(),
                    title: EVIL.into(),
                    severity: Some("sev1".into()),
                    discovered_at: Some(t("2025-11-17T16:00:00+09:00")),
                    declared_at: t("2025-11-17T18:00:00+09:00"),
                    declared_by: "ana".into(),
                    host: "ir-01".into(),
                    tool: Tool::this(),
                    description: Some("line one\nline <two>".into()),
                    detection_source: None,
                    regimes: vec!["kr-network-act".into()],
                })],
            ),
        );
        book.absorb(
            2,
            &seg(
                2,
                vec![
                    Entry::HoldPlaced(Hold {
                        incident: "INC-1".into(),
                        hold: "litigation".into(),
                        reason: "court | order".into(),
                        authorisation: "legal".into(),
                        at: t("2025-11-18T09:00:00+09:00"),
                        actor: actor("DPO", Some("on behalf of the DPO")),
                    }),
                    Entry::Note(Note {
                        incident: "INC-1".into(),
                        text: "saw <b>bold</b> | pipe".into(),
                        at: t("2025-11-18T10:00:00+09:00"),
                        actor: actor("ana", None),
                    }),
                    Entry::ReportFiled(ReportFiled {
                        incident: "INC-1".into(),
                        regime: "kr-network-act".into(),
                        kind: "report".into(),
                        authority: "KISA".into(),
                        filed_at: t("2025-11-19T21:35:00+09:00"),
                        reference: "K-77".into(),
                        channel: "portal".into(),
                        late_reason: None,
                        at: t("2025-11-19T21:40:00+09:00"),
                        actor: actor("ana", None),
                    }),
                ],
            ),
        );
        book
    }

    fn render(f: fn(&Context<'_>) -> String) -> String {
        let book = book();
        let inc = book.get("INC-1").unwrap();
        let now = t("2025-11-20T00:00:00+09:00");
        let clocks = inc.clocks(&now).unwrap();
        let coverage = serde_json::json!([
            {"source": "auth", "kind": "files", "complete": 1, "partial": 0, "failed": 1, "bytes": 2048,
             "failures": [{"path": "/var/log/gone|<i>", "status": "failed", "why": "not found"}],
             "first": "2025-04-01T00:00:00Z", "last": null,
             "gaps": [{"after": "a", "before": "b", "from": "2025-05-01T00:00:00Z", "until": "2025-05-02T00:00:00Z"}],
             "unknown": ["x.bin"], "before_scope": ["2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z"], "after_scope": null}
        ]);
        let by = actor("ana", None);
        f(&Context {
            vault_id: Sha256Digest::of(b"vault"),
            origin: "test/vault",
            incident: inc,
            vault_events: &[],
            clocks: &clocks,
            coverage: &coverage,
            checkpoint: CheckpointRef {
                size: 3,
                root: Sha256Digest::of(b"root"),
            },
            generated_at: now.clone(),
            generated_by: &by,
        })
    }

    #[test]
    fn html_escapes_every_string_from_the_log() {
        let h = render(html);
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<b>"), "{h}");
        assert!(!h.contains("<i>"), "{h}");
        assert!(h.contains("Forged &lt;script&gt;alert(1)&lt;/script&gt; | tokens &amp; keys"));
        assert!(h.contains("saw &lt;b&gt;bold&lt;/b&gt; | pipe"));
        assert!(h.contains("line one<br>line &lt;two&gt;"));
        // Self-contained: nothing fetched, nothing run.
        assert!(!h.contains("src=") && !h.contains("<link") && !h.contains("url("));
    }

    #[test]
    fn markdown_escapes_markup_and_table_cells() {
        let m = render(markdown);
        // Every `<` is escaped, in a code span, or one of our line breaks:
        // no HTML from the log reaches a Markdown renderer.
        for line in m.lines() {
            for (i, _) in line.match_indices('<') {
                let in_code = line[..i].matches('`').count() % 2 == 1;
                assert!(
                    line[..i].ends_with('\\') || line[i..].starts_with("<br>") || in_code,
                    "unescaped < in {line}"
                );
            }
        }
        assert!(m.contains(r"Forged \<script\>alert(1)\</script\> \| tokens \& keys"));
        // In a table cell: the pipe escaped, the code span's pipe too.
        assert!(m.contains(r"saw \<b\>bold\</b\> \| pipe"), "{m}");
        assert!(m.contains(r"`/var/log/gone\|<i>`"), "{m}");
        // A line break never ends a table row.
        for line in m.lines().filter(|l| l.starts_with('|')) {
            assert!(line.ends_with('|'), "{line}");
        }
    }

    #[test]
    fn every_section_is_present_in_order() {
        let h = render(html);
        let mut at = 0;
        for id in [
            "summary",
            "timeline",
            "coverage",
            "clocks",
            "verification",
            "digests",
        ] {
            let found = h[at..]
                .find(&format!("<section id=\"{id}\">"))
                .unwrap_or_else(|| panic!("no section {id}"));
            at += found;
        }
        assert!(h.contains("<footer id=\"check\">"));
        assert!(h.contains("@media print"));
        let m = render(markdown);
        let mut at = 0;
        for title in [
            "## 1. Summary",
            "## 2. Timeline",
            "## 3. Preservation and coverage",
            "## 4. Regulatory clocks and filings",
            "## 5. Verification",
            "## 6. Evidence digests",
            "## How to check this report",
        ] {
            at += m[at..].find(title).unwrap_or_else(|| panic!("no {title}"));
        }
        assert!(m.contains("custody verify-manifest") && m.contains("sha256sum"));
    }

    #[test]
    fn a_late_clock_shows_late_by_and_is_highlighted() {
        let h = render(html);
        assert!(
            h.contains("<span class=\"badge bad\">late by 29h35m</span>"),
            "{h}"
        );
        let clocks = &h[h.find("<section id=\"clocks\">").unwrap()..];
        assert!(clocks.contains(
            "<tr class=\"alert\"><td><strong>Network Act initial report</strong><br><code>kr-network-act</code>"
        ));
        let m = render(markdown);
        assert!(m.contains("**late by 29h35m**"), "{m}");
    }

    #[test]
    fn actors_acting_as_another_say_who_and_why() {
        let m = render(markdown);
        assert!(m.contains("ana as DPO because on behalf of the DPO"), "{m}");
    }

    #[test]
    fn the_timeline_is_in_time_order() {
        let m = render(markdown);
        let tl = &m[m.find("## 2. Timeline").unwrap()..m.find("## 3.").unwrap()];
        let order = [
            "Incident discovered",
            "Incident declared",
            "Legal hold placed",
            "**Note**",
            "Report filed",
        ];
        let mut at = 0;
        for what in order {
            at += tl[at..]
                .find(what)
                .unwrap_or_else(|| panic!("{what} out of order:\n{tl}"));
        }
        assert!(tl.contains("recorded 2025-11-19 21:40:00 +09:00"), "{tl}");
    }

    #[test]
    fn coverage_renders_the_optional_fields_and_tolerates_their_absence() {
        let m = render(markdown);
        assert!(m.contains("First record") && m.contains("Gaps in the records"));
        assert!(m.contains("record times unknown for:"), "{m}");
        assert!(m.contains("before the scope"), "{m}");
        assert!(m.contains("not found"));

        let book = book();
        let inc = book.get("INC-1").unwrap();
        let coverage = serde_json::json!([{"source": "auth", "kind": "files", "complete": 2,
            "partial": 0, "failed": 0, "bytes": 10, "failures": []}]);
        let by = actor("ana", None);
        let m = markdown(&Context {
            vault_id: Sha256Digest::of(b"vault"),
            origin: "o",
            incident: inc,
            vault_events: &[],
            clocks: &[],
            coverage: &coverage,
            checkpoint: CheckpointRef {
                size: 3,
                root: Sha256Digest::of(b"root"),
            },
            generated_at: t("2025-11-20T00:00:00Z"),
            generated_by: &by,
        });
        assert!(!m.contains("First record") && !m.contains("Gaps in the records"));
        assert!(m.contains("None: every artifact was captured complete."));
        assert!(m.contains("no regime was named"));
    }

    #[test]
    fn times_are_shown_with_their_offset() {
        assert_eq!(
            human_time(&t("2025-11-17T16:00:00+09:00")),
            "2025-11-17 16:00:00 +09:00"
        );
        assert_eq!(
            human_time(&t("2025-11-17T07:00:00.123456Z")),
            "2025-11-17 07:00:00 UTC"
        );
    }

    #[test]
    fn code_spans_hold_backticks() {
        let mut s = String::new();
        md_code("a`b", false, &mut s);
        assert_eq!(s, "``a`b``");
        let mut s = String::new();
        md_code("`x", true, &mut s);
        assert_eq!(s, "`` `x ``");
    }
}
