//! One stack of one chosen thread, now: the stall detector's confirmation and its stack, and the
//! block profile's samples.
//!
//! A thread blocked in a system call is never sent a signal: calls with timeouts (`poll`,
//! `epoll_wait`, `nanosleep`, a socket read with `SO_RCVTIMEO`) are not restarted after a
//! handler, and the program would see `EINTR`. Its stack is read from this thread instead: the
//! kernel shows the user stack pointer and program counter it will return to
//! (`/proc/self/task/<tid>/syscall`), its stack is copied through the kernel
//! (`process_vm_readv`: an unmapped page ends the copy, never faults) and walked from the copy,
//! its labels are copied from the label state it published, and the file is read again: a
//! thread that moved meanwhile gives no stack. What remains: a thread seen on a CPU is sent
//! `SIGPROF`, and one that enters a system call in the microseconds before the signal lands
//! sees it there (as it does a CPU profile's timer signal while a call runs on a CPU).
//!
//! For a thread on a CPU, the requester names the thread and sends it `SIGPROF` (`tgkill`); the
//! handler, on that thread, walks its stack into a static buffer and says it is done. One request at a time (a
//! lock on the requesting side, never taken by the handler); a thread that does not answer in
//! time (not scheduled, signal blocked) gets no stack. A thread with too little stack left to
//! walk it answers with its interrupted pc alone (see [`Unwinder::walk`]).

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering::*};
use std::time::{Duration, Instant};

use super::ring::MAX_DEPTH;
use crate::sampler::task_labels::Captured;
use crate::sys::task::Syscall;

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const TAKING: u8 = 2;
const DONE: u8 = 3;

/// The reply buffer: written by the handler between `TAKING` and `DONE` only.
struct Reply {
    depth: usize,
    frames: [u64; MAX_DEPTH],
    tags: Captured,
}

struct Request {
    tid: AtomicI64,
    state: AtomicU8,
    reply: UnsafeCell<Reply>,
}

// SAFETY: `reply` is written only by the one handler that moved `state` from PENDING to TAKING,
// and read by the requester only after it saw DONE (or moved PENDING back to IDLE itself).
unsafe impl Sync for Request {}

static REQUEST: Request = Request {
    tid: AtomicI64::new(0),
    state: AtomicU8::new(IDLE),
    reply: UnsafeCell::new(Reply {
        depth: 0,
        frames: [0; MAX_DEPTH],
        tags: Captured::EMPTY,
    }),
};

/// A thread's stack, innermost first, and the tokio task it was running (0: none or unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadStack {
    pub frames: Vec<u64>,
    pub task: u64,
    /// The labels in force ([`crate::sampler::task_labels`] bytes).
    pub labels: Vec<u8>,
}

/// The request hook, in the `SIGPROF` handler of the signalled thread. Async-signal-safe.
///
/// # Safety
/// Called only by the sampler's handler, with its `ucontext`.
unsafe fn on_request(ucontext: *mut c_void, _weight: u64) {
    if REQUEST.tid.load(Acquire) != crate::sys::thread::current_tid() {
        return;
    }
    if REQUEST
        .state
        .compare_exchange(PENDING, TAKING, AcqRel, Acquire)
        .is_err()
    {
        return;
    }
    // SAFETY: this handler owns the reply until it stores DONE.
    let reply = unsafe { &mut *REQUEST.reply.get() };
    reply.depth = match super::hook_unwinder::hold() {
        Some(u) => u.walk(ucontext, &mut reply.frames),
        None => 0,
    };
    crate::sampler::task_labels::capture(&mut reply.tags);
    REQUEST.state.store(DONE, Release);
}

/// Readies [`thread_stack`]: installs the `SIGPROF` handler (no timers: a request signals one
/// thread) and builds the unwinder ([`super::hook_unwinder`], built anew when libraries were
/// loaded or unloaded since), which takes tens of milliseconds the first time (more on a busy
/// machine). Who must answer quickly (the stall tick, whose first answer is due within
/// N/2 ms of a stall) calls it ahead. `false`: requests cannot be answered here.
pub(crate) fn prepare_thread_stacks() -> bool {
    if super::ensure_handler().is_err() {
        return false;
    }
    super::hook_unwinder::refresh();
    super::set_request_hook(on_request);
    true
}

/// How long [`thread_stack`] yields while it waits, before it sleeps between looks.
const YIELD_FOR: Duration = Duration::from_micros(500);

/// The stack of thread `tid` now, within `timeout`; `None` if the thread did not answer (or
/// the sampler cannot run). Blocks the caller up to `timeout`.
pub(crate) fn thread_stack(tid: i64, timeout: Duration) -> Option<ThreadStack> {
    thread_stack_upto(tid, timeout, MAX_DEPTH)
}

/// [`thread_stack`], innermost `max` frames at most (a blocked thread's walk stops there).
pub(crate) fn thread_stack_upto(tid: i64, timeout: Duration, max: usize) -> Option<ThreadStack> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prepare_thread_stacks() {
        return None;
    }
    // Twice at most: a thread that left its call while it was read is looked at again.
    for _ in 0..2 {
        match crate::sys::task::syscall(tid)? {
            Syscall::Running => {
                let mut s = signalled_stack(tid, timeout)?;
                s.frames.truncate(max);
                return Some(s);
            }
            Syscall::Blocked { .. } => {
                if let Some(s) = blocked_stack(tid, max) {
                    return Some(s);
                }
            }
        }
    }
    None
}

/// Bytes of a blocked thread's stack copied for a walk (from its stack pointer up).
const COPY_BYTES: usize = 128 << 10;

/// The stack of thread `tid`, blocked in a system call, read without a signal (see the module
/// docs). `None` when it is not blocked, or moved while it was read.
fn blocked_stack(tid: i64, max: usize) -> Option<ThreadStack> {
    static COPY: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    let before = crate::sys::task::syscall(tid)?;
    let Syscall::Blocked { sp, pc, .. } = before else {
        return None;
    };
    let unwinder = super::hook_unwinder::hold()?;
    let mut copy = COPY.lock().unwrap_or_else(|e| e.into_inner());
    if copy.len() < COPY_BYTES {
        copy.resize(COPY_BYTES, 0);
    }
    let n = crate::sys::thread::read_memory(sp, &mut copy[..]);
    let mut frames = [0u64; MAX_DEPTH];
    let depth = unwinder.walk_copy(pc, sp, &copy[..n], &mut frames[..max.clamp(1, MAX_DEPTH)]);
    let mut tags = Captured::EMPTY;
    let at = super::registry::labels_of(tid);
    if at != 0 {
        crate::sampler::task_labels::capture_remote(at, &mut tags);
    }
    if crate::sys::task::syscall(tid)? != before {
        return None;
    }
    Some(ThreadStack {
        frames: frames[..depth.min(MAX_DEPTH)].to_vec(),
        task: tags.task,
        labels: tags.labels().to_vec(),
    })
}

/// The stack of thread `tid`, on a CPU, by `SIGPROF` (see the module docs).
fn signalled_stack(tid: i64, timeout: Duration) -> Option<ThreadStack> {
    REQUEST.tid.store(tid, Release);
    REQUEST.state.store(PENDING, Release);
    if !super::signal_thread(tid) {
        REQUEST.state.store(IDLE, Release);
        return None;
    }
    let start = Instant::now();
    let end = start + timeout;
    loop {
        match REQUEST.state.load(Acquire) {
            DONE => break,
            PENDING
                if Instant::now() >= end
                    && REQUEST
                        .state
                        .compare_exchange(PENDING, IDLE, AcqRel, Acquire)
                        .is_ok() =>
            {
                return None;
            }
            _ => {}
        }
        // An answer takes tens of µs: yield the CPU while it comes (the signalled thread may
        // need it on a small machine), and sleep between looks only after that.
        if start.elapsed() < YIELD_FOR {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // SAFETY: DONE: the handler finished writing and no other handler takes it (state != PENDING).
    let reply = unsafe { &*REQUEST.reply.get() };
    let out = ThreadStack {
        frames: reply.frames[..reply.depth.min(MAX_DEPTH)].to_vec(),
        task: reply.tags.task,
        labels: reply.tags.labels().to_vec(),
    };
    REQUEST.state.store(IDLE, Release);
    Some(out)
}
