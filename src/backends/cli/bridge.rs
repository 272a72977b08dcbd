//! The tool bridge (issue 16, stage 2): a request's client tools served to the CLI as an MCP
//! server private to that call, so Claude can call them while Claude Code runs nothing itself.
//!
//! The CLI starts `claudegate mcp-bridge --socket <call dir>/mcp.sock` as its only MCP server
//! (`--mcp-config` with `--strict-mcp-config`; `commands::mcp_bridge` is a plain relay between
//! its stdio and that socket). Everything MCP happens here, in the server, where the call's
//! tools are known: [`Bridge`] listens on the socket in the call's private directory (mode
//! 0700), accepts only a peer of our own user that carries the call's marker, and answers the
//! CLI's JSON-RPC 2.0 lines by hand ([`handle`]): `initialize`, `tools/list`, `ping`, and
//! `tools/call`, which becomes a [`ToolCall`] for the caller to answer (the client runs the
//! tool; nothing runs on this host).
//!
//! Measured on Claude Code 2.1.330 against a mock upstream:
//! - its client first sends `server/discover` (answered "method not found", it then goes on),
//!   `initialize` (protocol `2025-11-25`; we answer with the version it asked for and
//!   `capabilities.tools`), `notifications/initialized`, then `tools/list`;
//! - the upstream sees each tool as `mcp__<server>__<tool>` ([`SERVER`] is `cg`), and the
//!   tool is allowed with `--allowedTools mcp__cg__<tool>` (no permission prompt in `-p`);
//! - `tools/call` carries the upstream's `tool_use` id in `params._meta["claudecode/toolUseId"]`,
//!   which binds a call to the client's `tool_result`;
//! - the call's arguments arrive as JSON only: nothing of them reaches a shell.
//!
//! **Names**: the client's tool names become MCP-safe names in one table ([`ToolNames`]):
//! `[A-Za-z0-9_-]` kept, anything else `_`, at most [`MAX_NAME`] characters (so the full
//! `mcp__cg__<name>` fits Anthropic's 64-character limit), a clash gets `_2`, `_3`, ….

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backends::cli::interface::CliError;
use crate::base::sync::lock;

/// The MCP server's name in `--mcp-config`: the upstream sees `mcp__cg__<tool>`.
pub const SERVER: &str = "cg";
/// Longest MCP tool name: `mcp__cg__` (9) + 55 = Anthropic's 64.
const MAX_NAME: usize = 55;
/// The socket's file name inside the call directory.
pub const SOCKET: &str = "mcp.sock";
/// Longest JSON-RPC line read from the bridge.
const MAX_LINE: u64 = 16 << 20;
/// The MCP protocol version answered when the client names none.
const DEFAULT_PROTOCOL: &str = "2025-06-18";

/// The client's tool names and their MCP names, both ways (the one table of the mapping).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolNames {
    /// (client name, MCP name), in the request's order.
    rows: Vec<(String, String)>,
    /// Row index by client name, and by MCP name (the first row of each wins, as a scan would
    /// find it): a request may declare thousands of tools, so no lookup scans the rows.
    by_client: HashMap<String, usize>,
    by_mcp: HashMap<String, usize>,
}

impl ToolNames {
    /// Whether the request declared no tools.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn new<'a>(client_names: impl IntoIterator<Item = &'a str>) -> ToolNames {
        let mut names = ToolNames::default();
        // The next suffix to try per sanitised name: the names taken only grow, so a suffix
        // found taken once stays taken, and each name's search resumes where the last ended
        // (many names that sanitise alike would otherwise cost a cubic number of compares).
        let mut next: HashMap<String, usize> = HashMap::new();
        for name in client_names {
            let base: String = name
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
                    _ => '_',
                })
                .take(MAX_NAME)
                .collect();
            let base = if base.is_empty() { "tool".into() } else { base };
            let mut mcp = base.clone();
            let n = next.entry(base.clone()).or_insert(2);
            while names.by_mcp.contains_key(&mcp) {
                let suffix = format!("_{n}");
                let keep: String = base.chars().take(MAX_NAME - suffix.len()).collect();
                mcp = format!("{keep}{suffix}");
                *n += 1;
            }
            let row = names.rows.len();
            names.by_client.entry(name.to_string()).or_insert(row);
            names.by_mcp.insert(mcp.clone(), row);
            names.rows.push((name.to_string(), mcp));
        }
        names
    }

    /// The MCP name of a client tool.
    pub fn mcp(&self, client: &str) -> Option<&str> {
        self.by_client.get(client).map(|&i| self.rows[i].1.as_str())
    }

    /// The client's name of an MCP tool name.
    pub fn client(&self, mcp: &str) -> Option<&str> {
        self.by_mcp.get(mcp).map(|&i| self.rows[i].0.as_str())
    }

    /// The name the upstream sees for a client tool: `mcp__cg__<mcp name>`.
    pub fn upstream(&self, client: &str) -> Option<String> {
        self.mcp(client).map(|m| format!("mcp__{SERVER}__{m}"))
    }

    /// The client's name of a name the upstream used (`mcp__cg__<mcp name>`).
    pub fn from_upstream(&self, upstream: &str) -> Option<&str> {
        let prefix = format!("mcp__{SERVER}__");
        self.client(upstream.strip_prefix(&prefix)?)
    }

    /// Every upstream name, for `--allowedTools`.
    pub fn allowed(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|(_, m)| format!("mcp__{SERVER}__{m}"))
            .collect()
    }
}

/// A request's tools as the bridge serves them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    pub names: ToolNames,
    /// `tools/list`'s entries: `{name, description, inputSchema}` with MCP names.
    tools: Vec<Value>,
}

impl Catalogue {
    /// The catalogue of an Anthropic request's `tools` (custom tools only; a server tool, or a
    /// tool without a name or an object schema, is refused by name).
    pub fn new(tools: &[Value]) -> Result<Catalogue, CliError> {
        let refuse = |i: usize, why: &str| CliError::Refused {
            param: format!("tools[{i}]"),
            message: why.to_string(),
        };
        let mut names = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if t["type"].as_str().is_some_and(|k| k != "custom") {
                return Err(refuse(
                    i,
                    "server tools are not available on the claude-cli backend (client tools only)",
                ));
            }
            match t["name"].as_str() {
                Some(n) if !n.is_empty() => names.push(n),
                _ => return Err(refuse(i, "each tool needs a non-empty `name`")),
            }
            if !t["input_schema"].is_object() {
                return Err(refuse(i, "each tool needs an `input_schema` object"));
            }
        }
        let mut seen = HashSet::with_capacity(names.len());
        if let Some(dup) = names.iter().position(|n| !seen.insert(*n)) {
            return Err(refuse(dup, "two tools have the same name"));
        }
        let names = ToolNames::new(names.iter().copied());
        let tools = tools
            .iter()
            .filter_map(|t| {
                let client = t["name"].as_str()?;
                let mut entry =
                    json!({"name": names.mcp(client)?, "inputSchema": t["input_schema"]});
                if let Some(d) = t["description"].as_str() {
                    entry["description"] = json!(d);
                }
                Some(entry)
            })
            .collect();
        Ok(Catalogue { names, tools })
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// A `tools/call` the CLI made: the client must run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The JSON-RPC id to answer.
    pub rpc_id: Value,
    /// The client's name of the tool.
    pub name: String,
    pub arguments: Value,
    /// The upstream's `tool_use` id (`_meta["claudecode/toolUseId"]`), when the CLI gave it.
    pub tool_use_id: Option<String>,
}

/// What one JSON-RPC line asks of the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Rpc {
    /// Answer with this line at once.
    Reply(Value),
    /// A tool call for the client; answer later with [`call_result`].
    Call(ToolCall),
    /// A notification: no answer.
    Silent,
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Answers one JSON-RPC line from the CLI's MCP client (pure).
pub fn handle(cat: &Catalogue, line: &str) -> Rpc {
    let Ok(msg) = serde_json::from_str::<Value>(line) else {
        return Rpc::Reply(rpc_error(&Value::Null, -32700, "parse error"));
    };
    let Some(id) = msg.get("id").filter(|id| id.is_string() || id.is_number()) else {
        return Rpc::Silent; // a notification (or a response to nothing we asked)
    };
    let ok = |result: Value| Rpc::Reply(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    match msg["method"].as_str().unwrap_or("") {
        "initialize" => {
            let version = msg["params"]["protocolVersion"]
                .as_str()
                .unwrap_or(DEFAULT_PROTOCOL);
            ok(json!({"protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "claudegate", "version": env!("CARGO_PKG_VERSION")}}))
        }
        "ping" => ok(json!({})),
        "tools/list" => ok(json!({"tools": cat.tools})),
        "tools/call" => {
            let params = &msg["params"];
            let name = params["name"].as_str().unwrap_or("");
            match cat.names.client(name) {
                Some(client) => Rpc::Call(ToolCall {
                    rpc_id: id.clone(),
                    name: client.to_string(),
                    arguments: match &params["arguments"] {
                        Value::Null => json!({}),
                        a => a.clone(),
                    },
                    tool_use_id: params["_meta"]["claudecode/toolUseId"]
                        .as_str()
                        .map(String::from),
                }),
                None => Rpc::Reply(rpc_error(id, -32602, "unknown tool")),
            }
        }
        _ => Rpc::Reply(rpc_error(id, -32601, "method not found")),
    }
}

/// The JSON-RPC answer to a tool call from the client's `tool_result` `content` (a string or
/// text and image blocks) and its `is_error`.
pub fn call_result(rpc_id: &Value, content: &Value, is_error: bool) -> Value {
    let blocks: Vec<Value> = match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p["type"].as_str() {
                Some("image") if p["source"]["type"] == "base64" => json!({"type": "image",
                    "data": p["source"]["data"], "mimeType": p["source"]["media_type"]}),
                Some("text") => json!({"type": "text", "text": p["text"]}),
                _ => json!({"type": "text", "text": p.to_string()}),
            })
            .collect(),
        Value::Null => vec![],
        other => vec![json!({"type": "text", "text": other.to_string()})],
    };
    json!({"jsonrpc": "2.0", "id": rpc_id,
        "result": {"content": blocks, "isError": is_error}})
}

/// The `--mcp-config` JSON naming the bridge: `claudegate mcp-bridge --socket <socket>` as the
/// one stdio server [`SERVER`], with the call's `marker` (unless empty) in its environment, so
/// the socket's peer check knows it and the end of the call ends it.
pub fn mcp_config(claudegate: &Path, socket: &Path, marker: &str) -> Value {
    let mut server = json!({"type": "stdio",
        "command": claudegate.to_string_lossy(),
        "args": ["mcp-bridge", "--socket", socket.to_string_lossy()]});
    if !marker.is_empty() {
        server["env"] = json!({super::process::CALL_MARKER: marker});
    }
    json!({"mcpServers": {SERVER: server}})
}

/// Writes JSON-RPC lines to the bridge; shared by the reading loop and whoever answers a call.
#[derive(Clone)]
pub struct Writer(Arc<Mutex<UnixStream>>);

impl Writer {
    pub fn send(&self, line: &Value) -> std::io::Result<()> {
        let mut s = lock(&self.0);
        s.write_all(format!("{line}\n").as_bytes())?;
        s.flush()
    }
}

/// The listening socket of one call.
pub struct Bridge {
    pub path: PathBuf,
    listener: UnixListener,
}

impl Bridge {
    /// Listens on `<dir>/mcp.sock` (`dir` is the call's private directory, mode 0700).
    pub fn listen(dir: &Path) -> std::io::Result<Bridge> {
        let path = dir.join(SOCKET);
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(Bridge { path, listener })
    }

    /// Waits until `deadline` for the bridge to connect, taking only a peer of our own user for
    /// which `peer_ok(pid)` holds (the call's marker in its environment); others are dropped.
    /// Gives up as soon as the socket's file is gone: the call ended (its directory removed)
    /// before the bridge came, and no peer can connect any more.
    pub fn accept(&self, deadline: Instant, peer_ok: &dyn Fn(u32) -> bool) -> Option<UnixStream> {
        while Instant::now() < deadline {
            match self.listener.accept() {
                Ok((s, _)) => {
                    let own = crate::base::sys::effective_uid();
                    match crate::base::sys::peer_credentials(&s) {
                        Ok((pid, uid)) if uid == own && peer_ok(pid) => {
                            s.set_nonblocking(false).ok()?;
                            return Some(s);
                        }
                        _ => continue,
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::fs::symlink_metadata(&self.path).is_err() {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return None,
            }
        }
        None
    }
}

/// Serves one connected bridge until it closes: answers what [`handle`] answers and hands
/// each tool call to `on_call` with the writer to answer it through.
pub fn serve(stream: UnixStream, cat: &Catalogue, on_call: &mut dyn FnMut(ToolCall, Writer)) {
    let Ok(read) = stream.try_clone() else {
        return;
    };
    let writer = Writer(Arc::new(Mutex::new(stream)));
    let mut r = BufReader::new(read);
    loop {
        let mut buf = Vec::new();
        match r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let sent = match handle(cat, line.trim_end()) {
            Rpc::Reply(v) => writer.send(&v),
            Rpc::Call(call) => {
                on_call(call, writer.clone());
                Ok(())
            }
            Rpc::Silent => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalogue {
        Catalogue::new(&[
            json!({"name": "get weather", "description": "d", "input_schema": {"type": "object"}}),
            json!({"name": "get_weather", "input_schema": {"type": "object"}}),
            json!({"name": "Bash", "input_schema": {"type": "object"}}),
        ])
        .unwrap()
    }

    #[test]
    fn names_map_to_mcp_safe_names_and_back() {
        let n = cat().names;
        assert_eq!(n.mcp("get weather"), Some("get_weather"));
        assert_eq!(n.mcp("get_weather"), Some("get_weather_2"));
        assert_eq!(n.client("get_weather_2"), Some("get_weather"));
        assert_eq!(n.upstream("Bash").as_deref(), Some("mcp__cg__Bash"));
        assert_eq!(n.from_upstream("mcp__cg__get_weather"), Some("get weather"));
        assert_eq!(n.from_upstream("Bash"), None, "a built-in is never ours");
        let long = "x".repeat(200);
        let n = ToolNames::new([long.as_str(), &long[..199]]);
        assert!(
            n.allowed().iter().all(|a| a.len() <= 64),
            "{:?}",
            n.allowed()
        );
        assert_ne!(n.mcp(&long), n.mcp(&long[..199]));
    }

    #[test]
    fn many_names_that_sanitise_alike_get_unique_names_in_order() {
        // Small cases, exactly: a declared name that looks like a suffix is skipped over.
        let n = ToolNames::new(["a b", "a_b_3", "a.b", "a-b", "a?b", "a!b"]);
        let got: Vec<&str> = n.rows.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(got, ["a_b", "a_b_3", "a_b_2", "a-b", "a_b_4", "a_b_5"]);
        // Thousands that all sanitise to `a_` (and long ones cut to fit): each gets its own
        // name, in the request's order, and maps back. (This was cubic in the count.)
        let long = "y".repeat(60);
        let clients: Vec<String> = (0..3000u32)
            .map(|i| match char::from_u32(0x100 + i) {
                Some(c) if i % 2 == 0 => format!("a{c}"),
                Some(c) => format!("{long}{c}"),
                None => unreachable!(),
            })
            .collect();
        let n = ToolNames::new(clients.iter().map(String::as_str));
        let mcp: Vec<&str> = clients.iter().map(|c| n.mcp(c).unwrap()).collect();
        let unique: HashSet<&str> = mcp.iter().copied().collect();
        assert_eq!(unique.len(), clients.len());
        assert_eq!(
            &mcp[..4],
            [
                "a_",
                &"y".repeat(55),
                "a__2",
                &format!("{}_2", "y".repeat(53))
            ]
        );
        assert_eq!(mcp[2998], "a__1500");
        assert!(mcp.iter().all(|m| m.len() <= MAX_NAME), "{mcp:?}");
        for (c, m) in clients.iter().zip(&mcp) {
            assert_eq!(n.client(m), Some(c.as_str()));
        }
        let tools: Vec<Value> = clients
            .iter()
            .map(|c| json!({"name": c, "input_schema": {}}))
            .collect();
        assert_eq!(Catalogue::new(&tools).unwrap().names, n);
    }

    #[test]
    fn bad_tools_are_refused_by_name() {
        for (tools, param) in [
            (
                json!([{"type": "web_search_20250305", "name": "web_search"}]),
                "tools[0]",
            ),
            (
                json!([{"name": "a", "input_schema": {}}, {"name": ""}]),
                "tools[1]",
            ),
            (json!([{"name": "a"}]), "tools[0]"),
            (
                json!([{"name": "a", "input_schema": {}}, {"name": "a", "input_schema": {}}]),
                "tools[1]",
            ),
        ] {
            let e = Catalogue::new(tools.as_array().unwrap()).unwrap_err();
            assert!(
                matches!(&e, CliError::Refused { param: p, .. } if p == param),
                "{tools}: {e:?}"
            );
        }
    }

    #[test]
    fn the_mcp_handshake_as_claude_code_sends_it() {
        let c = cat();
        let Rpc::Reply(r) = handle(
            &c,
            r#"{"jsonrpc":"2.0","id":"server-discover-probe-1","method":"server/discover","params":{}}"#,
        ) else {
            panic!()
        };
        assert_eq!(r["error"]["code"], -32601);
        let Rpc::Reply(r) = handle(
            &c,
            r#"{"method":"initialize","params":{"protocolVersion":"2025-11-25"},"jsonrpc":"2.0","id":0}"#,
        ) else {
            panic!()
        };
        assert_eq!(r["id"], 0);
        assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
        assert!(r["result"]["capabilities"]["tools"].is_object());
        assert_eq!(
            handle(
                &c,
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
            ),
            Rpc::Silent
        );
        let Rpc::Reply(r) = handle(&c, r#"{"method":"tools/list","jsonrpc":"2.0","id":1}"#) else {
            panic!()
        };
        assert_eq!(
            r["result"]["tools"][0],
            json!({"name": "get_weather", "description": "d", "inputSchema": {"type": "object"}})
        );
        let call = handle(
            &c,
            r#"{"method":"tools/call","params":{"name":"get_weather_2","arguments":{"city":"Paris; rm -rf /"},"_meta":{"claudecode/toolUseId":"toolu_A1","progressToken":2}},"jsonrpc":"2.0","id":2}"#,
        );
        assert_eq!(
            call,
            Rpc::Call(ToolCall {
                rpc_id: json!(2),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris; rm -rf /"}),
                tool_use_id: Some("toolu_A1".into())
            })
        );
        let Rpc::Reply(r) = handle(
            &c,
            r#"{"method":"tools/call","params":{"name":"Read"},"jsonrpc":"2.0","id":3}"#,
        ) else {
            panic!()
        };
        assert_eq!(r["error"]["code"], -32602);
        let Rpc::Reply(r) = handle(&c, "not json") else {
            panic!()
        };
        assert_eq!(r["error"]["code"], -32700);
    }

    #[test]
    fn a_tool_result_becomes_mcp_content() {
        let img = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}});
        let r = call_result(
            &json!(7),
            &json!([{"type": "text", "text": "a"}, img]),
            true,
        );
        assert_eq!(r["id"], 7);
        assert_eq!(r["result"]["isError"], true);
        assert_eq!(
            r["result"]["content"],
            json!([{"type": "text", "text": "a"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"}])
        );
        let r = call_result(&json!(1), &json!("sunny"), false);
        assert_eq!(
            r["result"]["content"],
            json!([{"type": "text", "text": "sunny"}])
        );
    }

    #[test]
    fn only_a_peer_that_passes_the_check_is_served() {
        let dir = std::env::temp_dir().join(format!("cg-bridge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let b = Bridge::listen(&dir).unwrap();
        let _refused = UnixStream::connect(&b.path).unwrap();
        let soon = Instant::now() + Duration::from_millis(300);
        assert!(b.accept(soon, &|_| false).is_none());
        let mut client = UnixStream::connect(&b.path).unwrap();
        let me = std::process::id();
        let s = b
            .accept(Instant::now() + Duration::from_secs(2), &|pid| pid == me)
            .unwrap();
        let c = cat();
        let t = std::thread::spawn(move || {
            let mut calls = Vec::new();
            serve(s, &c, &mut |call, w| {
                w.send(&call_result(&call.rpc_id, &json!("ok"), false))
                    .unwrap();
                calls.push(call);
            });
            calls
        });
        client.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"Bash\",\"arguments\":{}}}\n").unwrap();
        let mut r = BufReader::new(client.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["id"], 1);
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap()["result"]["content"][0]["text"],
            "ok"
        );
        drop(client);
        drop(r);
        let calls = t.join().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "Bash");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_wait_for_the_bridge_ends_with_the_call_directory() {
        let dir = std::env::temp_dir().join(format!("cg-bridge-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let b = Bridge::listen(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let t = Instant::now();
        assert!(b
            .accept(Instant::now() + Duration::from_secs(30), &|_| true)
            .is_none());
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
