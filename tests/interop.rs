//! Independent verifiers agree with custody: Go's `sumdb/note` and
//! `sumdb/tlog` check our checkpoint and Merkle root; Python's
//! `securesystemslib` checks our DSSE envelopes. scripts/test.sh installs
//! both; in CI a missing tool fails the test.

use std::process::Command;

use base64::Engine as _;

use crate::common::{TestVault, log_text, require_tool};

const GO_CHECKER: &str = r#"
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type hashes []tlog.Hash

func (h hashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = h[x]
	}
	return out, nil
}

func main() {
	vault, vkey := os.Args[1], os.Args[2]
	v, err := note.NewVerifier(vkey)
	if err != nil { panic(err) }
	msg, err := os.ReadFile(filepath.Join(vault, "checkpoint"))
	if err != nil { panic(err) }
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil { fmt.Println("note:", err); os.Exit(1) }
	var origin string
	var size int64
	var root string
	fmt.Sscanf(n.Text, "%s\n%d\n%s\n", &origin, &size, &root)
	files, _ := filepath.Glob(filepath.Join(vault, "segments", "*"))
	sort.Strings(files)
	var stored hashes
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil { panic(err) }
		hs, err := tlog.StoredHashes(int64(i), data, stored)
		if err != nil { panic(err) }
		stored = append(stored, hs...)
	}
	th, err := tlog.TreeHash(size, stored)
	if err != nil { panic(err) }
	fmt.Printf("%s %d %s %s\n", origin, size, root, th.String())
}
"#;

#[test]
fn go_sumdb_verifies_checkpoint_and_root() {
    if !require_tool("go") {
        return;
    }
    let v = TestVault::new();
    v.write("a.log", &log_text(100_000, 1));
    v.declare_data("INC-GO");
    v.write("b.log", b"more\n");
    v.declare_data("INC-GO");
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let vkey = custody::keys::PublicKey::note_verifier_key(&key.verifying_key(), key.name());
    let out = crate::common::go_run(GO_CHECKER, [v.vault.as_os_str(), vkey.as_ref()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go checker failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields[0], key.name());
    let segments = crate::common::walk(&v.vault.join("segments")).len();
    assert_eq!(
        fields[1],
        segments.to_string(),
        "checkpoint covers every segment"
    );
    assert_eq!(
        fields[2], fields[3],
        "Go's tlog.TreeHash equals the signed root"
    );
}

const PY_CHECKER: &str = r#"
import json, sys, base64
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
keyid, pub_hex = sys.argv[1], sys.argv[2]
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": pub_hex})
ok = 0
for path in sys.argv[3:]:
    env = Envelope.from_dict(json.load(open(path)))
    assert env.payload_type == "application/vnd.custody.segment.v1+json", env.payload_type
    env.verify([key], 1)
    payload = json.loads(env.pae().split(b" ", 4)[4])
    ok += 1
print(ok)
"#;

#[test]
fn securesystemslib_verifies_segment_envelopes() {
    let python = std::env::var("CUSTODY_PY").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import securesystemslib.dsse"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::common::available(has, "securesystemslib") {
        return;
    }
    let v = TestVault::new();
    v.write("a.log", b"evidence\n");
    v.declare_data("INC-PY");
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let pub_hex = hex::encode(key.verifying_key().as_bytes());
    let segs = crate::common::walk(&v.vault.join("segments"));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, PY_CHECKER).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(key.key_id().to_string())
        .arg(&pub_hex)
        .args(&segs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        segs.len().to_string()
    );

    // And it rejects a forged payload.
    let forged = dir.path().join("forged");
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&segs[1]).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    payload[10] ^= 1;
    env["payload"] = b64.encode(payload).into();
    std::fs::write(&forged, serde_json::to_vec(&env).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(key.key_id().to_string())
        .arg(&pub_hex)
        .arg(&forged)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a forged envelope must not verify");
}

const GO_PROOF_CHECKER: &str = r#"
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type leaf struct {
	Index     int64    `json:"index"`
	Segment   string   `json:"segment"`
	AuditPath []string `json:"audit_path"`
}

type proof struct {
	Checkpoint string `json:"checkpoint"`
	Leaves     []leaf `json:"leaves"`
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil { panic(err) }
	var p proof
	if err := json.Unmarshal(raw, &p); err != nil { panic(err) }
	v, err := note.NewVerifier(os.Args[2])
	if err != nil { panic(err) }
	n, err := note.Open([]byte(p.Checkpoint), note.VerifierList(v))
	if err != nil { fmt.Println("note:", err); os.Exit(1) }
	lines := strings.Split(n.Text, "\n")
	size, _ := strconv.ParseInt(lines[1], 10, 64)
	rootBytes, _ := base64.StdEncoding.DecodeString(lines[2])
	var root tlog.Hash
	copy(root[:], rootBytes)
	for _, l := range p.Leaves {
		seg, _ := base64.StdEncoding.DecodeString(l.Segment)
		var rp tlog.RecordProof
		for _, h := range l.AuditPath {
			b, _ := base64.StdEncoding.DecodeString(h)
			var x tlog.Hash
			copy(x[:], b)
			rp = append(rp, x)
		}
		if err := tlog.CheckRecord(rp, size, root, l.Index, tlog.RecordHash(seg)); err != nil {
			fmt.Println("record", l.Index, err)
			os.Exit(1)
		}
	}
	fmt.Println(len(p.Leaves), size)
}
"#;

#[test]
fn go_sumdb_verifies_an_inclusion_proof() {
    if !require_tool("go") {
        return;
    }
    let v = TestVault::new();
    v.write("a.log", &log_text(50_000, 3));
    v.declare_data("INC-GO");
    v.write("b.log", b"b\n");
    v.declare_data("INC-GO2");
    let proof = v.tmp.path().join("p.json");
    let o = v
        .cmd(&["prove", "INC-GO", "--out", proof.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let vkey = custody::keys::PublicKey::note_verifier_key(&key.verifying_key(), key.name());
    let out = crate::common::go_run(GO_PROOF_CHECKER, [proof.as_os_str(), vkey.as_ref()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let n = doc["leaves"].as_array().unwrap().len();
    assert!(n >= 2, "the declaration and the artifact segments");
    assert!(text.starts_with(&format!("{n} ")), "{text}");
}
