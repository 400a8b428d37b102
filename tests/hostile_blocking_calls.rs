//! rdebug never interrupts the host's system calls: a socket read with a timeout and a `poll(2)`
//! with a timeout, made by tokio workers inside their polls (as a synchronous client called from
//! a handler would), end by their timeouts under a block profile and under `stalltrace`, not
//! with `EINTR`; and the time they blocked shows in the block profile and in STALL lines.
//! (Calls with timeouts are not restarted after a signal handler, `SA_RESTART` or not: before,
//! the read failed with `Interrupted` after 21 ms under a block profile.)
#![cfg(feature = "pprof")]

mod support;

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::pprof::top;
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);

/// Reads a UDP socket nobody writes to, with a read timeout: (how long it took, whether it
/// ended as a timeout does: `WouldBlock` or `TimedOut`, not `Interrupted`).
#[inline(never)]
fn reads_with_a_timeout(timeout: Duration) -> (Instant, Instant, bool) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 16];
    let t0 = Instant::now();
    let r = s.recv(std::hint::black_box(&mut buf));
    let t1 = Instant::now();
    let timed_out =
        matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    (t0, t1, timed_out)
}

/// `poll(2)` on a pipe nobody writes to, with a timeout: (when it started and ended, whether it
/// returned 0, the timeout's answer, rather than -1 with `EINTR`).
#[inline(never)]
fn polls_with_a_timeout(timeout: Duration) -> (Instant, Instant, bool) {
    let mut fds = [0i32; 2];
    // SAFETY: a valid array of two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut p = libc::pollfd {
        fd: fds[0],
        events: libc::POLLIN,
        revents: 0,
    };
    let t0 = Instant::now();
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    let t1 = Instant::now();
    // SAFETY: our own fds.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    (t0, t1, rc == 0)
}

fn report(name: &str, (t0, t1, by_timeout): (Instant, Instant, bool)) -> (Instant, Instant) {
    println!("RESULT {name}_ms {}", (t1 - t0).as_millis());
    println!("RESULT {name}_by_timeout {}", u8::from(by_timeout));
    (t0, t1)
}

/// Time within `[a, b]` of the interval `(s, e)`.
fn overlap((s, e): (Instant, Instant), a: Instant, b: Instant) -> Duration {
    e.min(b).saturating_duration_since(s.max(a))
}

/// Panics unless the child's read ran its 3 s and its poll its 2 s, each ending by its timeout
/// (`report`'s RESULT lines).
fn assert_ended_by_their_timeouts(stdout: &str) {
    let r = |k| support::result_value::<f64>(stdout, k);
    assert_eq!(r("read_by_timeout"), 1.0, "the read ended by its timeout");
    assert!(r("read_ms") >= 2900.0, "read for {} ms", r("read_ms"));
    assert_eq!(r("poll_by_timeout"), 1.0, "poll returned 0");
    assert!(r("poll_ms") >= 1950.0, "polled for {} ms", r("poll_ms"));
}

/// Under a 4 s block profile, one worker reads a socket with a 3 s timeout and the other polls
/// with a 2 s timeout: both end by their timeouts (not `EINTR`), and the profile gives each
/// function its blocked time within 15% of the truth the child measured around each call.
#[test]
fn calls_with_timeouts_end_by_their_timeouts_under_a_block_profile() {
    let name = support::test_name!();
    let pb = support::temp_path("eintr-block.pb.gz");
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rdebug::watch(rt.handle());
        // Finds the workers' threads while they are free.
        let _ = rdebug::profile::block(Duration::from_millis(100), 100).expect("warm-up");
        let profile = std::thread::spawn(|| {
            let a = Instant::now();
            let p = rdebug::profile::block(Duration::from_secs(4), 100).expect("block profile");
            (a, p)
        });
        std::thread::sleep(Duration::from_millis(300));
        let read = rt.spawn(async { reads_with_a_timeout(Duration::from_secs(3)) });
        let poll = rt.spawn(async { polls_with_a_timeout(Duration::from_secs(2)) });
        let (read, poll) = rt.block_on(async { (read.await.unwrap(), poll.await.unwrap()) });
        let (a, p) = profile.join().unwrap();
        let b = a + p.duration();
        let read = report("read", read);
        let poll = report("poll", poll);
        println!("RESULT read_truth_ns {}", overlap(read, a, b).as_nanos());
        println!("RESULT poll_truth_ns {}", overlap(poll, a, b).as_nanos());
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let r = |k| support::result_value::<f64>(&out.stdout, k);
    assert_ended_by_their_timeouts(&out.stdout);
    let t = top(&pb, &[]);
    for (f, truth) in [
        ("reads_with_a_timeout", r("read_truth_ns")),
        ("polls_with_a_timeout", r("poll_truth_ns")),
    ] {
        let got = t.row(f).map_or(0.0, |row| row.cum);
        assert!(
            (got - truth).abs() <= 0.15 * truth,
            "{f}: delay {got} ns, blocked {truth} ns:\n{}",
            t.text
        );
    }
    let _ = std::fs::remove_file(&pb);
}

/// With `stalltrace=50`, the same two calls one after the other: both end by their timeouts,
/// and each gives one STALL line naming it, then a `STALL-END` line whose length is within 10%
/// of the time the call blocked.
#[test]
fn calls_with_timeouts_end_by_their_timeouts_under_stalltrace() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime_with_rdebug(Duration::from_millis(400));
        let read = rt
            .block_on(rt.spawn(async { reads_with_a_timeout(Duration::from_secs(3)) }))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let poll = rt
            .block_on(rt.spawn(async { polls_with_a_timeout(Duration::from_secs(2)) }))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        report("read", read);
        report("poll", poll);
        return;
    }
    let out = run_child(name, &[("RDEBUG", "stalltrace=50")], TIMEOUT);
    out.assert_success();
    let r = |k| support::result_value::<f64>(&out.stdout, k);
    assert_ended_by_their_timeouts(&out.stdout);
    let stalls = out.lines_starting("STALL ");
    assert_eq!(stalls.len(), 2, "one STALL line each:\n{}", out.stderr);
    support::assert_stalls_name(
        &out.stderr,
        &["reads_with_a_timeout", "polls_with_a_timeout"],
    );
    let ends = out.lines_starting("STALL-END ");
    assert_eq!(ends.len(), 2, "{}", out.stderr);
    for (end, truth) in ends.iter().zip([r("read_ms"), r("poll_ms")]) {
        let lasted: f64 = end
            .split_once("lasted=")
            .and_then(|(_, v)| v.strip_suffix("ms")?.parse().ok())
            .unwrap_or_else(|| panic!("no lasted= in {end:?}"));
        assert!(
            (lasted - truth).abs() <= 0.1 * truth,
            "{end}: blocked {truth} ms\n{}",
            out.stderr
        );
    }
}
