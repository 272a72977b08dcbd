//! The subscription's usage windows, understood: the `anthropic-ratelimit-unified-*` response
//! headers and the answer of the OAuth usage endpoint, read into one [`Snapshot`] of windows
//! (5-hour, weekly, the model-specific weekly ones, and any window not known yet), each with its
//! status, utilisation (a fraction, 0..1) and reset time, plus the representative claim and the
//! overage and fallback fields. Pure functions of headers and JSON: no I/O, no clock.
//!
//! # Where the facts come from
//!
//! - The headers, as Claude Code 2.1.330 reads them (its bundled `cli.js`, installed under
//!   `node_modules/@anthropic-ai/claude-code/`): `anthropic-ratelimit-unified-status` and
//!   `-reset` (the overall answer: `allowed`, `allowed_warning` or `rejected`, and a Unix time),
//!   `-representative-claim` (the binding window: `five_hour`, `seven_day`, `seven_day_opus`,
//!   `seven_day_sonnet`, `seven_day_overage_included`, `overage`), `-fallback` (`available`),
//!   `-overage-status`, `-overage-reset`, `-overage-disabled-reason` and friends, and per
//!   window `-{window}-status`, `-{window}-utilization` (a fraction: 0.42), `-{window}-reset`
//!   (Unix seconds) and `-{window}-surpassed-threshold`, for the windows `5h`, `7d`, `7d_oi`
//!   (overage included) and `overage`. The model-specific weekly windows arrive the same way as
//!   `7d_opus` and `7d_sonnet` (`anthropic-ratelimit-unified-7d_sonnet-utilization`, seen in
//!   real responses quoted in router-for-me/CLIProxyAPI#3169 and anomalyco/opencode#49499).
//! - The usage endpoint, `GET /api/oauth/usage` on the API host with the subscription's bearer
//!   token and the `oauth-2025-04-20` beta (Claude Code's `/usage`; its answer schema in the same
//!   `cli.js`, and robinebers/openusage `docs/providers/claude.md`): an object of windows
//!   `five_hour`, `seven_day`, `seven_day_oauth_apps`, `seven_day_opus`, `seven_day_sonnet`,
//!   … each `{"utilization": 42.0, "resets_at": "2026-01-28T07:59:59.571404+00:00"}` or `null`,
//!   and `extra_usage` (`is_enabled`, `monthly_limit`, `used_credits`, `utilization`). There the
//!   utilisation is a **percentage** (0..100): it is divided by 100 here, so both sources give
//!   the same 0..1 fraction. Its windows carry no status.
//!
//! Window names are the headers' (`5h`, `7d`, `7d_opus`); the endpoint's and the claim's long
//! names are mapped to them ([`window_name`]). A window whose name reads as a model family
//! (`7d_opus`: [`crate::anthropic::models`]) limits only that family. Unknown windows are kept,
//! under their own name, as long as the name is a plain word (so it is safe as a metrics label)
//! and there are at most [`MAX_WINDOWS`] of them: the upstream controls both.

use serde_json::{json, Map, Value};

use crate::anthropic::models::{self, Family};
use crate::base::clock;
use crate::base::error::MAX_RETRY_AFTER;

/// Windows kept from one answer at most; the rest are dropped (the upstream controls them).
pub const MAX_WINDOWS: usize = 16;
/// The longest window name kept.
const MAX_NAME: usize = 40;
/// The name of the overall answer (`-status`, `-reset` without a window), shown as a window.
pub const OVERALL: &str = "overall";
/// The statuses a window can have; another value is read as unknown.
pub const STATUSES: [&str; 3] = ["allowed", "allowed_warning", "rejected"];
/// The latest time we read as a reset (9999-12-31): anything later is garbage.
const LATEST: u64 = 253_402_300_799;
const PREFIX: &str = "anthropic-ratelimit-unified-";

/// One usage window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `5h`, `7d`, `7d_opus`, `overall`, or an unknown window's own name.
    pub name: String,
    /// `allowed`, `allowed_warning` or `rejected`; `None` when not reported.
    pub status: Option<&'static str>,
    /// How much of the window is used, 0..1.
    pub utilization: Option<f64>,
    /// Unix time the window resets.
    pub resets_at: Option<u64>,
    /// The model family the window limits (`opus`), `None` for every model.
    pub model: Option<String>,
}

impl Window {
    fn named(name: &str) -> Window {
        Window {
            name: name.to_string(),
            status: None,
            utilization: None,
            resets_at: None,
            model: model_of(name),
        }
    }

    /// Whether this window says there is room now: reported, not rejected, under 100 %.
    pub fn has_room(&self) -> bool {
        self.status != Some("rejected")
            && (self.status.is_some() || self.utilization.is_some_and(|u| u < 1.0))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "status": self.status,
            "utilization": self.utilization,
            "resets_at": self.resets_at.map(clock::rfc3339),
            "model": self.model,
        })
    }
}

/// Whether a limit on the model family `family` (`None`: every model; a window's or a
/// cooldown's `model`) holds back a request for `asked` (a model id or alias; `None`: a call
/// that names no model): a limit on every model does; a family's only for that family.
pub fn covers(family: Option<&str>, asked: Option<&str>) -> bool {
    match (family, asked) {
        (None, _) => true,
        (Some(family), Some(asked)) => same_family(family, asked),
        (Some(_), None) => false,
    }
}

/// Whether the model id or alias `asked` is of `family` (a family name such as `opus`).
pub fn same_family(family: &str, asked: &str) -> bool {
    let f = models::parse(family).family;
    f != Family::Unknown && f == models::parse(asked).family
}

/// What one answer (headers) or one read of the usage endpoint said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub windows: Vec<Window>,
    /// The binding window, as the upstream names it (`five_hour`).
    pub representative_claim: Option<String>,
    /// The overage fields as reported (`-overage-*` headers without the prefix, or the
    /// endpoint's `extra_usage`).
    pub overage: Option<Map<String, Value>>,
    /// `-fallback` and `-fallback-percentage`, as reported.
    pub fallback: Option<Map<String, Value>>,
}

impl Snapshot {
    pub fn window(&self, name: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.name == name)
    }

    fn window_mut(&mut self, name: &str) -> Option<&mut Window> {
        if self.window(name).is_none() {
            if self.windows.len() >= MAX_WINDOWS {
                return None;
            }
            self.windows.push(Window::named(name));
        }
        self.windows.iter_mut().find(|w| w.name == name)
    }

    /// The windows this answer names as rejected: each whose own status is `rejected`, and the
    /// one the representative claim names when the overall status is `rejected` and that
    /// window reports no status of its own (its reset is then the overall one, if it has none).
    /// The overall answer itself is not a window to wait for: it says only that one is full.
    pub fn rejected(&self) -> Vec<Window> {
        let mut out: Vec<Window> = self
            .windows
            .iter()
            .filter(|w| w.name != OVERALL && w.status == Some("rejected"))
            .cloned()
            .collect();
        let overall = self.window(OVERALL);
        if let (Some(overall), Some(claim)) = (overall, &self.representative_claim) {
            let name = window_name(claim);
            let silent = self.window(&name).is_none_or(|w| w.status.is_none());
            if overall.status == Some("rejected") && silent && valid_name(&name) {
                let mut w = self.window(&name).cloned().unwrap_or(Window::named(&name));
                w.status = Some("rejected");
                w.resets_at = w.resets_at.or(overall.resets_at);
                out.push(w);
            }
        }
        out
    }

    /// The `usage` object of `/admin/accounts` (see the README's "Usage windows").
    pub fn to_json(&self, source: &str, observed_at: u64) -> Value {
        json!({
            "source": source,
            "observed_at": clock::rfc3339(observed_at),
            "windows": self.windows.iter().map(Window::to_json).collect::<Vec<_>>(),
            "representative_claim": self.representative_claim,
            "representative_window": self.representative_claim.as_deref().map(window_name),
            "overage": self.overage,
            "fallback": self.fallback,
        })
    }
}

/// The `usage` object when nothing was seen yet.
pub fn unknown_json() -> Value {
    json!({"source": null, "observed_at": null, "windows": [], "representative_claim": null,
           "representative_window": null, "overage": null, "fallback": null})
}

/// A reset time worth waiting for: in the future and at most [`MAX_RETRY_AFTER`] (eight days,
/// a weekly window plus a day) away. Anything else is a broken or hostile value, and the
/// caller falls back to its own short wait.
pub fn plausible_reset(reset: u64, now: u64) -> Option<u64> {
    (reset > now && reset - now <= MAX_RETRY_AFTER).then_some(reset)
}

/// The header name for a long window name: `five_hour` → `5h`, `seven_day` → `7d`,
/// `seven_day_opus` → `7d_opus`, `seven_day_overage_included` → `7d_oi`; others unchanged.
pub fn window_name(long: &str) -> String {
    let long = long.trim().to_ascii_lowercase();
    match long.as_str() {
        "five_hour" => "5h".into(),
        "seven_day" => "7d".into(),
        "seven_day_overage_included" => "7d_oi".into(),
        _ => match long.strip_prefix("seven_day_") {
            Some(rest) => format!("7d_{rest}"),
            None => long,
        },
    }
}

/// The model family a window limits: the part after its first `_` when it reads as a family
/// (`7d_opus` → `opus`; `7d_oi`, `7d_oauth_apps` → none).
fn model_of(name: &str) -> Option<String> {
    let (_, rest) = name.split_once('_')?;
    (models::parse(rest).family != Family::Unknown).then(|| rest.to_string())
}

/// A name safe to keep and to use as a metrics label: 1 to 40 of `[a-z0-9_]`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn status_of(v: &str) -> Option<&'static str> {
    let v = v.trim().to_ascii_lowercase();
    STATUSES.into_iter().find(|s| *s == v)
}

/// A number as a header or JSON gives it (`0.42`, `"0.42"`), finite and not negative.
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

fn fraction(n: f64) -> f64 {
    n.clamp(0.0, 1.0)
}

/// A Unix time given as seconds (`1754424600`, `1754424600.5`) or as RFC 3339 with any offset
/// and fraction (`2026-01-28T07:59:59.571404+00:00`).
fn time(v: &Value) -> Option<u64> {
    if let Some(n) = number(v) {
        return (n <= LATEST as f64).then(|| n.round() as u64);
    }
    let s = v.as_str()?.trim();
    if let Some(t) = clock::parse_rfc3339(s) {
        return Some(t);
    }
    // `±HH:MM` after the seconds: parse the local time as if UTC, then undo the offset.
    let (local, sign, offset) = s
        .rfind('+')
        .map(|i| (&s[..i], 1i64, &s[i + 1..]))
        .or_else(|| s.rfind('-').map(|i| (&s[..i], -1, &s[i + 1..])))?;
    let (h, m) = offset.split_once(':')?;
    let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
    if h > 23 || m > 59 || h < 0 || m < 0 {
        return None;
    }
    let base = clock::parse_rfc3339(&format!("{local}Z"))? as i64;
    u64::try_from(base - sign * (h * 3600 + m * 60)).ok()
}

/// Reads the unified rate-limit headers of one answer; `None` when it has none.
pub fn from_headers(headers: &[(String, String)]) -> Option<Snapshot> {
    let mut snap = Snapshot::default();
    let mut seen = false;
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix(PREFIX) else {
            continue;
        };
        seen = true;
        let text = Value::String(value.trim().to_string());
        match rest {
            "status" => {
                if let Some(w) = snap.window_mut(OVERALL) {
                    w.status = status_of(value);
                }
            }
            "reset" => {
                if let Some(w) = snap.window_mut(OVERALL) {
                    w.resets_at = time(&text);
                }
            }
            "representative-claim" => {
                snap.representative_claim =
                    Some(value.trim().to_ascii_lowercase()).filter(|c| valid_name(&window_name(c)));
            }
            "fallback" | "fallback-percentage" => {
                let map = snap.fallback.get_or_insert_with(Map::new);
                map.insert(rest.to_string(), reported(value));
            }
            _ => {
                if let Some(field) = rest.strip_prefix("overage-") {
                    let map = snap.overage.get_or_insert_with(Map::new);
                    if map.len() < MAX_WINDOWS {
                        map.insert(field.to_string(), reported(value));
                    }
                    continue;
                }
                let Some((window, field)) =
                    ["-surpassed-threshold", "-utilization", "-reset", "-status"]
                        .iter()
                        .find_map(|f| rest.strip_suffix(f).map(|w| (w, &f[1..])))
                else {
                    continue;
                };
                if !valid_name(window) {
                    continue;
                }
                let Some(w) = snap.window_mut(window) else {
                    continue;
                };
                match field {
                    "status" => w.status = status_of(value),
                    "utilization" => w.utilization = number(&text).map(fraction),
                    "reset" => w.resets_at = time(&text),
                    _ => {} // surpassed-threshold: the warning level, not kept
                }
            }
        }
    }
    // The overall answer first, then the windows in the order they came.
    snap.windows.sort_by_key(|w| w.name != OVERALL);
    seen.then_some(snap)
}

/// A header value as reported: a number when it reads as one, else the text.
fn reported(value: &str) -> Value {
    let v = value.trim();
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() => json!(n),
        _ => Value::String(v.chars().take(200).collect()),
    }
}

/// Reads the usage endpoint's answer. Tolerant: a window that is `null` or not an object is
/// skipped, a field missing or of the wrong type is unknown, a name not seen before is kept.
/// The error says what is wrong with an answer that is no object at all.
pub fn from_usage_endpoint(body: &Value) -> Result<Snapshot, String> {
    let Some(object) = body.as_object() else {
        return Err("the usage endpoint's answer is not a JSON object".into());
    };
    let mut snap = Snapshot::default();
    for (key, value) in object {
        if key == "extra_usage" {
            snap.overage = value.as_object().cloned();
            continue;
        }
        let Some(fields) = value.as_object() else {
            continue; // null: a window this plan does not have
        };
        if !fields.contains_key("utilization") && !fields.contains_key("resets_at") {
            continue; // not a window (a list of limits, a label)
        }
        let name = window_name(key);
        if !valid_name(&name) {
            continue;
        }
        let Some(w) = snap.window_mut(&name) else {
            break;
        };
        // A percentage there: 42.0 is 42 % (see the module docs).
        w.utilization = fields
            .get("utilization")
            .and_then(number)
            .map(|p| fraction(p / 100.0));
        w.resets_at = fields.get("resets_at").and_then(time);
        w.status = fields
            .get("status")
            .and_then(Value::as_str)
            .and_then(status_of);
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (format!("{PREFIX}{n}"), v.to_string()))
            .collect()
    }

    /// The set quoted in router-for-me/CLIProxyAPI#3169 (an account past its weekly warning
    /// threshold), completed with resets.
    #[test]
    fn a_warning_header_set() {
        let h = headers(&[
            ("status", "allowed_warning"),
            ("5h-utilization", "0.35"),
            ("5h-status", "allowed"),
            ("5h-reset", "1754424600"),
            ("7d-utilization", "0.85"),
            ("7d-status", "allowed_warning"),
            ("7d-reset", "1754661600"),
            ("7d-surpassed-threshold", "0.75"),
            ("representative-claim", "seven_day"),
            ("fallback-percentage", "0.5"),
            ("overage-status", "rejected"),
            ("overage-disabled-reason", "org_level_disabled"),
            ("reset", "1754661600"),
        ]);
        let s = from_headers(&h).unwrap();
        let names: Vec<&str> = s.windows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["overall", "5h", "7d"]);
        let seven = s.window("7d").unwrap();
        assert_eq!(seven.status, Some("allowed_warning"));
        assert_eq!(seven.utilization, Some(0.85));
        assert_eq!(seven.resets_at, Some(1_754_661_600));
        assert_eq!(seven.model, None);
        assert_eq!(s.window("overall").unwrap().resets_at, Some(1_754_661_600));
        assert_eq!(s.representative_claim.as_deref(), Some("seven_day"));
        let overage = s.overage.as_ref().unwrap();
        assert_eq!(overage["status"], "rejected");
        assert_eq!(overage["disabled-reason"], "org_level_disabled");
        assert_eq!(s.fallback.as_ref().unwrap()["fallback-percentage"], 0.5);
        assert!(s.rejected().is_empty());
        let j = s.to_json("headers", 0);
        assert_eq!(j["windows"][2]["resets_at"], "2025-08-08T14:00:00Z");
        assert_eq!(j["representative_claim"], "seven_day");
        assert_eq!(j["representative_window"], "7d");
    }

    /// The binding window is named as the windows are, so the status page can mark it: the
    /// claim `seven_day_overage_included` is the `7d_oi` window (a name no prefix swap gives).
    #[test]
    fn the_representative_window_is_named_as_the_windows_are() {
        let h = headers(&[
            ("7d_oi-utilization", "0.4"),
            ("representative-claim", "seven_day_overage_included"),
        ]);
        let j = from_headers(&h).unwrap().to_json("headers", 0);
        assert_eq!(j["representative_window"], "7d_oi");
        assert_eq!(j["windows"][0]["name"], j["representative_window"]);
        assert!(unknown_json()["representative_window"].is_null());
        assert!(Snapshot::default().to_json("headers", 0)["representative_window"].is_null());
    }

    #[test]
    fn rejected_windows_weekly_and_model_specific() {
        let h = headers(&[
            ("status", "rejected"),
            ("5h-status", "allowed"),
            ("5h-utilization", "0.1"),
            ("7d_opus-status", "rejected"),
            ("7d_opus-utilization", "1.0"),
            ("7d_opus-reset", "1754661600"),
            ("7d_sonnet-utilization", "0.2"),
            ("7d_oi-utilization", "0.4"),
            ("representative-claim", "seven_day_opus"),
        ]);
        let s = from_headers(&h).unwrap();
        let rejected = s.rejected();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].name, "7d_opus");
        assert_eq!(rejected[0].model.as_deref(), Some("opus"));
        let family = rejected[0].model.as_deref();
        assert!(covers(family, Some("claude-opus-4-6")));
        assert!(!covers(family, Some("claude-sonnet-4-6")));
        assert!(!covers(family, None));
        assert!(covers(None, None), "a window of every model");
        assert_eq!(
            s.window("7d_sonnet").unwrap().model.as_deref(),
            Some("sonnet")
        );
        assert_eq!(s.window("7d_oi").unwrap().model, None);

        // Only the overall answer and the claim: the claimed window, at the overall reset.
        let h = headers(&[
            ("status", "rejected"),
            ("reset", "1754661600"),
            ("representative-claim", "seven_day"),
        ]);
        let rejected = from_headers(&h).unwrap().rejected();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].name.as_str(), rejected[0].resets_at),
            ("7d", Some(1_754_661_600))
        );
        // A window that says it is allowed is not overruled by the claim.
        let h = headers(&[
            ("status", "rejected"),
            ("5h-status", "allowed"),
            ("representative-claim", "five_hour"),
        ]);
        assert!(from_headers(&h).unwrap().rejected().is_empty());
    }

    #[test]
    fn odd_headers_are_survived() {
        let far = u64::MAX.to_string();
        let h = headers(&[
            ("5h-utilization", "-3"),
            ("5h-reset", &far),
            ("5h-status", "throttled"),
            ("Weird Name-status", "allowed"),
            ("7d-utilization", "NaN"),
            ("7d-reset", "soon"),
            ("x9-utilization", "7"),
        ]);
        let s = from_headers(&h).unwrap();
        let five = s.window("5h").unwrap();
        assert_eq!(
            (five.utilization, five.resets_at, five.status),
            (None, None, None)
        );
        assert_eq!(s.window("7d").unwrap().utilization, None);
        assert_eq!(s.window("x9").unwrap().utilization, Some(1.0), "clamped");
        assert!(s.window("weird name").is_none());
        assert!(from_headers(&[("x".into(), "y".into())]).is_none());
        // Many windows: bounded.
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("{PREFIX}w{i}-utilization"), "0.1".into()))
            .collect();
        assert_eq!(from_headers(&many).unwrap().windows.len(), MAX_WINDOWS);
    }

    /// The shape robinebers/openusage documents and Claude Code's schema reads, with a window
    /// not known yet, nulls, and an odd field or two.
    #[test]
    fn the_usage_endpoint() {
        let body = json!({
            "five_hour": {"utilization": 61.0, "resets_at": "2026-01-28T07:59:59.571404+00:00"},
            "seven_day": {"utilization": 22, "resets_at": "2026-02-03T11:59:59+02:00"},
            "seven_day_opus": {"utilization": "100", "resets_at": null},
            "seven_day_sonnet": null,
            "seven_day_oauth_apps": {"utilization": null},
            "iguana_necktie": {"utilization": 5, "resets_at": 1_770_000_000},
            "limits": [{"kind": "x"}],
            "extra_usage": {"is_enabled": false, "monthly_limit": null, "used_credits": null},
        });
        let s = from_usage_endpoint(&body).unwrap();
        let five = s.window("5h").unwrap();
        assert_eq!(five.utilization, Some(0.61));
        assert_eq!(five.resets_at, clock::parse_rfc3339("2026-01-28T07:59:59Z"));
        assert_eq!(
            s.window("7d").unwrap().resets_at,
            clock::parse_rfc3339("2026-02-03T09:59:59Z")
        );
        let opus = s.window("7d_opus").unwrap();
        assert_eq!((opus.utilization, opus.resets_at), (Some(1.0), None));
        assert_eq!(opus.model.as_deref(), Some("opus"));
        assert!(!opus.has_room());
        assert!(s.window("5h").unwrap().has_room());
        assert!(s.window("7d_sonnet").is_none());
        assert_eq!(s.window("7d_oauth_apps").unwrap().utilization, None);
        assert_eq!(
            s.window("iguana_necktie").unwrap().resets_at,
            Some(1_770_000_000)
        );
        assert_eq!(s.overage.as_ref().unwrap()["is_enabled"], false);
        assert!(from_usage_endpoint(&json!([])).is_err());
        assert_eq!(
            from_usage_endpoint(&json!({})).unwrap(),
            Snapshot::default()
        );
    }

    #[test]
    fn names_and_resets() {
        assert_eq!(window_name("five_hour"), "5h");
        assert_eq!(window_name("seven_day_sonnet"), "7d_sonnet");
        assert_eq!(window_name("seven_day_overage_included"), "7d_oi");
        assert_eq!(window_name("overage"), "overage");
        assert_eq!(
            plausible_reset(100 + 7 * 86_400, 100),
            Some(100 + 7 * 86_400)
        );
        assert_eq!(plausible_reset(100, 100), None);
        assert_eq!(plausible_reset(u64::MAX, 100), None);
        assert!(same_family("opus", "claude-opus-4-8"));
        assert!(!same_family("opus", "sonnet"));
        assert!(!same_family("oi", "anything"));
    }
}
