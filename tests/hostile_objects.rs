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

/// A shared object replaced on disk by rename after it was loaded (as package managers and
/// deploys do) is not read for the code loaded from the old file: a CPU profile of a thread
/// spinning in the old `spin_one` (what `dladdr` names at that address) never names the new
/// file's `spin_two`, which sits at the same offset, and a comment says the file was replaced
/// (before, the profile named `spin_two` for the old code).
#[test]
fn a_shared_object_replaced_by_rename_is_not_trusted() {
    let name = support::test_name!();
    let pb = support::temp_path("renamed.pb.gz");
    let (lib, new) = (
        support::temp_path("spin.so"),
        support::temp_path("spin-new.so"),
    );
    if is_child(name) {
        so::build("one.c", &so::spin_c("spin_one", 1, false), &lib, &[]);
        so::build("two.c", &so::spin_c("spin_two", 1, false), &new, &[]);
        let h = so::open(&lib);
        let f = so::symbol(h, "spin_one");
        println!(
            "RESULT truth_is_one {}",
            u8::from(so::loaded_at(f).1 == "spin_one")
        );
        std::fs::rename(&new, &lib).unwrap();
        // SAFETY: `spin_one(n)` counts `n` down and returns.
        let f: unsafe extern "C" fn(u64) -> u64 = unsafe { std::mem::transmute(f) };
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = spin_in(f, stop.clone());
        let p = rdebug::profile::cpu(Duration::from_secs(1), 200).expect("profile");
        stop.store(true, SeqCst);
        spinner.join().unwrap();
        println!("RESULT samples {}", p.samples());
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    let _ = std::fs::remove_file(&lib);
    out.assert_success();
    let r = |k| support::result_value::<u64>(&out.stdout, k);
    assert_eq!(r("truth_is_one"), 1);
    assert!(r("samples") >= 20, "{}", r("samples"));
    let t = top(&pb, &[]);
    assert!(
        t.row("spin_two").is_none(),
        "the new file named the old code:\n{}",
        t.text
    );
    let c = comments(&pb);
    let _ = std::fs::remove_file(&pb);
    assert!(
        c.contains("spin.so") && c.contains("replaced after it was loaded"),
        "comments:\n{c}"
    );
}

/// A shared object closed, rewritten in place (same path, same inode, a shorter file) and
/// opened again at the same address is noticed as another object: the profile after names the
/// new `spin_two` (what `dladdr` names there) in at least half its samples and never the old
/// `spin_one`, and the process lives (before, the unwinder and the file mapping of the first
/// load were kept for the same path and address, and read past the new file's end: SIGBUS).
#[test]
fn a_shared_object_rewritten_in_place_and_reloaded_is_read_anew() {
    let name = support::test_name!();
    let (pb1, pb2) = (
        support::temp_path("one.pb.gz"),
        support::temp_path("two.pb.gz"),
    );
    let (lib, new) = (
        support::temp_path("inplace.so"),
        support::temp_path("inplace-new.so"),
    );
    if is_child(name) {
        use std::os::unix::fs::MetadataExt;
        // The old file's unwind tables lie past 256 KiB; the new file is far shorter, but spans
        // as much memory (its 256 KiB are zeroed data), so the loader puts it where the old
        // one was.
        so::build(
            "one.c",
            &so::spin_c("spin_one", 256 << 10, false),
            &lib,
            &[],
        );
        // Its code starts elsewhere too, so no unwind rule cached for the old code serves it.
        let filler = "unsigned long filler(unsigned long n) { return n * n + n / 3 + (n >> 5); }\n";
        let two = format!("{filler}{}", so::spin_c("spin_two", 256 << 10, true));
        so::build("two.c", &two, &new, &[]);
        let profile = |f: unsafe extern "C" fn(u64) -> u64, to: &str| {
            let stop = Arc::new(AtomicBool::new(false));
            let spinner = spin_in(f, stop.clone());
            let p = rdebug::profile::cpu(Duration::from_millis(800), 200).expect("profile");
            stop.store(true, SeqCst);
            spinner.join().unwrap();
            std::fs::write(std::env::var(to).unwrap(), p.pprof_gz()).unwrap();
        };
        let h = so::open(&lib);
        let f = so::symbol(h, "spin_one");
        let (base1, _) = so::loaded_at(f);
        // SAFETY: `spin_one(n)` counts `n` down and returns.
        profile(
            unsafe {
                std::mem::transmute::<*mut std::ffi::c_void, unsafe extern "C" fn(u64) -> u64>(f)
            },
            "PB1",
        );
        let inode = std::fs::metadata(&lib).unwrap().ino();
        // SAFETY: a handle from dlopen, closed once; nothing of it is used after.
        assert_eq!(unsafe { libc::dlclose(h) }, 0);
        let c = std::ffi::CString::new(lib.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; RTLD_NOLOAD only asks whether it is loaded.
        let still = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        println!("RESULT unloaded {}", u8::from(still.is_null()));
        std::fs::copy(&new, &lib).unwrap();
        println!(
            "RESULT same_inode {}",
            u8::from(std::fs::metadata(&lib).unwrap().ino() == inode)
        );
        let h = so::open(&lib);
        let f = so::symbol(h, "spin_two");
        let (base2, truth) = so::loaded_at(f);
        println!("RESULT same_base {}", u8::from(base1 == base2));
        println!("base {base1:#x} then {base2:#x}");
        println!("base {base1:#x} then {base2:#x}");
        println!("RESULT truth_is_two {}", u8::from(truth == "spin_two"));
        // SAFETY: `spin_two(n)` counts `n` down and returns.
        profile(
            unsafe {
                std::mem::transmute::<*mut std::ffi::c_void, unsafe extern "C" fn(u64) -> u64>(f)
            },
            "PB2",
        );
        return;
    }
    let out = run_child(name, &[("PB1", &pb1), ("PB2", &pb2)], TIMEOUT);
    let _ = std::fs::remove_file(&lib);
    let _ = std::fs::remove_file(&new);
    out.assert_success();
    let r = |k| support::result_value::<u64>(&out.stdout, k);
    for k in ["unloaded", "same_inode", "same_base", "truth_is_two"] {
        assert_eq!(r(k), 1, "{k}: the scenario did not happen as meant");
    }
    let first = top(&pb1, &[]);
    let one = first.row("spin_one").map_or(0.0, |r| r.cum);
    assert!(one >= 0.5 * total(&first), "first load:\n{}", first.text);
    let t = top(&pb2, &[]);
    let two = t.row("spin_two").map_or(0.0, |r| r.cum);
    assert!(two >= 0.5 * total(&t), "spin_two {two}:\n{}", t.text);
    assert!(
        t.row("spin_one").is_none(),
        "the old object's names:\n{}",
        t.text
    );
    let _ = std::fs::remove_file(&pb1);
    let _ = std::fs::remove_file(&pb2);
}
