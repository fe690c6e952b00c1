//! Incidents as the log tells them (FORMAT.md §9 (incident lifecycle),
//! §9 (custody events)): every entry of an incident in log order, the state
//! derived from them (runs, holds, filings, facts, closure), and the rules a
//! new lifecycle entry must satisfy before it is written.
//!
//! The log is the only state: [`Book::absorb`] is fed every segment as the
//! vault is opened, and nothing here reads storage.

use std::collections::{BTreeMap, BTreeSet};

use crate::segment::{
    Action, Artifact, CustodyEvent, Entry, FactLearned, Hold, IncidentClosed, IncidentDeclared,
    ManifestSealed, PreservationFinished, PreservationStarted, ReportFiled, Segment,
};
use crate::time::Time;

/// How far in the future a reported time may lie (clock skew between hosts).
pub const FUTURE_SLACK_SECS: i64 = 300;

/// Every incident in a vault, and the custody events that name none.
#[derive(Debug, Default)]
pub struct Book {
    incidents: BTreeMap<String, Incident>,
    vault_events: Vec<(u64, CustodyEvent)>,
}

/// One incident: its entries in log order.
#[derive(Debug)]
pub struct Incident {
    /// The declaration.
    pub declared: IncidentDeclared,
    /// The segment holding it.
    pub declared_seq: u64,
    /// Every entry of the incident after the declaration, with its segment.
    pub entries: Vec<(u64, Entry)>,
    /// Every segment holding an entry of the incident.
    pub segments: BTreeSet<u64>,
}

/// A preservation run and how it ended.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// The start entry and its segment.
    pub started: (u64, &'a PreservationStarted),
    /// The end entry, unless the run was interrupted.
    pub finished: Option<(u64, &'a PreservationFinished)>,
}

/// A hold and, once released, its release.
#[derive(Debug, Clone)]
pub struct HoldState<'a> {
    /// The placement and its segment.
    pub placed: (u64, &'a Hold),
    /// The release and its segment.
    pub released: Option<(u64, &'a Hold)>,
}

/// Why a lifecycle entry may not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    /// The incident was never declared.
    #[error("no incident {incident:?} in this vault ({known})")]
    Unknown {
        /// The id given.
        incident: String,
        /// The known ids, or a note that there are none.
        known: String,
    },
    /// The transition makes no sense in the incident's state.
    #[error("incident {incident}: {why}")]
    Refused {
        /// The incident.
        incident: String,
        /// Why.
        why: String,
    },
}

impl Book {
    /// Takes in one segment's entries.
    pub fn absorb(&mut self, seq: u64, seg: &Segment) {
        for e in &seg.entries {
            if let Entry::IncidentDeclared(d) = e {
                // A second declaration of one id is not written by custody;
                // if a log holds one, the first stands and the second is
                // kept as an entry.
                if !self.incidents.contains_key(&d.incident) {
                    let mut segments = BTreeSet::new();
                    segments.insert(seq);
                    self.incidents.insert(
                        d.incident.clone(),
                        Incident {
                            declared: d.clone(),
                            declared_seq: seq,
                            entries: Vec::new(),
                            segments,
                        },
                    );
                    continue;
                }
            }
            match e.incident() {
                Some(id) => {
                    if let Some(inc) = self.incidents.get_mut(id) {
                        inc.entries.push((seq, e.clone()));
                        inc.segments.insert(seq);
                    }
                }
                None => {
                    if let Entry::CustodyEvent(c) = e {
                        self.vault_events.push((seq, c.clone()));
                    }
                }
            }
        }
    }

    /// An incident by id.
    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.incidents.get(id)
    }

    /// An incident by id, or an error listing the known ones.
    ///
    /// # Errors
    /// [`TransitionError::Unknown`].
    pub fn require(&self, id: &str) -> Result<&Incident, TransitionError> {
        self.incidents
            .get(id)
            .ok_or_else(|| TransitionError::Unknown {
                incident: id.to_owned(),
                known: if self.incidents.is_empty() {
                    "the vault has no incidents".into()
                } else {
                    format!(
                        "known incidents: {}",
                        self.incidents
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            })
    }

    /// All incidents, by id.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values()
    }

    /// Custody events that name no incident (verifications of the vault),
    /// with their segments.
    pub fn vault_events(&self) -> &[(u64, CustodyEvent)] {
        &self.vault_events
    }

    /// Checks that `entry` may be appended now, given everything absorbed.
    ///
    /// # Errors
    /// [`TransitionError`] naming what makes no sense.
    pub fn check(&self, entry: &Entry, now: &Time) -> Result<(), TransitionError> {
        let Some(id) = entry.incident() else {
            return Ok(());
        };
        if let Entry::IncidentDeclared(_) = entry {
            return if self.incidents.contains_key(id) {
                Err(refused(id, "is already declared"))
            } else {
                Ok(())
            };
        }
        let inc = self.require(id)?;
        let future = |what: &str, t: &Time| {
            let ahead = t.timestamp().as_second() - now.timestamp().as_second();
            if ahead > FUTURE_SLACK_SECS {
                Err(refused(
                    id,
                    &format!("{what} {t} lies in the future (now is {now})"),
                ))
            } else {
                Ok(())
            }
        };
        let closed = inc.closed().map(|(_, c)| c);
        let refuse_closed = |what: &str| match closed {
            Some(c) => Err(refused(
                id,
                &format!("is closed ({} at {}): cannot {what}", c.reason, c.at),
            )),
            None => Ok(()),
        };
        match entry {
            Entry::PreservationStarted(_) => refuse_closed("preserve more evidence"),
            Entry::PreservationOrder(o) => {
                refuse_closed("record a preservation order")?;
                future("the order's receipt", &o.received_at)?;
                if let (Some(f), Some(u)) = (&o.from, &o.until)
                    && f.timestamp() > u.timestamp()
                {
                    return Err(refused(
                        id,
                        &format!("the order's time range starts ({f}) after it ends ({u})"),
                    ));
                }
                Ok(())
            }
            Entry::HoldPlaced(h) => {
                refuse_closed("place a hold")?;
                if inc
                    .holds()
                    .iter()
                    .any(|s| s.placed.1.hold == h.hold && s.released.is_none())
                {
                    return Err(refused(
                        id,
                        &format!("hold {:?} is already in place", h.hold),
                    ));
                }
                Ok(())
            }
            Entry::HoldReleased(h) => {
                let holds = inc.holds();
                let mut named = holds.iter().filter(|s| s.placed.1.hold == h.hold);
                match named.clone().find(|s| s.released.is_none()) {
                    Some(_) => Ok(()),
                    None if named.next().is_some() => Err(refused(
                        id,
                        &format!("hold {:?} was already released", h.hold),
                    )),
                    None => {
                        let active: Vec<_> = holds
                            .iter()
                            .filter(|s| s.released.is_none())
                            .map(|s| s.placed.1.hold.as_str())
                            .collect();
                        Err(refused(
                            id,
                            &format!(
                                "hold {:?} was never placed ({})",
                                h.hold,
                                if active.is_empty() {
                                    "no hold is in place".to_string()
                                } else {
                                    format!("holds in place: {}", active.join(", "))
                                }
                            ),
                        ))
                    }
                }
            }
            Entry::ReportFiled(r) => {
                refuse_closed("file a report")?;
                future("the filing time", &r.filed_at)
            }
            Entry::FactLearned(f) => {
                refuse_closed("record a new fact")?;
                future("the time the fact was learned", &f.learned_at)?;
                if f.materiality && inc.materiality().is_some() {
                    return Err(refused(
                        id,
                        "materiality was already determined; record a plain fact",
                    ));
                }
                Ok(())
            }
            Entry::IncidentClosed(_) => refuse_closed("close it again"),
            Entry::Artifact(_) | Entry::KeyFile(_) | Entry::PreservationFinished(_) => Ok(()),
            // Notes, custody events and manifests are recorded in any state:
            // evidence is still read and handed over after closure.
            Entry::Note(_) | Entry::CustodyEvent(_) | Entry::ManifestSealed(_) => Ok(()),
            Entry::Genesis(_)
            | Entry::IncidentDeclared(_)
            | Entry::BackendProbed(_)
            | Entry::KeyRotated(_)
            | Entry::KeyRevoked(_)
            | Entry::Heartbeat(_) => Ok(()),
        }
    }
}

fn refused(incident: &str, why: &str) -> TransitionError {
    TransitionError::Refused {
        incident: incident.to_owned(),
        why: why.to_owned(),
    }
}

impl Incident {
    /// The incident id.
    pub fn id(&self) -> &str {
        &self.declared.incident
    }

    /// When the organisation became aware: the discovery time if recorded,
    /// else the declaration.
    pub fn aware_at(&self) -> &Time {
        self.declared
            .discovered_at
            .as_ref()
            .unwrap_or(&self.declared.declared_at)
    }

    /// The preservation runs, in log order.
    pub fn runs(&self) -> Vec<Run<'_>> {
        let mut runs: Vec<Run<'_>> = Vec::new();
        for (seq, e) in &self.entries {
            match e {
                Entry::PreservationStarted(p) => runs.push(Run {
                    started: (*seq, p),
                    finished: None,
                }),
                Entry::PreservationFinished(p) => {
                    if let Some(r) = runs.iter_mut().find(|r| r.started.1.run == p.run) {
                        r.finished = Some((*seq, p));
                    }
                }
                _ => {}
            }
        }
        runs
    }

    /// The segments an inclusion proof of the incident covers: every one of
    /// it, or those holding an artifact at `path`; `None` when no artifact
    /// has that path.
    pub fn proof_segments(&self, path: Option<&str>) -> Option<Vec<u64>> {
        match path {
            None => Some(self.segments.iter().copied().collect()),
            Some(p) => {
                let set: BTreeSet<u64> = self
                    .artifacts()
                    .filter(|(_, a)| a.path == p)
                    .map(|(seq, _)| seq)
                    .collect();
                (!set.is_empty()).then(|| set.into_iter().collect())
            }
        }
    }

    /// The artifacts, in log order, with their segments.
    pub fn artifacts(&self) -> impl Iterator<Item = (u64, &Artifact)> {
        self.entries.iter().filter_map(|(seq, e)| match e {
            Entry::Artifact(a) => Some((*seq, &**a)),
            _ => None,
        })
    }

    /// Holds, in the order placed.
    pub fn holds(&self) -> Vec<HoldState<'_>> {
        let mut holds: Vec<HoldState<'_>> = Vec::new();
        for (seq, e) in &self.entries {
            match e {
                Entry::HoldPlaced(h) => holds.push(HoldState {
                    placed: (*seq, h),
                    released: None,
                }),
                Entry::HoldReleased(h) => {
                    if let Some(s) = holds
                        .iter_mut()
                        .find(|s| s.placed.1.hold == h.hold && s.released.is_none())
                    {
                        s.released = Some((*seq, h));
                    }
                }
                _ => {}
            }
        }
        holds
    }

    /// Reports filed, in log order.
    pub fn filings(&self) -> Vec<(u64, &ReportFiled)> {
        self.entries
            .iter()
            .filter_map(|(seq, e)| match e {
                Entry::ReportFiled(r) => Some((*seq, r)),
                _ => None,
            })
            .collect()
    }

    /// Facts learned (materiality determinations included), in log order.
    pub fn facts(&self) -> Vec<(u64, &FactLearned)> {
        self.entries
            .iter()
            .filter_map(|(seq, e)| match e {
                Entry::FactLearned(f) => Some((*seq, f)),
                _ => None,
            })
            .collect()
    }

    /// The materiality determination, if recorded.
    pub fn materiality(&self) -> Option<&FactLearned> {
        self.facts()
            .into_iter()
            .map(|(_, f)| f)
            .find(|f| f.materiality)
    }

    /// Custody events naming this incident, in log order.
    pub fn events(&self) -> Vec<(u64, &CustodyEvent)> {
        self.entries
            .iter()
            .filter_map(|(seq, e)| match e {
                Entry::CustodyEvent(c) => Some((*seq, c)),
                _ => None,
            })
            .collect()
    }

    /// Manifests issued, in log order.
    pub fn manifests(&self) -> Vec<(u64, &ManifestSealed)> {
        self.entries
            .iter()
            .filter_map(|(seq, e)| match e {
                Entry::ManifestSealed(m) => Some((*seq, m)),
                _ => None,
            })
            .collect()
    }

    /// The closure, if closed.
    pub fn closed(&self) -> Option<(u64, &IncidentClosed)> {
        self.entries.iter().find_map(|(seq, e)| match e {
            Entry::IncidentClosed(c) => Some((*seq, c)),
            _ => None,
        })
    }

    /// Who holds the evidence now: the recipient of the last transfer, or
    /// `None` while it is still with the vault's operator.
    pub fn custodian(&self) -> Option<&str> {
        self.events()
            .into_iter()
            .rev()
            .find(|(_, e)| e.action == Action::Transferred)
            .and_then(|(_, e)| e.to.as_deref())
    }

    /// The filings under a built-in regime, in log order: a clock's
    /// `filing` index (`Met`, `Late`) points into this list.
    pub fn clock_filings(&self) -> Vec<(u64, &ReportFiled)> {
        self.filings()
            .into_iter()
            .filter(|(_, f)| f.regime != "other")
            .collect()
    }

    /// The regulatory clocks of the incident's regimes at `now`
    /// (FORMAT.md §9 (regulatory clocks)). Facts count toward the
    /// per-fact clocks only when learned after the first filing of the
    /// incident: a fact known before it belongs in that first report.
    ///
    /// # Errors
    /// A regime or filing the built-in table does not know (a log written
    /// by a newer custody).
    pub fn clocks(
        &self,
        now: &Time,
    ) -> Result<Vec<crate::clocks::Clock>, crate::clocks::ClockError> {
        let filings: Vec<crate::clocks::Filing> = self
            .clock_filings()
            .into_iter()
            .map(|(_, f)| crate::clocks::Filing {
                regime: f.regime.clone(),
                kind: f.kind.clone(),
                filed_at: f.filed_at.clone(),
                reference: f.reference.clone(),
                late_reason: f.late_reason.clone(),
            })
            .collect();
        let first_filing = filings.iter().map(|f| f.filed_at.timestamp()).min();
        let facts: Vec<Time> = self
            .facts()
            .into_iter()
            .filter(|(_, f)| !f.materiality)
            .filter(|(_, f)| first_filing.is_some_and(|first| f.learned_at.timestamp() > first))
            .map(|(_, f)| f.learned_at.clone())
            .collect();
        crate::clocks::evaluate(
            &crate::clocks::Inputs {
                regimes: &self.declared.regimes,
                aware_at: self.aware_at(),
                materiality_at: self.materiality().map(|f| &f.learned_at),
                facts: &facts,
                filings: &filings,
            },
            now.timestamp(),
        )
    }

    /// `open`, `closed`, with `on hold` when a hold is in place.
    pub fn state(&self) -> String {
        let held = self.holds().iter().any(|h| h.released.is_none());
        match (self.closed().is_some(), held) {
            (false, false) => "open".into(),
            (false, true) => "open, on hold".into(),
            (true, false) => "closed".into(),
            (true, true) => "closed, on hold".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Actor, Note, PreservationOrder, Tool};

    fn t(s: i64) -> Time {
        Time::from_unix(1_763_000_000 + s)
    }

    fn actor() -> Actor {
        Actor {
            name: "ana".into(),
            os_user: "ana".into(),
            as_reason: None,
            host: "h".into(),
            tool: Tool::this(),
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

    fn declared(id: &str) -> Entry {
        Entry::IncidentDeclared(IncidentDeclared {
            incident: id.into(),
            title: "t".into(),
            severity: None,
            discovered_at: Some(t(-3600)),
            declared_at: t(0),
            declared_by: "ana".into(),
            host: "h".into(),
            tool: Tool::this(),
            description: None,
            detection_source: None,
            regimes: vec!["gdpr".into()],
        })
    }

    fn hold(kind: fn(Hold) -> Entry, name: &str) -> Entry {
        kind(Hold {
            incident: "INC-1".into(),
            hold: name.into(),
            reason: "litigation".into(),
            authorisation: "legal".into(),
            at: t(10),
            actor: actor(),
        })
    }

    fn closed() -> Entry {
        Entry::IncidentClosed(IncidentClosed {
            incident: "INC-1".into(),
            reason: "resolved".into(),
            at: t(20),
            actor: actor(),
        })
    }

    fn report() -> Entry {
        Entry::ReportFiled(ReportFiled {
            incident: "INC-1".into(),
            regime: "gdpr".into(),
            kind: "notification".into(),
            authority: "DPA".into(),
            filed_at: t(30),
            reference: "R-1".into(),
            channel: "portal".into(),
            late_reason: None,
            at: t(30),
            actor: actor(),
        })
    }

    #[test]
    fn transitions_that_make_no_sense_are_refused() {
        let mut book = Book::default();
        let now = t(100);
        // An order for an unknown incident.
        let order = Entry::PreservationOrder(PreservationOrder {
            incident: "INC-1".into(),
            authority: "court".into(),
            reference: "1".into(),
            received_at: t(5),
            sources: vec![],
            from: None,
            until: None,
            at: t(5),
            actor: actor(),
        });
        assert!(matches!(
            book.check(&order, &now),
            Err(TransitionError::Unknown { .. })
        ));
        book.absorb(1, &seg(1, vec![declared("INC-1")]));
        assert_eq!(book.check(&order, &now), Ok(()));
        assert!(book.check(&declared("INC-1"), &now).is_err());
        // Release of a hold never placed.
        let err = book
            .check(&hold(Entry::HoldReleased, "h1"), &now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("never placed"), "{err}");
        book.absorb(2, &seg(2, vec![hold(Entry::HoldPlaced, "h1")]));
        assert!(book.check(&hold(Entry::HoldPlaced, "h1"), &now).is_err());
        assert_eq!(book.check(&hold(Entry::HoldReleased, "h1"), &now), Ok(()));
        assert_eq!(book.get("INC-1").unwrap().state(), "open, on hold");
        book.absorb(3, &seg(3, vec![hold(Entry::HoldReleased, "h1")]));
        let err = book
            .check(&hold(Entry::HoldReleased, "h1"), &now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already released"), "{err}");
        // Report on a closed incident.
        assert_eq!(book.check(&report(), &now), Ok(()));
        book.absorb(4, &seg(4, vec![closed()]));
        let err = book.check(&report(), &now).unwrap_err().to_string();
        assert!(err.contains("is closed"), "{err}");
        assert!(book.check(&closed(), &now).is_err());
        // A note is still fine.
        let note = Entry::Note(Note {
            incident: "INC-1".into(),
            text: "x".into(),
            at: t(40),
            actor: actor(),
        });
        assert_eq!(book.check(&note, &now), Ok(()));
        let inc = book.get("INC-1").unwrap();
        assert_eq!(inc.state(), "closed");
        assert_eq!(
            inc.segments.iter().copied().collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn times_in_the_future_are_refused() {
        let mut book = Book::default();
        book.absorb(1, &seg(1, vec![declared("INC-1")]));
        let mut r = report();
        if let Entry::ReportFiled(f) = &mut r {
            f.filed_at = t(100 + FUTURE_SLACK_SECS + 1);
        }
        assert!(book.check(&r, &t(100)).is_err());
    }
}
