//! What the storage backend really enforces (`custody doctor`): several
//! S3-compatible servers accept conditional writes and retention settings
//! without enforcing them, so custody probes instead of trusting
//! (FORMAT.md §11.1).
//!
//! The probes write canary objects under `doctor/<random>/`, which no
//! reader interprets; they are deleted afterwards where the backend allows.

use bytes::Bytes;
use serde::Serialize;

use crate::store::{Put, Store, StoreError};

/// The prefix canary objects live under.
pub const PREFIX: &str = "doctor/";

/// One probe's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Its name: `create_once`, `compare_and_swap`, `overwrite_refused`,
    /// `delete_refused`, and on S3 `legal_hold` and `retention`.
    pub name: &'static str,
    /// Whether the property holds; `None` when it does not apply here.
    pub holds: Option<bool>,
    /// What was seen.
    pub detail: String,
}

/// All probes of one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub location: String,
    /// In order.
    pub probes: Vec<Probe>,
    /// Whether several writers may append at once: conditional create
    /// holds, and the checkpoint pointer moves by an atomic swap (or a lock).
    pub multi_writer_safe: bool,
    /// Whether the backend itself refuses to overwrite or delete evidence
    /// (retention, legal hold), beyond custody detecting it.
    pub immutable: bool,
}

fn nonce() -> String {
    let b: [u8; 8] = rand::random();
    hex::encode(b)
}

/// Runs every probe against `store`.
///
/// # Errors
/// Storage failures that are not an answer to a probe.
pub fn probe(store: &Store) -> Result<Report, StoreError> {
    let dir = format!("{PREFIX}{}/", nonce());
    let once = format!("{dir}once");
    let ptr = format!("{dir}pointer");
    let mut probes = Vec::new();

    // 1. A second create of the same key must be refused.
    let first = store.put_once(&once, Bytes::from_static(b"first"))?;
    let second = store.put_once(&once, Bytes::from_static(b"second"))?;
    let kept = store.get(&once, 64)?;
    let (holds, detail) = match (first, second, kept.as_deref()) {
        (Put::Created, Put::AlreadyExists, Some(b"first")) => {
            (true, "a second create of the same key was refused".to_string())
        }
        (Put::Created, Put::Created, _) => (
            false,
            "a second create of the same key was ACCEPTED (the server ignores If-None-Match): two writers can both believe they wrote the same segment".to_string(),
        ),
        (_, _, k) => (
            false,
            format!(
                "unexpected: first create {first:?}, second {second:?}, content now {:?}",
                k.map(String::from_utf8_lossy)
            ),
        ),
    };
    let create_once = holds;
    probes.push(Probe {
        name: "create_once",
        holds: Some(holds),
        detail,
    });

    // 2. The pointer's compare-and-swap: a write with a stale ETag must be
    // refused.
    if store.local_root().is_some() {
        probes.push(Probe {
            name: "compare_and_swap",
            holds: None,
            detail: "local vault: the checkpoint pointer is replaced under an exclusive lock"
                .into(),
        });
    } else {
        store.put_once(&ptr, Bytes::from_static(b"1"))?;
        let tag = store
            .get_tagged(&ptr, 64)?
            .and_then(|(_, t)| t)
            .unwrap_or_default();
        let mut unquoted = false;
        let mut swapped = store.put_if_match(&ptr, Bytes::from_static(b"2"), &tag)?;
        if !swapped {
            unquoted = true;
            swapped = store.put_if_match(&ptr, Bytes::from_static(b"2"), tag.trim_matches('"'))?;
        }
        let stale = if unquoted {
            tag.trim_matches('"').to_owned()
        } else {
            tag.clone()
        };
        let stale_refused = !store.put_if_match(&ptr, Bytes::from_static(b"3"), &stale)?;
        let now = store.get(&ptr, 64)?;
        let holds = swapped && stale_refused && now.as_deref() == Some(b"2");
        probes.push(Probe {
            name: "compare_and_swap",
            holds: Some(holds),
            detail: match (swapped, stale_refused) {
                (true, true) if unquoted => {
                    "atomic, but the server matches If-Match only against the unquoted ETag (custody adapts)".into()
                }
                (true, true) => "a write with the current ETag succeeded, one with a stale ETag was refused".into(),
                (false, _) => "a write with the current ETag was refused, quoted or not".into(),
                (true, false) => "a write with a STALE ETag was accepted: the pointer can move backwards".into(),
            },
        });
    }

    // 3. and 4. Does the backend itself keep evidence from being replaced
    // or removed?
    let overwritten = store.overwrite(&once, Bytes::from_static(b"third"))?;
    let now = store.get(&once, 64)?;
    let refused = !overwritten || now.as_deref() == Some(b"first");
    probes.push(Probe {
        name: "overwrite_refused",
        holds: Some(refused),
        detail: if refused {
            "an unconditional overwrite was refused (retention or legal hold)".into()
        } else {
            "an unconditional overwrite succeeded: anyone with write credentials can replace an object; custody detects it (verify), the backend does not prevent it".into()
        },
    });
    let deleted = store.delete(&once)?;
    let gone = store.get(&once, 64)?.is_none();
    let refused = !deleted || !gone;
    probes.push(Probe {
        name: "delete_refused",
        holds: Some(refused),
        detail: if refused {
            "a delete was refused (retention or legal hold)".into()
        } else {
            "a delete succeeded (on a versioned bucket, a delete marker hides the object from readers): custody detects a removal, the backend does not prevent it".into()
        },
    });
    // 5. and 6. On S3: does a legal hold, and the bucket's default
    // retention, keep one version from being deleted for good?
    if let Some(lock) = store.bucket_lock()? {
        probe_lock(store, &lock, &format!("{dir}held"), &mut probes)?;
    }
    // Tidy up where the backend allows; leftovers are ignored by readers.
    let _ = store.delete(&ptr);
    let cas_ok = probes
        .iter()
        .find(|p| p.name == "compare_and_swap")
        .is_some_and(|p| p.holds != Some(false));
    let held = |n: &str| probes.iter().any(|p| p.name == n && p.holds == Some(true));
    let immutable = probes
        .iter()
        .filter(|p| p.name.ends_with("_refused"))
        .all(|p| p.holds == Some(true))
        || held("retention");
    Ok(Report {
        location: store.location().to_owned(),
        probes,
        multi_writer_safe: create_once && cas_ok,
        immutable,
    })
}

/// Probes `legal_hold` and `retention` on a bucket: a version under legal
/// hold, then (hold lifted) under the default retention, must not be
/// deletable by version id, the one delete that destroys data on a
/// versioned bucket.
fn probe_lock(
    store: &Store,
    lock: &crate::s3::BucketLock,
    key: &str,
    probes: &mut Vec<Probe>,
) -> Result<(), StoreError> {
    if !lock.enabled {
        for name in ["legal_hold", "retention"] {
            probes.push(Probe {
                name,
                holds: Some(false),
                detail: "the bucket has no Object Lock: holds are recorded but not enforced, and any version can be deleted by whoever may delete".into(),
            });
        }
        return Ok(());
    }
    store.put_once(key, Bytes::from_static(b"held"))?;
    let version = store.object_lock(key)?.and_then(|l| l.version_id);
    let Some(version) = version else {
        probes.push(Probe {
            name: "legal_hold",
            holds: Some(false),
            detail: "the server reported no version id for an object in an Object Lock bucket"
                .into(),
        });
        return Ok(());
    };
    let refused = |store: &Store| -> Result<(bool, String), StoreError> {
        match store.delete_version(key, &version) {
            Ok(()) => Ok((false, "deleted".into())),
            Err(StoreError::S3(e)) => {
                let still = store.object_lock(key)?.is_some();
                Ok((still, e.code.unwrap_or(e.what)))
            }
            Err(e) => Err(e),
        }
    };
    store.set_hold(key, true)?;
    let (held, answer) = refused(store)?;
    probes.push(Probe {
        name: "legal_hold",
        holds: Some(held),
        detail: if held {
            format!("deleting a version under legal hold was refused ({answer})")
        } else {
            "a version under legal hold was DELETED: the server does not enforce legal holds".into()
        },
    });
    if !held {
        return Ok(());
    }
    store.set_hold(key, false)?;
    match lock.default_retention {
        None => probes.push(Probe {
            name: "retention",
            holds: None,
            detail: "no default retention: outside a hold, whoever may delete versions can remove evidence (custody init --object-lock sets one)".into(),
        }),
        Some((mode, days)) => {
            let (kept, answer) = refused(store)?;
            probes.push(Probe {
                name: "retention",
                holds: Some(kept),
                detail: if kept {
                    format!("deleting a version under the default {mode} retention ({days} days) was refused ({answer})")
                } else {
                    format!("a version under the default {mode} retention was DELETED: the server does not enforce retention")
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_vault_keeps_create_once_but_not_immutability() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let r = probe(&store).unwrap();
        let get = |n: &str| r.probes.iter().find(|p| p.name == n).unwrap().holds;
        assert_eq!(get("create_once"), Some(true));
        assert_eq!(get("compare_and_swap"), None);
        assert_eq!(get("overwrite_refused"), Some(false));
        assert!(r.multi_writer_safe);
        assert!(!r.immutable);
    }
}
