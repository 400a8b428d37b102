//! One stack of one chosen thread, now: the stall detector's confirmation and its stack.
//!
//! The requester names the thread and sends it `SIGPROF` (`tgkill`); the handler, on that
//! thread, walks its stack into a static buffer and says it is done. One request at a time (a
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
    if REQUEST.tid.load(Acquire) != super::current_tid() {
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
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prepare_thread_stacks() {
        return None;
    }
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
