//! CPU profiles on demand (`/debug/pprof/profile`, `/debug/pprof/flamegraph`), taken with
//! the `pprof` crate by sampling every thread. One profile at a time: profiling is a
//! process-wide signal handler, and two overlapping ones would each see half the samples.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::http::{Request, Response};

/// Bounds on `seconds`: long enough for a slow reconcile, short enough not to tie up a
/// diagnostics thread for long.
pub const MIN_SECONDS: u64 = 1;
pub const MAX_SECONDS: u64 = 300;
/// Go's `net/http/pprof` default.
pub const DEFAULT_SECONDS: u64 = 30;
/// Sampling rate; 99 Hz avoids lock-step with 100 Hz timers.
const FREQUENCY: i32 = 99;

static RUNNING: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// pprof's protobuf, gzip-compressed (what `go tool pprof` and Speedscope read).
    Pprof,
    /// An SVG flame graph.
    Flamegraph,
}

fn error(status: u16, detail: &str) -> Response {
    Response::json(status, &serde_json::json!({"status": status, "detail": detail}))
}

pub fn handle(req: &Request, format: Format) -> Response {
    let seconds = match req.query_param("seconds") {
        None => DEFAULT_SECONDS,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (MIN_SECONDS..=MAX_SECONDS).contains(&n) => n,
            _ => {
                return error(
                    400,
                    &format!("invalid seconds {text:?}: must be a whole number from {MIN_SECONDS} to {MAX_SECONDS}"),
                )
            }
        },
    };
    if RUNNING.swap(true, Ordering::SeqCst) {
        return error(409, "a profile is already being taken; try again when it finishes");
    }
    let result = profile(Duration::from_secs(seconds), format);
    RUNNING.store(false, Ordering::SeqCst);
    match result {
        Ok(resp) => resp,
        Err(e) => error(500, &format!("profiling failed: {e}")),
    }
}

fn profile(duration: Duration, format: Format) -> Result<Response, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        // Unwinding through these while they hold locks can deadlock the sampler.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(duration);
    let report = guard.report().build().map_err(|e| e.to_string())?;
    match format {
        Format::Pprof => {
            use pprof::protos::Message;
            let profile = report.pprof().map_err(|e| e.to_string())?;
            let bytes = profile.write_to_bytes().map_err(|e| e.to_string())?;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&bytes).map_err(|e| e.to_string())?;
            Ok(Response::new(200, "application/octet-stream", gz.finish().map_err(|e| e.to_string())?))
        }
        Format::Flamegraph if report.data.is_empty() => {
            // inferno writes nothing for an empty profile; say why instead of an empty image.
            let svg = format!(
                "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\"><text x=\"10\" y=\"25\">No CPU samples in {} s: the process was idle.</text></svg>\n",
                duration.as_secs()
            );
            Ok(Response::new(200, "image/svg+xml", svg))
        }
        Format::Flamegraph => {
            let mut svg = Vec::new();
            report.flamegraph(&mut svg).map_err(|e| e.to_string())?;
            Ok(Response::new(200, "image/svg+xml", svg))
        }
    }
}
