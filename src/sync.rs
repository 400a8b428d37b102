//! Locks for state that is plain numbers: a poisoned lock is taken over (a panic elsewhere never
//! stops rdebug), and code that must not block (the panic hook) can wait a bounded time.

use std::sync::{Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Takes `m`, taking over a poisoned lock: rdebug's shared state is numbers and lists that stay
/// valid whatever point a panicking holder stopped at.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long [`lock_briefly`] waits.
const BRIEFLY: Duration = Duration::from_millis(50);

/// Takes `m` if it comes free within 50 ms (a poisoned lock is taken over); `None` otherwise.
/// For the panic hook, which may run on a thread that holds one of rdebug's locks.
pub(crate) fn lock_briefly<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    let deadline = Instant::now() + BRIEFLY;
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::yield_now();
            }
            Err(TryLockError::WouldBlock) => return None,
        }
    }
}

/// Joins the thread in `slot` if it finishes within `timeout` (it may be in the middle of a
/// write); one that does not is left to end on its own. Takes the handle out either way.
pub(crate) fn join_within(slot: &Mutex<Option<JoinHandle<()>>>, timeout: Duration) {
    let Some(t) = lock(slot).take() else { return };
    let deadline = Instant::now() + timeout;
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}
