//! Running code deep in a thread's stack, with a known amount of stack left below it.

/// The calling thread's usable stack `[lo, hi)`, from `pthread_getattr_np` (outside any signal
/// handler).
pub fn stack_bounds() -> (usize, usize) {
    // SAFETY: an attribute object filled by pthread_getattr_np, read, then destroyed once.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize, addr as usize + size)
    }
}

/// The address of a local of a frame called from the caller: about its stack pointer.
#[inline(never)]
pub fn stack_pointer() -> usize {
    let here = 0u8;
    std::hint::black_box(&here) as *const u8 as usize
}

/// Recurses in 1 KiB frames (real ones: not inlined, the buffer kept) until at most `left`
/// bytes of the calling thread's stack are left, then runs `f` there with what is left.
/// Allocates nothing on the way down.
pub fn at_depth<R>(left: usize, f: impl FnOnce(usize) -> R) -> R {
    let (lo, _) = stack_bounds();
    let mut f = Some(f);
    let mut out = None;
    down(lo, left, &mut |now| {
        if let Some(f) = f.take() {
            out = Some(f(now));
        }
    });
    out.expect("ran at depth")
}

#[inline(never)]
fn down(lo: usize, left: usize, f: &mut dyn FnMut(usize)) -> u8 {
    let frame = std::hint::black_box([0u8; 1024]);
    let now = stack_pointer() - lo;
    if now > left {
        return down(lo, left, f).wrapping_add(frame[0]);
    }
    f(now);
    frame[1]
}

/// Runs `f` on a new thread of `stack` bytes, at most `left` bytes of it left (see
/// [`at_depth`]), and returns what it returned with the bytes left. Before going deep the thread
/// allocates and frees 64 KiB, so that rdebug's counters and jemalloc's per-thread profiling
/// data (made at a thread's first sample) are set up on a shallow stack.
pub fn on_a_small_thread<R: Send + 'static>(
    stack: usize,
    left: usize,
    f: impl FnOnce() -> R + Send + 'static,
) -> (usize, R) {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            std::hint::black_box(vec![0u8; 64 << 10]);
            at_depth(left, |now| (now, f()))
        })
        .expect("spawn")
        .join()
        .expect("deep thread")
}
