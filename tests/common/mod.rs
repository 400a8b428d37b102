//! Running a test's scenario in a child process with its own environment, as env_logger and dhat
//! do: the test binary re-runs itself with `--exact <test name>` and `RDEBUG_TEST_CHILD=<name>`.
//!
//! Process-wide behaviour (the `RDEBUG` variable, the global allocator's counters, the reporter
//! thread, stderr) is only tested this way, so tests never see each other's threads or output.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child to the name of the test it runs.
pub const CHILD_ENV: &str = "RDEBUG_TEST_CHILD";

/// True in the child process running test `name`: the test then runs its scenario.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(name)
}

/// What a child printed and how it ended.
#[derive(Debug)]
pub struct ChildOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ChildOutput {
    /// stderr lines starting with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// Panics with the child's output unless it exited successfully.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "child failed: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Re-runs this test binary for test `name` with `env` set (and `RDEBUG` removed unless `env`
/// sets it). Kills the child after `timeout`.
pub fn run_child(name: &str, env: &[(&str, &str)], timeout: Duration) -> ChildOutput {
    let mut cmd = child_command(name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    collect(cmd.spawn().expect("spawn test child"), timeout)
}

/// A command that re-runs this test binary for test `name` (with `RDEBUG` removed), stdin null,
/// stdout and stderr piped; the caller may change anything before spawning it.
pub fn child_command(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ENV, name)
        .env_remove("RDEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` (killing it after `timeout`) and collects whatever it printed on the pipes
/// it has.
pub fn collect(mut child: Child, timeout: Duration) -> ChildOutput {
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                let _ = p.read_to_end(&mut s);
                s
            })
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait(&mut child, timeout);
    let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        let bytes = h.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    ChildOutput {
        status,
        stdout: text(out),
        stderr: text(err),
    }
}

/// Waits for `child`, killing it after `timeout`.
pub fn wait(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().expect("wait for killed child");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Value of `key=<number>` in a line, e.g. `field(line, "idleworkers")`.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A multi-thread runtime with two workers and every driver on.
pub fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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

/// The text after `RESULT ` on the child's stdout (its scenario's figures for the parent).
pub fn result_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in\n{stdout}"))
}

/// The numbers of the `RESULT a b c ...` line.
pub fn result_numbers(stdout: &str) -> Vec<u64> {
    result_line(stdout)
        .split(' ')
        .map(|v| v.parse().expect("number"))
        .collect()
}

/// For a program whose global allocator is not `rdebug::Alloc`: starts rdebug in a two-worker
/// runtime, holds `bytes` (touched) for a while, and prints `MEM before|during|after key=value
/// ...` lines of `memstats()` read before, while held, and after freeing and
/// `free_os_memory()`.
pub fn hold_and_report_memstats(bytes: usize) {
    let rt = two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    std::thread::sleep(Duration::from_millis(200));
    let before = rdebug::memstats();
    let held = std::hint::black_box(vec![1u8; bytes]);
    std::thread::sleep(Duration::from_millis(300));
    let during = rdebug::memstats();
    drop(held);
    rdebug::free_os_memory();
    let after = rdebug::memstats();
    for (name, m) in [("before", &before), ("during", &during), ("after", &after)] {
        println!(
            "MEM {name} rss={} mallocs={} frees={} total_alloc={} heap_objects={} heap_alloc={} \
             heap_sys={} sys={} dirty={} num_gc={} num_forced_gc={}",
            m.rss,
            m.mallocs,
            m.frees,
            m.total_alloc,
            m.heap_objects,
            m.heap_alloc,
            m.heap_sys,
            m.sys,
            m.dirty,
            m.num_gc,
            m.num_forced_gc
        );
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// The `MEM <name> ...` line [`hold_and_report_memstats`] printed.
pub fn mem_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    let prefix = format!("MEM {name} ");
    stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{stdout}"))
}
