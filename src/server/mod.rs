//! The server: accept loop, intake, worker pool, panic isolation and the routing table.
//!
//! ```text
//! tiny_http connection thread ─ intake ─ bounded queue ─ workers
//!   intake: answers /health and CORS preflights itself; queue full → 503 + Retry-After
//!   worker: route (404/405) → authenticate (401/429) → limits (429) → handler → reply
//!           → metrics, and an audit line once authenticated ([`crate::observe::audit`])
//! ```
//! The intake runs on the connection's own thread (vendor patch 7) and never waits for a
//! worker, so `/health` stays fast while every worker holds a long stream, and no request waits
//! without bound. Workers take requests straight from tiny_http's queue: one hand-off between
//! threads per request, which the benchmark showed to be the main cost of a small request. A
//! panic in a handler is caught per request and answered with a JSON 500; the worker lives on.

use std::io::IsTerminal;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Method, Request, Server};

use crate::anthropic::catalogue::Catalogue;
use crate::backends::oauth::account::Account;
use crate::backends::oauth::cloak::Cloak;
use crate::backends::oauth::OauthBackend;
use crate::backends::upstream::Upstream;
use crate::base::error::{ApiError, ErrorKind, Protocol};
use crate::base::log;
use crate::config::Config;
use crate::guard::budget::BodyBudget;
use crate::guard::keys::{self, KeyInfo, KeyStore};
use crate::guard::limits::{self, Limits};
use crate::http::{self, Reply};
use crate::observe::metrics::METRICS;
use crate::observe::{audit, record};
use crate::routes::state::State;

/// The routes we serve. Paths are matched exactly, without the query string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Health,
    Models,
    Messages,
    CountTokens,
    ChatCompletions,
    Responses,
    Complete,
    Fetch,
    AdminAccounts,
    Metrics,
    EventLogging,
}

/// Path → (route, the one method it accepts).
const ROUTES: &[(&str, Route, Method)] = &[
    ("/health", Route::Health, Method::Get),
    ("/v1/models", Route::Models, Method::Get),
    ("/v1/messages", Route::Messages, Method::Post),
    (
        "/v1/messages/count_tokens",
        Route::CountTokens,
        Method::Post,
    ),
    ("/v1/chat/completions", Route::ChatCompletions, Method::Post),
    ("/v1/responses", Route::Responses, Method::Post),
    ("/v1/complete", Route::Complete, Method::Post),
    ("/v1/fetch", Route::Fetch, Method::Post),
    ("/admin/accounts", Route::AdminAccounts, Method::Get),
    ("/metrics", Route::Metrics, Method::Get),
    // Claude Code posts telemetry to its base URL; accepted and dropped.
    (
        "/api/event_logging/batch",
        Route::EventLogging,
        Method::Post,
    ),
];

impl Route {
    /// The route's name in metrics and the audit log: a fixed set, so labels stay bounded.
    fn name(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Models => "models",
            Route::Messages => "messages",
            Route::CountTokens => "count_tokens",
            Route::ChatCompletions => "chat_completions",
            Route::Responses => "responses",
            Route::Complete => "complete",
            Route::Fetch => "fetch",
            Route::AdminAccounts => "admin_accounts",
            Route::Metrics => "metrics",
            Route::EventLogging => "event_logging",
        }
    }

    /// Routes that spend the account's capacity go through the rate, daily and concurrency
    /// limits; local views (models, admin, metrics) only need a key.
    fn uses_backend(self) -> bool {
        !matches!(
            self,
            Route::Health
                | Route::Models
                | Route::AdminAccounts
                | Route::Metrics
                | Route::EventLogging
        )
    }
}

/// The metrics/audit name of a path; unknown paths are all `other`.
fn route_name(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or("other", |(_, r, _)| r.name())
}

fn path_of(url: &str) -> &str {
    url.split_once('?').map_or(url, |(p, _)| p)
}

/// Anthropic-shaped errors for Anthropic routes and for any request that announces itself with
/// `anthropic-version`; OpenAI-shaped for the rest.
fn protocol_of(rq: &Request, path: &str) -> Protocol {
    if path == "/v1/complete" || path == "/v1/fetch" {
        Protocol::Relay
    } else if path.starts_with("/v1/messages") || http::header(rq, "anthropic-version").is_some() {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    }
}

/// Runs the server in the foreground until the process is stopped.
pub fn run(config: Config) -> Result<(), String> {
    let ms = config.client_timeout_ms;
    tiny_http::SOCKET_READ_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    tiny_http::SOCKET_WRITE_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    log::set_level(config.debug.level());
    install_panic_hook();

    let data_dir = config.data_dir();
    crate::base::fsutil::ensure_private_dir(&data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", data_dir.display()))?;
    let keys_path = keys::file_path(&data_dir);
    let keys = KeyStore::open(keys_path.clone())?;
    if keys.is_empty() {
        first_run_key(&keys_path)?;
    }

    let account = Account::load(
        config.oauth.clone(),
        crate::backends::oauth::token::token_path(&data_dir),
    )?;
    let cloak = Cloak::new(config.cloaking.clone(), &data_dir)?;
    let audit = crate::observe::audit::AuditLog::start(&config.audit, &data_dir)?;
    let oauth = OauthBackend::new(
        account,
        Upstream::new(&config),
        cloak,
        config.upstream.max_retries,
    );
    let state = Arc::new(State {
        keys,
        oauth,
        fetcher: crate::backends::web::Fetcher::new(&config.fetch),
        fetch_buckets: std::sync::Mutex::new(crate::base::bucket::Table::new(
            crate::routes::fetch::MAX_BUCKETS,
        )),
        cli: crate::backends::cli::CliBackend::new(config.cli.clone()),
        audit,
        limits: Limits::new(config.limits.clone(), limits::usage_path(&data_dir)),
        bodies: BodyBudget::new(config.max_inflight_body_bytes),
        models: Catalogue::new(config.models.clone(), crate::base::clock::unix_now()),
        jobs: AtomicUsize::new(0),
        config,
    });

    // The intake is part of the server from its first connection on: a request that slipped
    // past it would be handled without being counted in `jobs`.
    let addr = format!("{}:{}", state.config.host, state.config.port);
    let intake_state = state.clone();
    let server = Server::http_with_intake(&addr, Box::new(move |rq| intake(&intake_state, rq)))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or(addr.clone(), |a| a.to_string());
    let server = Arc::new(server);
    let mut pool = Vec::with_capacity(state.config.workers);
    for i in 0..state.config.workers {
        let (state, server) = (state.clone(), server.clone());
        let handle = thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(512 * 1024)
            .spawn(move || worker(&state, &server))
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
        pool.push(handle);
    }
    let refresher = state.clone();
    thread::Builder::new()
        .name("token-refresh".into())
        .spawn(move || refresher.oauth.account.keep_fresh())
        .map_err(|e| format!("cannot start token refresh thread: {e}"))?;
    let keeper = state.clone();
    thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_secs(5));
            keeper.limits.persist_if_dirty();
        })
        .map_err(|e| format!("cannot start housekeeping thread: {e}"))?;

    log::info(&format!(
        "listening on http://{bound} ({} workers, queue {}, upstream {})",
        state.config.workers, state.config.queue, state.config.upstream.base_url
    ));

    for handle in pool {
        handle.join().ok();
    }
    Ok(())
}

/// Serves the seed's first-run promise without ever writing a secret into a log: the key is
/// minted and shown only when stdout is a terminal a person is looking at.
fn first_run_key(keys_path: &std::path::Path) -> Result<(), String> {
    if !std::io::stdout().is_terminal() {
        log::info(
            "no API keys exist yet, so every request will get 401; mint one with `claudegate keys add LABEL` \
             (a key is minted automatically only when serve runs on a terminal)",
        );
        return Ok(());
    }
    let secret = keys::add(keys_path, "default", None, None)?;
    println!(
        "\nclaudegate: no API keys existed, so one was minted for you (label \"default\").\n\
         Copy it now: it is shown only this once and stored only as a hash.\n\n    {secret}\n\n\
         Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.\n\
         Manage keys with `claudegate keys add LABEL`, `keys list`, `keys revoke LABEL`.\n"
    );
    Ok(())
}

/// Handler panics are reported without their payload: a payload can quote request data.
fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        let thread = thread::current().name().unwrap_or("?").to_string();
        log::info(&format!(
            "internal error: thread {thread} panicked{at}; request answered 500"
        ));
    }));
}

/// Runs on each connection's thread before a request is queued; never blocks on a worker.
/// Returns the request when a worker should handle it.
fn intake(state: &State, rq: Request) -> Option<Request> {
    let path = path_of(rq.url());
    if path == "/health" && matches!(rq.method(), Method::Get | Method::Head) {
        let started = Instant::now();
        let cors = http::cors::cors_grant(&rq);
        http::send(rq, Reply::json(200, br#"{"status":"ok"}"#.to_vec()), &cors);
        let us = started.elapsed().as_micros() as u64;
        METRICS.request("health", 200, us, us);
        log::verbose(&format!("GET /health -> 200 in {us} us"));
        return None;
    }
    if *rq.method() == Method::Options {
        let (reply, cors) = http::cors::preflight(&rq);
        http::send(rq, reply, &cors);
        return None;
    }
    let capacity = state.config.workers + state.config.queue;
    if state.jobs.fetch_add(1, Ordering::AcqRel) >= capacity {
        state.jobs.fetch_sub(1, Ordering::AcqRel);
        reject_busy(rq);
        return None;
    }
    Some(rq)
}

fn reject_busy(rq: Request) {
    METRICS.queue_rejected();
    METRICS.request(route_name(path_of(rq.url())), 503, 0, 0);
    let protocol = protocol_of(&rq, path_of(rq.url()));
    let cors = http::cors::cors_grant(&rq);
    let err = ApiError::new(
        ErrorKind::Busy,
        "claudegate is busy: every worker is occupied and the queue is full; retry shortly",
    )
    .retry_after(1);
    log::error(&format!(
        "queue full: {} {} -> 503",
        rq.method(),
        path_of(rq.url())
    ));
    http::send(rq, Reply::error(&err, protocol), &cors);
}

fn worker(state: &State, server: &Server) {
    // `recv` fails only when the server is shutting down or an accept error is reported
    // (tiny_http logs those); either way there is no request to answer.
    loop {
        if let Ok(rq) = server.recv() {
            handle(state, rq);
            state.jobs.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One request, isolated: whatever the handler does, the client gets an answer and the
/// worker survives.
fn handle(state: &State, rq: Request) {
    let started = Instant::now();
    let method = rq.method().clone();
    let path = path_of(rq.url()).to_string();
    let protocol = protocol_of(&rq, &path);
    let cors = http::cors::cors_grant(&rq);
    record::begin(route_name(&path), http::client_ip(&rq));
    let mut slot = Some(rq);
    let status = match panic::catch_unwind(AssertUnwindSafe(|| {
        route(state, &mut slot, &path, protocol, &cors)
    })) {
        Ok(status) => status,
        Err(_) => {
            if let Some(rq) = slot.take() {
                let err = ApiError::new(
                    ErrorKind::Internal,
                    "internal error in claudegate; see its log",
                );
                http::send(rq, Reply::error(&err, protocol), &cors);
            }
            500
        }
    };
    record(state, status);
    log::verbose(&format!(
        "{method} {path} -> {status} in {} ms",
        started.elapsed().as_millis()
    ));
}

/// Closes this thread's request record: metrics for every request, an audit line for those
/// that passed authentication.
fn record(state: &State, status: u16) {
    let Some(r) = record::finish() else { return };
    let ended = Instant::now();
    let total = ended.saturating_duration_since(r.started).as_micros() as u64;
    let ttfb = r.first_byte.map_or(total, |t| {
        t.saturating_duration_since(r.started).as_micros() as u64
    });
    METRICS.request(r.route, status, total, ttfb);
    METRICS.tokens(r.usage);
    if let Some(key) = &r.key {
        let backend = match state.config.backend {
            crate::config::Backend::Oauth => "oauth",
            crate::config::Backend::ClaudeCli => "claude-cli",
        };
        let line = audit::line(&r, key, backend, status, state.oauth.account.state(), ended);
        state.audit.write(line);
    }
}

/// Sends `reply` through the request in `slot`; returns the status for the log line.
fn finish(slot: &mut Option<Request>, reply: Reply, cors: &[(&'static str, String)]) -> u16 {
    let status = reply.status;
    if let Some(rq) = slot.take() {
        http::send(rq, reply, cors);
    }
    status
}

fn route(
    state: &State,
    slot: &mut Option<Request>,
    path: &str,
    protocol: Protocol,
    cors: &[(&'static str, String)],
) -> u16 {
    let Some(rq) = slot.as_mut() else { return 500 };
    // Debug builds only: lets the tests prove a panicking handler is answered and survived.
    #[cfg(debug_assertions)]
    if path == "/debug/panic" {
        panic!("deliberate panic for the tests");
    }
    let found = ROUTES.iter().find(|(p, _, _)| *p == path);
    let route = match found {
        None => {
            let err = ApiError::new(ErrorKind::NotFound, format!("no route for {path}"));
            return finish(slot, Reply::error(&err, protocol), cors);
        }
        Some((_, _, m)) if m != rq.method() => {
            let err = ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("{path} accepts {m} only, not {}", rq.method()),
            )
            .with_header("Allow", format!("{m}, OPTIONS"));
            return finish(slot, Reply::error(&err, protocol), cors);
        }
        Some((_, route, _)) => *route,
    };

    match route {
        // Normally answered by the dispatcher; kept here so the table is complete.
        Route::Health => {
            return finish(slot, Reply::json(200, br#"{"status":"ok"}"#.to_vec()), cors)
        }
        // Telemetry is dropped unread, so it needs no key and costs nothing.
        Route::EventLogging => return finish(slot, Reply::json(200, b"{}".to_vec()), cors),
        Route::Metrics if state.config.metrics.public => {
            return finish(slot, metrics_page(state), cors)
        }
        _ => {}
    }

    let key = match authenticate(state, rq) {
        Ok(key) => key,
        Err(err) => return finish(slot, Reply::error(&err, protocol), cors),
    };
    record::note_key(&key.label);

    // Page fetches have their own bucket (`fetch.rpm`) and never spend the model limits.
    if route == Route::Fetch {
        let Some(rq) = slot.take() else { return 500 };
        return crate::routes::fetch::handle(state, rq, &key, cors);
    }

    let _slot_guard = if route.uses_backend() {
        match state.limits.admit(&key) {
            Ok(guard) => Some(guard),
            Err(refusal) => {
                return finish(slot, Reply::error(&refusal.into(), protocol), cors);
            }
        }
    } else {
        None
    };

    if state.config.backend == crate::config::Backend::ClaudeCli {
        match route {
            Route::Messages | Route::CountTokens | Route::Responses => {
                let err = ApiError::new(
                    ErrorKind::NotImplemented,
                    format!(
                        "{path} needs the oauth backend (backend: \"oauth\"); the claude-cli backend serves /v1/complete and text-only /v1/chat/completions"
                    ),
                );
                return finish(slot, Reply::error(&err, protocol), cors);
            }
            _ => {}
        }
    }
    let reply = match route {
        Route::Messages | Route::CountTokens => {
            let Some(rq) = slot.take() else { return 500 };
            return crate::routes::messages::handle(
                state,
                rq,
                &key,
                route == Route::CountTokens,
                cors,
            );
        }
        Route::ChatCompletions | Route::Responses => {
            let Some(rq) = slot.take() else { return 500 };
            return openai_door(state, rq, &key, route, cors);
        }
        Route::Complete => {
            let Some(rq) = slot.take() else { return 500 };
            return crate::routes::complete::handle(state, rq, &key, cors);
        }
        Route::Metrics => metrics_page(state),
        Route::AdminAccounts => Reply::json(
            200,
            state.oauth.account.admin_view().to_string().into_bytes(),
        ),
        Route::Models => {
            let list = match protocol {
                Protocol::Anthropic => state.models.anthropic_list(),
                Protocol::OpenAi | Protocol::Relay => state.models.openai_list(),
            };
            Reply::json(200, list.to_string().into_bytes())
        }
        // Answered above (health, telemetry, fetch); kept so a new route cannot fall through
        // silently.
        Route::Health | Route::EventLogging | Route::Fetch => {
            let err = ApiError::new(ErrorKind::Internal, format!("{path} was not routed"));
            Reply::error(&err, protocol)
        }
    };
    finish(slot, reply, cors)
}

/// `GET /metrics`, Prometheus text format.
fn metrics_page(state: &State) -> Reply {
    let (account_state, cooldown_until, ratelimit) = state.oauth.account.gauges();
    let page = crate::observe::metrics::render(&crate::observe::metrics::Gauges {
        workers: state.config.workers,
        jobs: state.jobs.load(Ordering::Acquire),
        account_state,
        cooldown_until,
        ratelimit,
    });
    let mut reply = Reply::json(200, page.into_bytes());
    reply.headers = vec![(
        "Content-Type",
        "text/plain; version=0.0.4; charset=utf-8".into(),
    )];
    reply
}

/// The OpenAI front doors.
fn openai_door(
    state: &State,
    rq: Request,
    key: &KeyInfo,
    route: Route,
    cors: &[(&'static str, String)],
) -> u16 {
    let door = match route {
        Route::ChatCompletions => crate::routes::openai::Door::Chat,
        _ => crate::routes::openai::Door::Responses,
    };
    crate::routes::openai::handle(state, rq, key, door, cors)
}

/// Finds a valid key in `Authorization: Bearer …` or `x-api-key`. Failures are counted per
/// client IP; past `limits.auth_failures_per_minute` they get 429 instead of 401.
fn authenticate(state: &State, rq: &Request) -> Result<KeyInfo, ApiError> {
    let bearer = http::header(rq, "Authorization").and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let x_api_key = http::header(rq, "x-api-key").map(str::trim);
    let presented: Vec<&str> = [bearer, x_api_key]
        .into_iter()
        .flatten()
        .filter(|k| !k.is_empty())
        .collect();
    for key in &presented {
        if let Some(info) = state.keys.authenticate(key) {
            return Ok(info);
        }
    }
    if let Some(refusal) = state.limits.auth_failure(http::client_ip(rq)) {
        return Err(refusal.into());
    }
    let message = if presented.is_empty() {
        "missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
    } else {
        "invalid API key (it may have been revoked); mint one with `claudegate keys add LABEL`"
    };
    Err(ApiError::new(ErrorKind::Authentication, message)
        .with_header("WWW-Authenticate", "Bearer".into()))
}
