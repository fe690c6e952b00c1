//! The founding case, end to end (FORMAT.md §5, §10a, §14 (b)): evidence is
//! preserved under three witnesses (quorum two); an insider copies the
//! vault key; the operator rotates it and revokes the copy with a
//! compromise time; then the insider (a) rewrites an old segment and
//! re-signs the chain and the checkpoint, (b) appends forged segments after
//! the revocation, (c) hides a segment behind an older checkpoint, (d)
//! presents a forked history to a witness. Each is reported by `verify`, by
//! name, or refused by the witnesses; a witness down never stops
//! preservation.

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use crate::common::{TestVault, assert_finds, copy_dir, kinds, log_text, ok};
use crate::witness::start;

fn read_segment(dir: &Path, seq: u64) -> custody::segment::Segment {
    let bytes = std::fs::read(dir.join(custody::layout::segment_path(seq))).unwrap();
    let env: custody::dsse::Envelope = serde_json::from_slice(&bytes).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env.payload)
        .unwrap();
    custody::segment::Segment::decode(&payload).unwrap()
}

fn write_segment(
    dir: &Path,
    seg: &custody::segment::Segment,
    key: &custody::keys::VaultSigner,
) -> Vec<u8> {
    let bytes = custody::dsse::sign(
        custody::segment::SEGMENT_PAYLOAD_TYPE,
        &seg.encode(),
        &[key],
    );
    std::fs::write(dir.join(custody::layout::segment_path(seg.seq)), &bytes).unwrap();
    bytes
}

fn segments(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments")).unwrap().count() as u64
}

#[test]
fn an_insider_with_the_vault_key_is_detected_or_refused_at_every_step() {
    let v = TestVault::new();
    let vkey_of = |k: &custody::keys::VaultSigner| {
        custody::keys::PublicKey::note_verifier_key(&k.verifying_key(), k.name())
    };
    let old = custody::keys::VaultSigner::load(&v.key).unwrap();
    let old_vkey = vkey_of(&old);
    // Three witnesses, quorum two.
    let (wkeys, wvkeys) = crate::witness::witness_keys(v.tmp.path(), 3);
    let state = |i: usize| v.tmp.path().join(format!("w{i}-state"));
    let mut w: Vec<_> = (0..3)
        .map(|i| Some(start(&wkeys[i], &state(i), &[&old_vkey])))
        .collect();
    let cfg = v.tmp.path().join("custody.toml");
    let write_cfg = |w: &[Option<crate::witness::Running>]| {
        let mut c = String::from("witness_quorum = 2\n");
        for (i, vk) in wvkeys.iter().enumerate() {
            let port = w[i].as_ref().map_or(1, |r| r.port);
            c.push_str(&format!(
                "[[witness]]\nkey = \"{vk}\"\nurl = \"http://127.0.0.1:{port}\"\n"
            ));
        }
        std::fs::write(&cfg, c).unwrap();
    };
    write_cfg(&w);
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let data = v.data.to_str().unwrap().to_owned();

    // Evidence preserved and witnessed.
    v.write("auth.log", &log_text(30_000, 7));
    v.write("tokens.log", &log_text(5_000, 8));
    ok(&v.declare("INC-2025-1117", &["--path", &data, "--config", &cfg_s]));
    let witnessed_size = segments(&v.vault);
    // The insider copies the key; the clock moves past the witnesses' time.
    let stolen = custody::keys::VaultSigner::load(&v.key).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let compromised_since = custody::time::Time::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Inside the window the insider quietly adds a segment with the key.
    {
        let store = custody::store::Store::open(v.vault.to_str().unwrap()).unwrap();
        let mut vault = custody::vault::Vault::open(store).unwrap();
        let note = crate::keyring::insider_note("INC-2025-1117", "routine maintenance");
        vault
            .append(&stolen, vec![note], custody::time::Time::now)
            .unwrap();
        // And one backdated to before the compromise.
        let backdated = crate::keyring::insider_note("INC-2025-1117", "old news");
        vault
            .append(&stolen, vec![backdated], || {
                custody::time::Time::from_unix(1_600_000_000)
            })
            .unwrap();
    }

    // The operator rotates, tells the witnesses the new key, and revokes.
    let out = ok(&v
        .cmd(&["key", "rotate", "--reason", "key copied", "--json"])
        .output()
        .unwrap());
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new_key = rotated["new_key_file"].as_str().unwrap().to_owned();
    let new_vkey = vkey_of(&custody::keys::VaultSigner::load(Path::new(&new_key)).unwrap());
    w = (0..3)
        .map(|i| {
            drop(w[i].take());
            Some(start(&wkeys[i], &state(i), &[&new_vkey]))
        })
        .collect();
    write_cfg(&w);
    let out = v
        .cmd(&[
            "key",
            "revoke",
            rotated["old"].as_str().unwrap(),
            "--compromised-since",
            compromised_since.as_str(),
            "--reason",
            "copied by a former engineer",
        ])
        .env("CUSTODY_KEY", &new_key)
        .output()
        .unwrap();
    ok(&out);
    // One witness down: preservation goes on, and the quorum still holds.
    w[2] = None;
    v.write("after.log", b"after the rotation\n");
    let out = crate::common::custody()
        .args([
            "declare",
            "INC-2025-1117",
            "--title",
            "t",
            "--quiet",
            "--path",
            &data,
        ])
        .args(["--config", &cfg_s, "--key", &new_key, "--vault"])
        .arg(&v.vault)
        .output()
        .unwrap();
    ok(&out);
    // The honest vault: only the insider's segment is suspect; the evidence
    // witnessed before the compromise is not.
    let (code, report) = TestVault::verify_dir(&v.vault, &["--config", &cfg_s]);
    assert_eq!(code, 1, "{report:#}");
    let suspect: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "signed_in_compromise_window")
        .map(|f| f["object"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        suspect,
        [
            custody::layout::segment_path(witnessed_size),
            custody::layout::segment_path(witnessed_size + 1)
        ],
        "{report:#}"
    );
    assert!(
        kinds(&report)
            .iter()
            .all(|k| k == "signed_in_compromise_window"),
        "{report:#}"
    );

    // (a) Rewrite an old segment and re-sign the chain and the checkpoint
    // with the stolen key.
    let a = v.tmp.path().join("a");
    copy_dir(&v.vault, &a);
    let n = segments(&a);
    let mut tree = custody::log::Tree::new();
    tree.push(custody::log::leaf_hash(
        &std::fs::read(a.join(custody::layout::segment_path(0))).unwrap(),
    ));
    for seq in 1..n {
        let mut seg = read_segment(&a, seq);
        if seq == 1 {
            seg.sealed_at = custody::time::Time::from_unix(1_700_000_000);
        }
        // The previous segment as rewritten (its new leaf hash).
        seg.prev = Some(custody::log::leaf_hash(
            &std::fs::read(a.join(custody::layout::segment_path(seq - 1))).unwrap(),
        ));
        let bytes = write_segment(&a, &seg, &stolen);
        tree.push(custody::log::leaf_hash(&bytes));
    }
    std::fs::write(
        a.join("checkpoint"),
        custody::log::sign_checkpoint(&stolen, tree.size(), tree.root_at(tree.size())),
    )
    .unwrap();
    let (code, report) = TestVault::verify_dir(&a, &["--config", &cfg_s]);
    assert_eq!(code, 1);
    let k = kinds(&report);
    assert!(k.contains(&"log_rewritten".to_string()), "{report:#}");
    assert!(
        k.contains(&"key_entry_invalid".to_string())
            || k.contains(&"segment_retired_key".to_string()),
        "the rotation cannot be re-signed without the new key: {report:#}"
    );
    // (d) That forked history, presented to a witness: refused.
    let port = w[0].as_ref().unwrap().port;
    let forked = custody::log::sign_checkpoint(&stolen, tree.size(), tree.root_at(tree.size()));
    let mut ask = b"old 0\n\n".to_vec();
    ask.extend_from_slice(&forked);
    // The witnesses follow the new key only: the fork signed with the
    // stolen key is refused outright (403); a fork signed with the current
    // key gets 409 or 422 (tests/witness.rs).
    let (status, why) = crate::witness::post(port, &ask);
    assert_eq!(status, 403, "{why}");
    // Even a consistent extension of what the witness holds, signed with
    // the stolen key: the witness follows the new key only (403).
    let mut ext = custody::log::Tree::new();
    for seq in 0..segments(&v.vault) {
        ext.push(custody::log::leaf_hash(
            &std::fs::read(v.vault.join(custody::layout::segment_path(seq))).unwrap(),
        ));
    }
    let size = ext.size();
    ext.push(custody::hash::Sha256Digest([7; 32]));
    let mut body = format!("old {size}\n").into_bytes();
    for h in tlog_tiles::prove_tree(ext.size(), size, &ext).unwrap() {
        body.extend_from_slice(
            format!(
                "{}\n",
                base64::engine::general_purpose::STANDARD.encode(h.0)
            )
            .as_bytes(),
        );
    }
    body.push(b'\n');
    body.extend_from_slice(&custody::log::sign_checkpoint(
        &stolen,
        ext.size(),
        ext.root_at(ext.size()),
    ));
    assert_eq!(crate::witness::post(port, &body).0, 403);

    // (b) Forged segments appended after the revocation with the stolen key.
    let b = v.tmp.path().join("b");
    copy_dir(&v.vault, &b);
    let n = segments(&b);
    let mut seg = read_segment(&b, n - 1);
    seg.seq = n;
    seg.prev = Some(custody::log::leaf_hash(
        &std::fs::read(b.join(custody::layout::segment_path(n - 1))).unwrap(),
    ));
    write_segment(&b, &seg, &stolen);
    assert_finds(&b, &["--config", &cfg_s], "segment_retired_key");

    // (c) A segment hidden: the newest removed, the checkpoint rolled back
    // to the one before (signed with the stolen key). The witnesses saw more.
    let c = v.tmp.path().join("c");
    copy_dir(&v.vault, &c);
    let n = segments(&c);
    std::fs::remove_file(c.join(custody::layout::segment_path(n - 1))).unwrap();
    let mut t = custody::log::Tree::new();
    for seq in 0..n - 1 {
        t.push(custody::log::leaf_hash(
            &std::fs::read(c.join(custody::layout::segment_path(seq))).unwrap(),
        ));
    }
    std::fs::write(
        c.join("checkpoint"),
        custody::log::sign_checkpoint(&stolen, t.size(), t.root_at(t.size())),
    )
    .unwrap();
    let report = assert_finds(&c, &["--config", &cfg_s], "log_truncated");
    // The stolen key was rotated out: the rolled-back checkpoint it signed
    // is refused on its own, evidence of the witnesses or not.
    assert!(
        kinds(&report).contains(&"checkpoint_bad_signature".to_string()),
        "{report:#}"
    );
    std::fs::remove_dir_all(c.join("witnessed")).unwrap();
    assert_finds(&c, &["--config", &cfg_s], "checkpoint_bad_signature");
}
