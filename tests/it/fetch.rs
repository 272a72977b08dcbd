//! `POST /v1/fetch` against the real (debug) binary: the address guard on every hop, DNS
//! pinning, size cap, stripping, content types, timeouts, the fetch bucket and bad input.
//!
//! The pages come from a small std-only HTTP server on `127.0.0.2:PORT`. The guard rightly
//! refuses loopback, so the tests use the debug-build seam described in `src/fetch.rs`:
//! `CLAUDEGATE_TEST_FETCH_DNS` gives fake names fake answers (which the real guard still
//! judges) and `CLAUDEGATE_TEST_FETCH_ROUTE` sends connections the guard has *approved* for the
//! public address 1.2.3.4 (or 2606:4700::1) to 127.0.0.2, same port. A second server on
//! `127.0.0.1:PORT` plays the internal service an attacker wants: every test that aims at it
//! (directly, in numeric disguise, through a redirect or by DNS rebinding) must be refused, and
//! that server must never see a single connection.

use crate::common::gate::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test servers, started once per test binary.
struct World {
    /// The port both servers listen on (127.0.0.2 = "public" pages, 127.0.0.1 = "internal").
    port: u16,
    /// A port nothing listens on, on 127.0.0.2.
    closed_port: u16,
    /// Connections the internal server accepted; must stay 0.
    internal_hits: AtomicUsize,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let (public, internal, port) = bind_pair();
        let closed_port = {
            let l = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
            l.local_addr().unwrap().port()
        };
        std::thread::spawn(move || {
            for s in public.incoming().flatten() {
                std::thread::spawn(move || serve_page(s, port));
            }
        });
        std::thread::spawn(move || {
            for mut s in internal.incoming().flatten() {
                world().internal_hits.fetch_add(1, Ordering::SeqCst);
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\nSECRET")
                    .ok();
            }
        });
        // Set before any claudegate is spawned (every test calls world() first), inherited by
        // each child. This runs once, under the OnceLock, while other tests wait for it.
        std::env::set_var(
            "CLAUDEGATE_TEST_FETCH_DNS",
            "site.test=1.2.3.4;\
             v6.test=2606:4700::1;\
             rebind.test=1.2.3.4|127.0.0.1;\
             private.test=10.0.0.1;\
             mixed.test=1.2.3.4,192.168.1.10;\
             mapped.test=::ffff:127.0.0.1;\
             meta.test=169.254.169.254",
        );
        std::env::set_var(
            "CLAUDEGATE_TEST_FETCH_ROUTE",
            "1.2.3.4=127.0.0.2,2606:4700::1=127.0.0.2",
        );
        World {
            port,
            closed_port,
            internal_hits: AtomicUsize::new(0),
        }
    })
}

/// Two listeners on the same port: 127.0.0.2 (public pages) and 127.0.0.1 (internal).
fn bind_pair() -> (TcpListener, TcpListener, u16) {
    for _ in 0..100 {
        let public = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2 (Linux loopback)");
        let port = public.local_addr().unwrap().port();
        if let Ok(internal) = TcpListener::bind(("127.0.0.1", port)) {
            return (public, internal, port);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

const PAGE: &str = r#"<!DOCTYPE html><html><head><title>T</title>
<script>var s = "SCRIPT-BODY";</script>
<SCRIPT type="text/javascript">alert("UPPER-SCRIPT")</SCRIPT>
<script type="application/ld+json">{"@type":"Product","name":"LD-KEEP"}</script>
<style>.x{color:red} /* STYLE-BODY */</style>
<noscript>NOSCRIPT-BODY</noscript>
</head><body><!-- COMMENT-BODY --><h1>Visible heading</h1>
<svg viewBox="0 0 1 1"><path d="SVG-BODY"/></svg><p>Visible paragraph</p></body></html>"#;

/// Reads a request head; returns (path, Host header).
fn read_head(s: &TcpStream) -> Option<(String, String)> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut host = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h == "\r\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("host") {
                host = value.trim().to_string();
            }
        }
    }
    Some((path, host))
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok();
    s.write_all(body).ok();
}

fn html() -> (&'static str, String) {
    ("Content-Type", "text/html; charset=utf-8".into())
}

fn redirect(s: &mut TcpStream, to: String) {
    respond(s, "302 Found", &[("Location", to)], b"");
}

/// The "public" site.
fn serve_page(mut s: TcpStream, port: u16) {
    let Some((path, host)) = read_head(&s) else {
        return;
    };
    match path.as_str() {
        "/page" => respond(&mut s, "200 OK", &[html()], PAGE.as_bytes()),
        "/echo-host" => {
            let body = format!("<p>host={host}</p>");
            respond(&mut s, "200 OK", &[html()], body.as_bytes())
        }
        "/plain" => respond(
            &mut s,
            "200 OK",
            &[("Content-Type", "text/plain".into())],
            b"<script>PLAIN-KEEP</script>",
        ),
        "/image" => respond(
            &mut s,
            "200 OK",
            &[("Content-Type", "image/png".into())],
            b"\x89PNG\r\n\x1a\n\0\0\0",
        ),
        "/missing" => respond(&mut s, "404 Not Found", &[html()], b"<p>gone</p>"),
        "/big" => respond(&mut s, "200 OK", &[html()], &vec![b'a'; 3_000_000]),
        "/slow-body" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000\r\n\r\n<p>start")
                .ok();
            std::thread::sleep(Duration::from_secs(8));
        }
        "/hang" => std::thread::sleep(Duration::from_secs(8)),
        "/to-secret" => redirect(&mut s, format!("http://127.0.0.1:{port}/secret")),
        "/to-secret-decimal" => redirect(&mut s, format!("http://2130706433:{port}/secret")),
        "/to-secret-v6" => redirect(&mut s, format!("http://[::ffff:127.0.0.1]:{port}/secret")),
        "/to-private-name" => redirect(&mut s, format!("http://private.test:{port}/secret")),
        "/to-metadata" => redirect(&mut s, "http://169.254.169.254/latest/meta-data/".into()),
        "/to-relative" => redirect(&mut s, "sub/../page".into()),
        "/to-v6" => redirect(&mut s, format!("http://v6.test:{port}/echo-host")),
        "/to-ftp" => redirect(&mut s, "ftp://example.com/file".into()),
        "/loop" => redirect(&mut s, "/loop".into()),
        p if p.starts_with("/hop/") => {
            let n: u32 = p[5..].parse().unwrap_or(0);
            if n == 0 {
                respond(&mut s, "200 OK", &[html()], b"<p>landed</p>")
            } else {
                redirect(&mut s, format!("/hop/{}", n - 1))
            }
        }
        _ => respond(&mut s, "404 Not Found", &[html()], b"?"),
    }
}

fn start(fetch: Value) -> (Gate, String) {
    world();
    Gate::start_with_key(json!({ "fetch": fetch }))
}

fn fetch(g: &Gate, key: &str, body: Value) -> Resp {
    fetch_raw(g, key, &body.to_string())
}

fn fetch_raw(g: &Gate, key: &str, body: &str) -> Resp {
    let auth = format!("Bearer {key}");
    post(&g.url("/v1/fetch"), &[("authorization", &auth)], body)
}

fn url(host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", world().port)
}

/// Asserts `{ok: false, error}` with `status`; returns the error text.
fn refused(r: &Resp, status: u16) -> String {
    assert_eq!(r.status, status, "{r:?}");
    let v = r.json();
    assert_eq!(v["ok"], false, "{v}");
    v["error"].as_str().expect("error text").to_string()
}

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    v
}

fn assert_internal_untouched() {
    assert_eq!(
        world().internal_hits.load(Ordering::SeqCst),
        0,
        "the internal server was reached"
    );
}

#[test]
fn fetches_a_page_by_name_keeping_host_header() {
    let (g, key) = start(json!({}));
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("site.test", "/echo-host")}),
    ));
    let port = world().port;
    assert_eq!(v["status"], 200);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["final_url"], url("site.test", "/echo-host"));
    assert_eq!(v["content_type"], "text/html; charset=utf-8");
    // The connection went to the pinned address, but the request still names the host.
    assert_eq!(v["html"], format!("<p>host=site.test:{port}</p>"));
    // A remote error status is reported, not turned into a failure.
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("site.test", "/missing")}),
    ));
    assert_eq!(v["status"], 404);
    assert_eq!(v["html"], "<p>gone</p>");
    assert_internal_untouched();
}

#[test]
fn ipv6_literals_and_ports_work() {
    let (g, key) = start(json!({}));
    let port = world().port;
    let target = format!("http://[2606:4700::1]:{port}/echo-host");
    let v = ok(&fetch(&g, &key, json!({ "url": target })));
    assert_eq!(v["html"], format!("<p>host=[2606:4700::1]:{port}</p>"));
    assert_eq!(v["final_url"], target);
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("v6.test", "/echo-host")}),
    ));
    assert_eq!(v["html"], format!("<p>host=v6.test:{port}</p>"));
}

#[test]
fn every_blocked_range_is_refused_without_connecting() {
    // More fetches than one minute's bucket: a refused fetch spends its token too (the token
    // is taken before the body is read).
    let (g, key) = start(json!({"rpm": 0}));
    let p = world().port;
    let mut urls: Vec<String> = [
        // loopback in every disguise (the internal server listens on 127.0.0.1:p)
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "127.0.1",
        "017700000001",
        "127.000.000.001",
        "127.0.0.1.",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "localhost",
        // every other non-public range
        "0.0.0.0",
        "0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254",
        "0xa9.0xfe.0xa9.0xfe",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.168.0.1",
        "3232235777",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456:789a::1]",
        "[fec0::1]",
        "[ff02::1]",
        "[2001:db8::1]",
        "[::ffff:10.0.0.1]",
        "[::ffff:a9fe:a9fe]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:c0a8:101::1]",
        "[2001::1]",
        // names whose DNS answers are (partly) non-public
        "private.test",
        "mixed.test",
        "mapped.test",
        "meta.test",
    ]
    .iter()
    .map(|h| format!("http://{h}:{p}/secret"))
    .collect();
    urls.push("http://169.254.169.254/latest/meta-data/".into());
    urls.push("https://[::1]/".into());
    for u in &urls {
        let started = Instant::now();
        let r = fetch(&g, &key, json!({ "url": u }));
        let err = refused(&r, 400);
        assert!(err.contains("blocked address"), "{u}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{u} was slow");
    }
    // A name is refused without saying what it resolved to: the answer would tell a caller
    // which internal address (or which private range) a name has, a DNS oracle.
    for name in [
        "private.test",
        "mixed.test",
        "mapped.test",
        "meta.test",
        "localhost",
    ] {
        let r = fetch(
            &g,
            &key,
            json!({ "url": format!("http://{name}:{p}/secret") }),
        );
        let err = refused(&r, 400);
        assert!(
            err.contains(&format!("{name} resolves to a non-public address")),
            "{name}: {err}"
        );
        assert_names_no_address(&err);
    }
    assert_internal_untouched();
}

/// The refusal of a name holds no address and no address range: no digit before the fixed
/// tail ("; /v1/fetch only reaches …"; the names used have none), and no range's description.
fn assert_names_no_address(err: &str) {
    let told = err.split("; /v1/fetch").next().unwrap_or(err);
    assert!(!told.chars().any(|c| c.is_ascii_digit()), "{err}");
    for leak in [
        "::",
        "private address",
        "loopback",
        "link-local",
        "IPv4-mapped",
    ] {
        assert!(!err.contains(leak), "{leak:?} in {err}");
    }
}

#[test]
fn redirects_are_checked_on_every_hop() {
    let (g, key) = start(json!({"max_redirects": 2}));
    for path in [
        "/to-secret",
        "/to-secret-decimal",
        "/to-secret-v6",
        "/to-private-name",
        "/to-metadata",
    ] {
        let err = refused(
            &fetch(&g, &key, json!({"url": url("site.test", path)})),
            400,
        );
        assert!(err.contains("redirect refused"), "{path}: {err}");
        if path == "/to-private-name" {
            assert!(
                err.contains("private.test resolves to a non-public address"),
                "{err}"
            );
            assert_names_no_address(&err);
        }
    }
    assert_internal_untouched();

    // Relative Location, resolved against the current URL (dot segments removed).
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("site.test", "/to-relative")}),
    ));
    assert_eq!(v["final_url"], url("site.test", "/page"));
    // A hop to another (checked) name keeps that name in the Host header.
    let v = ok(&fetch(&g, &key, json!({"url": url("site.test", "/to-v6")})));
    assert_eq!(v["html"], format!("<p>host=v6.test:{}</p>", world().port));
    // fetch.max_redirects bounds the chain.
    let v = ok(&fetch(&g, &key, json!({"url": url("site.test", "/hop/2")})));
    assert_eq!(v["html"], "<p>landed</p>");
    assert_eq!(v["final_url"], url("site.test", "/hop/0"));
    let err = refused(
        &fetch(&g, &key, json!({"url": url("site.test", "/hop/3")})),
        502,
    );
    assert!(err.contains("redirects"), "{err}");
    refused(
        &fetch(&g, &key, json!({"url": url("site.test", "/loop")})),
        502,
    );
    // A redirect to something that is not http(s) is the remote's bad answer.
    refused(
        &fetch(&g, &key, json!({"url": url("site.test", "/to-ftp")})),
        502,
    );
}

#[test]
fn dns_answer_is_pinned_for_the_connection() {
    // rebind.test answers 1.2.3.4 first and 127.0.0.1 on any later lookup. If the connection
    // resolved the name again after the check, it would reach the internal server.
    let (g, key) = start(json!({}));
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("rebind.test", "/echo-host")}),
    ));
    assert_eq!(
        v["html"],
        format!("<p>host=rebind.test:{}</p>", world().port)
    );
    assert_internal_untouched();
    let lookups = g.log().matches("DNS lookup #").count();
    assert_eq!(lookups, 1, "exactly one resolution per hop:\n{}", g.log());
    // The next fetch resolves afresh, gets the loopback answer, and the guard refuses it.
    let err = refused(
        &fetch(&g, &key, json!({"url": url("rebind.test", "/echo-host")})),
        400,
    );
    assert!(
        err.contains("rebind.test resolves to a non-public address"),
        "{err}"
    );
    assert_names_no_address(&err);
    assert_internal_untouched();
}

#[test]
fn size_cap_sets_truncated() {
    let (g, key) = start(json!({"max_bytes": 5000}));
    let big = url("site.test", "/big");
    let v = ok(&fetch(&g, &key, json!({ "url": big })));
    assert_eq!(v["truncated"], true);
    assert_eq!(v["html"].as_str().unwrap().len(), 5000);
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": big, "max_bytes": 1000, "strip": false}),
    ));
    assert_eq!(v["truncated"], true);
    assert_eq!(v["html"].as_str().unwrap().len(), 1000);
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": big, "max_bytes": 2_000_000}),
    ));
    assert_eq!(v["html"].as_str().unwrap().len(), 2_000_000);
    for bad in [json!(0), json!(2_000_001), json!(-1), json!("10")] {
        let err = refused(&fetch(&g, &key, json!({"url": big, "max_bytes": bad})), 400);
        assert!(err.contains("max_bytes"), "{err}");
    }
    // A body of exactly max_bytes is complete, not truncated.
    let exact = format!("<p>host=site.test:{}</p>", world().port).len();
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("site.test", "/echo-host"), "max_bytes": exact}),
    ));
    assert_eq!(v["truncated"], false, "{v}");
    assert_eq!(v["html"].as_str().unwrap().len(), exact);
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("site.test", "/echo-host"), "max_bytes": exact - 1}),
    ));
    assert_eq!(v["truncated"], true, "{v}");
}

#[test]
fn strip_keeps_json_ld_and_drops_the_rest() {
    let (g, key) = start(json!({}));
    let v = ok(&fetch(&g, &key, json!({"url": url("site.test", "/page")})));
    let html = v["html"].as_str().unwrap();
    assert!(
        html.contains(
            r#"<script type="application/ld+json">{"@type":"Product","name":"LD-KEEP"}</script>"#
        ),
        "{html}"
    );
    for gone in [
        "SCRIPT-BODY",
        "UPPER-SCRIPT",
        "STYLE-BODY",
        "NOSCRIPT-BODY",
        "COMMENT-BODY",
        "SVG-BODY",
        "<svg",
        "<style",
    ] {
        assert!(!html.contains(gone), "{gone} survived: {html}");
    }
    assert!(html.contains("<h1>Visible heading</h1>"), "{html}");
    assert!(html.contains("<p>Visible paragraph</p>"), "{html}");
    let v = ok(&fetch(
        &g,
        &key,
        json!({"url": url("site.test", "/page"), "strip": false}),
    ));
    assert_eq!(v["html"], PAGE);
}

#[test]
fn text_is_returned_as_is_and_binary_refused() {
    let (g, key) = start(json!({}));
    let v = ok(&fetch(&g, &key, json!({"url": url("site.test", "/plain")})));
    assert_eq!(
        v["html"], "<script>PLAIN-KEEP</script>",
        "non-HTML is never stripped"
    );
    assert_eq!(v["content_type"], "text/plain");
    let err = refused(
        &fetch(&g, &key, json!({"url": url("site.test", "/image")})),
        415,
    );
    assert!(err.contains("image/png"), "{err}");
}

#[test]
fn slow_remotes_time_out_with_504() {
    let (g, key) = start(json!({"timeout_ms": 1000}));
    for path in ["/slow-body", "/hang"] {
        let started = Instant::now();
        let err = refused(
            &fetch(&g, &key, json!({"url": url("site.test", path)})),
            504,
        );
        assert!(err.contains("timeout"), "{err}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "{path} took {took:?}");
    }
}

#[test]
fn unreachable_remote_is_502() {
    let (g, key) = start(json!({}));
    let target = format!("http://site.test:{}/", world().closed_port);
    let err = refused(&fetch(&g, &key, json!({ "url": target })), 502);
    assert!(err.contains("site.test"), "{err}");
    refused(
        &fetch(&g, &key, json!({"url": "http://does-not-exist.invalid/"})),
        502,
    );
    // https goes through the same pinned route; the test server speaks plain HTTP, so the TLS
    // handshake (with SNI site.test) fails: a 502, not a connection to anything else.
    let err = refused(
        &fetch(
            &g,
            &key,
            json!({"url": url("site.test", "/echo-host").replace("http:", "https:")}),
        ),
        502,
    );
    assert!(err.contains("site.test"), "{err}");
    assert_internal_untouched();
}

#[test]
fn fetch_bucket_is_per_key_and_apart_from_model_limits() {
    world();
    // The model limit allows 1 request a minute; fetches must not count against it.
    let setup = Setup::new(json!({"fetch": {"rpm": 3}, "limits": {"per_key_rpm": 1}}));
    let a = setup.add_key("a", &[]);
    let b = setup.add_key("b", &[]);
    let g = Gate::spawn(setup);
    let page = json!({"url": url("site.test", "/echo-host")});
    for _ in 0..3 {
        ok(&fetch(&g, &a, page.clone()));
    }
    let r = fetch(&g, &a, page.clone());
    let err = refused(&r, 429);
    assert!(err.contains("fetch.rpm"), "{err}");
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    ok(&fetch(&g, &b, page));
}

#[test]
fn disabled_fetch_says_so() {
    let (g, key) = start(json!({"enabled": false}));
    let err = refused(
        &fetch(&g, &key, json!({"url": url("site.test", "/echo-host")})),
        404,
    );
    assert!(err.contains("disabled"), "{err}");
}

#[test]
fn bad_requests_get_400() {
    let (g, key) = start(json!({}));
    for body in [
        "not json",
        "{}",
        "[]",
        r#"{"url": 5}"#,
        r#"{"url": "http://site.test/", "strip": "yes"}"#,
        r#"{"url": "http://site.test/", "unknown": 1}"#,
        r#"{"url": "ftp://site.test/"}"#,
        r#"{"url": "file:///etc/passwd"}"#,
        r#"{"url": "site.test/page"}"#,
        r#"{"url": "http://user:pw@site.test/"}"#,
        r#"{"url": "http://site.test:99999/"}"#,
        r#"{"url": "http://[fe80::1%25eth0]/"}"#,
        r#"{"url": "http://256.1.1.1/"}"#,
    ] {
        refused(&fetch_raw(&g, &key, body), 400);
    }
    assert_eq!(
        fetch_raw(&g, "cgk_wrong", r#"{"url": "http://site.test/"}"#).status,
        401
    );
}

#[test]
fn oversized_request_body_is_413() {
    world();
    let (g, key) = Gate::start_with_key(json!({"max_body_bytes": 200}));
    let body = json!({"url": url("site.test", "/echo-host"), "pad": "x".repeat(500)});
    refused(&fetch(&g, &key, body), 413);
}
