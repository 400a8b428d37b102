//! jemalloc's sampling heap profiler: turned on at start-up, its rate set from
//! `memprofilerate`, and its samples dumped (`prof.dump`) into an in-memory file.

use std::ffi::{CStr, c_char};
use std::sync::Mutex;

use crate::alloc::mallctl::{read_named as read, write_named as write};
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
    let _dumping = lock(&DUMP);
    if bytes == 0 {
        write(c"prof.active", false).map_err(|e| format!("prof.active: {e}"))?;
        return Ok(0);
    }
    let lg = lg_of(bytes).min(62);
    if read::<usize>(c"prof.lg_sample") != Some(lg) {
        write(c"prof.reset", lg).map_err(|e| format!("prof.reset: {e}"))?;
        // jemalloc's threads start new records: labels' keys start anew too.
        super::label_budget::new_epoch();
    }
    write(c"prof.active", true).map_err(|e| format!("prof.active: {e}"))?;
    Ok(1 << lg)
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
            .map_err(|e| format!("prof.dump into {}: {e}", path.trim_end_matches('\0')))?;
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
