//! The client side of HTTP/1.1 keep-alive: what our own clients (the CLI, the load harness)
//! do about a connection the server closed under them.

/// Sends an idempotent request (GET, PUT, DELETE) again, once, when the connection failed
/// under it. A kept-alive connection the server closes as the next request leaves (its idle
/// time-out, or a busy server handing the worker to a queued client) resets that request
/// though the server never saw it; RFC 9110 §9.2.2 lets a client retry such requests, as
/// Go's net/http (kumactl) does. The failed connection is not pooled, so the retry opens a
/// new one. Never for POST: it may have been processed.
pub fn retry_on_stale_connection<T>(mut send: impl FnMut() -> Result<T, ureq::Error>) -> Result<T, ureq::Error> {
    match send() {
        Err(ureq::Error::Io(e)) => {
            log::debug!("request failed on its connection ({e}); retrying on a new one");
            send()
        }
        other => other,
    }
}
