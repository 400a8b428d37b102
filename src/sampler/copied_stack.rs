//! Walking the stack of another thread, blocked in a system call, from a copy of it: what
//! [`thread_stack`](super::thread_stack) does instead of signalling such a thread.

use std::sync::atomic::Ordering;

use framehop::{
    CacheNative, FrameAddress, MustNotAllocateDuringUnwind, UnwindRegsNative, Unwinder as _,
    UnwinderNative,
};

use super::unwind::{Bytes, Unwinder};

impl Unwinder {
    /// Walks the stack of another thread of this process that is blocked in a system call, from
    /// the `pc` and `sp` the kernel shows for it (`/proc/self/task/<tid>/syscall`), reading only
    /// `stack`: a copy of that thread's stack from `sp` up. Returns how many addresses were
    /// written to `out` (innermost first, as [`walk`](Self::walk) gives them); waits (yielding)
    /// for a cache.
    ///
    /// The kernel shows no other register. A frame whose unwind rule needs the frame pointer
    /// (code built with frame pointers, as a debug build is) finds it on the stack copy: the
    /// lowest word at or above its stack pointer that, taken as the frame pointer, unwinds that
    /// frame and the next one ([`recover_fp`]); twice at most per walk. On aarch64 a leaf
    /// function's return address is in a register the kernel does not show: the walk ends there.
    pub(crate) fn walk_copy(&self, pc: u64, sp: u64, stack: &[u8], out: &mut [u64]) -> usize {
        if out.is_empty() {
            return 0;
        }
        let slot = self.wait_for_cache();
        // SAFETY: the `busy` flag gives this caller the cache alone until it is cleared.
        let cache = unsafe { &mut *slot.cache.get() };
        let mut read = |addr: u64| copied_word(stack, sp, addr);
        #[cfg(target_arch = "aarch64")]
        let mut regs = UnwindRegsNative::new(0, sp, 0);
        #[cfg(not(target_arch = "aarch64"))]
        let mut regs = UnwindRegsNative::new(pc, sp, 0);
        let mut address = FrameAddress::from_instruction_pointer(pc);
        let mut recovered = 0;
        let mut n = 0;
        while n < out.len() {
            out[n] = address.address_for_lookup();
            n += 1;
            let before = regs;
            let next = match self
                .unwinder
                .unwind_frame(address, &mut regs, cache, &mut read)
            {
                Ok(Some(ra)) => FrameAddress::from_return_address(ra),
                _ => None,
            };
            if let Some(a) = next {
                address = a;
                continue;
            }
            if recovered < 2
                && let Some((r, a)) = recover_fp(self, address, before, cache, &mut read)
            {
                recovered += 1;
                regs = r;
                address = a;
                continue;
            }
            break;
        }
        slot.busy.store(false, Ordering::Release);
        n
    }
}

/// The aligned word at `addr` of a stack copied from `sp` up.
fn copied_word(stack: &[u8], sp: u64, addr: u64) -> Result<u64, ()> {
    if addr % 8 != 0 {
        return Err(());
    }
    let off = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
    let word = stack.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
    let mut b = [0u8; 8];
    b.copy_from_slice(word);
    Ok(u64::from_ne_bytes(b))
}

/// How far above a frame's stack pointer [`recover_fp`] looks for its frame pointer.
const FP_SCAN: u64 = 16 << 10;

/// For a frame at `address` that did not unwind from `regs` (whose frame pointer is not known):
/// the registers and caller's address it unwinds to with the candidate frame pointer (a stack
/// word at or above its stack pointer) whose chain of frames goes furthest through known code.
#[cfg(target_arch = "x86_64")]
fn recover_fp<F: FnMut(u64) -> Result<u64, ()>>(
    u: &Unwinder,
    address: FrameAddress,
    regs: UnwindRegsNative,
    cache: &mut CacheNative<MustNotAllocateDuringUnwind>,
    read: &mut F,
) -> Option<(UnwindRegsNative, FrameAddress)> {
    let code = |a: u64| u.code.iter().any(|r| r.contains(&a));
    let unwinder = &u.unwinder;
    let sp = regs.sp();
    // The best candidate so far: (frames its chain unwinds, registers, caller).
    let mut best: Option<(usize, UnwindRegsNative, FrameAddress)> = None;
    let mut tried = 0;
    for fp in (sp..sp.saturating_add(FP_SCAN)).step_by(8) {
        // (The word there, the caller's saved frame pointer, is not checked: a caller built
        // without frame pointers keeps anything in that register.)
        if read(fp).is_err() || tried == FP_CANDIDATES {
            break;
        }
        let mut r = regs;
        r.set_bp(fp);
        let Ok(Some(ra)) = unwinder.unwind_frame(address, &mut r, cache, read) else {
            continue;
        };
        let Some(caller) = FrameAddress::from_return_address(ra).filter(|_| code(ra)) else {
            continue;
        };
        // A dead frame record left lower on the stack by an earlier call of a caller unwinds as
        // well as the live one, but skips the frames between: the candidate whose chain goes
        // furthest through known code is the live one (the lowest of equals).
        let depth = chain(unwinder, caller, r, cache, read, &code);
        if depth == 0 {
            continue;
        }
        tried += 1;
        if best.as_ref().is_none_or(|(d, _, _)| depth > *d) {
            best = Some((depth, r, caller));
        }
    }
    best.map(|(_, r, a)| (r, a))
}

/// Candidate frame pointers [`recover_fp`] follows to the end of their chains, at most.
#[cfg(target_arch = "x86_64")]
const FP_CANDIDATES: usize = 8;

/// How many frames unwind from `address` with `regs` into known code (at most 64).
#[cfg(target_arch = "x86_64")]
fn chain<F: FnMut(u64) -> Result<u64, ()>>(
    unwinder: &UnwinderNative<Bytes, MustNotAllocateDuringUnwind>,
    mut address: FrameAddress,
    mut regs: UnwindRegsNative,
    cache: &mut CacheNative<MustNotAllocateDuringUnwind>,
    read: &mut F,
    code: &impl Fn(u64) -> bool,
) -> usize {
    let mut n = 0;
    while n < 64 {
        match unwinder.unwind_frame(address, &mut regs, cache, read) {
            Ok(Some(ra)) if code(ra) => match FrameAddress::from_return_address(ra) {
                Some(a) => {
                    address = a;
                    n += 1;
                }
                None => break,
            },
            _ => break,
        }
    }
    n
}

#[cfg(not(target_arch = "x86_64"))]
fn recover_fp<F: FnMut(u64) -> Result<u64, ()>>(
    _u: &Unwinder,
    _address: FrameAddress,
    _regs: UnwindRegsNative,
    _cache: &mut CacheNative<MustNotAllocateDuringUnwind>,
    _read: &mut F,
) -> Option<(UnwindRegsNative, FrameAddress)> {
    None
}
