//! One tamper per check of `verify`, on a real vault made by the binary,
//! each asserting the specific finding (FORMAT.md §13 (verification)).

use std::path::{Path, PathBuf};

use custody::dsse;
use custody::keys::VaultSigner;
use custody::segment::{Entry, SEGMENT_PAYLOAD_TYPE, Segment};

use crate::common::{TestVault, kinds, log_text, noise, ok};

fn vault_with_evidence() -> TestVault {
    let v = TestVault::new();
    v.write("big.log", &log_text(6 << 20, 3));
    v.write("blob.bin", &noise(2 << 20, 4));
    v.write("small.txt", b"small\n");
    v.declare_data("INC-1");
    v.write("more.log", &log_text(300 << 10, 5));
    v.declare_data("INC-2");
    v.assert_intact();
    v
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s = crate::common::walk(&dir.join("segments"));
    s.sort();
    s
}

fn packs(dir: &Path) -> Vec<PathBuf> {
    let mut p = crate::common::walk(&dir.join("packs"));
    p.sort();
    p
}

#[track_caller]
fn assert_finding(dir: &Path, kind: &str) -> serde_json::Value {
    let (code, report) = TestVault::verify_dir(dir, &[]);
    assert_eq!(code, 1, "tampered vault must fail verification: {report:#}");
    assert!(
        kinds(&report).iter().any(|k| k == kind),
        "expected {kind}, got {:?}",
        kinds(&report)
    );
    report
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn every_check_names_its_finding() {
    let v = vault_with_evidence();

    // A byte flipped inside a pack.
    let d = v.copy("t-pack-byte");
    let p = &packs(&d)[0];
    let len = std::fs::metadata(p).unwrap().len() as usize;
    flip(p, len / 2);
    let r = assert_finding(&d, "pack_hash_mismatch");
    assert!(
        kinds(&r)
            .iter()
            .any(|k| k == "chunk_corrupt" || k == "chunk_hash_mismatch"),
        "the damaged chunk is named too: {:?}",
        kinds(&r)
    );

    // A payload character changed inside a segment (still valid JSON and base64).
    let d = v.copy("t-segment-byte");
    let seg = &segments(&d)[2];
    let text = std::fs::read_to_string(seg).unwrap();
    let at = text.find("\"payload\":\"").unwrap() + 40;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(seg, bytes).unwrap();
    assert_finding(&d, "segment_bad_signature");

    // The checkpoint's size line changed.
    let d = v.copy("t-checkpoint");
    let cp = d.join("checkpoint");
    let text = std::fs::read_to_string(&cp).unwrap();
    let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
    lines[1] = (lines[1].parse::<u64>().unwrap() - 1).to_string();
    std::fs::write(&cp, lines.join("\n")).unwrap();
    assert_finding(&d, "checkpoint_bad_signature");

    // A pack deleted.
    let d = v.copy("t-pack-gone");
    std::fs::remove_file(&packs(&d)[0]).unwrap();
    assert_finding(&d, "pack_missing");

    // A middle segment deleted.
    let d = v.copy("t-segment-gone");
    std::fs::remove_file(&segments(&d)[2]).unwrap();
    assert_finding(&d, "segment_missing");

    // Two segments swapped.
    let d = v.copy("t-swap");
    let s = segments(&d);
    let (a, b) = (std::fs::read(&s[1]).unwrap(), std::fs::read(&s[2]).unwrap());
    std::fs::write(&s[1], b).unwrap();
    std::fs::write(&s[2], a).unwrap();
    let r = assert_finding(&d, "segment_misplaced");
    assert!(kinds(&r).contains(&"checkpoint_root_mismatch".to_string()));

    // A segment appended, signed by a key the vault does not know.
    let d = v.copy("t-foreign-key");
    let s = segments(&d);
    let last = std::fs::read(s.last().unwrap()).unwrap();
    let thief = VaultSigner::from_seed("test.custody.example/vault", [0x66; 32]);
    let seg = Segment {
        format: 1,
        vault: Some(custody::hash::Sha256Digest::parse(&v.vault_id).unwrap()),
        seq: s.len() as u64,
        prev: Some(custody::log::leaf_hash(&last)),
        sealed_at: custody::time::Time::now(),
        entries: vec![],
    };
    let forged = dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&thief]);
    std::fs::write(d.join(custody::layout::segment_path(seg.seq)), forged).unwrap();
    assert_finding(&d, "segment_unknown_key");

    // A validly signed segment whose prev link is wrong (a fork), made with the real key.
    let d = v.copy("t-fork");
    let key = VaultSigner::load(&v.key).unwrap();
    let s = segments(&d);
    let seg = Segment {
        prev: Some(custody::hash::Sha256Digest([9; 32])),
        ..seg.clone()
    };
    let _ = s;
    std::fs::write(
        d.join(custody::layout::segment_path(seg.seq)),
        dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&key]),
    )
    .unwrap();
    assert_finding(&d, "chain_broken");

    // A checkpoint replaced by a validly signed one with another root.
    let d = v.copy("t-root");
    let size = segments(&d).len() as u64;
    std::fs::write(
        d.join("checkpoint"),
        custody::log::sign_checkpoint(&key, size, custody::hash::Sha256Digest([1; 32])),
    )
    .unwrap();
    assert_finding(&d, "checkpoint_root_mismatch");

    // The original is untouched by all of this.
    v.assert_intact();
}

#[test]
fn an_interrupted_tail_and_stray_objects_are_information_not_damage() {
    let v = vault_with_evidence();
    let d = v.copy("t-info");
    // A segment beyond the checkpoint, correctly chained and signed: what a
    // crash between segment and checkpoint leaves.
    let key = VaultSigner::load(&v.key).unwrap();
    let s = segments(&d);
    let last = std::fs::read(s.last().unwrap()).unwrap();
    let seg = Segment {
        format: 1,
        vault: Some(custody::hash::Sha256Digest::parse(&v.vault_id).unwrap()),
        seq: s.len() as u64,
        prev: Some(custody::log::leaf_hash(&last)),
        sealed_at: custody::time::Time::now(),
        entries: vec![Entry::PreservationFinished(
            custody::segment::PreservationFinished {
                incident: "INC-1".into(),
                run: "00".repeat(16),
                ended_at: custody::time::Time::now(),
                complete: 0,
                partial: 0,
                failed: 0,
                bytes_read: 0,
                bytes_stored: 0,
                bytes_deduplicated: 0,
            },
        )],
    };
    std::fs::write(
        d.join(custody::layout::segment_path(seg.seq)),
        dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&key]),
    )
    .unwrap();
    std::fs::write(d.join("README.txt"), b"left by an operator").unwrap();
    let stray = custody::hash::Blake3Id::of(b"custody-pack-v1\n");
    let stray_path = d.join(custody::layout::pack_path(&stray));
    std::fs::create_dir_all(stray_path.parent().unwrap()).unwrap();
    std::fs::write(&stray_path, b"custody-pack-v1\n").unwrap();
    let (code, report) = TestVault::verify_dir(&d, &[]);
    assert_eq!(code, 0, "{report:#}");
    let k = kinds(&report);
    for expected in [
        "log_beyond_checkpoint",
        "unexpected_object",
        "pack_unreferenced",
    ] {
        assert!(
            k.iter().any(|x| x == expected),
            "{expected} missing from {k:?}"
        );
    }
}

#[test]
fn a_pinned_vault_id_rejects_a_substitute_vault() {
    let v = vault_with_evidence();
    let other = TestVault::new();
    let (code, report) = TestVault::verify_dir(&other.vault, &["--vault-id", &v.vault_id]);
    assert_eq!(code, 1);
    assert!(kinds(&report).contains(&"vault_id_mismatch".to_string()));
    let (code, _) = TestVault::verify_dir(&v.vault, &["--vault-id", &v.vault_id]);
    assert_eq!(code, 0);
}

#[test]
fn quick_verify_skips_content_but_not_structure() {
    let v = vault_with_evidence();
    let d = v.copy("t-quick");
    flip(&packs(&d)[0], 100);
    let (code, report) = TestVault::verify_dir(&d, &["--quick"]);
    assert_eq!(code, 0, "quick mode does not read packs: {report:#}");
    assert_eq!(report["content_checked"], false);
    std::fs::remove_file(&packs(&d)[0]).unwrap();
    let (code, report) = TestVault::verify_dir(&d, &["--quick"]);
    assert_eq!(code, 1);
    assert!(kinds(&report).contains(&"pack_missing".to_string()));
}

#[test]
fn a_segment_numbered_near_u64_max_is_one_gap_not_a_long_count() {
    let v = vault_with_evidence();
    let d = v.copy("t-huge-seq");
    let last = segments(&d).pop().unwrap();
    std::fs::copy(&last, d.join(custody::layout::segment_path(u64::MAX - 1))).unwrap();
    let r = assert_finding(&d, "segment_missing");
    let gap = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "segment_missing")
        .unwrap();
    assert!(
        gap["message"]
            .as_str()
            .unwrap()
            .contains("to 18446744073709551613"),
        "{gap:#}"
    );
    assert!(kinds(&r).contains(&"segment_misplaced".to_string()));
    // Writers refuse to extend it rather than filling the gap.
    let o = v.declare_into(&d, "INC-X");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A storage attacker deletes the tail and leaves the signed checkpoint:
/// writers must refuse, not bury the gap under new segments.
#[test]
fn writers_refuse_a_log_that_disagrees_with_its_checkpoint() {
    let v = vault_with_evidence();
    let d = v.copy("t-tail-gone");
    let s = segments(&d);
    std::fs::remove_file(s.last().unwrap()).unwrap();
    std::fs::remove_file(&s[s.len() - 2]).unwrap();
    let declare = |dir: &Path| v.declare_into(dir, "INC-9");
    let o = declare(&d);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("segments were removed"), "{err}");
    assert_finding(&d, "checkpoint_beyond_log");

    // A segment replaced by a different, validly signed one at the same place.
    let d = v.copy("t-replaced");
    let key = VaultSigner::load(&v.key).unwrap();
    let s = segments(&d);
    let prev = custody::log::leaf_hash(&std::fs::read(&s[s.len() - 2]).unwrap());
    let seg = Segment {
        format: 1,
        vault: Some(custody::hash::Sha256Digest::parse(&v.vault_id).unwrap()),
        seq: s.len() as u64 - 1,
        prev: Some(prev),
        sealed_at: custody::time::Time::now(),
        entries: vec![],
    };
    std::fs::write(
        s.last().unwrap(),
        dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&key]),
    )
    .unwrap();
    let o = declare(&d);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signed checkpoint says"));
    assert_finding(&d, "checkpoint_root_mismatch");
}

/// Planted links, FIFOs and odd names are findings: verify neither follows
/// nor blocks on them, and writers stop with an error instead of hanging.
#[test]
fn planted_links_and_fifos_are_findings_not_hangs() {
    let v = vault_with_evidence();
    let d = v.copy("t-fifo");
    std::fs::remove_file(d.join("checkpoint")).unwrap();
    nix::unistd::mkfifo(&d.join("checkpoint"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let seg1 = d.join(custody::layout::segment_path(1));
    let saved = v.tmp.path().join("saved-seg1");
    std::fs::rename(&seg1, &saved).unwrap();
    std::os::unix::fs::symlink(&saved, &seg1).unwrap();
    std::fs::write(
        d.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"odd\xffname")),
        b"x",
    )
    .unwrap();
    let r = assert_finding(&d, "checkpoint_malformed");
    let k = kinds(&r);
    assert!(k.contains(&"segment_malformed".to_string()), "{k:?}");
    assert!(k.contains(&"unexpected_object".to_string()), "{k:?}");
    let o = v.declare_into(&d, "INC-9");
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a regular file"));
}

/// An auditor saves a checkpoint; later the tail is cut and the pointer
/// rolled back to an older valid checkpoint. Alone, the vault looks fine;
/// against the saved checkpoint, the truncation is a finding.
#[test]
fn a_saved_checkpoint_catches_tail_truncation_with_rollback() {
    let v = TestVault::new();
    v.write("a.log", &log_text(200_000, 1));
    v.declare_data("INC-1");
    let older = v.cmd(&["checkpoint"]).output().unwrap();
    assert!(older.status.success());
    v.write("b.log", &log_text(200_000, 2));
    v.declare_data("INC-2");
    let saved = v.tmp.path().join("saved.checkpoint");
    let o = v.cmd(&["checkpoint"]).output().unwrap();
    std::fs::write(&saved, &o.stdout).unwrap();
    let saved_s = saved.to_str().unwrap();
    let (code, report) =
        TestVault::verify_dir(&v.vault, &["--vault-id", &v.vault_id, "--trusted", saved_s]);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["conclusion"]
            .as_str()
            .unwrap()
            .contains("append-only extension")
    );

    // Cut INC-2's segments and put the older checkpoint back.
    let d = v.copy("t-cut");
    let s = segments(&d);
    let older_size: usize = String::from_utf8_lossy(&older.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    for seg in &s[older_size..] {
        std::fs::remove_file(seg).unwrap();
    }
    std::fs::write(d.join("checkpoint"), &older.stdout).unwrap();
    let (code, report) = TestVault::verify_dir(&d, &["--vault-id", &v.vault_id]);
    assert_eq!(
        code, 0,
        "without a saved checkpoint this is indistinguishable from an older vault: {report:#}"
    );
    let (code, report) =
        TestVault::verify_dir(&d, &["--vault-id", &v.vault_id, "--trusted", saved_s]);
    assert_eq!(code, 1);
    assert!(
        kinds(&report).contains(&"log_truncated".to_string()),
        "{report:#}"
    );

    // Only the pointer rolled back.
    let d = v.copy("t-rollback");
    std::fs::write(d.join("checkpoint"), &older.stdout).unwrap();
    let (code, report) = TestVault::verify_dir(&d, &["--trusted", saved_s]);
    assert_eq!(code, 1);
    assert!(
        kinds(&report).contains(&"checkpoint_rolled_back".to_string()),
        "{report:#}"
    );
}

#[test]
fn inclusion_proofs_check_offline_and_fail_when_touched() {
    let v = TestVault::new();
    v.write("auth.log", &log_text(300_000, 9));
    v.write("other.log", b"other\n");
    v.declare_data("INC-P");
    v.write("later.log", b"later\n");
    v.declare_data("INC-Q");
    let auth = v.data.join("auth.log");
    let proof = v.tmp.path().join("auth.proof.json");
    let o = v
        .cmd(&[
            "prove",
            "INC-P",
            auth.to_str().unwrap(),
            "--out",
            proof.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let check = |file: &Path, anchor: &[&str]| {
        crate::common::custody()
            .args(["verify-proof", "--json"])
            .arg(file)
            .args(anchor)
            .output()
            .unwrap()
    };
    let o = check(&proof, &["--vault-id", &v.vault_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sha = v.cmd(&["show", "INC-P", "--json"]).output().unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&sha.stdout).unwrap();
    let recorded = shown["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == auth.to_str().unwrap())
        .unwrap()["sha256"]
        .clone();
    assert!(
        r["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["sha256"] == recorded),
        "{r:#}"
    );

    let key = VaultSigner::load(&v.key).unwrap();
    let vkey = custody::keys::PublicKey::note_verifier_key(&key.verifying_key(), key.name());
    assert!(check(&proof, &["--pubkey", &vkey]).status.success());

    // Another vault's id.
    let other = TestVault::new();
    let o = check(&proof, &["--vault-id", &other.vault_id]);
    assert_eq!(o.status.code(), Some(1));
    // A touched segment, a touched path, a touched checkpoint.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let mut seg = doc.clone();
    let mut bytes = b64
        .decode(seg["leaves"][0]["segment"].as_str().unwrap())
        .unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    seg["leaves"][0]["segment"] = b64.encode(bytes).into();
    let mut path = doc.clone();
    path["leaves"][0]["audit_path"][0] = b64.encode([7u8; 32]).into();
    let mut cp = doc.clone();
    cp["checkpoint"] = cp["checkpoint"]
        .as_str()
        .unwrap()
        .replacen("\n", "\n1", 1)
        .into();
    for (name, bad) in [("segment", seg), ("path", path), ("checkpoint", cp)] {
        let f = v.tmp.path().join(format!("bad-{name}.json"));
        std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
        let o = check(&f, &["--vault-id", &v.vault_id]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "a touched {name} must not verify: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

/// A tar entry: name, data, type.
type TarEntry<'a> = (&'a str, &'a [u8], tar::EntryType);

/// Every entry of a tar archive: name and bytes.
fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn tar_with(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, kind) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path("placeholder").unwrap();
        // Write the raw name so that hostile names survive the builder.
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_entry_type(*kind);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn bundles_verify_offline_and_refuse_hostile_archives() {
    let v = TestVault::new();
    let big = v.write("auth.log", &log_text(6 << 20, 11));
    v.write("small.log", b"small\n");
    std::os::unix::fs::symlink("small.log", v.data.join("link")).unwrap();
    v.declare_data("INC-B");
    v.write("other.log", b"another incident\n");
    v.declare_data("INC-OTHER");
    let bundle = v.tmp.path().join("inc-b.tar");
    let o = v
        .cmd(&["export", "INC-B", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&bundle).unwrap();
    assert!(
        !bytes.windows(16).any(|w| w == b"another incident"),
        "other incidents' evidence stays out"
    );

    let out = v.tmp.path().join("extracted");
    let run = |file: &Path, extra: &[&str]| {
        crate::common::custody()
            .args(["verify-bundle", "--json", "--vault-id", &v.vault_id])
            .arg(file)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&bundle, &["--extract", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["artifacts"].as_array().unwrap().len(), 3);
    // Independent tools agree with the recorded digests.
    let sha = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        sha.status.success(),
        "{}",
        String::from_utf8_lossy(&sha.stdout)
    );
    if crate::common::require_tool("b3sum") {
        let b3 = std::process::Command::new("b3sum")
            .args(["-c", "B3SUMS"])
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            b3.status.success(),
            "{}",
            String::from_utf8_lossy(&b3.stdout)
        );
    }
    let extracted = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == big.to_str().unwrap())
        .unwrap();
    let file = out.join(extracted["extracted"].as_str().unwrap());
    assert_eq!(std::fs::read(file).unwrap(), std::fs::read(&big).unwrap());

    // Another vault's id: refused.
    let other = TestVault::new();
    let o = crate::common::custody()
        .args(["verify-bundle", "--vault-id", &other.vault_id])
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));

    // A chunk swapped for another valid frame: that artifact is damaged.
    let mut entries = untar(&bytes);
    let chunk = entries
        .iter()
        .position(|(n, _)| n.starts_with("chunks/"))
        .unwrap();
    entries[chunk].1 = zstd::bulk::compress(b"forged content", 3).unwrap();
    let rebuilt: Vec<TarEntry<'_>> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice(), tar::EntryType::Regular))
        .collect();
    let forged = v.tmp.path().join("forged.tar");
    std::fs::write(&forged, tar_with(&rebuilt)).unwrap();
    let o = run(&forged, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Hostile archives are refused outright.
    let proof = entries
        .iter()
        .find(|(n, _)| n == "proof.json")
        .unwrap()
        .1
        .clone();
    let hostile: &[(&str, Vec<TarEntry<'_>>)] = &[
        (
            "dot-dot",
            vec![
                ("proof.json", &proof, tar::EntryType::Regular),
                ("../evil", b"x", tar::EntryType::Regular),
            ],
        ),
        (
            "absolute",
            vec![
                ("/etc/evil", b"x", tar::EntryType::Regular),
                ("proof.json", &proof, tar::EntryType::Regular),
            ],
        ),
        (
            "link",
            vec![
                ("proof.json", &proof, tar::EntryType::Regular),
                ("README.txt", b"", tar::EntryType::Symlink),
            ],
        ),
        (
            "unknown",
            vec![
                ("proof.json", &proof, tar::EntryType::Regular),
                ("run.sh", b"x", tar::EntryType::Regular),
            ],
        ),
        (
            "no proof",
            vec![("README.txt", b"hi", tar::EntryType::Regular)],
        ),
    ];
    for (what, list) in hostile {
        let f = v.tmp.path().join(format!("hostile-{what}.tar"));
        std::fs::write(&f, tar_with(list)).unwrap();
        let out = v.tmp.path().join(format!("out-{what}"));
        let o = run(&f, &["--extract", out.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("refused") || *what == "no proof",
            "{what}"
        );
        assert!(!v.tmp.path().join("evil").exists());
    }
}

/// A small file shares its zstd frame with the other small files of its run
/// (FORMAT.md §6). A later incident's file with the same content references
/// that chunk; its bundle holds the chunk alone, compressed on its own,
/// none of the earlier incident's bytes, and verifies.
#[test]
fn a_bundle_takes_its_chunk_alone_out_of_a_shared_frame() {
    let v = TestVault::new();
    let secret: &[u8] = b"evidence of an earlier incident\n";
    let common = v.write("common.log", b"a line both incidents hold\n");
    v.write("secret.log", secret);
    v.declare_data("INC-EARLIER");
    std::fs::remove_file(v.data.join("secret.log")).unwrap();
    v.declare_data("INC-LATER");
    let log = ok(&v.cmd(&["log", "--json"]).output().unwrap());
    let later: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .flat_map(|s| s["entries"].as_array().unwrap().clone())
        .filter(|e| e["type"] == "artifact" && e["incident"] == "INC-LATER")
        .collect();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["path"], common.to_str().unwrap());
    let chunk = &later[0]["chunks"][0];
    assert!(
        chunk["skip"].is_u64(),
        "the chunk lies in a frame shared with the earlier run's other file: {chunk}"
    );

    let bundle = v.tmp.path().join("later.tar");
    ok(&v
        .cmd(&["export", "INC-LATER", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    let bytes = std::fs::read(&bundle).unwrap();
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret),
        "the earlier incident's bytes stay out"
    );
    let frames: Vec<Vec<u8>> = untar(&bytes)
        .into_iter()
        .filter(|(name, _)| name.starts_with("chunks/"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        zstd::decode_all(&frames[0][..]).unwrap(),
        std::fs::read(&common).unwrap(),
        "the bundle's frame holds the chunk and nothing else"
    );
    let out = v.tmp.path().join("later");
    let o = crate::common::custody()
        .args(["verify-bundle", "--json", "--vault-id", &v.vault_id])
        .arg(&bundle)
        .args(["--extract", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let extracted = r["artifacts"][0]["extracted"].as_str().unwrap();
    assert_eq!(
        std::fs::read(out.join(extracted)).unwrap(),
        std::fs::read(&common).unwrap()
    );
}

/// A byte flipped in a frame that small files share (FORMAT.md §6) damages
/// each of their chunks: verify names every one, at its place in the frame,
/// and no artifact of the frame passes.
#[test]
fn a_damaged_shared_frame_is_found_in_every_chunk_it_holds() {
    let v = TestVault::new();
    let names = ["a.log", "b.log", "c.log"];
    for (n, name) in names.iter().enumerate() {
        v.write(name, &log_text(3000 + 500 * n, 40 + n as u64));
    }
    v.declare_data("INC-S");
    // The frame's magic number: no longer a zstd frame, for every chunk.
    flip(&packs(&v.vault)[0], 16);
    let report = assert_finding(&v.vault, "chunk_corrupt");
    let findings = report["findings"].as_array().unwrap();
    let chunks: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["kind"].as_str().unwrap().starts_with("chunk_"))
        .collect();
    assert_eq!(chunks.len(), names.len(), "{report:#}");
    let mut places: Vec<&str> = chunks
        .iter()
        .map(|f| f["object"].as_str().unwrap())
        .collect();
    places.sort_unstable();
    places.dedup();
    assert_eq!(places.len(), names.len(), "one place per chunk: {places:?}");
    for name in names {
        let named = format!("/{name}:");
        assert!(
            chunks
                .iter()
                .any(|f| f["message"].as_str().unwrap().contains(&named)),
            "{name} is named: {report:#}"
        );
    }
    assert!(
        places.iter().all(|p| p.contains("@16+")),
        "each at its place in the frame: {places:?}"
    );
}

#[test]
fn a_bundle_missing_part_of_a_run_or_of_another_incident_does_not_pass() {
    let v = TestVault::new();
    for i in 0..3 {
        v.write(&format!("f{i}.log"), format!("file {i}\n").as_bytes());
    }
    v.declare_data("INC-R");
    let bundle = v.tmp.path().join("r.tar");
    assert!(
        v.cmd(&["export", "INC-R", "--out", bundle.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .success()
    );
    let check = |file: &Path, extra: &[&str]| {
        crate::common::custody()
            .args(["verify-bundle", "--vault-id", &v.vault_id])
            .arg(file)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(check(&bundle, &["--incident", "INC-R"]).status.success());
    let o = check(&bundle, &["--incident", "INC-OTHER"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "artifacts of another incident fail --incident"
    );

    // Drop the segment that ends the run: the run is no longer whole.
    let mut entries = untar(&std::fs::read(&bundle).unwrap());
    let mut doc: serde_json::Value = serde_json::from_slice(&entries[0].1).unwrap();
    let leaves = doc["leaves"].as_array_mut().unwrap();
    // Keep genesis and the segment with the declaration and the run's start.
    leaves.retain(|l| l["index"].as_u64() <= Some(1));
    entries[0].1 = serde_json::to_vec(&doc).unwrap();
    let kept: Vec<TarEntry<'_>> = entries
        .iter()
        .filter(|(n, _)| !n.starts_with("chunks/"))
        .map(|(n, d)| (n.as_str(), d.as_slice(), tar::EntryType::Regular))
        .collect();
    let cut = v.tmp.path().join("cut.tar");
    std::fs::write(&cut, tar_with(&kept)).unwrap();
    let o = check(&cut, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no artifact")
            || String::from_utf8_lossy(&o.stdout).contains("INCOMPLETE")
    );

    // Extraction never writes into a directory that already holds files.
    let busy = v.tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("SHA256SUMS"), b"mine").unwrap();
    let o = check(&bundle, &["--extract", busy.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(busy.join("SHA256SUMS")).unwrap(), b"mine");
}

/// An insider with the signing key records an artifact whose SHA-256 its
/// content does not have; a later declare of the same, unchanged file takes
/// its digests from that artifact (FORMAT.md §9.4). Verify finds the wrong
/// digest in both artifacts, over the same stored content (§14 (b)).
#[test]
fn a_forged_digest_taken_for_unchanged_content_is_found_in_both() {
    let v = TestVault::new();
    v.write("same.bin", &noise(3 << 20, 21));
    v.declare_data("INC-1");
    let store = custody::store::Store::open(v.vault.to_str().unwrap()).unwrap();
    let mut artifact = None;
    let mut vault = custody::vault::Vault::open_with(store, |_, seg| {
        for e in &seg.entries {
            if let Entry::Artifact(a) = e {
                artifact = Some(a.clone());
            }
        }
    })
    .unwrap();
    let mut forged = artifact.expect("the declare recorded an artifact");
    forged.sha256 = custody::hash::Sha256Digest([7; 32]);
    let insider = VaultSigner::load(&v.key).unwrap();
    vault
        .append(
            &insider,
            vec![Entry::Artifact(forged.clone())],
            custody::time::Time::now,
        )
        .unwrap();
    drop(vault);
    let again = v.declare_data("INC-1");
    assert_eq!(again["files_unchanged"], 1, "{again:#}");
    let (code, report) = TestVault::verify_dir(&v.vault, &[]);
    assert_eq!(code, 1, "{report:#}");
    let wrong: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "artifact_hash_mismatch")
        .collect();
    assert_eq!(
        wrong.len(),
        2,
        "the forged artifact and the one that took its digests: {report:#}"
    );
    for f in wrong {
        assert!(f.to_string().contains(&forged.sha256.to_string()), "{f:#}");
    }
}
