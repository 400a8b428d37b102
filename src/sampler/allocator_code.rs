//! Where the allocator's code is: the address ranges of jemalloc's functions and the global
//! allocator's (`__rust_alloc` and friends, [`Alloc`](crate::Alloc)'s own out-of-line paths) in
//! the running executable, read once from its ELF symbol table, outside any signal handler.
//!
//! The CPU-time sampler's `SIGPROF` handler asks [`interrupted_in_allocator`] whether the
//! instruction it interrupted lies in one of them, which is how the allocator's CPU time is
//! measured without anything on the allocation path. A sample that lands in a C-library
//! function outside the executable counts when that function was called straight from the
//! allocator (`memset`, `memcpy`, `madvise`, `mmap`, `pthread_mutex_lock`...): its return address
//! is near the top of the stack (x86_64) or in the link register (aarch64).
//!
//! In a build with heap profiling (feature `pprof`), jemalloc takes each sampled allocation's
//! stack: with libgcc's unwinder until rdebug's takes over, so until then a sample in libgcc's
//! code counts too, and rdebug's unwinder's functions (framehop's, the hook's) always count.
//!
//! jemalloc's functions are the `_rjem_*` symbols (its public and private names, prefixed) and
//! the local (`static`) functions of its source files, which the symbol table lists after a
//! `FILE` entry with the file's name. A stripped executable has no such table: the allocator's
//! CPU time is then unavailable, and rdebug says so once.

use std::sync::OnceLock;

/// jemalloc's source files (tikv-jemalloc-sys 0.7, jemalloc 5.3): their local functions are
/// jemalloc's.
const JEMALLOC_SOURCES: &[&str] = &[
    "arena.c",
    "background_thread.c",
    "base.c",
    "bin.c",
    "bin_info.c",
    "bitmap.c",
    "buf_writer.c",
    "cache_bin.c",
    "ckh.c",
    "conf.c",
    "counter.c",
    "ctl.c",
    "decay.c",
    "div.c",
    "ecache.c",
    "edata.c",
    "edata_cache.c",
    "ehooks.c",
    "emap.c",
    "eset.c",
    "exp_grow.c",
    "extent.c",
    "extent_dss.c",
    "extent_mmap.c",
    "fxp.c",
    "hook.c",
    "hpa.c",
    "hpa_central.c",
    "hpa_hooks.c",
    "hpa_utils.c",
    "hpdata.c",
    "inspect.c",
    "jemalloc.c",
    "large.c",
    "log.c",
    "malloc_io.c",
    "mutex.c",
    "nstime.c",
    "pa.c",
    "pa_extra.c",
    "pac.c",
    "pages.c",
    "peak_event.c",
    "prof.c",
    "prof_data.c",
    "prof_log.c",
    "prof_recent.c",
    "prof_stack_range.c",
    "prof_stats.c",
    "prof_sys.c",
    "psset.c",
    "rtree.c",
    "safety_check.c",
    "san.c",
    "san_bump.c",
    "sc.c",
    "sec.c",
    "stats.c",
    "sz.c",
    "tcache.c",
    "test_hooks.c",
    "thread_event.c",
    "thread_event_registry.c",
    "ticker.c",
    "tsd.c",
    "util.c",
    "witness.c",
    "zone.c",
];

/// The table: sorted, disjoint `[start, end)` ranges of run-time addresses, and the executable's
/// own text range.
#[derive(Debug, Default)]
struct Table {
    ranges: Vec<(usize, usize)>,
    exe_text: (usize, usize),
    /// libgcc's code (`libgcc_s.so`), where jemalloc built with profiling takes sampled stacks
    /// until rdebug's unwinder takes them over (see [`libgcc_stacks_done`]).
    libgcc: (usize, usize),
}

/// Whether jemalloc may be taking sampled stacks with libgcc (a build with heap profiling, before
/// rdebug's unwinder took over): then a sample in libgcc's code is the allocator's.
static LIBGCC_STACKS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(cfg!(feature = "pprof"));

/// jemalloc no longer takes stacks with libgcc (rdebug's unwinder does): from now on a sample in
/// libgcc's code (a panic unwinding, a backtrace) is not the allocator's.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) fn libgcc_stacks_done() {
    LIBGCC_STACKS.store(false, std::sync::atomic::Ordering::Relaxed);
}

static TABLE: OnceLock<Result<Table, &'static str>> = OnceLock::new();

/// Builds the table if it is not built (reads the executable's symbol table: call it from a
/// normal thread, never from the handler). `Err` says why the allocator's code cannot be found.
pub(crate) fn build() -> Result<(), &'static str> {
    match TABLE.get_or_init(imp::read) {
        Ok(_) => Ok(()),
        Err(e) => Err(*e),
    }
}

/// Whether `pc` lies in the allocator's code. Async-signal-safe (reads a table built before the
/// sampler started); false while the table is not built.
pub(crate) fn contains(pc: usize) -> bool {
    let Some(Ok(t)) = TABLE.get() else {
        return false;
    };
    let i = t.ranges.partition_point(|&(start, _)| start <= pc);
    i > 0 && pc < t.ranges[i - 1].1
}

/// Words at the top of an interrupted C-library function's stack that are searched for its
/// return address into the executable.
const STACK_WORDS: usize = 8;

/// Whether the thread interrupted with `ucontext` (a `SIGPROF` handler's third argument) was
/// inside the allocator: its instruction in the allocator's code, or in a function outside the
/// executable (the C library: `memset`, `madvise`, `pthread_mutex_lock`...) whose caller is the
/// allocator. That caller is the first address into the executable's code found among the top
/// [`STACK_WORDS`] words of the stack (x86_64: a C-library function pushes at most a few
/// registers before it calls or returns) or the link register (aarch64). Async-signal-safe.
pub(crate) fn interrupted_in_allocator(ucontext: *mut std::ffi::c_void) -> bool {
    let Some(Ok(t)) = TABLE.get() else {
        return false;
    };
    let Some((pc, callers)) = imp::pc_and_callers(ucontext) else {
        return false;
    };
    if contains(pc) {
        return true;
    }
    let in_exe = |a: usize| (t.exe_text.0..t.exe_text.1).contains(&a);
    if in_exe(pc) {
        return false;
    }
    if (t.libgcc.0..t.libgcc.1).contains(&pc)
        && LIBGCC_STACKS.load(std::sync::atomic::Ordering::Relaxed)
    {
        return true;
    }
    callers
        .take(STACK_WORDS)
        .find(|&a| in_exe(a))
        .is_some_and(contains)
}

/// Whether a function of this name (and binding, in this source file) belongs to the allocator.
/// (`str::contains` runs the standard library's optimised search even in a debug build, where
/// the table is built too: a test binary has ~10^5 symbols.)
fn is_allocator_function(name: &[u8], local: bool, jemalloc_file: bool) -> bool {
    if local && jemalloc_file || name.starts_with(b"_rjem_") {
        return true;
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    // Rust's global-allocator shims (`__rust_alloc` ..., mangled or not), not the OOM handler.
    if name.contains("__r")
        && (name.contains("__rust_alloc")
            || name.contains("__rust_dealloc")
            || name.contains("__rust_realloc")
            || name.contains("__rdl_")
            || name.contains("__rg_"))
        && !name.contains("error")
    {
        return true;
    }
    if name.contains("tikv_jemallocator") || (name.contains("rdebug") && name.contains("8counting"))
    {
        return true;
    }
    // With heap profiling, rdebug's hook that takes jemalloc's sampled stacks, its check that
    // the thread has room for a walk, and the unwinder it runs (framehop, and gimli's
    // `.eh_frame` reader; not the standard library's copy of gimli). The CPU profiler runs the
    // same unwinder inside its `SIGPROF` handler, where no sample can land.
    cfg!(feature = "pprof")
        && ((name.contains("rdebug")
            && (name.contains("stack_hook")
                || name.contains("walk_here")
                || name.contains("has_room")
                || name.contains("readable_below")))
            || name.contains("framehop")
            || (name.contains("gimli") && !name.contains("backtrace_rs")))
}

/// Sorts and merges ranges that overlap or touch (up to 16-byte alignment padding).
fn merge(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(15) & !15 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    use super::{JEMALLOC_SOURCES, Table, is_allocator_function, merge};
    use crate::sys::mapped::Region;

    const SHT_SYMTAB: u32 = 2;
    const STT_FUNC: u8 = 2;
    const STT_FILE: u8 = 4;

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }

    /// `len` bytes of `f` from `offset` (the headers: a few KiB at most).
    fn read_at(f: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
        // Section headers are 64 bytes each and at most 65,535 of them: 4 MiB.
        if len > 4 << 20 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        f.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    fn name_at(strtab: &[u8], at: u32) -> &[u8] {
        let rest = strtab.get(at as usize..).unwrap_or(&[]);
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    }

    /// Reads `/proc/self/exe`'s symbol table into a [`Table`].
    pub(super) fn read() -> Result<Table, &'static str> {
        const NO_TABLE: &str = "the executable has no symbol table (stripped?), so samples \
                                cannot tell the allocator's code";
        let f = File::open("/proc/self/exe").map_err(|_| "cannot open /proc/self/exe")?;
        let eh = read_at(&f, 0, 64).ok_or("cannot read the executable's ELF header")?;
        if eh.get(..4) != Some(b"\x7fELF") || eh[4] != 2 || eh[5] != 1 {
            return Err("the executable is not a 64-bit little-endian ELF file");
        }
        let bad = "the executable's ELF headers are malformed";
        let entry = u64_at(&eh, 0x18).ok_or(bad)?;
        let shoff = u64_at(&eh, 0x28).ok_or(bad)?;
        let shentsize = u64::from(u16_at(&eh, 0x3a).ok_or(bad)?);
        let shnum = u64::from(u16_at(&eh, 0x3c).ok_or(bad)?);
        if shentsize < 64 {
            return Err(bad);
        }
        let sh = read_at(&f, shoff, shentsize * shnum).ok_or(bad)?;
        let section = |i: u64| -> Option<(u32, u64, u64, u64, u32)> {
            let at = usize::try_from(i * shentsize).ok()?;
            Some((
                u32_at(&sh, at + 4)?,  // sh_type
                u64_at(&sh, at + 16)?, // sh_addr
                u64_at(&sh, at + 24)?, // sh_offset
                u64_at(&sh, at + 32)?, // sh_size
                u32_at(&sh, at + 40)?, // sh_link
            ))
        };
        // The load bias of a position-independent executable: where its entry point is now,
        // against where the file says.
        // SAFETY: getauxval has no preconditions.
        let at_entry = unsafe { libc::getauxval(libc::AT_ENTRY) };
        let bias = at_entry.wrapping_sub(entry) as usize;
        // The executable's own code: every section with SHF_EXECINSTR.
        let mut exe_text = (usize::MAX, 0usize);
        for i in 0..shnum {
            let at = usize::try_from(i * shentsize).map_err(|_| bad)?;
            let flags = u64_at(&sh, at + 8).ok_or(bad)?;
            if let Some((_, addr, _, size, _)) = section(i)
                && flags & 4 != 0
                && size > 0
            {
                let start = (addr as usize).wrapping_add(bias);
                exe_text.0 = exe_text.0.min(start);
                exe_text.1 = exe_text.1.max(start.wrapping_add(size as usize));
            }
        }
        let symtab = (0..shnum)
            .filter_map(section)
            .find(|s| s.0 == SHT_SYMTAB)
            .ok_or(NO_TABLE)?;
        let strtab = section(u64::from(symtab.4)).ok_or(bad)?;
        // Mapped, not copied onto the heap: megabytes allocated and freed beside the reporter's
        // allocator samples would close a gc cycle of rdebug's own making.
        // A symbol table of more than 1 GiB is not one this reads.
        let region = |offset, len| Region::new(&f, offset, len).filter(|_| len <= 1 << 30);
        let syms = region(symtab.2, symtab.3).ok_or(bad)?;
        let strs = region(strtab.2, strtab.3).ok_or(bad)?;
        let (syms, strs) = (syms.bytes(), strs.bytes());
        let mut ranges = Vec::new();
        let mut jemalloc_file = false;
        for sym in syms.chunks_exact(24) {
            let info = sym[4];
            let kind = info & 0xf;
            let local = info >> 4 == 0;
            let name = name_at(strs, u32_at(sym, 0).unwrap_or(0));
            if kind == STT_FILE {
                let base = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
                jemalloc_file = JEMALLOC_SOURCES.iter().any(|s| s.as_bytes() == base);
                continue;
            }
            let value = u64_at(sym, 8).unwrap_or(0) as usize;
            let size = u64_at(sym, 16).unwrap_or(0) as usize;
            if kind != STT_FUNC || value == 0 || size == 0 {
                continue;
            }
            if is_allocator_function(name, local, local && jemalloc_file) {
                let start = value.wrapping_add(bias);
                ranges.push((start, start.wrapping_add(size)));
            }
        }
        if ranges.is_empty() {
            return Err(NO_TABLE);
        }
        Ok(Table {
            ranges: merge(ranges),
            exe_text,
            libgcc: libgcc_text(),
        })
    }

    /// Where libgcc's code is mapped now (`/proc/self/maps`), or an empty range.
    fn libgcc_text() -> (usize, usize) {
        let r = crate::sys::maps::read_maps()
            .into_iter()
            .filter(|e| e.exec && e.path.contains("/libgcc_s.so"))
            .fold((usize::MAX, 0), |r, e| {
                (r.0.min(e.start as usize), r.1.max(e.limit as usize))
            });
        if r.1 == 0 { (0, 0) } else { r }
    }

    /// The interrupted instruction's address, and the candidates for its caller's return
    /// address: the words at the top of the stack (x86_64), or the link register (aarch64).
    /// Reading them is deferred to the iterator, which the caller only runs when it needs to.
    pub(super) fn pc_and_callers(
        ucontext: *mut std::ffi::c_void,
    ) -> Option<(usize, impl Iterator<Item = usize>)> {
        if ucontext.is_null() {
            return None;
        }
        let uc = ucontext.cast::<libc::ucontext_t>();
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: the kernel's ucontext for the interrupted thread.
            let g = unsafe { &(*uc).uc_mcontext.gregs };
            let pc = g[libc::REG_RIP as usize] as usize;
            let sp = g[libc::REG_RSP as usize] as usize;
            // SAFETY: the interrupted function was called, so its return address and its
            // caller's frame lie above its stack pointer, in the thread's mapped stack; the
            // words read stay within a few of them.
            let words = (0..super::STACK_WORDS)
                .map(move |i| unsafe { (sp as *const usize).add(i).read_volatile() });
            Some((pc, words))
        }
        #[cfg(target_arch = "aarch64")]
        {
            // SAFETY: the kernel's ucontext for the interrupted thread.
            let m = unsafe { &(*uc).uc_mcontext };
            let (pc, lr) = (m.pc as usize, m.regs[30] as usize);
            Some((pc, std::iter::once(lr)))
        }
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use super::Table;

    pub(super) fn read() -> Result<Table, &'static str> {
        Err("telling the allocator's code from a sample needs Linux on x86_64 or aarch64")
    }

    pub(super) fn pc_and_callers(
        _ucontext: *mut std::ffi::c_void,
    ) -> Option<(usize, impl Iterator<Item = usize>)> {
        None::<(usize, std::iter::Empty<usize>)>
    }
}
