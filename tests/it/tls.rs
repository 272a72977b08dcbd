//! The TLS path to the upstream, end to end: claudegate talks HTTPS (rustls) to a local server
//! whose certificate comes from a throwaway CA. With `upstream.ca_file` naming that CA the
//! request goes through; with the built-in roots it is refused as an unknown issuer, in the
//! caller's protocol. The certificates are made with the `openssl` command and the server is
//! Python's `ssl` + `http.server`, both standard on the machines that run `make test`.

use crate::common::gate::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A CA certificate and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-subj", "/CN=claudegate test CA", "-days", "1"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1"],
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]);
}

/// An HTTPS server answering every POST with one Anthropic message. Returns it and its port.
fn https_upstream(dir: &Path) -> (Child, u16) {
    let script = r#"
import http.server, ssl, sys
BODY = b'{"id":"msg_tls","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"over tls"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}'
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the HTTPS server's port");
    (child, port)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn https_upstream_with_ca_file_and_unknown_issuer_refused() {
    let tmp = TempDir::new();
    let dir = tmp.0.clone();
    make_certificates(&dir);
    let (server, port) = https_upstream(&dir);
    let _server = Killed(server);
    let url = format!("https://127.0.0.1:{port}");
    let body = r#"{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

    // Our CA named in upstream.ca_file: the answer comes through TLS.
    let ca = dir.join("ca.pem");
    let (gate, key) = logged_in(
        &url,
        json!({"upstream": {"ca_file": ca.to_str().unwrap(), "max_retries": 0}}),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], body);
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    assert_eq!(r.json()["content"][0]["text"], "over tls");
    drop(gate);

    // The built-in roots do not know our CA: refused, as an Anthropic-shaped 502.
    let (gate, key) = logged_in(&url, json!({"upstream": {"max_retries": 0}}));
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], body);
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.json()["type"], "error", "{r:?}");
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    assert!(
        message.contains("certificate") || message.contains("issuer"),
        "{message}"
    );
}
