//! The frozen format-1 vault under tests/fixtures/vault-v1 verifies forever,
//! and each kind of damage to a copy of it is named exactly.

use std::path::{Path, PathBuf};

use crate::common::{TestVault, copy_dir, kinds};

const VAULT_ID: &str = "eea0a84de8e0ca80ce392c008cd6f1fb9f4a777a92c511654a374b54eb15732c";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault-v1")
}

fn damaged(name: &str, damage: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    copy_dir(&fixture(), &dir);
    damage(&dir);
    (tmp, dir)
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(custody::layout::segment_path(n))
}

fn first_pack(dir: &Path) -> PathBuf {
    let mut p = crate::common::walk(&dir.join("packs"));
    p.sort();
    p.remove(0)
}

#[test]
fn the_frozen_vault_verifies() {
    let (code, report) = TestVault::verify_dir(&fixture(), &["--vault-id", VAULT_ID]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (report["segments"].as_u64(), report["artifacts"].as_u64()),
        (Some(4), Some(3))
    );
    assert!(kinds(&report).is_empty(), "{report:#}");
    let cp = fixture().join("checkpoint");
    let (code, _) = TestVault::verify_dir(
        &fixture(),
        &["--vault-id", VAULT_ID, "--trusted", cp.to_str().unwrap()],
    );
    assert_eq!(code, 0);
}

#[test]
fn each_damage_to_the_frozen_vault_is_named() {
    type Damage = fn(&Path);
    let table: &[(&str, Damage, &str)] = &[
        (
            "pack byte",
            |d| {
                let p = first_pack(d);
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len() - 3;
                b[n] ^= 0x40;
                std::fs::write(&p, b).unwrap();
            },
            "pack_hash_mismatch",
        ),
        (
            "pack gone",
            |d| std::fs::remove_file(first_pack(d)).unwrap(),
            "pack_missing",
        ),
        (
            "segment byte",
            |d| {
                let p = seg(d, 2);
                let mut b = std::fs::read(&p).unwrap();
                b[200] = if b[200] == b'A' { b'B' } else { b'A' };
                std::fs::write(&p, b).unwrap();
            },
            "segment_bad_signature",
        ),
        (
            "segment gone",
            |d| std::fs::remove_file(seg(d, 1)).unwrap(),
            "segment_missing",
        ),
        (
            "segments swapped",
            |d| {
                let (a, b) = (
                    std::fs::read(seg(d, 1)).unwrap(),
                    std::fs::read(seg(d, 2)).unwrap(),
                );
                std::fs::write(seg(d, 1), b).unwrap();
                std::fs::write(seg(d, 2), a).unwrap();
            },
            "segment_misplaced",
        ),
        (
            "segment truncated",
            |d| {
                let b = std::fs::read(seg(d, 3)).unwrap();
                std::fs::write(seg(d, 3), &b[..b.len() - 1]).unwrap();
            },
            "segment_malformed",
        ),
        (
            "trailing bytes",
            |d| {
                let mut b = std::fs::read(seg(d, 3)).unwrap();
                b.extend_from_slice(b"\n\n");
                std::fs::write(seg(d, 3), b).unwrap();
            },
            "segment_malformed",
        ),
        (
            "genesis gone",
            |d| std::fs::remove_file(seg(d, 0)).unwrap(),
            "genesis_missing",
        ),
        (
            "checkpoint gone",
            |d| std::fs::remove_file(d.join("checkpoint")).unwrap(),
            "checkpoint_missing",
        ),
        (
            "checkpoint byte",
            |d| {
                let p = d.join("checkpoint");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replacen("\n4\n", "\n5\n", 1);
                std::fs::write(&p, t).unwrap();
            },
            "checkpoint_bad_signature",
        ),
        (
            "tail gone",
            |d| std::fs::remove_file(seg(d, 3)).unwrap(),
            "checkpoint_beyond_log",
        ),
        (
            "stray object",
            |d| std::fs::write(d.join("notes.txt"), b"hi").unwrap(),
            "unexpected_object",
        ),
    ];
    for (what, damage, kind) in table {
        let (_tmp, dir) = damaged(what, damage);
        let (code, report) = TestVault::verify_dir(&dir, &["--vault-id", VAULT_ID]);
        let expected_code = if *kind == "unexpected_object" { 0 } else { 1 };
        assert_eq!(code, expected_code, "{what}: {report:#}");
        assert!(
            kinds(&report).iter().any(|k| k == kind),
            "{what}: expected {kind}, got {:?}",
            kinds(&report)
        );
    }
}
