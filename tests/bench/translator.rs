//! Translator CPU: the OpenAI chat stream translation of a 10,000-event Anthropic transcript,
//! run in this process on one thread and timed with the thread's own CPU clock. The baseline
//! is the least any proxy that looks at events must do: parse each event's JSON and write it
//! back out.

use claudegate::anthropic::event::parse_event;
use claudegate::openai::chat::ChatStream;
use serde_json::{json, Value};

use crate::procfs::thread_cpu_ns;

/// A transcript shaped like a real long answer: a thinking block, a long text block and a tool
/// call streamed as JSON fragments, 10,000 events in all.
pub fn transcript() -> Vec<(String, String)> {
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_01Transcript","type":"message",
            "role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,
            "stop_sequence":null,"usage":{"input_tokens":2048,"cache_creation_input_tokens":0,
            "cache_read_input_tokens":1800,"output_tokens":1}}}),
    )];
    let words = [
        "The ",
        "proxy ",
        "adds ",
        "almost ",
        "nothing; ",
        "each ",
        "event ",
        "is ",
        "translated ",
        "as ",
        "it ",
        "arrives, ",
        "\"quoted\" ",
        "naïve ",
        "→ ",
        "done.\n",
    ];
    let block = |events: &mut Vec<(&str, Value)>, index: usize, start: Value, n: usize| {
        events.push((
            "content_block_start",
            json!({"type":"content_block_start","index":index,"content_block":start}),
        ));
        for i in 0..n {
            let delta = match start["type"].as_str() {
                Some("thinking") => json!({"type":"thinking_delta","thinking":words[i % 16]}),
                Some("tool_use") => {
                    json!({"type":"input_json_delta","partial_json":format!("{{\"k{i}\": ")})
                }
                _ => json!({"type":"text_delta","text":words[i % 16]}),
            };
            events.push((
                "content_block_delta",
                json!({"type":"content_block_delta","index":index,"delta":delta}),
            ));
        }
        if start["type"] == "thinking" {
            events.push((
                "content_block_delta",
                json!({"type":"content_block_delta","index":index,
                    "delta":{"type":"signature_delta","signature":"EqQBCkYIBRgCKkCsig"}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type":"content_block_stop","index":index}),
        ));
    };
    block(
        &mut events,
        0,
        json!({"type":"thinking","thinking":""}),
        1500,
    );
    block(&mut events, 1, json!({"type":"text","text":""}), 7000);
    block(
        &mut events,
        2,
        json!({"type":"tool_use","id":"toolu_01Bench","name":"lookup","input":{}}),
        10_000 - 7000 - 1500 - 10,
    );
    events.push((
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
            "usage":{"output_tokens":9989}}),
    ));
    events.push(("message_stop", json!({"type":"message_stop"})));
    events
        .into_iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect()
}

/// Events per CPU-second for the chat translation and for the parse-and-reserialise baseline.
pub struct Figures {
    pub events: usize,
    pub translate_per_sec: f64,
    pub baseline_per_sec: f64,
}

/// Runs each side for at least `budget_ns` of CPU, alternating, and keeps the best rate of
/// each (the run least disturbed by the rest of the machine).
pub fn measure(budget_ns: u64) -> Figures {
    let events = transcript();
    assert_eq!(events.len(), 10_000);
    let mut out = Vec::with_capacity(1 << 16);
    let mut best = (0f64, 0f64);
    for _ in 0..5 {
        best.0 = best.0.max(rate(&events, budget_ns / 5, || {
            let mut chat = ChatStream::new("chatcmpl-bench".into(), 0, "sonnet".into(), true);
            for (name, data) in &events {
                let ev = parse_event(name, data).expect("transcript event parses");
                for chunk in chat.on_event(&ev) {
                    write_data_line(&mut out, &chunk);
                }
            }
            for chunk in chat.finish() {
                write_data_line(&mut out, &chunk);
            }
        }));
        best.1 = best.1.max(rate(&events, budget_ns / 5, || {
            for (name, data) in &events {
                let ev = parse_event(name, data).expect("transcript event parses");
                write_data_line(&mut out, &ev.data);
            }
        }));
    }
    Figures {
        events: events.len(),
        translate_per_sec: best.0,
        baseline_per_sec: best.1,
    }
}

fn write_data_line(out: &mut Vec<u8>, chunk: &Value) {
    out.clear();
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, chunk).expect("a Value always serialises");
    out.extend_from_slice(b"\n\n");
    std::hint::black_box(&out);
}

fn rate(events: &[(String, String)], budget_ns: u64, mut pass: impl FnMut()) -> f64 {
    let start = thread_cpu_ns();
    let mut passes = 0u64;
    while thread_cpu_ns() - start < budget_ns || passes == 0 {
        pass();
        passes += 1;
    }
    let cpu_s = (thread_cpu_ns() - start) as f64 / 1e9;
    (passes * events.len() as u64) as f64 / cpu_s
}
