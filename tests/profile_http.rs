//! What Go users type, unchanged, against rdebug's debug server: `go tool pprof -seconds N
//! http://.../debug/pprof/profile` and `go tool pprof http://.../debug/pprof/heap`, on a child
//! that burns CPU in two named functions in a known ratio and holds a known amount of memory.
#![cfg(feature = "pprof")]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use support::burn::{burn_a, burn_b};
use support::http_client::{self, ServerChild};
use support::is_child;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Held by `hold_here`: 192 MiB in 1 MiB blocks, enough that heap sampling error stays small.
const HELD_MIB: usize = 192;

#[inline(never)]
fn hold_here() -> Vec<Vec<u8>> {
    (0..HELD_MIB).map(|i| vec![i as u8; 1 << 20]).collect()
}

fn child() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() }); // RDEBUG=http=127.0.0.1:0
    let held = hold_here();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // One thread, the two functions in turn: twice the iterations in burn_a, so 2/3 of the
        // thread's CPU is in burn_a whatever else the machine does.
        s.spawn(|| {
            while !stop.load(Relaxed) {
                std::hint::black_box(burn_a(2_000_000));
                std::hint::black_box(burn_b(1_000_000));
            }
        });
        support::http_client::serve_commands(|_| {});
        stop.store(true, Relaxed);
    });
    drop(held);
}

#[test]
fn go_tool_pprof_reads_profiles_from_the_debug_server() {
    let name = support::test_name!();
    if is_child(name) {
        child();
        return;
    }
    let server = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let addr = server.addr;
    let url = |path: &str| format!("http://{addr}{path}");

    // CPU, as `go tool pprof -seconds 3 URL`; meanwhile a second profile is refused at once.
    let cpu = std::thread::scope(|s| {
        let profile_url = url("/debug/pprof/profile");
        let cpu = s.spawn(move || support::pprof::top(Path::new(&profile_url), &["-seconds", "3"]));
        std::thread::sleep(Duration::from_millis(1000));
        let second = http_client::get(addr, "/debug/pprof/profile?seconds=1");
        assert_eq!(second.status, 409, "{}", second.text());
        assert_eq!(second.header("x-go-pprof"), "1");
        cpu.join().expect("pprof")
    });
    // Cumulative time: in a debug build most of each loop's time is in the range iterator's
    // own (not inlined) functions, which count in the caller's `cum` but not in its `flat`.
    let cum = |f: &str| cpu.row(f).map_or(0.0, |r| r.cum);
    let (a, b) = (cum("burn_a"), cum("burn_b"));
    assert!(a + b > 0.0, "{}", cpu.text);
    let share = a / (a + b);
    assert!(
        (share - 2.0 / 3.0).abs() <= 0.1,
        "burn_a's share {share:.3}, expected 0.667:\n{}",
        cpu.text
    );

    // Heap, as `go tool pprof -sample_index=inuse_space URL`.
    let heap = support::pprof::top(
        Path::new(&url("/debug/pprof/heap")),
        &["-sample_index=inuse_space"],
    );
    let held = heap
        .rows
        .iter()
        .find(|r| r.name.contains("hold_here"))
        .map_or(0.0, |r| r.cum);
    let want = (HELD_MIB << 20) as f64;
    assert!(
        (held / want - 1.0).abs() <= 0.15,
        "hold_here holds {:.1} MiB in the profile, {HELD_MIB} MiB really:\n{}",
        held / f64::from(1 << 20),
        heap.text
    );

    // A flame graph of a one-second profile names the busy function.
    let svg = http_client::get(addr, "/debug/pprof/profile?seconds=1&format=svg");
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type"), "image/svg+xml");
    let text = svg.text();
    assert!(
        text.contains("<svg") && text.contains("burn_a"),
        "{text:.500}"
    );
    server.finish();
}
