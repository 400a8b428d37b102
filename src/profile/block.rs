//! Block profiles: where busy tokio workers wait off CPU ([`block`], [`BlockProfile`]).
//!
//! About `hz` times a second, at jittered moments (each wait drawn uniformly from half to one
//! and a half periods, so that no workload's rhythm can lock onto the looks), every worker of
//! every watched runtime is looked at ([`crate::runtime::look`]), reading what costs no signal:
//! tokio's `worker_park_unpark_count` (even: unparked, inside or between its polls) and its
//! thread's state (`/proc/self/task/<tid>/stat`). A worker unparked now whose thread is asleep
//! now (`S` or `D`: not on a CPU, and not runnable waiting for one) is blocked: sleeping in
//! `std::thread::sleep`, a blocking read, a DNS lookup, a `std::sync::Mutex`. That look weighs
//! the whole time since the worker's previous look: point sampling, an unbiased estimate of the
//! time blocked whatever the length of the blocking calls (each look stands for the interval it
//! closes; a call blocked for a fraction of the window is seen at that fraction of the looks).
//! The blocked thread's stack (and labels) is then read without a signal (see
//! [`crate::sampler::thread_stack`]). Time runnable waiting for a CPU (a loaded machine
//! preempting a busy poll) is never counted as blocked; the profile's comment gives it, from
//! the threads' `schedstat`. Parked workers (in `epoll_wait` or on their condvar) are not read at
//! all: an idle service stays idle.
//!
//! Worker threads come from the one worker registry ([`crate::runtime::workers`]), which follows
//! a worker across `block_in_place`. A worker whose thread is not known yet is not sampled.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;

use super::ProfileError;
use super::proto::Builder;
use crate::runtime::look::{asleep, look, run_wait_ns};
use crate::runtime::watched;
use crate::runtime::workers::Workers;
use crate::symbols::{Symbolized, symbolize};

/// Longest block profile accepted.
pub const MAX_BLOCK_DURATION: Duration = Duration::from_secs(3600);
/// Highest block sampling rate accepted, looks per second.
pub const MAX_BLOCK_HZ: u32 = 1000;
/// How long a blocked thread has to answer for its stack.
const ANSWER_WITHIN: Duration = Duration::from_millis(50);
/// The pseudo-address of a blocked interval whose thread did not answer for its stack in time.
const NOT_TAKEN: u64 = 1;
/// Most distinct stacks kept (samples of further new ones are dropped).
const MAX_STACKS: usize = 100_000;

/// Whether a block profile runs (one at a time).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// A sample's stack (innermost first), labels ([`crate::sampler::task_labels`] bytes) and task id.
type Key = (Vec<u64>, Vec<u8>, u64);

/// A block profile: where busy tokio workers were blocked off CPU over a window, in Go's block
/// profile format.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// rdebug::watch(&tokio::runtime::Handle::current());
/// let p = tokio::task::spawn_blocking(|| {
///     rdebug::profile::block(std::time::Duration::from_millis(200), 100)
/// })
/// .await
/// .unwrap()
/// .unwrap();
/// assert_eq!(&p.pprof_gz()[..2], &[0x1f, 0x8b]);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BlockProfile {
    time: SystemTime,
    duration: Duration,
    /// (stack innermost first, labels, task) → (samples, blocked ns).
    stacks: Vec<(Key, (u64, u64))>,
    symbolized: Symbolized,
    preempted_ns: u64,
}

/// What the previous look at a worker saw while it was unparked on a known thread: its
/// park/unpark count, the thread, and the thread's time waiting for a CPU.
type Unparked = (u64, i64, u64);

/// One watched worker as the profiler follows it.
struct Worker {
    handle: Handle,
    workers: Arc<Workers>,
    index: usize,
    /// The previous look: when, and (while unparked, on a known thread) the park/unpark count,
    /// the thread and its time waiting for a CPU.
    prev: Option<(Instant, Option<Unparked>)>,
}

/// Profiles where busy tokio workers block for `duration`, looking `hz` times a second (Go's
/// block profile, for the places an async worker should never wait). Blocks the calling thread
/// for `duration`.
///
/// Errors: [`ProfileError::Unavailable`] when no tokio runtime is watched ([`init`](crate::init)
/// inside the runtime, or [`watch`](crate::watch)) or where there is no `SIGPROF` sampler;
/// [`ProfileError::Invalid`] for `hz` outside 1 to 1000 or `duration` over an hour;
/// [`ProfileError::BlockBusy`] while another block profile runs.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
/// // No runtime watched in this process: nothing to profile.
/// let e = rdebug::profile::block(std::time::Duration::from_millis(10), 100).unwrap_err();
/// assert!(matches!(e, rdebug::profile::ProfileError::Unavailable(_)));
/// ```
pub fn block(duration: Duration, hz: u32) -> Result<BlockProfile, ProfileError> {
    block_unless(duration, hz, &AtomicBool::new(false))
}

/// [`block`], ended early once `stop` is set (the debug server's client went away): the
/// profile of the time until then, found within one look (`1/hz` s). The one block profile's
/// place is free again as soon as it returns.
pub(crate) fn block_unless(
    duration: Duration,
    hz: u32,
    stop: &AtomicBool,
) -> Result<BlockProfile, ProfileError> {
    if duration > MAX_BLOCK_DURATION || hz == 0 || hz > MAX_BLOCK_HZ {
        return Err(ProfileError::Invalid(format!(
            "block profile of {duration:?} at {hz} Hz: expected at most {} s and 1 to \
             {MAX_BLOCK_HZ} Hz",
            MAX_BLOCK_DURATION.as_secs()
        )));
    }
    let mut workers: Vec<Worker> = watched::watched()
        .iter()
        .filter(|w| w.alive.load(Relaxed))
        .flat_map(|w| {
            (0..w.workers.len()).map(|index| Worker {
                handle: w.handle.clone(),
                workers: w.workers.clone(),
                index,
                prev: None,
            })
        })
        .collect();
    if workers.is_empty() {
        return Err(ProfileError::Unavailable(
            "no tokio runtime is watched: call rdebug::init() inside the runtime, or \
             rdebug::watch(&handle)"
                .into(),
        ));
    }
    if RUNNING.swap(true, AcqRel) {
        return Err(ProfileError::BlockBusy);
    }
    /// Frees the one block profile's place when the profile ends, however it ends.
    struct Held;
    impl Drop for Held {
        fn drop(&mut self) {
            RUNNING.store(false, Release);
        }
    }
    let _held = Held;
    crate::sampler::ensure_started().map_err(|why| ProfileError::Unavailable(why.into()))?;
    refresh(&workers, Instant::now());
    let time = SystemTime::now();
    let started = Instant::now();
    let end = started + duration;
    let period = Duration::from_nanos(1_000_000_000 / u64::from(hz));
    let mut jitter = Jitter::new();
    let mut stacks: HashMap<Key, (u64, u64)> = HashMap::new();
    let mut preempted_ns = 0u64;
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Acquire) {
            break;
        }
        std::thread::sleep(jitter.around(period).min(end - now));
        refresh(&workers, Instant::now());
        for w in &mut workers {
            let Some(blocked) = sample(w, &mut preempted_ns) else {
                continue;
            };
            let (tid, weight) = blocked;
            let key = match crate::sampler::thread_stack::thread_stack(tid, ANSWER_WITHIN) {
                Some(s) => (s.frames, s.labels, s.task),
                None => (vec![NOT_TAKEN], Vec::new(), 0),
            };
            if let Some(e) = stacks.get_mut(&key) {
                e.0 += 1;
                e.1 = e.1.saturating_add(weight);
            } else if stacks.len() < MAX_STACKS {
                stacks.insert(key, (1, weight));
            }
        }
    }
    let duration = started.elapsed();
    let mut symbolized = symbolize(
        stacks
            .keys()
            .flat_map(|(frames, _, _)| frames.iter().copied())
            .filter(|&a| a != NOT_TAKEN),
    );
    symbolized.insert_named(NOT_TAKEN, "(rdebug: stack not taken in time)");
    let mut stacks: Vec<_> = stacks.into_iter().collect();
    stacks.sort_unstable_by_key(|(_, (_, ns))| std::cmp::Reverse(*ns));
    Ok(BlockProfile {
        time,
        duration,
        stacks,
        symbolized,
        preempted_ns,
    })
}

/// Probes for the threads of workers not known yet (once per runtime, by its registry's policy).
fn refresh(workers: &[Worker], now: Instant) {
    let mut done: Vec<tokio::runtime::Id> = Vec::new();
    for w in workers {
        let id = w.handle.id();
        if !done.contains(&id) {
            w.workers.refresh(&w.handle, now);
            done.push(id);
        }
    }
}

/// Looks at worker `w` now. Blocked (unparked now, its thread asleep now): its thread and the
/// weight of this look, the ns since the worker's previous look. Adds to `preempted_ns` the time
/// its thread waited for a CPU while it stayed unparked on that thread since the previous look.
fn sample(w: &mut Worker, preempted_ns: &mut u64) -> Option<(i64, u64)> {
    let l = look(&w.handle, &w.workers, w.index)?;
    let prev = w.prev.replace((l.at, None));
    if !l.unparked() || l.tid == 0 {
        return None;
    }
    let wait = run_wait_ns(l.tid).unwrap_or(0);
    if let Some((_, Some((p_puc, p_tid, p_wait)))) = prev
        && p_puc == l.puc
        && p_tid == l.tid
    {
        *preempted_ns = preempted_ns.saturating_add(wait.saturating_sub(p_wait));
    }
    if let Some(p) = w.prev.as_mut() {
        p.1 = Some((l.puc, l.tid, wait));
    }
    let (p_at, _) = prev?;
    if !asleep(l.tid) {
        return None;
    }
    Some((
        l.tid,
        crate::stats::nanos(l.at.saturating_duration_since(p_at)),
    ))
}

/// Waits drawn uniformly from half to one and a half of a period (xorshift: no allocation, no
/// lock, seeded from the clock).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Jitter(seed | 1)
    }

    fn around(&mut self, period: Duration) -> Duration {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
        period.mul_f64(0.5 + unit)
    }
}

impl BlockProfile {
    /// Samples taken (Go's `contentions`).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() {
    /// rdebug::watch(&tokio::runtime::Handle::current());
    /// let p = tokio::task::spawn_blocking(|| {
    ///     rdebug::profile::block(std::time::Duration::from_millis(50), 100).unwrap()
    /// })
    /// .await
    /// .unwrap();
    /// assert_eq!(p.samples(), 0); // no task blocked
    /// # }
    /// ```
    pub fn samples(&self) -> u64 {
        self.stacks.iter().map(|(_, (c, _))| c).sum()
    }

    /// Wall time the profile covered.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() {
    /// rdebug::watch(&tokio::runtime::Handle::current());
    /// let p = tokio::task::spawn_blocking(|| {
    ///     rdebug::profile::block(std::time::Duration::from_millis(50), 100).unwrap()
    /// })
    /// .await
    /// .unwrap();
    /// assert!(p.duration() >= std::time::Duration::from_millis(50));
    /// # }
    /// ```
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Time the workers were blocked, as the samples weigh it, ns (Go's `delay`).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() {
    /// rdebug::watch(&tokio::runtime::Handle::current());
    /// let p = tokio::task::spawn_blocking(|| {
    ///     rdebug::profile::block(std::time::Duration::from_millis(50), 100).unwrap()
    /// })
    /// .await
    /// .unwrap();
    /// assert_eq!(p.delay_ns(), 0);
    /// # }
    /// ```
    pub fn delay_ns(&self) -> u64 {
        self.stacks
            .iter()
            .map(|(_, (_, ns))| *ns)
            .fold(0, u64::saturating_add)
    }

    /// The profile in Go's block profile format, gzipped: sample types `contentions/count` and
    /// `delay/nanoseconds`, period type `contentions/count`, period 1; names in the profile;
    /// labels of [`labels`](crate::sampler::task_labels) and the task id as sample labels. A comment says how
    /// much time the workers spent runnable but waiting for a CPU (not counted as blocked).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() {
    /// rdebug::watch(&tokio::runtime::Handle::current());
    /// let p = tokio::task::spawn_blocking(|| {
    ///     rdebug::profile::block(std::time::Duration::from_millis(20), 100).unwrap()
    /// })
    /// .await
    /// .unwrap();
    /// assert_eq!(&p.pprof_gz()[..2], &[0x1f, 0x8b]);
    /// # }
    /// ```
    pub fn pprof_gz(&self) -> Vec<u8> {
        let mut b = Builder::new(
            &[("contentions", "count"), ("delay", "nanoseconds")],
            ("contentions", "count"),
            1,
        );
        b.times(self.time, self.duration);
        b.add_symbolized(&self.symbolized);
        b.comment(&format!(
            "rdebug: workers runnable but waiting for a CPU (not counted): {} ms",
            self.preempted_ns / 1_000_000
        ));
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        for ((frames, labels, task), (count, ns)) in &self.stacks {
            let locs: Vec<u64> = frames
                .iter()
                .map(|&a| b.symbolized_location(&self.symbolized, a))
                .collect();
            let values = [v(*count), v(*ns)];
            if labels.is_empty() && *task == 0 {
                b.sample(&locs, &values);
            } else {
                let strs: Vec<(&str, &str)> = crate::sampler::task_labels::pairs(labels).collect();
                let nums: &[(&str, i64)] = &[("task_id", v(*task))];
                let nums = if *task == 0 { &[][..] } else { nums };
                b.sample_labeled(&locs, &values, &strs, nums);
            }
        }
        b.encode_gz()
    }
}
