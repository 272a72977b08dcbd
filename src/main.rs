//! claudegate: one static binary that turns your own Claude subscription into a secured HTTP
//! API for your own apps. This file parses the command line (lexopt), loads the configuration
//! and dispatches: `serve` to the server, every other command to `claudegate::commands`. The
//! modules themselves live in the library (`src/lib.rs`).

use claudegate::backends::upstream;
use claudegate::base::clock;
use claudegate::commands::{doctor, health, keys, login, mcp_bridge, usage};
use claudegate::guard::keys::{Grant, Scope};
use claudegate::{config, server};
use lexopt::prelude::*;
use std::path::PathBuf;
use std::process::ExitCode;

/// Small allocations are recycled per thread; see `src/alloc.rs` for why (musl's allocator).
#[global_allocator]
static ALLOCATOR: claudegate::base::alloc::ThreadCache = claudegate::base::alloc::ThreadCache;

const USAGE: &str = "usage: claudegate [--config PATH] [--ca-file PATH] [serve | login [--manual | --import-claude-code [PATH] | --token TOKEN] | logout | status | keys add LABEL [--admin] [--rpm N] [--daily N] | keys list | keys revoke LABEL | usage [--since YYYY-MM-DD] | health [--url URL] | doctor [--json]]";

const HELP: &str = "\
claudegate: your Claude subscription as a secured HTTP API for your own apps

USAGE:
    claudegate [--config PATH] <COMMAND>

COMMANDS:
    serve                    Run the server in the foreground (the default command)
    login                    Log in to Claude in a browser (PKCE); the redirect is caught on
                             the local port of oauth.redirect_uri (5 minutes)
         --manual              for headless hosts: paste the redirect URL (or code#state)
         --import-claude-code [PATH]
                               reuse Claude Code's login (default ~/.claude/.credentials.json)
         --token TOKEN         store a long-lived token from `claude setup-token`
                               (`--token -` reads it from stdin, keeping it out of ps/history)
    logout                   Remove the stored login
    status                   Show the stored login: account, expiry, state
    keys add LABEL           Mint a key for an app; the secret is printed once on stdout
         [--admin]             also for the operator's views (/admin/accounts, /metrics);
                               without it the key is an app key (the /v1 API only)
         [--rpm N]             its requests per minute (default: limits.per_key_rpm)
         [--daily N]           its requests per UTC day (default: limits.per_key_daily)
    keys list                Show keys: label, scope, limits, created, last used (never secrets)
    keys revoke LABEL        Revoke a key; a running server stops accepting it at once
    usage                    Per-key totals from the audit log and its rotated files:
                             requests, errors (status >= 400), input/output/cache tokens
         [--since YYYY-MM-DD]  only requests from that UTC day on
    health                   Ask a running server's GET /health (5 s at most): exit 0 when it
                             answers 200, else 1 (the container image's health check)
         [--url URL]           ask this http:// URL instead of the configured address
    doctor                   Check the setup, a line each (✓ ok, ✗ failed with its fix, ⚠
                             warning, – skipped): config, file modes, login, the upstream
                             (a free call), usage windows, clock, keys, port, and the claude
                             CLI on that backend; exit status 1 when a check failed
         [--json]              one JSON document: {\"ok\", \"checks\": [{name, status,
                               detail, fix}]}

OPTIONS:
    --ca-file PATH           PEM root certificates replacing the built-in ones
                             (same as upstream.ca_file; behind a TLS-intercepting proxy)
    --config PATH            Config file (else $CLAUDEGATE_CONFIG, else ./config.json,
                             else ~/.config/claudegate/config.json; missing = defaults)
    -h, --help               Show this help
    -V, --version            Show the version
";

/// `claudegate COMMAND --help`: that command's lines of [`HELP`] (one home for the words), or,
/// for a name it does not know, the whole help. A command line there starts with four spaces
/// and the command's name; the indented lines under it are its options.
fn command_help(topic: &str) -> String {
    let commands = HELP
        .split_once("COMMANDS:\n")
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map_or("", |(commands, _)| commands);
    let mut section = String::new();
    let mut inside = false;
    for line in commands.lines() {
        let starts_command = line.starts_with("    ") && !line.starts_with("     ");
        if starts_command {
            let name = line.trim_start();
            inside = name == topic
                || name.starts_with(&format!("{topic} "))
                || name.starts_with(&format!("{topic}\t"));
        }
        if inside {
            section.push_str(line);
            section.push('\n');
        }
    }
    if section.is_empty() {
        return HELP.to_string();
    }
    let options = HELP.split_once("OPTIONS:\n").map_or("", |(_, o)| o);
    format!("USAGE:\n    claudegate [--config PATH] {topic} ...\n\n{section}\nOPTIONS:\n{options}")
}

/// What the user asked for.
enum Command {
    Serve,
    Login(login::LoginMode),
    Logout,
    Status,
    KeysAdd {
        label: String,
        grant: Grant,
    },
    KeysList,
    KeysRevoke {
        label: String,
    },
    /// Totals from the audit log; `since` is a UTC day number.
    Usage {
        since: Option<u64>,
    },
    /// `health`: `url` overrides the configured address.
    Health {
        url: Option<String>,
    },
    /// Checks of the setup; `json`: one JSON document instead of lines.
    Doctor {
        json: bool,
    },
    /// The hidden `mcp-bridge --socket PATH`: the CLI backend's stdio MCP server for one call.
    McpBridge {
        socket: PathBuf,
    },
    /// `--help`, for the whole program (`None`) or one command (`login`, `keys add`, ...).
    Help(Option<String>),
    Version,
}

struct Args {
    config: Option<PathBuf>,
    /// `--ca-file`: overrides `upstream.ca_file`.
    ca_file: Option<String>,
    command: Command,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    let mut p = lexopt::Parser::from_env();
    let mut config = None;
    let mut ca_file = None;
    let mut command = None;
    // The command named so far, for `serve --help` and the like.
    let mut name = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("config") => config = Some(PathBuf::from(p.value()?)),
            Long("ca-file") if command.is_none() => ca_file = Some(p.value()?.string()?),
            Short('h') | Long("help") => {
                return Ok(Args {
                    config,
                    ca_file,
                    command: Command::Help(name),
                })
            }
            Short('V') | Long("version") => {
                return Ok(Args {
                    config,
                    ca_file,
                    command: Command::Version,
                })
            }
            Value(v) if command.is_none() => {
                let v = v.string()?;
                name = Some(v.clone());
                command = Some(match v.as_str() {
                    "serve" => Command::Serve,
                    "login" => parse_login(&mut p, &mut config)?,
                    "logout" => Command::Logout,
                    "status" => Command::Status,
                    "keys" => parse_keys(&mut p, &mut config)?,
                    "usage" => parse_usage(&mut p, &mut config)?,
                    "health" => parse_health(&mut p, &mut config)?,
                    "doctor" => parse_doctor(&mut p, &mut config)?,
                    // Hidden (not in HELP): started by the Claude Code CLI, never by a person.
                    "mcp-bridge" => parse_mcp_bridge(&mut p)?,
                    _ => return Err(format!("unknown command {v:?}").into()),
                });
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Args {
        config,
        ca_file,
        command: command.unwrap_or(Command::Serve),
    })
}

fn parse_mcp_bridge(p: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut socket = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("socket") => socket = Some(PathBuf::from(p.value()?)),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::McpBridge {
        socket: socket.ok_or("mcp-bridge needs --socket PATH")?,
    })
}

fn parse_login(
    p: &mut lexopt::Parser,
    config: &mut Option<PathBuf>,
) -> Result<Command, lexopt::Error> {
    use login::LoginMode;
    let mut mode: Option<LoginMode> = None;
    while let Some(arg) = p.next()? {
        let chosen = match arg {
            Long("manual") => LoginMode::Manual,
            Long("import-claude-code") => {
                LoginMode::ImportClaudeCode(p.optional_value().map(PathBuf::from))
            }
            Long("token") => LoginMode::Token(p.value()?.string()?),
            Short('h') | Long("help") => return Ok(Command::Help(Some("login".into()))),
            Long("config") => {
                *config = Some(PathBuf::from(p.value()?));
                continue;
            }
            // `--import-claude-code PATH` with the path as its own argument.
            Value(v) => match &mut mode {
                Some(LoginMode::ImportClaudeCode(path @ None)) => {
                    *path = Some(PathBuf::from(v));
                    continue;
                }
                _ => return Err(Value(v).unexpected()),
            },
            _ => return Err(arg.unexpected()),
        };
        if mode.replace(chosen).is_some() {
            return Err("login takes only one of --manual, --import-claude-code, --token".into());
        }
    }
    let mode = mode.unwrap_or(LoginMode::Browser);
    Ok(Command::Login(mode))
}

fn parse_usage(
    p: &mut lexopt::Parser,
    config: &mut Option<PathBuf>,
) -> Result<Command, lexopt::Error> {
    let mut since = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("since") => {
                let day = p.value()?.string()?;
                since = Some(clock::parse_day(&day).ok_or_else(|| {
                    lexopt::Error::from(format!("--since wants a date as YYYY-MM-DD, not {day:?}"))
                })?);
            }
            Long("config") => *config = Some(PathBuf::from(p.value()?)),
            Short('h') | Long("help") => return Ok(Command::Help(Some("usage".into()))),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Usage { since })
}

fn parse_health(
    p: &mut lexopt::Parser,
    config: &mut Option<PathBuf>,
) -> Result<Command, lexopt::Error> {
    let mut url = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("url") => url = Some(p.value()?.string()?),
            Long("config") => *config = Some(PathBuf::from(p.value()?)),
            Short('h') | Long("help") => return Ok(Command::Help(Some("health".into()))),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Health { url })
}

fn parse_doctor(
    p: &mut lexopt::Parser,
    config: &mut Option<PathBuf>,
) -> Result<Command, lexopt::Error> {
    let mut json = false;
    while let Some(arg) = p.next()? {
        match arg {
            Long("json") => json = true,
            Long("config") => *config = Some(PathBuf::from(p.value()?)),
            Short('h') | Long("help") => return Ok(Command::Help(Some("doctor".into()))),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Doctor { json })
}

fn parse_keys(
    p: &mut lexopt::Parser,
    config: &mut Option<PathBuf>,
) -> Result<Command, lexopt::Error> {
    let action = match p.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) => return Ok(Command::Help(Some("keys".into()))),
        Some(arg) => return Err(arg.unexpected()),
        None => return Err("keys needs an action: add, list or revoke".into()),
    };
    let (mut label, mut grant) = (None, Grant::default());
    while let Some(arg) = p.next()? {
        match arg {
            Long("admin") if action == "add" => grant.scope = Scope::Admin,
            Long("rpm") if action == "add" => grant.rpm = Some(p.value()?.parse()?),
            Long("daily") if action == "add" => grant.daily = Some(p.value()?.parse()?),
            Long("config") => *config = Some(PathBuf::from(p.value()?)),
            Short('h') | Long("help") => return Ok(Command::Help(Some(format!("keys {action}")))),
            Value(v) if label.is_none() && action != "list" => label = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let need_label = |label: Option<String>| {
        label.ok_or_else(|| lexopt::Error::from(format!("keys {action} needs a LABEL")))
    };
    Ok(match action.as_str() {
        "add" => Command::KeysAdd {
            label: need_label(label)?,
            grant,
        },
        "list" => Command::KeysList,
        "revoke" => Command::KeysRevoke {
            label: need_label(label)?,
        },
        other => return Err(format!("unknown keys action {other:?} (add, list or revoke)").into()),
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("claudegate: {e}\n{USAGE}\n(try `claudegate --help`)");
            return ExitCode::from(2);
        }
    };
    if matches!(args.command, Command::Serve) {
        // First, while this is the only thread: every thread the server starts inherits the
        // mask, so SIGTERM and SIGINT wait, pending, for the server's stop (see
        // `server::stop`), whatever thread the kernel would have picked.
        if let Err(e) = claudegate::base::sys::block_stop_signals() {
            eprintln!("claudegate: error: cannot block SIGTERM and SIGINT for a clean stop: {e}");
            return ExitCode::from(1);
        }
    }
    if let Command::Doctor { json } = args.command {
        // Each check prints its own finding (a configuration that does not load is the first),
        // so a failure is the exit status alone.
        let path = config::load::locate(args.config.as_deref());
        let source = doctor::Source {
            path: &path,
            explicit: config_named(&args),
            ca_file: args.ca_file,
        };
        return match doctor::run(source, json) {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(1),
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("claudegate: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether the user named the config file (`--config`, `$CLAUDEGATE_CONFIG`): then it must exist.
fn config_named(args: &Args) -> bool {
    args.config.is_some() || std::env::var_os("CLAUDEGATE_CONFIG").is_some_and(|v| !v.is_empty())
}

fn run(args: Args) -> Result<(), String> {
    match args.command {
        Command::Help(None) => {
            print!("{HELP}");
            return Ok(());
        }
        Command::Help(Some(topic)) => {
            print!("{}", command_help(&topic));
            return Ok(());
        }
        Command::Version => {
            // The commit is recorded by build.rs; empty when built without git (a tarball).
            match env!("CLAUDEGATE_COMMIT") {
                "" => println!("claudegate {}", env!("CARGO_PKG_VERSION")),
                commit => println!("claudegate {} ({commit})", env!("CARGO_PKG_VERSION")),
            }
            return Ok(());
        }
        // No configuration: the relay holds no state and reads no file but its socket.
        Command::McpBridge { ref socket } => return mcp_bridge::run(socket),
        // With a URL, no configuration is needed (nor may a broken one fail the check).
        Command::Health { url: Some(ref url) } => return health::check(url),
        _ => {}
    }
    let explicit = config_named(&args);
    let path = config::load::locate(args.config.as_deref());
    let mut config = config::Config::load(&path, explicit).map_err(|e| e.to_string())?;
    if args.ca_file.is_some() {
        config.upstream.ca_file = args.ca_file.clone();
    }
    upstream::init_tls(config.upstream.ca_file.as_deref())?;
    match args.command {
        Command::Serve => server::run(config),
        Command::Login(mode) => login::login(&config, mode),
        Command::Logout => login::logout(&config),
        Command::Status => login::status(&config),
        Command::KeysAdd { label, grant } => keys::add(&config, &label, grant),
        Command::KeysList => keys::list(&config),
        Command::KeysRevoke { label } => keys::revoke(&config, &label),
        Command::Usage { since } => usage::run(&config, since),
        Command::Health { url: _ } => health::check(&health::local_url(&config)),
        Command::Help(_)
        | Command::Version
        | Command::Doctor { .. }
        | Command::McpBridge { .. } => Ok(()),
    }
}
