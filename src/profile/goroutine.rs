//! `/debug/pprof/goroutine` at `debug=0` as Go serves it: a pprof profile of sample type
//! `goroutine/count`, built from the watched runtimes' [`SchedStats`].
//!
//! Without task dumps there is no stack per task, so each runtime gives one sample per task
//! state, its value the number of tasks in that state, labelled `runtime` and `state`, under one
//! named frame (`tokio task <state> (runtime <name>)`):
//! * `running`: tasks being polled now (one per unparked worker);
//! * `runnable`: tasks queued to run (the global queue, plus the workers' local queues under
//!   `--cfg tokio_unstable`);
//! * `waiting`: the rest of the runtime's alive tasks (waiting on I/O, timers, channels…).
//!
//! `go tool pprof -top URL/debug/pprof/goroutine` then counts the tasks, `-tags` shows them by
//! runtime and state, and proto-only scrapers (Parca, Grafana Alloy) can read it.

use std::time::SystemTime;

use super::proto::Builder;
use crate::stats::SchedStats;

/// The profile, gzipped, for `runtimes` as `(name, stats)`.
pub(crate) fn summary_pprof_gz(runtimes: &[(String, SchedStats)]) -> Vec<u8> {
    let mut b = Builder::new(&[("goroutine", "count")], ("goroutine", "count"), 1);
    b.times(SystemTime::now(), std::time::Duration::ZERO);
    if let Some(m) = crate::symbols::main_mapping() {
        b.mapping(&m);
    }
    if runtimes.is_empty() {
        b.comment("rdebug: no tokio runtime is watched (call rdebug::init() inside one, or rdebug::watch)");
    }
    b.comment("rdebug: one sample per runtime and task state; per-task stacks need goroutine?debug=1&dump=1");
    // Pseudo-addresses for the named frames: small, distinct, in no mapping.
    let mut next_addr = 0x10u64;
    for (name, s) in runtimes {
        let running = s.workers.saturating_sub(s.idle_workers);
        let local: usize = s
            .per_worker
            .iter()
            .filter_map(|w| w.local_queue_depth)
            .fold(0, usize::saturating_add);
        let runnable = s.global_queue_depth.saturating_add(local);
        let waiting = s.tasks.saturating_sub(running).saturating_sub(runnable);
        for (state, n) in [
            ("running", running),
            ("runnable", runnable),
            ("waiting", waiting),
        ] {
            if n == 0 {
                continue;
            }
            let loc = b.location(next_addr, &format!("tokio task {state} (runtime {name})"));
            next_addr += 1;
            b.sample_labeled(
                &[loc],
                &[i64::try_from(n).unwrap_or(i64::MAX)],
                &[("runtime", name), ("state", state)],
                &[],
            );
        }
    }
    b.encode_gz()
}
