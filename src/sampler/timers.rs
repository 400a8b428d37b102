//! The sampler's per-thread timers: each on one thread's CPU-time clock, signalling `SIGPROF`
//! to that thread (`SIGEV_THREAD_ID`).

use std::time::Duration;

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::c_int;
    use std::ptr;
    use std::time::Duration;

    use super::super::registry::NO_TIMER;

    /// A timer on thread `tid`'s CPU clock that signals `SIGPROF` to that thread; not armed.
    pub(super) fn create_timer(tid: i64) -> Option<usize> {
        let clock = crate::sys::thread::cpu_clock_id(tid);
        // SAFETY: valid pointers; the sigevent targets a thread of this process.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = libc::SIGPROF;
            sev.sigev_notify_thread_id = tid as c_int;
            let mut timer: libc::timer_t = ptr::null_mut();
            if libc::timer_create(clock, &mut sev, &mut timer) != 0 {
                return None;
            }
            let t = timer as usize;
            (t != NO_TIMER).then_some(t)
        }
    }

    pub(super) fn set_timer(timer: usize, period: Duration) {
        let ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: a timer we created; valid spec pointer.
        unsafe { libc::timer_settime(timer as libc::timer_t, 0, &spec, ptr::null_mut()) };
    }

    pub(super) fn delete_timer(timer: usize) {
        // SAFETY: a timer we created, deleted once (its owner swapped it out).
        unsafe { libc::timer_delete(timer as libc::timer_t) };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    pub(super) fn create_timer(_tid: i64) -> Option<usize> {
        None
    }

    pub(super) fn set_timer(_timer: usize, _period: Duration) {}

    pub(super) fn delete_timer(_timer: usize) {}
}

/// A timer on thread `tid`'s CPU clock that signals `SIGPROF` to that thread; not armed.
pub(super) fn create_timer(tid: i64) -> Option<usize> {
    imp::create_timer(tid)
}

/// Arms `timer` to fire every `period` of its thread's CPU time.
pub(super) fn set_timer(timer: usize, period: Duration) {
    imp::set_timer(timer, period)
}

/// Deletes `timer` (once).
pub(super) fn delete_timer(timer: usize) {
    imp::delete_timer(timer)
}
