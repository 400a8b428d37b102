//! Where each thread's stack lies, for code that must know how much of it is left without
//! asking the C library: the `SIGPROF` handler, which walks the interrupted stack on that same
//! stack.
//!
//! A thread's bounds are read once, by the thread itself and outside any handler, with
//! `pthread_getattr_np` ([`record_current_thread`]: rdebug calls it when a thread first
//! allocates through [`Alloc`](crate::Alloc)), and kept in a `const` thread-local without a
//! destructor, so reading them ([`recorded`]) is a plain load that allocates nothing and takes
//! no lock, from a signal handler too. For the main thread `pthread_getattr_np` gives the
//! lowest address the stack may grow down to (its `RLIMIT_STACK`), not only what is mapped now.
//! Elsewhere than Linux nothing is recorded.

use std::cell::Cell;

thread_local! {
    /// The calling thread's usable stack `[lo, hi)` (the guard page below `lo` excluded), or
    /// `(0, 0)` when not recorded. `const`, no destructor: reading it never allocates or
    /// registers anything (a signal handler reads it).
    static BOUNDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Reads the calling thread's stack bounds and keeps them for [`recorded`]. Not for a signal
/// handler (`pthread_getattr_np` allocates with the C library's malloc, and for the main thread
/// reads `/proc/self/maps`). Does nothing if they cannot be read.
pub(crate) fn record_current_thread() {
    if let Some(b) = read_current_thread() {
        let _ = BOUNDS.try_with(|c| c.set(b));
    }
}

/// The calling thread's usable stack `[lo, hi)` as [`record_current_thread`] recorded it, or
/// `None`. Async-signal-safe.
pub(crate) fn recorded() -> Option<(u64, u64)> {
    let (lo, hi) = BOUNDS.try_with(Cell::get).unwrap_or((0, 0));
    (lo < hi).then_some((lo, hi))
}

/// The calling thread's usable stack `[lo, hi)`, from `pthread_getattr_np`.
#[cfg(target_os = "linux")]
pub(crate) fn read_current_thread() -> Option<(u64, u64)> {
    // SAFETY: an attribute object initialised by pthread_getattr_np, read with the attr calls
    // into valid pointers, and destroyed once.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        if got != 0 || addr.is_null() || size == 0 {
            return None;
        }
        let lo = addr as u64;
        Some((lo, lo.checked_add(size as u64)?))
    }
}

/// No thread attributes to read here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read_current_thread() -> Option<(u64, u64)> {
    None
}

/// The soft `RLIMIT_STACK`, bytes: how far the main thread's stack may grow (`None`: unlimited
/// or unknown).
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some 32-bit targets
pub(crate) fn stack_rlimit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur as u64)
}

/// No limits to read here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn stack_rlimit() -> Option<u64> {
    None
}

/// Whether the aligned word at `addr` can be read, asked of the kernel with a call every sandbox
/// allows and that changes nothing: `rt_sigprocmask` with an invalid `how` copies the new mask
/// from the address first (`EFAULT` if it cannot be read), then refuses the `how` (`EINVAL`).
/// (17 such calls took about 3 µs, measured for the sampler's room check.) errno is left as it was. Async-signal-safe. (The `sigsetsize` passed, 8, is
/// the kernel's on x86_64 and aarch64, the targets that walk stacks.)
#[cfg(target_os = "linux")]
pub(crate) fn word_readable(addr: u64) -> bool {
    // SAFETY: errno is thread-local; saved here and restored below.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel only reads `addr` (checked), and with an invalid `how` changes no
    // signal mask.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            -1 as libc::c_int,
            (addr & !7) as *const libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
            std::mem::size_of::<u64>(),
        )
    };
    // SAFETY: as above.
    let readable = rc == -1 && unsafe { *libc::__errno_location() } == libc::EINVAL;
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    readable
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn word_readable(_addr: u64) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_records_bounds_that_hold_its_stack_pointer() {
        let got = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                record_current_thread();
                let local = 0u8;
                let here = std::hint::black_box(&local) as *const u8 as u64;
                (recorded(), here)
            })
            .expect("spawn")
            .join()
            .expect("join");
        let ((lo, hi), here) = (got.0.expect("recorded"), got.1);
        assert!(lo < here && here < hi, "{lo:#x} {here:#x} {hi:#x}");
        assert!(hi - lo >= 256 << 10, "{}", hi - lo);
    }
}
