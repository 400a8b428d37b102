//! The one mallctl layer: jemalloc's statistics and controls through `tikv-jemalloc-ctl`.
//!
//! jemalloc refreshes its statistics only when `epoch` is advanced, so every [`HeapSample`] starts
//! with an `epoch` write (it takes every arena's locks: ~4.4 µs per arena in use) followed by ~15
//! reads by MIB (~0.3 µs together). Every name [`sample`] reads is turned into a tikv-jemalloc-ctl
//! [`Mib`] once. Controls read or written once or rarely (the heap profiler's) go by name through
//! [`raw`]. The void `arena.4096.purge` goes through `tikv_jemalloc_sys::mallctl` ([`purge_all`]):
//! tikv-jemalloc-ctl's reads and writes always pass a value, which a void control refuses.
//!
//! Kept because it does not measure slower than the hand-written `mallctlbymib` layer it
//! replaced: `rdebug::memstats()` runs 140,904 instructions per call against 140,935 before
//! (callgrind, 1 arena), where the bare `epoch` + reads baseline runs 139,878; wall-clock
//! `memstats/rdebug` over `memstats/baseline` (benches/reads.rs) is unchanged within the noise.
//! The typed keys (`stats::allocated::mib()`, `epoch::mib().advance()`) measured 141,053: their
//! `read` is not generic, so it is a call into the other crate, and `advance` reads the epoch
//! back. So the generic `Mib<[usize; N]>`, whose `read` inlines here, is used for every name.
//!
//! Nothing here allocates or panics (the lookups included): each MIB array has exactly as many
//! parts as its name (tikv-jemalloc-ctl asserts that), jemalloc fails a read of the wrong size
//! before tikv-jemalloc-ctl's size assertion could, and a name jemalloc does not know (a build
//! without `stats`) reads as unavailable.

use std::ffi::CStr;
use std::ptr;
use std::sync::OnceLock;

use tikv_jemalloc_ctl::{Access, AsName, Mib, raw};
use tikv_jemalloc_sys as sys;

/// The MIB of the control `name`; `N` must be its number of dot-separated parts.
fn mib<const N: usize>(name: &CStr) -> Option<Mib<[usize; N]>>
where
    [usize; N]: Default,
{
    // tikv-jemalloc-ctl's `MibArg` is not exported; every `[usize; N]` with `Default` has it.
    name.to_bytes_with_nul().name().mib().ok()
}

/// The MIBs rdebug reads, looked up once (generic `Mib`s rather than the typed keys: module docs).
struct Mibs {
    epoch: Mib<[usize; 1]>,
    allocated: Mib<[usize; 2]>,
    active: Mib<[usize; 2]>,
    metadata: Mib<[usize; 2]>,
    resident: Mib<[usize; 2]>,
    mapped: Mib<[usize; 2]>,
    retained: Mib<[usize; 2]>,
    /// `stats.arenas.4096.*`: 4096 is `MALLCTL_ARENAS_ALL`, all arenas merged (not exported).
    pdirty: Mib<[usize; 4]>,
    pmuzzy: Mib<[usize; 4]>,
    dirty_npurge: Mib<[usize; 4]>,
    muzzy_npurge: Mib<[usize; 4]>,
    dirty_purged: Mib<[usize; 4]>,
    muzzy_purged: Mib<[usize; 4]>,
    bg_threads: Option<Mib<[usize; 3]>>,
    page: u64,
}

fn mibs() -> Option<&'static Mibs> {
    static MIBS: OnceLock<Option<Mibs>> = OnceLock::new();
    MIBS.get_or_init(|| {
        let page: usize = mib::<2>(c"arenas.page")?.read().ok()?;
        Some(Mibs {
            epoch: mib(c"epoch")?,
            allocated: mib(c"stats.allocated")?,
            active: mib(c"stats.active")?,
            metadata: mib(c"stats.metadata")?,
            resident: mib(c"stats.resident")?,
            mapped: mib(c"stats.mapped")?,
            retained: mib(c"stats.retained")?,
            pdirty: mib(c"stats.arenas.4096.pdirty")?,
            pmuzzy: mib(c"stats.arenas.4096.pmuzzy")?,
            dirty_npurge: mib(c"stats.arenas.4096.dirty_npurge")?,
            muzzy_npurge: mib(c"stats.arenas.4096.muzzy_npurge")?,
            dirty_purged: mib(c"stats.arenas.4096.dirty_purged")?,
            muzzy_purged: mib(c"stats.arenas.4096.muzzy_purged")?,
            bg_threads: mib(c"stats.background_thread.num_threads"),
            page: page as u64,
        })
    })
    .as_ref()
}

/// One reading of jemalloc's statistics, all in bytes except where said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeapSample {
    /// `stats.allocated`: bytes in live allocations (size-class rounded).
    pub allocated: u64,
    /// `stats.active`: bytes in active pages (pages holding live allocations).
    pub active: u64,
    /// `stats.metadata`: jemalloc's own metadata.
    pub metadata: u64,
    /// `stats.resident`: bytes in physically resident data pages jemalloc maps.
    pub resident: u64,
    /// `stats.mapped`: bytes in active extents jemalloc maps.
    pub mapped: u64,
    /// `stats.retained`: virtual memory kept mapped but returned to the OS.
    pub retained: u64,
    /// `stats.arenas.<all>.pdirty` × page: freed pages not yet purged.
    pub dirty: u64,
    /// `stats.arenas.<all>.pmuzzy` × page: pages lazily purged (`MADV_FREE`).
    pub muzzy: u64,
    /// `dirty_npurge + muzzy_npurge`: purge sweeps completed since start (a count).
    pub purge_sweeps: u64,
    /// `(dirty_purged + muzzy_purged)` × page: bytes purged since start.
    pub purged: u64,
    /// `stats.background_thread.num_threads` (a count).
    pub background_threads: u64,
}

impl HeapSample {
    /// `active + dirty + muzzy`: memory jemalloc holds for the heap, including freed pages not
    /// yet returned to the OS.
    pub(crate) fn footprint(&self) -> u64 {
        self.active
            .saturating_add(self.dirty)
            .saturating_add(self.muzzy)
    }
}

/// Whether jemalloc's statistics can be read at all.
pub(crate) fn available() -> bool {
    mibs().is_some()
}

/// Advances `epoch` and reads everything. `None` when jemalloc has no statistics.
pub(crate) fn sample() -> Option<HeapSample> {
    let m = mibs()?;
    m.epoch.write(1u64).ok()?;
    // Sizes are `size_t`, the purge counters `uint64_t`: a read of the wrong size fails.
    let size = |mib: &Mib<[usize; 2]>| mib.read().map_or(0, |v: usize| v as u64);
    let arena_size = |mib: &Mib<[usize; 4]>| mib.read().map_or(0, |v: usize| v as u64);
    let count = |mib: &Mib<[usize; 4]>| mib.read().unwrap_or(0u64);
    Some(HeapSample {
        allocated: size(&m.allocated),
        active: size(&m.active),
        metadata: size(&m.metadata),
        resident: size(&m.resident),
        mapped: size(&m.mapped),
        retained: size(&m.retained),
        dirty: arena_size(&m.pdirty).saturating_mul(m.page),
        muzzy: arena_size(&m.pmuzzy).saturating_mul(m.page),
        purge_sweeps: count(&m.dirty_npurge).saturating_add(count(&m.muzzy_npurge)),
        purged: count(&m.dirty_purged)
            .saturating_add(count(&m.muzzy_purged))
            .saturating_mul(m.page),
        background_threads: m
            .bg_threads
            .map_or(0, |mib| mib.read().map_or(0, |v: usize| v as u64)),
    })
}

/// Purges every arena now: all dirty and muzzy pages go back to the OS.
///
/// `arena.<all>.purge` is a void control: it must be called with no old and no new value, which
/// tikv-jemalloc-ctl's typed and raw writes cannot do, so this one call goes to the sys crate.
pub(crate) fn purge_all() -> bool {
    let name = c"arena.4096.purge";
    // SAFETY: a void control takes null old/new pointers and lengths of zero.
    let rc = unsafe {
        sys::mallctl(
            name.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    };
    rc == 0
}

#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // heap profiling controls
/// Reads the control `name` (by name: for controls read once or rarely). `T` must be the
/// control's C type; jemalloc fails a read of another size.
pub(crate) fn read_named<T: Copy>(name: &CStr) -> Option<T> {
    // SAFETY: `name` is NUL-terminated; the controls read here are `bool` (0 or 1) and `size_t`,
    // whose every value is a valid `T`.
    unsafe { raw::read::<T>(name.to_bytes_with_nul()) }.ok()
}

/// Moves the calling thread to arena 0, the main thread's (`thread.arena`), so that when it
/// exits it is not the last thread of an arena: jemalloc purges every dirty page of an arena its
/// last thread leaves. False if jemalloc refused (with `percpu_arena`, for one).
pub(crate) fn use_arena_zero() -> bool {
    write_named(c"thread.arena", 0u32).is_ok()
}

/// Writes `value` to the control `name` (by name); `Err` says what jemalloc refused.
pub(crate) fn write_named<T>(name: &CStr, value: T) -> Result<(), tikv_jemalloc_ctl::Error> {
    // SAFETY: `name` is NUL-terminated; `value` is only read, and jemalloc checks its size.
    unsafe { raw::write(name.to_bytes_with_nul(), value) }
}
