//! The test vectors of `tests/vectors/` (FORMAT.md §1, §13; STYLE.md §2).
//!
//! Each `*.vault` file is a small vault, written by the deterministic
//! generator `examples/gen_vectors.rs` (`scripts/gen-vectors.sh`), with an
//! `expect:` header naming the finding a verifier MUST report for it, or `ok`.
//! These tests check that:
//! - `verify` reports every vector's expected finding (and, for `ok` and for
//!   information kinds, no damage);
//! - the vectors cover every finding kind of [`Kind::ALL`], except the ones in
//!   [`SKIPPED_KINDS`];
//! - the committed vectors are exactly what the generator writes, so that a
//!   format change cannot land without its regenerated, reviewable vectors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use custody::hash::Sha256Digest;
use custody::store::Store;
use custody::verify::{self, Kind, Options, Report, Severity};

#[allow(dead_code)]
#[path = "../examples/gen_vectors.rs"]
mod generator;

/// Finding kinds no vector covers, each with the reason.
const SKIPPED_KINDS: &[(&str, &str)] = &[
    (
        "hold_missing",
        "a vector is a tree of bytes: it cannot carry file permissions or an S3 legal hold; \
         tests/lifecycle.rs (local files) and tests/s3.rs (moto, Ceph) produce it from real vaults",
    ),
    (
        "checkpoint_unwitnessed",
        "it depends on the witnesses the verifier trusts, which a vector does not name; \
         tests/witness.rs produces it with three witness processes on loopback",
    ),
];

/// One parsed vector file.
#[derive(Debug)]
struct Vector {
    /// The file name without `.vault`.
    name: String,
    /// `ok` or a finding kind.
    expect: Expect,
    /// The vault id to pin, if any.
    pin: Option<Sha256Digest>,
    /// A saved checkpoint to verify against, if any.
    trusted: Option<Vec<u8>>,
    /// Object key to bytes.
    objects: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Finding(Kind),
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Finding(k) => k.as_str(),
        }
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Object keys are relative paths of plain components, so materializing a
/// vector cannot write outside its directory.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// Parses a vector file strictly: the header lines in order, then at least
/// one object line, keys strictly ascending, canonical base64, one final
/// newline.
fn parse(name: &str, text: &str) -> Result<Vector, String> {
    let body = text
        .strip_suffix('\n')
        .ok_or("the file does not end with a newline")?;
    let mut lines = body.split('\n').peekable();
    let expect = lines
        .next()
        .and_then(|l| l.strip_prefix("expect: "))
        .ok_or("line 1 is not `expect: <kind or ok>`")?;
    let expect = if expect == "ok" {
        Expect::Ok
    } else {
        Expect::Finding(
            Kind::ALL
                .iter()
                .copied()
                .find(|k| k.as_str() == expect)
                .ok_or_else(|| format!("unknown expect value {expect:?}"))?,
        )
    };
    let about = lines
        .next()
        .and_then(|l| l.strip_prefix("about: "))
        .ok_or("line 2 is not `about: <text>`")?;
    if about.trim().is_empty() {
        return Err("empty `about:`".into());
    }
    let pin = match lines.next_if(|l| l.starts_with("pin: ")) {
        Some(l) => {
            Some(Sha256Digest::parse(&l["pin: ".len()..]).map_err(|e| format!("bad `pin:`: {e}"))?)
        }
        None => None,
    };
    let trusted = match lines.next_if(|l| l.starts_with("trusted: ")) {
        Some(l) => Some(
            B64.decode(&l["trusted: ".len()..])
                .map_err(|e| format!("bad `trusted:`: {e}"))?,
        ),
        None => None,
    };
    let mut objects = BTreeMap::new();
    let mut last: Option<&str> = None;
    for (i, line) in lines.enumerate() {
        let bad = |why: &str| format!("object line {}: {why}", i + 1);
        let mut parts = line.split(' ');
        let (Some("object"), Some(key), Some(b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not `object <key> <base64>`"));
        };
        if !valid_key(key) {
            return Err(bad(&format!("invalid key {key:?}")));
        }
        if last.is_some_and(|l| l >= key) {
            return Err(bad(&format!("key {key:?} is not after {last:?}")));
        }
        last = Some(key);
        let bytes = B64
            .decode(b64)
            .map_err(|e| bad(&format!("bad base64: {e}")))?;
        objects.insert(key.to_owned(), bytes);
    }
    if objects.is_empty() {
        return Err("no objects".into());
    }
    Ok(Vector {
        name: name.to_owned(),
        expect,
        pin,
        trusted,
        objects,
    })
}

/// Every `*.vault` file in `dir`, by name, as raw bytes.
fn read_vault_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("couldn't list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "vault"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("couldn't read {}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

/// Every committed vector, parsed; a malformed file fails the test.
fn load_all() -> Vec<Vector> {
    let files = read_vault_files(&vectors_dir());
    assert!(
        !files.is_empty(),
        "no vectors in {}: run scripts/gen-vectors.sh",
        vectors_dir().display()
    );
    files
        .iter()
        .map(|(file, bytes)| {
            let name = file.strip_suffix(".vault").expect("filtered on .vault");
            let text = std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("{file} is not UTF-8"));
            parse(name, text).unwrap_or_else(|e| panic!("{file}: {e}"))
        })
        .collect()
}

/// Writes the vector's objects into a fresh directory and verifies it fully.
fn verify_vector(v: &Vector) -> Report {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (key, bytes) in &v.objects {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().expect("keys are relative"))
            .expect("create the object's directory");
        std::fs::write(&path, bytes).expect("write the object");
    }
    let store = Store::open(dir.path().to_str().expect("a UTF-8 temporary path"))
        .expect("open the materialized vault");
    let opts = Options {
        quick: false,
        vault_id: v.pin,
        trusted: v.trusted.clone(),
        ..Options::default()
    };
    verify::verify(&store, &opts, &custody::progress::Silent)
        .unwrap_or_else(|e| panic!("{}: verification could not run: {e}", v.name))
}

/// Why the report does not meet the vector's expectation, if it does not.
fn check(v: &Vector, report: &Report) -> Option<String> {
    let problem = match v.expect {
        Expect::Ok if report.damaged() => "expected no damage",
        Expect::Ok => return None,
        Expect::Finding(kind) if !report.has(kind) => "the expected finding is missing",
        // A damage vector must be judged damaged; an information vector is a
        // vault that verifies (FORMAT.md §11: crash leftovers are not damage).
        Expect::Finding(kind) if report.damaged() != (kind.severity() == Severity::Damage) => {
            if report.damaged() {
                "expected information only, but damage was reported"
            } else {
                "expected damage, but the report is not damaged"
            }
        }
        Expect::Finding(_) => return None,
    };
    let findings: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("  {} {}: {}", f.kind.as_str(), f.object, f.message))
        .collect();
    Some(format!(
        "{}: expect {}: {problem}; findings:\n{}\nreport: {}",
        v.name,
        v.expect.as_str(),
        findings.join("\n"),
        serde_json::to_string_pretty(report).expect("a report serialises")
    ))
}

#[test]
fn every_vector_verifies_as_expected() {
    let mut failures = Vec::new();
    for v in load_all() {
        let report = verify_vector(&v);
        if let Some(p) = check(&v, &report) {
            failures.push(p);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// STYLE.md §2: every finding kind has a vector, or a stated reason not to.
#[test]
fn vectors_cover_every_finding_kind() {
    let expects: BTreeSet<&str> = load_all().iter().map(|v| v.expect.as_str()).collect();
    assert!(expects.contains("ok"), "no `expect: ok` vector");
    let skipped: BTreeMap<&str, &str> = SKIPPED_KINDS.iter().copied().collect();
    for name in skipped.keys() {
        assert!(
            Kind::ALL.iter().any(|k| k.as_str() == *name),
            "SKIPPED_KINDS names no finding kind: {name}"
        );
        assert!(
            !expects.contains(name),
            "{name} is in SKIPPED_KINDS but has a vector: remove it from the list"
        );
    }
    let uncovered: Vec<&str> = Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| !expects.contains(k) && !skipped.contains_key(k))
        .collect();
    assert!(
        uncovered.is_empty(),
        "finding kinds without a vector (add one to examples/gen_vectors.rs, or to SKIPPED_KINDS with a reason): {uncovered:?}"
    );
}

/// The committed vectors are what the generator writes today: a change to
/// the format (or to what the base vault holds) must come with regenerated
/// vectors, so the diff of `tests/vectors/` shows it.
#[test]
fn vectors_are_up_to_date() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    generator::generate(dir.path()).expect("the generator runs");
    let fresh = read_vault_files(dir.path());
    let committed = read_vault_files(&vectors_dir());
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        names(&committed),
        names(&fresh),
        "the set of vectors changed: run scripts/gen-vectors.sh and review the diff"
    );
    let stale: Vec<&String> = fresh
        .iter()
        .filter(|(name, bytes)| committed.get(*name) != Some(*bytes))
        .map(|(name, _)| name)
        .collect();
    assert!(
        stale.is_empty(),
        "vectors differ from what the generator writes: {stale:?}; run scripts/gen-vectors.sh and review the diff"
    );
}

#[test]
fn parser_is_strict() {
    let good = "expect: ok\nabout: x\nobject a/b AAE=\nobject c AA==\n";
    assert!(parse("good", good).is_ok());
    let pinned = format!(
        "expect: ok\nabout: x\npin: {}\nobject a AA==\n",
        "ab".repeat(32)
    );
    assert!(parse("pinned", &pinned).unwrap().pin.is_some());
    for bad in [
        "expect: ok\nabout: x\nobject a AA==",     // no final newline
        "expect: nope\nabout: x\nobject a AA==\n", // unknown kind
        "about: x\nexpect: ok\nobject a AA==\n",   // header order
        "expect: ok\nabout: \nobject a AA==\n",    // empty about
        "expect: ok\nabout: x\n",                  // no objects
        "expect: ok\nabout: x\nobject c AA==\nobject a AA==\n", // unsorted
        "expect: ok\nabout: x\nobject a AA==\nobject a AA==\n", // duplicate
        "expect: ok\nabout: x\nobject ../a AA==\n", // escapes the dir
        "expect: ok\nabout: x\nobject a AB==\n",   // non-canonical base64
        "expect: ok\nabout: x\nobject a AA== x\n", // trailing field
        "expect: ok\nabout: x\npin: AB\nobject a AA==\n", // bad pin
        "expect: ok\nabout: x\n\nobject a AA==\n", // blank line
    ] {
        assert!(parse("bad", bad).is_err(), "accepted: {bad:?}");
    }
}
