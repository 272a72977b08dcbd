//! Reading a request body under both a per-request limit and the server-wide body budget.

use std::io::{self, Read};

use tiny_http::Request;

use super::header;
use crate::base::error::{ApiError, ErrorKind};
use crate::guard::budget::{Body, BodyBudget};

fn busy_reading() -> ApiError {
    ApiError::new(
        ErrorKind::Busy,
        "the server is holding too many large request bodies right now; retry shortly",
    )
    .retry_after(1)
}

fn read_failed(e: io::Error) -> ApiError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ApiError::new(
            ErrorKind::Timeout,
            "the request body did not arrive in time (client_timeout_ms)",
        ),
        _ => ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body could not be read (connection broken or bad chunked encoding)",
        ),
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        format!("request body is larger than the limit of {max} bytes (max_body_bytes)"),
    )
    .with_header("Connection", "close".into())
}

/// Reads the whole body: refused with 413 from `Content-Length` before reading, or while
/// reading a chunked body as soon as it passes `max`. Exactly one copy is held.
pub fn read_body<'a>(
    rq: &mut Request,
    max: u64,
    budget: &'a BodyBudget,
) -> Result<Body<'a>, ApiError> {
    let chunked = header(rq, "Transfer-Encoding").is_some();
    let declared = header(rq, "Content-Length");
    let mut reservation = budget.empty();
    if !chunked {
        let len = match declared {
            None => 0,
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                ApiError::new(ErrorKind::InvalidRequest, "Content-Length is not a number")
                    .with_header("Connection", "close".into())
            })?,
        };
        if len > max {
            return Err(too_large(max));
        }
        if !reservation.grow_to(len) {
            return Err(busy_reading());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        rq.as_reader()
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(read_failed)?;
        if (bytes.len() as u64) < len {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "the request body ended before Content-Length bytes arrived",
            ));
        }
        return Ok(Body { bytes, reservation });
    }
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let reader = rq.as_reader();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failed(e)),
        };
        let total = (bytes.len() + n) as u64;
        if total > max {
            return Err(too_large(max));
        }
        // Reserve ahead in doubling steps so the budget lock is taken O(log n) times.
        let ahead = (total * 2).max(64 * 1024).min(max);
        if total > reservation.held && !reservation.grow_to(ahead) && !reservation.grow_to(total) {
            return Err(busy_reading());
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    Ok(Body { bytes, reservation })
}
