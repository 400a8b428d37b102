//! A reporter tick run on the caller's thread, for the benchmarks (private feature `_bench`).

use std::io::Write;
use std::time::Instant;

use tokio::runtime::Handle;

use crate::config::Config;
use crate::runtime::watched;
use crate::sys::stderr::Sink;

use super::handle::Shared;
use super::reporter_thread::ReporterThread;

/// One reporter tick run on the caller's thread: for benchmarks, not part of the API.
pub struct TickForBench(ReporterThread);

impl std::fmt::Debug for TickForBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TickForBench")
    }
}

impl TickForBench {
    /// A reporter thread's state with `config`, writing to `writer`, watching the current runtime
    /// if any.
    pub fn new(config: Config, writer: impl Write + Send + 'static) -> Self {
        if let Ok(h) = Handle::try_current() {
            watched::watch(&h, None);
        }
        let shared = Shared::new(config.clone());
        let mut t = ReporterThread::new(shared, Sink::Writer(Box::new(writer)), config);
        t.apply_config();
        TickForBench(t)
    }

    /// One SCHED tick and one allocator sample, with their lines written.
    pub fn tick(&mut self) {
        let t = &mut self.0;
        let config = t.config().clone();
        if config.schedtrace_ms() > 0 {
            t.sched.tick(&mut t.out, &config, Instant::now());
        }
        if config.gc_period().is_some() {
            t.gc.tick(&mut t.out, &config);
        }
        t.flush();
        t.publish_stats();
    }
}

impl Drop for TickForBench {
    fn drop(&mut self) {
        self.0.gc.set_polling(false);
    }
}
