//! The `palisade` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use palisade::config::{self, LogFormat, Overrides};

#[derive(Parser)]
#[command(name = "palisade", version, about = "A security gateway for MCP")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (embedded defaults and the demo upstream when no --config is given).
    Serve {
        /// Configuration file (TOML).
        #[arg(long, env = "PALISADE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, e.g. 127.0.0.1:0 for a free port.
        #[arg(long, env = "PALISADE_LISTEN")]
        listen: Option<String>,
        /// Directory for the audit database and signing key.
        #[arg(long, env = "PALISADE_DATA_DIR")]
        data_dir: Option<String>,
        /// Log format: text or json.
        #[arg(long, env = "PALISADE_LOG_FORMAT")]
        log_format: Option<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Run the bundled demo MCP server alone (Streamable HTTP at /mcp).
    DemoUpstream {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8701")]
        listen: String,
        /// Serve the MCP conformance suite's test tools, resources and prompts instead.
        #[arg(long)]
        conformance: bool,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Credential tools.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// The built-in issuer's signing keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Password tools for `[[issuer.users]]`.
    Passwd {
        #[command(subcommand)]
        cmd: PasswdCmd,
    },
    /// Rego policy tools.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Tool pinning: review and approve tool definitions the gateway withheld.
    Tools {
        #[command(subcommand)]
        cmd: ToolsCmd,
    },
    /// Automatic blocks: list them, lift one (through the running gateway's admin API).
    Blocks {
        #[command(subcommand)]
        cmd: BlocksCmd,
    },
    /// Quarantined agents: list them, release one (through the admin API).
    Quarantine {
        #[command(subcommand)]
        cmd: QuarantineCmd,
    },
    /// Internal: the sandboxing supervisor the gateway starts each stdio upstream through.
    #[command(hide = true)]
    StdioExec(palisade::sandbox::ExecArgs),
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Add a new signing key and retire the current one; the running gateway signs with the new
    /// key within a second, and the old key keeps verifying tokens until they expire.
    Rotate {
        /// Data directory of the gateway.
        #[arg(long, env = "PALISADE_DATA_DIR", default_value = "palisade-data")]
        data_dir: PathBuf,
        /// Drop keys retired longer ago than this (the longest token lifetime).
        #[arg(long, default_value_t = 86_400)]
        keep_secs: u64,
        /// Algorithm of the new key: EdDSA or RS256.
        #[arg(long, default_value = "EdDSA")]
        alg: String,
    },
}

#[derive(Subcommand)]
enum PasswdCmd {
    /// Read a password from stdin and print its argon2id hash for `password_argon2id`.
    Hash,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new random API token and the `[[auth.bearer]]` entry (with its SHA-256) for the
    /// config. The token is shown once; only its hash goes in the config.
    Generate {
        /// The principal the token authenticates.
        #[arg(long, default_value = "client")]
        id: String,
        /// Roles to grant (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        role: Vec<String>,
    },
    /// Revoke a JWT by its `jti`: the running gateway refuses it within a second, on every
    /// request, cached or not.
    Revoke {
        /// The token's `jti`.
        #[arg(long)]
        jti: String,
        /// Data directory of the gateway.
        #[arg(long, env = "PALISADE_DATA_DIR", default_value = "palisade-data")]
        data_dir: PathBuf,
        /// Forget the revocation after this Unix time (default: a day from now; set it to the
        /// token's `exp`).
        #[arg(long)]
        until: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a configuration file; prints every error and exits 1 if any.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
}

/// Where the pins are: the `[pinning]` of a config file, or the defaults in a data directory.
#[derive(clap::Args)]
struct PinsAt {
    /// The gateway's configuration file (its `[pinning]` and `data_dir`).
    #[arg(long, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of a gateway run without a config file.
    #[arg(long, env = "PALISADE_DATA_DIR", default_value = "palisade-data")]
    data_dir: PathBuf,
}

/// How to reach a running gateway's admin API.
#[derive(clap::Args)]
struct AdminAt {
    /// The gateway's configuration file (for its `data_dir`).
    #[arg(long, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of a gateway run without a config file.
    #[arg(long, env = "PALISADE_DATA_DIR", default_value = "palisade-data")]
    data_dir: PathBuf,
    /// The admin API's base URL (default: `<data_dir>/admin.addr`, written by the gateway).
    #[arg(long, env = "PALISADE_ADMIN_URL")]
    admin: Option<String>,
    /// A bearer token or JWT with the `admin:blocks:*` / `admin:quarantine:*` permissions.
    #[arg(long, env = "PALISADE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum BlocksCmd {
    /// Blocked addresses and principals: who, why, until when.
    List {
        #[command(flatten)]
        at: AdminAt,
    },
    /// Lift a block: `ip:ADDR` or `principal:ID`.
    Unblock {
        #[command(flatten)]
        at: AdminAt,
        who: String,
    },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// Quarantined principals: who, why, since when.
    List {
        #[command(flatten)]
        at: AdminAt,
    },
    /// Release a quarantined principal: `principal:ID`.
    Release {
        #[command(flatten)]
        at: AdminAt,
        who: String,
    },
}

/// Lists holds of one kind, or lifts one, through the admin API.
fn admin_cmd(at: &AdminAt, quarantine: bool, release: Option<&str>) -> anyhow::Result<ExitCode> {
    let base = match &at.admin {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let dir = match &at.config {
                Some(f) => {
                    config::load_file(f, &env_var, &Overrides::default())
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .data_dir
                }
                None => at.data_dir.clone(),
            };
            let file = palisade::app::admin::addr_file(&dir);
            std::fs::read_to_string(&file)
                .with_context(|| format!("reading {} (is the gateway running?)", file.display()))?
                .trim()
                .to_owned()
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let token = at.token.as_deref();
    let (status, v) = rt
        .block_on(async {
            match release {
                None => {
                    palisade::app::admin::call(
                        &base,
                        token,
                        http::Method::GET,
                        "/admin/holds",
                        None,
                    )
                    .await
                }
                Some(who) => {
                    let path = if quarantine {
                        "/admin/quarantine/release"
                    } else {
                        "/admin/blocks/release"
                    };
                    let body = serde_json::json!({ "who": who });
                    palisade::app::admin::call(&base, token, http::Method::POST, path, Some(body))
                        .await
                }
            }
        })
        .map_err(anyhow::Error::msg)?;
    if !status.is_success() {
        let why = v["error"].as_str().unwrap_or("refused");
        eprintln!("error: the admin API answered {status}: {why}");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(who) = release {
        println!("released {who}");
        return Ok(ExitCode::SUCCESS);
    }
    let kind = if quarantine { "quarantine" } else { "block" };
    let now = unix_now();
    let mut n = 0;
    for h in v["holds"].as_array().into_iter().flatten() {
        if h["kind"] != kind {
            continue;
        }
        n += 1;
        let since = h["since_ms"].as_u64().unwrap_or(0) / 1000;
        let until = match h["until_ms"].as_u64() {
            Some(u) => format!("for {} s more", (u / 1000).saturating_sub(now)),
            None => "until released".to_owned(),
        };
        println!(
            "{}\t{}\tsince {} s ago\t{until}",
            h["who"].as_str().unwrap_or("?"),
            h["reason"].as_str().unwrap_or("?"),
            now.saturating_sub(since)
        );
    }
    if n == 0 {
        println!("no {kind}s in force");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum ToolsCmd {
    /// Show the definitions withheld (changed since approval, not yet approved, or flagged)
    /// and what changed in each.
    Pending {
        #[command(flatten)]
        at: PinsAt,
    },
    /// Approve withheld definitions as they are now; the running gateway shows them again
    /// within a second.
    Approve {
        #[command(flatten)]
        at: PinsAt,
        /// Only this upstream's.
        #[arg(long)]
        upstream: Option<String>,
        /// Only these tools (repeatable; default all pending ones).
        #[arg(long)]
        tool: Vec<String>,
    },
}

fn pinning_of(at: &PinsAt) -> anyhow::Result<config::PinningConfig> {
    Ok(match &at.config {
        Some(f) => {
            config::load_file(f, &env_var, &Overrides::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .pinning
        }
        None => config::PinningConfig::defaults(&at.data_dir),
    })
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Evaluate policies offline on an input document (JSON, as the gateway builds it: see
    /// README, Rego policies). Prints each policy's verdict; exits 0 when all allow, 1 if any
    /// denies.
    Eval {
        /// The input document.
        #[arg(long)]
        input: PathBuf,
        /// Take the policies (and the actions they decide) from this configuration file.
        #[arg(long, env = "PALISADE_CONFIG")]
        config: Option<PathBuf>,
        /// A policy file (repeatable), deciding every action.
        #[arg(long)]
        policy: Vec<PathBuf>,
        /// The policy files use Rego v1 syntax.
        #[arg(long)]
        rego_v1: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify the hash chain and the last signed checkpoint; names the first broken record.
    Verify {
        /// Audit database (default palisade-data/audit.db).
        #[arg(long, default_value = "palisade-data/audit.db")]
        db: PathBuf,
        /// Trusted public key (default: audit-signing.pub beside the database).
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn policy_eval(
    input: &std::path::Path,
    file: Option<&std::path::Path>,
    files: &[PathBuf],
    rego_v1: bool,
) -> anyhow::Result<ExitCode> {
    let mut policies = match file {
        Some(f) => {
            config::load_file(f, &env_var, &Overrides::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .authz
                .policies
        }
        None => Vec::new(),
    };
    for f in files {
        policies.push(config::read_policy(f, rego_v1, None).map_err(anyhow::Error::msg)?);
    }
    anyhow::ensure!(!policies.is_empty(), "no policy: give --config or --policy");
    let engine =
        palisade::controls::policy::Policies::new(&policies).map_err(anyhow::Error::msg)?;
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let doc = regorus::Value::from_json_str(&text)
        .with_context(|| format!("{} is not a JSON document", input.display()))?;
    let verdicts = engine.explain(doc);
    if verdicts.is_empty() {
        println!("no policy decides this action: the roles alone decide");
    }
    let mut allowed = true;
    for (package, v) in &verdicts {
        match v {
            Ok(()) => println!("{package}: allow"),
            Err(e) => {
                allowed = false;
                println!("{package}: DENY ({e})");
            }
        }
    }
    println!("decision: {}", if allowed { "allow" } else { "deny" });
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::StdioExec(args) => {
            let code = palisade::sandbox::exec(args);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Cmd::Config {
            cmd: ConfigCmd::Schema,
        } => {
            println!("{}", config::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => match config::load_file(&file, &env_var, &Overrides::default()) {
            Ok(c) => {
                println!(
                    "{}: ok ({} upstream(s), listening on {})",
                    file.display(),
                    c.upstreams.len(),
                    c.listen
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprint!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Blocks {
            cmd: BlocksCmd::List { at },
        } => admin_cmd(&at, false, None),
        Cmd::Blocks {
            cmd: BlocksCmd::Unblock { at, who },
        } => admin_cmd(&at, false, Some(&who)),
        Cmd::Quarantine {
            cmd: QuarantineCmd::List { at },
        } => admin_cmd(&at, true, None),
        Cmd::Quarantine {
            cmd: QuarantineCmd::Release { at, who },
        } => admin_cmd(&at, true, Some(&who)),
        Cmd::Tools {
            cmd: ToolsCmd::Pending { at },
        } => {
            let text = palisade::controls::pinning::review::pending(&pinning_of(&at)?)
                .map_err(anyhow::Error::msg)?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tools {
            cmd: ToolsCmd::Approve { at, upstream, tool },
        } => {
            let text = palisade::controls::pinning::review::approve(
                &pinning_of(&at)?,
                upstream.as_deref(),
                &tool,
                unix_now(),
            )
            .map_err(anyhow::Error::msg)?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Policy {
            cmd:
                PolicyCmd::Eval {
                    input,
                    config: file,
                    policy,
                    rego_v1,
                },
        } => policy_eval(&input, file.as_deref(), &policy, rego_v1),
        Cmd::Token {
            cmd:
                TokenCmd::Revoke {
                    jti,
                    data_dir,
                    until,
                },
        } => {
            let now = unix_now();
            palisade::issuer::revoked::revoke(&data_dir, &jti, until.unwrap_or(now + 86_400))
                .with_context(|| format!("revoking in {}", data_dir.display()))?;
            println!("revoked {jti}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Keys {
            cmd:
                KeysCmd::Rotate {
                    data_dir,
                    keep_secs,
                    alg,
                },
        } => {
            use palisade::issuer::keys::{KeyAlg, Keyring};
            let alg = match alg.as_str() {
                "EdDSA" => KeyAlg::EdDSA,
                "RS256" => KeyAlg::RS256,
                other => anyhow::bail!("--alg must be EdDSA or RS256, not {other}"),
            };
            let kid = Keyring::rotate(&data_dir, unix_now(), keep_secs, alg)
                .with_context(|| format!("rotating keys in {}", data_dir.display()))?;
            println!("new signing key {kid}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Passwd {
            cmd: PasswdCmd::Hash,
        } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.len() >= 8,
                "use a password of at least 8 characters"
            );
            println!("{}", palisade::issuer::argon2_hash(password)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token {
            cmd: TokenCmd::Generate { id, role },
        } => {
            let (token, hash) = palisade::controls::authn::generate_token();
            let roles: Vec<String> = role.iter().map(|r| format!("{r:?}")).collect();
            println!("token: {token}");
            println!();
            println!("[[auth.bearer]]");
            println!("id = {id:?}");
            println!("sha256 = \"{hash}\"");
            println!("roles = [{}]", roles.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            cmd: AuditCmd::Verify { db, pubkey },
        } => {
            let pubkey = pubkey.unwrap_or_else(|| {
                db.parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("audit-signing.pub")
            });
            match palisade::audit::verify(&db, &pubkey) {
                Ok(r) => {
                    println!(
                        "ok: {} records, chain intact, last signed checkpoint covers {}",
                        r.records, r.checkpointed
                    );
                    if r.records > r.checkpointed {
                        println!(
                            "note: the {} most recent records are after the last checkpoint",
                            r.records - r.checkpointed
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("BROKEN: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::DemoUpstream {
            listen,
            conformance,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let addr: std::net::SocketAddr =
                    listen.parse().context("--listen must be IP:port")?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                println!("listening on http://{}/mcp", listener.local_addr()?);
                let server = async move {
                    if conformance {
                        palisade::demo::conformance::serve(listener).await
                    } else {
                        palisade::demo::serve(listener).await
                    }
                };
                tokio::select! { _ = server => {}, _ = shutdown_signal() => {} }
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve {
            config: file,
            listen,
            data_dir,
            log_format,
        } => {
            let overrides = Overrides {
                listen,
                data_dir,
                log_format,
            };
            let cfg = match &file {
                Some(f) => config::load_file(f, &env_var, &overrides),
                None => config::parse_with(
                    config::DEFAULT_TOML,
                    "<embedded default>",
                    &env_var,
                    &overrides,
                ),
            };
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            init_logs(cfg.log_format);
            let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "palisade_request_duration_seconds".into(),
                    ),
                    palisade::app::LATENCY_BUCKETS,
                )?
                .install_recorder()?;
            let rt = palisade::run::runtime()?;
            rt.block_on(async {
                let running = palisade::run::start(cfg, Some(metrics))
                    .await
                    .map_err(anyhow::Error::msg)?;
                println!(
                    "{}",
                    palisade::app::server::describe(running.scheme, running.addr)
                );
                for (scheme, addr) in running.listeners().into_iter().skip(1) {
                    println!("also {}", palisade::app::server::describe(scheme, addr));
                }
                running.serve(shutdown_signal()).await;
                tracing::info!("stopped; audit trail flushed");
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
