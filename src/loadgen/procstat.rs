//! CPU time and memory of a process, read from /proc (Linux).

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStat {
    /// User + system CPU seconds so far.
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    /// Peak resident set size so far (VmHWM).
    pub peak_rss_bytes: u64,
}

/// Clock ticks per second for /proc/<pid>/stat times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no side effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn read(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Some(ProcStat {
        cpu_secs: (utime + stime) / ticks_per_sec(),
        rss_bytes: kb("VmRSS:"),
        peak_rss_bytes: kb("VmHWM:"),
    })
}

pub fn read_self() -> ProcStat {
    read(std::process::id()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let before = super::read_self();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let after = super::read_self();
        assert!(after.rss_bytes > 0 && after.peak_rss_bytes >= after.rss_bytes);
        assert!(after.cpu_secs >= before.cpu_secs);
    }
}
