//! The leader-only jobs' thread: while this instance leads it runs each job when due; on
//! gaining leadership every job starts a new term (forgets what an earlier term learnt) and
//! runs at once; on losing it nothing runs until the next term. Each job checks leadership
//! again before it writes, so a term that ends mid-run stops it at its next write.

use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Sender};

use super::Leadership;
use crate::config::Config;
use crate::store::SharedStore;

/// What a job reads.
pub struct JobContext {
    pub store: SharedStore,
    pub config: Arc<RwLock<Config>>,
    pub leadership: Arc<Leadership>,
}

impl JobContext {
    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn leading(&self) -> bool {
        self.leadership.is_leader()
    }
}

/// One leader-only job.
pub trait Job: Send {
    fn name(&self) -> &'static str;

    /// A new term begins: drop what an earlier term remembered.
    fn start_term(&mut self) {}

    /// Runs once; returns how long until it should run again.
    fn run(&mut self, ctx: &JobContext) -> Duration;
}

/// While not leading, the thread still wakes this often: a term may end (or come back)
/// without a change notification when the election thread stalls.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The running jobs thread.
pub struct Jobs {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Jobs {
    pub fn start(ctx: JobContext, mut jobs: Vec<Box<dyn Job>>) -> Jobs {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let changes = ctx.leadership.watch();
        let thread = crate::threads::spawn(crate::threads::LEADER_JOBS.to_string(), move || {
            let mut due: Vec<Instant> = vec![Instant::now(); jobs.len()];
            let mut leading = false;
            loop {
                let now = Instant::now();
                let is_leader = ctx.leading();
                if is_leader && !leading {
                    log::info!("leader: starting the leader-only jobs");
                    for (job, at) in jobs.iter_mut().zip(due.iter_mut()) {
                        job.start_term();
                        *at = now;
                    }
                } else if !is_leader && leading {
                    log::info!("leader: no longer leading; leader-only jobs stopped");
                }
                leading = is_leader;
                let mut wait = IDLE_CHECK;
                if leading {
                    for (job, at) in jobs.iter_mut().zip(due.iter_mut()) {
                        if *at <= Instant::now() && ctx.leading() {
                            let started = Instant::now();
                            let next = job.run(&ctx);
                            log::debug!("leader: job {} ran in {:?}", job.name(), started.elapsed());
                            *at = Instant::now() + next;
                        }
                        wait = wait.min(at.saturating_duration_since(Instant::now()));
                    }
                }
                select! {
                    recv(stop_rx) -> _ => break,
                    recv(changes) -> change => {
                        // A step-down ends the term even if the next one began since.
                        if change == Ok(false) || changes.try_iter().any(|c| !c) {
                            if leading {
                                log::info!("leader: no longer leading; leader-only jobs stopped");
                            }
                            leading = false;
                        }
                    }
                    default(wait) => {}
                }
            }
        });
        Jobs { stop: Some(stop_tx), thread: Some(thread) }
    }

    /// Stops after the job running now, if any.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        runs: Arc<AtomicUsize>,
        terms: Arc<AtomicUsize>,
    }

    impl Job for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn start_term(&mut self) {
            self.terms.fetch_add(1, Ordering::SeqCst);
        }
        fn run(&mut self, _: &JobContext) -> Duration {
            self.runs.fetch_add(1, Ordering::SeqCst);
            Duration::from_secs(3600)
        }
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn jobs_run_only_while_leading_and_restart_with_each_term() {
        let leadership = Arc::new(Leadership::default());
        let ctx = JobContext {
            store: Arc::new(crate::store::MemoryStore::new()),
            config: Arc::new(RwLock::new(Config::default())),
            leadership: leadership.clone(),
        };
        let (runs, terms) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs = Jobs::start(ctx, vec![Box::new(Counting { runs: runs.clone(), terms: terms.clone() })]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "a follower runs nothing");
        leadership.hold_until(Instant::now() + Duration::from_secs(60));
        wait_for("first term runs the job", || runs.load(Ordering::SeqCst) == 1);
        leadership.step_down();
        leadership.hold_until(Instant::now() + Duration::from_secs(60));
        wait_for("a second term runs it again", || runs.load(Ordering::SeqCst) == 2);
        assert_eq!(terms.load(Ordering::SeqCst), 2);
        jobs.stop();
    }
}
