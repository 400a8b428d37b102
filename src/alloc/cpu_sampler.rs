//! The CPU-time sampler: one `SIGPROF` per 10 ms of the process's CPU time, delivered to the
//! thread that used it, serving both the allocator-CPU figure and the CPU profiler.
//!
//! A POSIX timer on `CLOCK_PROCESS_CPUTIME_ID` (`timer_create`, Go's way since golang/go#35057
//! rather than `setitimer`) raises `SIGPROF` each time the process as a whole has used another
//! period of CPU time. Since Linux 6.4 the kernel delivers such a signal to the thread that was
//! running when the timer expired, so a sample lands where the CPU time went. The handler asks
//! the interrupted thread whether it is inside an [`Alloc`](crate::Alloc) call (a thread-local
//! flag the allocator sets around jemalloc's own call) and adds the period to the allocator's
//! CPU time if so, and to the total in any case: allocator CPU is the process's CPU time times
//! the share of samples that landed in the allocator, so it cannot exceed the process's CPU time
//! and a preempted thread (which uses no CPU) is never sampled. A profile hook (the CPU profiler)
//! gets every sample too, with the interrupted context.
//!
//! The sampler starts the first time a figure needs it and then runs until the process exits
//! (a share "since init" would undercount if it paused): it costs one signal per 10 ms of CPU.
//! It never takes `SIGPROF` from a program that installed its own handler: the allocator-CPU
//! figure is then 0, and says so once. Elsewhere than Linux there is no sampler.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Duration;

/// Samples per second of process CPU time while only the allocator figure needs them.
pub(crate) const DEFAULT_HZ: u32 = 100;

/// Called from the `SIGPROF` handler, on the thread whose CPU time expired the timer; must be
/// async-signal-safe (no allocation, no locks). `ucontext` is the handler's third argument (a
/// `libc::ucontext_t`), `weight_ns` the CPU time the sample stands for.
#[allow(dead_code)] // the CPU profiler (feature `pprof`) is its user
pub(crate) type SampleHook = unsafe fn(ucontext: *mut std::ffi::c_void, weight_ns: u64);

/// Why the sampler cannot serve a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the CPU profiler (feature `pprof`) is its user
pub(crate) enum SamplerError {
    /// Another profile runs.
    Busy,
    /// No sampler here: the reason, for the user.
    Unavailable(&'static str),
}

/// Process CPU time, ns, of the samples taken (each counts its period).
static TOTAL_NS: AtomicU64 = AtomicU64::new(0);
/// The part of [`TOTAL_NS`] whose samples landed inside an allocator call.
static ALLOC_NS: AtomicU64 = AtomicU64::new(0);
/// The period now in force, ns (what one sample stands for).
static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
/// The profile hook (a `SampleHook` as usize), or 0.
static HOOK: AtomicUsize = AtomicUsize::new(0);
/// Handlers inside the hook now (a guard waits for 0 after clearing [`HOOK`]).
static IN_HOOK: AtomicUsize = AtomicUsize::new(0);
/// The timer, once created (a `timer_t` as usize; Linux numbers timers from 0), else [`NO_TIMER`].
static TIMER: AtomicUsize = AtomicUsize::new(NO_TIMER);
const NO_TIMER: usize = usize::MAX;
/// The sampler is running.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// The allocator-CPU figure uses it (then it runs until exit).
static FOR_ALLOC: AtomicBool = AtomicBool::new(false);
/// Why it could not start, once it tried (a `&'static str` as pointer + len would need two
/// words; the reason is re-derived by [`start`] instead, so this only says "tried and failed").
static FAILED: AtomicBool = AtomicBool::new(false);

/// CPU time spent inside allocator calls since the sampler started, ns (0 if it never ran).
pub(crate) fn alloc_cpu_ns() -> u64 {
    ALLOC_NS.load(Relaxed)
}

/// Process CPU time the sampler has accounted for since it started, ns.
#[allow(dead_code)] // read by tests and the CPU profiler
pub(crate) fn sampled_cpu_ns() -> u64 {
    TOTAL_NS.load(Relaxed)
}

/// Starts the sampler for the allocator-CPU figure if it is not running; `Err` says why it
/// cannot run (then the figure stays 0). Cheap once running: one atomic load.
pub(crate) fn ensure_started() -> Result<(), &'static str> {
    if FOR_ALLOC.load(Acquire) {
        return Ok(());
    }
    if FAILED.load(Relaxed) {
        return Err("the CPU-time sampler could not start");
    }
    let _guard = crate_lock();
    FOR_ALLOC.store(true, Release);
    if RUNNING.load(Acquire) {
        return Ok(());
    }
    match imp::start(DEFAULT_HZ) {
        Ok(()) => {
            RUNNING.store(true, Release);
            Ok(())
        }
        Err(reason) => {
            FOR_ALLOC.store(false, Release);
            FAILED.store(true, Relaxed);
            Err(reason)
        }
    }
}

/// A profile's hold on the sampler; dropping it removes the hook and puts the rate back.
#[derive(Debug)]
#[allow(dead_code)] // the CPU profiler (feature `pprof`) is its user
pub(crate) struct ProfileGuard {
    _private: (),
}

/// Points the sampler at `hz` samples per CPU-second of the process and installs `hook`. One
/// profile at a time.
#[allow(dead_code)] // the CPU profiler (feature `pprof`) is its user
pub(crate) fn start_profile(hz: u32, hook: SampleHook) -> Result<ProfileGuard, SamplerError> {
    let _guard = crate_lock();
    if HOOK.load(Acquire) != 0 {
        return Err(SamplerError::Busy);
    }
    if !RUNNING.load(Acquire) {
        imp::start(hz.max(1)).map_err(SamplerError::Unavailable)?;
        RUNNING.store(true, Release);
    } else {
        imp::set_rate(hz.max(1));
    }
    HOOK.store(hook as usize, Release);
    Ok(ProfileGuard { _private: () })
}

impl Drop for ProfileGuard {
    fn drop(&mut self) {
        let _guard = crate_lock();
        HOOK.store(0, SeqCst);
        // A handler that loaded the hook before it was cleared finishes with it first.
        while IN_HOOK.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        if FOR_ALLOC.load(Acquire) {
            imp::set_rate(DEFAULT_HZ);
        } else {
            imp::stop();
            RUNNING.store(false, Release);
        }
    }
}

/// Serialises starting, stopping and rate changes (never taken by the handler).
fn crate_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn period_of(hz: u32) -> Duration {
    Duration::from_nanos(1_000_000_000 / u64::from(hz.max(1)))
}

/// What the handler does with one sample (Linux and tests): the accounting, then the hook.
fn on_sample(overrun: u64, ucontext: *mut std::ffi::c_void) {
    let weight = PERIOD_NS
        .load(Relaxed)
        .saturating_mul(overrun.saturating_add(1));
    TOTAL_NS.fetch_add(weight, Relaxed);
    if super::counting::in_allocator() {
        ALLOC_NS.fetch_add(weight, Relaxed);
    }
    if HOOK.load(Acquire) != 0 {
        IN_HOOK.fetch_add(1, SeqCst);
        let hook = HOOK.load(SeqCst);
        if hook != 0 {
            // SAFETY: `hook` was stored from a `SampleHook` by `start_profile`; it stays valid
            // (a fn pointer) and the guard waits for `IN_HOOK` before the profile goes.
            let f: SampleHook = unsafe { std::mem::transmute::<usize, SampleHook>(hook) };
            // SAFETY: the hook's contract: called from the handler with its context.
            unsafe { f(ucontext, weight) };
        }
        IN_HOOK.fetch_sub(1, SeqCst);
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_int, c_void};
    use std::mem::MaybeUninit;
    use std::ptr;
    use std::sync::atomic::Ordering::*;

    use super::{NO_TIMER, PERIOD_NS, TIMER, on_sample, period_of};

    /// The `SIGPROF` disposition before ours, restored by [`stop`].
    static OLD_ACTION: std::sync::Mutex<Option<libc::sigaction>> = std::sync::Mutex::new(None);

    /// Installs the handler (unless `SIGPROF` belongs to someone else), creates the timer and
    /// arms it at `hz`.
    pub(super) fn start(hz: u32) -> Result<(), &'static str> {
        let old = install_handler()?;
        *OLD_ACTION.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
        let timer = match create_timer() {
            Ok(t) => t,
            Err(e) => {
                restore_handler();
                return Err(e);
            }
        };
        TIMER.store(timer as usize, Release);
        set_rate(hz);
        Ok(())
    }

    /// Deletes the timer and puts the previous `SIGPROF` disposition back.
    pub(super) fn stop() {
        let timer = TIMER.swap(NO_TIMER, AcqRel);
        if timer != NO_TIMER {
            // SAFETY: a timer we created, deleted once (swapped out above).
            unsafe { libc::timer_delete(timer as libc::timer_t) };
        }
        restore_handler();
    }

    fn restore_handler() {
        if let Some(old) = OLD_ACTION.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: a disposition sigaction itself returned.
            unsafe { libc::sigaction(libc::SIGPROF, &old, ptr::null_mut()) };
        }
    }

    /// Re-arms the timer at `hz` (no-op before `start`).
    pub(super) fn set_rate(hz: u32) {
        let timer = TIMER.load(Acquire);
        if timer == NO_TIMER {
            return;
        }
        let period = period_of(hz);
        PERIOD_NS.store(period.as_nanos() as u64, Relaxed);
        let ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: a timer we created; valid spec pointers.
        unsafe { libc::timer_settime(timer as libc::timer_t, 0, &spec, ptr::null_mut()) };
    }

    fn install_handler() -> Result<libc::sigaction, &'static str> {
        // SAFETY: plain sigaction calls with valid pointers.
        unsafe {
            let mut old = MaybeUninit::<libc::sigaction>::zeroed();
            if libc::sigaction(libc::SIGPROF, ptr::null(), old.as_mut_ptr()) != 0 {
                return Err("cannot read the SIGPROF disposition");
            }
            let old = old.assume_init();
            let ours = handler as *const () as libc::sighandler_t;
            if old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
                && old.sa_sigaction != ours
            {
                return Err("SIGPROF has a handler of the program's own (another profiler?)");
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = ours;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            if libc::sigaction(libc::SIGPROF, &new, ptr::null_mut()) != 0 {
                return Err("cannot install the SIGPROF handler");
            }
            Ok(old)
        }
    }

    fn create_timer() -> Result<libc::timer_t, &'static str> {
        // SAFETY: valid pointers; the sigevent asks for SIGPROF to the process.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_SIGNAL;
            sev.sigev_signo = libc::SIGPROF;
            let mut timer: libc::timer_t = ptr::null_mut();
            if libc::timer_create(libc::CLOCK_PROCESS_CPUTIME_ID, &mut sev, &mut timer) != 0 {
                return Err("timer_create(CLOCK_PROCESS_CPUTIME_ID) failed");
            }
            Ok(timer)
        }
    }

    extern "C" fn handler(_sig: c_int, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
        // SAFETY: errno is thread-local; saved and restored around the handler's own calls.
        let errno = unsafe { *libc::__errno_location() };
        // Only our timer's expirations are samples (not a `kill -PROF`).
        // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
        if !info.is_null() && unsafe { (*info).si_code } == libc::SI_TIMER {
            let timer = TIMER.load(Relaxed);
            let overrun = if timer == NO_TIMER {
                0
            } else {
                // SAFETY: async-signal-safe; a timer we created.
                unsafe { libc::timer_getoverrun(timer as libc::timer_t) }.max(0) as u64
            };
            on_sample(overrun, ucontext);
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn start(_hz: u32) -> Result<(), &'static str> {
        Err("no CPU-time sampler on this platform (Linux only)")
    }

    pub(super) fn set_rate(_hz: u32) {}

    pub(super) fn stop() {}
}
