//! Local guard rails: per-key requests per minute and per day, a global daily cap, a global
//! cap on requests in flight, a per-key cap on requests in flight, and a per-IP throttle on
//! failed authentication.
//!
//! The per-key cap (`limits.per_key_concurrent`, [`LimitsConfig::per_key_cap`]) counts every
//! request of a key that holds a worker for long: the model routes ([`Limits::admit`]) and page
//! fetches ([`Limits::admit_fetch`]), both taken before the body is read. So one key, however
//! slowly it sends, can never hold every worker or every `max_concurrent` slot.
//!
//! All state sits behind one `Mutex` and is touched only for a few arithmetic steps, never
//! across I/O. Every table is bounded: per-key state by the key file, the IP table by
//! `limits.ip_table_size`. Daily counters and each key's last use are saved to
//! `data_dir/usage.json` every few seconds (by the server's housekeeping thread), so a restart
//! does not reset a daily cap and `keys list` can show when a key was last used.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::base::bucket::{Bucket, Rate, Table};
use crate::base::clock;
use crate::base::error::{ApiError, ErrorKind};
use crate::config::LimitsConfig;
use crate::guard::keys::KeyInfo;

/// Why a request was refused locally; rendered as 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The config key of the limit that was hit, e.g. `limits.per_key_rpm`.
    pub limit: &'static str,
    pub message: String,
    /// Seconds until trying again can succeed (at least 1).
    pub retry_after: u64,
}

/// A refusal as the caller's error: 429 with `Retry-After`.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::new(ErrorKind::RateLimited, r.message).retry_after(r.retry_after)
    }
}

#[derive(Debug, Default)]
struct KeyState {
    bucket: Option<(u32, Bucket)>,
    today: u64,
    last_used: u64,
    /// Requests of this key holding a [`Slot`] now.
    in_flight: u32,
}

struct Inner {
    day: u64,
    global_today: u64,
    keys: HashMap<String, KeyState>,
    in_flight: u32,
    ips: Table<IpAddr>,
    dirty: bool,
}

/// The limit state of one server.
pub struct Limits {
    cfg: LimitsConfig,
    /// `limits.per_key_concurrent` in effect (auto resolved against the worker count).
    per_key_cap: u32,
    state_path: PathBuf,
    inner: Mutex<Inner>,
    /// Held by a save from its snapshot to its write: the housekeeping thread saves every 5 s
    /// and a stopping server saves last, and a save still writing an older snapshot must not
    /// land after the last one. No request ever takes it.
    saving: Mutex<()>,
}

/// A held place under `limits.per_key_concurrent` (and, for model routes, under
/// `limits.max_concurrent`); released on drop (also on panic).
pub struct Slot<'a> {
    limits: &'a Limits,
    label: String,
    /// Whether it also holds one of the `max_concurrent` places.
    global: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut inner = self.limits.lock();
        if self.global {
            inner.in_flight = inner.in_flight.saturating_sub(1);
        }
        if let Some(ks) = inner.keys.get_mut(&self.label) {
            ks.in_flight = ks.in_flight.saturating_sub(1);
        }
    }
}

/// The saved form of the daily counters (`data_dir/usage.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UsageFile {
    pub day: String,
    pub global: u64,
    pub keys: BTreeMap<String, KeyUsage>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeyUsage {
    pub today: u64,
    /// Unix seconds of the last authenticated request (0 = never).
    pub last_used: u64,
}

/// The usage file's path inside the data directory.
pub fn usage_path(data_dir: &Path) -> PathBuf {
    data_dir.join("usage.json")
}

/// Reads the usage file; absent or unreadable means "nothing recorded yet".
pub fn read_usage(path: &Path) -> UsageFile {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

impl Limits {
    /// Starts from the saved counters when they are from today (UTC). `workers` resolves the
    /// automatic per-key cap.
    pub fn new(cfg: LimitsConfig, workers: usize, state_path: PathBuf) -> Limits {
        let now = clock::unix_now();
        let today = clock::day_of(now);
        let saved = read_usage(&state_path);
        let same_day = clock::parse_day(&saved.day) == Some(today);
        let keys = saved
            .keys
            .into_iter()
            .map(|(label, u)| {
                let state = KeyState {
                    bucket: None,
                    today: if same_day { u.today } else { 0 },
                    last_used: u.last_used,
                    in_flight: 0,
                };
                (label, state)
            })
            .collect();
        let ips = Table::new(cfg.ip_table_size);
        Limits {
            per_key_cap: cfg.per_key_cap(workers),
            cfg,
            state_path,
            inner: Mutex::new(Inner {
                day: today,
                global_today: if same_day { saved.global } else { 0 },
                keys,
                in_flight: 0,
                ips,
                dirty: false,
            }),
            saving: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::base::sync::lock(&self.inner)
    }

    /// Admits one request of an authenticated key, or says which limit refuses it. Nothing is
    /// counted for a refused request.
    pub fn admit(&self, key: &KeyInfo) -> Result<Slot<'_>, Refusal> {
        let unix = clock::unix_now();
        let now = Instant::now();
        let cfg = &self.cfg;
        let mut inner = self.lock();
        let inner = &mut *inner;
        if clock::day_of(unix) != inner.day {
            inner.day = clock::day_of(unix);
            inner.global_today = 0;
            inner.keys.values_mut().for_each(|k| k.today = 0);
        }
        inner.dirty = true;
        let ks = inner.keys.entry(key.label.clone()).or_default();
        ks.last_used = unix;

        if inner.in_flight >= cfg.max_concurrent {
            return Err(Refusal {
                limit: "limits.max_concurrent",
                message: format!(
                    "{} requests are already in flight (limits.max_concurrent); retry shortly",
                    cfg.max_concurrent
                ),
                retry_after: 1,
            });
        }
        if let Some(refusal) = self.over_key_cap(ks, key) {
            return Err(refusal);
        }
        if cfg.global_daily > 0 && inner.global_today >= u64::from(cfg.global_daily) {
            return Err(Refusal {
                limit: "limits.global_daily",
                message: format!(
                    "the daily cap of {} requests for all keys is used up (limits.global_daily); it resets at 00:00 UTC",
                    cfg.global_daily
                ),
                retry_after: clock::secs_until_next_day(unix),
            });
        }
        let daily = key.daily.unwrap_or(cfg.per_key_daily);
        if daily > 0 && ks.today >= u64::from(daily) {
            return Err(Refusal {
                limit: "limits.per_key_daily",
                message: format!(
                    "key {:?} has used its {daily} requests for today (per-key daily limit); it resets at 00:00 UTC",
                    key.label
                ),
                retry_after: clock::secs_until_next_day(unix),
            });
        }
        let rpm = key.rpm.unwrap_or(cfg.per_key_rpm);
        if rpm > 0 {
            let rate = Rate::per_minute(rpm);
            let bucket = match &mut ks.bucket {
                Some((r, b)) if *r == rpm => b,
                slot => &mut slot.insert((rpm, Bucket::full(rate, now))).1,
            };
            if let Err(wait) = bucket.take(rate, now) {
                return Err(Refusal {
                    limit: "limits.per_key_rpm",
                    message: format!(
                        "key {:?} is over its {rpm} requests per minute (per-key rate limit)",
                        key.label
                    ),
                    retry_after: wait,
                });
            }
        }
        ks.today += 1;
        ks.in_flight += 1;
        inner.global_today += 1;
        inner.in_flight += 1;
        Ok(Slot {
            limits: self,
            label: key.label.clone(),
            global: true,
        })
    }

    /// Admits a page fetch (`/v1/fetch`), which has its own bucket and spends none of the
    /// account's limits, but holds a worker like any request: only the per-key cap applies.
    pub fn admit_fetch(&self, key: &KeyInfo) -> Result<Slot<'_>, Refusal> {
        let mut inner = self.lock();
        let ks = inner.keys.entry(key.label.clone()).or_default();
        if let Some(refusal) = self.over_key_cap(ks, key) {
            return Err(refusal);
        }
        ks.in_flight += 1;
        Ok(Slot {
            limits: self,
            label: key.label.clone(),
            global: false,
        })
    }

    /// The refusal for a key that already holds `limits.per_key_concurrent` slots.
    fn over_key_cap(&self, ks: &KeyState, key: &KeyInfo) -> Option<Refusal> {
        let cap = self.per_key_cap;
        (ks.in_flight >= cap).then(|| Refusal {
            limit: "limits.per_key_concurrent",
            message: format!(
                "key {:?} already has {cap} requests in flight, the most one key may hold so that \
                 other keys are served (limits.per_key_concurrent); retry when one has finished",
                key.label
            ),
            retry_after: 1,
        })
    }

    /// Records a failed authentication from `ip`. Returns a refusal once the IP has failed more
    /// than `limits.auth_failures_per_minute` times in the last minute.
    pub fn auth_failure(&self, ip: IpAddr) -> Option<Refusal> {
        let per_min = self.cfg.auth_failures_per_minute;
        if per_min == 0 {
            return None;
        }
        let rate = Rate::per_minute(per_min);
        let mut inner = self.lock();
        let wait = inner.ips.take(&ip, rate, Instant::now()).err()?;
        Some(Refusal {
            limit: "limits.auth_failures_per_minute",
            message: "too many failed authentication attempts from this address; check the API key"
                .into(),
            retry_after: wait,
        })
    }

    /// Number of IPs in the failure table.
    #[cfg(test)]
    pub fn tracked_ips(&self) -> usize {
        self.lock().ips.len()
    }

    /// Saves the daily counters if they changed since the last save. Saves never overlap.
    pub fn persist_if_dirty(&self) {
        let _saving = crate::base::sync::lock(&self.saving);
        let file = {
            let mut inner = self.lock();
            if !inner.dirty {
                return;
            }
            inner.dirty = false;
            UsageFile {
                day: clock::day_string(inner.day),
                global: inner.global_today,
                keys: inner
                    .keys
                    .iter()
                    .map(|(label, k)| {
                        let usage = KeyUsage {
                            today: k.today,
                            last_used: k.last_used,
                        };
                        (label.clone(), usage)
                    })
                    .collect(),
            }
        };
        let result = serde_json::to_vec(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                crate::base::fsutil::write_private(&self.state_path, &b).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            crate::base::log::error(&format!(
                "cannot save usage counters to {}: {e}",
                self.state_path.display()
            ));
            self.lock().dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            per_key_rpm: 3,
            per_key_daily: 0,
            global_daily: 0,
            max_concurrent: 2,
            per_key_concurrent: 0,
            auth_failures_per_minute: 2,
            ip_table_size: 4,
        }
    }

    fn key(label: &str) -> KeyInfo {
        KeyInfo {
            label: label.into(),
            rpm: None,
            daily: None,
        }
    }

    fn limits(cfg: LimitsConfig) -> Limits {
        let path = std::env::temp_dir().join(format!("cg-limits-none-{}.json", std::process::id()));
        Limits::new(cfg, 16, path)
    }

    #[test]
    fn rpm_bucket_refuses_after_burst() {
        let l = limits(cfg());
        for _ in 0..3 {
            drop(l.admit(&key("a")).unwrap());
        }
        let r = l.admit(&key("a")).err().unwrap();
        assert_eq!(r.limit, "limits.per_key_rpm");
        assert!((1..=20).contains(&r.retry_after), "{}", r.retry_after);
        assert!(l.admit(&key("b")).is_ok(), "other keys are unaffected");
    }

    #[test]
    fn concurrency_slots_release_on_drop() {
        let l = limits(LimitsConfig {
            per_key_rpm: 0,
            per_key_concurrent: 2,
            ..cfg()
        });
        let a = l.admit(&key("a")).unwrap();
        let _b = l.admit(&key("a")).unwrap();
        assert_eq!(
            l.admit(&key("a")).err().unwrap().limit,
            "limits.max_concurrent"
        );
        drop(a);
        assert!(l.admit(&key("a")).is_ok());
    }

    #[test]
    fn per_key_cap_counts_model_requests_and_fetches_of_one_key() {
        let l = limits(LimitsConfig {
            per_key_rpm: 0,
            max_concurrent: 10,
            per_key_concurrent: 2,
            ..cfg()
        });
        let a = l.admit(&key("a")).unwrap();
        let fetch = l.admit_fetch(&key("a")).unwrap();
        let r = l.admit(&key("a")).err().unwrap();
        assert_eq!(r.limit, "limits.per_key_concurrent");
        assert_eq!(r.retry_after, 1);
        assert!(r.message.contains("\"a\""), "{}", r.message);
        assert_eq!(
            l.admit_fetch(&key("a")).err().unwrap().limit,
            "limits.per_key_concurrent"
        );
        let _b = l.admit(&key("b")).unwrap();
        drop(fetch);
        let _again = l.admit(&key("a")).unwrap();
        drop(a);
        assert!(l.admit_fetch(&key("a")).is_ok());
    }

    #[test]
    fn fetches_do_not_take_max_concurrent_places_or_count_for_the_day() {
        let l = limits(LimitsConfig {
            per_key_rpm: 1,
            max_concurrent: 1,
            per_key_concurrent: 5,
            global_daily: 1,
            ..cfg()
        });
        let _fetches: Vec<_> = (0..3).map(|_| l.admit_fetch(&key("a")).unwrap()).collect();
        assert!(l.admit(&key("b")).is_ok());
    }

    #[test]
    fn auto_cap_leaves_a_quarter_of_the_slots() {
        // cfg(): max_concurrent 2 with 16 workers: the cap is 1.
        let l = limits(LimitsConfig {
            per_key_rpm: 0,
            ..cfg()
        });
        let _a = l.admit(&key("a")).unwrap();
        assert_eq!(
            l.admit(&key("a")).err().unwrap().limit,
            "limits.per_key_concurrent"
        );
        assert!(l.admit(&key("b")).is_ok());
    }

    #[test]
    fn daily_caps() {
        let l = limits(LimitsConfig {
            per_key_rpm: 0,
            global_daily: 3,
            ..cfg()
        });
        let k = KeyInfo {
            daily: Some(2),
            ..key("a")
        };
        drop(l.admit(&k).unwrap());
        drop(l.admit(&k).unwrap());
        let r = l.admit(&k).err().unwrap();
        assert_eq!(r.limit, "limits.per_key_daily");
        assert!(r.retry_after <= 86_400);
        drop(l.admit(&key("b")).unwrap());
        assert_eq!(
            l.admit(&key("c")).err().unwrap().limit,
            "limits.global_daily"
        );
    }

    #[test]
    fn ip_table_stays_bounded() {
        let l = limits(cfg());
        for i in 0..100u8 {
            l.auth_failure(IpAddr::from([10, 0, 0, i]));
        }
        assert!(l.tracked_ips() <= 4);
        let ip = IpAddr::from([10, 0, 1, 1]);
        assert!(l.auth_failure(ip).is_none());
        assert!(l.auth_failure(ip).is_none());
        assert_eq!(
            l.auth_failure(ip).unwrap().limit,
            "limits.auth_failures_per_minute"
        );
    }
}
