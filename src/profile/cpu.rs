//! CPU profiles: [`cpu`], [`CpuProfile`].
//!
//! rdebug's one CPU-time sampler ([`cpu_sampler`](crate::sampler): a timer on each
//! thread's CPU clock raising `SIGPROF`, shared with the allocator-CPU figure) calls
//! [`on_sample`] in the handler; it walks the stack into a preallocated [`Ring`]; the profiling thread drains the
//! ring every [`DRAIN_EVERY`] into a map of stacks, and symbolizes them once the profile ends.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::ProfileError;
use super::proto::Builder;
use crate::sampler::ring::{MAX_DEPTH, Ring, Sample};
pub(crate) use crate::sampler::unwind::{Unwinder, room_to_walk_here};
use crate::sampler::{ProfileGuard, SamplerError, start_profile};
use crate::symbols::{Symbolized, symbolize};

/// Drains between two looks at `/proc/self/task` for threads started during the profile
/// (250 ms at [`DRAIN_EVERY`]).
const COVER_EVERY: u32 = 5;

/// How often the profiling thread empties the ring.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Samples the ring holds: at 100 Hz, 50 ms of 800 busy threads' samples.
const RING_SAMPLES: usize = 4096;
/// Longest profile accepted by [`cpu`].
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Highest sampling rate accepted by [`cpu`], samples per CPU-second.
pub const MAX_HZ: u32 = 10_000;
/// Most distinct stacks kept; samples of further new stacks are counted under one
/// `(rdebug: stacks limit reached)` frame.
const MAX_STACKS: usize = 200_000;

/// The pseudo-address of samples whose stack was not walked.
const NOT_WALKED: u64 = 1;
use crate::sampler::unwind::{NO_ROOM, NO_ROOM_NAME, unwinder};

/// A sample's labels ([`crate::sampler::task_labels`] bytes) and tokio task id (0: none).
type Tags = (Box<[u8]>, u64);
/// A stack (lookup addresses, innermost first) and its tags: what samples are counted under.
type StackKey = (Box<[u64]>, Tags);

/// What the handler needs: set while a profile runs.
#[derive(Debug)]
struct Live {
    unwinder: Arc<Unwinder>,
    ring: Ring,
}

/// The running profile's state, for the handler (null: none).
static LIVE: AtomicPtr<Live> = AtomicPtr::new(std::ptr::null_mut());

/// The sample hook: walks the interrupted stack into the ring. Async-signal-safe.
///
/// # Safety
/// Called only by the sampler from its SIGPROF handler, with the handler's `ucontext`.
unsafe fn on_sample(ucontext: *mut c_void, weight_ns: u64) {
    let live = LIVE.load(Ordering::Acquire);
    if live.is_null() {
        return;
    }
    // SAFETY: `LIVE` points at a `Live` that outlives the sampler's guard, and the guard's drop
    // waits for every handler to leave this hook before the `Live` is freed.
    let live = unsafe { &*live };
    live.ring.push(|s| {
        s.weight_ns = weight_ns;
        s.depth = live.unwinder.walk(ucontext, &mut s.frames);
        crate::sampler::task_labels::capture(&mut s.tags);
    });
}

/// A running CPU profile: started by [`Session::start`], drained by its owner.
#[derive(Debug)]
pub(crate) struct Session {
    live: Box<Live>,
    guard: Option<ProfileGuard>,
    hz: u32,
    started: Instant,
    time: SystemTime,
    stacks: HashMap<StackKey, (u64, u64)>,
    overflow: (u64, u64),
    /// Samples not walked for want of stack on their thread ([`NO_ROOM`]).
    no_room: u64,
    scratch: Sample,
    /// Drains so far (threads started meanwhile are looked for every [`COVER_EVERY`] drains).
    drains: u32,
}

impl Session {
    /// Loads the unwind information (first time only), then starts sampling at `hz`.
    pub(crate) fn start(hz: u32) -> Result<Session, ProfileError> {
        if hz == 0 || hz > MAX_HZ {
            return Err(ProfileError::Invalid(format!(
                "hz={hz}: expected 1 to {MAX_HZ} samples per CPU-second"
            )));
        }
        if !crate::sampler::unwind::probe_checked_reads() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                crate::sys::stderr::note(
                    "note",
                    "process_vm_readv is refused here (a seccomp filter?): CPU profile stacks \
                     are walked within each thread's own stack only",
                );
            });
        }
        // The workers of watched runtimes, found now, carry the tokio task id in their samples.
        crate::runtime::watched::refresh_all(Instant::now());
        // The unwinder of heap samples and stack requests follows libraries loaded since.
        crate::sampler::hook_unwinder::refresh();
        let live = Box::new(Live {
            unwinder: unwinder(),
            ring: Ring::new(RING_SAMPLES),
        });
        // Published before the hook can run; the sampler refuses a second profile, so no other
        // session's `Live` is here.
        let ptr = (&*live as *const Live).cast_mut();
        if LIVE
            .compare_exchange(
                std::ptr::null_mut(),
                ptr,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return Err(ProfileError::Busy);
        }
        let guard = match start_profile(hz, on_sample) {
            Ok(g) => g,
            Err(e) => {
                LIVE.store(std::ptr::null_mut(), Ordering::Release);
                return Err(match e {
                    SamplerError::Busy => ProfileError::Busy,
                    SamplerError::Unavailable(why) => ProfileError::Unavailable(why.into()),
                });
            }
        };
        Ok(Session {
            live,
            guard: Some(guard),
            hz,
            started: Instant::now(),
            time: SystemTime::now(),
            stacks: HashMap::new(),
            overflow: (0, 0),
            no_room: 0,
            scratch: Sample::EMPTY,
            drains: 0,
        })
    }

    /// Moves the samples in the ring into the stack map.
    pub(crate) fn drain(&mut self) {
        // Stops rdebug's timers if the program installed a SIGPROF handler of its own meanwhile;
        // else, every few drains, gives threads started since their timers.
        crate::sampler::check_handler();
        self.drains = self.drains.wrapping_add(1);
        if self.drains % COVER_EVERY == 0 {
            crate::sampler::cover_threads();
        }
        while self.live.ring.pop(&mut self.scratch) {
            let w = self.scratch.weight_ns;
            // A handler that found no free unwinder cache walked nothing: its time still counts.
            let stack = match self.scratch.stack() {
                [] => &[NOT_WALKED][..],
                s => s,
            };
            if stack.last() == Some(&NO_ROOM) {
                self.no_room = self.no_room.saturating_add(1);
            }
            let tags = &self.scratch.tags;
            let key = (stack.into(), (tags.labels().into(), tags.task));
            if let Some(e) = self.stacks.get_mut(&key) {
                e.0 = e.0.saturating_add(1);
                e.1 = e.1.saturating_add(w);
            } else if self.stacks.len() < MAX_STACKS {
                self.stacks.insert(key, (1, w));
            } else {
                self.overflow.0 = self.overflow.0.saturating_add(1);
                self.overflow.1 = self.overflow.1.saturating_add(w);
            }
        }
    }

    /// Stops sampling and symbolizes: the profile.
    pub(crate) fn finish(mut self) -> CpuProfile {
        drop(self.guard.take()); // waits until no handler is in the hook
        LIVE.store(std::ptr::null_mut(), Ordering::Release);
        self.drain();
        let duration = self.started.elapsed();
        let mut stacks: Vec<(Box<[u64]>, u64, u64, Tags)> = self
            .stacks
            .drain()
            .map(|((k, tags), (c, ns))| (k, c, ns, tags))
            .collect();
        let mut symbolized = symbolize(
            stacks
                .iter()
                .flat_map(|s| s.0.iter().copied())
                .filter(|&a| a != NOT_WALKED && a != NO_ROOM),
        );
        symbolized.insert_named(NOT_WALKED, "(rdebug: stack not walked)");
        symbolized.insert_named(NO_ROOM, NO_ROOM_NAME);
        if self.overflow.0 > 0 {
            symbolized.insert_named(0, "(rdebug: stacks limit reached)");
            stacks.push((
                Box::new([0]),
                self.overflow.0,
                self.overflow.1,
                (Box::new([]), 0),
            ));
        }
        stacks.sort_unstable_by_key(|s| std::cmp::Reverse(s.1));
        CpuProfile {
            hz: self.hz,
            time: self.time,
            duration,
            stacks,
            symbolized,
            lost: self.live.ring.lost(),
            no_room: self.no_room,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            LIVE.store(std::ptr::null_mut(), Ordering::Release);
        }
    }
}

/// A CPU profile: where the process spent its CPU time over a window, sampled `hz` times per
/// CPU-second, stacks symbolized in this process.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
/// let spin = std::thread::spawn(|| {
///     let t = std::time::Instant::now();
///     while t.elapsed() < std::time::Duration::from_millis(300) {
///         std::hint::black_box(0u64);
///     }
/// });
/// let p = rdebug::profile::cpu(std::time::Duration::from_millis(250), 100).unwrap();
/// spin.join().unwrap();
/// assert!(p.duration() >= std::time::Duration::from_millis(250));
/// let gz = p.pprof_gz();
/// assert_eq!(&gz[..2], &[0x1f, 0x8b]);
/// assert!(String::from_utf8(p.flamegraph_svg()).unwrap().starts_with("<?xml"));
/// ```
#[derive(Debug, Clone)]
pub struct CpuProfile {
    hz: u32,
    time: SystemTime,
    duration: Duration,
    /// Stacks (lookup addresses, innermost first), samples, CPU ns, labels and task id; most
    /// samples first.
    stacks: Vec<(Box<[u64]>, u64, u64, Tags)>,
    symbolized: Symbolized,
    lost: u64,
    no_room: u64,
}

/// Profiles the process's CPU for `duration`, sampling `hz` times per CPU-second (Go's
/// default is 100), and returns the profile. Blocks the calling thread for `duration`.
///
/// Samples are taken each time a thread has used `1/hz` s of CPU, on that thread (a timer on
/// each thread's CPU clock, as Go's profiler since 1.18); each stands for that much CPU time. One
/// profile runs at a time: a second gets [`ProfileError::Busy`]. Other errors:
/// [`ProfileError::Invalid`] for `hz` outside 1 to [`MAX_HZ`] or `duration` over
/// [`MAX_DURATION`], [`ProfileError::Unavailable`] when `SIGPROF` has another handler or on a
/// platform without a CPU-time timer.
///
/// On a machine with more busy threads than cores, Linux delivers a thread's timer signal late:
/// measured on 6.18 (two profiled threads and two other busy ones on two cores, a plain C program
/// as well as rdebug), up to ~20 periods of the thread's CPU after the expiry. Such a sample
/// counts every period it stands for (the signal's overrun), so the profile's total stays the
/// CPU used, but it lands where the thread was at delivery: shares from fewer, heavier samples
/// were off by up to 0.15 on a 2 s profile. Go's profiler has the same kernel under it. On a
/// saturated machine, profile longer or read shares as rough.
///
/// Every thread is sampled, threads started during the profile too (they are looked for every
/// 250 ms). The signal handler walks the stack on the interrupted thread's own stack and needs
/// about 42 KiB of it (debug build; measured by a test that holds it to 64 KiB). A thread with
/// less than 64 KiB of stack left below the point where the signal lands (deep recursion, a
/// small `stack_size`) is not walked, so the walk cannot run into its guard page and kill the
/// process: such a sample keeps its CPU time and the interrupted function alone, under the
/// pseudo-frame `(rdebug: too little stack left to walk)`, as Go files a sample it cannot
/// trace back under `runtime._System`; [`CpuProfile::no_room_samples`] counts them. How much is
/// left is known from the bounds each thread records when it first allocates through
/// [`Alloc`](crate::Alloc) (`pthread_getattr_np`, outside the handler), the main thread's
/// `RLIMIT_STACK`, and otherwise by asking the kernel whether every page of the 64 KiB below
/// the stack pointer can be read (a guard page cannot). Where a seccomp filter refuses
/// `process_vm_readv`, stacks are walked within each thread's own stack only, and one note says
/// so. When the profile ends, rdebug's `SIGPROF` handler stays installed (it
/// ignores late signals): `SIGPROF`'s default action would end the process.
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
/// let p = rdebug::profile::cpu(std::time::Duration::from_millis(100), 100).unwrap();
/// std::fs::write(std::env::temp_dir().join("cpu.pb.gz"), p.pprof_gz()).unwrap();
/// // go tool pprof -top cpu.pb.gz
/// ```
pub fn cpu(duration: Duration, hz: u32) -> Result<CpuProfile, ProfileError> {
    cpu_unless(duration, hz, &std::sync::atomic::AtomicBool::new(false))
}

/// [`cpu`], ended early once `stop` is set (the debug server's client went away): the profile
/// of the time until then.
pub(crate) fn cpu_unless(
    duration: Duration,
    hz: u32,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<CpuProfile, ProfileError> {
    if duration > MAX_DURATION {
        return Err(ProfileError::Invalid(format!(
            "duration {duration:?}: expected at most {} s",
            MAX_DURATION.as_secs()
        )));
    }
    let mut session = Session::start(hz)?;
    let end = Instant::now() + duration;
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(DRAIN_EVERY.min(end - now));
        session.drain();
    }
    Ok(session.finish())
}

impl CpuProfile {
    /// Samples taken.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// assert!(p.samples() < 100); // a mostly idle process
    /// ```
    pub fn samples(&self) -> u64 {
        self.stacks.iter().map(|s| s.1).sum()
    }

    /// CPU time the samples stand for, ns.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// assert!(p.cpu_ns() >= p.samples() * 10_000_000);
    /// ```
    pub fn cpu_ns(&self) -> u64 {
        self.stacks.iter().map(|s| s.2).fold(0, u64::saturating_add)
    }

    /// Wall time the profile covered.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// assert!(p.duration() >= std::time::Duration::from_millis(50));
    /// ```
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Samples dropped because the handlers outran the profiling thread (normally 0).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// assert_eq!(p.lost_samples(), 0);
    /// ```
    pub fn lost_samples(&self) -> u64 {
        self.lost
    }

    /// Samples whose stack was not walked because their thread had too little stack left below
    /// the interrupted function (less than 64 KiB: a walk needs about 42 KiB, see [`cpu`]);
    /// normally 0. Each is still in the profile with its CPU time and the interrupted function,
    /// under the pseudo-frame `(rdebug: too little stack left to walk)`.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// assert_eq!(p.no_room_samples(), 0);
    /// ```
    pub fn no_room_samples(&self) -> u64 {
        self.no_room
    }

    /// The profile in pprof format, gzipped, as Go's `/debug/pprof/profile` serves it: sample
    /// types `samples/count` and `cpu/nanoseconds`, period type `cpu/nanoseconds`, period
    /// `1e9/hz`, `duration_nanos`; every location symbolized in this process (one line per
    /// inlined frame, file and line where the binary has DWARF line tables) under the mapping
    /// of the object it lies in, with its build ID.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// assert_eq!(&p.pprof_gz()[..2], &[0x1f, 0x8b]);
    /// ```
    pub fn pprof_gz(&self) -> Vec<u8> {
        let period = 1_000_000_000 / i64::from(self.hz.max(1));
        let mut b = Builder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            period,
        );
        b.times(self.time, self.duration);
        b.add_symbolized(&self.symbolized);
        if self.lost > 0 {
            b.comment(&format!("rdebug: {} samples lost (ring full)", self.lost));
        }
        if self.no_room > 0 {
            b.comment(&format!(
                "rdebug: {} samples not walked (too little stack left on their thread): \
                 interrupted function only, under {NO_ROOM_NAME}",
                self.no_room
            ));
        }
        let mut locs = Vec::with_capacity(MAX_DEPTH);
        for (stack, count, ns, tags) in &self.stacks {
            locs.clear();
            locs.extend(
                stack
                    .iter()
                    .map(|&a| b.symbolized_location(&self.symbolized, a)),
            );
            let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            sample(&mut b, &locs, &[v(*count), v(*ns)], tags);
        }
        b.encode_gz()
    }

    /// The profile as a flame graph, an SVG image (self-contained, hover titles on every frame):
    /// what `/debug/pprof/profile?format=svg` serves.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::cpu(std::time::Duration::from_millis(50), 100).unwrap();
    /// let svg = String::from_utf8(p.flamegraph_svg()).unwrap();
    /// assert!(svg.contains("<svg"));
    /// ```
    pub fn flamegraph_svg(&self) -> Vec<u8> {
        let stacks = self
            .stacks
            .iter()
            .map(|(stack, count, _, _)| (self.symbolized.root_first_names(stack), *count));
        super::flame::svg(
            stacks,
            &format!(
                "CPU {:.1} s, {} samples",
                self.duration.as_secs_f64(),
                self.samples()
            ),
        )
    }
}

/// Adds a sample to `b`, with its labels and task id (`task_id`) as pprof labels when it has any.
fn sample(b: &mut Builder, locs: &[u64], values: &[i64], (labels, task): &Tags) {
    if labels.is_empty() && *task == 0 {
        b.sample(locs, values);
        return;
    }
    let strs: Vec<(&str, &str)> = crate::sampler::task_labels::pairs(labels).collect();
    let task = i64::try_from(*task).unwrap_or(i64::MAX);
    let nums: &[(&str, i64)] = if task > 0 { &[("task_id", task)] } else { &[] };
    b.sample_labeled(locs, values, &strs, nums);
}
