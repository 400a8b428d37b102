//! Locks for state that is plain numbers: a poisoned lock is taken over (a panic elsewhere never
//! stops rdebug), and code that must not block (the panic hook) can wait a bounded time.

use std::sync::{Mutex, MutexGuard, TryLockError};
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
