//! The `SIGPROF` handler: installed once, only where `SIGPROF` has no handler of the program's
//! own, and never handed back to `SIG_DFL` (a late signal would end the process). It tells a
//! timer's sample (`SI_TIMER`) from a stack request rdebug sent one thread (`SI_TKILL`).

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_int, c_void};
    use std::mem::MaybeUninit;
    use std::ptr;
    use std::sync::Mutex;

    use super::super::{on_request, on_sample};

    /// The `SIGPROF` disposition before ours, restored by [`restore_handler`].
    static OLD_ACTION: Mutex<Option<libc::sigaction>> = Mutex::new(None);

    /// Installs the handler unless `SIGPROF` belongs to someone else.
    pub(in crate::sampler) fn install_handler() -> Result<(), &'static str> {
        // SAFETY: plain sigaction calls with valid pointers.
        unsafe {
            let mut old = MaybeUninit::<libc::sigaction>::zeroed();
            if libc::sigaction(libc::SIGPROF, ptr::null(), old.as_mut_ptr()) != 0 {
                return Err("cannot read the SIGPROF disposition");
            }
            let old = old.assume_init();
            let ours = handler as *const () as libc::sighandler_t;
            if old.sa_sigaction == ours {
                return Ok(());
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                return Err("SIGPROF has a handler of the program's own (another profiler?)");
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = ours;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            if libc::sigaction(libc::SIGPROF, &new, ptr::null_mut()) != 0 {
                return Err("cannot install the SIGPROF handler");
            }
            *OLD_ACTION.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
        }
        Ok(())
    }

    /// Whether `SIGPROF`'s handler is rdebug's now.
    pub(in crate::sampler) fn handler_is_ours() -> bool {
        let mut now = MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: reads the disposition into a valid pointer.
        if unsafe { libc::sigaction(libc::SIGPROF, ptr::null(), now.as_mut_ptr()) } != 0 {
            return false;
        }
        // SAFETY: sigaction filled it (and it was zeroed before).
        let now = unsafe { now.assume_init() };
        now.sa_sigaction == handler as *const () as libc::sighandler_t
    }

    /// Puts back the disposition found at install, only if it was `SIG_IGN` (a stray signal is
    /// then harmless; `SIG_DFL` would terminate the process, so rdebug's handler stays) and the
    /// handler now is still rdebug's (the program may have installed its own since).
    pub(in crate::sampler) fn restore_handler() {
        let mut saved = OLD_ACTION.lock().unwrap_or_else(|e| e.into_inner());
        let Some(old) = saved.as_ref() else { return };
        if old.sa_sigaction != libc::SIG_IGN || !handler_is_ours() {
            return;
        }
        // SAFETY: a disposition sigaction itself returned.
        unsafe { libc::sigaction(libc::SIGPROF, old, ptr::null_mut()) };
        *saved = None;
    }

    /// The head of a `siginfo_t` sent by a POSIX timer (`si_code == SI_TIMER`), as the kernel lays
    /// it out (`include/uapi/asm-generic/siginfo.h`; the `libc` crate has no accessor for it).
    #[repr(C)]
    struct TimerSigInfo {
        signo: c_int,
        errno: c_int,
        code: c_int,
        /// The kernel's union of per-source fields, pointer-aligned (offset 16 on 64-bit).
        timer: TimerFields,
    }

    const _: () = assert!(
        std::mem::offset_of!(TimerSigInfo, timer)
            == if cfg!(target_pointer_width = "64") {
                16
            } else {
                12
            }
    );

    /// The timer member of `siginfo_t`'s union; its pointer gives it the union's alignment.
    #[repr(C)]
    struct TimerFields {
        id: c_int,
        /// Expirations this one signal stands for beyond the first: on a busy machine Linux may
        /// deliver a thread's CPU-timer signal tens of milliseconds of its CPU late.
        overrun: c_int,
        value: *mut c_void,
    }

    extern "C" fn handler(_sig: c_int, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
        // SAFETY: errno is thread-local; saved and restored around the handler's own calls.
        let errno = unsafe { *libc::__errno_location() };
        // Only timer expirations are samples (not a `kill -PROF`).
        // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
        if !info.is_null() && unsafe { (*info).si_code } == libc::SI_TIMER {
            // SAFETY: an SI_TIMER siginfo carries the timer fields.
            let overrun = unsafe { (*info.cast::<TimerSigInfo>()).timer.overrun }.max(0);
            on_sample(overrun as u64, ucontext);
        } else if !info.is_null()
            // SAFETY: as above; `si_pid` is valid for a tgkill's SI_TKILL.
            && unsafe { (*info).si_code == libc::SI_TKILL && (*info).si_pid() == libc::getpid() }
        {
            on_request(ucontext);
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(in crate::sampler) fn install_handler() -> Result<(), &'static str> {
        Err("no CPU-time sampler on this platform (Linux only)")
    }

    pub(in crate::sampler) fn restore_handler() {}

    pub(in crate::sampler) fn handler_is_ours() -> bool {
        false
    }
}

pub(super) use imp::{handler_is_ours, install_handler, restore_handler};
