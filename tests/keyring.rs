//! The vault's own keys (FORMAT.md §5 (key lifecycle)): a rotation signed
//! by both keys, the old key refused and detected after it, a revocation
//! that makes what the stolen key signed suspect, and proofs and manifests
//! that still check out offline after a rotation.

use std::path::Path;

use serde_json::Value;

use crate::common::{TestVault, copy_dir, kinds, log_text, ok};

/// A note an insider writes under incident `incident`.
pub(crate) fn insider_note(incident: &str, text: &str) -> custody::segment::Entry {
    custody::segment::Entry::Note(custody::segment::Note {
        incident: incident.into(),
        text: text.into(),
        at: custody::time::Time::now(),
        actor: custody::segment::Actor {
            name: "insider".into(),
            os_user: "insider".into(),
            as_reason: None,
            host: "h".into(),
            tool: custody::segment::Tool::this(),
        },
    })
}

/// Signs a segment at the end of the vault at `dir` with `key`, as an
/// insider holding a copied key file would (the writer itself refuses).
fn forge_append(dir: &Path, key: &Path) {
    use custody::segment::{SEGMENT_PAYLOAD_TYPE, Segment};
    let store = custody::store::Store::open(dir.to_str().unwrap()).unwrap();
    let vault = custody::vault::Vault::open(store.clone()).unwrap();
    let signer = custody::keys::VaultSigner::load(key).unwrap();
    let seg = Segment {
        format: custody::segment::FORMAT_VERSION,
        vault: Some(vault.id()),
        seq: vault.size(),
        prev: vault.index().last_leaf,
        sealed_at: custody::time::Time::now(),
        entries: vec![insider_note("INC-1", "nothing happened here")],
    };
    let bytes = custody::dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&signer]);
    store
        .put_once(
            &custody::layout::segment_path(seg.seq),
            bytes::Bytes::from(bytes),
        )
        .unwrap();
}

#[test]
fn rotation_and_revocation_judge_every_signature_by_its_position() {
    let v = TestVault::new();
    v.write("auth.log", &log_text(20_000, 1));
    v.declare_data("INC-1");
    let saved = v.tmp.path().join("saved.checkpoint");
    let cp = ok(&v.cmd(&["checkpoint"]).output().unwrap());
    std::fs::write(&saved, cp).unwrap();
    // A copy of the key file leaves with an insider.
    let stolen = v.tmp.path().join("stolen.key");
    std::fs::copy(&v.key, &stolen).unwrap();

    let out = ok(&v
        .cmd(&["key", "rotate", "--reason", "yearly", "--json"])
        .output()
        .unwrap());
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new_key = rotated["new_key_file"].as_str().unwrap().to_owned();
    let old_id = rotated["old"].as_str().unwrap().to_owned();

    // The old key may no longer write; the new one does.
    let data = v.data.to_str().unwrap().to_owned();
    let out = v.declare("INC-2", &["--path", &data]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rotated out"),
        "{out:?}"
    );
    let out = crate::common::custody()
        .args([
            "declare", "INC-2", "--title", "t", "--quiet", "--path", &data,
        ])
        .arg("--vault")
        .arg(&v.vault)
        .args(["--key", &new_key])
        .output()
        .unwrap();
    ok(&out);
    v.assert_intact();

    // (b) The insider appends with the old key: detected.
    let forged = v.tmp.path().join("forged");
    copy_dir(&v.vault, &forged);
    forge_append(&forged, &stolen);
    crate::common::assert_finds(&forged, &[], "segment_retired_key");

    // (a) The insider rewrites a segment from before the rotation and
    // re-signs it: the rotation segment, which only the new key could
    // re-sign, no longer chains to it.
    let rewritten = v.tmp.path().join("rewritten");
    copy_dir(&v.vault, &rewritten);
    {
        use custody::segment::{SEGMENT_PAYLOAD_TYPE, Segment};
        let p = rewritten.join(custody::layout::segment_path(1));
        let env: custody::dsse::Envelope =
            serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(env.payload)
            .unwrap();
        let mut seg = Segment::decode(&payload).unwrap();
        seg.sealed_at = custody::time::Time::from_unix(1_700_000_000);
        let signer = custody::keys::VaultSigner::load(&stolen).unwrap();
        std::fs::write(
            &p,
            custody::dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&signer]),
        )
        .unwrap();
    }
    crate::common::assert_finds(&rewritten, &[], "chain_broken");

    // Revocation: what the old key alone signed since the compromise is
    // suspect, unless the checkpoint saved before covers it.
    let out = v
        .cmd(&[
            "key",
            "revoke",
            &old_id,
            "--compromised-since",
            "2000-01-01T00:00:00Z",
            "--reason",
            "copied by an insider",
        ])
        .env("CUSTODY_KEY", &new_key)
        .output()
        .unwrap();
    ok(&out);
    let (code, report) = v.verify();
    assert_eq!(code, 1, "{report:#}");
    let suspect = kinds(&report)
        .iter()
        .filter(|k| *k == "signed_in_compromise_window")
        .count();
    assert!(suspect >= 1, "{report:#}");
    let (code, report) = TestVault::verify_dir(&v.vault, &["--trusted", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "the saved checkpoint covers them: {report:#}");

    // The listing says who may sign what.
    let list: Value =
        serde_json::from_str(&ok(&v.cmd(&["key", "list", "--json"]).output().unwrap())).unwrap();
    let status: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["revoked", "current"]);

    // The current key cannot be revoked; a proof and a manifest made after
    // the rotation check out offline.
    let new_id = rotated["new"].as_str().unwrap();
    let out = v
        .cmd(&[
            "key",
            "revoke",
            new_id,
            "--compromised-since",
            "2000-01-01T00:00:00Z",
            "--reason",
            "x",
        ])
        .env("CUSTODY_KEY", &new_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let proof = v.tmp.path().join("proof.json");
    ok(&v
        .cmd(&["prove", "INC-2", "--out", proof.to_str().unwrap()])
        .env("CUSTODY_KEY", &new_key)
        .output()
        .unwrap());
    ok(&crate::common::custody()
        .args([
            "verify-proof",
            proof.to_str().unwrap(),
            "--vault-id",
            &v.vault_id,
        ])
        .output()
        .unwrap());
    let manifest = v.tmp.path().join("manifest.json");
    ok(&v
        .cmd(&["manifest", "INC-2", "--out", manifest.to_str().unwrap()])
        .env("CUSTODY_KEY", &new_key)
        .output()
        .unwrap());
    ok(&crate::common::custody()
        .args([
            "verify-manifest",
            manifest.to_str().unwrap(),
            "--vault-id",
            &v.vault_id,
        ])
        .output()
        .unwrap());
}

/// A key file encrypted under a passphrase (age, scrypt): usable with the
/// passphrase from the environment, refused without it or with a wrong
/// one, and never in clear on disk.
#[test]
fn passphrase_encrypted_key_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("vault");
    let key = tmp.path().join("keys/vault.key");
    let pass = "correct horse battery staple";
    let init = |extra: &[&str]| {
        crate::common::custody()
            .args(["init", "--origin", "test.custody.example/enc", "--vault"])
            .arg(&vault)
            .arg("--key")
            .arg(&key)
            .args(extra)
            .env("CUSTODY_KEY_PASSPHRASE", pass)
            .output()
            .unwrap()
    };
    ok(&init(&["--encrypt-key"]));
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE+KEY"), "the key is in clear");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.log"), b"line\n").unwrap();
    let declare = |incident: &str, passphrase: Option<&str>| {
        let mut c = crate::common::custody();
        c.args(["declare", incident, "--title", "t", "--quiet", "--path"])
            .arg(&data)
            .arg("--vault")
            .arg(&vault)
            .arg("--key")
            .arg(&key)
            .env_remove("CUSTODY_KEY_PASSPHRASE")
            .write_stdin(Vec::new());
        if let Some(p) = passphrase {
            c.env("CUSTODY_KEY_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    ok(&declare("INC-E1", Some(pass)));
    let out = declare("INC-E2", Some("not the passphrase"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(
        !err.contains("not the passphrase"),
        "the passphrase is echoed: {err}"
    );
    let out = declare("INC-E2", None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CUSTODY_KEY_PASSPHRASE"),
        "{out:?}"
    );
    // A rotation never takes the old key's passphrase from the
    // environment for the new key: it needs its own.
    let rotate = |new_pass: Option<&str>| {
        let mut c = crate::common::custody();
        c.args(["key", "rotate", "--encrypt-key", "--json", "--vault"])
            .arg(&vault)
            .arg("--key")
            .arg(&key)
            .env("CUSTODY_KEY_PASSPHRASE", pass)
            .env_remove("CUSTODY_NEW_KEY_PASSPHRASE")
            .write_stdin(Vec::new());
        if let Some(p) = new_pass {
            c.env("CUSTODY_NEW_KEY_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    let out = rotate(None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CUSTODY_NEW_KEY_PASSPHRASE"),
        "{out:?}"
    );
    let out = rotate(Some("another long passphrase"));
    let r: Value = serde_json::from_str(&ok(&out)).unwrap();
    let new_key = r["new_key_file"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(new_key)
            .unwrap()
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
    );
}
