//! The STALL decision (`RDEBUG=stalltrace=N`): which poll has held a tokio worker N ms or more,
//! and, once it ends, how long it held it. The reporter's stall tick ([`crate::trace`]) asks at
//! every look and writes what is decided.
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
//! come from the one worker registry ([`super::workers`]), which follows a worker across
//! `block_in_place`. Without `pprof` the line is printed on the figures alone, with no stack.
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
//!   of their own while the second look is awaited, and kept (the reporter's name cache), so
//!   the line goes out 2 ms after the decision in a release build (t0 + 91–93 ms in the worst
//!   case above, within 2N with N/5 to spare for a late wake-up). A build whose DWARF takes longer to read
//!   than N/2 (a debug build of the tests: 20–30 ms more) writes it when the names are read.
//!
//! The figures may have been still since before the poll began (the worker unparked and ran a
//! few short polls first), which makes the decision earlier, never later.
//!
//! **How long a stall lasted.** Once decided, a stall's worker is looked at every 5 ms (or every
//! N/2 ms if that is shorter) until its figures move: the poll ended. Its length runs from the
//! middle of the two looks around the moment the figures were first seen still (the poll began
//! between them) to the middle of the two looks around the moment they moved: each end is
//! known to half a look, 2.5 ms while the stall lasts and N/4 ms at its start.

use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::look::look;
use super::watched;

/// Frames a STALL line shows (and so the frames a stall's samples are compared on).
pub(crate) const STACK_LINES: usize = 8;
/// Samples of a quick burst that must agree before a stall is decided, and the wait before
/// each (with the answers, tens of µs each, the burst spans about 1 ms).
#[cfg(feature = "pprof")]
const BURST: usize = 4;
#[cfg(feature = "pprof")]
const BURST_GAP: Duration = Duration::from_micros(250);
/// How long a worker's thread has to answer a stack request.
#[cfg(feature = "pprof")]
const ANSWER_WITHIN: Duration = Duration::from_millis(20);
/// How often a decided stall's worker is looked at until its poll ends.
pub(crate) const WHILE_STALLED: Duration = Duration::from_millis(5);

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
    /// When the poll is estimated to have begun: the middle of the look before `since` and
    /// `since`'s own.
    began: Option<Instant>,
    /// The look before `since`, when the poll had not begun yet.
    before: Option<Instant>,
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

/// A worker to sample this look.
struct Candidate {
    runtime: usize,
    worker: usize,
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    tid: i64,
    held: Duration,
    handle: Handle,
    label: Option<String>,
}

/// What a look found.
#[derive(Debug)]
pub(crate) enum Event {
    /// A suspected stall's first sample: its frames (innermost first), to name ahead of the
    /// decision.
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
    Suspected(Vec<u64>),
    /// A poll has held its worker `threshold` or more.
    Decided(Decided),
    /// The poll of a decided stall ended.
    Ended(Ended),
}

/// A stall, as decided.
#[derive(Debug)]
pub(crate) struct Decided {
    pub(crate) runtime: tokio::runtime::Id,
    /// The runtime's name on lines (`None`: the main one).
    pub(crate) label: Option<String>,
    pub(crate) worker: usize,
    /// How long the poll had held the worker when decided.
    pub(crate) held: Duration,
    /// Its stack, innermost first (empty without `pprof`).
    pub(crate) frames: Vec<u64>,
}

/// A decided stall whose poll ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) runtime: tokio::runtime::Id,
    pub(crate) label: Option<String>,
    pub(crate) worker: usize,
    /// How long the poll held the worker, in all.
    pub(crate) lasted: Duration,
}

/// The stall decision's state: every watched worker as the looks have seen it.
#[derive(Default)]
pub(crate) struct StallDecider {
    /// Each watched runtime's workers.
    runtimes: Vec<(tokio::runtime::Id, Vec<Track>)>,
    candidates: Vec<Candidate>,
    /// The previous look's time.
    last: Option<Instant>,
}

impl std::fmt::Debug for StallDecider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallDecider")
            .field("runtimes", &self.runtimes.len())
            .finish()
    }
}

/// How long the decided stall of `t` lasted, its end seen at `now` (the figures moved since the
/// look at `last`): from `began` to the middle of the two looks, or, when the worker parked
/// right after and its busy time grew by an amount the two looks allow (the stall ran at
/// `last`, and not before the look before `since`), that growth: tokio flushes a worker's busy
/// time when it parks, so it is the time from the unpark to the park, exact to the µs.
fn lasted(
    t: &Track,
    l: &super::look::Look,
    began: Instant,
    last: Option<Instant>,
    now: Instant,
) -> Duration {
    let estimate = middle(last, now).saturating_duration_since(began);
    let Some(since) = t.since else {
        return estimate;
    };
    if l.unparked() || l.busy <= t.busy {
        return estimate;
    }
    let busy = l.busy - t.busy;
    let least = last.map_or(Duration::ZERO, |last| last.saturating_duration_since(since));
    let most = now.saturating_duration_since(t.before.unwrap_or(since));
    if busy >= least && busy <= most {
        busy
    } else {
        estimate
    }
}

/// The middle of `a` and `b` (`b` if there is no `a`).
fn middle(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a + b.saturating_duration_since(a) / 2)
}

impl StallDecider {
    /// Whether a decided stall's poll is still running: look every [`WHILE_STALLED`] then.
    pub(crate) fn ongoing(&self) -> bool {
        self.runtimes
            .iter()
            .any(|(_, tracks)| tracks.iter().any(|t| t.reported))
    }

    /// One look at every watched worker, for polls of `threshold` or more; what it found goes to
    /// `events`. Returns whether every worker was parked (then no poll is running, and the next
    /// look can wait longer).
    pub(crate) fn tick(
        &mut self,
        threshold: Duration,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> bool {
        let mut all_parked = true;
        let last = self.last.replace(now);
        self.candidates.clear();
        {
            let list = watched::watched();
            // A runtime no longer watched is forgotten.
            self.runtimes.retain(|(id, _)| {
                list.iter()
                    .any(|w| w.id == *id && w.alive.load(std::sync::atomic::Ordering::Relaxed))
            });
            for w in list
                .iter()
                .filter(|w| w.alive.load(std::sync::atomic::Ordering::Relaxed))
            {
                let r = match self.runtimes.iter().position(|(id, _)| *id == w.id) {
                    Some(r) => r,
                    None => {
                        self.runtimes.push((w.id, Vec::new()));
                        self.runtimes.len() - 1
                    }
                };
                w.workers.refresh(&w.handle, now);
                let n = w.handle.metrics().num_workers();
                let tracks = &mut self.runtimes[r].1;
                tracks.resize(n, Track::default());
                for (k, t) in tracks.iter_mut().enumerate() {
                    let Some(l) = look(&w.handle, &w.workers, k) else {
                        continue;
                    };
                    all_parked &= !l.unparked();
                    if !l.unparked() || l.puc != t.puc || l.busy != t.busy || t.since.is_none() {
                        if t.reported
                            && let Some(began) = t.began
                        {
                            events.push(Event::Ended(Ended {
                                runtime: w.id,
                                label: w.label.clone(),
                                worker: k,
                                lasted: lasted(t, &l, began, last, now),
                            }));
                        }
                        *t = Track {
                            puc: l.puc,
                            busy: l.busy,
                            since: l.unparked().then_some(now),
                            began: l.unparked().then(|| middle(last, now)),
                            before: last,
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
                        tid: l.tid,
                        held,
                        handle: w.handle.clone(),
                        label: w.label.clone(),
                    });
                }
            }
        }
        let candidates = std::mem::take(&mut self.candidates);
        for c in &candidates {
            if let Some(frames) = self.confirm(c, threshold, now, events) {
                let id = self.runtimes[c.runtime].0;
                self.runtimes[c.runtime].1[c.worker].reported = true;
                events.push(Event::Decided(Decided {
                    runtime: id,
                    label: c.label.clone(),
                    worker: c.worker,
                    held: c.held,
                    frames,
                }));
            }
        }
        self.candidates = candidates;
        all_parked
    }

    /// Whether candidate `c` is one poll holding its worker (then its stack, innermost first). Every tick from N/2 on samples the worker's thread; all samples must show the
    /// same task, the last ones a quick burst, so a worker going round a few tasks cannot pass
    /// by chance; any other task restarts the count from now.
    #[cfg(feature = "pprof")]
    fn confirm(
        &mut self,
        c: &Candidate,
        threshold: Duration,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Option<Vec<u64>> {
        if c.tid == 0 {
            return None;
        }
        let sample =
            crate::sampler::thread_stack::thread_stack_upto(c.tid, ANSWER_WITHIN, STACK_LINES)?;
        let wait = super::look::run_wait_ns(c.tid);
        let t = &mut self.runtimes[c.runtime].1[c.worker];
        if !unchanged(&c.handle, c.worker, t) {
            return None;
        }
        let Some(first) = &t.first else {
            events.push(Event::Suspected(shown(&sample.frames).to_vec()));
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
            let s =
                crate::sampler::thread_stack::thread_stack_upto(c.tid, ANSWER_WITHIN, STACK_LINES)?;
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
        Some(shown(&sample.frames).to_vec())
    }

    /// Without `pprof`: the figures alone (no signal, no stack).
    #[cfg(not(feature = "pprof"))]
    fn confirm(
        &mut self,
        c: &Candidate,
        threshold: Duration,
        _now: Instant,
        _events: &mut Vec<Event>,
    ) -> Option<Vec<u64>> {
        let t = &self.runtimes[c.runtime].1[c.worker];
        (c.held >= threshold && unchanged(&c.handle, c.worker, t)).then(Vec::new)
    }
}

/// Whether worker `k`'s two figures are still those of `t`, and it is unparked.
fn unchanged(handle: &Handle, k: usize, t: &Track) -> bool {
    let m = handle.metrics();
    k < m.num_workers()
        && m.worker_park_unpark_count(k) == t.puc
        && t.puc % 2 == 0
        && m.worker_total_busy_duration(k) == t.busy
}

/// The frames of `frames` a STALL line can show.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) fn shown(frames: &[u64]) -> &[u64] {
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
