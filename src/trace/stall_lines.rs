//! The stall tick (`RDEBUG=stalltrace=N`): asks the STALL decision ([`crate::runtime::stall`])
//! at every look and writes what it decided: a STALL line as soon as one poll has held a tokio
//! worker N ms or more, with its stack named, and a short second line when that poll ends, with
//! how long it held the worker in all (`lasted`, the figure the STALL line's `polled` was on its
//! way to; a line of its own, not starting `STALL `, so that one STALL line is one stall):
//!
//! ```text
//! STALL 1523ms: worker=1 polled=212ms
//!   blocks_in_sleep (src/main.rs:17)
//!   ...
//! STALL-END 1761ms: worker=1 lasted=430ms
//! ```
//!
//! The frames are named from the name cache ([`crate::symbols::name_cache`]): a suspected
//! stall's first sample is named on a thread of its own while the decision is awaited, so the
//! line goes out about 2 ms after the decision in a release build.

use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, Format};
use crate::runtime::stall::{Decided, Ended, Event, StallDecider};
use crate::runtime::watched::{self, Stall};
use crate::stats::millis;
use crate::sys::stderr::json_str;

use super::lines::Lines;
use std::io::Write;

/// The stall side of the reporter thread.
#[derive(Default)]
pub(super) struct StallTicker {
    decider: StallDecider,
    events: Vec<Event>,
    /// Whether stack requests and frame names were readied (the handler, the unwinder, the
    /// symbol tables: built before the first stall rather than while it is confirmed).
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    prepared: bool,
    #[cfg(feature = "pprof")]
    names: crate::symbols::name_cache::NameCache,
}

impl StallTicker {
    /// One look at every watched worker; returns whether all of them were parked (then no poll
    /// is running, and the next look can wait [`Config::stall_idle_period`]).
    pub(super) fn tick(
        &mut self,
        out: &mut Lines,
        config: &Config,
        now: Instant,
        started: Instant,
    ) -> bool {
        let threshold = Duration::from_millis(config.stalltrace_ms());
        if threshold.is_zero() {
            return false;
        }
        #[cfg(feature = "pprof")]
        if !self.prepared {
            self.prepared = true;
            if crate::sampler::thread_stack::prepare_thread_stacks() {
                crate::symbols::frame_lines::warm_frame_names();
            }
        }
        let mut events = std::mem::take(&mut self.events);
        let all_parked = self.decider.tick(threshold, now, &mut events);
        for e in events.drain(..) {
            match e {
                #[cfg(feature = "pprof")]
                Event::Suspected(frames) => self.names.prefetch(&frames),
                #[cfg(not(feature = "pprof"))]
                Event::Suspected(_) => {}
                Event::Decided(d) => {
                    let stack = self.names_of(&d.frames);
                    report(out, config.format(), now, started, &d, stack);
                }
                Event::Ended(e) => report_end(out, config.format(), now, started, &e),
            }
        }
        self.events = events;
        all_parked
    }

    /// Whether a decided stall's poll is still running (then the reporter looks every
    /// [`WHILE_STALLED`](crate::runtime::stall::WHILE_STALLED), to know its end).
    pub(super) fn ongoing(&self) -> bool {
        self.decider.ongoing()
    }

    #[cfg(feature = "pprof")]
    fn names_of(&mut self, frames: &[u64]) -> Vec<String> {
        self.names.stack(frames, crate::runtime::stall::STACK_LINES)
    }

    #[cfg(not(feature = "pprof"))]
    fn names_of(&mut self, _frames: &[u64]) -> Vec<String> {
        Vec::new()
    }
}

/// Milliseconds since the reporter started.
fn ms_since(now: Instant, started: Instant) -> u64 {
    millis(now.saturating_duration_since(started))
}

/// Writes the STALL line and its stack, and records the stall.
fn report(
    out: &mut Lines,
    fmt: Format,
    now: Instant,
    started: Instant,
    c: &Decided,
    stack: Vec<String>,
) {
    let ms = ms_since(now, started);
    let polled = millis(c.held);
    let buf = out.buf();
    match fmt {
        Format::Text => {
            let _ = write!(buf, "STALL {ms}ms: ");
            if let Some(l) = &c.label {
                let _ = write!(buf, "runtime={l} ");
            }
            let _ = writeln!(buf, "worker={} polled={polled}ms", c.worker);
            out.end();
            for name in &stack {
                let _ = writeln!(out.buf(), "  {name}");
                out.end();
            }
        }
        Format::Json => {
            crate::stats::encode::json_head(buf, "stall", c.label.as_deref());
            let _ = write!(
                buf,
                ",\"kind\":\"stall\",\"ms\":{ms},\"worker\":{},\"polled_ms\":{polled},\"stack\":[",
                c.worker
            );
            for (i, name) in stack.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                json_str(buf, name);
            }
            buf.extend_from_slice(b"]}\n");
            out.end();
        }
    }
    let unix_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, millis);
    watched::record_stall(
        c.runtime,
        Stall {
            unix_ms,
            worker: c.worker,
            polled_ms: polled,
            lasted_ms: None,
            stack,
        },
    );
}

/// Writes the line that says a stall's poll ended and how long it lasted, and records it.
fn report_end(out: &mut Lines, fmt: Format, now: Instant, started: Instant, e: &Ended) {
    let ms = ms_since(now, started);
    let lasted = millis(e.lasted);
    let buf = out.buf();
    match fmt {
        Format::Text => {
            let _ = write!(buf, "STALL-END {ms}ms: ");
            if let Some(l) = &e.label {
                let _ = write!(buf, "runtime={l} ");
            }
            let _ = writeln!(buf, "worker={} lasted={lasted}ms", e.worker);
        }
        Format::Json => {
            crate::stats::encode::json_head(buf, "stall_end", e.label.as_deref());
            let _ = writeln!(
                buf,
                ",\"kind\":\"stall_end\",\"ms\":{ms},\"worker\":{},\"lasted_ms\":{lasted}}}",
                e.worker
            );
        }
    }
    out.end();
    watched::record_stall_end(e.runtime, e.worker, e.lasted);
}
