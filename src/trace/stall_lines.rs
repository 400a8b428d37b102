//! The stall tick (`RDEBUG=stalltrace=N`): a STALL line as soon as one poll has held a tokio
//! worker N ms or more.
//!
//! Stable tokio says nothing about the poll running now, so rdebug reads it from two figures it
//! does flush at known moments: a worker's `worker_park_unpark_count` (flushed right before it
//! parks and right after it unparks: even means unparked, exact) and its
//! `worker_total_busy_duration` (flushed when it parks and every 61 polls). A worker that stays
//! unparked while neither moves has been inside at most 61 polls since the last change. That
//! alone would also flag a busy worker running 61 polls of N/61 ms each, so with the `pprof`
//! feature a stall is confirmed before it is printed: at N/2 and again at N the worker's thread
//! is sent `SIGPROF` and its handler notes the tokio task it is polling (and walks its stack);
//! only the same task both times, with both figures still unchanged, is a stall. Worker threads
//! are found without the app's `Builder`: one short rdebug task per worker notes
//! `tokio::runtime::worker_index()` and its thread id
//! ([`probe_workers`](crate::runtime::watched::probe_workers)), again at most once a second while
//! some worker is still unknown; renamed threads do not matter. Without `pprof` the line is
//! printed on the figures alone, with no stack.
//!
//! How often it looks ([`Config::stall_period`], [`Config::stall_idle_period`], the thread's
//! loop): every N/2 ms (1 to 100 ms), each look a period after the one before rather than on a
//! fixed grid, so that two looks are at least N/2 apart and a poll seen still at one look is
//! confirmed at the second look after it (timer jitter, or the time the first sample took,
//! used to make those gaps a hair short, and the stall then waited a look or two more). While
//! every watched worker was parked at the last look no poll can be running, so the next look
//! waits 4N/5 ms instead (1 to 100 ms, never less than N/2), or comes with a SCHED line due
//! within that time; and an allocator sample (`gcpoll`) due before the next look is taken at
//! this one, at most that early, instead of on a wake-up of its own. An idle service with
//! `stalltrace=50` and the default `gcpoll=100` wakes the reporter 25 times a second (40 when
//! every look came N/2 apart). Each wake-up costs tens of µs of the reporter's CPU in the
//! kernel of a KVM guest whatever the look does (a bare thread waking every 40 ms costs as
//! much as this reporter: `scripts/idle-cost.sh` with `floor:40`), so fewer wake-ups is the
//! only saving, and the fewest that keep the bound below.
//!
//! From the start of the poll at t0 to its STALL line:
//! - some worker unparked at the last look: the stalled worker is seen still within N/2 ms, and
//!   the decision comes N ms after that: at most t0 + 3N/2;
//! - every worker parked at the last look (the first request after a quiet spell): seen within
//!   4N/5 ms (100 ms above N = 125), decided N ms later: at most t0 + 9N/5 up to N = 125,
//!   t0 + N + 100 ms above (t0 + 90 ms at `stalltrace=50`; measured 89–91 ms, the worst case
//!   made on purpose by `tests/fixtures/stall_after_a_look.rs`);
//! - plus each look's wake-up latency (under 1 ms on a quiet machine) and, with `pprof`, the
//!   confirming burst (4 samples 250 µs apart, about 1 ms) before the line is written. The
//!   frames' names are not read then: the first sample's new addresses are named on a thread
//!   of their own while the second look is awaited, and kept (`symbols::name_cache::NameCache`), so the line goes
//!   out 2 ms after the decision in a release build (t0 + 91–93 ms in the worst case above,
//!   within 2N with N/5 to spare for a late wake-up). A build whose DWARF takes longer to read
//!   than N/2 (a debug build of the tests: 20–30 ms more) writes it when the names are read.
//!
//! The figures may have been still since before the poll began (the worker unparked and ran a
//! few short polls first), which makes the decision earlier, never later.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;

use crate::config::{Config, Format};
use crate::runtime::watched::{self, Stall};
use crate::sys::stderr::json_str;

use super::lines::Lines;
use std::io::Write;

/// The wait before probing again for worker threads still unknown, first and longest: a worker
/// busy with other tasks does not take the probe task, so it is tried again, less often each
/// time.
const PROBE_FIRST: Duration = Duration::from_millis(50);
const PROBE_MAX: Duration = Duration::from_secs(5);
/// Frames printed under a STALL line.
#[cfg(feature = "pprof")]
const STACK_LINES: usize = 8;
/// Samples of a quick burst that must agree before a stall is printed, and the wait before
/// each (with the answers, tens of µs each, the burst spans about 1 ms).
#[cfg(feature = "pprof")]
const BURST: usize = 4;
#[cfg(feature = "pprof")]
const BURST_GAP: Duration = Duration::from_micros(250);
/// How long a worker's thread has to answer a stack request.
#[cfg(feature = "pprof")]
const ANSWER_WITHIN: Duration = Duration::from_millis(20);

/// What the ticker knows about one worker.
#[derive(Debug, Default, Clone)]
struct Track {
    puc: u64,
    busy: Duration,
    /// When the two figures were first seen at their present values (None: unseen, or parked).
    since: Option<Instant>,
    /// The first sample of the suspected poll: its task, stack, and when it was taken with the
    /// thread's time waiting for a CPU then.
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    first: Option<First>,
    reported: bool,
}

/// The first sample of a suspected stall.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
struct First {
    task: u64,
    frames: Vec<u64>,
    at: Instant,
    run_wait_ns: Option<u64>,
}

/// When a runtime's worker threads were last probed for, and the wait before the next probe.
type LastProbe = Option<(Instant, Duration)>;

/// A worker to sample this tick.
struct Candidate {
    runtime: usize,
    worker: usize,
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    tid: i64,
    held: Duration,
    handle: Handle,
    label: Option<String>,
}

/// The stall side of the reporter thread.
#[derive(Default)]
pub(super) struct StallTicker {
    /// Each watched runtime's workers, and when its worker threads were last probed for with
    /// the wait before the next probe (doubling from 50 ms to 5 s while some stay unknown).
    runtimes: Vec<(tokio::runtime::Id, Vec<Track>, LastProbe)>,
    candidates: Vec<Candidate>,
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
        let mut all_parked = true;
        #[cfg(feature = "pprof")]
        if !self.prepared {
            self.prepared = true;
            if crate::sampler::thread_stack::prepare_thread_stacks() {
                crate::symbols::frame_lines::warm_frame_names();
            }
        }
        self.candidates.clear();
        {
            let list = watched::watched();
            for w in list.iter().filter(|w| w.alive.load(Relaxed)) {
                let r = match self.runtimes.iter().position(|(id, _, _)| *id == w.id) {
                    Some(r) => r,
                    None => {
                        self.runtimes.push((w.id, Vec::new(), None));
                        self.runtimes.len() - 1
                    }
                };
                let last = &mut self.runtimes[r].2;
                let probe_due =
                    last.is_none_or(|(t, wait)| now.saturating_duration_since(t) >= wait);
                if probe_due && w.worker_tids.iter().any(|t| t.load(Relaxed) == 0) {
                    watched::probe_workers(&w.handle, &w.worker_tids);
                    let wait = last.map_or(PROBE_FIRST, |(_, wait)| (wait * 2).min(PROBE_MAX));
                    *last = Some((now, wait));
                }
                let m = w.handle.metrics();
                let n = m.num_workers();
                let tracks = &mut self.runtimes[r].1;
                tracks.resize(n, Track::default());
                for (k, t) in tracks.iter_mut().enumerate() {
                    let puc = m.worker_park_unpark_count(k);
                    let busy = m.worker_total_busy_duration(k);
                    all_parked &= puc % 2 == 1;
                    if puc % 2 == 1 || puc != t.puc || busy != t.busy || t.since.is_none() {
                        *t = Track {
                            puc,
                            busy,
                            since: (puc % 2 == 0).then_some(now),
                            ..Track::default()
                        };
                        continue;
                    }
                    let held = t
                        .since
                        .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                    let due = if cfg!(feature = "pprof") {
                        held >= threshold / 2
                    } else {
                        held >= threshold
                    };
                    if t.reported || !due {
                        continue;
                    }
                    self.candidates.push(Candidate {
                        runtime: r,
                        worker: k,
                        tid: tid_of(&w.worker_tids, k),
                        held,
                        handle: w.handle.clone(),
                        label: w.label.clone(),
                    });
                }
            }
        }
        let candidates = std::mem::take(&mut self.candidates);
        for c in &candidates {
            if let Some(stack) = self.confirm(c, threshold, now) {
                let id = self.runtimes[c.runtime].0;
                self.runtimes[c.runtime].1[c.worker].reported = true;
                report(out, config.format(), now, started, c, stack, id);
            }
        }
        self.candidates = candidates;
        all_parked
    }

    /// Whether candidate `c` is one poll holding its worker (then its stack's names, innermost
    /// first). Every tick from N/2 on samples the worker's thread; all samples must show the
    /// same task, the last ones a quick burst, so a worker going round a few tasks cannot pass
    /// by chance; any other task restarts the count from now.
    #[cfg(feature = "pprof")]
    fn confirm(&mut self, c: &Candidate, threshold: Duration, now: Instant) -> Option<Vec<String>> {
        if c.tid == 0 {
            return None;
        }
        let sample = crate::sampler::thread_stack::thread_stack(c.tid, ANSWER_WITHIN)?;
        let wait = run_wait_ns(c.tid);
        let t = &mut self.runtimes[c.runtime].1[c.worker];
        if !unchanged(&c.handle, c.worker, t) {
            return None;
        }
        let Some(first) = &t.first else {
            self.names.prefetch(shown(&sample.frames));
            t.first = Some(First {
                task: sample.task,
                frames: sample.frames,
                at: now,
                run_wait_ns: wait,
            });
            return None;
        };
        // Between the looks that took the two samples (each sample follows its look at once):
        // looks come at least a period apart, so the second look after the first sample spans
        // N/2 whatever the time the samples took.
        let span = now.saturating_duration_since(first.at);
        // Runnable but waiting for a CPU most of the time since the first sample: the machine
        // is busy, the poll is not stuck (blocked or spinning threads wait on no run queue).
        let preempted = match (first.run_wait_ns, wait) {
            (Some(a), Some(b)) => {
                b.saturating_sub(a).saturating_mul(4) > crate::stats::nanos(span).saturating_mul(3)
            }
            _ => false,
        };
        if !same_poll(first, &sample) || preempted {
            t.first = None;
            t.since = Some(Instant::now());
            return None;
        }
        if c.held < threshold || span < threshold / 2 {
            return None;
        }
        let first = first.clone();
        for _ in 0..BURST {
            std::thread::sleep(BURST_GAP);
            let s = crate::sampler::thread_stack::thread_stack(c.tid, ANSWER_WITHIN)?;
            if !same_poll(&first, &s) {
                let t = &mut self.runtimes[c.runtime].1[c.worker];
                t.first = None;
                t.since = Some(Instant::now());
                return None;
            }
        }
        let t = &self.runtimes[c.runtime].1[c.worker];
        if !unchanged(&c.handle, c.worker, t) {
            return None;
        }
        Some(self.names.stack(shown(&sample.frames), STACK_LINES))
    }

    /// Without `pprof`: the figures alone (no signal, no stack).
    #[cfg(not(feature = "pprof"))]
    fn confirm(
        &mut self,
        c: &Candidate,
        threshold: Duration,
        _now: Instant,
    ) -> Option<Vec<String>> {
        let t = &self.runtimes[c.runtime].1[c.worker];
        (c.held >= threshold && unchanged(&c.handle, c.worker, t)).then(Vec::new)
    }
}

fn tid_of(tids: &Arc<[AtomicI64]>, k: usize) -> i64 {
    tids.get(k).map_or(0, |t| t.load(Relaxed))
}

/// Whether worker `k`'s two figures are still those of `t`, and it is unparked.
fn unchanged(handle: &Handle, k: usize, t: &Track) -> bool {
    let m = handle.metrics();
    k < m.num_workers()
        && m.worker_park_unpark_count(k) == t.puc
        && t.puc % 2 == 0
        && m.worker_total_busy_duration(k) == t.busy
}

/// Writes the STALL line and its stack, and records the stall.
fn report(
    out: &mut Lines,
    fmt: Format,
    now: Instant,
    started: Instant,
    c: &Candidate,
    stack: Vec<String>,
    id: tokio::runtime::Id,
) {
    let ms = u64::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX);
    let polled = u64::try_from(c.held.as_millis()).unwrap_or(u64::MAX);
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
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    watched::record_stall(
        id,
        Stall {
            unix_ms,
            worker: c.worker,
            polled_ms: polled,
            stack,
        },
    );
}

/// Time thread `tid` of this process has spent runnable waiting for a CPU, ns: the second field
/// of `/proc/self/task/<tid>/schedstat` (`None` without it).
#[cfg(feature = "pprof")]
fn run_wait_ns(tid: i64) -> Option<u64> {
    crate::sys::task::schedstat(tid).map(|(_, wait)| wait)
}

/// The frames of `frames` a STALL line can show.
#[cfg(feature = "pprof")]
fn shown(frames: &[u64]) -> &[u64] {
    &frames[..frames.len().min(STACK_LINES)]
}

/// Whether `s` shows the same poll as `first`: the same task (or, where no task id could be
/// read, the very same stack).
#[cfg(feature = "pprof")]
fn same_poll(first: &First, s: &crate::sampler::thread_stack::ThreadStack) -> bool {
    if first.task != 0 {
        first.task == s.task
    } else {
        s.task == 0 && !first.frames.is_empty() && first.frames == s.frames
    }
}
