//! `higuma run`, `higuma config check` and `higuma migrate up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::select;
use higuma::config::{self, StoreType};
use higuma::daemon::Daemon;
use higuma::store::postgres;

/// After the first SIGTERM/SIGINT, how long a graceful stop may take before higuma exits
/// anyway (systemd's default stop timeout is 90 s; this keeps restarts quick).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

pub fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let loaded = config::load_from_process(path)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    println!("config is valid{}", path.map(|p| format!(": {}", p.display())).unwrap_or_default());
    if !loaded.derived.is_empty() {
        println!("effective values derived from related settings:");
        for d in &loaded.derived {
            println!("  {d}");
        }
    }
    Ok(())
}

pub fn migrate_up(path: Option<&Path>) -> anyhow::Result<()> {
    let loaded = config::load_from_process(path).context("invalid configuration")?;
    let cfg = &loaded.config.store;
    if cfg.r#type != StoreType::Postgres {
        anyhow::bail!("store.type is memory: there is no database to migrate (set KUMA_STORE_TYPE=postgres)");
    }
    let outcome = postgres::migrate_up(&cfg.postgres)?;
    if outcome.applied == 0 {
        println!("DB has already been migrated (schema version {})", outcome.to);
    } else {
        println!(
            "DB migrated from schema version {} to {} ({} migration(s) applied)",
            outcome.from.map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
            outcome.to,
            outcome.applied
        );
    }
    Ok(())
}

enum Signal {
    Stop,
    Reload,
}

/// Every dataplane holds a socket: raise the open-file limit to its hard maximum, as kuma-cp
/// does, and warn when that is still small.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return;
        }
        if l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
        if l.rlim_cur < 4096 {
            log::warn!("the open-file limit is {}; each dataplane needs a socket (raise LimitNOFILE)", l.rlim_cur);
        }
    }
}

pub fn run(path: Option<&Path>) -> anyhow::Result<()> {
    raise_open_file_limit();
    let loaded = config::load_from_process(path).context("invalid configuration")?;
    for warning in &loaded.warnings {
        log::warn!("config: {warning}");
    }
    // Explicit keys were warned about above; defaults that yielded are worth one info line.
    for d in loaded.derived.iter().filter(|d| !d.explicit) {
        log::info!("config: {d}");
    }
    let daemon = Daemon::start(loaded.config)?;
    let (tx, rx) = crossbeam_channel::unbounded::<Signal>();
    let stop_tx = tx.clone();
    let signals = std::sync::atomic::AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        // The first signal asks for a graceful stop; a second one means "now".
        if signals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            eprintln!("second signal: exiting immediately");
            std::process::exit(130);
        }
        let _ = stop_tx.send(Signal::Stop);
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    // ctrlc's termination feature also takes SIGHUP, which must reload instead. Give SIGHUP
    // back to the default disposition so that signal-hook, registered next, does not chain
    // to ctrlc's handler (it never calls a default one).
    // SAFETY: resetting a disposition to SIG_DFL touches no Rust state.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_DFL);
    }
    let mut hups =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]).context("installing the SIGHUP handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in hups.forever() {
                if tx.send(Signal::Reload).is_err() {
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let path: Option<PathBuf> = path.map(Path::to_path_buf);
    loop {
        select! {
            recv(rx) -> sig => match sig {
                Ok(Signal::Reload) => {
                    log::info!("SIGHUP: reloading {}", path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "the environment (no config file)".into()));
                    if let Err(e) = daemon.reload(path.as_deref()) {
                        log::error!("reload rejected, the config in force is unchanged: {e}");
                    }
                }
                Ok(Signal::Stop) | Err(_) => break,
            }
        }
    }
    log::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(|| {
            std::thread::sleep(SHUTDOWN_DEADLINE);
            eprintln!("graceful shutdown took longer than {SHUTDOWN_DEADLINE:?}; exiting");
            std::process::exit(1);
        })
        .context("starting the shutdown deadline")?;
    daemon.shutdown();
    Ok(())
}
