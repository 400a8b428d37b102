//! Whole-run profiles, as `go test -cpuprofile FILE -memprofile FILE` writes them:
//! `RDEBUG=cpuprofile=FILE` samples the CPU from start-up to normal exit, `RDEBUG=memprofile=FILE`
//! takes a heap profile at normal exit; `RDEBUG=memprofilerate=N` sets the heap sampling rate at
//! start-up.
//!
//! "Normal exit" is the C library's `atexit`: `main` returning or `std::process::exit`. A process
//! killed by a signal, or that aborts (a panic with `panic = "abort"`), writes neither. While the
//! CPU profile runs, a thread named `rdebug-cpuprof` empties the sample ring every 100 ms.

use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::Duration;

use super::cpu::Session;
use super::heap::HeapKind;
use crate::config::{Config, DEFAULT_MEMPROFILERATE};
use crate::sync::lock;
use crate::sys::stderr;

/// The whole-run CPU profile while it runs.
static CPU: Mutex<Option<(Session, PathBuf)>> = Mutex::new(None);
/// Where the heap profile goes at exit.
static MEM: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Starts what `config` asks for; problems are one `rdebug: warning:` line each.
pub(crate) fn start(config: &Config) {
    if config.memprofilerate() != DEFAULT_MEMPROFILERATE {
        if let Err(e) = super::set_memprofilerate(config.memprofilerate()) {
            stderr::note("warning", &format!("memprofilerate: {e}"));
        }
    }
    let mut at_exit = false;
    if let Some(path) = config.memprofile() {
        *lock(&MEM) = Some(path.to_owned());
        at_exit = true;
    }
    if let Some(path) = config.cpuprofile() {
        match Session::start(100) {
            Ok(s) => {
                *lock(&CPU) = Some((s, path.to_owned()));
                let drainer = std::thread::Builder::new()
                    .name("rdebug-cpuprof".into())
                    .spawn(drain_forever);
                if let Err(e) = drainer {
                    stderr::note("warning", &format!("cpuprofile: no drain thread: {e}"));
                }
                at_exit = true;
            }
            Err(e) => stderr::note("warning", &format!("cpuprofile={}: {e}", path.display())),
        }
    }
    if at_exit {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            // SAFETY: registers a plain extern "C" function.
            if unsafe { libc::atexit(write_at_exit) } != 0 {
                stderr::note(
                    "warning",
                    "atexit failed: whole-run profiles will not be written",
                );
            }
        });
    }
}

fn drain_forever() {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match lock(&CPU).as_mut() {
            Some((s, _)) => s.drain(),
            None => return,
        }
    }
}

extern "C" fn write_at_exit() {
    // Nothing may unwind into the C library.
    let _ = std::panic::catch_unwind(write_now);
}

/// Finishes and writes the whole-run profiles (the exit handler's work).
fn write_now() {
    if let Some((session, path)) = lock(&CPU).take() {
        let profile = session.finish();
        if let Err(e) = std::fs::write(&path, profile.pprof_gz()) {
            stderr::note("warning", &format!("cpuprofile={}: {e}", path.display()));
        }
    }
    if let Some(path) = lock(&MEM).take() {
        let written = super::heap().map_err(|e| e.to_string()).and_then(|p| {
            std::fs::write(&path, p.pprof_gz(HeapKind::Heap)).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            stderr::note("warning", &format!("memprofile={}: {e}", path.display()));
        }
    }
}
