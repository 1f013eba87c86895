//! The client side of HTTP/1.1 keep-alive: what our own clients (the CLI, the load harness)
//! do about a connection the server closed under them.

/// Sends an idempotent request (GET, PUT, DELETE) again when the connection failed under
/// it. A kept-alive connection the server closes as the next request leaves (its idle
/// time-out, or a busy server handing the worker to a queued client) resets that request
/// though the server never saw it; RFC 9110 §9.2.2 lets a client retry such requests, as
/// Go's net/http (kumactl) does. The failed connection is not pooled again, but the retry may
/// take another pooled one the server closed at the same moment: ureq keeps up to
/// three idle connections per host (`STALE_RETRIES`), so that many retries reach a new
/// connection. Never for POST: it may have been processed.
pub fn retry_on_stale_connection<T>(mut send: impl FnMut() -> Result<T, ureq::Error>) -> Result<T, ureq::Error> {
    let mut retries = 0;
    loop {
        match send() {
            Err(ureq::Error::Io(e)) if retries < STALE_RETRIES => {
                retries += 1;
                log::debug!("request failed on its connection ({e}); retrying on another one");
            }
            other => return other,
        }
    }
}

/// ureq's default `max_idle_connections_per_host`, which every agent here keeps.
const STALE_RETRIES: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> ureq::Error {
        ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    }

    #[test]
    fn io_failures_are_retried_until_a_request_goes_through_or_the_retries_run_out() {
        let mut calls = 0;
        let r = retry_on_stale_connection(|| {
            calls += 1;
            if calls <= STALE_RETRIES {
                Err(io_error())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), STALE_RETRIES + 1);
        let mut calls = 0;
        let r: Result<(), _> = retry_on_stale_connection(|| {
            calls += 1;
            Err(io_error())
        });
        assert!(matches!(r, Err(ureq::Error::Io(_))));
        assert_eq!(calls, STALE_RETRIES + 1);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), _> = retry_on_stale_connection(|| {
            calls += 1;
            Err(ureq::Error::StatusCode(503))
        });
        assert!(matches!(r, Err(ureq::Error::StatusCode(503))));
        assert_eq!(calls, 1);
    }
}
