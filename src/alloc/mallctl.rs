//! Reading jemalloc's statistics through `mallctl`, with every name turned into a MIB once.
//!
//! jemalloc refreshes its statistics only when `epoch` is advanced, so every [`HeapSample`] starts
//! with an `epoch` write (it takes every arena's locks: ~4.4 µs per arena in use) followed by ~15
//! reads by MIB (~0.3 µs together). Nothing here allocates or panics; a name jemalloc does not know
//! (a build without `stats`) reads as unavailable.

use std::ffi::{CStr, c_void};
use std::ptr;
use std::sync::OnceLock;

use tikv_jemalloc_sys as sys;

/// `MALLCTL_ARENAS_ALL`: the pseudo-arena index whose statistics are all arenas merged.
const ARENAS_ALL: &str = "4096";

/// A MIB: the numeric form of a mallctl name.
#[derive(Debug, Clone, Copy)]
struct Mib {
    parts: [usize; 6],
    len: usize,
}

impl Mib {
    fn lookup(name: &CStr) -> Option<Mib> {
        let mut parts = [0usize; 6];
        let mut len = parts.len();
        // SAFETY: `name` is NUL-terminated; `parts` has room for `len` entries.
        let rc = unsafe { sys::mallctlnametomib(name.as_ptr(), parts.as_mut_ptr(), &mut len) };
        (rc == 0).then_some(Mib { parts, len })
    }

    /// Reads a value of type `T`, which must be the exact C type of the control (size checked).
    fn read<T: Copy + Default>(&self) -> Option<T> {
        let mut value = T::default();
        let mut len = size_of::<T>();
        // SAFETY: `value` is a valid buffer of `len` bytes; jemalloc writes at most `len` bytes.
        let rc = unsafe {
            sys::mallctlbymib(
                self.parts.as_ptr(),
                self.len,
                (&mut value as *mut T).cast::<c_void>(),
                &mut len,
                ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && len == size_of::<T>()).then_some(value)
    }

    /// Writes `value` (used for `epoch`).
    fn write<T: Copy>(&self, mut value: T) -> bool {
        // SAFETY: `value` is a valid buffer of its size, read by jemalloc only.
        let rc = unsafe {
            sys::mallctlbymib(
                self.parts.as_ptr(),
                self.len,
                ptr::null_mut(),
                ptr::null_mut(),
                (&mut value as *mut T).cast::<c_void>(),
                size_of::<T>(),
            )
        };
        rc == 0
    }
}

/// The MIBs rdebug reads, looked up once.
struct Mibs {
    epoch: Mib,
    allocated: Mib,
    active: Mib,
    metadata: Mib,
    resident: Mib,
    mapped: Mib,
    retained: Mib,
    pdirty: Mib,
    pmuzzy: Mib,
    dirty_npurge: Mib,
    muzzy_npurge: Mib,
    dirty_purged: Mib,
    muzzy_purged: Mib,
    bg_threads: Option<Mib>,
    page: u64,
}

fn mibs() -> Option<&'static Mibs> {
    static MIBS: OnceLock<Option<Mibs>> = OnceLock::new();
    MIBS.get_or_init(|| {
        let m = |name: &CStr| Mib::lookup(name);
        let arena = |stat: &str| {
            let name = format!("stats.arenas.{ARENAS_ALL}.{stat}\0");
            CStr::from_bytes_with_nul(name.as_bytes())
                .ok()
                .and_then(Mib::lookup)
        };
        let page = m(c"arenas.page")?.read::<usize>()? as u64;
        Some(Mibs {
            epoch: m(c"epoch")?,
            allocated: m(c"stats.allocated")?,
            active: m(c"stats.active")?,
            metadata: m(c"stats.metadata")?,
            resident: m(c"stats.resident")?,
            mapped: m(c"stats.mapped")?,
            retained: m(c"stats.retained")?,
            pdirty: arena("pdirty")?,
            pmuzzy: arena("pmuzzy")?,
            dirty_npurge: arena("dirty_npurge")?,
            muzzy_npurge: arena("muzzy_npurge")?,
            dirty_purged: arena("dirty_purged")?,
            muzzy_purged: arena("muzzy_purged")?,
            bg_threads: m(c"stats.background_thread.num_threads"),
            page,
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
    if !m.epoch.write(1u64) {
        return None;
    }
    let size = |mib: &Mib| mib.read::<usize>().map_or(0, |v| v as u64);
    let count = |mib: &Mib| mib.read::<u64>().unwrap_or(0);
    Some(HeapSample {
        allocated: size(&m.allocated),
        active: size(&m.active),
        metadata: size(&m.metadata),
        resident: size(&m.resident),
        mapped: size(&m.mapped),
        retained: size(&m.retained),
        dirty: size(&m.pdirty).saturating_mul(m.page),
        muzzy: size(&m.pmuzzy).saturating_mul(m.page),
        purge_sweeps: count(&m.dirty_npurge).saturating_add(count(&m.muzzy_npurge)),
        purged: count(&m.dirty_purged)
            .saturating_add(count(&m.muzzy_purged))
            .saturating_mul(m.page),
        background_threads: m.bg_threads.as_ref().map_or(0, size),
    })
}

/// Purges every arena now: all dirty and muzzy pages go back to the OS.
///
/// `arena.<all>.purge` is a void control: it must be called with no old and no new value, which
/// tikv-jemalloc-ctl's typed and raw writes cannot do.
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
/// Reads the control `name` (by name: for controls read once or rarely).
pub(crate) fn read_named<T: Copy + Default>(name: &CStr) -> Option<T> {
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

#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // heap profiling controls
/// Writes `value` to the control `name` (by name); `Err` is jemalloc's error code.
pub(crate) fn write_named<T: Copy>(name: &CStr, mut value: T) -> Result<(), i32> {
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
