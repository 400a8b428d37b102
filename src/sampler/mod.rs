//! The CPU-time sampler: one `SIGPROF` per 10 ms of each thread's CPU time, delivered to that
//! thread, serving both the allocator-CPU figure and the CPU profiler.
//!
//! Every thread that allocates through [`Alloc`](crate::Alloc) gets a POSIX timer on its own CPU
//! clock (`timer_create` on the thread's CPU clock with `SIGEV_THREAD_ID`, Go's way since
//! golang/go#35057: a process-wide timer lands its signals on whichever CPU's tick noticed the
//! expiry, which measured here gave one thread anywhere from 11% to 107% of its share). Each
//! expiry interrupts the thread that used the time; the handler asks whether the interrupted
//! instruction lies in the allocator's code (an address table of jemalloc's and the global
//! allocator's functions, built once from the executable's symbol table, see
//! [`alloc_text`](crate::sampler::allocator_code)) and adds the period to the allocator's CPU time if so.
//! So the figure is each thread's CPU time times the share of its samples that landed in the allocator, as `perf` would measure it:
//! a preempted thread uses no CPU and is never sampled, and the figure cannot exceed the CPU the
//! threads used. A profile hook (the CPU profiler) gets every sample too, with the interrupted
//! context. A thread that never allocated has no timer for the allocator figure (it spends no
//! time in the allocator); while a CPU profile runs, every thread has one: the ones without a
//! slot timer are found in `/proc/self/task` when the profile starts and every few drains
//! ([`cover_threads`]).
//!
//! The sampler starts the first time a figure needs it and then runs until the process exits
//! (a share "since init" would undercount if it paused): one signal per 10 ms of CPU. Threads
//! that exist then get their timers from the starting thread; later ones arm their own at their
//! first allocation and delete it when they exit. It never takes `SIGPROF` from a program that
//! installed its own handler: the allocator-CPU figure is then 0, and says so once. Elsewhere
//! than Linux there is no sampler.
//!
//! Once installed, rdebug's handler stays installed when the sampler stops (it ignores what still
//! arrives): `SIGPROF`'s default action terminates the process, and a deleted timer's signal may
//! still be queued, or pending on a thread that blocks `SIGPROF` (tikv/pprof-rs#288). The earlier
//! disposition is put back only when it was `SIG_IGN` and the handler is still rdebug's. When the
//! program (or another profiler) installs a `SIGPROF` handler of its own later, rdebug deletes
//! every timer of its at its next check ([`check_handler`]: each drain of a CPU profile, each
//! allocator sample of the `memstats` tracker), so its signals do not land in a foreign handler.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Duration;

use registry::{Entry, NO_TIMER, for_each_entry as for_each_slot};

pub(crate) mod allocator_code;
#[cfg(feature = "pprof")]
mod copied_stack;
mod handler;
#[cfg(feature = "pprof")]
pub(crate) mod hook_unwinder;
pub(crate) mod registry;
#[cfg(feature = "pprof")]
pub(crate) mod ring;
pub(crate) mod task_labels;
#[cfg(feature = "pprof")]
pub(crate) mod thread_stack;
mod timers;
#[cfg(feature = "pprof")]
pub(crate) mod unwind;

/// Samples per second of a thread's CPU time while only the allocator figure needs them.
pub(crate) const DEFAULT_HZ: u32 = 100;

/// Called from the `SIGPROF` handler, on the thread whose CPU time expired its timer; must be
/// async-signal-safe (no allocation, no locks). `ucontext` is the handler's third argument (a
/// `libc::ucontext_t`), `weight_ns` the CPU time the sample stands for.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the CPU profiler (feature `pprof`) is its user
pub(crate) type SampleHook = unsafe fn(ucontext: *mut std::ffi::c_void, weight_ns: u64);

/// Why the sampler cannot serve a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the CPU profiler (feature `pprof`) is its user
pub(crate) enum SamplerError {
    /// Another profile runs.
    Busy,
    /// No sampler here: the reason, for the user.
    Unavailable(&'static str),
}

/// CPU time, ns, of the samples taken (each counts its period).
static TOTAL_NS: AtomicU64 = AtomicU64::new(0);
/// The part of [`TOTAL_NS`] whose samples landed inside an allocator call.
static ALLOC_NS: AtomicU64 = AtomicU64::new(0);
/// The period now in force, ns (what one sample stands for).
static PERIOD_NS: AtomicU64 = AtomicU64::new(1_000_000_000 / DEFAULT_HZ as u64);
/// The profile hook (a `SampleHook` as usize), or 0.
static HOOK: AtomicUsize = AtomicUsize::new(0);
/// Handlers inside the hook now (a guard waits for 0 after clearing [`HOOK`]).
static IN_HOOK: AtomicUsize = AtomicUsize::new(0);
/// The hook for `SIGPROF`s rdebug sends one thread itself ([`signal_thread`]), a `SampleHook` as
/// usize, or 0: the stall detector's stack requests.
static REQUEST_HOOK: AtomicUsize = AtomicUsize::new(0);
/// The sampler is running: threads arm their own timer when they set up.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// The allocator-CPU figure uses it (then it runs until exit).
static FOR_ALLOC: AtomicBool = AtomicBool::new(false);
/// It tried to start for the allocator figure and could not.
static FAILED: AtomicBool = AtomicBool::new(false);

/// CPU time spent inside allocator calls since the sampler started, ns (0 if it never ran).
pub(crate) fn alloc_cpu_ns() -> u64 {
    ALLOC_NS.load(Relaxed)
}

/// CPU time of the sampled threads since the sampler started, ns.
#[allow(dead_code)] // read by the CPU profiler
pub(crate) fn sampled_cpu_ns() -> u64 {
    TOTAL_NS.load(Relaxed)
}

/// Installs the `SIGPROF` handler, and nothing else (no timer): what a stack request sent to
/// one thread ([`signal_thread`]) needs. `Err` says why it cannot be installed.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // stack requests (feature `pprof`)
pub(crate) fn ensure_handler() -> Result<(), &'static str> {
    if FAILED.load(Relaxed) {
        return Err("the CPU-time sampler could not start");
    }
    let _guard = control_lock();
    handler::install_handler()
}

/// Whether the sampler runs for the allocator-CPU figure ([`ensure_started`] succeeded).
pub(crate) fn started_for_alloc() -> bool {
    FOR_ALLOC.load(Acquire)
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
    // Where the allocator's code is, for the handler: built once, here, outside it.
    if let Err(reason) = allocator_code::build() {
        FAILED.store(true, Relaxed);
        return Err(reason);
    }
    let _guard = control_lock();
    if FOR_ALLOC.load(Acquire) {
        return Ok(());
    }
    if !RUNNING.load(Acquire)
        && let Err(reason) = start(DEFAULT_HZ)
    {
        FAILED.store(true, Relaxed);
        return Err(reason);
    }
    FOR_ALLOC.store(true, Release);
    Ok(())
}

/// A profile's hold on the sampler; dropping it removes the hook and puts the rate back.
#[derive(Debug)]
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the CPU profiler (feature `pprof`) is its user
pub(crate) struct ProfileGuard(());

/// The running profile's timers for threads without a timer in a slot (threads that never
/// allocated through [`Alloc`](crate::Alloc)): a profile samples every thread, the allocator
/// figure only the allocating ones. `(tid, timer)`; changed under [`control_lock`] only.
static EXTRA: std::sync::Mutex<Vec<(i64, usize)>> = std::sync::Mutex::new(Vec::new());

/// Deletes the [`EXTRA`] timers (under [`control_lock`]).
fn delete_extra() {
    let mut extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner());
    for (_, t) in extra.drain(..) {
        timers::delete_timer(t);
    }
}

/// While a profile runs, gives every thread of the process (from `/proc/self/task`) that has no
/// timer one, and deletes the profile's timers of threads that exited or have got a slot timer
/// since (their first allocation). The CPU profiler calls it every few drains (250 ms), so
/// threads started during a profile that never allocate are sampled too. Allocates: never from
/// the handler.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the CPU profiler (feature `pprof`) is its user
pub(crate) fn cover_threads() {
    if HOOK.load(Acquire) == 0 {
        return;
    }
    let _guard = control_lock();
    if HOOK.load(Acquire) != 0 && RUNNING.load(Acquire) {
        cover_locked();
    }
}

/// [`cover_threads`]' work, under [`control_lock`].
fn cover_locked() {
    let mut live = crate::sys::task::thread_ids();
    live.sort_unstable();
    let mut armed = Vec::new();
    for_each_slot(|s| {
        if s.timer.load(Acquire) != NO_TIMER {
            armed.push(s.tid.load(Relaxed));
        }
    });
    armed.sort_unstable();
    let mut extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner());
    extra.retain(|&(tid, t)| {
        let keep = live.binary_search(&tid).is_ok() && armed.binary_search(&tid).is_err();
        if !keep {
            timers::delete_timer(t);
        }
        keep
    });
    let mut covered: Vec<i64> = extra.iter().map(|&(tid, _)| tid).collect();
    covered.sort_unstable();
    let period = Duration::from_nanos(PERIOD_NS.load(Relaxed));
    for tid in live {
        if armed.binary_search(&tid).is_ok() || covered.binary_search(&tid).is_ok() {
            continue;
        }
        if let Some(t) = timers::create_timer(tid) {
            timers::set_timer(t, period);
            extra.push((tid, t));
        }
    }
}

/// While the sampler runs, checks that `SIGPROF`'s handler is still rdebug's; if another handler
/// took its place, deletes every rdebug timer (their signals would land in that handler) and
/// stops the sampler for good. One `sigaction` call when running; nothing otherwise.
pub(crate) fn check_handler() {
    if !RUNNING.load(Acquire) || handler::handler_is_ours() {
        return;
    }
    let _guard = control_lock();
    if RUNNING.load(Acquire) && !handler::handler_is_ours() {
        RUNNING.store(false, Release);
        for_each_slot(disarm);
        delete_extra();
        FAILED.store(true, Relaxed);
        crate::sys::stderr::note(
            "warning",
            "SIGPROF has a handler of the program's own now: rdebug's CPU-time sampler stopped \
             (no more allocator CPU figure or CPU profiles)",
        );
    }
}

/// Points the sampler at `hz` samples per CPU-second of each allocating thread and installs
/// `hook`. One profile at a time.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the CPU profiler (feature `pprof`) is its user
pub(crate) fn start_profile(hz: u32, hook: SampleHook) -> Result<ProfileGuard, SamplerError> {
    let _guard = control_lock();
    if HOOK.load(Acquire) != 0 {
        return Err(SamplerError::Busy);
    }
    let hz = hz.clamp(1, 10_000);
    if RUNNING.load(Acquire) {
        set_rate(hz);
    } else {
        start(hz).map_err(SamplerError::Unavailable)?;
    }
    HOOK.store(hook as usize, Release);
    cover_locked();
    Ok(ProfileGuard(()))
}

impl Drop for ProfileGuard {
    fn drop(&mut self) {
        let _guard = control_lock();
        delete_extra();
        HOOK.store(0, SeqCst);
        // A handler that loaded the hook before it was cleared finishes with it first.
        while IN_HOOK.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        if FOR_ALLOC.load(Acquire) {
            set_rate(DEFAULT_HZ);
        } else {
            stop();
        }
    }
}

/// Serialises starting, stopping and rate changes (never taken by the handler or the allocator).
fn control_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn period_ns(hz: u32) -> u64 {
    1_000_000_000 / u64::from(hz.max(1))
}

/// Installs the handler, then gives every thread that has a slot its timer.
fn start(hz: u32) -> Result<(), &'static str> {
    handler::install_handler()?;
    registry::install_hooks();
    PERIOD_NS.store(period_ns(hz), Relaxed);
    RUNNING.store(true, Release);
    // Threads setting up from now on arm themselves; the ones already there get theirs here.
    for_each_slot(|s| {
        if s.in_use.load(Acquire) {
            arm(s);
        }
    });
    Ok(())
}

/// Deletes every timer. The handler stays installed (it ignores what still arrives): a signal of
/// a deleted timer may be queued already, or pending on a thread that blocks `SIGPROF` for a
/// while, and `SIGPROF`'s default action terminates the process (tikv/pprof-rs#288). An earlier
/// disposition that is safe to get a stray signal under (`SIG_IGN`) is put back.
fn stop() {
    RUNNING.store(false, Release);
    for_each_slot(disarm);
    handler::restore_handler();
}

/// Re-arms every timer at `hz`.
fn set_rate(hz: u32) {
    PERIOD_NS.store(period_ns(hz), Relaxed);
    let period = Duration::from_nanos(period_ns(hz));
    for_each_slot(|s| {
        let t = s.timer.load(Acquire);
        if t != NO_TIMER {
            timers::set_timer(t, period);
        }
    });
}

/// Gives `slot`'s thread a timer if the sampler runs and it has none (called by the thread itself
/// at its first allocation, or by the thread starting the sampler). Makes no Rust allocation.
///
/// The starter may race the slot's thread exiting, and the slot's next owner arming itself: a
/// timer made for a thread that is gone must not stay in the slot, or the next owner (which sees
/// a timer and makes none) is never sampled. An exiting thread clears the slot's `tid` before
/// it deletes the slot's timer, so a timer installed after that deletion is found here by the
/// `tid` check that follows the exchange, and taken back; the slot's new owner, if any, then
/// gets its own.
pub(crate) fn arm(slot: &Entry) {
    loop {
        if !RUNNING.load(Acquire) {
            return;
        }
        let tid = slot.tid.load(SeqCst);
        if tid == 0 || slot.timer.load(Acquire) != NO_TIMER {
            return;
        }
        let Some(t) = timers::create_timer(tid) else {
            return;
        };
        if slot
            .timer
            .compare_exchange(NO_TIMER, t, SeqCst, Acquire)
            .is_err()
        {
            timers::delete_timer(t); // the thread and the starter raced: one timer is enough
            return;
        }
        if slot.tid.load(SeqCst) == tid {
            timers::set_timer(t, Duration::from_nanos(PERIOD_NS.load(Relaxed)));
            return;
        }
        // The thread exited meanwhile: take the timer back (unless its exit already did), then
        // arm for the slot's new owner, if there is one.
        if slot
            .timer
            .compare_exchange(t, NO_TIMER, SeqCst, Acquire)
            .is_ok()
        {
            timers::delete_timer(t);
        }
    }
}

/// Deletes `slot`'s timer, if any (its thread is exiting, or the sampler stops).
pub(crate) fn disarm(slot: &Entry) {
    let t = slot.timer.swap(NO_TIMER, SeqCst);
    if t != NO_TIMER {
        timers::delete_timer(t);
    }
}

/// Sets the hook called for the `SIGPROF`s [`signal_thread`] sends (weight 0). Set once, never
/// cleared: the hook must stay valid for the process's life.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) fn set_request_hook(hook: SampleHook) {
    REQUEST_HOOK.store(hook as usize, Release);
}

/// Sends `SIGPROF` to thread `tid` of this process, for the request hook; false if it cannot
/// (`SIGPROF` is not rdebug's: [`ensure_handler`] first; or no such thread).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) fn signal_thread(tid: i64) -> bool {
    // Only while `SIGPROF` has rdebug's handler (timers running or not): its default action
    // would end the process, and another handler would get a signal it did not ask for.
    handler::handler_is_ours() && crate::sys::thread::signal_thread(tid, libc::SIGPROF)
}

/// A `SIGPROF` rdebug sent one thread: the request hook, if any.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn on_request(ucontext: *mut std::ffi::c_void) {
    let hook = REQUEST_HOOK.load(Acquire);
    if hook != 0 {
        // SAFETY: stored from a `SampleHook` by `set_request_hook`, valid for the process's life.
        let f: SampleHook = unsafe { std::mem::transmute::<usize, SampleHook>(hook) };
        // SAFETY: the hook's contract: called from the handler with its context.
        unsafe { f(ucontext, 0) };
    }
}

/// What the handler does with one sample: the accounting, then the hook.
fn on_sample(overrun: u64, ucontext: *mut std::ffi::c_void) {
    if !RUNNING.load(Acquire) {
        return; // a deleted timer's last signal
    }
    let weight = PERIOD_NS
        .load(Relaxed)
        .saturating_mul(overrun.saturating_add(1));
    TOTAL_NS.fetch_add(weight, Relaxed);
    if allocator_code::interrupted_in_allocator(ucontext) {
        ALLOC_NS.fetch_add(weight, Relaxed);
    }
    if HOOK.load(Acquire) != 0 {
        IN_HOOK.fetch_add(1, SeqCst);
        let hook = HOOK.load(SeqCst);
        if hook != 0 {
            // SAFETY: `hook` was stored from a `SampleHook` by `start_profile`; the guard waits
            // for `IN_HOOK` before the profile goes.
            let f: SampleHook = unsafe { std::mem::transmute::<usize, SampleHook>(hook) };
            // SAFETY: the hook's contract: called from the handler with its context.
            unsafe { f(ucontext, weight) };
        }
        IN_HOOK.fetch_sub(1, SeqCst);
    }
}
