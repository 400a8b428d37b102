//! Shared objects that try to hurt the host through what rdebug reads from them: crafted debug
//! info, and files replaced on disk after they were loaded. Each object is built in the test
//! with `gcc`, loaded with `dlopen` in a child process, and named by a real profile.
#![cfg(all(
    feature = "pprof",
    feature = "http",
    target_os = "linux",
    target_arch = "x86_64"
))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use support::pprof::{top, total};
use support::shared_object as so;
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(120);

/// `go tool pprof -comments file`: the profile's comments.
fn comments(file: &std::path::Path) -> String {
    let out = std::process::Command::new("go")
        .args(["tool", "pprof", "-comments"])
        .arg(file)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof -comments");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Spins in `f` (a spin function of a test object) on its own thread until `stop`.
fn spin_in(
    f: unsafe extern "C" fn(u64) -> u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(SeqCst) {
            // SAFETY: the test object's spin function takes a count and returns.
            std::hint::black_box(unsafe { f(1_000_000) });
        }
    })
}

/// A `.so` whose `.debug_info` nests 20,000 `DW_TAG_inlined_subroutine` entries (about 420 KB;
/// `addr2line` parses them recursively), loaded with `dlopen`, and a CPU profile through the
/// debug server while a thread spins in its function: the process survives (before, the
/// blocking-pool thread's stack overflowed: rc 134), the profile is served, names the function
/// from the symbol table in at least half the samples, and a comment says why its inlined
/// frames are missing.
#[test]
fn deeply_nested_debug_info_neither_crashes_nor_hangs_the_host() {
    let name = support::test_name!();
    let pb = support::temp_path("deep.pb.gz");
    let lib = support::temp_path("deep.so");
    if is_child(name) {
        so::build(
            "deep.s",
            &so::deeply_inlined_asm("deep_spin", 20_000),
            &lib,
            &[],
        );
        let h = so::open(&lib);
        // SAFETY: `deep_spin(n)` counts `n` down and returns.
        let f: unsafe extern "C" fn(u64) -> u64 =
            unsafe { std::mem::transmute(so::symbol(h, "deep_spin")) };
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = spin_in(f, stop.clone());
        let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let t0 = Instant::now();
        let a = support::http_client::get_within(
            server.local_addr(),
            "/debug/pprof/profile?seconds=1&hz=200",
            &[],
            Duration::from_secs(60),
        );
        println!("RESULT ms {}", t0.elapsed().as_millis());
        stop.store(true, SeqCst);
        spinner.join().unwrap();
        let a = a.expect("an answer");
        println!("RESULT status {}", a.status);
        std::fs::write(std::env::var("PB").unwrap(), &a.body).unwrap();
        server.stop();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    let _ = std::fs::remove_file(&lib);
    out.assert_success();
    let r = |k| support::result_value::<u64>(&out.stdout, k);
    assert_eq!(r("status"), 200);
    assert!(r("ms") < 20_000, "the profile took {} ms", r("ms"));
    let t = top(&pb, &[]);
    let spin = t.row("deep_spin").map_or(0.0, |r| r.cum);
    assert!(spin >= 0.5 * total(&t), "deep_spin {spin}:\n{}", t.text);
    let c = comments(&pb);
    let _ = std::fs::remove_file(&pb);
    assert!(
        c.contains("deep.so") && c.contains("nest"),
        "comments:\n{c}"
    );
}
