//! The account's unit tests: cooldown times, saving a refreshed token, and a login stored
//! meanwhile winning over it.

use super::*;
use crate::backends::oauth::health::{cooldown_from_headers, MAX_COOLDOWN_S};
use serde_json::json;

#[test]
fn cooldown_times() {
    let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
    assert_eq!(cooldown_from_headers(&h("Retry-After", "7"), 100), Some(7));
    assert_eq!(
        cooldown_from_headers(&h("anthropic-ratelimit-unified-reset", "160"), 100),
        Some(60)
    );
    assert_eq!(cooldown_from_headers(&h("x", "1"), 100), None);
    let far = u64::MAX.to_string();
    assert_eq!(
        cooldown_from_headers(&h("retry-after", &far), 100),
        Some(MAX_COOLDOWN_S)
    );
    assert_eq!(
        cooldown_from_headers(&h("anthropic-ratelimit-unified-reset", &far), 100),
        Some(MAX_COOLDOWN_S)
    );
    assert_eq!(cooldown_from_headers(&h("retry-after", "0"), 100), Some(1));
}

fn token(access: &str) -> Token {
    serde_json::from_value(json!({
        "kind": "oauth", "access_token": access, "refresh_token": format!("{access}-rt"),
        "expires_at": clock::unix_now() + 3600, "source": "manual",
    }))
    .unwrap()
}

/// An account on a fresh token file holding `old`, whose in-memory token is then `new`
/// with its save failed, as after a refresh on a full disk.
fn unsaved_account(name: &str) -> (Account, PathBuf) {
    let dir = std::env::temp_dir().join(format!("cg-account-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let path = dir.join("token.json");
    token::save_token(&path, &token("old")).unwrap();
    let account = Account::load(crate::config::Config::default().oauth, path.clone()).unwrap();
    {
        let mut slot = lock(&account.slot);
        slot.token = Some(token("refreshed"));
        slot.generation += 1;
        slot.unsaved = true;
    }
    (account, path)
}

fn stored(path: &std::path::Path) -> String {
    token::load_token(path).unwrap().unwrap().access_token
}

#[test]
fn an_unsaved_refreshed_token_is_saved_at_the_next_check() {
    let (account, path) = unsaved_account("save");
    account.reload(true);
    assert_eq!(stored(&path), "refreshed");
    assert!(!lock(&account.slot).unsaved);
    // Saved once: our own write is not mistaken for an outside login.
    account.reload(true);
    assert_eq!(lock(&account.slot).generation, 1);
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
fn a_login_stored_while_a_refresh_saves_is_never_overwritten() {
    use crate::backends::oauth::token::tests::{oauth_token, on_next_save, serve_once};
    let dir = std::env::temp_dir().join(format!("cg-account-race-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let path = dir.join("token.json");
    let expiring = Token {
        expires_at: Some(clock::unix_now() + 30), // refreshed before use
        needs_login: None,
        ..oauth_token()
    };
    token::save_token(&path, &expiring).unwrap();
    let login = Token {
        access_token: "sk-ant-oat01-the-new-login-0000000".into(),
        expires_at: Some(clock::unix_now() + 8 * 3600),
        ..expiring.clone()
    };
    let (url, endpoint) = serve_once(
        200,
        r#"{"access_token":"sk-ant-oat01-refreshed-000000000","refresh_token":"sk-ant-ort01-refreshed-00000000","expires_in":28800}"#,
    );
    let mut cfg = crate::config::Config::default().oauth;
    cfg.token_url = url;
    let account = Account::load(cfg, path.clone()).unwrap();
    // `claudegate login` lands after the refresh checked the file and before it wrote it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (at, new) = (path.clone(), login.clone());
    on_next_save(&path, move || {
        let stored =
            std::thread::spawn(move || crate::backends::oauth::login::store_login(&at, &new));
        // Long enough for an unhindered login to write its file.
        std::thread::sleep(Duration::from_millis(300));
        tx.send(stored).unwrap();
    });
    let refreshed = account.credential().unwrap();
    endpoint.join().unwrap();
    assert_eq!(refreshed.access_token, "sk-ant-oat01-refreshed-000000000");
    let stored_login = rx.recv().unwrap().join().unwrap();
    assert_eq!(stored_login, Ok(true), "the login replaced the stored one");
    assert_eq!(
        stored(&path),
        login.access_token,
        "the login was overwritten"
    );
    account.reload(true);
    assert_eq!(
        account.credential().unwrap().access_token,
        login.access_token
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_login_stored_meanwhile_wins_over_an_unsaved_refreshed_token() {
    let (account, path) = unsaved_account("login");
    token::save_token(&path, &token("new-login")).unwrap();
    account.reload(true);
    account.reload(true);
    assert_eq!(
        stored(&path),
        "new-login",
        "the login on disk is not overwritten"
    );
    let slot = lock(&account.slot);
    assert_eq!(slot.token.as_ref().unwrap().access_token, "new-login");
    assert!(!slot.unsaved);
    drop(slot);
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// A cooldown follows the rejected window: in a stream's `rate_limit_error` as after a 429,
/// only for the model family of a model-specific window, and back to the capped short wait
/// when the reset is no plausible time (the overflow fix kept).
#[test]
fn cooldowns_follow_the_rejected_window() {
    let (account, path) = unsaved_account("windows");
    let now = clock::unix_now();
    let h = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (format!("anthropic-ratelimit-unified-{n}"), v.clone()))
            .collect()
    };
    let until = |r: Result<Credential, Unavailable>| match r {
        Err(Unavailable::Cooldown { until, model, .. }) => Some((until, model)),
        _ => None,
    };

    // In a stream: the weekly Opus window, four days away.
    let reset = now + 4 * 86_400;
    account.record_stream_rate_limit(&h(&[
        ("status", "rejected".into()),
        ("7d_opus-status", "rejected".into()),
        ("7d_opus-reset", reset.to_string()),
    ]));
    assert_eq!(
        until(account.credential_for(Some("claude-opus-4-6"))),
        Some((reset, Some("opus".into())))
    );
    assert!(account.credential_for(Some("claude-sonnet-4-6")).is_ok());
    assert!(account.credential().is_ok(), "no model named: not Opus");
    assert_eq!(account.state(), "ok");

    // A success of another family leaves it; the endpoint showing room ends it.
    account.record_response(200, &[], None);
    assert!(account.credential_for(Some("opus")).is_err());
    let room = crate::anthropic::ratelimit::from_usage_endpoint(
        &json!({"seven_day_opus": {"utilization": 99.0, "resets_at": reset}}),
    )
    .unwrap();
    account.record_usage_read(Ok(room.clone()), now - 10);
    assert!(
        account.credential_for(Some("opus")).is_err(),
        "a read from before the cooldown began cannot end it"
    );
    account.record_usage_read(Ok(room), clock::unix_now());
    assert!(account.credential_for(Some("opus")).is_ok());

    // A rejected weekly window whose reset is years away: not believed, the capped wait.
    account.record_response(
        429,
        &h(&[
            ("status", "rejected".into()),
            ("7d-status", "rejected".into()),
            ("7d-reset", (now + 400 * 86_400).to_string()),
            ("reset", (now + 400 * 86_400).to_string()),
        ]),
        None,
    );
    let (end, model) = until(account.credential_for(Some("sonnet"))).unwrap();
    assert_eq!(model, None);
    assert!(end <= clock::unix_now() + MAX_COOLDOWN_S, "{end}");
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// An account whose refresh token was rejected tells its clients to log in again even while
/// it also cools down (a cooldown may last days; waiting it out would not help).
#[test]
fn needs_login_wins_over_a_cooldown() {
    let (account, path) = unsaved_account("needs-login");
    {
        let mut h = lock(&account.health);
        h.needs_login = Some("the refresh token was rejected".into());
        h.cool_down(clock::unix_now(), MAX_COOLDOWN_S, "rate limited");
    }
    for r in [account.credential(), account.credential_for(Some("opus"))] {
        assert!(matches!(r, Err(Unavailable::NeedsLogin(_))), "{r:?}");
    }
    assert!(matches!(
        account.login_credential(),
        Err(Unavailable::NeedsLogin(_))
    ));
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}
