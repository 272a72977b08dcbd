//! Reading a request body under the per-request limit (`max_body_bytes`), the server-wide body
//! budget (`max_inflight_body_bytes`) and the pace a body must keep ([`Pace`]).
//!
//! - **Size.** A declared `Content-Length` over the limit gets 413 before a byte is read; a
//!   chunked body gets it as soon as it passes the limit.
//! - **Budget.** Bytes are reserved as they arrive, a step ahead of what has arrived (64 KiB at
//!   first, then doubling, never past the declared length or the limit), and the buffer grows
//!   with the reservation. So the budget covers the memory a body really holds, and a declared
//!   length costs nothing until its bytes come: a few uploads that declare much and send
//!   little cannot make every other request fail with 503. Past the budget: 503 + Retry-After.
//! - **Pace.** Each socket read is bounded by `client_timeout_ms`; the body as a whole by the
//!   floor of [`Pace`], checked after every read, so it ends at most one read timeout after
//!   falling behind. Either way the answer is 408, and the connection is closed rather than
//!   kept: keeping it would mean reading the rest of the body at the client's pace.
//!
//! Exactly one copy of the body is held: bytes go from a 16 KiB read buffer on the stack into
//! the one `Vec` that is handed on (growing it briefly holds its old buffer while it moves).

use std::io::{self, Read};
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::header;
use crate::base::error::{ApiError, ErrorKind};
use crate::guard::budget::{Body, BodyBudget, Pace};

/// Bytes read from the socket at a time.
const CHUNK: usize = 16 * 1024;
/// The first reservation: small bodies take the budget's lock once, and a trickle holds little.
const FIRST_STEP: u64 = 64 * 1024;

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
        )
        .with_header("Connection", "close".into()),
        _ => ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body could not be read (connection broken or bad chunked encoding)",
        ),
    }
}

fn too_slow(got: u64, elapsed: Duration, pace: Pace) -> ApiError {
    ApiError::new(
        ErrorKind::Timeout,
        format!(
            "the request body is arriving too slowly: {got} bytes in {} ms, below the floor of {} \
             bytes per second after the first {} ms (body_min_bytes_per_s, body_grace_ms); \
             send it faster, or ask the operator to lower that floor",
            elapsed.as_millis(),
            pace.min_bytes_per_s,
            pace.grace.as_millis()
        ),
    )
    .with_header("Connection", "close".into())
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        format!("request body is larger than the limit of {max} bytes (max_body_bytes)"),
    )
    .with_header("Connection", "close".into())
}

/// The declared `Content-Length` (0 when there is none).
fn declared_length(rq: &Request) -> Result<u64, ApiError> {
    match header(rq, "Content-Length") {
        None => Ok(0),
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            ApiError::new(ErrorKind::InvalidRequest, "Content-Length is not a number")
                .with_header("Connection", "close".into())
        }),
    }
}

/// Reads the whole body: refused with 413 from `Content-Length` before reading, or while
/// reading a chunked body as soon as it passes `max`; with 503 when the budget cannot hold the
/// bytes that arrived; with 408 when it falls behind the budget's [`Pace`] or a read times out.
pub fn read_body<'a>(
    rq: &mut Request,
    max: u64,
    budget: &'a BodyBudget,
) -> Result<Body<'a>, ApiError> {
    let chunked = header(rq, "Transfer-Encoding").is_some();
    let declared = if chunked {
        None
    } else {
        Some(declared_length(rq)?)
    };
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    let mut reservation = budget.empty();
    let mut bytes = Vec::new();
    // The most bytes this body may bring: its declared length, or the limit when chunked.
    let most = declared.unwrap_or(max);
    if most == 0 {
        return Ok(Body { bytes, reservation });
    }
    let started = Instant::now();
    let mut chunk = [0u8; CHUNK];
    // One byte past `most`, so a chunked body over the limit shows itself (a declared length
    // ends the reader at exactly that many bytes).
    let mut reader = rq.as_reader().take(most.saturating_add(1));
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failed(e)),
        };
        let total = (bytes.len() + n) as u64;
        if total > most {
            return Err(too_large(max));
        }
        if total > reservation.held {
            // Reserve ahead in doubling steps so the budget's lock is taken O(log n) times.
            let ahead = total.saturating_mul(2).max(FIRST_STEP).min(most);
            if !reservation.grow_to(ahead) && !reservation.grow_to(total) {
                return Err(busy_reading());
            }
            bytes.reserve_exact(reservation.held as usize - bytes.len());
        }
        bytes.extend_from_slice(&chunk[..n]);
        if declared == Some(total) {
            break;
        }
        if budget.pace.behind(total, started.elapsed()) {
            return Err(too_slow(total, started.elapsed(), budget.pace));
        }
    }
    if declared.is_some_and(|len| (bytes.len() as u64) < len) {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body ended before Content-Length bytes arrived",
        ));
    }
    Ok(Body { bytes, reservation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::{Header, Method, TestRequest};

    const PACE: Pace = Pace {
        grace: Duration::from_secs(60),
        min_bytes_per_s: 1,
    };

    /// A POST whose body is `len` bytes of `x`, declaring `declared` bytes.
    fn post(len: usize, declared: u64) -> Request {
        let body: &'static str = Box::leak("x".repeat(len).into_boxed_str());
        let length = format!("Content-Length: {declared}");
        TestRequest::new()
            .with_method(Method::Post)
            .with_body(body)
            .with_header(length.parse::<Header>().unwrap())
            .into()
    }

    #[test]
    fn a_declared_length_reserves_nothing_until_its_bytes_arrive() {
        // 1 MB declared against a 100 KB budget: it used to be refused (503) before a byte was
        // read; now the 10 KB that came are held, and the body is refused for ending early.
        let budget = BodyBudget::new(100_000, PACE);
        let err = read_body(&mut post(10_000, 1_000_000), 2_000_000, &budget)
            .err()
            .unwrap();
        assert_eq!(err.status(), 400, "{err:?}");
        assert_eq!(budget.used(), 0, "returned");
    }

    #[test]
    fn the_reservation_covers_the_buffer_and_follows_the_bytes() {
        let budget = BodyBudget::new(1 << 20, PACE);
        let body = read_body(&mut post(300_000, 300_000), 2_000_000, &budget).unwrap();
        assert_eq!(body.bytes.len(), 300_000);
        assert!(
            body.bytes.capacity() as u64 <= budget.used(),
            "buffer within budget"
        );
        assert!(budget.used() <= 300_000, "never past the declared length");
        drop(body);
        assert_eq!(budget.used(), 0);
        // What really arrives is still bounded by the budget.
        let small = BodyBudget::new(200_000, PACE);
        let err = read_body(&mut post(300_000, 300_000), 2_000_000, &small)
            .err()
            .unwrap();
        assert_eq!(err.status(), 503, "{err:?}");
        assert_eq!(small.used(), 0);
    }

    #[test]
    fn an_oversized_declared_length_is_refused_before_reading() {
        let budget = BodyBudget::new(1 << 20, PACE);
        let err = read_body(&mut post(10, 5000), 1000, &budget).err().unwrap();
        assert_eq!(err.status(), 413);
        assert_eq!(budget.used(), 0);
    }
}
