//! An incident's record as CASE/UCO JSON-LD (`custody export-case`), for
//! tools that speak the Cyber-investigation Analysis Standard Expression
//! (CASE 1.5.0, on UCO 1.5.0: the ontology `case_validate` of case-utils
//! 0.18 checks against by default).
//!
//! This is an export, not the vault format: it is derived from the log
//! alone and carries no content, only what the log says about it.
//!
//! | custody (FORMAT.md §9) | CASE/UCO |
//! |------------------------|----------|
//! | `incident_declared` | `investigation:Investigation` (`investigationForm` `incident`, name = the id, description = title and description, `investigationStatus` = the state, `core:object` = every action, record and authorization below) |
//! | `artifact` | `observable:ObservableObject` with a `FileFacet` (files, links: `fileName`, `filePath`, times; `sizeInBytes` when complete) and a `ContentDataFacet` (files, command output: `sizeInBytes`, a `types:Hash` SHA256), plus an `investigation:ProvenanceRecord` (`exhibitNumber` `INCIDENT/run8/n`, `core:object` = the observable; status, source, capture times and BLAKE3 in descriptions) |
//! | `preservation_started` (+ `preservation_finished`) | `investigation:InvestigativeAction` "collected via declare": performer = `by`, instrument = the tool, environment = the host, start/end time, `result` = the run's provenance records, `actionStatus` `Complete/Finish` (or `Unknown` when the log has no end) |
//! | `custody_event` | `investigation:InvestigativeAction` "ACTION via COMMAND": performer = the actor, participants = the OS user behind `--as`, the recipient and the custodians handed between, instrument = the tool, environment = the host, `startTime` = `at`, `object` = the provenance records of its subjects (the investigation when it read the whole record); purpose, recipient, output, from/to, result and checkpoint in descriptions |
//! | `preservation_order` | `investigation:Authorization` (`authorizationType` `preservation order`, `authorizationIdentifier` = reference, `startTime` = `received_at`, scope in descriptions), linked by `relevantAuthorization`, and a `core:Relationship` `Issued_By` to an identity for the authority |
//! | names (`by`, actors, authorities, custodians) | `identity:Identity`, one per name |
//! | `tool` | `tool:Tool` (name, version) |
//! | `host` | `observable:Device` named by the host |
//!
//! Not mapped: holds, filings, facts, notes and manifests (they stay in
//! `custody incident status` and `custody manifest`). Only SHA-256 is a
//! `types:Hash`: UCO's hash-method vocabulary has no BLAKE3, and a value
//! outside it makes `case_validate` report non-conformance, so BLAKE3 is
//! carried in the provenance record's description.
//!
//! Node ids are `kb:` + a class slug + a UUID-shaped name derived with
//! SHA-256 from the vault id and the entry's place in the log (segment and
//! index within the segment, counted over the incident's entries) or, for
//! identities, tools and hosts, their name. The same vault always exports
//! the same graph; the UUID's version bits say 4 only because UCO's
//! identifier advisory accepts versions 0 to 5 (the bits are a hash, not
//! random). Every string from the log is a JSON-LD value, never a key or an
//! id, so no log content changes the graph's structure.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::hash::Sha256Digest;
use crate::incident::Incident;
use crate::segment::{
    Action, Actor, Artifact, CustodyEvent, Entry, ItemKind, PreservationOrder, Status, Tool,
};
use crate::time::Time;

/// The CASE version the export is written for.
pub const CASE_VERSION: &str = "1.5.0";

/// The JSON-LD prefix of every node id.
pub const KB_PREFIX: &str = "urn:custody:";

/// Domain separation for node ids.
const ID_DOMAIN: &str = "custody export-case node id v1";

/// The `@context`: the CASE and UCO namespaces used, and `kb:` for nodes.
pub fn context() -> Value {
    json!({
        "kb": KB_PREFIX,
        "case-investigation": "https://ontology.caseontology.org/case/investigation/",
        "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
        "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
        "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
        "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
        "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
        "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
        "xsd": "http://www.w3.org/2001/XMLSchema#"
    })
}

/// A node id: `kb:CLASS-UUID`, the UUID derived from the vault id, the
/// class and `key`.
pub fn node_id(vault: &Sha256Digest, class: &str, key: &[&str]) -> String {
    let mut buf = Vec::new();
    let vault_hex = vault.to_hex();
    for part in [ID_DOMAIN, vault_hex.as_str(), class].iter().chain(key) {
        buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    let d = Sha256Digest::of(&buf).0;
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "kb:{class}-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn id_ref(id: &str) -> Value {
    json!({ "@id": id })
}

fn refs<'a>(ids: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Array(ids.into_iter().map(|i| id_ref(i)).collect())
}

fn date_time(t: &Time) -> Value {
    json!({ "@type": "xsd:dateTime", "@value": t.as_str() })
}

/// Builds the graph, one node at a time, sharing identities, tools, hosts.
struct Graph<'a> {
    vault: &'a Sha256Digest,
    nodes: Vec<Value>,
    identities: BTreeMap<String, String>,
    tools: BTreeMap<(String, String), String>,
    hosts: BTreeMap<String, String>,
}

impl Graph<'_> {
    fn id(&self, class: &str, key: &[&str]) -> String {
        node_id(self.vault, class, key)
    }

    fn entry_id(&self, class: &str, (seq, idx): (u64, usize)) -> String {
        self.id(class, &[&seq.to_string(), &idx.to_string()])
    }

    fn identity(&mut self, name: &str) -> String {
        if let Some(id) = self.identities.get(name) {
            return id.clone();
        }
        let id = self.id("identity", &[name]);
        self.identities.insert(name.to_owned(), id.clone());
        id
    }

    fn tool(&mut self, t: &Tool) -> String {
        let key = (t.name.clone(), t.version.clone());
        if let Some(id) = self.tools.get(&key) {
            return id.clone();
        }
        let id = self.id("tool", &[&t.name, &t.version]);
        self.tools.insert(key, id.clone());
        id
    }

    fn host(&mut self, host: &str) -> String {
        if let Some(id) = self.hosts.get(host) {
            return id.clone();
        }
        let id = self.id("device", &[host]);
        self.hosts.insert(host.to_owned(), id.clone());
        id
    }

    fn push(&mut self, node: Value) {
        self.nodes.push(node);
    }

    /// The shared nodes, after everything that names them.
    fn finish(mut self) -> Vec<Value> {
        for (name, id) in std::mem::take(&mut self.identities) {
            self.nodes.push(json!({
                "@id": id, "@type": "uco-identity:Identity", "uco-core:name": name,
            }));
        }
        for ((name, version), id) in std::mem::take(&mut self.tools) {
            self.nodes.push(json!({
                "@id": id, "@type": "uco-tool:Tool",
                "uco-core:name": name, "uco-tool:version": version,
            }));
        }
        for (host, id) in std::mem::take(&mut self.hosts) {
            self.nodes.push(json!({
                "@id": id, "@type": "uco-observable:Device", "uco-core:name": host,
                "uco-core:description": "host named in the vault's log",
            }));
        }
        self.nodes
    }
}

/// A node object from `(key, value)` pairs, leaving out nulls and empty
/// arrays.
fn node(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        let empty = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
        if !empty {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

/// Each entry of the incident with its place in the log: segment and index
/// within the segment, counted over the incident's entries (the
/// declaration first in its segment).
fn places(inc: &Incident) -> Vec<(u64, usize)> {
    let mut next: BTreeMap<u64, usize> = BTreeMap::new();
    next.insert(inc.declared_seq, 1);
    inc.entries
        .iter()
        .map(|(seq, _)| {
            let n = next.entry(*seq).or_insert(0);
            let place = (*seq, *n);
            *n += 1;
            place
        })
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

fn status_text(a: &Artifact) -> String {
    match a.status {
        Status::Complete => "status: complete".into(),
        Status::Partial => format!("status: partial: {}", a.reason.as_deref().unwrap_or("")),
        Status::Failed => format!("status: failed: {}", a.error.as_deref().unwrap_or("")),
    }
}

/// Describes who acted when it is not simply the OS user.
fn actor_note(a: &Actor) -> Option<String> {
    a.as_reason.as_ref().map(|r| {
        format!(
            "recorded under the name {} by OS user {}: {r}",
            a.name, a.os_user
        )
    })
}

/// The JSON-LD document (`@context` and `@graph`) of `inc`, in the vault
/// `vault`. `vault_events` are the custody events that name no incident
/// (verifications of the whole vault) with their segments: those recorded
/// after the declaration touched this incident's evidence too and are
/// included.
pub fn export(vault: &Sha256Digest, inc: &Incident, vault_events: &[(u64, CustodyEvent)]) -> Value {
    let mut g = Graph {
        vault,
        nodes: Vec::new(),
        identities: BTreeMap::new(),
        tools: BTreeMap::new(),
        hosts: BTreeMap::new(),
    };
    let d = &inc.declared;
    let inv_id = g.entry_id("investigation", (inc.declared_seq, 0));
    let places = places(inc);
    let placed: Vec<((u64, usize), &Entry)> = places
        .iter()
        .copied()
        .zip(inc.entries.iter().map(|(_, e)| e))
        .collect();

    // Artifacts: one observable and one provenance record each.
    let mut run_records: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut by_subject: BTreeMap<(&str, &str, Sha256Digest), Vec<String>> = BTreeMap::new();
    let mut records = Vec::new();
    let mut per_run: BTreeMap<&str, usize> = BTreeMap::new();
    for (place, e) in &placed {
        let Entry::Artifact(a) = e else { continue };
        let n = per_run.entry(a.run.as_str()).or_insert(0);
        *n += 1;
        let exhibit = format!("{}/{}/{n}", d.incident, &a.run[..a.run.len().min(8)]);
        let record = g.entry_id("provenance-record", *place);
        let observable = g.entry_id("observable", *place);
        let mut facets = Vec::new();
        let has_file = matches!(a.kind, ItemKind::File | ItemKind::Symlink);
        if has_file {
            let fid = g.entry_id("file-facet", *place);
            let complete_file = a.kind == ItemKind::File && a.status == Status::Complete;
            g.push(node(vec![
                ("@id", fid.clone().into()),
                ("@type", "uco-observable:FileFacet".into()),
                ("uco-observable:fileName", file_name(&a.path).into()),
                ("uco-observable:filePath", a.path.as_str().into()),
                (
                    "uco-observable:sizeInBytes",
                    if complete_file {
                        a.size.into()
                    } else {
                        Value::Null
                    },
                ),
                (
                    "uco-observable:modifiedTime",
                    a.file.as_ref().map_or(Value::Null, |f| date_time(&f.mtime)),
                ),
                (
                    "uco-observable:metadataChangeTime",
                    a.file.as_ref().map_or(Value::Null, |f| date_time(&f.ctime)),
                ),
            ]));
            facets.push(fid);
        }
        if matches!(a.kind, ItemKind::File | ItemKind::Command) {
            let cid = g.entry_id("content-data-facet", *place);
            let hid = g.entry_id("hash-sha256", *place);
            g.push(json!({
                "@id": hid, "@type": "uco-types:Hash",
                "uco-types:hashMethod": "SHA256",
                "uco-types:hashValue": {"@type": "xsd:hexBinary", "@value": a.sha256.to_hex()},
            }));
            g.push(json!({
                "@id": cid, "@type": "uco-observable:ContentDataFacet",
                "uco-observable:sizeInBytes": a.size,
                "uco-observable:hash": [id_ref(&hid)],
            }));
            facets.push(cid);
        }
        let mut about = Vec::new();
        match a.kind {
            ItemKind::File => {}
            ItemKind::Symlink => about.push(format!(
                "symbolic link to {}",
                a.link_target.as_deref().unwrap_or("")
            )),
            ItemKind::Command => about.push(format!("standard output of the command {}", a.path)),
            ItemKind::Missing => about.push(format!("nothing captured at {}", a.path)),
            ItemKind::Sealed => about.push(format!(
                "the key file {} encrypted with age to named recipients",
                a.path
            )),
        }
        g.push(node(vec![
            ("@id", observable.clone().into()),
            ("@type", "uco-observable:ObservableObject".into()),
            ("uco-core:name", a.path.as_str().into()),
            ("uco-core:hasFacet", refs(&facets)),
            ("uco-core:description", about.into()),
        ]));
        let descriptions = vec![
            status_text(a),
            format!(
                "source {} ({}), collected on host {} by collector {}",
                a.source,
                a.source_kind.as_str(),
                a.host,
                a.collector
            ),
            format!("captured from {} to {}", a.started_at, a.ended_at),
            format!("BLAKE3 {}", a.blake3),
            format!("run {}, vault segment {}", a.run, place.0),
        ];
        g.push(json!({
            "@id": record, "@type": "case-investigation:ProvenanceRecord",
            "case-investigation:exhibitNumber": exhibit,
            "uco-core:name": a.path,
            "uco-core:object": [id_ref(&observable)],
            "uco-core:description": descriptions,
        }));
        run_records
            .entry(a.run.as_str())
            .or_default()
            .push(record.clone());
        by_subject
            .entry((a.run.as_str(), a.path.as_str(), a.sha256))
            .or_default()
            .push(record.clone());
        records.push(record);
    }

    // Preservation runs: one collection action each.
    let mut actions = Vec::new();
    for run in inc.runs() {
        let (seq, p) = run.started;
        let place = placed
            .iter()
            .find(|(pl, e)| {
                pl.0 == seq && matches!(e, Entry::PreservationStarted(s) if s.run == p.run)
            })
            .map_or((seq, 0), |(pl, _)| *pl);
        let id = g.entry_id("investigative-action", place);
        let performer = g.identity(&p.by);
        let tool = g.tool(&p.tool);
        let host = g.host(&p.host);
        let sources: Vec<String> = p
            .sources
            .iter()
            .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
            .collect();
        let mut descriptions = vec![
            format!("preservation run {} of incident {}", p.run, p.incident),
            format!("sources: {}", sources.join(", ")),
        ];
        let (status, end) = match run.finished {
            Some((_, f)) => {
                descriptions.push(format!(
                    "{} complete, {} partial, {} failed; {} bytes read, {} stored, {} deduplicated",
                    f.complete,
                    f.partial,
                    f.failed,
                    f.bytes_read,
                    f.bytes_stored,
                    f.bytes_deduplicated
                ));
                ("Complete/Finish", date_time(&f.ended_at))
            }
            None => {
                descriptions.push(
                    "the log records no end of this run (interrupted, or still running)".into(),
                );
                ("Unknown", Value::Null)
            }
        };
        let results = run_records.get(p.run.as_str()).cloned().unwrap_or_default();
        g.push(node(vec![
            ("@id", id.clone().into()),
            ("@type", "case-investigation:InvestigativeAction".into()),
            ("uco-core:name", "collected via declare".into()),
            ("uco-core:description", descriptions.into()),
            ("uco-action:actionStatus", status.into()),
            ("uco-action:performer", id_ref(&performer)),
            ("uco-action:instrument", json!([id_ref(&tool)])),
            ("uco-action:environment", id_ref(&host)),
            ("uco-action:startTime", date_time(&p.started_at)),
            ("uco-action:endTime", end),
            ("uco-action:result", refs(&results)),
        ]));
        actions.push(id);
    }

    // Custody events: of the incident, and vault-wide ones after its
    // declaration.
    let mut events: Vec<(u64, String, &CustodyEvent)> = placed
        .iter()
        .filter_map(|(pl, e)| match e {
            Entry::CustodyEvent(c) => Some((pl.0, g.entry_id("investigative-action", *pl), c)),
            _ => None,
        })
        .collect();
    let mut vault_wide: BTreeMap<u64, usize> = BTreeMap::new();
    for (seq, c) in vault_events {
        let n = vault_wide.entry(*seq).or_insert(0);
        let i = *n;
        *n += 1;
        if *seq > inc.declared_seq {
            // Not entries of the incident: ids of their own.
            let id = g.id(
                "investigative-action",
                &["vault-wide", &seq.to_string(), &i.to_string()],
            );
            events.push((*seq, id, c));
        }
    }
    // Log order (a segment holds one command's entries).
    events.sort_by_key(|(seq, _, _)| *seq);
    for (_, id, c) in events {
        let performer = g.identity(&c.actor.name);
        let mut participants = Vec::new();
        if c.actor.os_user != c.actor.name {
            participants.push(g.identity(&c.actor.os_user));
        }
        for name in [&c.recipient, &c.from, &c.to].into_iter().flatten() {
            participants.push(g.identity(name));
        }
        let tool = g.tool(&c.actor.tool);
        let host = g.host(&c.actor.host);
        let mut descriptions: Vec<String> = Vec::new();
        if c.incident.is_none() {
            descriptions.push("verification of the whole vault".into());
        }
        let mut objects = Vec::new();
        for s in &c.subjects {
            match by_subject.get(&(s.run.as_str(), s.path.as_str(), s.sha256)) {
                Some(r) => objects.extend(r.iter().cloned()),
                None => descriptions.push(format!(
                    "subject not among this incident's artifacts: {} (run {}, SHA-256 {})",
                    s.path, s.run, s.sha256
                )),
            }
        }
        if c.subjects.is_empty() {
            if c.incident.is_some() && c.action != Action::Received {
                descriptions.push("the incident's record as a whole".into());
            }
            objects.push(inv_id.clone());
        }
        let fields = [
            ("purpose", &c.purpose),
            ("recipient", &c.recipient),
            ("output", &c.output),
            ("from", &c.from),
            ("to", &c.to),
            ("result", &c.result),
        ];
        for (what, v) in fields {
            if let Some(v) = v {
                descriptions.push(format!("{what}: {v}"));
            }
        }
        descriptions.extend(actor_note(&c.actor));
        descriptions.push(format!(
            "log checkpoint size {} root {}",
            c.checkpoint.size, c.checkpoint.root
        ));
        let status = match (c.action, c.result.as_deref()) {
            (Action::Verified, Some(r)) if r.starts_with("ok") => Value::from("Success"),
            (Action::Verified, Some(_)) => Value::from("Fail"),
            _ => Value::Null,
        };
        g.push(node(vec![
            ("@id", id.clone().into()),
            ("@type", "case-investigation:InvestigativeAction".into()),
            (
                "uco-core:name",
                format!("{} via {}", c.action.as_str(), c.via).into(),
            ),
            ("uco-core:description", descriptions.into()),
            ("uco-action:actionStatus", status),
            ("uco-action:performer", id_ref(&performer)),
            ("uco-action:participant", refs(&participants)),
            ("uco-action:instrument", json!([id_ref(&tool)])),
            ("uco-action:environment", id_ref(&host)),
            ("uco-action:startTime", date_time(&c.at)),
            ("uco-action:object", refs(&objects)),
        ]));
        actions.push(id);
    }

    // Preservation orders.
    let mut authorizations = Vec::new();
    for (place, e) in &placed {
        let Entry::PreservationOrder(o) = e else {
            continue;
        };
        authorizations.push(authorization(&mut g, *place, o));
    }

    let mut descriptions = vec![d.title.clone()];
    descriptions.extend(d.description.clone());
    if let Some(s) = &d.severity {
        descriptions.push(format!("severity: {s}"));
    }
    if let Some(t) = &d.discovered_at {
        descriptions.push(format!("discovered at {t}"));
    }
    if let Some(s) = &d.detection_source {
        descriptions.push(format!("detected by: {s}"));
    }
    if !d.regimes.is_empty() {
        descriptions.push(format!("regulatory regimes: {}", d.regimes.join(", ")));
    }
    descriptions.push(format!(
        "declared at {} by {} on host {}",
        d.declared_at, d.declared_by, d.host
    ));
    if let Some(custodian) = inc.custodian() {
        descriptions.push(format!("custodian: {custodian}"));
    }
    let closed = inc.closed().map(|(_, c)| c);
    if let Some(c) = closed {
        descriptions.push(format!("closed at {}: {}", c.at, c.reason));
    }
    descriptions.push(format!("custody vault {vault}"));
    let creator = g.identity(&d.declared_by);
    let mut objects = actions;
    objects.extend(records);
    objects.extend(authorizations.iter().cloned());
    let investigation = node(vec![
        ("@id", inv_id.into()),
        ("@type", "case-investigation:Investigation".into()),
        ("uco-core:name", d.incident.as_str().into()),
        ("uco-core:description", descriptions.into()),
        ("case-investigation:investigationForm", "incident".into()),
        ("case-investigation:investigationStatus", inc.state().into()),
        ("uco-core:createdBy", id_ref(&creator)),
        ("uco-core:objectCreatedTime", date_time(&d.declared_at)),
        ("uco-core:startTime", date_time(&d.declared_at)),
        (
            "uco-core:endTime",
            closed.map_or(Value::Null, |c| date_time(&c.at)),
        ),
        (
            "case-investigation:relevantAuthorization",
            refs(&authorizations),
        ),
        ("uco-core:object", refs(&objects)),
    ]);
    let mut graph = vec![investigation];
    graph.extend(g.finish());
    json!({ "@context": context(), "@graph": graph })
}

fn authorization(g: &mut Graph<'_>, place: (u64, usize), o: &PreservationOrder) -> String {
    let id = g.entry_id("authorization", place);
    let issuer = g.identity(&o.authority);
    let recorder = g.identity(&o.actor.name);
    let mut descriptions = vec![format!("issued by {}", o.authority)];
    if !o.sources.is_empty() {
        descriptions.push(format!("sources named: {}", o.sources.join("; ")));
    }
    match (&o.from, &o.until) {
        (None, None) => {}
        (f, u) => descriptions.push(format!(
            "covers {} to {}",
            f.as_ref().map_or("(no start)".into(), ToString::to_string),
            u.as_ref().map_or("(no end)".into(), ToString::to_string)
        )),
    }
    descriptions.push(format!("received at {}", o.received_at));
    descriptions.extend(actor_note(&o.actor));
    g.push(json!({
        "@id": id, "@type": "case-investigation:Authorization",
        "uco-core:name": format!("preservation order {}", o.reference),
        "case-investigation:authorizationType": "preservation order",
        "case-investigation:authorizationIdentifier": o.reference,
        "uco-core:startTime": date_time(&o.received_at),
        "uco-core:description": descriptions,
        "uco-core:createdBy": id_ref(&recorder),
        "uco-core:objectCreatedTime": date_time(&o.at),
    }));
    let rel = g.entry_id("relationship", place);
    g.push(json!({
        "@id": rel, "@type": "uco-core:Relationship",
        "uco-core:source": [id_ref(&id)],
        "uco-core:target": id_ref(&issuer),
        "uco-core:kindOfRelationship": "Issued_By",
        "uco-core:isDirectional": true,
    }));
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Blake3Id;
    use crate::incident::Book;
    use crate::segment::{
        CheckpointRef, FileMeta, IncidentDeclared, PreservationFinished, PreservationStarted,
        Segment, SourceKind, SourceSpec, Subject,
    };

    const TRICKY: &str =
        "x\", \"@id\": \"kb:evil\"}, {\"@type\": \"uco-core:Evil\" \\ \n\u{1F512} <>&";

    fn t(s: i64) -> Time {
        Time::from_unix(1_763_000_000 + s)
    }

    fn actor(name: &str, reason: Option<&str>) -> Actor {
        Actor {
            name: name.into(),
            os_user: "ana".into(),
            as_reason: reason.map(Into::into),
            host: "web-01".into(),
            tool: Tool::this(),
        }
    }

    fn artifact(kind: ItemKind, path: &str, data: &[u8]) -> Artifact {
        Artifact {
            incident: "INC-1".into(),
            run: "ab".repeat(16),
            source: "logs".into(),
            source_kind: if kind == ItemKind::Command {
                SourceKind::Command
            } else {
                SourceKind::Files
            },
            kind,
            path: path.into(),
            status: if kind == ItemKind::Missing {
                Status::Failed
            } else {
                Status::Complete
            },
            reason: None,
            error: (kind == ItemKind::Missing).then(|| "no such file".into()),
            size: data.len() as u64,
            blake3: Blake3Id::of(data),
            sha256: Sha256Digest::of(data),
            chunks: vec![],
            link_target: (kind == ItemKind::Symlink).then(|| "/etc/target".into()),
            offset: None,
            file: matches!(kind, ItemKind::File | ItemKind::Symlink).then(|| FileMeta {
                mtime: t(-100),
                ctime: t(-90),
                mode: "100640".into(),
                uid: 0,
                gid: 0,
                owner: None,
                group: None,
                dev: 1,
                ino: 2,
            }),
            command: None,
            host: "web-01".into(),
            collector: "web-01".into(),
            tool: Tool::this(),
            started_at: t(1),
            ended_at: t(2),
        }
    }

    fn event(incident: Option<&str>, action: Action, via: &str) -> CustodyEvent {
        CustodyEvent {
            incident: incident.map(Into::into),
            action,
            via: via.into(),
            subjects: vec![],
            purpose: None,
            recipient: None,
            output: None,
            from: None,
            to: None,
            result: None,
            checkpoint: CheckpointRef {
                size: 3,
                root: Sha256Digest([9; 32]),
            },
            at: t(50),
            actor: actor("ana", None),
        }
    }

    fn seg(seq: u64, entries: Vec<Entry>) -> Segment {
        Segment {
            format: 1,
            vault: None,
            seq,
            prev: None,
            sealed_at: t(seq as i64),
            entries,
        }
    }

    fn book() -> Book {
        let run = "ab".repeat(16);
        let mut b = Book::default();
        b.absorb(
            1,
            &seg(
                1,
                vec![
                    Entry::IncidentDeclared(IncidentDeclared {
                        incident: "INC-1".into(),
                        title: TRICKY.into(),
                        severity: Some("sev1".into()),
                        discovered_at: Some(t(-3600)),
                        declared_at: t(0),
                        declared_by: "ana".into(),
                        host: "web-01".into(),
                        tool: Tool::this(),
                        description: Some("tokens forged".into()),
                        detection_source: None,
                        regimes: vec!["gdpr".into()],
                    }),
                    Entry::PreservationStarted(PreservationStarted {
                        incident: "INC-1".into(),
                        run: run.clone(),
                        started_at: t(0),
                        by: "ana".into(),
                        host: "web-01".into(),
                        tool: Tool::this(),
                        sources: vec![SourceSpec {
                            name: "logs".into(),
                            kind: SourceKind::Files,
                            paths: vec!["/var/log".into()],
                            exclude: vec![],
                            argv: vec![],
                            timeout_secs: None,
                            seal_to: vec![],
                        }],
                    }),
                ],
            ),
        );
        let file = artifact(ItemKind::File, "/var/log/auth.log", b"evidence\n");
        let sub = Subject {
            path: file.path.clone(),
            run: run.clone(),
            sha256: file.sha256,
        };
        b.absorb(
            2,
            &seg(
                2,
                vec![
                    Entry::Artifact(Box::new(file)),
                    Entry::Artifact(Box::new(artifact(
                        ItemKind::Command,
                        "journalctl -o export",
                        b"journal",
                    ))),
                    Entry::Artifact(Box::new(artifact(ItemKind::File, "/var/log/empty", b""))),
                    Entry::Artifact(Box::new(artifact(ItemKind::Symlink, "/var/log/l", b""))),
                    Entry::Artifact(Box::new(artifact(ItemKind::Missing, "/var/log/*.gz", b""))),
                    Entry::PreservationFinished(PreservationFinished {
                        incident: "INC-1".into(),
                        run,
                        ended_at: t(3),
                        complete: 4,
                        partial: 0,
                        failed: 1,
                        bytes_read: 16,
                        bytes_stored: 16,
                        bytes_deduplicated: 0,
                    }),
                ],
            ),
        );
        b.absorb(
            3,
            &seg(
                3,
                vec![Entry::PreservationOrder(PreservationOrder {
                    incident: "INC-1".into(),
                    authority: "PIPC".into(),
                    reference: TRICKY.into(),
                    received_at: t(10),
                    sources: vec!["auth servers".into()],
                    from: Some(t(-86400)),
                    until: None,
                    at: t(11),
                    actor: actor("ana", None),
                })],
            ),
        );
        let mut cat = event(Some("INC-1"), Action::Accessed, "cat");
        cat.subjects = vec![sub];
        cat.purpose = Some(TRICKY.into());
        cat.actor = actor("dpo", Some("on behalf of the DPO"));
        b.absorb(4, &seg(4, vec![Entry::CustodyEvent(cat)]));
        let mut transfer = event(Some("INC-1"), Action::Transferred, "incident transfer");
        transfer.from = Some("alice".into());
        transfer.to = Some("lab".into());
        transfer.purpose = Some("analysis".into());
        b.absorb(5, &seg(5, vec![Entry::CustodyEvent(transfer)]));
        let mut verify = event(None, Action::Verified, "verify");
        verify.result = Some("ok: 3 segments".into());
        b.absorb(6, &seg(6, vec![Entry::CustodyEvent(verify)]));
        b
    }

    fn doc(vault: u8) -> Value {
        let b = book();
        export(
            &Sha256Digest([vault; 32]),
            b.get("INC-1").unwrap(),
            b.vault_events(),
        )
    }

    fn nodes_of<'a>(doc: &'a Value, ty: &str) -> Vec<&'a Value> {
        doc["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["@type"] == ty)
            .collect()
    }

    fn ids(doc: &Value) -> Vec<String> {
        doc["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["@id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn ids_are_deterministic_unique_and_uuid_shaped() {
        let a = doc(1);
        assert_eq!(a, doc(1), "the same vault exports the same graph");
        let ia = ids(&a);
        let ib = ids(&doc(2));
        assert!(
            ia.iter().all(|i| !ib.contains(i)),
            "ids depend on the vault"
        );
        let mut unique = ia.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ia.len(), "ids are unique");
        for id in &ia {
            let uuid = &id[id.len() - 36..];
            let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
            assert!(id.starts_with("kb:"), "{id}");
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert!(
                uuid.bytes()
                    .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
            assert_eq!(&uuid[14..15], "4", "{id}");
        }
        assert_eq!(
            node_id(&Sha256Digest([1; 32]), "x", &["a", "bc"]),
            node_id(&Sha256Digest([1; 32]), "x", &["a", "bc"])
        );
        assert_ne!(
            node_id(&Sha256Digest([1; 32]), "x", &["a", "bc"]),
            node_id(&Sha256Digest([1; 32]), "x", &["ab", "c"]),
            "key parts are length-prefixed"
        );
    }

    #[test]
    fn every_artifact_with_content_has_a_sha256_hash() {
        let d = doc(1);
        let b = book();
        let inc = b.get("INC-1").unwrap();
        let by_id = |id: &str| -> Value {
            d["@graph"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["@id"] == id)
                .cloned()
                .unwrap_or_else(|| panic!("no node {id}"))
        };
        let records = nodes_of(&d, "case-investigation:ProvenanceRecord");
        assert_eq!(records.len(), inc.artifacts().count());
        let mut with_content = 0;
        for (_, art) in inc.artifacts() {
            let rec = records
                .iter()
                .find(|r| r["uco-core:name"] == art.path.as_str())
                .unwrap();
            let obs = by_id(rec["uco-core:object"][0]["@id"].as_str().unwrap());
            let facets: Vec<Value> = obs["uco-core:hasFacet"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|r| by_id(r["@id"].as_str().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            let content = facets
                .iter()
                .find(|f| f["@type"] == "uco-observable:ContentDataFacet");
            let has_content = matches!(art.kind, ItemKind::File | ItemKind::Command);
            assert_eq!(content.is_some(), has_content, "{}", art.path);
            if let Some(c) = content {
                with_content += 1;
                assert_eq!(c["uco-observable:sizeInBytes"], art.size);
                let h = by_id(c["uco-observable:hash"][0]["@id"].as_str().unwrap());
                assert_eq!(h["uco-types:hashMethod"], "SHA256");
                assert_eq!(h["uco-types:hashValue"]["@type"], "xsd:hexBinary");
                assert_eq!(h["uco-types:hashValue"]["@value"], art.sha256.to_hex());
            }
            let blake3 = format!("BLAKE3 {}", art.blake3);
            assert!(
                rec["uco-core:description"]
                    .as_array()
                    .unwrap()
                    .contains(&blake3.into())
            );
        }
        assert_eq!(with_content, 3, "two files (one empty) and a command");
        // Exhibit numbers: incident, run prefix, position in the run.
        let exhibits: Vec<&str> = records
            .iter()
            .map(|r| r["case-investigation:exhibitNumber"].as_str().unwrap())
            .collect();
        assert_eq!(exhibits[0], "INC-1/abababab/1");
        assert_eq!(exhibits[4], "INC-1/abababab/5");
    }

    #[test]
    fn actions_and_authorizations() {
        let d = doc(1);
        let actions = nodes_of(&d, "case-investigation:InvestigativeAction");
        let names: Vec<&str> = actions
            .iter()
            .map(|a| a["uco-core:name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "collected via declare",
                "accessed via cat",
                "transferred via incident transfer",
                "verified via verify"
            ]
        );
        assert_eq!(actions[0]["uco-action:result"].as_array().unwrap().len(), 5);
        assert_eq!(actions[0]["uco-action:actionStatus"], "Complete/Finish");
        assert_eq!(actions[1]["uco-action:object"].as_array().unwrap().len(), 1);
        assert_eq!(actions[3]["uco-action:actionStatus"], "Success");
        let desc = actions[1]["uco-core:description"].as_array().unwrap();
        assert!(
            desc.contains(
                &"recorded under the name dpo by OS user ana: on behalf of the DPO".into()
            )
        );
        // The performer is the name recorded; the OS user takes part.
        let performer = actions[1]["uco-action:performer"]["@id"].as_str().unwrap();
        let identity = |name: &str| {
            nodes_of(&d, "uco-identity:Identity")
                .into_iter()
                .find(|n| n["uco-core:name"] == name)
                .map(|n| n["@id"].as_str().unwrap().to_owned())
                .unwrap()
        };
        assert_eq!(performer, identity("dpo"));
        assert_eq!(
            actions[1]["uco-action:participant"][0]["@id"],
            identity("ana").as_str()
        );
        let auths = nodes_of(&d, "case-investigation:Authorization");
        assert_eq!(auths.len(), 1);
        assert_eq!(
            auths[0]["case-investigation:authorizationType"],
            "preservation order"
        );
        let inv = &nodes_of(&d, "case-investigation:Investigation")[0];
        assert_eq!(
            inv["case-investigation:relevantAuthorization"][0]["@id"],
            auths[0]["@id"]
        );
        let rel = &nodes_of(&d, "uco-core:Relationship")[0];
        assert_eq!(rel["uco-core:source"][0]["@id"], auths[0]["@id"]);
        assert_eq!(rel["uco-core:target"]["@id"], identity("PIPC").as_str());
        // Everything the investigation compiles: 4 actions, 5 records, 1 order.
        assert_eq!(inv["uco-core:object"].as_array().unwrap().len(), 10);
    }

    #[test]
    fn log_strings_are_values_carried_verbatim() {
        let d = doc(1);
        let text = serde_json::to_string(&d).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        let graph = d["@graph"].as_array().unwrap();
        // No node came from the log's strings.
        assert!(graph.iter().all(|n| {
            n["@id"]
                .as_str()
                .is_some_and(|i| i.starts_with("kb:") && i != "kb:evil")
        }));
        assert!(graph.iter().all(|n| n["@type"] != "uco-core:Evil"));
        let inv = &nodes_of(&d, "case-investigation:Investigation")[0];
        assert_eq!(inv["uco-core:description"][0], TRICKY);
        assert_eq!(inv["uco-core:name"], "INC-1");
        let auth = &nodes_of(&d, "case-investigation:Authorization")[0];
        assert_eq!(auth["case-investigation:authorizationIdentifier"], TRICKY);
        let cat = nodes_of(&d, "case-investigation:InvestigativeAction")[1];
        assert!(
            cat["uco-core:description"]
                .as_array()
                .unwrap()
                .contains(&format!("purpose: {TRICKY}").into())
        );
        // Times keep the text of the log.
        assert_eq!(
            auth["uco-core:startTime"],
            json!({"@type": "xsd:dateTime", "@value": t(10).as_str()})
        );
    }
}
