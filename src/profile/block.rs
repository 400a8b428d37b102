//! Block profiles: where busy tokio workers wait off CPU ([`block`], [`BlockProfile`]).
//!
//! `hz` times a second, for each worker of every watched runtime, rdebug reads what costs no
//! signal: tokio's `worker_park_unpark_count` (even: unparked; unchanged: it did not park in
//! between), the worker thread's CPU clock, its time runnable waiting for a CPU
//! (`/proc/self/task/<tid>/schedstat`) and its state (`/proc/self/task/<tid>/stat`). A worker
//! unparked over the whole interval whose thread is asleep now was blocked for the part of the
//! interval it spent neither on a CPU nor waiting for one: sleeping in
//! `std::thread::sleep`, a blocking read, a DNS lookup, a `std::sync::Mutex`. Only then is its
//! thread sent a `SIGPROF` to take its stack (and its labels), and the sample weighs the time it
//! was blocked. Time waiting for a CPU (a loaded machine preempting a busy poll) is never counted
//! as blocked. Parked workers (in `epoll_wait` or on their condvar) get no signal: an idle
//! service stays idle.
//!
//! Worker threads are found as for `stalltrace`: one short task per worker notes
//! `tokio::runtime::worker_index()` and its thread id; renamed threads and several runtimes are
//! the same. A worker whose thread is not known yet is not sampled.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::*};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;

use super::ProfileError;
use super::proto::Builder;
use crate::runtime::watched;
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

/// One watched worker as the profiler follows it.
struct Worker {
    handle: Handle,
    index: usize,
    tids: Arc<[AtomicI64]>,
    /// At the previous look: park/unpark count, CPU ns, run-queue wait ns, when.
    prev: Option<(u64, u64, u64, Instant)>,
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
            (0..w.worker_tids.len()).map(|index| Worker {
                handle: w.handle.clone(),
                index,
                tids: w.worker_tids.clone(),
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
    probe_unknown(&workers);
    let time = SystemTime::now();
    let started = Instant::now();
    let end = started + duration;
    let period = Duration::from_nanos(1_000_000_000 / u64::from(hz));
    let mut stacks: HashMap<Key, (u64, u64)> = HashMap::new();
    let mut preempted_ns = 0u64;
    let mut next_probe = started + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Acquire) {
            break;
        }
        std::thread::sleep(period.min(end - now));
        if Instant::now() >= next_probe {
            probe_unknown(&workers);
            next_probe += Duration::from_secs(1);
        }
        for w in &mut workers {
            let Some((blocked, waited)) = look(w) else {
                continue;
            };
            preempted_ns = preempted_ns.saturating_add(waited);
            if blocked == 0 {
                continue;
            }
            let tid = w.tids.get(w.index).map_or(0, |t| t.load(Relaxed));
            let key = match crate::sampler::thread_stack::thread_stack(tid, ANSWER_WITHIN) {
                Some(s) => (s.frames, s.labels, s.task),
                None => (vec![NOT_TAKEN], Vec::new(), 0),
            };
            if let Some(e) = stacks.get_mut(&key) {
                e.0 += 1;
                e.1 = e.1.saturating_add(blocked);
            } else if stacks.len() < MAX_STACKS {
                stacks.insert(key, (1, blocked));
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

/// Starts the probe of the runtimes with a worker whose thread is not known yet.
fn probe_unknown(workers: &[Worker]) {
    let mut done: Vec<tokio::runtime::Id> = Vec::new();
    for w in workers {
        let id = w.handle.id();
        if !done.contains(&id) && w.tids.iter().any(|t| t.load(Relaxed) == 0) {
            watched::probe_workers(&w.handle, &w.tids);
            done.push(id);
        }
    }
}

/// Looks at worker `w` now: if it stayed unparked since the previous settled look and is asleep
/// now, the ns its thread was blocked since (neither on a CPU nor waiting for one) and the ns
/// it waited for a CPU; `(0, 0)` while it runs or waits for a CPU (settled later). `None` without a previous look to compare with.
fn look(w: &mut Worker) -> Option<(u64, u64)> {
    let m = w.handle.metrics();
    if w.index >= m.num_workers() {
        return None;
    }
    let puc = m.worker_park_unpark_count(w.index);
    let tid = w.tids.get(w.index).map_or(0, |t| t.load(Relaxed));
    let now = Instant::now();
    let sched = if puc % 2 == 0 && tid != 0 {
        schedstat(tid)
    } else {
        None
    };
    let current = sched.map(|(cpu, wait)| (puc, cpu, wait, now));
    let (Some((p_puc, p_cpu, p_wait, p_at)), Some((cpu, wait))) = (w.prev, sched) else {
        w.prev = current;
        return None;
    };
    if p_puc != puc {
        w.prev = current; // it parked in between
        return None;
    }
    if !asleep(tid) {
        // Running, or waiting for a CPU: a wait not over yet is not in its schedstat yet, so
        // this interval is settled at the next look that finds it asleep (after the wait).
        return Some((0, 0));
    }
    w.prev = current;
    let span = crate::stats::nanos(now.saturating_duration_since(p_at));
    let ran = cpu.saturating_sub(p_cpu);
    let waited = wait.saturating_sub(p_wait);
    Some((span.saturating_sub(ran).saturating_sub(waited), waited))
}

/// Thread `tid`'s time on a CPU (its CPU clock, exact to now) and waiting for one
/// (its `schedstat`, brought up to date at each switch), ns.
fn schedstat(tid: i64) -> Option<(u64, u64)> {
    let (_, wait) = crate::sys::task::schedstat(tid)?;
    Some((crate::sys::thread::thread_cpu_ns(tid)?, wait))
}

/// Whether thread `tid` is asleep now (state `S` or `D` in its `stat`), not running or runnable.
fn asleep(tid: i64) -> bool {
    crate::sys::task::task_state(tid).is_some_and(|state| state == b'S' || state == b'D')
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::thread::thread_cpu_ns;

    #[test]
    fn a_sleeping_thread_reads_as_asleep_and_its_cpu_clock_moves_only_on_cpu() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(crate::sampler::current_tid()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (cpu0, _) = schedstat(tid).expect("schedstat");
        assert!(asleep(tid));
        std::thread::sleep(Duration::from_millis(50));
        let (cpu1, _) = schedstat(tid).expect("schedstat");
        assert!(cpu1 - cpu0 < 1_000_000, "{cpu0} {cpu1}");
        let me = crate::sampler::current_tid();
        assert!(!asleep(me));
        assert!(thread_cpu_ns(me).is_some());
        t.join().unwrap();
    }
}
