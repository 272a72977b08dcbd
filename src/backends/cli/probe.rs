//! `claudegate doctor`'s look at the Claude Code CLI without spending a message: `claude
//! --version`, and `claude auth status`, which prints its login state as JSON (`{"loggedIn":
//! true, "authMethod": "claude.ai", …}`) and exits 1 with `{"loggedIn": false, "authMethod":
//! "none", …}` when there is none (as described in Tracer-Cloud/opensre#1302, which reads it
//! the same way: the JSON first, the exit status only when there is no JSON).
//!
//! Both run exactly as a call's CLI does ([`super::lockdown::locked_down`]: the same binary,
//! environment — `HOME` = `cli.home`, `cli.env` — private work directory and process group,
//! supervised by [`super::process::supervise`]), so they see the login a call would see, and
//! each is killed, with everything it started, at its deadline.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::calldir::CallDir;
use super::interface::CliError;
use super::{lockdown, process};
use crate::config::CliConfig;

/// Lines of output kept from one probe (a version or a status is one or a few).
const MAX_LINES: usize = 200;

/// What `claude auth status` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliLogin {
    /// Logged in; how (`claude.ai`, `oauth_token`, `api_key`…), when it says.
    LoggedIn(Option<String>),
    NotLoggedIn,
    /// No answer that tells; why.
    Unknown(String),
}

/// `claude --version`'s first line, or why there is none (the binary missing, an exit status,
/// no answer within `within`).
pub fn version(cfg: &CliConfig, within: Duration) -> Result<String, String> {
    let (code, lines, stderr) = run(cfg, &["--version"], within)?;
    let first = lines.iter().map(|l| l.trim()).find(|l| !l.is_empty());
    match (code, first) {
        (Some(0), Some(v)) => Ok(v.chars().take(100).collect()),
        (Some(0), None) => Err("`claude --version` printed nothing".into()),
        (code, _) => Err(format!(
            "`claude --version` failed ({}){}",
            code.map_or("killed".to_string(), |c| format!("status {c}")),
            tail(&stderr)
        )),
    }
}

/// What `claude auth status` says of the login, or why it could not be asked.
pub fn login(cfg: &CliConfig, within: Duration) -> Result<CliLogin, String> {
    let (code, lines, stderr) = run(cfg, &["auth", "status"], within)?;
    Ok(read_status(code, &lines.join("\n"), &stderr))
}

/// Reads `claude auth status`'s output: its JSON first, the exit status and words after.
fn read_status(code: Option<i32>, stdout: &str, stderr: &str) -> CliLogin {
    if let Ok(v) = serde_json::from_str::<Value>(stdout.trim()) {
        match v["loggedIn"].as_bool() {
            Some(true) => {
                let method = v["authMethod"]
                    .as_str()
                    .map(|m| m.chars().take(40).collect());
                return CliLogin::LoggedIn(method);
            }
            Some(false) => return CliLogin::NotLoggedIn,
            None => {}
        }
    }
    if super::transcript::says_not_logged_in(&format!("{stdout}\n{stderr}")) {
        return CliLogin::NotLoggedIn;
    }
    CliLogin::Unknown(format!(
        "`claude auth status` gave no login state ({}){}; an older Claude Code may not have \
         this command",
        code.map_or("killed".to_string(), |c| format!("status {c}")),
        tail(stderr)
    ))
}

/// Runs the locked-down CLI with `args`, no prompt, killed at `within`: its exit code, its
/// stdout lines and the tail of its stderr.
fn run(
    cfg: &CliConfig,
    args: &[&str],
    within: Duration,
) -> Result<(Option<i32>, Vec<String>, String), String> {
    let home = crate::base::fsutil::expand_home(&cfg.home);
    let call = CallDir::create(&home)
        .map_err(|e| format!("cannot create a private work directory: {e}"))?;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut cmd = lockdown::locked_down(cfg, &home, &call, args);
    let mut lines = Vec::new();
    let outcome = process::supervise(
        &mut cmd,
        &cfg.binary,
        Vec::new(),
        Instant::now() + within,
        &mut |line| {
            if lines.len() < MAX_LINES {
                lines.push(line.to_string());
            }
            true
        },
        &|| false,
    );
    drop(call); // the private directory goes
    match outcome {
        Ok(exit) => Ok((exit.status.code(), lines, exit.stderr)),
        Err(CliError::Timeout) => Err(format!(
            "the CLI did not answer within {} ms and was killed",
            within.as_millis()
        )),
        Err(e) => Err(e.message()),
    }
}

/// `: <the last line of stderr>` (at most 200 characters), or nothing.
fn tail(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map_or(String::new(), |l| {
            format!(": {}", l.chars().take(200).collect::<String>())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_status_is_read_from_its_json_first() {
        let yes = r#"{"loggedIn": true, "authMethod": "claude.ai", "email": "a@b.c"}"#;
        assert_eq!(
            read_status(Some(0), yes, ""),
            CliLogin::LoggedIn(Some("claude.ai".into()))
        );
        let no = r#"{"loggedIn": false, "authMethod": "none"}"#;
        assert_eq!(read_status(Some(1), no, ""), CliLogin::NotLoggedIn);
        assert_eq!(
            read_status(Some(1), "", "Not logged in · Please run /login"),
            CliLogin::NotLoggedIn
        );
        assert!(matches!(
            read_status(Some(1), "error: unknown command 'auth'", ""),
            CliLogin::Unknown(_)
        ));
    }
}
