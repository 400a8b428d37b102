//! stderr that cannot take the trace: closed (`2>&-`), a pipe whose reader has gone (before the
//! start or during the run, with `SIGPIPE` restored to its default action, as a C program or a
//! Rust one built with `-Zon-broken-pipe=kill` has it), and a pipe that nobody reads (full from
//! the start).
//!
//! In each case a child runs a real axum server with a trace at the highest frequency
//! (`schedtrace=1,scheddetail=1,gctrace=2,gcpoll=1`, plus a bad item so a warning is written
//! too), every request reads `memstats()` and `sched_stats()`, and the parent drives it with 8
//! keep-alive connections. The parent asserts that every request was answered correctly, that
//! no thread but the reporter was ever seen blocked writing to stderr (sampled from
//! `/proc/<pid>/task/*/syscall`), that the reporter kept ticking, and that the child's live heap
//! stayed flat.

mod support;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::{child_command, expect_line, is_child, load, num, server, stdout_lines, wait};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TRACE: &str = "schedtrace=1,scheddetail=1,gctrace=2,gcpoll=1,bogus=1";
const LOAD_FOR: Duration = Duration::from_millis(2500);

/// The child: an axum server with the trace on, reporting on stdout.
#[test]
fn stderr_server_child() {
    if !is_child(support::test_name!()) {
        return;
    }
    let scenario = std::env::var("HOSTILE_STDERR").unwrap_or_default();
    if scenario.starts_with("gone") {
        // SAFETY: restoring a default signal disposition before any thread of ours exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if scenario == "full" {
        support::fill_stderr_pipe();
    }
    let started = Instant::now();
    std::thread::spawn(move || {
        loop {
            let m = rdebug::memstats();
            println!(
                "MEM t={} live={} rss={}",
                started.elapsed().as_millis(),
                rdebug::alloc_counters().live_bytes,
                m.rss
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let rt = support::two_worker_runtime();
    rt.block_on(async {
        let t = Instant::now();
        rdebug::init();
        println!("INIT us={}", t.elapsed().as_micros());
        server::serve(|addr| println!("LISTEN {addr}")).await;
    });
    let r = rdebug::reporter().expect("the trace is on");
    let s = r.stats();
    println!(
        "STATS ticks={} lines={} dropped={} ms={}",
        s.ticks,
        s.lines,
        s.dropped,
        started.elapsed().as_millis()
    );
}

/// What a run showed.
struct Run {
    scenario: &'static str,
    load: load::Summary,
    offenders: Vec<String>,
    samples: u64,
    stdout: Vec<String>,
    status: std::process::ExitStatus,
    fd2: String,
}

impl Run {
    fn line(&self, prefix: &str) -> &str {
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line from the child\n{self}"))
    }

    /// (t ms, live bytes, rss bytes) samples.
    fn mem(&self) -> Vec<(u64, u64, u64)> {
        self.stdout
            .iter()
            .filter(|l| l.starts_with("MEM "))
            .map(|l| (num(l, "t"), num(l, "live"), num(l, "rss")))
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scenario {}: {} (fd 2 = {}), load {:?}, {} /proc samples, offenders {:?}",
            self.scenario, self.status, self.fd2, self.load, self.samples, self.offenders
        )?;
        for l in self.stdout.iter().filter(|l| !l.starts_with("MEM ")) {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// Syscalls that write: write, pwrite64, writev (x86_64 and aarch64 numbers).
fn is_write_syscall(nr: u64) -> bool {
    if cfg!(target_arch = "x86_64") {
        matches!(nr, 1 | 18 | 20)
    } else if cfg!(target_arch = "aarch64") {
        matches!(nr, 64 | 66 | 68)
    } else {
        false
    }
}

/// Threads of `pid` other than `rdebug` that are inside a write to what fd 2 is (the same pipe).
fn blocked_on_stderr(pid: u32, target: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let Ok(sc) = std::fs::read_to_string(path.join("syscall")) else {
            continue;
        };
        let mut f = sc.split_whitespace();
        let Some(nr) = f.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue; // "running"
        };
        if !is_write_syscall(nr) {
            continue;
        }
        let Some(fd) = f
            .next()
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if link == target && comm.trim_end() != "rdebug" {
            found.push(format!("{} in syscall {nr} on fd {fd}", comm.trim_end()));
        }
    }
    found
}

fn run(scenario: &'static str) -> Run {
    let mut cmd = child_command(support::test_name!(stderr_server_child));
    cmd.env("RDEBUG", TRACE).env("HOSTILE_STDERR", scenario);
    match scenario {
        "closed" => {
            cmd.stderr(Stdio::inherit());
            // SAFETY: close(2) is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(2);
                    Ok(())
                })
            };
        }
        "gone-before" => {
            let mut fds = [0; 2];
            // SAFETY: a two-int array for pipe2.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both fds were just created and are owned here.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            drop(read);
            cmd.stderr(Stdio::from(write));
        }
        _ => {}
    }
    let mut child = cmd.spawn().expect("spawn child");
    let pid = child.id();
    let lines = stdout_lines(&mut child);
    let mut stderr = child.stderr.take();
    if scenario == "gone" {
        // Read until the first SCHED line (rdebug has opened the pipe and written to it), then
        // go away.
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(stderr.take().expect("piped stderr"));
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !line.starts_with("SCHED ") && Instant::now() < deadline {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
        }
        assert!(
            line.starts_with("SCHED "),
            "no SCHED line before the reader left"
        );
        drop(r);
    }
    let mut stdout = Vec::new();
    let addr: SocketAddr = expect_line(&lines, "LISTEN ", Duration::from_secs(60), &mut stdout)
        .parse()
        .expect("address");
    let fd2 = std::fs::read_link(format!("/proc/{pid}/fd/2"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"));

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, target) = (stop.clone(), fd2.clone());
        std::thread::spawn(move || {
            let mut offenders = Vec::new();
            let mut samples = 0u64;
            while !stop.load(Relaxed) {
                offenders.extend(blocked_on_stderr(pid, &target));
                samples += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            (offenders, samples)
        })
    };
    let summary = load::run(addr, 8, LOAD_FOR);
    stop.store(true, Relaxed);
    let (offenders, samples) = sampler.join().expect("sampler");
    load::quit(addr);
    let status = wait(&mut child, Duration::from_secs(30));
    drop(stderr);
    stdout.extend(lines.iter());
    support::assert_ran(&stdout.join("\n"));
    Run {
        scenario,
        load: summary,
        offenders,
        samples,
        stdout,
        status,
        fd2,
    }
}

/// What every scenario must show; returns (lines written, lines dropped).
fn check(r: &Run) -> (u64, u64) {
    assert!(r.status.success(), "the service died\n{r}");
    assert!(r.load.sent >= 200, "too little load to mean anything\n{r}");
    assert_eq!(r.load.failed, 0, "requests failed\n{r}");
    assert_eq!(r.load.ok, r.load.sent, "requests unanswered\n{r}");
    assert!(
        r.load.max_ms < 2000,
        "a request waited {} ms\n{r}",
        r.load.max_ms
    );
    assert!(r.samples >= 100, "too few /proc samples\n{r}");
    assert!(
        r.offenders.is_empty(),
        "threads waited on the trace output\n{r}"
    );
    let init_us = num(&format!("us={}", r.line("INIT us=")), "us");
    assert!(init_us < 500_000, "init() took {init_us} µs\n{r}");
    let stats = r.line("STATS ").to_owned();
    let (ticks, ms) = (num(&stats, "ticks"), num(&stats, "ms"));
    // A reporter stuck on its output would stop ticking; at 1 ms periods it ticks hundreds of
    // times a second even on a loaded machine.
    assert!(
        ticks >= ms / 20,
        "the reporter ticked {ticks} times in {ms} ms\n{r}"
    );
    // Memory: from a third of the way into the run to the end, the live heap (exact, from
    // rdebug's counters) and the RSS stay flat. Dropped lines must not be kept anywhere.
    let mem = r.mem();
    let last = *mem.last().expect("memory samples");
    let warm = mem
        .iter()
        .find(|s| s.0 >= last.0 / 3)
        .copied()
        .expect("warm sample");
    assert!(
        last.1 < warm.1 + (1 << 20),
        "live heap grew from {} to {} bytes\n{r}",
        warm.1,
        last.1
    );
    assert!(
        last.2 < warm.2 + (16 << 20),
        "rss grew from {} to {} bytes\n{r}",
        warm.2,
        last.2
    );
    eprintln!(
        "{}: {} requests, max {} ms, {} ticks in {} ms, live {} -> {} B, rss {} -> {} MiB, {stats}",
        r.scenario,
        r.load.ok,
        r.load.max_ms,
        ticks,
        ms,
        warm.1,
        last.1,
        warm.2 >> 20,
        last.2 >> 20
    );
    (num(&stats, "lines"), num(&stats, "dropped"))
}

#[test]
fn stderr_closed() {
    let r = run("closed");
    let (lines, _) = check(&r);
    // A Rust program's std reopens a closed fd 2 on /dev/null before main: the lines go there.
    assert_eq!(r.fd2, "/dev/null", "{r}");
    assert!(lines >= 100, "{r}");
}

#[test]
fn stderr_reader_gone_during_the_run_with_default_sigpipe() {
    let r = run("gone");
    let (lines, dropped) = check(&r);
    assert!(lines >= 1, "{r}");
    assert_eq!(
        dropped, 0,
        "a pipe without a reader is an end, not a full pipe\n{r}"
    );
}

#[test]
fn stderr_reader_gone_before_the_start_with_default_sigpipe() {
    let r = run("gone-before");
    let (lines, dropped) = check(&r);
    assert_eq!((lines, dropped), (0, 0), "{r}");
}

#[test]
fn stderr_pipe_nobody_reads() {
    let r = run("full");
    let (lines, dropped) = check(&r);
    assert_eq!(lines, 0, "the pipe was full from the start\n{r}");
    assert!(dropped >= 100, "the full pipe was not hit\n{r}");
}

/// The program points fd 2 elsewhere while the trace runs, as a daemon does: rdebug follows fd 2.
/// The old pipe's reader sees its end while the program still runs (rdebug closed its own
/// description of it), and the trace goes on in the new file.
#[test]
fn a_redirected_stderr_is_followed() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() }); // RDEBUG=schedtrace=20
        std::thread::sleep(Duration::from_millis(200));
        let path = std::env::var_os("REDIRECT_TO").expect("REDIRECT_TO");
        let file = std::fs::File::create(path).expect("create");
        // SAFETY: both fds are open; fd 2 is replaced atomically.
        assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), 2) }, 2);
        drop(file);
        println!("REDIRECTED");
        support::http_client::serve_commands(|_| {}); // until the parent closes stdin
        drop(rt);
        return;
    }
    let file = support::temp_path("redirected-stderr");
    let _ = std::fs::remove_file(&file);
    let mut cmd = child_command(name);
    cmd.env("RDEBUG", "schedtrace=20")
        .env("REDIRECT_TO", &file)
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take();
    let mut err = child.stderr.take().expect("stderr");
    let (eof_tx, eof_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut before = Vec::new();
        let _ = err.read_to_end(&mut before);
        let _ = eof_tx.send(before);
    });
    let lines = stdout_lines(&mut child);
    let mut seen = Vec::new();
    expect_line(&lines, "REDIRECTED", Duration::from_secs(20), &mut seen);
    let before = eof_rx.recv_timeout(Duration::from_secs(20));
    let sched_lines = |text: &str| text.lines().filter(|l| l.starts_with("SCHED ")).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sched_lines(&std::fs::read_to_string(&file).unwrap_or_default()) < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(s) = stdin.as_mut() {
        let _ = writeln!(s, "bye");
    }
    drop(stdin);
    let status = wait(&mut child, Duration::from_secs(20));
    let after = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let before = before.expect("the old stderr pipe stayed open while the program ran");
    assert!(status.success(), "{status}");
    assert!(
        String::from_utf8_lossy(&before).contains("SCHED "),
        "no trace before the redirect"
    );
    assert!(
        sched_lines(&after) >= 2,
        "the trace did not follow fd 2:\n{after}"
    );
}
