//! The local views: `GET /v1/models` (both list shapes), `GET /admin/accounts` and
//! `GET /metrics` (Prometheus text format). They read state kept elsewhere and call no backend.

use std::sync::atomic::Ordering;

use crate::http::Reply;
use crate::observe::metrics::{self, Gauges};
use crate::routes::state::State;

/// `GET /v1/models`: Anthropic's list shape for clients that send `anthropic-version`, else
/// OpenAI's.
pub fn models(state: &State, anthropic: bool) -> Reply {
    let list = if anthropic {
        state.models.anthropic_list()
    } else {
        state.models.openai_list()
    };
    Reply::json(200, list.to_string().into_bytes())
}

/// `GET /admin/accounts`: the account's state, cooldowns, usage windows and last rate-limit
/// headers.
pub fn accounts(state: &State) -> Reply {
    Reply::json(
        200,
        state.oauth.account.admin_view().to_string().into_bytes(),
    )
}

/// `GET /metrics`, Prometheus text format.
pub fn metrics(state: &State) -> Reply {
    let account = state.oauth.account.gauges();
    let page = metrics::render(&Gauges {
        workers: state.config.workers,
        jobs: state.jobs.load(Ordering::Acquire),
        account_state: account.state,
        cooldown_until: account.cooldown_until,
        ratelimit: account.ratelimit,
        windows: account.windows,
        failure_classes: account.failure_classes,
    });
    let mut reply = Reply::json(200, page.into_bytes());
    reply.headers = vec![(
        "Content-Type",
        "text/plain; version=0.0.4; charset=utf-8".into(),
    )];
    reply
}
