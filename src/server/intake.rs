//! The intake: runs on each connection's own thread (vendor patch 7) before a request is
//! queued for a worker, and never waits for one. It answers `/health` and CORS preflights
//! itself, so `/health` stays fast while every worker holds a long stream, and it refuses a
//! request with 503 and `Retry-After` at once when every worker is busy and the queue is full,
//! so no request waits without bound.

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
