//! `custody export-case` writes CASE/UCO JSON-LD that case-utils'
//! `case_validate` (the CASE community's SHACL validator) accepts, with one
//! node of the right class per artifact, run, custody event and order; and
//! the validator is shown to reject a corrupted copy, so it is really
//! looking. scripts/test.sh installs case-utils in .venv-test; in CI a
//! missing validator fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{TestVault, available, log_text};

/// `case_validate` beside `$CUSTODY_PY` (the test venv), else on PATH.
fn case_validate() -> Option<PathBuf> {
    if let Ok(py) = std::env::var("CUSTODY_PY")
        && let Some(dir) = Path::new(&py).parent()
    {
        let beside = dir.join("case_validate");
        if beside.is_file() {
            return Some(beside);
        }
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v case_validate"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(PathBuf::from(
        String::from_utf8_lossy(&on_path.stdout).trim(),
    ))
}

/// Runs case_validate on `file` with the CASE version it bundles by default;
/// returns exit status and the report.
fn validate(tool: &Path, file: &Path) -> (Option<i32>, String) {
    let out = Command::new(tool).arg(file).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn of_type<'a>(graph: &'a [Value], ty: &str) -> Vec<&'a Value> {
    graph.iter().filter(|n| n["@type"] == ty).collect()
}

/// Every entry of the log, from `custody log --json`.
fn log_entries(v: &TestVault) -> Vec<Value> {
    let out = v.cmd(&["log", "--json"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| {
            let seg: Value = serde_json::from_str(l).unwrap();
            seg["entries"].as_array().unwrap().clone()
        })
        .collect()
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

#[test]
fn export_case_conforms_to_case_and_maps_every_record() {
    let tool = case_validate();
    if !available(tool.is_some(), "case_validate (case-utils)") {
        return;
    }
    let tool = tool.unwrap();
    let v = TestVault::new();
    let auth = v.write("auth.log", &log_text(20_000, 7));
    v.write("nginx/access.log", b"GET / HTTP/1.1 \"quoted\" \\ \n");
    v.write("empty.log", b"");
    v.declare_data("INC-CASE");
    let id = "INC-CASE";
    ok(v.cmd(&[
        "incident",
        "order",
        id,
        "--authority",
        "Personal Information \"Protection\" Commission",
        "--reference",
        "PIPC-2025-118",
        "--received-at",
        "2025-11-20T10:00:00+09:00",
        "--source",
        "auth servers",
        "--from",
        "2025-04-01T00:00:00+09:00",
    ])
    .output()
    .unwrap());
    ok(v.cmd(&["cat", id, auth.to_str().unwrap()])
        .output()
        .unwrap());
    let bundle = v.tmp.path().join("bundle.tar");
    ok(v.cmd(&["export", id, "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    ok(v.cmd(&[
        "incident",
        "transfer",
        id,
        "--from",
        "alice",
        "--to",
        "lab",
        "--purpose",
        "x",
    ])
    .output()
    .unwrap());
    let file = v.tmp.path().join("case.jsonld");
    let out = ok(v
        .cmd(&[
            "export-case",
            id,
            "--out",
            file.to_str().unwrap(),
            "--to",
            "auditor",
            "--purpose",
            "court filing",
        ])
        .output()
        .unwrap());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CASE 1.5.0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The export is itself a custody event, recorded before the graph was
    // made, so the graph carries it.
    let entries = log_entries(&v);
    let count = |ty: &str| {
        entries
            .iter()
            .filter(|e| e["type"] == ty && e["incident"] == id)
            .count()
    };
    let last = entries.last().unwrap();
    assert_eq!(last["type"], "custody_event");
    assert_eq!(last["action"], "exported");
    assert_eq!(last["via"], "export-case");
    assert_eq!(last["recipient"], "auditor");
    assert_eq!(last["purpose"], "court filing");
    assert_eq!(last["output"], file.to_str().unwrap());

    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let graph = doc["@graph"].as_array().unwrap();
    let artifacts: Vec<&Value> = entries.iter().filter(|e| e["type"] == "artifact").collect();
    assert_eq!(artifacts.len(), 3);
    assert_eq!(
        of_type(graph, "case-investigation:ProvenanceRecord").len(),
        count("artifact"),
        "one provenance record per artifact"
    );
    assert_eq!(
        count("custody_event"),
        4,
        "cat, export, transfer, export-case"
    );
    assert_eq!(
        of_type(graph, "case-investigation:InvestigativeAction").len(),
        count("custody_event") + count("preservation_started"),
        "one investigative action per custody event and per run"
    );
    assert_eq!(
        of_type(graph, "case-investigation:Authorization").len(),
        count("preservation_order"),
        "one authorization per preservation order"
    );
    assert_eq!(of_type(graph, "case-investigation:Investigation").len(), 1);
    // Every artifact's SHA-256 is a hash node, exactly as in the log.
    let hashes: Vec<&str> = of_type(graph, "uco-types:Hash")
        .iter()
        .map(|h| h["uco-types:hashValue"]["@value"].as_str().unwrap())
        .collect();
    for a in &artifacts {
        assert!(hashes.contains(&a["sha256"].as_str().unwrap()), "{a}");
    }
    let names: Vec<&str> = of_type(graph, "case-investigation:InvestigativeAction")
        .iter()
        .map(|a| a["uco-core:name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "collected via declare",
            "accessed via cat",
            "exported via export",
            "transferred via incident transfer",
            "exported via export-case"
        ]
    );
    // The same vault exports the same graph (apart from the new export event).
    let again = ok(v
        .cmd(&["export-case", id, "--purpose", "again"])
        .output()
        .unwrap());
    let doc2: Value = serde_json::from_slice(&again.stdout).unwrap();
    let ids = |d: &Value| -> Vec<String> {
        d["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["@id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, second) = (ids(&doc), ids(&doc2));
    assert!(first.iter().all(|i| second.contains(i)));
    assert_eq!(second.len(), first.len() + 1, "one more action");
    // An existing file is never written over, and nothing is recorded.
    let before = log_entries(&v).len();
    let refused = v
        .cmd(&["export-case", id, "--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(log_entries(&v).len(), before);
    v.assert_intact();

    // case_validate, with the CASE version case-utils bundles by default.
    let (code, report) = validate(&tool, &file);
    assert!(
        code == Some(0) && report.contains("Conforms: True"),
        "case_validate rejected the export:\n{report}"
    );

    // And it does reject a broken graph: a size that is not an integer.
    let mut broken = doc.clone();
    let facet = broken["@graph"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["@type"] == "uco-observable:ContentDataFacet")
        .unwrap();
    facet["uco-observable:sizeInBytes"] = "abc".into();
    let bad = v.tmp.path().join("broken.jsonld");
    std::fs::write(&bad, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let (code, report) = validate(&tool, &bad);
    assert!(
        code != Some(0) && report.contains("Conforms: False") && report.contains("sizeInBytes"),
        "case_validate accepted a corrupted graph:\n{report}"
    );
}
