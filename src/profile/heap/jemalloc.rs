//! jemalloc's sampling heap profiler: turned on at start-up, its rate set from
//! `memprofilerate`, and its samples dumped (`prof.dump`) into an in-memory file.

use std::ffi::{CStr, c_char, c_uint, c_void};
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

use tikv_jemalloc_sys as sys;

use crate::profile::cpu::Unwinder;
use crate::sync::lock;

/// jemalloc's options, read once before its first allocation: heap sampling on, at Go's rate
/// (one sample per 2^19 = 512 KiB allocated on average), with cumulative counts kept for
/// `allocs`. The prefixed jemalloc that tikv-jemalloc-sys builds reads this symbol (its weak
/// default is empty); `_RJEM_MALLOC_CONF` in the environment is applied after it and wins.
///
/// Defined only on Linux, where tikv-jemalloc-sys's prefixed build names it `_rjem_malloc_conf`.
#[cfg(target_os = "linux")]
#[unsafe(no_mangle)]
#[used]
static _rjem_malloc_conf: ConfPtr = ConfPtr(MALLOC_CONF.as_ptr());

/// The options [`_rjem_malloc_conf`] points at.
pub(crate) const MALLOC_CONF: &CStr =
    c"prof:true,prof_active:true,lg_prof_sample:19,prof_accum:true";

/// A `const char *` that may sit in a static (it points at a string literal).
#[repr(transparent)]
#[derive(Debug)]
pub(crate) struct ConfPtr(*const c_char);
// SAFETY: it points at immutable static data.
unsafe impl Sync for ConfPtr {}

fn read<T: Copy + Default>(name: &CStr) -> Option<T> {
    let mut value = T::default();
    let mut len = size_of::<T>();
    // SAFETY: `value` is a buffer of `len` bytes; jemalloc checks `len` against the control's type.
    let rc = unsafe {
        sys::mallctl(
            name.as_ptr(),
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
            ptr::null_mut(),
            0,
        )
    };
    (rc == 0 && len == size_of::<T>()).then_some(value)
}

fn write<T: Copy>(name: &CStr, mut value: T) -> Result<(), i32> {
    // SAFETY: `value` is a buffer of its size, only read; jemalloc checks the size.
    let rc = unsafe {
        sys::mallctl(
            name.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            (&mut value as *mut T).cast::<c_void>(),
            size_of::<T>(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// Whether jemalloc was built with profiling and started with it on (`opt.prof`).
pub(crate) fn enabled() -> bool {
    read::<bool>(c"opt.prof").unwrap_or(false)
}

/// The sampling rate in effect, bytes (0 when sampling is paused).
pub(crate) fn rate() -> u64 {
    if !read::<bool>(c"prof.active").unwrap_or(false) {
        return 0;
    }
    read::<usize>(c"prof.lg_sample").map_or(0, |lg| 1u64 << lg.min(63))
}

/// `log2(bytes)` rounded to the nearest integer (jemalloc samples at powers of two only):
/// 524288 → 19, 1 → 0, 600000 → 19, 800000 → 20.
pub(crate) fn lg_of(bytes: u64) -> usize {
    if bytes <= 1 {
        return 0;
    }
    let floor = 63 - bytes.leading_zeros() as usize;
    // Round up when bytes ≥ 2^floor × √2.
    let threshold = (1u128 << floor) as f64 * std::f64::consts::SQRT_2;
    if bytes as f64 >= threshold {
        floor + 1
    } else {
        floor
    }
}

/// Sets Go's `MemProfileRate`: 0 pauses sampling (`prof.active=false`); otherwise the rate is
/// rounded to a power of two (see [`lg_of`]) and, if it changed, set with `prof.reset`, which
/// also discards the samples taken so far. Returns the rate now in effect.
pub(crate) fn set_rate(bytes: u64) -> Result<u64, String> {
    if !enabled() {
        return Err(NOT_ENABLED.into());
    }
    if bytes > 0 {
        install_stack_hook();
    }
    let _dumping = lock(&DUMP);
    if bytes == 0 {
        write(c"prof.active", false).map_err(|rc| format!("prof.active: error {rc}"))?;
        return Ok(0);
    }
    let lg = lg_of(bytes).min(62);
    if read::<usize>(c"prof.lg_sample") != Some(lg) {
        write(c"prof.reset", lg).map_err(|rc| format!("prof.reset: error {rc}"))?;
    }
    write(c"prof.active", true).map_err(|rc| format!("prof.active: error {rc}"))?;
    Ok(1 << lg)
}

/// The unwinder the stack hook walks with (null until [`install_stack_hook`] set it).
static HOOK_UNWINDER: AtomicPtr<Unwinder> = AtomicPtr::new(ptr::null_mut());

/// jemalloc's `prof_backtrace_hook_t`: the stack of a sampled allocation, taken with rdebug's
/// framehop unwinder (its tables built once) instead of libgcc's `_Unwind_Backtrace`, which
/// searches the FDE tables for every frame (`_Unwind_Find_FDE`). Called by jemalloc on the
/// allocating thread, outside any signal handler; allocates nothing. On a thread with less
/// than 64 KiB of stack left the sample gets no stack (the walk would overflow it).
///
/// When a labelled future is being polled on the thread ([`crate::labels`]), the stack is taken
/// by [`labelled_stack`] instead; unlabelled, that check is one thread-local load.
unsafe extern "C" fn stack_hook(vec: *mut *mut c_void, len: *mut c_uint, max_len: c_uint) {
    let u = HOOK_UNWINDER.load(Ordering::Acquire);
    if u.is_null() || vec.is_null() || len.is_null() {
        return;
    }
    // SAFETY: jemalloc hands a vector of `max_len` pointers; a code address fits in each.
    let out = unsafe { std::slice::from_raw_parts_mut(vec.cast::<u64>(), max_len as usize) };
    // SAFETY: set once from a `&'static Unwinder`.
    let u = unsafe { &*u };
    if out.len() >= 2 && crate::labels::labelled_here() {
        // SAFETY: jemalloc's length out-parameter.
        unsafe { *len = labelled_stack(u, out) as c_uint };
        return;
    }
    // A thread deep in its stack has no room for the walk (about 42 KiB): its sampled object is
    // recorded with no stack rather than the walk running into the guard page.
    if !crate::profile::cpu::room_to_walk_here() {
        // SAFETY: jemalloc's length out-parameter.
        unsafe { *len = 0 };
        return;
    }
    let n = u.walk_here(out, 1);
    // SAFETY: jemalloc's length out-parameter.
    unsafe { *len = n as c_uint };
}

/// [`stack_hook`]'s stack for an allocation made under [`labels`](crate::labels): the walk
/// (one frame shorter at most, leaving out this function and the hook) followed by one
/// pseudo-frame naming the label set ([`super::labels`]), which the dump's reader takes off
/// again. jemalloc keys its samples by the whole stack, so each label set gets its own counts.
/// With less than 64 KiB of stack left, the pseudo-frame alone. Returns the stack's length.
#[inline(never)]
fn labelled_stack(u: &Unwinder, out: &mut [u64]) -> usize {
    let label = super::labels::pseudo_frame();
    let room = out.len().saturating_sub(usize::from(label.is_some()));
    let mut n = match out.get_mut(..room) {
        Some(frames) if crate::profile::cpu::room_to_walk_here() => {
            u.walk_here(frames, 2).min(room)
        }
        _ => 0,
    };
    if let Some((frame, slot)) = label.zip(out.get_mut(n)) {
        *slot = frame;
        n += 1;
    }
    n
}

/// Has jemalloc take sampled stacks with rdebug's unwinder (`experimental.hooks.prof_backtrace`)
/// from now on; before, libgcc's. Builds the unwinder the first time (allocates: never from
/// inside the allocator). `RDEBUG_HEAP_UNWIND=libgcc` in the environment keeps libgcc's.
pub(crate) fn install_stack_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if !enabled() || std::env::var_os("RDEBUG_HEAP_UNWIND").is_some_and(|v| v == "libgcc") {
        return;
    }
    ONCE.call_once(|| {
        let u: &'static Unwinder = crate::profile::cpu::hook_unwinder();
        HOOK_UNWINDER.store(ptr::from_ref(u).cast_mut(), Ordering::Release);
        type Hook = unsafe extern "C" fn(*mut *mut c_void, *mut c_uint, c_uint);
        if write::<Hook>(c"experimental.hooks.prof_backtrace", stack_hook).is_ok() {
            crate::alloc::alloc_text::libgcc_stacks_done();
        }
    });
}

/// Why there is no heap profile when jemalloc's profiler is off.
pub(crate) const NOT_ENABLED: &str = "jemalloc heap profiling is off (opt.prof is false: is \
    rdebug::Alloc the global allocator, and does _RJEM_MALLOC_CONF say prof:false?)";

/// One dump at a time (and no rate change during one).
static DUMP: Mutex<()> = Mutex::new(());

/// Dumps jemalloc's heap samples into an anonymous in-memory file and returns it, positioned at
/// its start. jemalloc writes it with `creat()`; the file is `/proc/self/fd/<memfd>`, so nothing
/// touches the disk and nothing is left behind.
#[cfg(target_os = "linux")]
pub(crate) fn dump() -> Result<std::fs::File, String> {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::FromRawFd;
    if !enabled() {
        return Err(NOT_ENABLED.into());
    }
    install_stack_hook();
    // SAFETY: a NUL-terminated name; the fd returned is ours.
    let fd = unsafe { libc::memfd_create(c"rdebug-heap".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd we own.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let path = format!("/proc/self/fd/{fd}\0");
    let name: *const c_char = path.as_ptr().cast();
    {
        let _dumping = lock(&DUMP);
        write(c"prof.dump", name)
            .map_err(|rc| format!("prof.dump into {}: error {rc}", path.trim_end_matches('\0')))?;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("reading the heap dump: {e}"))?;
    Ok(file)
}

/// Heap dumps need `memfd_create` (Linux).
#[cfg(not(target_os = "linux"))]
pub(crate) fn dump() -> Result<std::fs::File, String> {
    Err("heap profiles are implemented on Linux only".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_to_the_nearest_power_of_two() {
        assert_eq!(lg_of(0), 0);
        assert_eq!(lg_of(1), 0);
        assert_eq!(lg_of(2), 1);
        assert_eq!(lg_of(3), 2);
        assert_eq!(lg_of(524288), 19);
        assert_eq!(lg_of(600_000), 19);
        assert_eq!(lg_of(800_000), 20);
        assert_eq!(lg_of(u64::MAX), 64);
    }
}
