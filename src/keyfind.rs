//! Key snapshots and the findings drawn from them (FORMAT.md §9.12):
//! which keys a preservation run found, what changed between two runs, and
//! what in them points at the cause of an incident.
//!
//! A snapshot is the `key_file` entries of one run. Findings are computed
//! when asked, from what the log says, never stored: a new rule applies to
//! old evidence.
//!
//! Not here: reading key files (`keymaterial`, `sources`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::keymaterial::{KeyRecord, Part};
use crate::segment::{Entry, KeyFile, Segment};
use crate::time::Time;

/// The key files of one preservation run.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The incident.
    pub incident: String,
    /// The run.
    pub run: String,
    /// When the run started.
    pub taken_at: Time,
    /// When the incident was discovered, if the declaration says.
    pub discovered_at: Option<Time>,
    /// The files, in log order, with the segment each is in.
    pub files: Vec<(u64, KeyFile)>,
}

impl Snapshot {
    /// Every key with the file it is in.
    pub fn keys(&self) -> impl Iterator<Item = (&KeyFile, &KeyRecord)> {
        self.files
            .iter()
            .flat_map(|(_, f)| f.keys.iter().map(move |k| (f, k)))
    }
}

/// Collects snapshots from the log, one segment at a time (feed it to
/// `Vault::open_with`).
#[derive(Debug, Default)]
pub struct Snapshots {
    runs: Vec<Snapshot>,
    started: BTreeMap<String, Time>,
    discovered: BTreeMap<String, Time>,
}

impl Snapshots {
    /// Takes in one segment.
    pub fn absorb(&mut self, seq: u64, seg: &Segment) {
        for e in &seg.entries {
            match e {
                Entry::IncidentDeclared(d) => {
                    let at = d
                        .discovered_at
                        .clone()
                        .unwrap_or_else(|| d.declared_at.clone());
                    self.discovered.entry(d.incident.clone()).or_insert(at);
                }
                Entry::PreservationStarted(p) => {
                    self.started.insert(p.run.clone(), p.started_at.clone());
                }
                Entry::KeyFile(k) => {
                    let i = match self.runs.iter().position(|s| s.run == k.run) {
                        Some(i) => i,
                        None => {
                            self.runs.push(Snapshot {
                                incident: k.incident.clone(),
                                run: k.run.clone(),
                                taken_at: self
                                    .started
                                    .get(&k.run)
                                    .cloned()
                                    .unwrap_or_else(|| k.started_at.clone()),
                                discovered_at: self.discovered.get(&k.incident).cloned(),
                                files: Vec::new(),
                            });
                            self.runs.len() - 1
                        }
                    };
                    self.runs[i].files.push((seq, (**k).clone()));
                }
                _ => {}
            }
        }
    }

    /// Every snapshot, oldest first.
    pub fn all(&self) -> &[Snapshot] {
        &self.runs
    }

    /// The snapshot named by a run id, or the latest of an incident.
    pub fn find(&self, id: &str) -> Option<&Snapshot> {
        self.runs
            .iter()
            .find(|s| s.run == id)
            .or_else(|| self.runs.iter().rev().find(|s| s.incident == id))
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A key older than the maximum age, with no newer key seen in its place.
    StaleKey,
    /// The same private key in more than one place.
    PrivateKeyCopies,
    /// A key published in a JWKS whose private key is in none of the sources.
    PublishedWithoutPrivate,
    /// A private key whose public key no JWKS of the snapshot publishes.
    PrivateNotPublished,
    /// A certificate past its end of validity at snapshot time.
    CertificateExpired,
    /// A certificate before its start of validity at snapshot time.
    CertificateNotYetValid,
    /// A key file modified after the incident was discovered.
    ModifiedAfterDiscovery,
}

impl FindingKind {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StaleKey => "stale_key",
            Self::PrivateKeyCopies => "private_key_copies",
            Self::PublishedWithoutPrivate => "published_without_private",
            Self::PrivateNotPublished => "private_not_published",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotYetValid => "certificate_not_yet_valid",
            Self::ModifiedAfterDiscovery => "modified_after_discovery",
        }
    }
}

/// One finding, with the evidence for it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// The key, as a label (type, size, kid or comment).
    pub key: Option<String>,
    /// The key's identity (see [`KeyRecord::identity`]).
    pub identity: Option<String>,
    /// Where (host:path), in log order.
    pub places: Vec<String>,
    /// One sentence.
    pub message: String,
    /// The facts it rests on, each from the log.
    pub evidence: Vec<String>,
}

/// Which findings to draw.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Keys older than this many days are stale.
    pub max_age_days: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Self { max_age_days: 365 }
    }
}

fn place(f: &KeyFile) -> String {
    format!("{}:{}", f.host, f.path)
}

/// A place with its source, so that two sources naming one path stay two.
fn source_place(f: &KeyFile) -> String {
    format!("{} [{}]", place(f), f.source)
}

fn days_between(a: &Time, b: &Time) -> i64 {
    (b.timestamp().as_second() - a.timestamp().as_second()).div_euclid(86_400)
}

/// The findings of one snapshot; `all` (every snapshot in the vault) gives
/// the first time each key was preserved.
pub fn findings(snap: &Snapshot, all: &[Snapshot], rules: Rules) -> Vec<Finding> {
    let mut out = Vec::new();
    // Keys grouped by identity, in first-seen order.
    let mut groups: Vec<(String, Vec<(&KeyFile, &KeyRecord)>)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (f, k) in snap.keys() {
        let Some(id) = k.identity() else { continue };
        match index.get(&id) {
            Some(&i) => groups[i].1.push((f, k)),
            None => {
                index.insert(id.clone(), groups.len());
                groups.push((id, vec![(f, k)]));
            }
        }
    }
    // The first snapshot (oldest first) that holds each key.
    let mut first_seen: BTreeMap<String, &Snapshot> = BTreeMap::new();
    for s in all {
        for (_, k) in s.keys() {
            if let Some(id) = k.identity() {
                if index.contains_key(&id) {
                    first_seen.entry(id).or_insert(s);
                }
            }
        }
    }
    let published: BTreeSet<&str> = groups
        .iter()
        .filter(|(_, v)| {
            v.iter()
                .any(|(_, k)| k.part == Part::Public && k.container.starts_with("jwk"))
        })
        .map(|(id, _)| id.as_str())
        .collect();
    let any_jwks = !published.is_empty();
    for (id, members) in &groups {
        let (_, first) = members[0];
        let label = Some(first.label());
        let finding = |kind, message: String, evidence: Vec<String>, places: Vec<String>| Finding {
            kind,
            key: label.clone(),
            identity: Some(id.clone()),
            places,
            message,
            evidence,
        };
        let all_places: Vec<String> = members.iter().map(|(f, _)| place(f)).collect();

        // Stale: the oldest evidence of the key against the snapshot time.
        let mut oldest: Option<(Time, String)> = None;
        let mut consider = |t: &Time, why: String| {
            if oldest
                .as_ref()
                .is_none_or(|(o, _)| t.timestamp() < o.timestamp())
            {
                oldest = Some((t.clone(), why));
            }
        };
        for (f, k) in members {
            if let Some(m) = &f.file {
                consider(&m.mtime, format!("{} last modified {}", place(f), m.mtime));
            }
            if let Some(c) = &k.certificate {
                consider(
                    &c.not_before,
                    format!("certificate valid from {}", c.not_before),
                );
            }
        }
        if let Some(s) = first_seen.get(id) {
            consider(
                &s.taken_at,
                format!(
                    "first preserved in incident {} (run {}) at {}",
                    s.incident,
                    s.run.get(..8).unwrap_or(&s.run),
                    s.taken_at
                ),
            );
        }
        if let Some((t, why)) = oldest {
            let age = days_between(&t, &snap.taken_at);
            if age > i64::try_from(rules.max_age_days).unwrap_or(i64::MAX) {
                out.push(finding(
                    FindingKind::StaleKey,
                    format!(
                        "the key is at least {age} days old at the snapshot, beyond the maximum of {} days: rotate it",
                        rules.max_age_days
                    ),
                    vec![why],
                    all_places.clone(),
                ));
            }
        }

        // The same private key in several places.
        let secret_places: BTreeSet<String> = members
            .iter()
            .filter(|(_, k)| k.part.is_secret())
            .map(|(f, _)| place(f))
            .collect();
        if secret_places.len() > 1 {
            out.push(finding(
                FindingKind::PrivateKeyCopies,
                format!("the same private key is in {} places", secret_places.len()),
                members
                    .iter()
                    .filter(|(_, k)| k.part.is_secret())
                    .map(|(f, k)| {
                        format!(
                            "{} ({}, commitment {})",
                            place(f),
                            k.container,
                            k.commitment.map_or_else(|| "none".into(), |c| c.short())
                        )
                    })
                    .collect(),
                secret_places.into_iter().collect(),
            ));
        }

        // Published and private halves.
        let has_private = members.iter().any(|(_, k)| k.part.is_secret());
        // An encrypted private key (OpenSSH shows its public part) counts
        // as held.
        let held = has_private || members.iter().any(|(_, k)| k.part == Part::Encrypted);
        if published.contains(id.as_str()) && !held {
            out.push(finding(
                FindingKind::PublishedWithoutPrivate,
                "a JWKS publishes this key but none of the sources holds its private key".into(),
                members
                    .iter()
                    .map(|(f, k)| format!("{} ({})", place(f), k.container))
                    .collect(),
                all_places.clone(),
            ));
        }
        if any_jwks
            && has_private
            && !published.contains(id.as_str())
            && first.spki_sha256.is_some()
        {
            out.push(finding(
                FindingKind::PrivateNotPublished,
                "a private key whose public key no JWKS of the snapshot publishes".into(),
                members
                    .iter()
                    .map(|(f, k)| format!("{} ({})", place(f), k.container))
                    .collect(),
                all_places.clone(),
            ));
        }

        // Certificates.
        for (f, k) in members {
            let Some(c) = &k.certificate else { continue };
            let at = snap.taken_at.timestamp();
            let (kind, message) = if c.not_after.timestamp() < at {
                (
                    FindingKind::CertificateExpired,
                    format!(
                        "certificate {} expired {} before the snapshot",
                        c.subject, c.not_after
                    ),
                )
            } else if c.not_before.timestamp() > at {
                (
                    FindingKind::CertificateNotYetValid,
                    format!(
                        "certificate {} is not valid until {}",
                        c.subject, c.not_before
                    ),
                )
            } else {
                continue;
            };
            out.push(finding(
                kind,
                message,
                vec![format!(
                    "{}: valid {} to {}, serial {}",
                    place(f),
                    c.not_before,
                    c.not_after,
                    c.serial
                )],
                vec![place(f)],
            ));
        }
    }

    // Files changed after discovery (once per file, whatever it holds).
    if let Some(d) = &snap.discovered_at {
        for (_, f) in &snap.files {
            let Some(m) = &f.file else { continue };
            // mtime, not ctime: ctime also moves on chmod, chown and a
            // copy, so a freshly copied key directory would flag every file.
            if m.mtime.timestamp() > d.timestamp() {
                let key = f.keys.first().map(KeyRecord::label);
                out.push(Finding {
                    kind: FindingKind::ModifiedAfterDiscovery,
                    key,
                    identity: f.keys.first().and_then(KeyRecord::identity),
                    places: vec![place(f)],
                    message: format!("the file changed after the incident was discovered ({d})"),
                    evidence: vec![format!(
                        "last modified {} (mtime); inode changed {} (ctime)",
                        m.mtime, m.ctime
                    )],
                });
            }
        }
    }
    out
}

/// What changed between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    /// Keys only in the second snapshot: (identity, label, places).
    pub added: Vec<(String, String, Vec<String>)>,
    /// Keys only in the first.
    pub removed: Vec<(String, String, Vec<String>)>,
    /// Keys in both whose places changed: (identity, label, before, after).
    pub moved: Vec<(String, String, Vec<String>, Vec<String>)>,
    /// Places that held one key before and another after: (place, before
    /// label, after label).
    pub replaced: Vec<(String, String, String)>,
    /// Places whose file bytes changed while holding the same keys (every
    /// one with a fingerprint or commitment).
    pub rewritten: Vec<String>,
}

fn key_places(s: &Snapshot) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut m: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for (f, k) in s.keys() {
        if let Some(id) = k.identity() {
            m.entry(id)
                .or_insert_with(|| (k.label(), BTreeSet::new()))
                .1
                .insert(place(f));
        }
    }
    m
}

fn by_place(s: &Snapshot) -> BTreeMap<String, &KeyFile> {
    s.files.iter().map(|(_, f)| (source_place(f), f)).collect()
}

/// Compares two snapshots by key identity and by place.
pub fn diff(a: &Snapshot, b: &Snapshot) -> Diff {
    let (ka, kb) = (key_places(a), key_places(b));
    let mut d = Diff::default();
    for (id, (label, places)) in &kb {
        match ka.get(id) {
            None => d
                .added
                .push((id.clone(), label.clone(), places.iter().cloned().collect())),
            Some((_, before)) if before != places => d.moved.push((
                id.clone(),
                label.clone(),
                before.iter().cloned().collect(),
                places.iter().cloned().collect(),
            )),
            Some(_) => {}
        }
    }
    for (id, (label, places)) in &ka {
        if !kb.contains_key(id) {
            d.removed
                .push((id.clone(), label.clone(), places.iter().cloned().collect()));
        }
    }
    let (pa, pb) = (by_place(a), by_place(b));
    for (p, fa) in &pa {
        let Some(fb) = pb.get(p) else { continue };
        let ids = |f: &KeyFile| -> BTreeSet<String> {
            f.keys.iter().filter_map(KeyRecord::identity).collect()
        };
        let unnamed = |f: &KeyFile| f.keys.iter().any(|k| k.identity().is_none());
        if ids(fa) != ids(fb) || (fa.sha256 != fb.sha256 && (unnamed(fa) || unnamed(fb))) {
            let labels = |f: &KeyFile| {
                let l: Vec<String> = f.keys.iter().map(KeyRecord::label).collect();
                if l.is_empty() {
                    "(no key)".to_string()
                } else {
                    l.join(", ")
                }
            };
            d.replaced.push((place(fa), labels(fa), labels(fb)));
        } else if fa.sha256 != fb.sha256 {
            d.rewritten.push(place(fa));
        }
    }
    d
}
