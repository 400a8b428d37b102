//! CPU profiles against CPU time the test burns itself in named functions, read back with the
//! real `go tool pprof` (Debian: golang-go).
#![cfg(feature = "pprof")]

mod support;

use std::time::{Duration, Instant};

use support::burn::{burn_a, burn_b, cpu_ns};
use support::pprof::{top, total};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);

/// The children of this file's tests burn CPU on every core; they run one at a time.
///
/// On a machine with more busy threads than cores, Linux delivers a thread's CPU-timer signal
/// late, up to ~100 ms of its CPU (measured on 6.18 with a plain C program too), so a profile
/// gets fewer, heavier samples and its shares stray from the truth by more than the tolerance
/// here. What these tests check is the profile, so they do not overload the machine themselves.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// This thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The whole process's CPU time (user + system), ns.
fn process_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Burns `burn_a(2k)` then `burn_b(k)` until `until`, `k` drawn afresh each round (rounds of
/// one length could alias with the kernel's tick, at which CPU timers are checked); returns the
/// thread CPU ns spent in each.
fn burner(until: Instant) -> (u64, u64) {
    let (mut a, mut b) = (0, 0);
    let mut seed = thread_cpu_ns() | 1;
    while Instant::now() < until {
        // xorshift64: k in 50_000..150_000.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let k = 50_000 + seed % 100_000;
        let t0 = thread_cpu_ns();
        burn_a(2 * k);
        let t1 = thread_cpu_ns();
        burn_b(k);
        let t2 = thread_cpu_ns();
        a += t1 - t0;
        b += t2 - t1;
    }
    (a, b)
}

fn result(stdout: &str, key: &str) -> f64 {
    support::result_value(stdout, key)
}

/// Two threads burn CPU in `burn_a` and `burn_b` about 2:1 (the truth: their thread CPU time);
/// pprof shows `burn_a`'s share of the two within 0.1 of the truth, and the profile's total is
/// within 30% of the process's CPU time over the window. A second profile meanwhile is Busy.
#[test]
fn cpu_profile_shows_where_the_time_went() {
    let name = support::test_name!();
    let pb = support::temp_path("cpu.pb.gz");
    let svg = support::temp_path("cpu.svg");
    if is_child(name) {
        let until = Instant::now() + Duration::from_millis(2300);
        let burners: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || burner(until)))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let busy = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            rdebug::profile::cpu(Duration::from_millis(10), 100).err()
        });
        let c0 = process_cpu_ns();
        let p = rdebug::profile::cpu(Duration::from_secs(2), 200).expect("cpu profile");
        let c1 = process_cpu_ns();
        let (mut a, mut b) = (0, 0);
        for t in burners {
            let (x, y) = t.join().unwrap();
            a += x;
            b += y;
        }
        let second = busy.join().unwrap();
        println!(
            "RESULT busy {}",
            u8::from(second == Some(rdebug::profile::ProfileError::Busy))
        );
        println!("RESULT share_a {}", a as f64 / (a + b) as f64);
        println!("RESULT process_cpu_ns {}", c1 - c0);
        println!("RESULT lost {}", p.lost_samples());
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        std::fs::write(std::env::var("SVG").unwrap(), p.flamegraph_svg()).unwrap();
        return;
    }
    let out = {
        let _one = one_at_a_time();
        run_child(name, &[("PB", &pb), ("SVG", &svg)], TIMEOUT)
    };
    out.assert_success();
    assert_eq!(
        result(&out.stdout, "busy"),
        1.0,
        "a second profile meanwhile is Busy"
    );
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    let row = |f: &str| {
        t.row(f)
            .unwrap_or_else(|| panic!("{f} missing:\n{}", t.text))
            .cum // cum: in a debug build the loop's helpers are frames of their own
    };
    let (a, b) = (row("burn_a"), row("burn_b"));
    let share = a / (a + b);
    let truth = result(&out.stdout, "share_a");
    assert!(
        (share - truth).abs() <= 0.1,
        "burn_a's share: profile {share:.3}, thread CPU time {truth:.3}\n{}",
        t.text
    );
    let profiled = total(&t);
    let cpu = result(&out.stdout, "process_cpu_ns");
    assert!(
        (profiled - cpu).abs() <= 0.3 * cpu,
        "profile total {profiled} ns, process CPU {cpu} ns\n{}",
        t.text
    );
    assert!(
        t.header.iter().any(|l| l.starts_with("Duration: 2")),
        "duration_nanos: {:?}",
        t.header
    );
    let svg_text = std::fs::read_to_string(&svg).expect("svg");
    let _ = std::fs::remove_file(&svg);
    assert!(
        svg_text.starts_with("<?xml") && svg_text.contains("burn_a ("),
        "{svg_text:.500}"
    );
}

/// `RDEBUG=cpuprofile=FILE` profiles from init to normal exit.
#[test]
fn cpuprofile_is_written_at_exit() {
    let name = support::test_name!();
    let pb = support::temp_path("exit-cpu.pb.gz");
    if is_child(name) {
        rdebug::init();
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            burn_b(100_000);
        }
        return; // the test harness exits normally
    }
    let _ = std::fs::remove_file(&pb);
    let env = format!("cpuprofile={}", pb.display());
    let out = {
        let _one = one_at_a_time();
        run_child(name, &[("RDEBUG", env.as_str())], TIMEOUT)
    };
    out.assert_success();
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    let b = t
        .row("burn_b")
        .unwrap_or_else(|| panic!("burn_b missing:\n{}", t.text));
    assert!(b.cum >= 0.5 * total(&t), "{}", t.text);
}

/// Burns CPU inside libz's `crc32`, a library loaded after the first profile, until `until`.
#[inline(never)]
fn burn_in_libz(crc32: unsafe extern "C" fn(u64, *const u8, u32) -> u64, until: Instant) -> u64 {
    let buf = vec![7u8; 1 << 20];
    let mut x = 0;
    while Instant::now() < until {
        // SAFETY: a valid buffer of that length.
        x = unsafe { crc32(x, buf.as_ptr(), buf.len() as u32) };
    }
    std::hint::black_box(x)
}

/// A library loaded with `dlopen` after the first profile is unwound and mapped in the next:
/// the caller of its code is in the stacks, and its code lies under its own mapping.
#[test]
fn a_library_loaded_after_the_first_profile_is_unwound_in_the_next() {
    let name = support::test_name!();
    let pb = support::temp_path("dlopen-cpu.pb.gz");
    if is_child(name) {
        // The first profile builds the unwinder for the objects loaded then.
        let _ = rdebug::profile::cpu(Duration::from_millis(100), 100).expect("first profile");
        // SAFETY: a NUL-terminated name; the handle is kept for the rest of the process.
        let lib = unsafe { libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW) };
        assert!(!lib.is_null(), "dlopen libz.so.1");
        // SAFETY: a NUL-terminated name in a library we opened.
        let sym = unsafe { libc::dlsym(lib, c"crc32".as_ptr()) };
        assert!(!sym.is_null(), "dlsym crc32");
        // SAFETY: zlib's `uLong crc32(uLong crc, const Bytef *buf, uInt len)`.
        let crc32: unsafe extern "C" fn(u64, *const u8, u32) -> u64 =
            unsafe { std::mem::transmute(sym) };
        let until = Instant::now() + Duration::from_millis(1500);
        let t = std::thread::spawn(move || burn_in_libz(crc32, until));
        let p = rdebug::profile::cpu(Duration::from_secs(1), 200).expect("second profile");
        t.join().unwrap();
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = {
        let _one = one_at_a_time();
        run_child(name, &[("PB", &pb)], TIMEOUT)
    };
    out.assert_success();
    let t = top(&pb, &[]);
    let caller = t
        .row("burn_in_libz")
        .unwrap_or_else(|| panic!("burn_in_libz missing:\n{}", t.text));
    assert!(
        caller.cum >= 0.5 * total(&t),
        "libz's frames were not unwound to their caller:\n{}",
        t.text
    );
    let raw = std::process::Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(&pb)
        .output()
        .expect("go tool pprof -raw");
    let raw = String::from_utf8_lossy(&raw.stdout);
    let _ = std::fs::remove_file(&pb);
    assert!(
        raw.lines()
            .skip_while(|l| !l.starts_with("Mappings"))
            .any(|l| l.contains("libz.so")),
        "no libz mapping:\n{raw}"
    );
}

/// The CPU time `blocked_burner` burns with `SIGPROF` blocked, ns.
static BLOCKED_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A thread made with `pthread_create`, which never calls Rust's allocator (so rdebug finds it
/// only in `/proc/self/task`): waits 300 ms, burns ~400 ms of CPU with `SIGPROF` blocked, then
/// unblocks it. Its timer's expirations meanwhile reach it as one signal with an overrun.
extern "C" fn blocked_burner(_: *mut libc::c_void) -> *mut libc::c_void {
    let wait = libc::timespec {
        tv_sec: 0,
        tv_nsec: 300_000_000,
    };
    // SAFETY: plain libc calls on valid pointers; nothing here allocates.
    unsafe {
        libc::nanosleep(&wait, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPROF);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let t0 = thread_cpu_ns();
        while thread_cpu_ns() - t0 < 400_000_000 {
            std::hint::black_box(burn_a(10_000));
        }
        BLOCKED_NS.store(thread_cpu_ns() - t0, std::sync::atomic::Ordering::Relaxed);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    std::ptr::null_mut()
}

/// A sample that arrives late stands for every period it covers (the signal's `si_overrun`),
/// also on a thread that never allocated through rdebug's allocator: the profile shows the
/// ~400 ms `blocked_burner` burnt while its timer's signal waited, not one period of it.
#[test]
fn a_late_sample_counts_every_period_it_stands_for() {
    let name = support::test_name!();
    let pb = support::temp_path("late-cpu.pb.gz");
    if is_child(name) {
        let mut thread: libc::pthread_t = 0;
        // SAFETY: a valid start routine and out pointer; default attributes.
        let rc = unsafe {
            libc::pthread_create(
                &mut thread,
                std::ptr::null(),
                blocked_burner,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "pthread_create");
        let p = rdebug::profile::cpu(Duration::from_millis(1500), 100).expect("cpu profile");
        // SAFETY: the thread made above, joined once.
        unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        println!(
            "RESULT blocked_ns {}",
            BLOCKED_NS.load(std::sync::atomic::Ordering::Relaxed)
        );
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = {
        let _one = one_at_a_time();
        run_child(name, &[("PB", &pb)], TIMEOUT)
    };
    out.assert_success();
    let blocked = result(&out.stdout, "blocked_ns");
    assert!(blocked >= 400e6, "the burner burnt {blocked} ns");
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    let row = t
        .row("blocked_burner")
        .unwrap_or_else(|| panic!("blocked_burner missing:\n{}", t.text));
    assert!(
        row.cum >= 0.8 * blocked,
        "blocked_burner: {} ns in the profile, {blocked} ns burnt\n{}",
        row.cum,
        t.text
    );
}
