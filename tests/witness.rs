//! Witnesses (FORMAT.md §10a): three `custody witness serve` processes on
//! loopback, a quorum of two; preservation goes on with a witness down,
//! verify wants the quorum, witnesses refuse roll-backs, forks and strangers.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestVault, copy_dir, kinds, log_text, ok};

/// A witness process, killed when dropped.
pub(crate) struct Running {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` witness key files made by `custody witness keygen` in `dir`, named
/// witness.example/w1 and on: (key files, verifier keys).
pub(crate) fn witness_keys(dir: &Path, n: usize) -> (Vec<std::path::PathBuf>, Vec<String>) {
    (1..=n)
        .map(|i| {
            let k = dir.join(format!("w{i}.key"));
            let out = ok(&crate::common::custody()
                .args([
                    "witness",
                    "keygen",
                    "--name",
                    &format!("witness.example/w{i}"),
                    "--key",
                ])
                .arg(&k)
                .output()
                .unwrap());
            (k, out.trim().to_owned())
        })
        .unzip()
}

pub(crate) fn start(key: &Path, state: &Path, log_vkeys: &[&str]) -> Running {
    let port = free_port();
    let child = Command::new(assert_cmd::cargo::cargo_bin("custody"))
        .args(["witness", "serve", "--key"])
        .arg(key)
        .arg("--state")
        .arg(state)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(log_vkeys.iter().flat_map(|k| ["--log", k]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "witness did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Running { child, port }
}

/// POSTs `body` to a witness's add-checkpoint; returns (status, body).
pub(crate) fn post(port: u16, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let text = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, text)
}

#[test]
fn witnesses_cosign_refuse_forks_and_preservation_survives_one_down() {
    let v = TestVault::new();
    let out = ok(&crate::common::custody()
        .args(["checkpoint", "--json", "--vault"])
        .arg(&v.vault)
        .output()
        .unwrap());
    let origin = serde_json::from_str::<Value>(&out).unwrap()["origin"]
        .as_str()
        .map(str::to_owned);
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let log_vkey = custody::keys::PublicKey::note_verifier_key(&key.verifying_key(), key.name());
    let _ = origin;
    // Three witnesses.
    let (keys, vkeys) = witness_keys(v.tmp.path(), 3);
    let state = |i: usize| v.tmp.path().join(format!("w{i}-state"));
    let mut w: Vec<Option<Running>> = (0..3)
        .map(|i| Some(start(&keys[i], &state(i), &[&log_vkey])))
        .collect();
    let config = |w: &[Option<Running>], ports: &[u16]| {
        let mut c = String::from("witness_quorum = 2\n");
        for (i, vk) in vkeys.iter().enumerate() {
            let port = w[i].as_ref().map_or(ports[i], |r| r.port);
            c.push_str(&format!(
                "[[witness]]\nkey = \"{vk}\"\nurl = \"http://127.0.0.1:{port}\"\n"
            ));
        }
        c
    };
    let ports: Vec<u16> = w.iter().map(|r| r.as_ref().unwrap().port).collect();
    let cfg = v.tmp.path().join("custody.toml");
    std::fs::write(&cfg, config(&w, &ports)).unwrap();
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let data = v.data.to_str().unwrap().to_owned();

    // All three cosign; verify sees the quorum and the bound.
    v.write("auth.log", &log_text(10_000, 1));
    let out = v.declare("INC-W", &["--path", &data, "--config", &cfg_s, "--json"]);
    let s: Value = serde_json::from_slice(ok(&out).as_bytes()).unwrap();
    assert_eq!(
        s["witnesses"]["cosigned"].as_array().unwrap().len(),
        3,
        "{s:#}"
    );
    let (code, report) = TestVault::verify_dir(&v.vault, &["--config", &cfg_s]);
    assert_eq!(code, 0, "{report:#}");
    let witnessed = report["witnessed"].as_array().unwrap();
    assert!(
        witnessed.iter().any(|w| !w["quorum_at"].is_null()),
        "{report:#}"
    );
    // Any append, not only a declare, is witnessed (here a note).
    ok(&v
        .cmd(&[
            "incident",
            "note",
            "INC-W",
            "witnessed too",
            "--config",
            &cfg_s,
        ])
        .output()
        .unwrap());
    let (code, report) = TestVault::verify_dir(&v.vault, &["--config", &cfg_s]);
    assert_eq!(code, 0, "{report:#}");

    // One witness down: preservation goes on, the quorum still holds.
    w[2] = None;
    v.write("more.log", b"more\n");
    let out = v.declare("INC-W", &["--path", &data, "--config", &cfg_s, "--json"]);
    let s: Value = serde_json::from_slice(ok(&out).as_bytes()).unwrap();
    assert_eq!(
        s["witnesses"]["cosigned"].as_array().unwrap().len(),
        2,
        "{s:#}"
    );
    assert_eq!(s["witnesses"]["failed"].as_array().unwrap().len(), 1);

    // Two down: preserved, loudly not witnessed; verify wants the quorum.
    w[1] = None;
    v.write("again.log", b"again\n");
    let out = v.declare("INC-W", &["--path", &data, "--config", &cfg_s]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOT witnessed"),
        "{out:?}"
    );
    let (code, report) = TestVault::verify_dir(&v.vault, &["--config", &cfg_s]);
    assert_eq!(code, 1);
    assert!(
        kinds(&report).contains(&"checkpoint_unwitnessed".to_string()),
        "{report:#}"
    );
    // Back up (same state, new port): catch-up gets the quorum again, the
    // witness moving forward from what it cosigned before.
    w[1] = Some(start(&keys[1], &state(1), &[&log_vkey]));
    std::fs::write(&cfg, config(&w, &ports)).unwrap();
    ok(&crate::common::custody()
        .args(["witness", "catch-up", "--config", &cfg_s, "--vault"])
        .arg(&v.vault)
        .output()
        .unwrap());
    let (code, report) = TestVault::verify_dir(&v.vault, &["--config", &cfg_s]);
    assert_eq!(code, 0, "{report:#}");

    // (d) A forked history (an insider re-signs a rewritten log with the
    // vault key): the witnesses refuse it, and it stays unwitnessed.
    let fork = v.tmp.path().join("fork");
    copy_dir(&v.vault, &fork);
    {
        use base64::Engine as _;
        use custody::segment::{SEGMENT_PAYLOAD_TYPE, Segment};
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut prev = None;
        let n = std::fs::read_dir(fork.join("segments")).unwrap().count() as u64;
        let mut tree = custody::log::Tree::new();
        for seq in 0..n {
            let p = fork.join(custody::layout::segment_path(seq));
            let bytes = std::fs::read(&p).unwrap();
            let bytes = if seq == 0 {
                bytes
            } else {
                let env: custody::dsse::Envelope = serde_json::from_slice(&bytes).unwrap();
                let mut seg = Segment::decode(&b64.decode(env.payload).unwrap()).unwrap();
                if seq == 1 {
                    seg.sealed_at = custody::time::Time::from_unix(1_600_000_000);
                }
                seg.prev = prev;
                let b = custody::dsse::sign(SEGMENT_PAYLOAD_TYPE, &seg.encode(), &[&key]);
                std::fs::write(&p, &b).unwrap();
                b
            };
            let leaf = custody::log::leaf_hash(&bytes);
            tree.push(leaf);
            prev = Some(leaf);
        }
        std::fs::write(
            fork.join("checkpoint"),
            custody::log::sign_checkpoint(&key, tree.size(), tree.root_at(tree.size())),
        )
        .unwrap();
        // Its own, unwitnessed, state: drop the copied cosignatures.
        std::fs::remove_dir_all(fork.join("witnessed")).unwrap();
    }
    let out = crate::common::custody()
        .args([
            "witness", "catch-up", "--json", "--config", &cfg_s, "--vault",
        ])
        .arg(&fork)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["cosigned"].as_array().unwrap().is_empty(), "{r:#}");
    let (code, report) = TestVault::verify_dir(&fork, &["--config", &cfg_s]);
    assert_eq!(code, 1);
    assert!(
        kinds(&report).contains(&"checkpoint_unwitnessed".to_string()),
        "{report:#}"
    );

    // (c) A roll-back: an older checkpoint, presented to a witness that
    // cosigned a newer one, is refused with the size it holds (409).
    let port = w[0].as_ref().unwrap().port;
    let old_note = custody::log::sign_checkpoint(&key, 1, {
        let g = std::fs::read(v.vault.join(custody::layout::segment_path(0))).unwrap();
        custody::log::leaf_hash(&g)
    });
    let mut body = b"old 0\n\n".to_vec();
    body.extend_from_slice(&old_note);
    let (status, text) = post(port, &body);
    assert_eq!(status, 409, "{text}");
    assert!(text.trim().parse::<u64>().unwrap() > 1, "{text}");
    // Strangers and garbage.
    let stranger = custody::keys::VaultSigner::from_seed("stranger.example/log", [9; 32]);
    let mut body = b"old 0\n\n".to_vec();
    body.extend_from_slice(&custody::log::sign_checkpoint(
        &stranger,
        1,
        custody::hash::Sha256Digest([1; 32]),
    ));
    assert_eq!(post(port, &body).0, 404);
    let impostor = custody::keys::VaultSigner::from_seed(key.name(), [9; 32]);
    let mut body = b"old 0\n\n".to_vec();
    body.extend_from_slice(&custody::log::sign_checkpoint(
        &impostor,
        1,
        custody::hash::Sha256Digest([1; 32]),
    ));
    assert_eq!(post(port, &body).0, 403);
    assert_eq!(post(port, b"hello").0, 400);
    // Bodies that end where the checkpoint should start: refused, and the
    // witness lives on.
    assert_eq!(post(port, b"old 0\n").0, 400);
    assert_eq!(
        post(
            port,
            b"old 5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        )
        .0,
        400
    );
    assert_eq!(post(port, b"old 5\n\n").0, 400);
    assert_eq!(post(port, b"hello").0, 400);
    // A second witness process on the same state is refused.
    let second = Command::new(assert_cmd::cargo::cargo_bin("custody"))
        .args(["witness", "serve", "--key"])
        .arg(&keys[0])
        .arg("--state")
        .arg(state(0))
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--log",
            &log_vkey,
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("another witness process"));
}

const GO_COSIG_CHECKER: &str = r#"
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Args: witnessed-note-file vault-vkey witness-vkey old-size old-root new-size new-root proof...
func main() {
	msg, _ := os.ReadFile(os.Args[1])
	v, err := note.NewVerifier(os.Args[2])
	if err != nil { panic(err) }
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil { fmt.Println("vault signature:", err); os.Exit(1) }
	// The witness key: name+hash+base64(0x04 || key), checked by hand per
	// C2SP tlog-cosignature (sumdb/note knows only type 0x01).
	parts := strings.SplitN(os.Args[3], "+", 3)
	raw, _ := base64.StdEncoding.DecodeString(parts[2])
	if len(raw) != 33 || raw[0] != 0x04 { fmt.Println("bad witness key"); os.Exit(1) }
	pub := ed25519.PublicKey(raw[1:])
	h := sha256.Sum256(append([]byte(parts[0]+"\n\x04"), pub...))
	found := false
	for _, s := range n.UnverifiedSigs {
		if s.Name != parts[0] { continue }
		sig, _ := base64.StdEncoding.DecodeString(s.Base64)
		if len(sig) != 76 || !bytes.Equal(sig[:4], h[:4]) { continue }
		ts := binary.BigEndian.Uint64(sig[4:12])
		m := fmt.Sprintf("cosignature/v1\ntime %d\n%s", ts, n.Text)
		if ed25519.Verify(pub, []byte(m), sig[12:]) { found = true }
	}
	if !found { fmt.Println("no valid cosignature"); os.Exit(1) }
	// An RFC 6962 consistency proof between two of our checkpoints.
	oldN, _ := strconv.ParseInt(os.Args[4], 10, 64)
	newN, _ := strconv.ParseInt(os.Args[6], 10, 64)
	var oldH, newH tlog.Hash
	b, _ := base64.StdEncoding.DecodeString(os.Args[5]); copy(oldH[:], b)
	b, _ = base64.StdEncoding.DecodeString(os.Args[7]); copy(newH[:], b)
	var proof tlog.TreeProof
	for _, p := range os.Args[8:] {
		var x tlog.Hash
		b, _ := base64.StdEncoding.DecodeString(p); copy(x[:], b)
		proof = append(proof, x)
	}
	if err := tlog.CheckTree(proof, newN, newH, oldN, oldH); err != nil { fmt.Println("consistency:", err); os.Exit(1) }
	fmt.Println("ok")
}
"#;

/// Go's sumdb/note opens a witnessed checkpoint with the vault key, Go's
/// crypto/ed25519 checks the cosignature as C2SP tlog-cosignature defines
/// it, and Go's sumdb/tlog checks the consistency proof custody sends a
/// witness.
#[test]
fn go_checks_cosignatures_and_consistency_proofs() {
    if !crate::common::require_tool("go") {
        return;
    }
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let v = TestVault::new();
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let log_vkey = custody::keys::PublicKey::note_verifier_key(&key.verifying_key(), key.name());
    let wkey = v.tmp.path().join("w.key");
    let wvkey = ok(&crate::common::custody()
        .args(["witness", "keygen", "--name", "witness.example/go", "--key"])
        .arg(&wkey)
        .output()
        .unwrap())
    .trim()
    .to_owned();
    let w = start(&wkey, &v.tmp.path().join("w-state"), &[&log_vkey]);
    let cfg = v.tmp.path().join("custody.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[witness]]\nkey = \"{wvkey}\"\nurl = \"http://127.0.0.1:{}\"\n",
            w.port
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let data = v.data.to_str().unwrap().to_owned();
    v.write("a.log", b"first\n");
    ok(&v.declare("INC-GO", &["--path", &data, "--config", cfg_s]));
    v.write("b.log", b"second\n");
    ok(&v.declare("INC-GO", &["--path", &data, "--config", cfg_s]));
    let store = custody::store::Store::open(v.vault.to_str().unwrap()).unwrap();
    let vault = custody::vault::Vault::open(store).unwrap();
    let tree = &vault.index().tree;
    let (old, new) = (3, tree.size());
    let proof = tlog_tiles::prove_tree(new, old, tree).unwrap();
    let witnessed = v
        .vault
        .join(custody::layout::witnessed_path(new, "witness.example/go"));
    let mut args = vec![
        witnessed.to_string_lossy().into_owned(),
        log_vkey,
        wvkey,
        old.to_string(),
        b64.encode(tree.root_at(old).0),
        new.to_string(),
        b64.encode(tree.root_at(new).0),
    ];
    args.extend(proof.iter().map(|h| b64.encode(h.0)));
    let out = crate::common::go_run(GO_COSIG_CHECKER, &args);
    assert!(
        out.status.success(),
        "go: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
