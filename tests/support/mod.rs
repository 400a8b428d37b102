//! The one support module of the integration tests, used by every test file through
//! `mod support;`.
//!
//! * [`child`]: running a test's scenario in a child process with its own environment (the
//!   [`test_name!`] of the test, [`run_child`], [`child_command`], …);
//! * [`lines`]: reading what a child printed ([`field`], [`phase`], [`result_numbers`], …);
//! * [`foreign`]: the memstats scenario of a program whose global allocator is not
//!   `rdebug::Alloc`, and its checks;
//! * [`deep`]: running code deep in a thread's stack, with little stack left;
//! * [`load`] and [`server`]: a hyper load client and the small in-test axum server it drives;
//! * [`release_fixture`]: the release build of `tests/fixtures/profile_truth.rs`;
//! * [`shared_object`]: shared objects built with `gcc` in the test, loaded with `dlopen`;
//! * here: a two-worker runtime, allocations as a task's poll makes them, a stderr-filling
//!   helper, the RSS of a process.

// Each test binary uses its own part of this module.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod burn;
pub mod child;
pub mod deep;
pub mod foreign;
pub mod hey;
pub mod http_client;
pub mod lines;
pub mod load;
pub mod pprof;
pub mod release_fixture;
pub mod server;
pub mod shared_object;

pub use child::*;
pub use foreign::*;
pub use lines::*;

/// Allocates as a task's poll would: a few boxes and a string each round.
pub fn some_allocations(n: usize) -> usize {
    let mut total = 0;
    for i in 0..n {
        let v = std::hint::black_box(vec![i as u8; 64 + i % 100]);
        total += v.len() + format!("{i}").len();
    }
    total
}

/// A multi-thread runtime with two workers and every driver on.
pub fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A [`two_worker_runtime`] on which `rdebug::init()` ran (in its context, so the runtime is
/// watched), then `settle` passed: the reporter has started and the workers are parked.
pub fn two_worker_runtime_with_rdebug(settle: std::time::Duration) -> tokio::runtime::Runtime {
    let rt = two_worker_runtime();
    rt.block_on(async {
        rdebug::init();
        tokio::time::sleep(settle).await;
    });
    rt
}

/// Fills the stderr pipe through a non-blocking description of our own, then closes it.
pub fn fill_stderr_pipe() {
    // SAFETY: a NUL-terminated path; the fd is ours and closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/fd/2".as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    assert!(fd >= 0, "cannot reopen stderr");
    let block = [b'#'; 4096];
    for chunk in [&block[..], &block[..1]] {
        // SAFETY: a valid buffer.
        while unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) } > 0 {}
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
}

/// Resident set size of process `pid`, bytes (0 if it cannot be read).
pub fn rss_of(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

/// The system's page size, bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).expect("sysconf(_SC_PAGESIZE)")
}

/// A path in the temporary directory for file `tag` of this test process (a child, whose pid
/// differs, is handed the path through its environment).
pub fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rdebug-{}-{tag}", std::process::id()))
}
