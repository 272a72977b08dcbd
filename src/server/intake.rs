//! The intake: runs on each connection's own thread (vendor patch 7) before a request is
//! queued for a worker, and never waits for one. It answers `/health` and CORS preflights
//! itself, so `/health` stays fast while every worker holds a long stream, and it refuses a
//! request with 503 and `Retry-After` at once when every worker is busy and the queue is full,
//! so no request waits without bound. While the server stops (`stop.rs`) it refuses every
//! request, `/health` included, so a load balancer stops sending any.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tiny_http::{Method, Request};

use super::dispatch::{path_of, protocol_of, route_name};
use crate::base::error::{ApiError, ErrorKind};
use crate::base::log;
use crate::http::{self, Reply};
use crate::observe::metrics::METRICS;
use crate::routes::state::State;

/// Runs on each connection's thread before a request is queued; never blocks on a worker.
/// Returns the request when a worker should handle it.
pub fn intake(state: &State, rq: Request) -> Option<Request> {
    if super::stop::draining() {
        refuse_stopping(rq);
        return None;
    }
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
    if state.jobs.fetch_add(1, Ordering::SeqCst) >= capacity {
        state.jobs.fetch_sub(1, Ordering::AcqRel);
        reject_busy(rq);
        return None;
    }
    // Counted first, then checked again: a stop that began meanwhile either sees this request
    // in flight (it reads `jobs` after raising its flag) or is seen here.
    if super::stop::draining() {
        state.jobs.fetch_sub(1, Ordering::AcqRel);
        refuse_stopping(rq);
        return None;
    }
    Some(rq)
}

fn reject_busy(rq: Request) {
    METRICS.queue_rejected();
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
    refuse(rq, &err);
}

/// Answers a request that arrives while the server stops (`stop.rs`): 503, `Retry-After` and
/// `Connection: close` (the client should reconnect, to wherever the service is next).
pub(super) fn refuse_stopping(rq: Request) {
    let err = ApiError::new(
        ErrorKind::Busy,
        "claudegate is shutting down and takes no new requests; retry shortly",
    )
    .retry_after(1)
    .with_header("Connection", "close".into());
    refuse(rq, &err);
}

/// Answers `rq` with `err` (a 503 of ours) in the caller's protocol, without a worker, and
/// counts it in the metrics.
fn refuse(rq: Request, err: &ApiError) {
    let path = path_of(rq.url());
    METRICS.request(route_name(path), err.status(), 0, 0);
    let protocol = protocol_of(&rq, path);
    let cors = http::cors::cors_grant(&rq);
    http::send(rq, Reply::error(err, protocol), &cors);
}
