//! `higuma run` and `higuma config check`.

use std::path::Path;

use anyhow::Context;
use higuma::config;
use higuma::daemon::Daemon;

pub fn check(path: Option<&Path>) -> anyhow::Result<()> {
    let loaded = config::load_from_process(path)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    println!("config is valid{}", path.map(|p| format!(": {}", p.display())).unwrap_or_default());
    Ok(())
}

pub fn run(path: Option<&Path>) -> anyhow::Result<()> {
    let loaded = config::load_from_process(path).context("invalid configuration")?;
    for warning in &loaded.warnings {
        log::warn!("config: {warning}");
    }
    let daemon = Daemon::start(loaded.config)?;
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let signals = std::sync::atomic::AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        // The first signal asks for a graceful stop; a second one means "now".
        if signals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            eprintln!("second signal: exiting immediately");
            std::process::exit(130);
        }
        let _ = stop_tx.try_send(());
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    let _ = stop_rx.recv();
    log::info!("shutting down");
    daemon.shutdown();
    Ok(())
}
