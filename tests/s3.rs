//! `s3://` vaults against real S3 servers on loopback: moto (the strictest
//! oracle of conditional writes) and a Ceph RADOS gateway (a real
//! distributed store). scripts/test.sh starts both (scripts/start-moto.sh,
//! scripts/start-ceph.sh) and exports their endpoints and credentials.

use std::path::Path;
use std::process::{Command, Output};

/// The binary, with a clean environment for custody's own variables.
fn custody() -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("custody"));
    for v in ["CUSTODY_VAULT", "CUSTODY_KEY", "CUSTODY_CONFIG"] {
        c.env_remove(v);
    }
    c
}

/// A server the tests can reach: its name and endpoint.
fn servers() -> Vec<(&'static str, String)> {
    let found: Vec<_> = [
        ("moto", "CUSTODY_TEST_MOTO_ENDPOINT"),
        ("ceph", "CUSTODY_TEST_CEPH_ENDPOINT"),
    ]
    .into_iter()
    .filter_map(|(name, var)| {
        let ok = std::env::var(var).ok().filter(|v| !v.is_empty());
        crate::common::available(ok.is_some(), &format!("the {name} S3 server ({var})"));
        ok.map(|e| (name, e))
    })
    .collect();
    found
}

fn bucket() -> String {
    std::env::var("CUSTODY_TEST_BUCKET").unwrap_or_else(|_| "custody-test".into())
}

/// A fresh vault location in the test bucket.
fn location(tag: &str) -> String {
    let nonce: u64 = rand::random();
    format!("s3://{}/{tag}-{nonce:016x}", bucket())
}

struct S3Vault {
    endpoint: String,
    vault: String,
    key: std::path::PathBuf,
    data: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl S3Vault {
    fn new(endpoint: &str, tag: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("vault.key");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let v = Self {
            endpoint: endpoint.to_owned(),
            vault: location(tag),
            key,
            data,
            _tmp: tmp,
        };
        ok(&v
            .cmd(&[
                "init",
                "--origin",
                "s3.custody.example/test",
                "--key",
                v.key.to_str().unwrap(),
            ])
            .output()
            .unwrap());
        v
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = custody();
        c.args(args)
            .arg("--vault")
            .arg(&self.vault)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
        if args.first() != Some(&"init") {
            c.env("CUSTODY_KEY", &self.key);
        }
        c
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn declare(&self, incident: &str, path: &Path) -> Output {
        self.cmd(&[
            "declare",
            incident,
            "--title",
            "s3 test",
            "--quiet",
            "--json",
            "--path",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap()
    }

    fn verify(&self) -> serde_json::Value {
        let o = self
            .cmd(&["verify", "--json", "--quiet", "--no-record"])
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("verify output: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(o.status.code(), Some(0), "{r:#}");
        r
    }
}

use crate::common::ok;

#[test]
fn declare_verify_show_cat_on_s3() {
    for (name, endpoint) in servers() {
        let v = S3Vault::new(&endpoint, "e2e");
        let big = crate::common::log_text(3 << 20, 7);
        let big_path = v.write("app.log", &big);
        v.write("auth.log", b"Nov 17 16:00:01 web-1 sshd[1]: Accepted\n");
        let s: serde_json::Value =
            serde_json::from_str(&ok(&v.declare("INC-S3", &v.data))).unwrap();
        assert_eq!(s["complete"], 2, "{name}: {s:#}");
        let r = v.verify();
        assert_eq!(r["artifacts"], 2, "{name}");
        assert!(
            r["bytes_checked"].as_u64().unwrap() >= big.len() as u64,
            "{name}"
        );
        ok(&v.cmd(&["show", "INC-S3"]).output().unwrap());
        let o = v
            .cmd(&[
                "cat",
                "INC-S3",
                big_path.to_str().unwrap(),
                "--purpose",
                "test",
            ])
            .output()
            .unwrap();
        ok(&o);
        assert!(o.stdout == big, "{name}: restored bytes differ");
        // Lifecycle and manifest work the same on S3.
        ok(&v
            .cmd(&["incident", "note", "INC-S3", "stored on s3"])
            .output()
            .unwrap());
        let m = v._tmp.path().join("m.json");
        ok(&v
            .cmd(&["manifest", "INC-S3", "--out", m.to_str().unwrap()])
            .output()
            .unwrap());
        v.verify();
    }
}

/// Segments and packs are written once: a second create of an existing key
/// is refused by the server, and the checkpoint pointer only moves by
/// compare-and-swap.
#[test]
fn objects_are_written_once_and_the_pointer_moves_by_cas() {
    use custody::store::{Put, S3Settings, Store};
    for (name, endpoint) in servers() {
        let loc = location("once");
        let settings = S3Settings {
            endpoint: Some(endpoint.clone()),
            region: None,
            allow_http: Some(true),
        };
        let store = Store::open_with(&loc, &settings).unwrap();
        let k = "segments/00000000000000000001";
        assert_eq!(
            store
                .put_once(k, bytes::Bytes::from_static(b"first"))
                .unwrap(),
            Put::Created,
            "{name}"
        );
        assert_eq!(
            store
                .put_once(k, bytes::Bytes::from_static(b"second"))
                .unwrap(),
            Put::AlreadyExists,
            "{name}: an overwrite must be refused"
        );
        assert_eq!(&store.get(k, 100).unwrap().unwrap()[..], b"first", "{name}");
        // The pointer: created, advanced, never moved backwards.
        let newer = |cur: Option<&[u8]>, n: u8| cur.is_none_or(|c| c[0] < n);
        assert!(
            store
                .replace_pointer("checkpoint", vec![1].into(), 10, |c| newer(c, 1))
                .unwrap()
        );
        assert!(
            store
                .replace_pointer("checkpoint", vec![3].into(), 10, |c| newer(c, 3))
                .unwrap()
        );
        assert!(
            !store
                .replace_pointer("checkpoint", vec![2].into(), 10, |c| newer(c, 2))
                .unwrap()
        );
        assert_eq!(
            &store.get("checkpoint", 10).unwrap().unwrap()[..],
            [3],
            "{name}"
        );
        // Two stores racing on the pointer: each write is a CAS, so the
        // largest value wins whatever the order.
        let a = Store::open_with(&loc, &settings).unwrap();
        let b = Store::open_with(&loc, &settings).unwrap();
        std::thread::scope(|s| {
            for (st, base) in [(&a, 10u8), (&b, 11u8)] {
                s.spawn(move || {
                    for i in 0..10u8 {
                        let n = base + 2 * i;
                        st.replace_pointer("checkpoint", vec![n].into(), 10, |c| newer(c, n))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(
            &store.get("checkpoint", 10).unwrap().unwrap()[..],
            [29],
            "{name}"
        );
    }
}

/// Four processes, each its own view of the vault (as on separate hosts),
/// declare different incidents at once, several rounds: all succeed, the
/// log has no gap and no fork, every artifact is there, verify passes.
#[test]
fn four_writers_at_once_on_s3() {
    for (name, endpoint) in servers() {
        let v = S3Vault::new(&endpoint, "writers");
        for w in 0..4 {
            v.write(&format!("w{w}/a.log"), &crate::common::log_text(200_000, w));
        }
        for round in 0..3 {
            let children: Vec<_> = (0..4)
                .map(|w| {
                    v.cmd(&[
                        "declare",
                        &format!("INC-{round}-{w}"),
                        "--title",
                        "race",
                        "--quiet",
                        "--json",
                        "--path",
                        v.data.join(format!("w{w}")).to_str().unwrap(),
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
                })
                .collect();
            for c in children {
                let o = c.wait_with_output().unwrap();
                ok(&o);
            }
        }
        let r = v.verify();
        assert_eq!(r["artifacts"], 12, "{name}: {r:#}");
        // Incidents, declarations and finishes all present once.
        let list: serde_json::Value = serde_json::from_str(&ok(&v
            .cmd(&["incident", "list", "--json"])
            .output()
            .unwrap()))
        .unwrap();
        assert_eq!(list.as_array().unwrap().len(), 12, "{name}");
    }
}

/// `kill -9` of the real binary in the middle of a declare against each
/// server: the vault verifies (the written packs are unreferenced
/// information) and the next declare completes.
#[test]
fn kill_during_declare_on_s3_then_verify_and_declare_again() {
    use std::os::unix::process::CommandExt as _;
    use std::time::{Duration, Instant};
    for (name, endpoint) in servers() {
        let v = S3Vault::new(&endpoint, "crash");
        v.write("a.log", b"before the crash\n");
        let mut cmd = v.cmd(&[
            "declare",
            "INC-CRASH",
            "--title",
            "crash",
            "--quiet",
            "--path",
            v.data.to_str().unwrap(),
            "--command",
            "sh -c 'head -c 40000000 /dev/urandom; sleep 120'",
        ]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let child = cmd.spawn().unwrap();
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let store = custody::store::Store::open_with(
            &v.vault,
            &custody::store::S3Settings {
                endpoint: Some(endpoint.clone()),
                region: None,
                allow_http: Some(true),
            },
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while store.list("packs/").unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "{name}: no pack was written in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let mut child = child;
        child.wait().unwrap();
        let r = v.verify();
        assert!(
            crate::common::kinds(&r).contains(&"pack_unreferenced".to_string()),
            "{name}: {r:#}"
        );
        std::fs::remove_dir_all(&v.data).unwrap();
        v.write("b.log", b"after the crash\n");
        let s: serde_json::Value =
            serde_json::from_str(&ok(&v.declare("INC-CRASH", &v.data))).unwrap();
        assert_eq!(s["newly_declared"], false, "{name}");
        assert_eq!(s["complete"], 1, "{name}");
        v.verify();
    }
}

/// On a backend doctor found unsafe for several writers, the probe is
/// recorded, writers refuse to append, and CUSTODY_SINGLE_WRITER=1 (the
/// operator's word) lets one writer go on, reading each segment back.
fn single_writer_mode_on_a_backend_that_ignores_create_once(endpoint: &str, bucket: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k.key");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.log"), b"evidence\n").unwrap();
    let loc = format!("s3://{bucket}/single-{:016x}", rand::random::<u64>());
    let run = |args: &[&str], single: bool| {
        let mut c = custody();
        c.args(args)
            .args(["--vault", &loc])
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("CUSTODY_KEY", &key);
        if single {
            c.env("CUSTODY_SINGLE_WRITER", "1");
        }
        c.output().unwrap()
    };
    // init probes the backend and records what it found; so does doctor,
    // which then needs the single-writer word like every other writer.
    let init = ok(&run(&["init", "--origin", "lock.example/v"], false));
    assert!(init.contains("ONE AT A TIME"), "{init}");
    let o = run(&["doctor", "--json"], false);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["not_recorded"].is_string(), "{r:#}");
    let o = run(&["doctor", "--json"], true);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["recorded_in"].is_u64(), "{r:#}");
    let declare = [
        "declare",
        "INC-1",
        "--title",
        "t",
        "--quiet",
        "--path",
        data.to_str().unwrap(),
    ];
    let o = run(&declare, false);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not enforce create-once"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&run(&declare, true));
    let o = run(&["verify", "--json", "--quiet", "--no-record"], false);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    assert_eq!(v["artifacts"], 1);
}

/// `custody doctor` tells what each backend enforces: create-once and the
/// pointer's compare-and-swap hold on plain buckets of both servers; Ceph
/// RGW 16 ignores If-None-Match on an Object Lock (versioned) bucket, and
/// doctor says so with exit status 1.
#[test]
fn doctor_probes_what_each_backend_enforces() {
    let lock = std::env::var("CUSTODY_TEST_LOCK_BUCKET").unwrap_or_else(|_| "custody-lock".into());
    for (name, endpoint) in servers() {
        let run = |loc: &str| {
            let o = custody()
                .args(["doctor", "--json", "--vault", loc])
                .env("AWS_ENDPOINT_URL", &endpoint)
                .env("AWS_ALLOW_HTTP", "true")
                .output()
                .unwrap();
            let r: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|_| panic!("{name}: {}", String::from_utf8_lossy(&o.stderr)));
            (o.status.code(), r)
        };
        let holds = |r: &serde_json::Value, probe: &str| {
            r["probes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == probe)
                .unwrap()["holds"]
                .clone()
        };
        let loc = location("doctor");
        let (code, r) = run(&loc);
        assert_eq!(code, Some(0), "{name}: {r:#}");
        // Probing first does not stop init, and the canaries are not
        // reported as foreign objects.
        let tmp = tempfile::tempdir().unwrap();
        let o = custody()
            .args([
                "init",
                "--origin",
                "doctor.example/v",
                "--vault",
                &loc,
                "--key",
            ])
            .arg(tmp.path().join("k.key"))
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap();
        ok(&o);
        let o = custody()
            .args(["verify", "--json", "--quiet", "--vault", &loc])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            !crate::common::kinds(&v).contains(&"unexpected_object".to_string()),
            "{name}: {v:#}"
        );
        assert_eq!(holds(&r, "create_once"), true, "{name}");
        assert_eq!(holds(&r, "compare_and_swap"), true, "{name}");
        assert_eq!(r["multi_writer_safe"], true);
        let (code, r) = run(&format!(
            "s3://{lock}/doctor-{:016x}",
            rand::random::<u64>()
        ));
        if name == "ceph" {
            assert_eq!(holds(&r, "create_once"), false, "{name}: {r:#}");
            assert_eq!(code, Some(1), "{name}");
            single_writer_mode_on_a_backend_that_ignores_create_once(&endpoint, &lock);
        } else {
            assert_eq!(holds(&r, "create_once"), true, "{name}: {r:#}");
            assert_eq!(code, Some(0), "{name}");
        }
    }
}

/// boto3 (from the moto venv scripts/start-moto.sh makes) as an independent
/// S3 client: it reads legal holds with HEAD, lifts one, or tries to delete
/// an object's current version for good.
fn boto3(endpoint: &str, bucket: &str, prefix: &str, args: &[&str]) -> String {
    const SCRIPT: &str = r#"
import sys, json, boto3, botocore
from botocore.config import Config
ep, bucket, prefix, action = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=ep,
                  config=Config(request_checksum_calculation="when_required"))
full = lambda k: prefix + "/" + k
if action == "holds":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            h = s3.head_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"][len(prefix) + 1:]] = h.get("ObjectLockLegalHoldStatus") or "none"
    print(json.dumps(out))
elif action == "lift":
    s3.put_object_legal_hold(Bucket=bucket, Key=full(sys.argv[5]), LegalHold={"Status": "OFF"})
    print("lifted")
elif action == "delete-version":
    h = s3.head_object(Bucket=bucket, Key=full(sys.argv[5]))
    try:
        s3.delete_object(Bucket=bucket, Key=full(sys.argv[5]), VersionId=h["VersionId"])
        print("deleted")
    except botocore.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])
"#;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-s3/bin/python");
    let o = Command::new(&python)
        .args(["-c", SCRIPT, endpoint, bucket, prefix])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        o.status.success(),
        "boto3 {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// FORMAT.md §11.2 on both servers: `init --create-bucket --object-lock`
/// makes a bucket with Object Lock and a default retention; a hold puts
/// every object of the incident under S3 legal hold (boto3 reads it back,
/// and cannot delete a held version); verify reports a hold lifted behind
/// custody's back, `incident protect` restores it; a release lifts the
/// incident's own objects but not a pack another held incident shares.
/// On Ceph the lock bucket ignores If-None-Match, so init's probe puts the
/// vault in single-writer mode.
#[test]
fn object_lock_retention_and_legal_holds() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-s3/bin/python");
    if !crate::common::available(python.exists(), "boto3 in .venv-s3 (scripts/start-moto.sh)") {
        return;
    }
    for (name, endpoint) in servers() {
        let bucket = format!("custody-lock-{:012x}", rand::random::<u64>() >> 16);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("auth.log"), crate::common::log_text(200_000, 3)).unwrap();
        let v = S3Vault {
            endpoint: endpoint.clone(),
            vault: format!("s3://{bucket}/v"),
            key: tmp.path().join("vault.key"),
            data,
            _tmp: tmp,
        };
        let init: serde_json::Value = serde_json::from_str(&ok(&v
            .cmd(&[
                "init",
                "--json",
                "--origin",
                "lock.custody.example/v",
                "--key",
                v.key.to_str().unwrap(),
                "--create-bucket",
                "--object-lock",
                "governance",
                "--retention-days",
                "1",
            ])
            .output()
            .unwrap()))
        .unwrap();
        assert_eq!(init["object_lock"]["enabled"], true, "{name}: {init:#}");
        assert_eq!(
            init["object_lock"]["default_retention"],
            serde_json::json!(["governance", 1]),
            "{name}"
        );
        let probe = |n: &str| {
            init["probe"]["probes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .map(|p| p["holds"].clone())
        };
        assert_eq!(probe("legal_hold"), Some(true.into()), "{name}: {init:#}");
        assert_eq!(probe("retention"), Some(true.into()), "{name}: {init:#}");
        // Ceph ignores If-None-Match on a versioned bucket: writers refuse
        // it until the operator vouches for a single writer.
        let single = init["probe"]["multi_writer_safe"] == false;
        assert_eq!(single, name == "ceph", "{name}: {init:#}");
        let cmd = |args: &[&str]| {
            let mut c = v.cmd(args);
            if single {
                c.env("CUSTODY_SINGLE_WRITER", "1");
            }
            c.output().unwrap()
        };
        if single {
            let o = v.declare("INC-REFUSED", &v.data);
            assert_eq!(o.status.code(), Some(2), "{name}");
            assert!(String::from_utf8_lossy(&o.stderr).contains("CUSTODY_SINGLE_WRITER"));
        }
        let seqs = |o: &Output| -> Vec<String> {
            let s: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
            s["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| format!("segments/{:020}", n.as_u64().unwrap()))
                .collect()
        };
        let declare = |id: &str| {
            cmd(&[
                "declare",
                id,
                "--title",
                "lock test",
                "--quiet",
                "--json",
                "--path",
                v.data.to_str().unwrap(),
            ])
        };
        let a_segs = seqs(&declare("INC-A"));
        let b_segs = seqs(&declare("INC-B"));
        let hold = |verb: &str, id: &str| ok(&cmd(&crate::common::hold_args(verb, id)));
        let holds = || -> std::collections::BTreeMap<String, String> {
            serde_json::from_str(&boto3(&endpoint, &bucket, "v", &["holds"])).unwrap()
        };
        let verify = || {
            let o = cmd(&["verify", "--json", "--quiet", "--no-record"]);
            let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            (o.status.code(), r)
        };
        hold("hold", "INC-A");
        let h = holds();
        let packs: Vec<&String> = h.keys().filter(|k| k.starts_with("packs/")).collect();
        assert_eq!(
            packs.len(),
            1,
            "{name}: the incidents share one pack: {h:?}"
        );
        let pack = packs[0].clone();
        assert_eq!(h[&pack], "ON", "{name}: {h:?}");
        for s in &a_segs {
            assert_eq!(h[s], "ON", "{name}: {s} of the held incident: {h:?}");
        }
        for s in &b_segs {
            assert_ne!(h[s], "ON", "{name}: {s} of INC-B is held: {h:?}");
        }
        // The store itself refuses to destroy a held version.
        assert_eq!(
            boto3(&endpoint, &bucket, "v", &["delete-version", &pack]),
            "AccessDenied",
            "{name}"
        );
        let (code, r) = verify();
        assert_eq!(code, Some(0), "{name}: {r:#}");
        assert!(r["held_objects"].as_u64().unwrap() > a_segs.len() as u64);
        // Someone lifts one legal hold behind custody's back.
        assert_eq!(
            boto3(&endpoint, &bucket, "v", &["lift", &a_segs[0]]),
            "lifted"
        );
        let (code, r) = verify();
        assert_eq!(code, Some(1), "{name}: {r:#}");
        let found: Vec<_> = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "hold_missing")
            .collect();
        assert_eq!(found.len(), 1, "{name}: {r:#}");
        assert_eq!(found[0]["object"], a_segs[0].as_str(), "{name}");
        ok(&cmd(&["incident", "protect", "INC-A"]));
        assert_eq!(holds()[&a_segs[0]], "ON", "{name}");
        assert_eq!(verify().0, Some(0), "{name}");
        // Releasing INC-A while INC-B is held keeps the shared pack held.
        hold("hold", "INC-B");
        hold("release", "INC-A");
        let h = holds();
        assert_eq!(
            h[&pack], "ON",
            "{name}: the shared pack was released: {h:?}"
        );
        assert_eq!(h[&a_segs[0]], "OFF", "{name}: {h:?}");
        assert_eq!(h[&b_segs[0]], "ON", "{name}: {h:?}");
        assert_eq!(verify().0, Some(0), "{name}");
        // Under the default retention, even a version no hold covers stays.
        assert_eq!(
            boto3(&endpoint, &bucket, "v", &["delete-version", &a_segs[0]]),
            "AccessDenied",
            "{name}"
        );
    }
}

/// A hold on a bucket without Object Lock is recorded, says plainly that
/// the store does not enforce it (exit 1), and verify reports it.
#[test]
fn a_hold_on_a_bucket_without_object_lock_is_recorded_but_reported() {
    for (name, endpoint) in servers() {
        let v = S3Vault::new(&endpoint, "nolock");
        v.write("auth.log", b"Nov 17 16:00:01 web-1 sshd[1]: Accepted\n");
        ok(&v.declare("INC-N", &v.data));
        let o = v
            .cmd(&[
                "incident",
                "hold",
                "INC-N",
                "--name",
                "h",
                "--reason",
                "r",
                "--authorisation",
                "a",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("has no Object Lock"), "{name}: {err}");
        let o = v
            .cmd(&["verify", "--json", "--quiet", "--no-record"])
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(o.status.code(), Some(1), "{name}: {r:#}");
        assert_eq!(
            crate::common::kinds(&r),
            vec!["hold_missing".to_string()],
            "{name}: {r:#}"
        );
        assert!(
            r["conclusion"]
                .as_str()
                .unwrap()
                .starts_with("NOT PROTECTED")
        );
    }
}
