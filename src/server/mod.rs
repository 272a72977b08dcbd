//! The server: the accept loop, the worker pool and panic isolation. The intake (`intake.rs`)
//! and the routing inside a worker (`dispatch.rs`) have their own files.
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
//! While a backend works for a request, `watch.rs` watches its client and abandons the call of
//! one that hangs up. Once everything runs, the main thread waits for SIGTERM or SIGINT and
//! stops the server cleanly (`stop.rs`).

mod connections;
mod dispatch;
mod intake;
mod stop;
mod watch;

use std::io::IsTerminal;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Request, Server};

use crate::anthropic::catalogue::Catalogue;
use crate::backends::oauth::account::Account;
use crate::backends::oauth::cloak::Cloak;
use crate::backends::oauth::OauthBackend;
use crate::backends::upstream::Upstream;
use crate::base::error::{ApiError, ErrorKind};
use crate::base::log;
use crate::config::Config;
use crate::guard::budget::{BodyBudget, Pace};
use crate::guard::keys::{self, KeyStore};
use crate::guard::limits::{self, Limits};
use crate::http::{self, Reply};
use crate::observe::metrics::METRICS;
use crate::observe::{audit, record};
use crate::routes::state::State;
use dispatch::{path_of, protocol_of, route, route_name};

/// Runs the server in the foreground until SIGTERM or SIGINT, which `main` must have blocked
/// before any thread started (`base::sys::block_stop_signals`); returns once it has stopped
/// cleanly.
pub fn run(config: Config) -> Result<(), String> {
    let ms = config.client_timeout_ms;
    tiny_http::SOCKET_READ_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    tiny_http::SOCKET_WRITE_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    log::set_level(config.debug.level());
    install_panic_hook();
    connections::raise_open_files_limit(&config);
    // Set once; a second `set` (never made) would keep the first.
    let _ = tiny_http::ERROR_BODY.set(connections::error_body);

    let data_dir = config.data_dir();
    crate::base::fsutil::ensure_private_dir(&data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", data_dir.display()))?;
    // Modes left by an older version, a backup or a hand copy are warned about and tightened.
    crate::base::fsutil::tighten_private(&[
        data_dir.clone(),
        keys::file_path(&data_dir),
        crate::backends::oauth::token::token_path(&data_dir),
        limits::usage_path(&data_dir),
        crate::backends::oauth::usage::saved_path(&data_dir),
        crate::backends::oauth::cloak::device_id_path(&data_dir),
        audit::log_path(&config.audit, &data_dir),
    ]);
    let keys_path = keys::file_path(&data_dir);
    let keys = KeyStore::open(keys_path.clone())?;
    if keys.is_empty() {
        first_run_key(&keys_path)?;
    }

    let token_path = crate::backends::oauth::token::token_path(&data_dir);
    let account = Account::load(config.oauth.clone(), token_path.clone())?;
    if config.backend == crate::config::Backend::Oauth {
        warn_unless_logged_in(&token_path);
    }
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
        limits: Limits::new(
            config.limits.clone(),
            config.workers,
            limits::usage_path(&data_dir),
        ),
        bodies: BodyBudget::new(
            config.max_inflight_body_bytes,
            Pace {
                grace: Duration::from_millis(config.body_grace_ms),
                min_bytes_per_s: config.body_min_bytes_per_s,
            },
        ),
        models: Catalogue::new(config.models.clone(), crate::base::clock::unix_now()),
        jobs: AtomicUsize::new(0),
        started: Instant::now(),
        config,
    });

    // The intake is part of the server from its first connection on: a request that slipped
    // past it would be handled without being counted in `jobs`.
    let addr = format!("{}:{}", state.config.host, state.config.port);
    let intake_state = state.clone();
    let intake = Box::new(move |rq| intake::intake(&intake_state, rq));
    let table = connections::Connections::new(
        state.config.max_connections,
        state.config.max_connections_per_ip,
    );
    let admit: tiny_http::Admit = Box::new(move |peer| {
        table
            .admit(peer)
            .map(|slot| Box::new(slot) as tiny_http::Admission)
    });
    let server = Server::http_with_hooks(&addr, intake, Some(admit))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or(addr.clone(), |a| a.to_string());
    let server = Arc::new(server);
    for i in 0..state.config.workers {
        let (state, server) = (state.clone(), server.clone());
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(512 * 1024)
            .spawn(move || worker(&state, &server))
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
    }
    let refresher = state.clone();
    thread::Builder::new()
        .name("token-refresh".into())
        .spawn(move || refresher.oauth.account.keep_fresh())
        .map_err(|e| format!("cannot start token refresh thread: {e}"))?;
    watch::start()?;
    // The upstream's model list for /v1/models, fetched off every request's path.
    if crate::backends::oauth::models::wanted(&state.config) {
        let s = state.clone();
        thread::Builder::new()
            .name("model-list".into())
            .spawn(move || {
                crate::backends::oauth::models::keep_current(&s.oauth, &s.models, &s.config)
            })
            .map_err(|e| format!("cannot start the model list thread: {e}"))?;
    }
    // The subscription's usage windows, read and saved off every request's path.
    if crate::backends::oauth::usage::wanted(&state.config) {
        let (s, saved) = (
            state.clone(),
            crate::backends::oauth::usage::saved_path(&data_dir),
        );
        thread::Builder::new()
            .name("usage".into())
            .spawn(move || crate::backends::oauth::usage::keep_current(&s.oauth, &s.config, &saved))
            .map_err(|e| format!("cannot start the usage thread: {e}"))?;
    }
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

    stop::serve_until_signalled(&state, &server)
}

/// A server with no usable login starts anyway (a login can arrive while it runs: the token
/// file is watched), but says at once why its requests will fail and what fixes it, instead of
/// leaving that to the first client's 503.
fn warn_unless_logged_in(token_path: &std::path::Path) {
    use crate::backends::oauth::token::{load_token, LoginState};
    // An unreadable file was already refused by `Account::load`; read errors here mean a race
    // with a login being written, which needs no warning.
    let Ok(token) = load_token(token_path) else {
        return;
    };
    let state = LoginState::of(token.as_ref(), crate::base::clock::unix_now());
    if state.needs_action() {
        log::info(&format!(
            "login: {}; until then every model request is answered 503",
            state.describe()
        ));
    }
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
    // The operator's own key, shown only on the operator's terminal: it may also read the
    // account and the metrics. Apps get app keys from `keys add`.
    let grant = keys::Grant {
        scope: keys::Scope::Admin,
        ..keys::Grant::default()
    };
    let secret = keys::add(keys_path, "default", grant)?;
    println!(
        "\nclaudegate: no API keys existed, so one was minted for you (label \"default\", admin scope).\n\
         Copy it now: it is shown only this once and stored only as a hash.\n\n    {secret}\n\n\
         Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`. It can also read\n\
         /admin/accounts and /metrics; give each app a key of its own, without that power:\n\
         `claudegate keys add LABEL` (and `keys list`, `keys revoke LABEL`).\n"
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

fn worker(state: &State, server: &Server) {
    // `recv` fails only when the server is shutting down or an accept error is reported
    // (tiny_http logs those); either way there is no request to answer.
    loop {
        if let Ok(rq) = server.recv() {
            if stop::cut() {
                intake::refuse_stopping(rq); // still queued when the shutdown grace ended
            } else {
                handle(state, rq);
            }
            state.jobs.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One request, isolated: whatever the handler does, the client gets an answer and the
/// worker survives.
///
/// Never inlined into [`worker`]: the request path's frames are large, and a function's whole
/// frame is touched (stack probes) when it is entered. Inlined, every idle worker kept those
/// pages resident while it waited in `recv`; measured with 80 idle workers (static musl
/// build): 3.8 MB inlined, 2.5 MB not.
#[inline(never)]
fn handle(state: &State, rq: Request) {
    let started = Instant::now();
    let method = rq.method().clone();
    let path = path_of(rq.url()).to_string();
    let protocol = protocol_of(&rq, &path);
    let cors = http::cors::cors_grant(&rq);
    record::begin(
        route_name(&path),
        http::client_ip(&rq, &state.config.trusted_proxies),
    );
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
