//! `claudegate mcp-bridge --socket PATH` (hidden): the stdio MCP server the CLI backend names in
//! the CLI's `--mcp-config` when a request declares tools. It is a plain relay: the CLI's
//! JSON-RPC lines from stdin go to the call's private Unix socket, and the server's answers
//! come back on stdout. All MCP logic (the handshake, the tool list, the calls) lives in the
//! server, in `backends::cli::bridge`, where the call's tools are known; this process holds
//! no state, reads no configuration and runs nothing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Relays `input` to the socket at `socket` and the socket's bytes to `output` until either
/// side closes. Returns an error only when the socket cannot be reached.
pub fn relay(
    socket: &Path,
    mut input: impl Read + Send + 'static,
    mut output: impl Write,
) -> Result<(), String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the bridge socket {}: {e}", socket.display()))?;
    let mut to_server = stream.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        std::io::copy(&mut input, &mut to_server).ok();
        // The CLI closed our stdin: tell the server, which ends the call's bridge.
        to_server.shutdown(std::net::Shutdown::Write).ok();
    });
    let mut from_server = stream;
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from_server.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => {
                if output
                    .write_all(&buf[..n])
                    .and_then(|_| output.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// The subcommand: stdin and stdout relayed to `socket`.
pub fn run(socket: &Path) -> Result<(), String> {
    relay(socket, std::io::stdin(), std::io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    #[test]
    fn lines_go_both_ways_until_the_server_closes() {
        let dir = std::env::temp_dir().join(format!("cg-relay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut w = s;
            w.write_all(format!("echo:{line}").as_bytes()).unwrap();
        });
        let mut out = Vec::new();
        relay(&path, &b"{\"id\":1}\n"[..], &mut out).unwrap();
        server.join().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "echo:{\"id\":1}\n");
        assert!(relay(&dir.join("none"), &b""[..], Vec::new()).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
