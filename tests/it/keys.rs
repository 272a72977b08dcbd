//! API keys against the real binary: `keys add` and `keys revoke` run as concurrent processes
//! (no update lost, no revocation undone), a revocation refused by the very next request, and
//! the two scopes — app keys and `--admin` keys — on the admin routes, old key files included.

use crate::common::gate::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Starts `claudegate --config <setup> ARGS…` without waiting for it.
fn spawn_cli(setup: &Setup, args: &[&str]) -> Child {
    setup
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run claudegate")
}

/// Waits for `child` (at most until `deadline`, then kills it and fails); its exit success,
/// stdout and stderr. The outputs are a line or two, far below a pipe's buffer.
fn finish(mut child: Child, deadline: Instant) -> (bool, String, String) {
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("a keys command still ran after its deadline (a lock never released?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).ok();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    (status.success(), out, err)
}

/// The labels stored in the key file, read directly.
fn stored_labels(setup: &Setup) -> Vec<String> {
    let text = std::fs::read_to_string(setup.data_dir().join("keys.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    file["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["label"].as_str().unwrap().to_string())
        .collect()
}

fn models(gate: &Gate, key: &str) -> u16 {
    get(&gate.url("/v1/models"), &[("x-api-key", key)]).status
}

#[test]
fn twenty_concurrent_adds_are_all_stored_and_every_secret_works() {
    let setup = Setup::new(json!({}));
    let children: Vec<(String, Child)> = (0..20)
        .map(|i| {
            let label = format!("app-{i}");
            let child = spawn_cli(&setup, &["keys", "add", &label]);
            (label, child)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut secrets = Vec::new();
    for (label, child) in children {
        let (ok, out, err) = finish(child, deadline);
        assert!(ok, "keys add {label} failed: {err}");
        let secret = out.trim().to_string();
        assert!(secret.starts_with("cgk_") && secret.len() == 68, "{out:?}");
        secrets.push((label, secret));
    }
    let mut stored = stored_labels(&setup);
    stored.sort();
    let mut want: Vec<String> = secrets.iter().map(|(l, _)| l.clone()).collect();
    want.sort();
    assert_eq!(stored, want, "every concurrent add is stored");

    let gate = Gate::spawn(setup);
    for (label, secret) in &secrets {
        assert_eq!(models(&gate, secret), 200, "the secret printed for {label}");
    }
}

#[test]
fn a_revoke_racing_adds_is_never_undone() {
    let setup = Setup::new(json!({}));
    for i in 0..20 {
        setup.add_key(&format!("old-{i}"), &[]);
    }
    // Each revocation races an add: both rewrite the whole file.
    let mut children = Vec::new();
    for i in 0..20 {
        let old = format!("old-{i}");
        let new = format!("new-{i}");
        children.push((
            true,
            old.clone(),
            spawn_cli(&setup, &["keys", "revoke", &old]),
        ));
        children.push((
            false,
            new.clone(),
            spawn_cli(&setup, &["keys", "add", &new]),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (revoke, label, child) in children {
        let (ok, out, err) = finish(child, deadline);
        assert!(ok, "{label}: {err}");
        if revoke {
            assert!(out.contains("revoked"), "{label}: {out}");
        }
    }
    let stored = stored_labels(&setup);
    let undone: Vec<&String> = stored.iter().filter(|l| l.starts_with("old-")).collect();
    assert!(undone.is_empty(), "revocations undone: {undone:?}");
    for i in 0..20 {
        assert!(
            stored.contains(&format!("new-{i}")),
            "new-{i} lost: {stored:?}"
        );
    }
}

#[test]
fn a_revoked_key_is_refused_by_the_very_next_request() {
    let setup = Setup::new(json!({}));
    let keep = setup.add_key("keep", &[]);
    let keys: Vec<(String, String)> = (0..5)
        .map(|i| {
            let label = format!("gone-{i}");
            let key = setup.add_key(&label, &[]);
            (label, key)
        })
        .collect();
    let gate = Gate::spawn(setup);
    for (label, key) in &keys {
        assert_eq!(models(&gate, key), 200, "{label} before its revocation");
        let out = gate.setup.cli(&["keys", "revoke", label]);
        assert!(out.status.success());
        // No sleep: `keys revoke` has returned, so the key is gone.
        assert_eq!(
            models(&gate, key),
            401,
            "{label} right after its revocation"
        );
        assert_eq!(models(&gate, &keep), 200, "another key is untouched");
    }
}

/// The admin routes with `key`, in the OpenAI and the Anthropic shape: each answer.
fn admin_routes(gate: &Gate, key: &str) -> Vec<(String, Resp)> {
    let mut answers = Vec::new();
    for path in ["/admin/accounts", "/metrics"] {
        answers.push((
            format!("{path} (OpenAI)"),
            get(&gate.url(path), &[("x-api-key", key)]),
        ));
        answers.push((
            format!("{path} (Anthropic)"),
            get(
                &gate.url(path),
                &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
            ),
        ));
    }
    answers
}

/// What an app key gets on an admin route: 403 in the caller's protocol, naming the scope it
/// needs and how to mint a key that has it.
fn assert_refused_for_scope(what: &str, r: &Resp) {
    let message = if what.contains("Anthropic") {
        let v = r.assert_anthropic_error(403, "permission_error");
        v["error"]["message"].as_str().unwrap().to_string()
    } else {
        let v = r.assert_openai_error(403);
        assert_eq!(v["error"]["type"], "permission_error", "{what}: {v}");
        assert_eq!(v["error"]["code"], "insufficient_scope", "{what}: {v}");
        v["error"]["message"].as_str().unwrap().to_string()
    };
    assert!(
        message.contains("admin") && message.contains("--admin"),
        "{what}: {message}"
    );
}

#[test]
fn app_keys_get_403_on_admin_routes_and_admin_keys_200() {
    let setup = Setup::new(json!({}));
    let app = setup.add_key("app", &[]);
    let gate = Gate::spawn(setup);
    for (what, r) in admin_routes(&gate, &app) {
        assert_refused_for_scope(&what, &r);
    }
    assert_eq!(
        models(&gate, &app),
        200,
        "/v1/models stays open to app keys"
    );
    assert!(!gate.log().contains(&app[4..]), "no key in logs");

    let admin = gate.setup.add_key("ops", &["--admin"]);
    for (what, r) in admin_routes(&gate, &admin) {
        assert_eq!(r.status, 200, "{what}: {r:?}");
    }
    assert!(get(&gate.url("/admin/accounts"), &[("x-api-key", &admin)])
        .json()
        .is_object());
    assert_eq!(models(&gate, &admin), 200);

    // A public metrics page needs no key, so no scope either.
    let (public, app) = {
        let setup = Setup::new(json!({"metrics": {"public": true}}));
        let app = setup.add_key("app", &[]);
        (Gate::spawn(setup), app)
    };
    assert_eq!(
        get(&public.url("/metrics"), &[("x-api-key", &app)]).status,
        200
    );
    let r = get(&public.url("/admin/accounts"), &[("x-api-key", &app)]);
    assert_refused_for_scope("/admin/accounts (OpenAI)", &r);
}

/// `keys list`: the SCOPE of the key labelled `label`.
pub(crate) fn listed_scope(setup: &Setup, label: &str) -> String {
    let out = setup.cli(&["keys", "list"]);
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = list.lines().next().unwrap().split_whitespace().collect();
    let column = header
        .iter()
        .position(|h| *h == "SCOPE")
        .unwrap_or_else(|| panic!("no SCOPE column: {list}"));
    let line = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("{label} not listed: {list}"));
    line.split_whitespace().nth(column).unwrap().to_string()
}

#[test]
fn keys_list_shows_each_keys_scope() {
    let setup = Setup::new(json!({}));
    setup.add_key("app", &[]);
    setup.add_key("ops", &["--admin", "--rpm", "5"]);
    assert_eq!(listed_scope(&setup, "app"), "app");
    assert_eq!(listed_scope(&setup, "ops"), "admin");
}

#[test]
fn an_old_key_file_without_scopes_authenticates_as_an_app_key() {
    // A key file exactly as earlier versions wrote it: no scope field anywhere.
    let setup = Setup::new(json!({}));
    let secret = format!("cgk_{}", "5e".repeat(32));
    let digest: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let old = json!({"version": 1, "keys": [{
        "label": "legacy", "sha256": digest, "hint": "cgk_5e5e…",
        "rpm": null, "daily": null, "created": "2025-01-01T00:00:00Z"}]});
    std::fs::create_dir_all(setup.data_dir()).unwrap();
    std::fs::write(
        setup.data_dir().join("keys.json"),
        serde_json::to_vec_pretty(&old).unwrap(),
    )
    .unwrap();
    let gate = Gate::spawn(setup);
    assert_eq!(models(&gate, &secret), 200, "the old key still works");
    for (what, r) in admin_routes(&gate, &secret) {
        assert_refused_for_scope(&what, &r);
    }
    assert_eq!(listed_scope(&gate.setup, "legacy"), "app");

    // Rewriting the file (an admin key added) leaves the old key as it was.
    let admin = gate.setup.add_key("ops", &["--admin"]);
    assert_eq!(models(&gate, &secret), 200);
    let r = get(&gate.url("/admin/accounts"), &[("x-api-key", &secret)]);
    assert_refused_for_scope("/admin/accounts (OpenAI)", &r);
    let r = get(&gate.url("/admin/accounts"), &[("x-api-key", &admin)]);
    assert_eq!(r.status, 200, "{r:?}");
}
