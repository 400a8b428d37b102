//! STAND-IN for `crate::alloc::cpu_sampler` (the lead's one sampler serving both the
//! allocator-CPU figure and the profiler), with the same contract, so the profiler can be
//! built and tested before it lands. When it lands, this file goes and `cpu/mod.rs` imports
//! `crate::alloc::cpu_sampler::{start_profile, ProfileGuard, SamplerError, SampleHook}`.
//!
//! A POSIX timer on `CLOCK_PROCESS_CPUTIME_ID` raises `SIGPROF` every `1/hz` s of the process's
//! CPU time (Linux ≥ 6.4 delivers it to the thread whose CPU time expired it; older kernels to
//! any thread, which skews stacks toward idle threads); the handler calls the installed hook.

use std::ffi::c_void;

/// Called from the SIGPROF handler, on the thread whose CPU time expired the timer; must be
/// async-signal-safe (no allocation, no locks). `ucontext` is the handler's 3rd argument,
/// `weight_ns` the CPU time this sample stands for.
pub(crate) type SampleHook = unsafe fn(ucontext: *mut c_void, weight_ns: u64);

/// Why no profile could start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SamplerError {
    /// Another profile's guard is alive.
    Busy,
    /// SIGPROF belongs to someone else, or the platform has no such timer.
    Unavailable(&'static str),
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{SampleHook, SamplerError};
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

    /// Set while a guard lives.
    static ACTIVE: AtomicBool = AtomicBool::new(false);
    /// The hook, as a pointer (null: none).
    static HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());
    /// Handlers inside the hook now.
    static INSIDE: AtomicUsize = AtomicUsize::new(0);
    /// The timer period, ns.
    static PERIOD_NS: AtomicU64 = AtomicU64::new(0);
    /// The timer (a `timer_t`, which is a pointer on Linux).
    static TIMER: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

    /// Holds the profile's timer and hook; dropping it stops both.
    #[derive(Debug)]
    pub(crate) struct ProfileGuard {
        old: libc::sigaction,
    }

    extern "C" fn handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, uc: *mut c_void) {
        // SAFETY: errno is thread-local; saved and restored around the handler.
        let errno = unsafe { *libc::__errno_location() };
        INSIDE.fetch_add(1, Ordering::SeqCst);
        let hook = HOOK.load(Ordering::SeqCst);
        if !hook.is_null() {
            let timer = TIMER.load(Ordering::Relaxed);
            // SAFETY: timer_getoverrun is async-signal-safe; a stale timer id gives -1.
            let overrun = unsafe { libc::timer_getoverrun(timer) }.max(0) as u64;
            let weight = PERIOD_NS
                .load(Ordering::Relaxed)
                .saturating_mul(1 + overrun);
            // SAFETY: HOOK only ever holds a `SampleHook`.
            let hook: SampleHook = unsafe { std::mem::transmute::<*mut (), SampleHook>(hook) };
            // SAFETY: the hook's contract: called from the handler with its ucontext.
            unsafe { hook(uc, weight) };
        }
        INSIDE.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    pub(crate) fn start_profile(hz: u32, hook: SampleHook) -> Result<ProfileGuard, SamplerError> {
        if hz == 0 {
            return Err(SamplerError::Unavailable("hz must be at least 1"));
        }
        if ACTIVE
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(SamplerError::Busy);
        }
        let fail = |why| {
            ACTIVE.store(false, Ordering::SeqCst);
            Err(SamplerError::Unavailable(why))
        };
        // SAFETY: plain sigaction/timer calls on zeroed, then filled, C structs.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old) != 0 {
                return fail("sigaction(SIGPROF) failed");
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                return fail("SIGPROF already has a handler (another profiler?)");
            }
            let period_ns = 1_000_000_000u64 / u64::from(hz);
            PERIOD_NS.store(period_ns, Ordering::SeqCst);
            HOOK.store(hook as *mut (), Ordering::SeqCst);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction =
                handler as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGPROF, &sa, std::ptr::null_mut()) != 0 {
                HOOK.store(std::ptr::null_mut(), Ordering::SeqCst);
                return fail("sigaction(SIGPROF) failed");
            }
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_SIGNAL;
            sev.sigev_signo = libc::SIGPROF;
            let mut timer: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_PROCESS_CPUTIME_ID, &mut sev, &mut timer) != 0 {
                libc::sigaction(libc::SIGPROF, &old, std::ptr::null_mut());
                HOOK.store(std::ptr::null_mut(), Ordering::SeqCst);
                return fail("timer_create(CLOCK_PROCESS_CPUTIME_ID) failed");
            }
            TIMER.store(timer, Ordering::SeqCst);
            let ts = libc::timespec {
                tv_sec: (period_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (period_ns % 1_000_000_000) as libc::c_long,
            };
            let spec = libc::itimerspec {
                it_interval: ts,
                it_value: ts,
            };
            if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
                libc::timer_delete(timer);
                libc::sigaction(libc::SIGPROF, &old, std::ptr::null_mut());
                HOOK.store(std::ptr::null_mut(), Ordering::SeqCst);
                return fail("timer_settime failed");
            }
            Ok(ProfileGuard { old })
        }
    }

    impl Drop for ProfileGuard {
        fn drop(&mut self) {
            // SAFETY: our timer and the disposition we replaced.
            unsafe {
                libc::timer_delete(TIMER.swap(std::ptr::null_mut(), Ordering::SeqCst));
                HOOK.store(std::ptr::null_mut(), Ordering::SeqCst);
                // Ignoring first discards a SIGPROF still pending, which SIG_DFL would turn
                // into the end of the process.
                let mut ign: libc::sigaction = std::mem::zeroed();
                ign.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(libc::SIGPROF, &ign, std::ptr::null_mut());
                while INSIDE.load(Ordering::SeqCst) != 0 {
                    std::thread::yield_now();
                }
                libc::sigaction(libc::SIGPROF, &self.old, std::ptr::null_mut());
            }
            ACTIVE.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{SampleHook, SamplerError};

    /// Holds the profile's timer and hook (nothing on this platform).
    #[derive(Debug)]
    pub(crate) struct ProfileGuard;

    pub(crate) fn start_profile(_hz: u32, _hook: SampleHook) -> Result<ProfileGuard, SamplerError> {
        Err(SamplerError::Unavailable(
            "CPU profiles are implemented on Linux only",
        ))
    }
}

pub(crate) use imp::{ProfileGuard, start_profile};
