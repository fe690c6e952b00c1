//! Key material as evidence (FORMAT.md §9.12): a `keys` source records every
//! key by its public part, fingerprints and commitment, and never puts a
//! private key in the vault in clear.
//!
//! The fixtures are generated on every run by pyca/cryptography and jwcrypto
//! (tests/keys_fixtures.py), which also compute what custody must agree
//! with: RFC 7638 thumbprints, SPKI SHA-256 fingerprints and commitments.
//! Sealed key files are decrypted by the `age` command (Go age), not by
//! custody. scripts/test.sh installs all three.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::common::{TestVault, ok, require_tool, walk};

/// The test venv's python when it has jwcrypto and cryptography.
fn fixture_python() -> Option<String> {
    crate::common::python_with(&["jwcrypto", "cryptography"])
}

/// Runs the fixture generator into `dir`; returns what it expects.
fn fixtures(py: &str, dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys_fixtures.py");
    ok(&Command::new(py).arg(script).arg(dir).output().unwrap());
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap()
}

/// An age identity made by `age-keygen`: (identity file, recipient).
fn age_identity(dir: &Path) -> (PathBuf, String) {
    let id = dir.join("auditor.agekey");
    ok(&Command::new("age-keygen")
        .arg("-o")
        .arg(&id)
        .output()
        .unwrap());
    let text = std::fs::read_to_string(&id).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_owned();
    (id, recipient)
}

/// Every byte string a reader of the vault could get at without a key:
/// each file as stored, each pack's chunks decompressed, each segment's
/// signed payload decoded.
fn readable_bytes(vault: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for p in walk(vault) {
        let raw = std::fs::read(&p).unwrap();
        if let Some(frames) = raw.strip_prefix(custody::ingest::PACK_MAGIC.as_slice()) {
            out.push((p.clone(), zstd::stream::decode_all(frames).unwrap()));
        }
        if let Ok(env) = serde_json::from_slice::<Value>(&raw)
            && let Some(payload) = env["payload"].as_str()
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .unwrap();
            out.push((p.clone(), decoded));
        }
        out.push((p, raw));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn key_files(snapshot: &Value) -> Vec<&Value> {
    snapshot["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["key_file"])
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

#[test]
fn keys_agree_with_independent_implementations_and_no_secret_is_stored() {
    let Some(py) = fixture_python() else { return };
    if !require_tool("age") || !require_tool("age-keygen") {
        return;
    }
    let v = TestVault::new();
    let fx = v.tmp.path().join("fixtures");
    let expected = fixtures(&py, &fx);
    let keys_dir = fx.join("keys");
    let (identity, recipient) = age_identity(v.tmp.path());
    let discovered = expected["discovered_at"].as_str().unwrap();
    let out = v.declare(
        "INC-KEYS",
        &[
            "--keys",
            keys_dir.to_str().unwrap(),
            "--seal-to",
            &recipient,
            "--discovered-at",
            discovered,
            "--json",
        ],
    );
    let summary: Value = serde_json::from_slice(ok(&out).as_bytes()).unwrap();
    let files = expected["files"].as_object().unwrap();
    assert_eq!(summary["key_files"], files.len());

    let out = v.cmd(&["keys", "INC-KEYS", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "findings exit 1: {out:?}");
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Every file and key, against pyca/cryptography and jwcrypto.
    let recorded = key_files(&snap);
    assert_eq!(recorded.len(), files.len());
    for (name, want) in files {
        let got = recorded
            .iter()
            .find(|k| file_name(k["path"].as_str().unwrap()) == name)
            .unwrap_or_else(|| panic!("{name} not recorded"));
        assert_eq!(got["form"], want["form"], "{name}: {got:#}");
        assert_eq!(got["content"], want["content"], "{name}");
        assert_eq!(got["status"], "complete", "{name}");
        let want_keys = want["keys"].as_array().unwrap();
        let got_keys = got["keys"].as_array().unwrap();
        assert_eq!(got_keys.len(), want_keys.len(), "{name}: {got:#}");
        for (g, w) in got_keys.iter().zip(want_keys) {
            for field in ["part", "spki_sha256", "jwk_thumbprint", "commitment"] {
                if let Some(w) = w.get(field) {
                    assert_eq!(&g[field], w, "{name}: {field}");
                }
            }
            if let Some(i) = w.get("chain_index") {
                assert_eq!(&g["certificate"]["chain_index"], i, "{name}");
                assert_eq!(
                    &g["certificate"]["self_signed"], &w["self_signed"],
                    "{name}"
                );
            }
            if let Some(serial) = w.get("serial") {
                let s = g["certificate"]["serial"].as_str().unwrap();
                assert_eq!(
                    s.trim_start_matches('0'),
                    serial.as_str().unwrap(),
                    "{name}"
                );
            }
        }
        // The file's digest is the file's, whatever custody kept of it.
        let bytes = std::fs::read(keys_dir.join(name)).unwrap();
        assert_eq!(
            got["sha256"].as_str().unwrap(),
            custody::hash::Sha256Digest::of(&bytes).to_hex(),
            "{name}"
        );
        // Stored files come back as they were; sealed ones only through age.
        let path = got["path"].as_str().unwrap();
        let out = v.cmd(&["cat", "INC-KEYS", path]).output().unwrap();
        ok(&out);
        let cat = out.stdout;
        if want["content"] == "stored" {
            assert_eq!(cat, bytes, "{name}: stored bytes");
        } else {
            assert_ne!(cat, bytes, "{name}: must not be in clear");
            let sealed = v.tmp.path().join("sealed.age");
            std::fs::write(&sealed, &cat).unwrap();
            let plain = Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(&identity)
                .arg(&sealed)
                .output()
                .unwrap();
            assert!(plain.status.success(), "{name}: age -d: {plain:?}");
            assert_eq!(plain.stdout, bytes, "{name}: age decrypts to the file");
        }
    }

    // The findings, exactly.
    let got: BTreeSet<(String, String)> = snap["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let id = f["identity"].as_str().unwrap_or("");
            let what = match id.strip_prefix("spki:") {
                Some(h) if f["kind"] != "modified_after_discovery" => h.to_owned(),
                _ => file_name(f["places"][0].as_str().unwrap()).to_owned(),
            };
            (f["kind"].as_str().unwrap().to_owned(), what)
        })
        .collect();
    let want: BTreeSet<(String, String)> = expected["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let what = f["spki_sha256"]
                .as_str()
                .or(f["path"].as_str())
                .unwrap()
                .to_owned();
            (f["kind"].as_str().unwrap().to_owned(), what)
        })
        .collect();
    assert_eq!(
        got,
        want,
        "findings: missing {:?}, unexpected {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );

    // No private key byte string anywhere a vault reader can look (raw,
    // and with whitespace removed, as base64 is wrapped); the same search
    // finds every secret fixture's own needles in it (so it can fail).
    let hexes = |v: &Value| -> Vec<Vec<u8>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
            .collect()
    };
    let found_in = |bytes: &[u8], n: &[u8]| {
        let stripped: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        contains(bytes, n) || contains(&stripped, n)
    };
    let secret_files = expected["secret_files"].as_object().unwrap();
    assert!(secret_files.len() >= 10, "{}", secret_files.len());
    for (name, own) in secret_files {
        let bytes = std::fs::read(keys_dir.join(name)).unwrap();
        assert!(
            hexes(own).iter().any(|n| found_in(&bytes, n)),
            "{name}: its needles are not in it"
        );
    }
    let needles = hexes(&expected["secrets"]);
    for (path, bytes) in readable_bytes(&v.vault) {
        for n in &needles {
            assert!(
                !found_in(&bytes, n),
                "{} holds private key bytes {}",
                path.display(),
                hex::encode(&n[..8.min(n.len())])
            );
        }
    }
    // Nor in what `custody keys` prints (notes, problems).
    for n in &needles {
        assert!(
            !found_in(&out.stdout, n),
            "custody keys prints secret bytes"
        );
    }
    v.assert_intact();
}

/// Two snapshots: a key replaced in place, one removed, one added, one moved.
/// Without `--seal-to`, a private key file leaves only its description.
#[test]
fn keys_diff_shows_rotation_and_private_files_are_withheld() {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let v = TestVault::new();
    let dir = v.tmp.path().join("keyset");
    std::fs::create_dir_all(&dir).unwrap();
    let pem = |seed: u8| {
        let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        k.to_pkcs8_pem(Default::default()).unwrap().to_string()
    };
    std::fs::write(dir.join("token-signing.pem"), pem(1)).unwrap();
    std::fs::write(dir.join("old.pem"), pem(2)).unwrap();
    std::fs::write(dir.join("moving.pem"), pem(3)).unwrap();
    let d = dir.to_str().unwrap();
    ok(&v.declare("INC-A", &["--keys", d]));
    // Withheld: described, but `cat` has nothing to give.
    let out = v
        .cmd(&["cat", "INC-A", dir.join("old.pem").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let snap: Value =
        serde_json::from_slice(&v.cmd(&["keys", "INC-A", "--json"]).output().unwrap().stdout)
            .unwrap();
    for f in key_files(&snap) {
        assert_eq!(f["content"], "withheld", "{f:#}");
        assert_eq!(f["form"], "private");
    }
    // Rotate token-signing, drop old, add new, move moving.
    std::fs::write(dir.join("token-signing.pem"), pem(4)).unwrap();
    std::fs::remove_file(dir.join("old.pem")).unwrap();
    std::fs::write(dir.join("new.pem"), pem(5)).unwrap();
    // An old file: its key is stale at the default maximum age.
    ok(&Command::new("touch")
        .args(["-d", "2020-01-01T00:00:00Z"])
        .arg(dir.join("new.pem"))
        .output()
        .unwrap());
    std::fs::rename(dir.join("moving.pem"), dir.join("moved.pem")).unwrap();
    ok(&v.declare("INC-B", &["--keys", d]));
    let out = ok(&v
        .cmd(&["keys", "diff", "INC-A", "INC-B", "--json"])
        .output()
        .unwrap());
    let diff: Value = serde_json::from_slice(out.as_bytes()).unwrap();
    let names = |list: &str, field: &str| -> BTreeSet<String> {
        diff[list]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|x| x[field].as_array().unwrap().iter())
            .map(|p| file_name(p.as_str().unwrap()).to_owned())
            .collect()
    };
    let set = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        names("added", "places"),
        set(&["token-signing.pem", "new.pem"])
    );
    assert_eq!(
        names("removed", "places"),
        set(&["token-signing.pem", "old.pem"])
    );
    assert_eq!(names("moved", "before"), set(&["moving.pem"]));
    assert_eq!(names("moved", "after"), set(&["moved.pem"]));
    let replaced = diff["replaced"].as_array().unwrap();
    assert_eq!(replaced.len(), 1, "{diff:#}");
    assert!(
        replaced[0]["place"]
            .as_str()
            .unwrap()
            .ends_with("token-signing.pem")
    );
    // The human form says the same.
    let text = ok(&v.cmd(&["keys", "diff", "INC-A", "INC-B"]).output().unwrap());
    assert!(text.contains("replaced  at "), "{text}");
    // Stale by file time at the default 365 days; the config's
    // `[keys] max_age_days` and the flag move the line.
    let stale = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["keys", "INC-B", "--json"];
        args.extend_from_slice(extra);
        let snap: Value = serde_json::from_slice(&v.cmd(&args).output().unwrap().stdout).unwrap();
        snap["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "stale_key")
            .map(|f| file_name(f["places"][0].as_str().unwrap()).to_owned())
            .collect()
    };
    assert_eq!(stale(&[]), ["new.pem"]);
    let cfg = v.tmp.path().join("custody.toml");
    std::fs::write(&cfg, "[keys]\nmax_age_days = 100000\n").unwrap();
    assert!(stale(&["--config", cfg.to_str().unwrap()]).is_empty());
    let with_flag = stale(&["--config", cfg.to_str().unwrap(), "--max-age-days", "30"]);
    assert_eq!(with_flag, ["new.pem"]);
    v.assert_intact();
}

/// A seal-to that is not an age recipient is refused before anything is
/// written; `--seal-to` without `--keys` too.
#[test]
fn bad_seal_to_is_refused() {
    let v = TestVault::new();
    v.write("k.pem", b"x");
    let d = v.data.to_str().unwrap();
    let out = v.declare("INC-S", &["--keys", d, "--seal-to", "age1notarecipient"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("age X25519 recipient"));
    let out = v.declare("INC-S", &["--path", d, "--seal-to", "age1x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--seal-to applies to --keys"),
        "{out:?}"
    );
    let cp: Value =
        serde_json::from_str(&ok(&v.cmd(&["checkpoint", "--json"]).output().unwrap())).unwrap();
    assert_eq!(cp["size"], 1, "nothing written: {cp:#}");
}

/// A key file custody may not read (here: the vault's own signing key,
/// which is always refused) is in the snapshot as failed, never silently
/// missing, and the declare says so.
#[test]
fn a_key_file_that_cannot_be_read_is_recorded_failed() {
    let v = TestVault::new();
    let key_dir = v.key.parent().unwrap().to_str().unwrap().to_owned();
    let out = v.declare("INC-R", &["--keys", &key_dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = v.cmd(&["keys", "INC-R", "--json"]).output().unwrap();
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = key_files(&snap);
    assert_eq!(files.len(), 1, "{snap:#}");
    assert_eq!(files[0]["status"], "failed");
    assert_eq!(files[0]["content"], "withheld");
    assert!(
        files[0]["error"]
            .as_str()
            .unwrap()
            .contains("vault's own signing key"),
        "{snap:#}"
    );
}
