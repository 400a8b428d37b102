//! Thread system calls: the calling thread's kernel id, a signal to one thread of this process,
//! and threads' CPU-time clocks.

/// The kernel's id of the calling thread (0 where there is none).
pub(crate) fn current_tid() -> i64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        i64::from(unsafe { libc::gettid() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Sends `signal` to thread `tid` of this process (`tgkill`); false if it could not.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // stack requests (feature `pprof`)
pub(crate) fn signal_thread(tid: i64, signal: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: tgkill to a thread of this process; the caller owns the signal's handler.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tid, signal);
        false
    }
}

/// The kernel's CPU-time clock of thread `tid` of this process: MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED), what `pthread_getcpuclockid` gives for a thread of one's own.
#[cfg(target_os = "linux")]
pub(crate) fn cpu_clock_id(tid: i64) -> libc::clockid_t {
    ((!(tid as u32)) << 3 | 6) as libc::clockid_t
}

/// Thread `tid`'s CPU time, ns, from its CPU clock (exact to now).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the block profile (feature `pprof`)
pub(crate) fn thread_cpu_ns(tid: i64) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        clock_ns(cpu_clock_id(tid))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// The calling thread's CPU time (user + system), ns, from its CPU-time clock
/// (`CLOCK_THREAD_CPUTIME_ID`): exact to the nanosecond, and one system call where `/proc` is a
/// file the kernel formats (and counts in clock ticks, 10 ms).
pub(crate) fn current_thread_cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(target_os = "linux")]
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; a bad clock id is an error return, not undefined behaviour.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Copies this process's memory at `addr` into `buf` through the kernel (`process_vm_readv`):
/// an unmapped page ends the copy instead of faulting. Returns the bytes copied (0 on error, or
/// where the kernel refuses the call).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // stack reads (feature `pprof`)
pub(crate) fn read_memory(addr: u64, buf: &mut [u8]) -> usize {
    #[cfg(target_os = "linux")]
    {
        if buf.is_empty() || addr == 0 {
            return 0;
        }
        // One element per page: the kernel transfers whole elements, so a copy that runs into
        // an unmapped page still returns the pages before it.
        const PAGE: usize = 4096;
        const MAX: usize = 64;
        let mut done = 0usize;
        while done < buf.len() {
            let mut local = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX];
            let mut remote = local;
            let mut n = 0;
            let mut at = done;
            while n < MAX && at < buf.len() {
                let a = addr.saturating_add(at as u64);
                let len = (PAGE - (a as usize % PAGE)).min(buf.len() - at);
                local[n] = libc::iovec {
                    iov_base: buf[at..].as_mut_ptr().cast(),
                    iov_len: len,
                };
                remote[n] = libc::iovec {
                    iov_base: a as usize as *mut libc::c_void,
                    iov_len: len,
                };
                n += 1;
                at += len;
            }
            let want = at - done;
            // SAFETY: `local` points into our buffer; the kernel checks `remote`, never faults.
            let got = unsafe {
                libc::process_vm_readv(
                    libc::getpid(),
                    local.as_ptr(),
                    n as libc::c_ulong,
                    remote.as_ptr(),
                    n as libc::c_ulong,
                    0,
                )
            };
            let got = usize::try_from(got).unwrap_or(0);
            done += got;
            if got < want {
                break;
            }
        }
        done
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (addr, buf);
        0
    }
}
