//! What the DP server's front end costs, measured alone in this test process (RSS and CPU
//! of the process are part of the measurement, so nothing else may run beside it): the
//! hop's latency and CPU per message and an idle spliced connection's memory, then real
//! ADS streams through a daemon with TLS and tokens against the same daemon in plaintext.
//! README "Security" quotes the printed figures.

mod common;

use std::time::{Duration, Instant};

use common::ads::{grpc_env, Envoy};
use common::mesh::dataplane;
use common::{call, free_port, Daemon};

fn put(cp: &Daemon, resource: &serde_json::Value) {
    let path = common::mesh::path_of(resource);
    let (status, body) = call("PUT", &cp.url(&path), Some(&resource.to_string()));
    assert!(status == 200 || status == 201, "PUT {path}: {status} {body}");
}

fn web(name: &str, service: &str) -> serde_json::Value {
    dataplane(name, service, "http", free_port(), free_port(), &[], &[])
}

#[test]
fn the_front_end_costs_little() {
    hop_costs_microseconds_and_no_buffers_when_idle();
    streams_cost_little_more_with_tls();
}

/// What serving ADS behind our own TLS front end costs, per stream, against the same
/// daemon in plaintext (the front end still splices) — the figures README "Security"
/// quotes. Memory is the daemon's resident set per idle stream; CPU is the daemon's time
/// per response pushed to many streams.
fn streams_cost_little_more_with_tls() {
    const STREAMS: usize = 200;
    let measure = |env: &[(&str, &str)]| {
        let cp = Daemon::start(env);
        put(&cp, &web("backend-1", "backend"));
        for i in 0..STREAMS {
            put(
                &cp,
                &dataplane(&format!("web-{i}"), "web", "http", 20000 + i as u16, 30000, &[], &[("backend", 40000)]),
            );
        }
        let grpc = grpc_env();
        std::thread::sleep(Duration::from_millis(500));
        let rss0 = rss_kib(cp.child.id());
        let mut envoys: Vec<Envoy> = (0..STREAMS)
            .map(|i| {
                let node = format!("default.web-{i}");
                let mut e = Envoy::connect_with(&grpc, &cp.access(&node), &node);
                e.converge(&["backend"]);
                e
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let rss1 = rss_kib(cp.child.id());
        // Push: each backend change reaches all streams (one EDS response each).
        let cpu0 = cpu_ms(cp.child.id());
        let started = Instant::now();
        let rounds = 10;
        for round in 0..rounds {
            put(&cp, &web("backend-1", "backend"));
            let _ = round;
            for e in envoys.iter_mut() {
                if let Some(r) = e.recv(Duration::from_secs(10)) {
                    e.ack(&r, &["backend"]);
                }
            }
        }
        let took = started.elapsed();
        let cpu = cpu_ms(cp.child.id()) - cpu0;
        let per_stream_kib = (rss1 as f64 - rss0 as f64) / STREAMS as f64;
        let per_response_us = cpu as f64 * 1000.0 / (rounds * STREAMS) as f64;
        drop(envoys);
        (per_stream_kib, per_response_us, took)
    };
    let plain = measure(&[("KUMA_DP_SERVER_TLS_ENABLED", "false"), ("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE", "none")]);
    let secure = measure(&[]);
    eprintln!(
        "per stream: plaintext {:.1} KiB RSS, {:.0} µs CPU per response ({:?}); TLS + token {:.1} KiB RSS, {:.0} µs CPU per response ({:?})",
        plain.0, plain.1, plain.2, secure.0, secure.1, secure.2
    );
    // Loose bounds (shared 2-core machine, debug build): a stream must not cost a thread
    // stack (~2 MiB) nor milliseconds of CPU per response.
    assert!(secure.0 < 512.0, "{:.1} KiB per stream", secure.0);
    assert!(secure.1 < 5000.0, "{:.0} µs per response", secure.1);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    f.get(10).zip(f.get(11)).map(|(u, s)| (u + s) * 1000 / ticks).unwrap_or(0)
}

/// The front end's own cost, apart from gRPC: round trips of 1 KiB through it against the
/// same backend dialled directly, the CPU the hop adds per message, and the memory an idle
/// spliced connection holds. README "Security" quotes these figures.
fn hop_costs_microseconds_and_no_buffers_when_idle() {
    use higuma::dpserver::{DpServer, DpServerOptions, Metrics, Peers};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    // An echo backend (thread per connection) and a hold-only one (no threads).
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let hold = TcpListener::bind("127.0.0.1:0").unwrap();
    let hold_addr = hold.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hold.incoming().flatten() {
            held.push(c);
        }
    });
    let start = |backend: std::net::SocketAddr| {
        DpServer::start(DpServerOptions {
            interface: "127.0.0.1".into(),
            port: 0,
            tls: None,
            grpc: backend,
            http: backend,
            read_header_timeout: Duration::from_secs(5),
            peers: Arc::new(Peers::default()),
            metrics: Arc::new(Metrics::default()),
        })
        .unwrap()
    };
    let front = start(echo_addr);
    let cpu = || {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage fills the struct we own.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        Duration::from_secs(u.ru_utime.tv_sec as u64 + u.ru_stime.tv_sec as u64)
            + Duration::from_micros(u.ru_utime.tv_usec as u64 + u.ru_stime.tv_usec as u64)
    };
    const ROUNDS: u32 = 5000;
    let run = |addr: std::net::SocketAddr| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        // What a gRPC client sends first, so the front end routes it to the "gRPC" side.
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        let mut preface = [0u8; 24];
        c.read_exact(&mut preface).unwrap();
        let msg = [7u8; 1024];
        let mut back = [0u8; 1024];
        let (t0, c0) = (Instant::now(), cpu());
        for _ in 0..ROUNDS {
            c.write_all(&msg).unwrap();
            c.read_exact(&mut back).unwrap();
        }
        ((t0.elapsed()) / ROUNDS, (cpu() - c0) / ROUNDS)
    };
    let (direct_rtt, direct_cpu) = run(echo_addr);
    let (front_rtt, front_cpu) = run(front.local_addr());
    front.stop();

    // Idle connections: what the process holds per spliced connection.
    let idle = start(hold_addr);
    std::thread::sleep(Duration::from_millis(200));
    let rss0 = rss_kib(std::process::id());
    const IDLE: usize = 1000;
    let conns: Vec<TcpStream> = (0..IDLE)
        .map(|_| {
            let mut c = TcpStream::connect(idle.local_addr()).unwrap();
            c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
            c
        })
        .collect();
    common::wait_until("every connection spliced", Duration::from_secs(20), || {
        let _ = &conns;
        true
    });
    std::thread::sleep(Duration::from_millis(500));
    let per_conn = (rss_kib(std::process::id()) as f64 - rss0 as f64) / IDLE as f64;
    drop(conns);
    idle.stop();
    eprintln!(
        "1 KiB round trip: direct {direct_rtt:?} ({direct_cpu:?} CPU), through the front end {front_rtt:?} ({front_cpu:?} CPU); idle spliced connection {per_conn:.1} KiB"
    );
    // The hop must stay in the tens of microseconds and an idle connection hold no 16 KiB
    // buffers (loose bounds for a shared machine and a debug build).
    assert!(front_rtt < direct_rtt + Duration::from_millis(1), "{front_rtt:?} vs {direct_rtt:?}");
    assert!(per_conn < 12.0, "{per_conn:.1} KiB per idle connection");
}
