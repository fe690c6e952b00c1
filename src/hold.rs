//! Holds the store enforces (FORMAT.md §11.2): which objects a hold in
//! place covers, placing and lifting the store's protection on them, and
//! checking that it is there.
//!
//! A hold covers every segment holding an entry of its incident and every
//! pack one of its artifacts references. Packs are shared between incidents
//! (they are named by content), so an object stays protected while any hold
//! in place, of any incident, covers it.

use std::collections::{BTreeMap, BTreeSet};

use crate::hash::Blake3Id;
use crate::layout;
use crate::segment::{Entry, Segment};
use crate::store::{Protection, Store, StoreError};

#[derive(Debug, Default)]
struct Covered {
    segments: BTreeSet<u64>,
    packs: BTreeSet<Blake3Id>,
    /// Holds in place: name, segment placing it.
    holds: BTreeMap<String, u64>,
}

/// What each incident's holds cover, built from the log.
#[derive(Debug, Default)]
pub struct HoldIndex {
    incidents: BTreeMap<String, Covered>,
}

/// An object a hold covers that the store does not protect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotected {
    /// Its key.
    pub key: String,
    /// The incident and the hold covering it.
    pub incident: String,
    /// The hold's name.
    pub hold: String,
    /// What the store reports instead.
    pub why: String,
}

/// The outcome of placing or lifting protection.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Applied {
    /// Objects concerned.
    pub objects: usize,
    /// Objects whose protection changed.
    pub changed: usize,
    /// Objects that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Why the store protects nothing at all, if it does not.
    pub unsupported: Option<String>,
}

impl HoldIndex {
    /// Takes in one segment's entries.
    pub fn absorb(&mut self, seq: u64, seg: &Segment) {
        for e in &seg.entries {
            let Some(id) = e.incident() else { continue };
            let c = self.incidents.entry(id.to_owned()).or_default();
            c.segments.insert(seq);
            match e {
                Entry::Artifact(a) => c.packs.extend(a.chunks.iter().map(|ch| ch.pack)),
                Entry::HoldPlaced(h) => {
                    c.holds.entry(h.hold.clone()).or_insert(seq);
                }
                Entry::HoldReleased(h) => {
                    c.holds.remove(&h.hold);
                }
                _ => {}
            }
        }
    }

    /// Whether `incident` has a hold in place.
    pub fn held(&self, incident: &str) -> bool {
        self.incidents
            .get(incident)
            .is_some_and(|c| !c.holds.is_empty())
    }

    /// Every object of `incident`: its segments and the packs its artifacts
    /// reference.
    pub fn objects(&self, incident: &str) -> BTreeSet<String> {
        let Some(c) = self.incidents.get(incident) else {
            return BTreeSet::new();
        };
        c.segments
            .iter()
            .map(|s| layout::segment_path(*s))
            .chain(c.packs.iter().map(layout::pack_path))
            .collect()
    }

    /// Every object a hold in place covers, with the first incident and
    /// hold covering it.
    pub fn covered(&self) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for (id, c) in &self.incidents {
            let Some((hold, _)) = c.holds.iter().next() else {
                continue;
            };
            for key in self.objects(id) {
                out.entry(key).or_insert_with(|| (id.clone(), hold.clone()));
            }
        }
        out
    }
}

/// Protects every object of `incident` (after a hold was placed, or after
/// objects were added to a held incident).
pub fn place(store: &Store, index: &HoldIndex, incident: &str) -> Applied {
    apply(store, index.objects(incident), true)
}

/// Lifts the protection of the objects of `incident` that no hold in place
/// still covers (after its last hold was released). Nothing is lifted
/// while the incident itself is still held.
pub fn lift(store: &Store, index: &HoldIndex, incident: &str) -> Applied {
    if index.held(incident) {
        return Applied {
            objects: index.objects(incident).len(),
            ..Applied::default()
        };
    }
    let still = index.covered();
    let keys = index
        .objects(incident)
        .into_iter()
        .filter(|k| !still.contains_key(k))
        .collect();
    apply(store, keys, false)
}

fn apply(store: &Store, keys: BTreeSet<String>, on: bool) -> Applied {
    let mut out = Applied {
        objects: keys.len(),
        ..Applied::default()
    };
    match store.hold_support() {
        Ok(None) => {}
        Ok(Some(why)) => {
            out.unsupported = Some(why);
            return out;
        }
        Err(e) => {
            out.unsupported = Some(e.to_string());
            return out;
        }
    }
    for key in keys {
        match store.set_hold(&key, on) {
            Ok(true) => out.changed += 1,
            Ok(false) => {}
            Err(e) => out.failed.push((key, e.to_string())),
        }
    }
    out
}

/// The objects of `covered` ([`HoldIndex::covered`]) that the store does
/// not protect.
///
/// # Errors
/// The store could not be asked.
pub fn check(
    store: &Store,
    covered: &BTreeMap<String, (String, String)>,
) -> Result<Vec<Unprotected>, StoreError> {
    if covered.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(why) = store.hold_support()? {
        // One finding per incident: every object of it is unprotected.
        let mut out: Vec<Unprotected> = Vec::new();
        for (key, (incident, hold)) in covered {
            if out.iter().any(|u| &u.incident == incident) {
                continue;
            }
            let n = covered.values().filter(|(i, _)| i == incident).count();
            out.push(Unprotected {
                key: key.clone(),
                incident: incident.clone(),
                hold: hold.clone(),
                why: format!("{why}: none of the {n} objects of the incident is protected"),
            });
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for (key, (incident, hold)) in covered {
        match store.protection(key)? {
            Protection::Held => {}
            // A missing object is a finding of the segment or pack phase.
            Protection::Missing => {}
            Protection::Open(why) => out.push(Unprotected {
                key: key.clone(),
                incident: incident.clone(),
                hold: hold.clone(),
                why,
            }),
        }
    }
    Ok(out)
}
