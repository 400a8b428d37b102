//! Walking the interrupted thread's stack inside the SIGPROF handler, with framehop.
//!
//! libgcc's unwinder is not safe in a signal handler (it takes locks and may allocate:
//! pprof-rs#36, #203), so the unwind information of every loaded object is found before
//! sampling starts ([`Unwinder::load`]): `.eh_frame`, `.eh_frame_hdr` and `.text`, borrowed
//! from the files mapped once ([`loaded::map`]), nothing copied. In the handler,
//! [`Unwinder::walk`] allocates nothing and takes no lock: each handler borrows one of a few
//! preallocated framehop caches with an atomic flag (none free: the sample is dropped).
//!
//! Memory reads ([`StackReader`], the same for the handler's walk and for
//! [`Unwinder::walk_here`] in the heap profiler's stack hook): a word within the walking
//! thread's own stack, from its stack pointer up to the top of its stack, is read directly
//! (that memory cannot go away while the thread runs the walk); never a word past the top. The
//! top is the end of the stack the thread recorded ([`crate::sys::stack`]) when its stack
//! pointer lies in it, and then nothing outside `[sp, top)` is read at all. Else the top is the
//! thread pointer for threads the C library created (glibc and musl keep the thread's control
//! block at the top of its stack mapping), or `startstack` from `/proc/self/stat` for the main
//! thread, and a page is read directly only once the kernel has read from it; any other word
//! is read through the kernel (`process_vm_readv`), so an unmapped address is an error, never
//! a fault. Where the kernel refuses that call (a seccomp filter), which is found out once per
//! profile ([`probe_checked_reads`]), only the thread's own stack is read, each page of it
//! found readable first ([`word_readable`](crate::sys::stack::word_readable)): the walk still
//! follows frames up the stack.
//!
//! The handler runs on the interrupted thread's stack (no alternate signal stack: Rust's own,
//! installed for its stack-overflow message, is a few KiB). Measured by the test
//! `the_handler_uses_a_bounded_part_of_the_stack`: the kernel's signal frame and the walk take
//! about 42 KiB below the interrupted frame in a debug build, most of it framehop's on-stack
//! DWARF unwind context (its must-not-allocate mode); the test holds it to 64 KiB. So before it
//! walks, the handler checks that the thread has [`WALK_NEEDS`] (64 KiB) of stack left below
//! the interrupted stack pointer ([`has_room`]); when it has not, it does not walk and keeps the
//! interrupted pc alone, under the pseudo-frame [`NO_ROOM`] (a walk would run into the guard
//! page and kill the process). How much is left is known:
//! * from the bounds the thread recorded when it first allocated ([`crate::sys::stack`]);
//! * for the main thread, from its `startstack` and `RLIMIT_STACK`, read before the profile;
//! * for any other thread (one that never allocated through `Alloc`, or whose stack pointer lies
//!   outside its recorded stack: a coroutine's stack, an alternate signal stack), by asking the
//!   kernel whether one word of every page of the [`WALK_NEEDS`] below the stack pointer can be
//!   read ([`readable_below`]): a guard page, or no mapping, cannot.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use framehop::{
    CacheNative, ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, UnwindRegsNative,
    Unwinder as _, UnwinderNative,
};
use object::{Object, ObjectSection};

use crate::sys::loaded;

/// Section bytes borrowed from a file mapped for the rest of the process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes(&'static [u8]);

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0
    }
}

/// Handlers that can unwind at the same time (more at once drop their samples).
const CACHES: usize = 4;

pub(super) struct CacheSlot {
    pub(super) busy: AtomicBool,
    pub(super) cache: UnsafeCell<CacheNative<MustNotAllocateDuringUnwind>>,
}

/// The unwind information of the objects loaded when it was built, and the caches.
pub(crate) struct Unwinder {
    pub(super) unwinder: UnwinderNative<Bytes, MustNotAllocateDuringUnwind>,
    pub(super) caches: Vec<CacheSlot>,
    modules: usize,
    /// The C library's code (`libc.so.*`), where [`Unwinder::walk_here`] stops.
    libc: std::ops::Range<u64>,
    /// Every object's `.text`, runtime addresses: what a return address found on a copied stack
    /// must point into ([`super::copied_stack`]).
    pub(super) code: Vec<std::ops::Range<u64>>,
}

// SAFETY: each cache is used by one handler at a time (its `busy` flag); the unwinder is only read.
unsafe impl Sync for Unwinder {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for Unwinder {}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("modules", &self.modules)
            .finish_non_exhaustive()
    }
}

fn section(file: &object::File<'static>, name: &str) -> Option<(std::ops::Range<u64>, Bytes)> {
    let s = file.section_by_name(name)?;
    let data = s.data().ok()?;
    Some((
        s.address()..s.address().saturating_add(s.size()),
        Bytes(data),
    ))
}

impl Unwinder {
    /// Finds the unwind information of every object loaded now (allocates; not in a handler).
    pub(crate) fn load() -> Unwinder {
        let mut unwinder = UnwinderNative::new();
        let mut count = 0;
        let mut libc = 0..0;
        let mut code = Vec::new();
        for m in loaded::loaded() {
            if m.path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libc.so"))
            {
                libc = m.range.clone();
            }
            // Only a file matched to what is loaded (build ID, or device and inode).
            let Ok(mapped) = m.file() else {
                continue;
            };
            let Ok(file) = object::File::parse(mapped.0) else {
                continue;
            };
            let text = section(&file, ".text");
            if let Some((r, _)) = &text {
                code.push(r.start.saturating_add(m.base)..r.end.saturating_add(m.base));
            }
            let eh_frame = section(&file, ".eh_frame");
            let eh_frame_hdr = section(&file, ".eh_frame_hdr");
            let got = section(&file, ".got");
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: text.as_ref().map(|t| t.0.clone()),
                text: text.map(|t| t.1),
                got_svma: got.map(|g| g.0),
                eh_frame_svma: eh_frame.as_ref().map(|t| t.0.clone()),
                eh_frame: eh_frame.map(|t| t.1),
                eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|t| t.0.clone()),
                eh_frame_hdr: eh_frame_hdr.map(|t| t.1),
                stubs_svma: None,
                stub_helper_svma: None,
                unwind_info: None,
                debug_frame: None,
                text_segment_svma: None,
                text_segment: None,
            };
            let name = m.path.to_string_lossy().into_owned();
            unwinder.add_module(Module::new(name, m.range.clone(), m.base, info));
            count += 1;
        }
        let caches = (0..CACHES)
            .map(|_| CacheSlot {
                busy: AtomicBool::new(false),
                cache: UnsafeCell::new(CacheNative::new_in()),
            })
            .collect();
        Unwinder {
            code,
            unwinder,
            caches,
            modules: count,
            libc,
        }
    }

    /// Walks the stack of the thread interrupted with `ucontext` into `out` (code addresses for
    /// lookup, innermost first: the interrupted pc, then return addresses − 1). Returns how many
    /// were written (0: no cache free or no registers).
    ///
    /// Async-signal-safe: no allocation, no lock; memory is read as [`StackReader`] says.
    ///
    /// When the thread has less than [`WALK_NEEDS`] of stack left below the interrupted stack
    /// pointer, it does not walk: `out` gets the interrupted pc and [`NO_ROOM`] (2 entries).
    pub(crate) fn walk(&self, ucontext: *mut c_void, out: &mut [u64]) -> usize {
        let Some((pc, regs)) = registers(ucontext) else {
            return 0;
        };
        if out.is_empty() {
            return 0;
        }
        if !has_room(regs_sp(&regs), WALK_NEEDS) {
            out[0] = pc;
            return match out.get_mut(1) {
                Some(o) => {
                    *o = NO_ROOM;
                    2
                }
                None => 1,
            };
        }
        self.walk_from(pc, regs, out)
    }

    /// [`walk`](Self::walk) once the room is checked: its own frame, which holds framehop's
    /// unwind state (most of the stack the walk needs), is entered only then.
    #[inline(never)]
    fn walk_from(&self, pc: u64, regs: UnwindRegsNative, out: &mut [u64]) -> usize {
        let Some(slot) = self
            .caches
            .iter()
            .find(|s| !s.busy.swap(true, Ordering::Acquire))
        else {
            return 0;
        };
        // SAFETY: the `busy` flag gives this handler the cache alone until it is cleared.
        let cache = unsafe { &mut *slot.cache.get() };
        let mut reader = StackReader::new(regs_sp(&regs));
        let mut read = |addr: u64| reader.read(addr);
        let mut it = self.unwinder.iter_frames(pc, regs, cache, &mut read);
        let mut n = 0;
        while n < out.len() {
            match it.next() {
                Ok(Some(frame)) => {
                    out[n] = frame.address_for_lookup();
                    n += 1;
                }
                _ => break,
            }
        }
        if n == 0 {
            out[0] = pc;
            n = 1;
        }
        slot.busy.store(false, Ordering::Release);
        n
    }
}

impl Unwinder {
    /// A cache of its own for a walk outside a signal handler, waiting (yielding) while every
    /// cache is taken; the caller clears its `busy` flag when done.
    pub(super) fn wait_for_cache(&self) -> &CacheSlot {
        loop {
            if let Some(s) = self
                .caches
                .iter()
                .find(|s| !s.busy.swap(true, Ordering::Acquire))
            {
                return s;
            }
            std::thread::yield_now();
        }
    }
}

impl Unwinder {
    /// Walks the calling thread's own stack, outside any signal handler, into `out`: return
    /// addresses, innermost first (as libgcc's `_Unwind_Backtrace` gives them), leaving out this
    /// function's own frame and the `skip` frames above it. Returns how many.
    ///
    /// The walk ends at the first return address into the C library: below `main` and a
    /// thread's start routine there is only the C library's start-up code, whose unwind rules
    /// framehop cannot cache (they cost 80% of a walk when they were walked).
    ///
    /// No allocation, no lock; waits (yielding) while every cache is taken. Every word is read
    /// as [`StackReader`] reads for the signal handler: within the calling thread's own stack
    /// (from its stack pointer up to the top of its stack), never past it; anything else ends
    /// the walk. A bogus frame pointer (code without unwind information that keeps something
    /// else in `rbp`) therefore stops the walk instead of faulting.
    #[inline(never)]
    pub(crate) fn walk_here(&self, out: &mut [u64], skip: usize) -> usize {
        let Some((pc, sp, regs)) = here() else {
            return 0;
        };
        let slot = self.wait_for_cache();
        // SAFETY: the `busy` flag gives this caller the cache alone until it is cleared.
        let cache = unsafe { &mut *slot.cache.get() };
        let mut reader = StackReader::new(sp);
        let mut read = |addr: u64| {
            if addr % 8 == 0 {
                reader.read(addr)
            } else {
                Err(())
            }
        };
        let mut it = self.unwinder.iter_frames(pc, regs, cache, &mut read);
        let mut n = 0;
        // The first frame is this function itself.
        for _ in 0..=skip {
            if !matches!(it.next(), Ok(Some(_))) {
                slot.busy.store(false, Ordering::Release);
                return 0;
            }
        }
        while n < out.len() {
            match it.next() {
                Ok(Some(frame)) => {
                    let a = frame.address();
                    if self.libc.contains(&a) {
                        break;
                    }
                    out[n] = a;
                    n += 1;
                }
                _ => break,
            }
        }
        slot.busy.store(false, Ordering::Release);
        n
    }
}

/// The calling function's own registers for framehop: its pc, stack and frame pointer.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline(always)]
fn here() -> Option<(u64, u64, UnwindRegsNative)> {
    let (pc, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers, touches no memory.
    unsafe {
        std::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    Some((pc, sp, UnwindRegsNative::new(pc, sp, bp)))
}

/// The calling function's own registers for framehop: its pc, stack and frame pointer.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
#[inline(always)]
fn here() -> Option<(u64, u64, UnwindRegsNative)> {
    let (pc, sp, fp, lr): (u64, u64, u64, u64);
    // SAFETY: reads four registers, touches no memory.
    unsafe {
        std::arch::asm!(
            "adr {pc}, .",
            "mov {sp}, sp",
            "mov {fp}, x29",
            "mov {lr}, x30",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            lr = out(reg) lr,
            options(nomem, nostack, preserves_flags),
        );
    }
    Some((pc, sp, UnwindRegsNative::new(lr, sp, fp)))
}

/// Stack walking is implemented for Linux on x86_64 and aarch64.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn here() -> Option<(u64, u64, UnwindRegsNative)> {
    None
}

/// The registers framehop starts from, from the handler's `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn registers(ucontext: *mut c_void) -> Option<(u64, UnwindRegsNative)> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: the kernel's ucontext_t for this signal.
    let g = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let pc = g[libc::REG_RIP as usize] as u64;
    let sp = g[libc::REG_RSP as usize] as u64;
    let bp = g[libc::REG_RBP as usize] as u64;
    Some((pc, UnwindRegsNative::new(pc, sp, bp)))
}

/// The registers framehop starts from, from the handler's `ucontext_t`.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
fn registers(ucontext: *mut c_void) -> Option<(u64, UnwindRegsNative)> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: the kernel's ucontext_t for this signal.
    let m = unsafe { &(*ucontext.cast::<libc::ucontext_t>()).uc_mcontext };
    Some((m.pc, UnwindRegsNative::new(m.regs[30], m.sp, m.regs[29])))
}

/// Stack walking is implemented for Linux on x86_64 and aarch64.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn registers(_ucontext: *mut c_void) -> Option<(u64, UnwindRegsNative)> {
    None
}

/// The stack pointer in `regs`.
#[cfg(target_arch = "x86_64")]
fn regs_sp(regs: &UnwindRegsNative) -> u64 {
    regs.sp()
}

/// The stack pointer in `regs`.
#[cfg(target_arch = "aarch64")]
fn regs_sp(regs: &UnwindRegsNative) -> u64 {
    regs.sp()
}

/// The stack pointer in `regs` (no stack walking here).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn regs_sp(_regs: &UnwindRegsNative) -> u64 {
    0
}

/// Stack a walk needs below the interrupted stack pointer: the kernel's signal frame, the
/// handler and framehop's unwind state. Measured at about 42 KiB in a debug build (the test
/// `the_handler_uses_a_bounded_part_of_the_stack` holds it to this figure); a release build
/// needs less.
pub(crate) const WALK_NEEDS: u64 = 64 << 10;

/// The pseudo-address under which a sample that was not walked for want of stack keeps its
/// interrupted pc (never a code address).
pub(crate) const NO_ROOM: u64 = 2;
/// The name pprof shows for [`NO_ROOM`].
pub(crate) const NO_ROOM_NAME: &str = "(rdebug: too little stack left to walk)";

/// Whether `process_vm_readv` works in this process: 0 not known yet, 1 yes, 2 refused.
static CHECKED_READS: AtomicU8 = AtomicU8::new(0);
/// The main thread's `startstack` (`/proc/self/stat`), 0 if unknown.
static MAIN_STACK_TOP: AtomicU64 = AtomicU64::new(0);
/// The lowest address the main thread's stack may grow down to (`startstack` less
/// `RLIMIT_STACK`), 0 if unknown (no limit).
static MAIN_STACK_LOW: AtomicU64 = AtomicU64::new(0);
/// Farthest a thread's stack top is taken to be from its stack pointer.
const MAX_STACK: u64 = 64 << 20;

/// Finds out, before a profile, whether the kernel lets this process read its own memory with
/// `process_vm_readv` (a seccomp filter may refuse it), and where the main thread's stack
/// starts. Returns false when checked reads are refused (the first time it is found, the caller
/// says so once). Not for a handler (reads a file).
pub(crate) fn probe_checked_reads() -> bool {
    if MAIN_STACK_TOP.load(Ordering::Relaxed) == 0
        && let Some(top) = main_stack_top()
    {
        if let Some(limit) = crate::sys::stack::stack_rlimit() {
            MAIN_STACK_LOW.store(top.saturating_sub(limit), Ordering::Relaxed);
        }
        MAIN_STACK_TOP.store(top, Ordering::Relaxed);
    }
    let word = 0x5eed_u64;
    let ok = read_checked(std::hint::black_box(&word) as *const u64 as u64) == Ok(word);
    CHECKED_READS.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    ok
}

/// Field 28 of `/proc/self/stat`: where the main thread's stack starts (its highest frame lies
/// below it).
fn main_stack_top() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from after its closing parenthesis.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(25)?.parse().ok()
}

/// Reads words for one walk (see the module docs).
struct StackReader {
    /// The interrupted stack pointer, and the top of that thread's stack (0: unknown).
    sp: u64,
    top: u64,
    /// `top` is the end of the stack the thread recorded ([`crate::sys::stack`]), and `sp` lies
    /// within that stack: every word of `[sp, top)` is mapped while the thread runs.
    recorded: bool,
    /// `process_vm_readv` works here.
    checked: bool,
    /// Pages of [sp, top) the kernel has read from (or found readable) in this walk.
    pages: [u64; 8],
    n: usize,
}

const PAGE_MASK: u64 = !4095;

impl StackReader {
    fn new(sp: u64) -> StackReader {
        let (top, recorded) = match crate::sys::stack::recorded() {
            Some((lo, hi)) if lo <= sp && sp < hi => (hi, true),
            _ => (stack_top(sp), false),
        };
        StackReader {
            sp,
            top,
            recorded,
            checked: CHECKED_READS.load(Ordering::Relaxed) != 2,
            pages: [0; 8],
            n: 0,
        }
    }

    fn read(&mut self, addr: u64) -> Result<u64, ()> {
        let addr = addr & !7;
        let own_stack = addr >= self.sp && addr.saturating_add(8) <= self.top;
        if self.recorded {
            if !own_stack {
                // Not the stack the walk is on: nothing a frame of it may point at.
                return Err(());
            }
            // SAFETY: an aligned word of the running thread's own recorded stack, between its
            // stack pointer and the stack's end: mapped for as long as this thread runs.
            return Ok(unsafe { (addr as *const u64).read_volatile() });
        }
        let page = addr & PAGE_MASK;
        let seen = own_stack && self.pages[..self.n].contains(&page);
        if !self.checked {
            // The kernel will not read for us: this thread's own stack only, each page found
            // readable first (its top is a guess from the thread pointer when not recorded).
            if !own_stack || !(seen || crate::sys::stack::word_readable(addr)) {
                return Err(());
            }
            if !seen && self.n < self.pages.len() {
                self.pages[self.n] = page;
                self.n += 1;
            }
            // SAFETY: an aligned word of the running thread's own stack between its stack
            // pointer and its top, on a page the kernel found readable: stack pages stay mapped
            // for as long as this thread runs.
            return Ok(unsafe { (addr as *const u64).read_volatile() });
        }
        if seen {
            // SAFETY: as above, and the kernel read from this page a moment ago.
            return Ok(unsafe { (addr as *const u64).read_volatile() });
        }
        let value = read_checked(addr)?;
        if own_stack && self.n < self.pages.len() {
            self.pages[self.n] = page;
            self.n += 1;
        }
        Ok(value)
    }
}

/// The top of the calling thread's stack, given a stack pointer on it; 0 if unknown.
#[cfg(target_os = "linux")]
fn stack_top(sp: u64) -> u64 {
    // SAFETY: pthread_self reads the thread pointer register: async-signal-safe.
    let tp = unsafe { libc::pthread_self() } as u64;
    if tp > sp && tp - sp <= MAX_STACK {
        return tp;
    }
    let main = MAIN_STACK_TOP.load(Ordering::Relaxed);
    if main > sp && main - sp <= MAX_STACK {
        return main;
    }
    0
}

#[cfg(not(target_os = "linux"))]
fn stack_top(_sp: u64) -> u64 {
    0
}

/// Whether the calling thread, with its stack pointer at `sp`, has `need` bytes of stack below
/// `sp` (see the module docs). Async-signal-safe: no allocation, no lock.
pub(crate) fn has_room(sp: u64, need: u64) -> bool {
    if let Some((lo, hi)) = crate::sys::stack::recorded()
        && lo <= sp
        && sp <= hi
    {
        return sp - lo >= need;
    }
    let (low, top) = (
        MAIN_STACK_LOW.load(Ordering::Relaxed),
        MAIN_STACK_TOP.load(Ordering::Relaxed),
    );
    if low != 0 && low <= sp && sp <= top {
        return sp - low >= need;
    }
    readable_below(sp, need)
}

/// Whether the calling thread has room for [`Unwinder::walk_here`] ([`WALK_NEEDS`] below the
/// caller's frame): call it before, from a small frame. No allocation, no lock.
pub(crate) fn room_to_walk_here() -> bool {
    let here = 0u8;
    has_room(std::hint::black_box(&here) as *const u8 as u64, WALK_NEEDS)
}

/// Whether every page of `[sp - need, sp)` can be read (at most [`WALK_NEEDS`] is checked): a
/// guard page, or no mapping, fails. Asks the kernel about one word of each page, with a call
/// every sandbox allows and that changes nothing: `rt_sigprocmask` with an invalid `how` copies
/// the new mask from the address first (`EFAULT` if it cannot be read), then refuses the `how`
/// (`EINVAL`). 17 calls for 64 KiB, about 3 µs (measured with the same calls from C on the
/// 2-core test machine); made only for threads whose bounds are not recorded. errno is left as
/// it was. (The `sigsetsize` passed, 8, is the kernel's on x86_64 and aarch64, the targets
/// that walk stacks.)
#[cfg(target_os = "linux")]
fn readable_below(sp: u64, need: u64) -> bool {
    let need = need.min(WALK_NEEDS);
    let Some(low) = sp.checked_sub(need) else {
        return false;
    };
    let mut readable = true;
    let mut page = low & !4095;
    while readable && page < sp {
        readable = crate::sys::stack::word_readable(page.max(low & !7));
        page += 4096;
    }
    readable
}

#[cfg(not(target_os = "linux"))]
fn readable_below(_sp: u64, _need: u64) -> bool {
    false
}

/// Reads one word through the kernel: an unreadable address is an error, not a fault.
#[cfg(target_os = "linux")]
fn read_checked(addr: u64) -> Result<u64, ()> {
    let mut value = 0u64;
    let local = libc::iovec {
        iov_base: (&mut value as *mut u64).cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: 8,
    };
    // SAFETY: a syscall on our own process; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == 8 { Ok(value) } else { Err(()) }
}

#[cfg(not(target_os = "linux"))]
fn read_checked(_addr: u64) -> Result<u64, ()> {
    Err(())
}

/// The unwinder for the objects loaded now: built before the first profile, and built anew
/// when a later profile finds the loaded objects changed (a library loaded with `dlopen`), so
/// every object's code is unwound. A running profile keeps the one it started with.
pub(crate) fn unwinder() -> std::sync::Arc<Unwinder> {
    /// The loader's generation (`sys::loaded`'s one staleness rule).
    type Loaded = u64;
    static CURRENT: std::sync::Mutex<Option<(Loaded, std::sync::Arc<Unwinder>)>> =
        std::sync::Mutex::new(None);
    let now: Loaded = crate::sys::loaded::generation();
    let mut current = crate::sync::lock(&CURRENT);
    match &*current {
        Some((loaded, u)) if *loaded == now => u.clone(),
        _ => {
            let u = std::sync::Arc::new(Unwinder::load());
            *current = Some((now, u.clone()));
            u
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_walk_reads_nothing_outside_its_threads_stack() {
        std::thread::spawn(|| {
            crate::sys::stack::record_current_thread();
            let (_, hi) = crate::sys::stack::recorded().expect("recorded");
            let here = 0x5eed_u64;
            let sp = std::hint::black_box(&here) as *const u64 as u64;
            let mut r = StackReader::new(sp);
            assert_eq!(r.read(sp), Ok(0x5eed));
            assert!(r.read(hi - 8).is_ok(), "the stack's last word");
            assert_eq!(r.read(hi), Err(()), "past the top");
            assert_eq!(r.read(sp - 4096), Err(()), "below the stack pointer");
            let heap = Box::new(7u64);
            assert_eq!(
                r.read(&*heap as *const u64 as u64),
                Err(()),
                "not the stack"
            );
        })
        .join()
        .expect("thread");
    }
}
