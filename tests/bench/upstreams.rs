//! The two upstreams the benchmark measures against, both on loopback:
//! - nginx answering every request with one fixed Anthropic message (throughput and latency:
//!   a static server that costs almost nothing per request, so it is never the bottleneck);
//! - a small in-process SSE server that emits Anthropic stream events on a timetable, each
//!   carrying its emission time, so a client can measure per-event delay.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fixed non-streaming answer (a real Messages API response shape).
pub const MESSAGE: &str = r#"{"id":"msg_01BenchFixedAnswer","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10}}"#;

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx (one worker process, no access log) in `dir` on a free port.
    pub fn start(dir: &Path) -> Nginx {
        let port = free_port();
        let conf = dir.join("nginx.conf");
        let text = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
             error_log {dir}/nginx-error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 10000000;\n\
             client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n\
             scgi_temp_path {dir}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
             default_type application/json;\n      return 200 '{MESSAGE}';\n    }}\n  }}\n}}\n",
            dir = dir.display()
        );
        std::fs::write(&conf, text).expect("write nginx.conf");
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx (install it: apt-get install nginx-light)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_listening(addr);
        Nginx { child, addr }
    }

    /// CPU time of nginx's master and worker processes.
    pub fn cpu_time(&self) -> Duration {
        let master = self.child.id();
        let mut total = crate::procfs::cpu_time(master);
        for worker in crate::procfs::children(master) {
            total += crate::procfs::cpu_time(worker);
        }
        total
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: a killed master would leave its worker holding the port.
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .ok();
        self.child.wait().ok();
    }
}

fn nginx_binary() -> String {
    std::env::var("NGINX").unwrap_or_else(|_| {
        for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
            if Path::new(p).exists() {
                return p.to_string();
            }
        }
        "nginx".to_string()
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never started listening");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The timed SSE upstream. What a request gets is chosen by its `max_tokens` (which every front
/// door passes through unchanged): `max_tokens = E + 1000 * I` streams E text deltas I ms apart
/// (I = 0 means 20 ms); 999 answers 529 overloaded. A request without `"stream": true` gets the
/// fixed message as JSON. Each delta's text is `t=<µs since epoch>;`, stamped just before the
/// write.
pub struct SseMock {
    pub addr: SocketAddr,
}

impl SseMock {
    pub fn start(epoch: Instant) -> SseMock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    serve_connection(stream, epoch).ok();
                });
            }
        });
        SseMock { addr }
    }
}

/// Reads one request's line and headers; its `Content-Length` (0 without one), or `None` when
/// the client closed the connection first.
fn read_request_head(reader: &mut impl BufRead) -> io::Result<Option<usize>> {
    let mut length = 0usize;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(Some(length));
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
}

fn serve_connection(stream: TcpStream, epoch: Instant) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let Some(length) = read_request_head(&mut reader)? else {
            return Ok(());
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let max_tokens = request["max_tokens"].as_u64().unwrap_or(0);
        if max_tokens == 999 {
            let err =
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
            write!(
                out,
                "HTTP/1.1 529 Site Overloaded\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{err}",
                err.len()
            )?;
            continue;
        }
        if request["stream"] != true {
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{MESSAGE}",
                MESSAGE.len()
            )?;
            continue;
        }
        let events = max_tokens % 1000;
        let interval = match max_tokens / 1000 {
            0 => 20,
            ms => ms,
        };
        stream_events(&mut out, epoch, events, Duration::from_millis(interval))?;
    }
}

fn chunk(out: &mut TcpStream, event: &str, data: &str) -> io::Result<()> {
    let payload = format!("event: {event}\ndata: {data}\n\n");
    out.write_all(format!("{:x}\r\n{payload}\r\n", payload.len()).as_bytes())
}

fn stream_events(
    out: &mut TcpStream,
    epoch: Instant,
    events: u64,
    interval: Duration,
) -> io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
          cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
    )?;
    chunk(
        out,
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01BenchStream","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    )?;
    chunk(
        out,
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    )?;
    let start = Instant::now();
    for i in 1..=events {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let stamp = epoch.elapsed().as_micros();
        chunk(
            out,
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"t={stamp};"}}}}"#
            ),
        )?;
    }
    chunk(
        out,
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    )?;
    chunk(
        out,
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{events}}}}}"#
        ),
    )?;
    chunk(out, "message_stop", r#"{"type":"message_stop"}"#)?;
    out.write_all(b"0\r\n\r\n")
}

/// The large-body upstream: reads each request's body whole (by its `Content-Length`) and
/// answers at once with a short Anthropic stream, whatever the request says. It does no more
/// than an upstream must (no JSON parsing), so the time a large request takes is the client's
/// upload plus what sits between the client and here.
pub struct Sink {
    pub addr: SocketAddr,
}

/// The short stream the sink answers with: one text delta, then the end.
const SINK_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01Sink\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1200000,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Done.\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    sink_connection(stream).ok();
                });
            }
        });
        Sink { addr }
    }
}

fn sink_connection(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream.try_clone()?);
    let mut out = stream;
    let mut body = Vec::new();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
         cache-control: no-cache\r\ncontent-length: {}\r\n\r\n{SINK_STREAM}",
        SINK_STREAM.len()
    );
    loop {
        let Some(length) = read_request_head(&mut reader)? else {
            return Ok(());
        };
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        out.write_all(answer.as_bytes())?;
    }
}
