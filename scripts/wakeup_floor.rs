//! A thread that does nothing but wake every PERIOD_MS ms (a condvar wait with a timeout, as
//! rdebug's reporter sleeps): the CPU any periodic thread costs on this machine, against which
//! `scripts/idle-cost.sh` puts the reporter's figures (its `floor:PERIOD_MS` setting). Runs until
//! killed. Built by that script with `rustc -O`; no dependencies.
//!
//! usage: wakeup-floor PERIOD_MS

use std::sync::{Condvar, Mutex};
use std::time::Duration;

fn main() {
    let period = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or_else(|| {
            eprintln!("usage: wakeup-floor PERIOD_MS (a whole number of ms, 1 or more)");
            std::process::exit(2)
        });
    let lock = Mutex::new(());
    let wake = Condvar::new();
    let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        guard = match wake.wait_timeout(guard, Duration::from_millis(period)) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
}
