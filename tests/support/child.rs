//! Running a test's scenario in a child process with its own environment, as env_logger and dhat
//! do: the test binary re-runs itself with `--exact <test name>` and `RDEBUG_TEST_CHILD=<name>`.
//!
//! Process-wide behaviour (the `RDEBUG` variable, the global allocator's counters, the reporter
//! thread, stderr) is only tested this way, so tests never see each other's threads or output.
//!
//! A child test looks like this:
//!
//! ```ignore
//! #[test]
//! fn some_test() {
//!     let name = support::test_name!();
//!     if support::is_child(name) {
//!         // the scenario
//!         return;
//!     }
//!     let out = support::run_child(name, &[("RDEBUG", "schedtrace=50")], TIMEOUT);
//!     // assertions on `out`
//! }
//! ```
//!
//! A child whose `--exact` filter matched no test would run nothing and exit 0, so the parent
//! would check nothing: [`is_child`] prints a marker line on the child's stdout, and [`collect`]
//! (under [`run_child`]) panics if the marker is missing.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the child to the name of the test it runs.
pub const CHILD_ENV: &str = "RDEBUG_TEST_CHILD";

/// Printed on stdout (followed by a space and the test's name) by a child that runs its test.
pub const RAN_MARKER: &str = "rdebug-test-child ran";

/// No environment variables for [`run_child`] (only `RDEBUG` removed).
pub const NO_ENV: &[(&str, &str)] = &[];

/// The name libtest knows the calling test by, as `--exact` wants it: `test_fn` for a test at
/// the top of its file, `module::test_fn` for one inside a module.
///
/// `test_name!()` names the test function it is written in; `test_name!(path::to::test_fn)`
/// names another one.
macro_rules! test_name {
    () => {{
        fn f() {}
        $crate::support::child::test_path(
            ::std::any::type_name_of_val(&f)
                .strip_suffix("::f")
                .expect("a nested fn's type name ends in ::f"),
        )
    }};
    ($test:path) => {
        $crate::support::child::test_path(::std::any::type_name_of_val(&$test))
    };
}
pub(crate) use test_name;

/// A function's path without the crate name in front (`core_gc::a::b` → `a::b`).
pub fn test_path(type_name: &'static str) -> &'static str {
    let (_crate, path) = type_name
        .split_once("::")
        .unwrap_or_else(|| panic!("{type_name:?} has no crate prefix"));
    assert!(
        !path.contains(['{', '<']),
        "test_name!() used outside a plain test fn: {type_name}"
    );
    path
}

/// True in the child process running test `name`: the test then runs its scenario. The child
/// also says on stdout that it did ([`RAN_MARKER`]), for the parent to check.
pub fn is_child(name: &str) -> bool {
    let child = std::env::var(CHILD_ENV).as_deref() == Ok(name);
    if child {
        println!("{RAN_MARKER} {name}");
    }
    child
}

/// Panics unless `stdout` (a child's) holds the line [`is_child`] prints, i.e. unless the child
/// really ran its test.
pub fn assert_ran(stdout: &str) {
    assert!(
        stdout.lines().any(|l| l
            .strip_prefix(RAN_MARKER)
            .is_some_and(|n| n.starts_with(' '))),
        "the child ran no test (does --exact match the test's name?); stdout:\n{stdout}"
    );
}

/// What a child printed and how it ended.
#[derive(Debug)]
pub struct ChildOutput {
    pub status: ExitStatus,
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
/// sets it); values may be any bytes (`&str`, `String`, `OsStr`, …). Kills the child after
/// `timeout`; panics if the child ran no test.
pub fn run_child<V: AsRef<OsStr>>(name: &str, env: &[(&str, V)], timeout: Duration) -> ChildOutput {
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
/// it has. If its stdout was piped, panics unless the child ran its test ([`assert_ran`]).
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
    let stdout_piped = out.is_some();
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
    let output = ChildOutput {
        status,
        stdout: text(out),
        stderr: text(err),
    };
    if stdout_piped {
        assert_ran(&output.stdout);
    }
    output
}

/// Waits for `child`, killing it after `timeout`.
pub fn wait(child: &mut Child, timeout: Duration) -> ExitStatus {
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

/// Lines of `child`'s stdout, as they come, on a channel (the reader thread ends with the pipe).
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("child stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `lines` starting with `prefix`, with the prefix removed; the lines before
/// it are pushed to `seen`. Panics after `timeout`.
pub fn expect_line(
    lines: &mpsc::Receiver<String>,
    prefix: &str,
    timeout: Duration,
    seen: &mut Vec<String>,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                if let Some(rest) = l.strip_prefix(prefix) {
                    return rest.to_owned();
                }
                seen.push(l);
            }
            Err(e) => panic!("no line starting with {prefix:?} from the child: {e}"),
        }
    }
}
