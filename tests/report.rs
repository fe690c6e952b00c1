//! `custody report`: the chain of custody rendered for a regulator. The
//! Markdown is checked as text; the HTML is rendered by headless Chromium
//! (scripts/test.sh installs Debian's `chromium`) and checked on the page it
//! parsed, so broken markup or a missing section fails, and text from the
//! log must come out as text, never as markup.

use std::path::Path;

use crate::common::{TestVault, available, log_text, on_path};

const INC: &str = "INC-2025-1117";
const TITLE: &str = "Forged login tokens & a stolen signing key";
const NOTE: &str = "suspect <b>token</b> reuse | see auth.log";

use crate::common::ok;

/// A vault whose incident has the FORMAT.md §9.10 worked example (discovered
/// 2025-11-17 16:00 +09:00, initial report filed 29h35m after the 24-hour
/// deadline), a failed source, a hold, a note written on someone's behalf,
/// an access and a verification; returns the artifacts' SHA-256 digests.
fn vault_with_history() -> (TestVault, Vec<String>) {
    let v = TestVault::new();
    let auth = v.write("auth.log", &log_text(40_000, 7));
    v.write("nginx/access.log", b"GET /login 200\n");
    let gone = v.data.join("gone.log");
    let out = v
        .cmd(&[
            "declare",
            INC,
            "--title",
            TITLE,
            "--severity",
            "sev1",
            "--quiet",
            "--discovered-at",
            "2025-11-17T16:00:00+09:00",
            "--regime",
            "kr-network-act",
            "--path",
            v.data.to_str().unwrap(),
            "--path",
            gone.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    // The missing path is recorded as a failed artifact: exit status 1.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&v
        .cmd(&[
            "incident",
            "report",
            INC,
            "--regime",
            "kr-network-act",
            "--kind",
            "report",
            "--authority",
            "KISA",
            "--filed-at",
            "2025-11-19T21:35:00+09:00",
            "--reference",
            "K-77",
            "--channel",
            "portal",
        ])
        .output()
        .unwrap());
    ok(&v
        .cmd(&[
            "incident",
            "hold",
            INC,
            "--name",
            "litigation-2025-11",
            "--reason",
            "court order <script>alert(1)</script>",
            "--authorisation",
            "legal",
        ])
        .output()
        .unwrap());
    ok(&v
        .cmd(&[
            "incident",
            "note",
            INC,
            NOTE,
            "--as",
            "DPO",
            "--as-reason",
            "on behalf of the DPO",
        ])
        .output()
        .unwrap());
    ok(&v
        .cmd(&["cat", INC, auth.to_str().unwrap()])
        .output()
        .unwrap());
    ok(&v
        .cmd(&["verify", "--quiet", "--key", v.key.to_str().unwrap()])
        .output()
        .unwrap());
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&v.cmd(&["show", INC, "--json"]).output().unwrap())).unwrap();
    let digests: Vec<String> = shown["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["sha256"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(digests.len(), 3, "{shown:#}");
    (v, digests)
}

#[test]
fn markdown_report_tells_the_whole_chain_and_is_recorded() {
    let (v, digests) = vault_with_history();
    let md = ok(&v
        .cmd(&[
            "report",
            INC,
            "--purpose",
            "initial report to the regulator",
            "--to",
            "KISA",
        ])
        .output()
        .unwrap());
    assert!(
        md.starts_with("# Chain of custody report: INC-2025-1117\n"),
        "{md}"
    );
    for want in [
        r"Forged login tokens \& a stolen signing key",
        "## 1. Summary",
        "## 2. Timeline",
        "## 3. Preservation and coverage",
        "## 4. Regulatory clocks and filings",
        "## 5. Verification",
        "## 6. Evidence digests",
        "## How to check this report",
        "**late by 29h35m**",
        "2025-11-17 16:00:00 +09:00",
        "Incident discovered",
        "Preservation finished",
        "Report filed",
        "Legal hold placed",
        "Evidence accessed",
        "Vault verified",
        "ok: no damage",
        // The report's own export, recorded before it was rendered.
        "Evidence exported",
        "initial report to the regulator",
        // Log text is escaped: markup stays text, pipes do not split cells.
        r"suspect \<b\>token\</b\> reuse \| see auth.log",
        r"court order \<script\>alert(1)\</script\>",
        "custody verify-manifest",
        "sha256sum",
        // Who acted, and as whom and why when not as themselves.
        " as DPO because on behalf of the DPO",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    assert!(!md.contains("<b>") && !md.contains("<script>"), "{md}");
    // The failed source is listed with its reason.
    let gone = v.data.join("gone.log");
    let failures = &md[md.find("### Not captured, or not whole").unwrap()..];
    assert!(
        failures.contains(&format!("`{}`", gone.display())) && failures.contains("**failed**"),
        "{failures}"
    );
    for d in &digests {
        assert!(md.contains(d), "digest {d} missing");
    }

    // The report is an export of the record: its custody event is in the log.
    let log = ok(&v.cmd(&["log", "--json"]).output().unwrap());
    let event = log
        .lines()
        .flat_map(|l| {
            let seg: serde_json::Value = serde_json::from_str(l).unwrap();
            seg["entries"].as_array().unwrap().clone()
        })
        .rfind(|e| e["type"] == "custody_event" && e["via"] == "report")
        .expect("a custody event via report");
    assert_eq!(event["action"], "exported");
    assert_eq!(event["incident"], INC);
    assert_eq!(event["recipient"], "KISA");
    assert_eq!(event["purpose"], "initial report to the regulator");
    assert_eq!(event["output"], serde_json::Value::Null);
    v.assert_intact();
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| on_path(b))
}

/// The DOM headless Chromium builds from `file`.
fn dump_dom(bin: &str, file: &Path, profile: &Path) -> String {
    let out = assert_cmd::Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let dom = ok(&out);
    assert!(dom.contains("</html>"), "no page dumped: {dom}");
    dom
}

/// The text between `<section id="ID"` and the next `</section>`.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id} in the rendered page:\n{dom}"));
    let len = dom[start..].find("</section>").expect("section closed");
    &dom[start..start + len]
}

#[test]
fn html_report_renders_as_a_document_in_headless_chromium() {
    let bin = chromium();
    if !available(bin.is_some(), "chromium (headless page checks)") {
        return;
    }
    let (v, digests) = vault_with_history();
    let file = v.tmp.path().join("report.html");
    let path = file.to_str().unwrap();
    let out = v
        .cmd(&[
            "report", INC, "--format", "html", "--to", "KISA", "--out", path,
        ])
        .output()
        .unwrap();
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("recorded in segment"));
    // Never written over.
    let again = v
        .cmd(&["report", INC, "--format", "html", "--out", path])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Self-contained: no script, no external resource.
    for banned in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(banned), "{banned} in the report");
    }

    let dom = dump_dom(bin.unwrap(), &file, &v.tmp.path().join("chromium"));
    for id in [
        "summary",
        "timeline",
        "coverage",
        "clocks",
        "verification",
        "digests",
    ] {
        section(&dom, id);
    }
    assert!(dom.contains("<footer id=\"check\">"), "{dom}");
    assert!(dom.contains("<header>"), "{dom}");
    // The title, as text.
    assert!(
        dom.contains("Forged login tokens &amp; a stolen signing key"),
        "{dom}"
    );
    // The late initial report, highlighted in the clocks.
    let clocks = section(&dom, "clocks");
    assert!(clocks.contains("late by 29h35m"), "{clocks}");
    assert!(clocks.contains("<tr class=\"alert\">"), "{clocks}");
    // Markup in the log is text on the page, never an element.
    let timeline = section(&dom, "timeline");
    assert!(
        timeline.contains("suspect &lt;b&gt;token&lt;/b&gt; reuse | see auth.log"),
        "{timeline}"
    );
    assert!(timeline.contains("court order &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!dom.contains("<b>") && !dom.contains("<script"), "{dom}");
    // Every artifact's digest, in the digests table.
    let table = section(&dom, "digests");
    for d in &digests {
        assert!(table.contains(d), "digest {d} missing from\n{table}");
    }
    let coverage = section(&dom, "coverage");
    assert!(coverage.contains("gone.log"), "{coverage}");
    let verification = section(&dom, "verification");
    assert!(verification.contains("ok: no damage"), "{verification}");
    let footer = &dom[dom.find("<footer").unwrap()..];
    assert!(footer.contains("custody verify-manifest") && footer.contains("sha256sum"));
}
