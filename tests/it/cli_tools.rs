//! Client tools on the claude-cli backend, end to end with the REAL Claude Code CLI and the real
//! server against the mock upstream, in a hostile home (issue 16, stage 2): a request declaring
//! tools gets an answer that ends at the tool call (`stop_reason: tool_use`, the client's tool
//! name), the CLI process is parked, and the same key's next request carrying the
//! `tool_result` resumes it, its continued answer streaming back. Another key can never resume
//! it; a parked process is ended at `cli.park_timeout_ms` and its slot freed; a client tool
//! named `Bash` whose argument is a shell command runs nothing on this host. Skipped (loudly)
//! when the CLI is not installed, failed under `CLAUDEGATE_E2E_REQUIRED=1`.

use crate::cli_backend::{make_hostile_home, markers, processes_with_home, World, REAL_MODEL};
use crate::common::gate::{merge, post, Gate, Resp, Setup};
use crate::common::mock_upstream::{parse_sse, sse_text_events, sse_tool_use_events, Reply};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The gate on the CLI backend (the world's logged-in `cli` section, only `sonnet` allowed,
/// `cli` merged in) with two keys, `app` and `other`.
fn two_keys(w: &World, cli: Value) -> (Gate, String, String) {
    let mut c = w.cli_config(true);
    merge(&mut c, &json!({"allowed_models": ["sonnet"]}));
    merge(&mut c, &cli);
    let setup = Setup::new(json!({"backend": "claude-cli", "cli": c}));
    let app = setup.add_key("app", &[]);
    let other = setup.add_key("other", &[]);
    (Gate::spawn(setup), app, other)
}

fn send(gate: &Gate, key: &str, body: &Value) -> Resp {
    post(
        &gate.url("/v1/messages"),
        &[("x-api-key", key)],
        &body.to_string(),
    )
}

/// A plain one-turn request without tools.
fn send_plain(gate: &Gate, key: &str) -> Resp {
    send(
        gate,
        key,
        &json!({"model": "sonnet", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
    )
}

/// A plain request, its answer scripted upstream, gets its 200: the CLI slot is free.
fn assert_slot_free(w: &World, gate: &Gate, key: &str, word: &str) {
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &[word])),
    );
    let r = send_plain(gate, key);
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
}

/// The `tool_use` block of a whole Anthropic answer (panics, showing the answer, without one).
fn tool_use_block(v: &Value) -> Value {
    v["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_use"))
        .cloned()
        .unwrap_or_else(|| panic!("no tool_use in {v}"))
}

fn tools() -> Value {
    json!([{"name": "Bash", "description": "the client's own shell",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}])
}

use crate::common::run::eventually;

#[test]
fn a_tool_round_trip_parks_the_cli_and_only_its_key_resumes_it() {
    let Some(w) = World::new("a_tool_round_trip_parks_the_cli_and_only_its_key_resumes_it") else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let (gate, app, other) = two_keys(&w, json!({}));
    let canary = w.outside.path().join("PWNED_BY_TOOL_ARGS");
    let command = format!("touch {}", canary.display());
    script_tool_round(&w, "toolu_PARK1", "Bash", &json!({"command": command}));
    let ask = json!({"role": "user", "content": "run it"});
    let r = send(
        &gate,
        &app,
        &json!({"model": "sonnet", "max_tokens": 100, "tools": tools(), "messages": [ask]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let v = r.json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let call = tool_use_block(&v);
    assert_eq!(call["name"], "Bash", "the client's own name: {v}");
    assert_eq!(call["id"], "toolu_PARK1");
    assert_eq!(call["input"], json!({"command": command}));
    // The CLI waits, parked: it is still alive.
    assert!(
        !processes_with_home(w.home.path()).is_empty(),
        "the parked CLI is alive"
    );

    let result = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_PARK1", "content": "client ran it"}]});
    let follow_up = json!({"model": "sonnet", "max_tokens": 100, "tools": tools(),
        "messages": [ask, {"role": "assistant", "content": [call]}, result], "stream": true});
    // Another key cannot resume it, and trying does not end it.
    let r = send(&gate, &other, &follow_up);
    let e = r.assert_anthropic_error(400, "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("toolu_PARK1"),
        "{e}"
    );
    assert_eq!(w.messages().len(), 1, "no upstream call for the other key");

    let t = Instant::now();
    let r = send(&gate, &app, &follow_up);
    eprintln!("a parked round trip's follow-up took {:?}", t.elapsed());
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let text: String = event_data(&r.body)
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "done", "{}", r.body);
    assert_eq!(
        parse_sse(&r.body).last().map(|e| e.event.as_str()),
        Some("message_stop")
    );
    assert!(r.body.contains("end_turn"), "{}", r.body);
    // The client's result went upstream as the tool's result, in the same CLI's second call.
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[1].json()["messages"]
            .to_string()
            .contains("client ran it"),
        "{}",
        msgs[1].json()
    );
    // Nothing ran here, and the CLI ended with its answer.
    assert!(!canary.exists(), "the tool's arguments reached a shell");
    assert_eq!(markers(w.outside.path()), Vec::<std::path::PathBuf>::new());
    assert_all_end(&w);
}

#[test]
fn a_parked_cli_is_ended_at_its_timeout_and_frees_its_slot() {
    let Some(w) = World::new("a_parked_cli_is_ended_at_its_timeout_and_frees_its_slot") else {
        return;
    };
    let (gate, app, _) = two_keys(
        &w,
        json!({"max_concurrent": 1, "queue_wait_ms": 500, "park_timeout_ms": 1500}),
    );
    start_round(&gate, &w, &app, "toolu_GONE");
    // The client never comes back. While parked, the one slot is taken.
    let busy = send_plain(&gate, &app);
    assert_eq!(busy.status, 429, "{busy:?}");
    let parked_at = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || processes_with_home(
            w.home.path()
        )
        .is_empty()),
        "the parked CLI outlived its timeout: {:?}",
        processes_with_home(w.home.path())
    );
    assert!(parked_at.elapsed() < Duration::from_secs(4));
    // The slot is free again.
    assert_slot_free(&w, &gate, &app, "again");
    // Its result now comes too late: refused, naming why.
    let late = send(&gate, &app, &result_for("toolu_GONE", false));
    let e = late.assert_anthropic_error(400, "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("park_timeout_ms"),
        "{e}"
    );
}

fn send_to(gate: &Gate, path: &str, key: &str, body: &Value) -> Resp {
    post(
        &gate.url(path),
        &[("authorization", &format!("Bearer {key}"))],
        &body.to_string(),
    )
}

/// The text of an OpenAI stream (chat `delta.content` or Responses `output_text.delta`).
fn streamed_text(body: &str) -> String {
    parse_sse(body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|d| {
            d["choices"][0]["delta"]["content"]
                .as_str()
                .or_else(|| {
                    (d["type"] == "response.output_text.delta")
                        .then(|| d["delta"].as_str())
                        .flatten()
                })
                .map(String::from)
        })
        .collect()
}

/// Enqueues a call of the bridged `tool` with `args`, then the text `done`.
fn script_tool_round(w: &World, id: &str, tool: &str, args: &Value) {
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            REAL_MODEL,
            id,
            &format!("mcp__cg__{tool}"),
            &[&args.to_string()],
        )),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &["do", "ne"])),
    );
}

fn chat_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "the client's",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

#[test]
fn a_chat_tool_round_trip_through_the_cli_streamed_then_whole() {
    let Some(w) = World::new("a_chat_tool_round_trip_through_the_cli_streamed_then_whole") else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let (gate, app, _) = two_keys(&w, json!({}));
    let args = json!({"city": "Paris; rm -rf / $(id) `id` | cat"});
    script_tool_round(&w, "toolu_CHAT1", "get_weather", &args);
    let ask = json!({"role": "user", "content": "weather?"});
    // First request streamed: the answer ends at the tool call.
    let r = send_to(
        &gate,
        "/v1/chat/completions",
        &app,
        &json!({"model": "sonnet", "stream": true, "tools": chat_tools(), "messages": [ask]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let chunks: Vec<Value> = parse_sse(&r.body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .collect();
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("tool_calls")], "{}", r.body);
    let call_id = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].as_str())
        .unwrap_or_else(|| panic!("no tool call id in {}", r.body))
        .to_string();
    let name = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["name"].as_str());
    assert_eq!(name, Some("get_weather"), "{}", r.body);
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        args,
        "the arguments arrive verbatim"
    );
    // The result, whole.
    let assistant = json!({"role": "assistant", "content": null, "tool_calls": [{"id": call_id,
        "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]});
    let r = send_to(
        &gate,
        "/v1/chat/completions",
        &app,
        &json!({"model": "sonnet", "tools": chat_tools(), "messages": [ask, assistant,
            {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "done", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].json()["messages"]
        .to_string()
        .contains("sunny, 21 C"));
    assert!(
        eventually(Duration::from_secs(5), || processes_with_home(
            w.home.path()
        )
        .is_empty()),
        "the CLI ended with its answer"
    );
}

#[test]
fn a_responses_function_call_round_trip_through_the_cli_whole_then_streamed() {
    let Some(w) =
        World::new("a_responses_function_call_round_trip_through_the_cli_whole_then_streamed")
    else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let (gate, app, _) = two_keys(&w, json!({}));
    let args = json!({"city": "Oslo"});
    script_tool_round(&w, "toolu_RESP1", "get_weather", &args);
    let tools = json!([{"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let r = send_to(
        &gate,
        "/v1/responses",
        &app,
        &json!({"model": "sonnet", "tools": tools, "input": "weather?"}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let v = r.json();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .cloned()
        .unwrap_or_else(|| panic!("no function_call in {v}"));
    assert_eq!(call["name"], "get_weather", "{v}");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        args
    );
    let call_id = call["call_id"].as_str().unwrap().to_string();
    let r = send_to(
        &gate,
        "/v1/responses",
        &app,
        &json!({"model": "sonnet", "stream": true, "tools": tools, "input": [
            {"role": "user", "content": "weather?"},
            call,
            {"type": "function_call_output", "call_id": call_id, "output": "snow"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    assert_eq!(streamed_text(&r.body), "done", "{}", r.body);
    assert!(r.body.contains("response.completed"), "{}", r.body);
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].json()["messages"].to_string().contains("snow"));
}

/// Sends `body` to `path` on a fresh connection, reads for `patience`, then hangs up.
fn hang_up_after(gate: &Gate, key: &str, path: &str, body: &Value, patience: Duration) -> String {
    let started = Instant::now();
    crate::abandoned::give_up_when(gate, key, path, body, || started.elapsed() >= patience)
}

/// Every CLI process of this world ends within 5 s.
fn assert_all_end(w: &World) {
    assert!(
        eventually(Duration::from_secs(5), || processes_with_home(
            w.home.path()
        )
        .is_empty()),
        "{:?}",
        processes_with_home(w.home.path())
    );
}

/// The first request of a tool round by `key`: the answer ends at the call `id`.
fn start_round(gate: &Gate, w: &World, key: &str, id: &str) -> Value {
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            REAL_MODEL,
            id,
            "mcp__cg__Bash",
            &[r#"{"command":"ls"}"#],
        )),
    );
    let r = send(
        gate,
        key,
        &json!({"model": "sonnet", "max_tokens": 100, "tools": tools(),
                "messages": [{"role": "user", "content": "run it"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    assert_eq!(r.json()["stop_reason"], "tool_use", "{}", r.body);
    r.json()
}

/// The request that brings the result of call `id`.
fn result_for(id: &str, stream: bool) -> Value {
    json!({"model": "sonnet", "max_tokens": 100, "tools": tools(), "stream": stream, "messages": [
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "out"}]}]})
}

#[test]
fn a_client_that_hangs_up_on_a_resumed_cli_frees_its_slot() {
    let Some(w) = World::new("a_client_that_hangs_up_on_a_resumed_cli_frees_its_slot") else {
        return;
    };
    let (gate, app, _) = two_keys(&w, json!({"max_concurrent": 1, "queue_wait_ms": 500}));
    start_round(&gate, &w, &app, "toolu_HANG");
    // The resumed CLI's next upstream call answers only after 30 s: the client leaves first,
    // once while streaming and once while waiting for a whole answer.
    for (n, stream) in [true, false].into_iter().enumerate() {
        if n > 0 {
            start_round(&gate, &w, &app, "toolu_HANG");
        }
        w.mock.enqueue(
            "/v1/messages",
            Reply::sse(sse_text_events(REAL_MODEL, &["late"])).delay_before_ms(30_000),
        );
        let got = hang_up_after(
            &gate,
            &app,
            "/v1/messages",
            &result_for("toolu_HANG", stream),
            Duration::from_millis(1500),
        );
        assert!(!got.contains("late"), "{got}");
        let left = Instant::now();
        assert!(
            eventually(Duration::from_secs(5), || processes_with_home(
                w.home.path()
            )
            .is_empty()),
            "the resumed CLI outlived its client: {:?}",
            processes_with_home(w.home.path())
        );
        eprintln!(
            "the resumed CLI ended {:?} after its client left",
            left.elapsed()
        );
        // The one slot is free: a plain request runs at once.
        assert_slot_free(&w, &gate, &app, "free");
    }
}

#[test]
fn parking_beyond_the_per_key_limit_ends_the_oldest_and_its_late_result_is_refused() {
    let Some(w) = World::new(
        "parking_beyond_the_per_key_limit_ends_the_oldest_and_its_late_result_is_refused",
    ) else {
        return;
    };
    let (gate, app, other) = two_keys(&w, json!({"max_concurrent": 4, "max_parked_per_key": 1}));
    start_round(&gate, &w, &other, "toolu_OTHER");
    start_round(&gate, &w, &app, "toolu_OLD");
    assert!(processes_with_home(w.home.path()).len() >= 2);
    start_round(&gate, &w, &app, "toolu_NEW");
    // The oldest of `app` is ended; `other`'s is not the same key's, so it stays.
    let late = send(&gate, &app, &result_for("toolu_OLD", false));
    let e = late.assert_anthropic_error(400, "invalid_request_error");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("toolu_OLD") && msg.contains("max_parked_per_key"),
        "{e}"
    );
    // The newest and the other key's both still resume.
    for (key, id) in [(&app, "toolu_NEW"), (&other, "toolu_OTHER")] {
        w.mock.enqueue(
            "/v1/messages",
            Reply::sse(sse_text_events(REAL_MODEL, &["ok"])),
        );
        let r = send(&gate, key, &result_for(id, false));
        assert_eq!(r.status, 200, "{id}: {r:?}\n{}", gate.log());
        assert_eq!(r.json()["content"][0]["text"], "ok", "{}", r.body);
    }
    assert_all_end(&w);
}

#[test]
fn a_client_tool_named_read_reads_nothing_here() {
    let Some(w) = World::new("a_client_tool_named_read_reads_nothing_here") else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let (gate, app, _) = two_keys(&w, json!({}));
    let secret = w.outside.path().join("canary-secret.txt");
    std::fs::write(&secret, "CANARY-CONTENT-7f3a").unwrap();
    let input = json!({"file_path": secret.to_string_lossy()});
    // The upstream first asks for the built-in Read (which is off), then the client's.
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            REAL_MODEL,
            "toolu_BUILTIN",
            "Read",
            &[&input.to_string()],
        )),
    );
    script_tool_round(&w, "toolu_CLIENTREAD", "Read", &input);
    let read_tool = json!([{"name": "Read", "description": "the client's own file reader",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]);
    let ask = json!({"role": "user", "content": "read it"});
    let r = send(
        &gate,
        &app,
        &json!({"model": "sonnet", "max_tokens": 100, "tools": read_tool, "messages": [ask]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let v = r.json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let calls: Vec<&Value> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "only the client's tool reaches the client: {v}"
    );
    assert_eq!(calls[0]["name"], "Read");
    assert_eq!(calls[0]["id"], "toolu_CLIENTREAD");
    assert_eq!(calls[0]["input"], input);
    let r = send(
        &gate,
        &app,
        &json!({"model": "sonnet", "max_tokens": 100, "tools": read_tool, "messages": [ask,
            {"role": "assistant", "content": [calls[0]]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_CLIENTREAD",
                "content": "the client's copy"}]}]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    assert_eq!(r.json()["content"][0]["text"], "done", "{}", r.body);
    let msgs = w.messages();
    assert_eq!(
        msgs.len(),
        3,
        "built-in refusal, the client's call, the answer"
    );
    for m in &msgs {
        assert!(
            !m.body_text().contains("CANARY-CONTENT"),
            "the file was read: {}",
            m.body_text()
        );
    }
    assert!(msgs[2].body_text().contains("the client's copy"));
    assert_eq!(markers(w.outside.path()), Vec::<std::path::PathBuf>::new());
}

/// The kB of `field` (`VmRSS`) of each process with this home (the parked CLI, its bridge).
fn rss_kb(home: &std::path::Path) -> Vec<(String, u64)> {
    processes_with_home(home)
        .iter()
        .filter_map(|p| {
            let (pid, cmd) = p.split_once(": ")?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((cmd.chars().take(60).collect(), kb))
        })
        .collect()
}

/// Measures (printed, for the README): a fresh one-turn call, the first request of a tool round
/// (start, call), the request that resumes the parked CLI, and the memory the parked CLI holds.
/// Loose bounds only: the numbers are the point.
#[test]
fn measure_a_parked_round_trip() {
    let Some(w) = World::new("measure_a_parked_round_trip") else {
        return;
    };
    let (gate, app, _) = two_keys(&w, json!({}));
    let mut fresh = Vec::new();
    let mut first = Vec::new();
    let mut resumed = Vec::new();
    let mut parked_rss = Vec::new();
    for n in 0..3 {
        w.mock.enqueue(
            "/v1/messages",
            Reply::sse(sse_text_events(REAL_MODEL, &["hi"])),
        );
        let t = Instant::now();
        let r = send_plain(&gate, &app);
        assert_eq!(r.status, 200, "{r:?}");
        fresh.push(t.elapsed());
        let id = format!("toolu_MEASURE{n}");
        let t = Instant::now();
        start_round(&gate, &w, &app, &id);
        first.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
        parked_rss.push(rss_kb(w.home.path()));
        w.mock.enqueue(
            "/v1/messages",
            Reply::sse(sse_text_events(REAL_MODEL, &["ok"])),
        );
        let t = Instant::now();
        let r = send(&gate, &app, &result_for(&id, false));
        assert_eq!(r.status, 200, "{r:?}");
        resumed.push(t.elapsed());
    }
    eprintln!("MEASURE fresh one-turn call: {fresh:?}");
    eprintln!("MEASURE tool round, first request (start + call): {first:?}");
    eprintln!("MEASURE tool round, resuming request: {resumed:?}");
    eprintln!("MEASURE parked processes' RSS (kB): {parked_rss:?}");
    assert!(resumed.iter().all(|d| *d < Duration::from_secs(10)));
}

/// Queues a tool round that reaches the CLI only through its non-streaming fallback: the stream
/// answers with something that is not an event stream, then the whole message `msg_id` holds
/// `before` (blocks ahead of the call) and the call `id` of the bridged `Bash` with
/// `{"command":"ls"}`.
fn script_fallback_call(w: &World, msg_id: &str, before: &[Value], id: &str) {
    w.mock.enqueue(
        "/v1/messages",
        Reply::body(200, "text/plain", "this is not an event stream"),
    );
    let mut content = before.to_vec();
    content.push(
        json!({"type": "tool_use", "id": id, "name": "mcp__cg__Bash",
                        "input": {"command": "ls"}}),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::json(
            200,
            json!({"id": msg_id, "type": "message", "role": "assistant",
                "model": REAL_MODEL, "stop_reason": "tool_use", "stop_sequence": null,
                "content": content, "usage": {"input_tokens": 5, "output_tokens": 7}}),
        ),
    );
}

/// The data of each event of an Anthropic stream, as JSON.
fn event_data(body: &str) -> Vec<Value> {
    parse_sse(body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .collect()
}

/// A tool call that reaches the CLI only through its non-streaming fallback (the stream
/// answered with something that is not an event stream) still ends the answer at the call,
/// whole or streamed, and the result resumes the process.
#[test]
fn a_tool_call_from_the_non_streaming_fallback_parks_the_cli() {
    let Some(w) = World::new("a_tool_call_from_the_non_streaming_fallback_parks_the_cli") else {
        return;
    };
    let (gate, app, _) = two_keys(&w, json!({"timeout_ms": 15_000}));
    // The first request of a round, its answer whole or streamed: a 200 well within the CLI's
    // timeout (the fallback is taken at once, not after a stall).
    let ask = |stream: bool| {
        let started = Instant::now();
        let r = send(
            &gate,
            &app,
            &json!({"model": "sonnet", "max_tokens": 100, "tools": tools(), "stream": stream,
                    "messages": [{"role": "user", "content": "run it"}]}),
        );
        assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        r
    };

    // Whole.
    script_fallback_call(
        &w,
        "msg_fallback",
        &[json!({"type": "text", "text": "Running it."})],
        "toolu_FALLBACK",
    );
    let v = ask(false).json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let call = tool_use_block(&v);
    assert_eq!(call["name"], "Bash");
    assert_eq!(call["id"], "toolu_FALLBACK");
    assert_eq!(call["input"], json!({"command": "ls"}));
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &["done"])),
    );
    let r = send(&gate, &app, &result_for("toolu_FALLBACK", false));
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    assert_eq!(r.json()["content"][0]["text"], "done", "{}", r.body);

    // Streamed: the call arrives as a tool_use block under the client's name, its input as
    // JSON deltas.
    script_fallback_call(&w, "msg_fallback2", &[], "toolu_FALLBACK2");
    let r = ask(true);
    assert!(r.body.contains("toolu_FALLBACK2"), "{}", r.body);
    assert!(
        r.body.contains("\"stop_reason\":\"tool_use\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("input_json_delta"), "{}", r.body);
    let events = parse_sse(&r.body);
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("message_stop")
    );
    let data = event_data(&r.body);
    let start = data
        .iter()
        .find(|d| d["type"] == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use block in {}", r.body));
    assert_eq!(start["content_block"]["name"], "Bash", "{}", r.body);
    assert_eq!(
        start["content_block"]["id"], "toolu_FALLBACK2",
        "{}",
        r.body
    );
    let input: String = data
        .iter()
        .filter(|d| d["type"] == "content_block_delta" && d["index"] == start["index"])
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).ok(),
        Some(json!({"command": "ls"})),
        "{}",
        r.body
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &["done"])),
    );
    let r = send(&gate, &app, &result_for("toolu_FALLBACK2", true));
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let text: String = event_data(&r.body)
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "done", "{}", r.body);
    assert_all_end(&w);
}
