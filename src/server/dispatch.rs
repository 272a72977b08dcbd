//! Routing a request inside a worker: the routing table (404/405), authentication (401/429),
//! the key's scope (403), the limits (429), then the route's handler. Every answer in the
//! caller's protocol.

use tiny_http::{Method, Request};

use crate::base::error::{ApiError, ErrorKind, Protocol};
use crate::guard::keys::{KeyInfo, Scope};
use crate::http::{self, Cors, Reply};
use crate::observe::record;
use crate::routes::openai::Door;
use crate::routes::pages;
use crate::routes::state::State;
use crate::routes::status;

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
    AdminStatus,
    StatusPage,
    Metrics,
    EventLogging,
}

/// One row of the routing table.
struct Row {
    path: &'static str,
    route: Route,
    /// The one method the route accepts (besides `OPTIONS`, answered by the intake).
    method: Method,
    /// Its name in metrics and the audit log: a fixed set, so labels stay bounded.
    name: &'static str,
}

const fn row(path: &'static str, route: Route, method: Method, name: &'static str) -> Row {
    Row {
        path,
        route,
        method,
        name,
    }
}

/// The routing table. Paths are matched exactly, without the query string.
const ROUTES: &[Row] = &[
    row("/health", Route::Health, Method::Get, "health"),
    row("/v1/models", Route::Models, Method::Get, "models"),
    row("/v1/messages", Route::Messages, Method::Post, "messages"),
    row(
        "/v1/messages/count_tokens",
        Route::CountTokens,
        Method::Post,
        "count_tokens",
    ),
    row(
        "/v1/chat/completions",
        Route::ChatCompletions,
        Method::Post,
        "chat_completions",
    ),
    row("/v1/responses", Route::Responses, Method::Post, "responses"),
    row("/v1/complete", Route::Complete, Method::Post, "complete"),
    row("/v1/fetch", Route::Fetch, Method::Post, "fetch"),
    row(
        "/admin/accounts",
        Route::AdminAccounts,
        Method::Get,
        "admin_accounts",
    ),
    row(
        "/admin/status",
        Route::AdminStatus,
        Method::Get,
        "admin_status",
    ),
    // The status page is its own sign-in form: served without a key, it holds no data.
    row("/status", Route::StatusPage, Method::Get, "status_page"),
    row("/metrics", Route::Metrics, Method::Get, "metrics"),
    // Claude Code posts telemetry to its base URL; accepted and dropped.
    row(
        "/api/event_logging/batch",
        Route::EventLogging,
        Method::Post,
        "event_logging",
    ),
];

impl Route {
    /// The scope a key needs: the operator's views of the account and the server are for admin
    /// keys; everything else, `/v1/models` included, is for every key.
    fn scope(self) -> Scope {
        match self {
            Route::AdminAccounts | Route::AdminStatus | Route::Metrics => Scope::Admin,
            _ => Scope::App,
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
                | Route::AdminStatus
                | Route::StatusPage
                | Route::Metrics
                | Route::EventLogging
        )
    }
}

/// The metrics/audit name of a path; unknown paths are all `other`.
pub fn route_name(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|r| r.path == path)
        .map_or("other", |r| r.name)
}

/// The path of a request URL, without its query string.
pub fn path_of(url: &str) -> &str {
    url.split_once('?').map_or(url, |(p, _)| p)
}

/// Anthropic-shaped errors for Anthropic routes and for any request that announces itself with
/// `anthropic-version`; OpenAI-shaped for the rest.
pub fn protocol_of(rq: &Request, path: &str) -> Protocol {
    if path == "/v1/complete" || path == "/v1/fetch" {
        Protocol::Relay
    } else if path.starts_with("/v1/messages") || http::header(rq, "anthropic-version").is_some() {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    }
}

/// Sends `reply` through the request in `slot`; returns the status for the log line.
fn finish(slot: &mut Option<Request>, reply: Reply, cors: &Cors) -> u16 {
    let status = reply.status;
    if let Some(rq) = slot.take() {
        http::send(rq, reply, cors);
    }
    status
}

pub fn route(
    state: &State,
    slot: &mut Option<Request>,
    path: &str,
    protocol: Protocol,
    cors: &Cors,
) -> u16 {
    let Some(rq) = slot.as_mut() else { return 500 };
    // Debug builds only: lets the tests prove a panicking handler is answered and survived.
    #[cfg(debug_assertions)]
    if path == "/debug/panic" {
        panic!("deliberate panic for the tests");
    }
    let found = ROUTES.iter().find(|r| r.path == path);
    let route = match found {
        None => {
            let err = ApiError::new(ErrorKind::NotFound, format!("no route for {path}"));
            return finish(slot, Reply::error(&err, protocol), cors);
        }
        Some(Row { method: m, .. }) if m != rq.method() => {
            let err = ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("{path} accepts {m} only, not {}", rq.method()),
            )
            .with_header("Allow", format!("{m}, OPTIONS"));
            return finish(slot, Reply::error(&err, protocol), cors);
        }
        Some(row) => row.route,
    };

    match route {
        // Normally answered by the dispatcher; kept here so the table is complete.
        Route::Health => {
            return finish(slot, Reply::json(200, br#"{"status":"ok"}"#.to_vec()), cors)
        }
        // Telemetry is dropped unread, so it needs no key and costs nothing.
        Route::EventLogging => return finish(slot, Reply::json(200, b"{}".to_vec()), cors),
        Route::StatusPage => return finish(slot, status::page(), cors),
        Route::Metrics if state.config.metrics.public => {
            return finish(slot, pages::metrics(state), cors)
        }
        _ => {}
    }

    let (key, scope) = match authenticate(state, rq) {
        Ok(key) => key,
        Err(err) => return finish(slot, Reply::error(&err, protocol), cors),
    };
    record::note_key(&key.label);
    if !scope.allows(route.scope()) {
        let err = insufficient_scope(path, route.scope(), &key.label, scope);
        return finish(slot, Reply::error(&err, protocol), cors);
    }

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

    // A client that hangs up while the backend works for it gets its call abandoned
    // (server::watch); the watch ends when this function returns.
    let watch = match slot.as_ref() {
        Some(rq) if route.uses_backend() => Some(super::watch::watch(rq)),
        _ => None,
    };
    let status = serve(state, slot, route, &key, path, protocol, cors);
    match watch {
        Some(w) if w.abandoned() => CLIENT_CLOSED,
        _ => status,
    }
}

/// The status recorded (never sent) for a request whose client hung up before its answer was
/// done: nginx's 499 "client closed request", so the metrics and the audit log tell a client
/// that left from an upstream that failed.
const CLIENT_CLOSED: u16 = 499;

/// The route's handler, once the request is authenticated and admitted.
fn serve(
    state: &State,
    slot: &mut Option<Request>,
    route: Route,
    key: &KeyInfo,
    path: &str,
    protocol: Protocol,
    cors: &Cors,
) -> u16 {
    if state.config.backend == crate::config::Backend::ClaudeCli && route == Route::CountTokens {
        // Claude Code has no way to count tokens without running the request, and an estimate
        // would be a wrong number presented as a right one.
        let err = ApiError::new(
            ErrorKind::NotImplemented,
            format!(
                "{path} is not available on the claude-cli backend: Claude Code cannot count \
                 tokens without answering, and claudegate does not guess; use the oauth backend \
                 (backend: \"oauth\") for token counts"
            ),
        );
        return finish(slot, Reply::error(&err, protocol), cors);
    }
    let reply = match route {
        Route::Messages | Route::CountTokens => {
            let Some(rq) = slot.take() else { return 500 };
            return crate::routes::messages::handle(
                state,
                rq,
                key,
                route == Route::CountTokens,
                cors,
            );
        }
        Route::ChatCompletions | Route::Responses => {
            let Some(rq) = slot.take() else { return 500 };
            let door = match route {
                Route::ChatCompletions => Door::Chat,
                _ => Door::Responses,
            };
            return crate::routes::openai::handle(state, rq, key, door, cors);
        }
        Route::Complete => {
            let Some(rq) = slot.take() else { return 500 };
            return crate::routes::complete::handle(state, rq, key, cors);
        }
        Route::Metrics => pages::metrics(state),
        Route::AdminAccounts => pages::accounts(state),
        Route::AdminStatus => status::admin_status(state),
        Route::Models => pages::models(state, protocol == Protocol::Anthropic),
        // Answered above (health, telemetry, the status page, fetch); kept so a new route
        // cannot fall through silently.
        Route::Health | Route::EventLogging | Route::StatusPage | Route::Fetch => {
            let err = ApiError::new(ErrorKind::Internal, format!("{path} was not routed"));
            Reply::error(&err, protocol)
        }
    };
    finish(slot, reply, cors)
}

/// The 403 for a key whose scope does not reach the route: what it needs, and how to get it.
fn insufficient_scope(path: &str, needed: Scope, label: &str, has: Scope) -> ApiError {
    let mint = match needed {
        Scope::Admin => "claudegate keys add LABEL --admin",
        Scope::App => "claudegate keys add LABEL",
    };
    let needed = needed.name();
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "{path} needs a key with the {needed} scope; key {label:?} has the {} scope. \
             Mint one on the server with `{mint}`",
            has.name()
        ),
    )
    .with_header(
        "WWW-Authenticate",
        format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\""),
    )
}

/// Finds a valid key in `Authorization: Bearer …` or `x-api-key`, with its scope. Failures are
/// counted per client IP; past `limits.auth_failures_per_minute` they get 429 instead of 401.
fn authenticate(state: &State, rq: &Request) -> Result<(KeyInfo, Scope), ApiError> {
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
    if let Some(refusal) = state
        .limits
        .auth_failure(http::client_ip(rq, &state.config.trusted_proxies))
    {
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
