//! Chain of custody through the CLI: lifecycle transitions, custody events,
//! regulatory clocks and signed manifests (FORMAT.md §9.6-§9.10, §13c).

use std::process::{Command, Output};

use base64::Engine as _;

use crate::common::TestVault;

use crate::common::{custody, ok};

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("JSON output")
}

/// Every entry of the log, in order, as JSON.
fn entries(v: &TestVault) -> Vec<serde_json::Value> {
    let out = ok(&v.cmd(&["log", "--json"]).output().unwrap());
    out.lines()
        .flat_map(|l| {
            let seg: serde_json::Value = serde_json::from_str(l).unwrap();
            seg["entries"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

fn segments(v: &TestVault) -> usize {
    crate::common::walk(&v.vault.join("segments")).len()
}

fn declared(v: &TestVault, incident: &str) {
    v.write(
        "auth.log",
        b"Nov 17 16:00:01 web-1 sshd[1]: Accepted publickey for root\n",
    );
    ok(&v.declare(
        incident,
        &[
            "--path",
            v.data.to_str().unwrap(),
            "--discovered-at",
            "2025-11-17T16:00:00+09:00",
            "--regime",
            "kr-network-act",
            "--regime",
            "gdpr",
        ],
    ));
}

#[test]
fn transitions_that_make_no_sense_write_nothing() {
    let v = TestVault::new();
    declared(&v, "INC-L");
    let before = segments(&v);
    let refused = |args: &[&str], why: &str| {
        let o = v.cmd(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?} must be refused");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(segments(&v), before, "{args:?} wrote a segment");
    };
    refused(
        &[
            "incident",
            "order",
            "INC-NONE",
            "--authority",
            "court",
            "--reference",
            "1",
        ],
        "no incident \"INC-NONE\"",
    );
    refused(
        &[
            "incident",
            "release",
            "INC-L",
            "--name",
            "h1",
            "--reason",
            "r",
            "--authorisation",
            "a",
        ],
        "never placed",
    );
    refused(
        &["incident", "note", "INC-L", "x", "--as", "dpo"],
        "--as-reason",
    );
    refused(
        &[
            "incident",
            "report",
            "INC-L",
            "--regime",
            "gdpr",
            "--kind",
            "early_warning",
            "--authority",
            "DPA",
            "--reference",
            "r",
            "--channel",
            "portal",
        ],
        "no filing kind",
    );
    refused(
        &[
            "incident",
            "report",
            "INC-L",
            "--regime",
            "gdpr",
            "--kind",
            "notification",
            "--authority",
            "DPA",
            "--reference",
            "r",
            "--channel",
            "portal",
            "--filed-at",
            "2999-01-01T00:00:00Z",
        ],
        "in the future",
    );
    ok(&v
        .cmd(&[
            "incident",
            "hold",
            "INC-L",
            "--name",
            "h1",
            "--reason",
            "litigation",
            "--authorisation",
            "counsel",
        ])
        .output()
        .unwrap());
    // On a local vault the held incident's files are now read-only.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let files: Vec<_> = crate::common::walk(&v.vault.join("packs"))
            .into_iter()
            .chain([v.vault.join("segments/00000000000000000001")])
            .collect();
        for f in files {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o222, 0, "{} is still writable", f.display());
        }
    }
    let before = segments(&v);
    let o = v
        .cmd(&[
            "incident",
            "hold",
            "INC-L",
            "--name",
            "h1",
            "--reason",
            "again",
            "--authorisation",
            "counsel",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(segments(&v), before);
    ok(&v
        .cmd(&["incident", "close", "INC-L", "--reason", "contained"])
        .output()
        .unwrap());
    let before = segments(&v);
    let o = v
        .cmd(&[
            "incident",
            "report",
            "INC-L",
            "--regime",
            "gdpr",
            "--kind",
            "notification",
            "--authority",
            "DPA",
            "--reference",
            "r",
            "--channel",
            "portal",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is closed"));
    assert_eq!(segments(&v), before, "a report on a closed incident wrote");
    // The hold outlives the closure and can still be released.
    ok(&v
        .cmd(&[
            "incident",
            "release",
            "INC-L",
            "--name",
            "h1",
            "--reason",
            "case closed",
            "--authorisation",
            "counsel",
        ])
        .output()
        .unwrap());
    let status = json(
        &v.cmd(&["incident", "status", "INC-L", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["state"], "closed");
    v.assert_intact();
}

#[test]
fn clocks_show_the_worked_example_late_by_29h35m() {
    let v = TestVault::new();
    declared(&v, "INC-K");
    ok(&v
        .cmd(&[
            "incident",
            "report",
            "INC-K",
            "--regime",
            "kr-network-act",
            "--kind",
            "report",
            "--authority",
            "KISA",
            "--filed-at",
            "2025-11-19T21:35:00+09:00",
            "--reference",
            "K-1",
            "--channel",
            "portal",
        ])
        .output()
        .unwrap());
    let s = json(
        &v.cmd(&[
            "incident",
            "status",
            "INC-K",
            "--json",
            "--at",
            "2025-11-20T12:00:00+09:00",
        ])
        .output()
        .unwrap(),
    );
    let clocks = s["clocks"].as_array().unwrap();
    let kr = clocks
        .iter()
        .find(|c| c["regime"] == "kr-network-act" && c["rule"] == "report")
        .expect("the Network Act clock");
    assert_eq!(kr["state"], "late", "{kr:#}");
    assert_eq!(kr["by"]["text"], "29h35m", "{kr:#}");
    assert_eq!(kr["deadline"], "2025-11-18T16:00:00+09:00");
    let gdpr = clocks.iter().find(|c| c["regime"] == "gdpr").unwrap();
    // No GDPR filing yet: four hours left of the 72.
    assert_eq!(gdpr["state"], "open", "{gdpr:#}");
    assert_eq!(gdpr["left"]["text"], "4h00m", "{gdpr:#}");
    // The human view says the same.
    let text = ok(&v
        .cmd(&[
            "incident",
            "status",
            "INC-K",
            "--at",
            "2025-11-20T12:00:00+09:00",
        ])
        .output()
        .unwrap());
    assert!(text.contains("LATE by 29h35m"), "{text}");
    // A fact learned after the report starts its own 24-hour clock.
    ok(&v
        .cmd(&[
            "incident",
            "fact",
            "INC-K",
            "a second host was reached",
            "--learned-at",
            "2025-11-20T09:00:00+09:00",
        ])
        .output()
        .unwrap());
    let s = json(
        &v.cmd(&[
            "incident",
            "status",
            "INC-K",
            "--json",
            "--at",
            "2025-11-21T10:00:00+09:00",
        ])
        .output()
        .unwrap(),
    );
    let fact = s["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "fact_report")
        .expect("a fact clock");
    assert_eq!(fact["state"], "overdue", "{fact:#}");
    assert_eq!(fact["by"]["text"], "1h00m", "{fact:#}");
}

#[test]
fn reading_evidence_leaves_a_custody_event_first() {
    let v = TestVault::new();
    declared(&v, "INC-C");
    let path = v.data.join("auth.log");
    let path = path.to_str().unwrap();
    // Without the key nothing is read and nothing is written.
    let before = segments(&v);
    let o = crate::common::custody()
        .args(["cat", "INC-C", path, "--purpose", "x", "--vault"])
        .arg(&v.vault)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        o.stdout.is_empty(),
        "cat printed evidence without recording"
    );
    assert_eq!(segments(&v), before);
    // cat without a purpose is refused by the parser.
    let o = crate::common::custody()
        .args(["cat", "INC-C", path, "--vault"])
        .arg(&v.vault)
        .env("CUSTODY_KEY", &v.key)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());

    let o = v
        .cmd(&[
            "cat",
            "INC-C",
            path,
            "--as",
            "dpo",
            "--as-reason",
            "on behalf of the DPO",
        ])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(o.stdout, std::fs::read(path).unwrap());
    ok(&v.cmd(&["show", "INC-C"]).output().unwrap());
    let bundle = v.tmp.path().join("b.tar");
    ok(&v
        .cmd(&["export", "INC-C", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    ok(&v
        .cmd(&[
            "incident",
            "transfer",
            "INC-C",
            "--from",
            "responder",
            "--to",
            "lab",
            "--purpose",
            "analysis",
        ])
        .output()
        .unwrap());
    // verify records when given a key.
    let o = v
        .cmd(&["verify", "--json", "--key", v.key.to_str().unwrap()])
        .output()
        .unwrap();
    let r = json(&o);
    assert!(r["recorded_in"].is_u64(), "{r:#}");
    // Without a key it says so, and with a key of another vault it says
    // whose; neither records anything.
    let logged = entries(&v).len();
    let o = v.cmd(&["verify", "--json"]).output().unwrap();
    let why = json(&o)["not_recorded"].as_str().unwrap().to_owned();
    assert!(why.contains("no signing key"), "{why}");
    let (other, other_key) = (v.tmp.path().join("other"), v.tmp.path().join("other.key"));
    let init = [
        "init",
        "--origin",
        "other.example/vault",
        "--vault",
        other.to_str().unwrap(),
        "--key",
        other_key.to_str().unwrap(),
    ];
    ok(&custody().args(init).output().unwrap());
    let o = v
        .cmd(&["verify", "--json", "--key", other_key.to_str().unwrap()])
        .output()
        .unwrap();
    let why = json(&o)["not_recorded"].as_str().unwrap().to_owned();
    assert!(why.contains("is not a key of this vault"), "{why}");
    assert_eq!(entries(&v).len(), logged, "nothing recorded");

    let events: Vec<_> = entries(&v)
        .into_iter()
        .filter(|e| e["type"] == "custody_event")
        .collect();
    let actions: Vec<_> = events
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["action"].as_str().unwrap(),
                e["via"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "accessed/cat",
            "accessed/show",
            "exported/export",
            "transferred/incident transfer",
            "verified/verify"
        ]
    );
    let cat = &events[0];
    assert_eq!(cat["actor"]["name"], "dpo");
    assert_eq!(cat["actor"]["as_reason"], "on behalf of the DPO");
    assert_eq!(cat["purpose"], "test");
    assert_eq!(cat["subjects"][0]["path"], path);
    assert_eq!(events[2]["recipient"], "auditor");
    assert_eq!(events[3]["to"], "lab");
    assert!(events[4]["incident"].is_null());
    assert!(
        events[4]["result"].as_str().unwrap().starts_with("ok"),
        "{:#}",
        events[4]
    );
    let status = json(
        &v.cmd(&["incident", "status", "INC-C", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["custodian"], "lab");
    // A transfer must start from the current custodian.
    let o = v
        .cmd(&[
            "incident",
            "transfer",
            "INC-C",
            "--from",
            "responder",
            "--to",
            "court",
            "--purpose",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    v.assert_intact();
}

/// The manifest of `incident` written to a new file; its path and JSON summary.
fn manifest(v: &TestVault, incident: &str, name: &str) -> (std::path::PathBuf, serde_json::Value) {
    let out = v.tmp.path().join(name);
    let s = json(
        &v.cmd(&[
            "manifest",
            incident,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap(),
    );
    (out, s)
}

fn verify_manifest(v: &TestVault, file: &std::path::Path) -> Output {
    crate::common::custody()
        .arg("verify-manifest")
        .arg(file)
        .args(["--vault-id", &v.vault_id, "--json"])
        .output()
        .unwrap()
}

#[test]
fn manifests_verify_offline_chain_and_fail_when_touched() {
    let v = TestVault::new();
    declared(&v, "INC-M");
    ok(&v
        .cmd(&[
            "incident",
            "order",
            "INC-M",
            "--authority",
            "court",
            "--reference",
            "ORD-1",
            "--received-at",
            "2025-11-20T10:00:00+09:00",
        ])
        .output()
        .unwrap());
    let (first, s1) = manifest(&v, "INC-M", "m1.json");
    let r = json(&verify_manifest(&v, &first));
    assert_eq!(r["incident"], "INC-M");
    assert_eq!(r["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(r["sha256"], s1["sha256"]);
    assert!(r["previous"].is_null());
    // The sealing entry is in the log; the next manifest chains to it.
    let sealed: Vec<_> = entries(&v)
        .into_iter()
        .filter(|e| e["type"] == "manifest_sealed")
        .collect();
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0]["sha256"], s1["sha256"]);
    let (second, _) = manifest(&v, "INC-M", "m2.json");
    let r2 = json(&verify_manifest(&v, &second));
    assert_eq!(r2["previous"], s1["sha256"]);
    // Never over an existing file.
    let o = v
        .cmd(&["manifest", "INC-M", "--out", first.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));

    // Another vault's id does not anchor it.
    let o = crate::common::custody()
        .arg("verify-manifest")
        .arg(&first)
        .args(["--vault-id", &"ab".repeat(32)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));

    let b64 = base64::engine::general_purpose::STANDARD;
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    let statement: serde_json::Value =
        serde_json::from_slice(&b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let write = |name: &str, st: &serde_json::Value, signer: &custody::keys::VaultSigner| {
        let p = v.tmp.path().join(name);
        let bytes = custody::dsse::sign(
            custody::manifest::PAYLOAD_TYPE,
            &serde_json::to_vec(st).unwrap(),
            &[signer],
        );
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // Re-signed unchanged by the vault key: still fine (the checker is not
    // just comparing bytes).
    assert!(
        verify_manifest(&v, &write("same.json", &statement, &key))
            .status
            .success()
    );
    // A subject digest changed and re-signed with the vault key: the proven
    // log disagrees.
    let mut st = statement.clone();
    st["subject"][0]["digest"]["sha256"] = "00".repeat(32).into();
    let o = verify_manifest(&v, &write("digest.json", &st, &key));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("disagrees"));
    // A record entry removed: disagrees.
    let mut st = statement.clone();
    st["predicate"]["record"].as_array_mut().unwrap().remove(1);
    assert_eq!(
        verify_manifest(&v, &write("record.json", &st, &key))
            .status
            .code(),
        Some(1)
    );
    // Signed by another key: refused.
    let stranger = custody::keys::VaultSigner::from_seed("x", [9; 32]);
    let o = verify_manifest(&v, &write("stranger.json", &statement, &stranger));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("signature"));
    // A flipped payload byte: refused.
    let mut env2 = env.clone();
    let mut payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let at = payload.len() / 2;
    payload[at] ^= 1;
    env2["payload"] = b64.encode(payload).into();
    let p = v.tmp.path().join("flipped.json");
    std::fs::write(&p, serde_json::to_vec(&env2).unwrap()).unwrap();
    assert_eq!(verify_manifest(&v, &p).status.code(), Some(1));
}

/// The README's snippet, with the verifier key and file from argv.
const PY_MANIFEST: &str = r#"
import base64, hashlib, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
verifier, path = sys.argv[1], sys.argv[2]
raw = base64.b64decode(verifier.split("+", 2)[2])[1:]
keyid = hashlib.sha256(raw).hexdigest()
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": raw.hex()})
env = Envelope.from_dict(json.load(open(path)))
assert env.payload_type == "application/vnd.in-toto+json", env.payload_type
env.verify([key], 1)
st = json.loads(env.payload)
assert st["_type"] == "https://in-toto.io/Statement/v1"
for s in st["subject"]:
    print(s["digest"]["sha256"], s["name"])
"#;

/// An auditor checks the manifest with an independent DSSE implementation
/// and the evidence with sha256sum, as the README says.
#[test]
fn securesystemslib_and_sha256sum_check_a_manifest() {
    let python = std::env::var("CUSTODY_PY").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import securesystemslib.dsse"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !crate::common::available(has, "securesystemslib")
        || !crate::common::require_tool("sha256sum")
    {
        return;
    }
    let v = TestVault::new();
    declared(&v, "INC-A");
    let (file, _) = manifest(&v, "INC-A", "m.json");
    let key = custody::keys::VaultSigner::load(&v.key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, PY_MANIFEST).unwrap();
    let verifier = |k: &custody::keys::VaultSigner| {
        custody::keys::PublicKey::note_verifier_key(&k.verifying_key(), k.name())
    };
    let out = Command::new(&python)
        .arg(&script)
        .arg(verifier(&key))
        .arg(&file)
        .output()
        .unwrap();
    let listed = ok(&out);
    // Restore each subject next to the list and let sha256sum -c check it.
    let mut sums = String::new();
    for (i, line) in listed.lines().enumerate() {
        let (digest, name) = line.split_once(' ').unwrap();
        let restored = dir.path().join(format!("{i}.bin"));
        let o = v.cmd(&["cat", "INC-A", name]).output().unwrap();
        std::fs::write(&restored, ok_bytes(&o)).unwrap();
        sums.push_str(&format!("{digest}  {}\n", restored.display()));
    }
    assert!(!sums.is_empty());
    std::fs::write(dir.path().join("SHA256SUMS"), &sums).unwrap();
    let o = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    ok(&o);
    // The independent checker rejects the envelope under another key.
    let stranger = custody::keys::VaultSigner::from_seed("x", [9; 32]);
    let out = Command::new(&python)
        .arg(&script)
        .arg(verifier(&stranger))
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn ok_bytes(o: &Output) -> Vec<u8> {
    ok(o);
    o.stdout.clone()
}

#[test]
fn manifest_coverage_states_record_times_gaps_and_the_order_scope() {
    let v = TestVault::new();
    let lines = |hours: &[u32]| -> Vec<u8> {
        hours
            .iter()
            .map(|h| format!("{{\"ts\":\"2025-11-17T{h:02}:00:00Z\",\"msg\":\"login\"}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    v.write("app/a.jsonl", &lines(&[10, 10, 11]));
    v.write("app/b.jsonl", &lines(&[14, 15]));
    v.write("notes.txt", b"no timestamps here\n");
    ok(&v.declare("INC-V", &["--path", v.data.to_str().unwrap()]));
    ok(&v
        .cmd(&[
            "incident",
            "order",
            "INC-V",
            "--authority",
            "court",
            "--reference",
            "O-1",
            "--received-at",
            "2025-11-18T10:00:00Z",
            "--from",
            "2025-11-17T08:00:00Z",
            "--until",
            "2025-11-17T15:00:00Z",
        ])
        .output()
        .unwrap());
    let (file, _) = manifest(&v, "INC-V", "m.json");
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let st: serde_json::Value =
        serde_json::from_slice(&b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    let cov = &st["predicate"]["coverage"][0];
    assert_eq!(cov["first"], "2025-11-17T10:00:00Z", "{cov:#}");
    assert_eq!(cov["last"], "2025-11-17T15:00:00Z", "{cov:#}");
    let gaps = cov["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{cov:#}");
    assert!(gaps[0]["after"].as_str().unwrap().ends_with("a.jsonl"));
    assert!(gaps[0]["before"].as_str().unwrap().ends_with("b.jsonl"));
    assert_eq!(
        cov["before_scope"],
        serde_json::json!(["2025-11-17T08:00:00Z", "2025-11-17T10:00:00Z"]),
        "{cov:#}"
    );
    assert!(cov["after_scope"].is_null(), "{cov:#}");
    let unknown = cov["unknown"].as_array().unwrap();
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].as_str().unwrap().ends_with("notes.txt"));
}

/// The segments holding an entry of `incident`, as vault keys.
fn segments_of(v: &TestVault, incident: &str) -> Vec<String> {
    let out = ok(&v.cmd(&["log", "--json"]).output().unwrap());
    out.lines()
        .filter_map(|l| {
            let seg: serde_json::Value = serde_json::from_str(l).unwrap();
            let mine = seg["entries"]
                .as_array()?
                .iter()
                .any(|e| e["incident"] == incident);
            mine.then(|| custody::layout::segment_path(seg["seq"].as_u64().unwrap()))
        })
        .collect()
}

/// FORMAT.md §11.2 on a local vault: a hold makes the incident's files
/// read-only, including segments written for it later; verify reports a file
/// whose protection was lifted behind custody's back (hold_missing) until
/// `incident protect` puts it back; a release lifts the protection of the
/// incident's own files but not of a pack another held incident shares.
#[test]
fn holds_are_enforced_by_the_store_and_verify_reports_a_lifted_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let v = TestVault::new();
    declared(&v, "INC-A");
    declared(&v, "INC-B");
    let writable = |key: &str| {
        std::fs::metadata(v.vault.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o222
            != 0
    };
    let hold = |verb: &str, id: &str| {
        ok(&v.cmd(&crate::common::hold_args(verb, id)).output().unwrap());
    };
    let verify = || {
        let o = v
            .cmd(&["verify", "--json", "--quiet", "--no-record"])
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code(), r)
    };
    let packs: Vec<String> = crate::common::walk(&v.vault.join("packs"))
        .iter()
        .map(|p| {
            p.strip_prefix(&v.vault)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(packs.len(), 1, "both incidents share one pack: {packs:?}");
    hold("hold", "INC-A");
    for key in segments_of(&v, "INC-A").iter().chain(&packs) {
        assert!(!writable(key), "{key} of the held incident is writable");
    }
    for key in segments_of(&v, "INC-B") {
        assert!(writable(&key), "{key} of INC-B was made read-only");
    }
    // A segment written later for the held incident is protected too.
    ok(&v
        .cmd(&["incident", "note", "INC-A", "called the DPO"])
        .output()
        .unwrap());
    let newest = segments_of(&v, "INC-A").pop().unwrap();
    assert!(!writable(&newest), "{newest}: a later segment is writable");
    let (code, r) = verify();
    assert_eq!(code, Some(0), "{r:#}");
    // Someone makes one file writable again: verify names it.
    let victim = segments_of(&v, "INC-A")[0].clone();
    std::fs::set_permissions(
        v.vault.join(&victim),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, r) = verify();
    assert_eq!(code, Some(1), "{r:#}");
    let f: Vec<_> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "hold_missing")
        .collect();
    assert_eq!(f.len(), 1, "{r:#}");
    assert_eq!(f[0]["object"], victim.as_str());
    assert!(f[0]["message"].as_str().unwrap().contains("writable"));
    ok(&v.cmd(&["incident", "protect", "INC-A"]).output().unwrap());
    let (code, r) = verify();
    assert_eq!(code, Some(0), "{r:#}");
    // INC-B is held as well; releasing INC-A frees its own segments but
    // not the pack INC-B's hold still covers.
    hold("hold", "INC-B");
    hold("release", "INC-A");
    for key in segments_of(&v, "INC-A") {
        if segments_of(&v, "INC-B").contains(&key) {
            continue;
        }
        assert!(writable(&key), "{key} stayed read-only after the release");
    }
    assert!(!writable(&packs[0]), "the shared pack lost its protection");
    let (code, r) = verify();
    assert_eq!(code, Some(0), "{r:#}");
    // Nothing to protect once no hold is in place.
    hold("release", "INC-B");
    let o = v.cmd(&["incident", "protect", "INC-B"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(writable(&packs[0]));
    v.assert_intact();
}
