//! Fault injection (issue 7): an upstream that breaks, stalls, answers garbage or cuts a body
//! short; token and key files that cannot be read at start; a disk that fills up while the
//! token is written. Each fault must give the client its protocol's error (never a clean end
//! of a broken answer), and afterwards the server still answers `/health` and a normal request.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGE_STREAM: &str = r#"{"model":"claude-sonnet-4-6","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

fn chat(stream: bool) -> String {
    json!({"model": "sonnet", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

fn responses(stream: bool) -> String {
    json!({"model": "sonnet", "stream": stream, "input": "hi"}).to_string()
}

/// The server is alive, answers `/health`, and a normal request goes through.
fn still_serves(gate: &mut Gate, mock: &MockUpstream, key: &str) {
    assert_eq!(mock.queued(), 0, "every scripted reply was used");
    gate.assert_healthy();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", key)], MESSAGE);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["content"][0]["text"],
        DEFAULT_TEXT_CHUNKS.concat(),
        "{r:?}"
    );
    assert!(!gate.log().contains("panicked"), "{}", gate.log());
}

// --- Raw upstream answers ---------------------------------------------------------------------

/// One HTTP/1.1 chunk.
fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// A `200` head with chunked framing and this content type.
fn chunked_head(content_type: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nrequest-id: req_raw\r\n\r\n")
}

/// The first events of a text stream as chunks, one per event.
fn first_events(n: usize) -> String {
    sse_text_events(DEFAULT_MODEL, &["par", "tial"])[..n]
        .iter()
        .map(|e| chunk(&e.to_wire()))
        .collect()
}

/// An SSE answer whose third chunk announces its full size but stops halfway, then the
/// connection closes.
fn sse_cut_mid_chunk() -> Reply {
    let third = sse_text_events(DEFAULT_MODEL, &["par", "tial"])[2].to_wire();
    Reply::raw(format!(
        "{}{}{:x}\r\n{}",
        chunked_head("text/event-stream; charset=utf-8"),
        first_events(2),
        third.len(),
        &third[..third.len() / 2]
    ))
}

/// An SSE answer whose third chunk-size line is not hex.
fn sse_bad_chunk_size() -> Reply {
    let third = sse_text_events(DEFAULT_MODEL, &["par", "tial"])[2].to_wire();
    Reply::raw(format!(
        "{}{}zz\r\n{third}\r\n0\r\n\r\n",
        chunked_head("text/event-stream; charset=utf-8"),
        first_events(2),
    ))
}

/// A complete message JSON, as a non-streaming answer carries it.
fn message_json() -> String {
    message_body(DEFAULT_MODEL, "a complete answer", 12, 3)
}

/// A JSON answer in chunked framing, cut in the middle of its only chunk.
fn json_cut_mid_chunk() -> Reply {
    let body = message_json();
    Reply::raw(format!(
        "{}{:x}\r\n{}",
        chunked_head("application/json"),
        body.len(),
        &body[..body.len() / 2]
    ))
}

/// A JSON answer whose Content-Length promises 100 bytes more than are sent.
fn json_short_of_its_length() -> Reply {
    let body = message_json();
    Reply::raw(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: req_raw\r\n\r\n{body}",
        body.len() + 100
    ))
}

/// A JSON answer in chunked framing whose chunk-size line is not hex.
fn json_bad_chunk_size() -> Reply {
    let body = message_json();
    Reply::raw(format!(
        "{}1x{:x}\r\n{body}\r\n0\r\n\r\n",
        chunked_head("application/json"),
        body.len()
    ))
}

/// SSE event names of a stream.
fn event_names(l: &Lines) -> Vec<String> {
    parse_sse(&l.text()).into_iter().map(|e| e.event).collect()
}

/// Asserts an Anthropic stream that ended with a final `event: error` carrying `api_error` and
/// a message containing `says`, after whole events only (none half-sent), and without
/// `message_stop`; the HTTP framing itself ended cleanly (the error event is the signal, not a
/// torn connection).
fn assert_stream_ends_in_error(l: &Lines, says: &str) {
    assert_eq!(l.status, 200, "{l:?}");
    assert_eq!(l.end, Ok(()), "{l:?}");
    assert!(l.text().ends_with("\n\n"), "{l:?}");
    let events = parse_sse(&l.text());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.last(), Some(&"error"), "{l:?}");
    assert!(
        ["message_start", "content_block_start", "error"].ends_with(&names[..])
            || names[0] == "message_start",
        "{l:?}"
    );
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.data_json().is_object()),
        "{l:?}"
    );
    assert!(!names.contains(&"message_stop"), "{l:?}");
    let err = events.last().map(SseEvent::data_json).unwrap_or_default();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "api_error", "{err}");
    let message = err["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

/// The data lines of an OpenAI chat stream, parsed (`[DONE]` kept as a string).
fn chat_data(l: &Lines) -> Vec<Value> {
    l.lines
        .iter()
        .filter_map(|x| x.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::from(d)))
        .collect()
}

/// Asserts a chat stream that started, then ended with an error object and no `[DONE]`.
fn assert_chat_stream_fails(l: &Lines, says: &str) {
    assert_eq!(l.status, 200, "{l:?}");
    assert_eq!(l.end, Ok(()), "{l:?}");
    let data = chat_data(l);
    assert!(!data.contains(&Value::from("[DONE]")), "{l:?}");
    let last = data.last().cloned().unwrap_or_default();
    let before = &data[..data.len().saturating_sub(1)];
    assert!(
        before
            .iter()
            .all(|v| v["object"] == "chat.completion.chunk"),
        "{l:?}"
    );
    let message = last["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "{last} should say {says:?}");
    assert!(last["error"]["type"].is_string(), "{last}");
}

/// Asserts a Responses stream that started, then ended with `response.failed`.
fn assert_responses_stream_fails(l: &Lines, says: &str) {
    assert_eq!(l.status, 200, "{l:?}");
    assert_eq!(l.end, Ok(()), "{l:?}");
    let events = parse_sse(&l.text());
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{l:?}");
    assert_eq!(names.last(), Some(&"response.failed"), "{l:?}");
    assert!(!names.contains(&"response.completed"), "{l:?}");
    let failed = events.last().map(SseEvent::data_json).unwrap_or_default();
    assert_eq!(failed["response"]["status"], "failed", "{failed}");
    let message = failed["response"]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(message.contains(says), "{failed} should say {says:?}");
}

// --- 1. Reset and stall on the OpenAI doors ---------------------------------------------------

/// Injects an upstream that drops the connection mid-stream, then one that goes silent after
/// the headers, on `/v1/chat/completions` and `/v1/responses`, streaming and collected. Proves
/// a streaming client gets its protocol's error (an error object without `[DONE]`,
/// `response.failed`) within `stream_idle_ms`, and a collected answer becomes a 502 in OpenAI
/// shape, never a clean success holding half an answer.
#[test]
fn openai_doors_turn_a_reset_or_a_stall_into_their_protocol_error() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({"timeouts": {"stream_idle_ms": 700}}));
    let auth = format!("Bearer {key}");
    let h = [("authorization", auth.as_str())];
    let reset = || Reply::reset_mid_stream(sse_text_events(DEFAULT_MODEL, &["par", "tial"]), 4);
    let stall = || Reply::stall_after_headers(5000);
    for (what, reply, says) in [("reset", reset(), "failed"), ("stall", stall(), "timeout")] {
        let started = Instant::now();
        mock.enqueue("/v1/messages", reply.clone());
        let l = post_lines(&gate.url("/v1/chat/completions"), &h, &chat(true));
        assert_chat_stream_fails(&l, says);

        mock.enqueue("/v1/messages", reply.clone());
        let l = post_lines(&gate.url("/v1/responses"), &h, &responses(true));
        assert_responses_stream_fails(&l, says);

        mock.enqueue("/v1/messages", reply.clone());
        let r = post(&gate.url("/v1/chat/completions"), &h, &chat(false));
        let v = r.assert_openai_error(502);
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(says),
            "{what}: {v}"
        );

        mock.enqueue("/v1/messages", reply);
        let r = post(&gate.url("/v1/responses"), &h, &responses(false));
        let v = r.assert_openai_error(502);
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(says),
            "{what}: {v}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{what}: four faults took {:?}",
            started.elapsed()
        );
        still_serves(&mut gate, &mock, &key);
    }
}

// --- 2. Garbage and truncated bodies ---------------------------------------------------------

/// Injects answers that are not HTTP at all (binary bytes, a malformed status line, nothing),
/// each followed by a close. Proves they count as a failed connection: retried
/// (`upstream.max_retries`), then a 502 in the door's own error shape, for a streaming request
/// too (nothing was sent yet, so it is a plain JSON error, not a stream).
#[test]
fn garbage_instead_of_http_is_retried_then_a_502() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({"upstream": {"max_retries": 1}}));
    let auth = format!("Bearer {key}");
    let garbage: [&[u8]; 3] = [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
        b"HTTP/1.1 OK maybe\r\ncontent-type application/json\r\n\r\n{}",
        b"",
    ];
    for bytes in garbage {
        let tries = || {
            mock.enqueue("/v1/messages", Reply::raw(bytes));
            mock.enqueue("/v1/messages", Reply::raw(bytes));
        };
        let what = String::from_utf8_lossy(bytes).into_owned();
        for body in [MESSAGE, MESSAGE_STREAM] {
            tries();
            let before = mock.requests_to("/v1/messages").len();
            let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], body);
            let v = r.assert_anthropic_error(502, "api_error");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("2 attempts"),
                "{what:?}: {v}"
            );
            assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
            assert_eq!(
                mock.requests_to("/v1/messages").len(),
                before + 2,
                "{what:?}: retried once"
            );
        }
        tries();
        let r = post(
            &gate.url("/v1/chat/completions"),
            &[("authorization", &auth)],
            &chat(true),
        );
        r.assert_openai_error(502);
        still_serves(&mut gate, &mock, &key);
    }
}

/// Injects a streaming `/v1/messages` answer whose chunked body stops in the middle of a chunk
/// (the connection closes). Proves the client gets the events that arrived whole, then a final
/// `event: error`, not a clean end; the upstream is not asked again (the answer had started).
#[test]
fn a_stream_cut_mid_chunk_ends_with_an_error_event() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue("/v1/messages", sse_cut_mid_chunk());
    let l = post_lines(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        MESSAGE_STREAM,
    );
    assert_stream_ends_in_error(&l, "broke");
    assert_eq!(
        event_names(&l),
        ["message_start", "content_block_start", "error"]
    );
    assert_eq!(l.header("request-id"), Some("req_raw"));
    assert_eq!(mock.requests_to("/v1/messages").len(), 1, "not retried");
    still_serves(&mut gate, &mock, &key);
}

/// Injects a non-streaming `/v1/messages` answer that is cut short: a chunked JSON body that
/// stops mid-chunk, and a JSON body 100 bytes shorter than its Content-Length, each then
/// closed. Proves the client gets a 502 Anthropic `api_error` JSON (with the upstream's
/// request-id), not a 200 with half a message.
#[test]
fn a_json_answer_cut_short_is_a_502() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({}));
    for reply in [json_cut_mid_chunk(), json_short_of_its_length()] {
        mock.clear();
        mock.enqueue("/v1/messages", reply);
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
        let v = r.assert_anthropic_error(502, "api_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("(200) broke"),
            "{v}"
        );
        assert_eq!(r.header("request-id"), Some("req_raw"), "{r:?}");
        assert_eq!(mock.requests_to("/v1/messages").len(), 1, "not retried");
        still_serves(&mut gate, &mock, &key);
    }
}

/// Injects a chunked SSE answer cut mid-chunk on `/v1/chat/completions` and `/v1/responses`.
/// Proves a streaming client gets an error object and no `data: [DONE]` (Responses:
/// `response.failed`), and a collected one a 502 in OpenAI shape.
#[test]
fn openai_doors_report_a_stream_cut_mid_chunk() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({}));
    let auth = format!("Bearer {key}");
    let h = [("authorization", auth.as_str())];
    mock.enqueue("/v1/messages", sse_cut_mid_chunk());
    let l = post_lines(&gate.url("/v1/chat/completions"), &h, &chat(true));
    assert_chat_stream_fails(&l, "failed");

    mock.enqueue("/v1/messages", sse_cut_mid_chunk());
    let r = post(&gate.url("/v1/chat/completions"), &h, &chat(false));
    let v = r.assert_openai_error(502);
    assert_eq!(v["error"]["code"], "api_error", "{v}");

    mock.enqueue("/v1/messages", sse_cut_mid_chunk());
    let l = post_lines(&gate.url("/v1/responses"), &h, &responses(true));
    assert_responses_stream_fails(&l, "failed");

    mock.enqueue("/v1/messages", sse_cut_mid_chunk());
    let r = post(&gate.url("/v1/responses"), &h, &responses(false));
    r.assert_openai_error(502);
    still_serves(&mut gate, &mock, &key);
}

/// Injects chunked answers whose chunk-size line is not hex: in an SSE stream (on
/// `/v1/messages` and `/v1/chat/completions`) and in a JSON body. Proves bad framing is a
/// broken answer like any other: a final error event, an error object without `[DONE]`, a 502.
#[test]
fn an_invalid_chunk_size_line_is_a_broken_answer() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({}));
    let auth = format!("Bearer {key}");
    mock.enqueue("/v1/messages", sse_bad_chunk_size());
    let l = post_lines(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        MESSAGE_STREAM,
    );
    assert_stream_ends_in_error(&l, "chunk length");

    mock.enqueue("/v1/messages", sse_bad_chunk_size());
    let l = post_lines(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &auth)],
        &chat(true),
    );
    assert_chat_stream_fails(&l, "failed");

    mock.enqueue("/v1/messages", json_bad_chunk_size());
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
    r.assert_anthropic_error(502, "api_error");
    still_serves(&mut gate, &mock, &key);
}

// --- 3. Files unreadable at start ------------------------------------------------------------

/// Runs `claudegate serve` on `setup` with a 10 s deadline.
fn serve_briefly(setup: &Setup) -> crate::common::run::Run {
    crate::common::run::run_with_deadline(
        Command::new(BIN)
            .arg("--config")
            .arg(&setup.config_path)
            .arg("serve")
            .env_remove("CLAUDEGATE_CONFIG"),
        Duration::from_secs(10),
    )
}

/// Makes `token.json`, then `keys.json`, a directory (running as root, a mode-000 file would
/// still be readable), holding one file. Proves `serve` exits non-zero at once with an error
/// naming the file, and leaves the path exactly as it was.
#[test]
fn an_unreadable_token_or_keys_file_stops_serve_with_a_clear_error() {
    for name in ["token.json", "keys.json"] {
        let setup = Setup::new(json!({}));
        if name == "keys.json" {
            setup.store_login(crate::common::gate::oauth_login("a", "r", 3600));
        }
        let path = setup.data_dir().join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("inside"), "kept").unwrap();
        let run = serve_briefly(&setup);
        assert!(run.status.is_some(), "{name}: serve kept running: {run:?}");
        assert_eq!(
            run.status.and_then(|s| s.code()),
            Some(1),
            "{name}: {run:?}"
        );
        assert!(run.elapsed < Duration::from_secs(5), "{name}: {run:?}");
        assert!(
            run.stderr.contains(&path.display().to_string()),
            "{name}: {run:?}"
        );
        assert!(run.stderr.contains("cannot read"), "{name}: {run:?}");
        assert!(path.is_dir(), "{name}: replaced");
        let inside: Vec<_> = std::fs::read_dir(&path).unwrap().flatten().collect();
        assert_eq!(inside.len(), 1, "{name}");
        assert_eq!(
            std::fs::read_to_string(path.join("inside")).unwrap(),
            "kept"
        );
    }
}

// --- 4. Disk full while writing the token ----------------------------------------------------

/// A small tmpfs mounted on a directory; unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a 256 KiB tmpfs on `dir`; `None` (after the skip-or-fail rule) if not permitted.
    fn mount(dir: &Path, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                let why = format!(
                    "cannot mount a tmpfs to fill up (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                crate::common::run::skip_unless_required(test, &why);
                None
            }
            Err(e) => {
                crate::common::run::skip_unless_required(test, &format!("cannot run mount: {e}"));
                None
            }
        }
    }

    /// Fills the remaining space with `filler` (until the write fails with ENOSPC).
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        for _ in 0..1024 {
            if let Err(e) = f.write_all(&block).and_then(|_| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                return path;
            }
        }
        panic!("a 256 KiB tmpfs never filled up");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg("-l").arg(&self.0).status().ok();
    }
}

/// Temp files left next to the token (`.token.json.*.tmp`).
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// Fills the disk under the data dir, then runs `claudegate login --token`. Proves the login
/// fails with a clear "No space left on device" error and a non-zero exit, and the stored
/// login is byte-identical, with no temp file left behind.
#[test]
fn login_on_a_full_disk_fails_clearly_and_keeps_the_old_token() {
    let test = "login_on_a_full_disk_fails_clearly_and_keeps_the_old_token";
    let setup = Setup::new(json!({}));
    let Some(disk) = Tmpfs::mount(&setup.data_dir(), test) else {
        return;
    };
    setup.store_login(json!({"kind": "long_lived", "access_token": "sk-ant-oat01-long-lived-old-0123456789abcdef", "source": "token"}));
    let path = setup.data_dir().join("token.json");
    let before = std::fs::read(&path).unwrap();
    disk.fill();
    let out = setup.cli(&[
        "login",
        "--token",
        "sk-ant-oat01-long-lived-new-0123456789abcdef",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("token.json"), "{err}");
    assert!(
        !err.contains("new-0123456789"),
        "no secret in the error: {err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the old login is kept"
    );
    assert_eq!(temp_files(&setup.data_dir()), Vec::<String>::new());
}

/// Fills the disk under the data dir of a running server whose access token has expired, so
/// the refreshed token (with its rotated, single-use refresh token) cannot be saved. Proves the
/// request still succeeds with the new access token, the old file stays intact, the failure is
/// logged; and once space is freed the server saves the rotated token by itself within
/// seconds, and says so once.
#[test]
fn a_refreshed_token_that_cannot_be_saved_is_saved_once_space_returns() {
    let test = "a_refreshed_token_that_cannot_be_saved_is_saved_once_space_returns";
    let mock = MockUpstream::start();
    let setup = Setup::new(upstream_config(&mock.url()));
    // Declared before the tmpfs so it is dropped after it: the tmpfs must be unmounted before
    // the gate removes its temp dir (a mount point cannot be removed; the dir was left behind).
    let mut gate: Gate;
    let Some(disk) = Tmpfs::mount(&setup.data_dir(), test) else {
        return;
    };
    setup.store_login(oauth_login("sk-ant-oat01-old", "sk-ant-ort01-old", -5));
    let key = setup.add_key("app", &[]);
    // `serve` creates its device id on first start; on a full disk it could not.
    std::fs::write(setup.data_dir().join("device_id"), "d".repeat(64)).unwrap();
    let path = setup.data_dir().join("token.json");
    let before = std::fs::read(&path).unwrap();
    let filler = disk.fill();
    gate = Gate::spawn(setup);
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
    assert_eq!(r.status, 200, "{r:?}");
    let port = mock.addr().port();
    let (access, refresh) = (
        format!("sk-ant-oat01-mock-{port}-1"),
        format!("sk-ant-ort01-mock-{port}-1"),
    );
    assert_eq!(mock.tokens_issued(), 1, "one refresh");
    let used = mock.requests_to("/v1/messages");
    assert_eq!(
        used.last().and_then(|r| r.header("authorization")),
        Some(format!("Bearer {access}").as_str())
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the old file is intact"
    );
    assert!(gate.log().contains("could not save"), "{}", gate.log());
    assert_eq!(temp_files(&gate.setup.data_dir()), Vec::<String>::new());

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(12);
    while gate.setup.stored_login()["access_token"] != access.as_str() {
        assert!(
            Instant::now() < deadline,
            "the refreshed token never reached token.json after space was freed; log:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stored = gate.setup.stored_login();
    assert_eq!(stored["refresh_token"], refresh.as_str(), "{stored}");
    assert_eq!(stored["email"], "user@example.com", "{stored}");
    assert_eq!(
        gate.log()
            .matches("saved the refreshed Claude login")
            .count(),
        1,
        "{}",
        gate.log()
    );
    assert_eq!(mock.tokens_issued(), 1, "no second refresh was needed");
    still_serves(&mut gate, &mock, &key);
    // The tmpfs first: the gate removes its temp dir, which fails on a mount point.
    drop(disk);
    drop(gate);
}
