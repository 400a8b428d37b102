//! `SIGPROF` after rdebug's sampler stopped must not kill the host: `SIGPROF`'s default action
//! terminates the process ("Profiling timer expired"), and a signal of a deleted timer can still
//! be queued, or pending on a thread that blocked `SIGPROF` for a while (tikv/pprof-rs#288,
//! tikv#9217). Each test sends the signals itself, so the outcome does not depend on timing.
#![cfg(all(feature = "pprof", target_os = "linux"))]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::burn::burn_a;
use support::pprof::top;
use support::{is_child, result_line, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);
/// Threads that send themselves `SIGPROF`.
const THREADS: usize = 4;

/// Sends `SIGPROF` to thread `tid` of this process.
fn sigprof_to(tid: libc::pid_t) {
    // SAFETY: plain syscalls; a thread of ours.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            tid,
            libc::SIGPROF as libc::c_long,
        )
    };
}

fn gettid() -> libc::pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() }
}

/// Blocks (`true`) or unblocks `SIGPROF` on the calling thread.
fn block_sigprof(block: bool) {
    // SAFETY: a valid, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPROF);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// A CPU profile ends; then every thread, one that blocked `SIGPROF` through the profile among
/// them, gets `SIGPROF` while threads allocate: the process lives on.
#[test]
fn sigprof_after_a_profile_ends_does_not_kill_the_process() {
    let name = support::test_name!();
    if is_child(name) {
        // A thread that burns CPU with SIGPROF blocked: its timer's signals stay pending.
        let profiled = Arc::new(Barrier::new(2));
        let p = profiled.clone();
        let blocker = std::thread::spawn(move || {
            block_sigprof(true);
            p.wait();
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                std::hint::black_box(burn_a(10_000));
            }
            p.wait(); // the profile has ended
            sigprof_to(gettid());
            block_sigprof(false); // anything pending is delivered now
            std::hint::black_box(vec![1u8; 100]).len()
        });
        let p = profiled.clone();
        let profiler = std::thread::spawn(move || {
            p.wait();
            let profile = rdebug::profile::cpu(Duration::from_millis(200), 1000);
            p.wait();
            profile.is_ok()
        });
        let profiled = profiler.join().expect("profiler");
        assert_eq!(blocker.join().expect("blocker"), 100);
        let start = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut kept = 0;
                    for i in 0..50 {
                        sigprof_to(gettid());
                        kept += std::hint::black_box(vec![0u8; 64 + i]).len();
                        std::hint::black_box(burn_a(1_000));
                    }
                    kept
                })
            })
            .collect();
        // SAFETY: the whole process, once.
        unsafe { libc::kill(libc::getpid(), libc::SIGPROF) };
        for t in threads {
            t.join().expect("signalled thread");
        }
        println!("RESULT survived {profiled}");
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    assert_eq!(result_line(&out.stdout), "survived true");
}

/// Thread ids of the threads still running when the program exits.
static BUSY_TIDS: [AtomicI32; THREADS] = [const { AtomicI32::new(0) }; THREADS];
static STOP_BUSY: AtomicBool = AtomicBool::new(false);

/// Registered before `rdebug::init`, so it runs after rdebug's exit handler (which ends the
/// whole-run profile): `SIGPROF` to every running thread and to this one.
extern "C" fn after_rdebug_at_exit() {
    for t in &BUSY_TIDS {
        let tid = t.load(SeqCst);
        if tid != 0 {
            sigprof_to(tid);
        }
    }
    sigprof_to(gettid());
    std::thread::sleep(Duration::from_millis(50));
}

/// `RDEBUG=cpuprofile=FILE`: the profile is written at exit while other threads still run and
/// allocate, and the process ends with its own exit code, whatever `SIGPROF` comes after.
#[test]
fn a_whole_run_profile_ends_with_the_programs_own_exit_code() {
    let name = support::test_name!();
    let pb = support::temp_path("sigprof-exit.pb.gz");
    if is_child(name) {
        // SAFETY: a plain extern "C" function.
        assert_eq!(unsafe { libc::atexit(after_rdebug_at_exit) }, 0);
        rdebug::init();
        for slot in &BUSY_TIDS {
            std::thread::spawn(move || {
                slot.store(gettid(), SeqCst);
                let mut n = 0u64;
                while !STOP_BUSY.load(SeqCst) {
                    n = n.wrapping_add(std::hint::black_box(vec![1u8; 256]).len() as u64);
                    n = n.wrapping_add(burn_a(2_000));
                }
                n
            });
        }
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            std::hint::black_box(burn_a(100_000));
        }
        std::process::exit(7); // the threads above still run
    }
    let _ = std::fs::remove_file(&pb);
    let env = format!("cpuprofile={}", pb.display());
    let out = run_child(name, &[("RDEBUG", env.as_str())], TIMEOUT);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}\n--- stderr\n{}",
        out.status,
        out.stderr
    );
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    assert!(t.row("burn_a").is_some(), "burn_a missing:\n{}", t.text);
}

/// Timer signals the program's own handler received.
static FOREIGN_TIMER_SIGNALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn foreign_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    if !info.is_null() && unsafe { (*info).si_code } == libc::SI_TIMER {
        FOREIGN_TIMER_SIGNALS.fetch_add(1, SeqCst);
    }
}

/// The allocator-CPU sampler runs (`memstats()` started it); then the program installs a
/// `SIGPROF` handler of its own (another profiler): after rdebug's next check, none of rdebug's
/// timer signals reach that handler while threads burn CPU and allocate.
#[test]
fn a_foreign_sigprof_handler_gets_none_of_rdebugs_signals() {
    let name = support::test_name!();
    if is_child(name) {
        let _ = rdebug::memstats(); // starts the sampler
        let burn = |ms: u64| {
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                std::hint::black_box(vec![0u8; 128]);
                std::hint::black_box(burn_a(10_000));
            }
        };
        burn(100);
        let before = rdebug::alloc_counters().alloc_cpu_ns;
        // SAFETY: a valid sigaction with an SA_SIGINFO handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = foreign_handler as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGPROF, &sa, std::ptr::null_mut()), 0);
        }
        let _ = rdebug::memstats(); // rdebug's check
        let at_check = FOREIGN_TIMER_SIGNALS.load(SeqCst);
        let threads: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || burn(400)))
            .collect();
        burn(400);
        for t in threads {
            t.join().expect("burner");
        }
        let after = FOREIGN_TIMER_SIGNALS.load(SeqCst) - at_check;
        let cpu_figure_moved = rdebug::alloc_counters().alloc_cpu_ns != before;
        println!("RESULT {after} {}", u8::from(cpu_figure_moved));
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    assert_eq!(
        result_line(&out.stdout),
        "0 0",
        "timer signals in the foreign handler, allocator figure moved:\n{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("SIGPROF has a handler of the program's own now"),
        "{}",
        out.stderr
    );
}

/// Set to stop the raw thread of [`a_thread_started_during_a_profile_that_never_allocates_is_sampled`].
static RAW_STOP: AtomicBool = AtomicBool::new(false);

/// A thread started with `pthread_create` directly, so nothing of Rust's allocates on it: it
/// burns CPU in `burn_b` until told to stop, and never calls the allocator.
extern "C" fn raw_burner(_: *mut libc::c_void) -> *mut libc::c_void {
    while !RAW_STOP.load(SeqCst) {
        std::hint::black_box(support::burn::burn_b(100_000));
    }
    std::ptr::null_mut()
}

/// A thread that starts after the profile did and never allocates through `Alloc` is found at
/// a drain and sampled: its function carries most of the profile.
#[test]
fn a_thread_started_during_a_profile_that_never_allocates_is_sampled() {
    let name = support::test_name!();
    let pb = support::temp_path("raw-thread.pb.gz");
    if is_child(name) {
        let profiler = std::thread::spawn(|| rdebug::profile::cpu(Duration::from_secs(2), 200));
        std::thread::sleep(Duration::from_millis(300));
        let mut thread: libc::pthread_t = 0;
        // SAFETY: a valid function and null attributes and argument.
        let rc = unsafe {
            libc::pthread_create(
                &mut thread,
                std::ptr::null(),
                raw_burner,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0);
        let profile = profiler.join().expect("profiler").expect("profile");
        RAW_STOP.store(true, SeqCst);
        // SAFETY: the thread created above, joined once.
        unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        let out = std::env::var_os("RDEBUG_TEST_OUT").expect("RDEBUG_TEST_OUT");
        std::fs::write(out, profile.pprof_gz()).expect("write profile");
        return;
    }
    let _ = std::fs::remove_file(&pb);
    let out = run_child(name, &[("RDEBUG_TEST_OUT", pb.as_os_str())], TIMEOUT);
    out.assert_success();
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    // The raw thread burns for about 1.7 s of the 2 s profile (less CPU on a loaded machine):
    // it has samples (4 at least, 20 ms at 200 Hz; none without a timer), most of the profile's.
    let b = t.row("burn_b").map_or(0.0, |r| r.cum);
    assert!(
        b >= 0.02e9 && b >= 0.5 * support::pprof::total(&t),
        "burn_b (the raw thread) {b} of {}:\n{}",
        support::pprof::total(&t),
        t.text
    );
}

/// Timers of this process whose target thread is gone (`notify: signal/tid.N` in
/// `/proc/self/timers` with no `/proc/self/task/N`).
fn timers_of_dead_threads() -> usize {
    let text = std::fs::read_to_string("/proc/self/timers").expect("/proc/self/timers");
    text.lines()
        .filter_map(|l| l.strip_prefix("notify: signal/tid."))
        .filter(|tid| !Path::new(&format!("/proc/self/task/{tid}")).exists())
        .count()
}

/// Profiles start while threads that allocate start and exit all the time: no timer is left
/// for a thread that is gone (its slot's next owner would never be sampled), checked while each
/// profile runs, after its drains have dropped the timers of exited threads without a slot.
#[test]
fn profiles_starting_among_exiting_threads_leave_no_timer_behind() {
    let name = support::test_name!();
    if is_child(name) {
        let mut stale = Vec::new();
        for _ in 0..5 {
            let stop = Arc::new(AtomicBool::new(false));
            let churn = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        let ts: Vec<_> = (0..4)
                            .map(|i| std::thread::spawn(move || std::hint::black_box(vec![i; 64])))
                            .collect();
                        for t in ts {
                            let _ = t.join();
                        }
                    }
                })
            };
            std::thread::sleep(Duration::from_millis(20));
            let profile =
                std::thread::spawn(|| rdebug::profile::cpu(Duration::from_millis(1000), 100));
            std::thread::sleep(Duration::from_millis(30));
            stop.store(true, SeqCst);
            churn.join().expect("churn");
            // Drains look for exited threads every 250 ms and drop their timers.
            std::thread::sleep(Duration::from_millis(600));
            stale.push(timers_of_dead_threads());
            profile.join().expect("profile").expect("profile ran");
        }
        println!("RESULT {}", stale.iter().sum::<usize>());
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    assert_eq!(result_line(&out.stdout), "0", "{}", out.stdout);
}

/// rdebug's `SIGPROF` timers in process `pid` (`signal: 27/...` entries of its
/// `/proc/PID/timers`).
fn sigprof_timers_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/timers"))
        .expect("/proc/PID/timers")
        .lines()
        .filter(|l| l.starts_with(&format!("signal: {}/", libc::SIGPROF)))
        .count()
}

/// The debug server's own work (its history tick, `/metrics` scrapes, `/debug/vars`) starts no
/// `SIGPROF` timer; a dashboard page asking for its data, which charts the allocator's CPU,
/// starts the sampler.
#[test]
fn the_debug_server_alone_starts_no_sampler() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        let held = std::hint::black_box(vec![1u8; 1 << 20]);
        support::http_client::serve_commands(|_| {});
        drop(held);
        return;
    }
    use support::http_client::{ServerChild, get};
    let c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    for path in ["/metrics", "/debug/vars", "/metrics", "/debug/pprof/"] {
        assert_eq!(get(c.addr, path).status, 200, "{path}");
    }
    // Two ticks of the dashboard's history (one a second, the first at once).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(sigprof_timers_of(c.pid()), 0, "timers without a page");
    assert_eq!(get(c.addr, "/debug/rdebug/history").status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sigprof_timers_of(c.pid()) == 0 {
        assert!(
            Instant::now() < deadline,
            "the dashboard's data started no sampler"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.finish().assert_success();
}

/// One BPF instruction (`struct sock_filter`).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// A BPF program (`struct sock_fprog`).
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Makes `process_vm_readv` fail with `EPERM` on every thread of this process, as a seccomp
/// sandbox (a container runtime's default profile, systemd's `SystemCallFilter=`) may.
fn refuse_process_vm_readv() {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let program = [
        // seccomp_data.nr is at offset 0.
        SockFilter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        SockFilter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_process_vm_readv as u32,
        },
        SockFilter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: RET_ERRNO | libc::EPERM as u32,
        },
        SockFilter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    let prog = SockFprog {
        len: program.len() as u16,
        filter: program.as_ptr(),
    };
    // SAFETY: a valid filter program that outlives the calls; TSYNC applies it to every thread.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::syscall(
            libc::SYS_seccomp,
            1, // SECCOMP_SET_MODE_FILTER
            1, // SECCOMP_FILTER_FLAG_TSYNC
            &prog as *const SockFprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

/// Calls `burn_a` from a frame of its own, so a walked stack shows it as the caller.
#[inline(never)]
fn caller_of_burn_a(until: Instant) -> u64 {
    let mut x = 0;
    while Instant::now() < until {
        x ^= std::hint::black_box(burn_a(100_000));
    }
    std::hint::black_box(x)
}

/// Under a seccomp filter that refuses `process_vm_readv`, a CPU profile still walks stacks (on
/// each thread's own stack), so `burn_a`'s caller is in it, and rdebug says once why stacks may be
/// shorter.
#[test]
fn stacks_are_walked_when_process_vm_readv_is_refused() {
    let name = support::test_name!();
    let pb = support::temp_path("seccomp.pb.gz");
    if is_child(name) {
        refuse_process_vm_readv();
        let until = Instant::now() + Duration::from_millis(1500);
        let burner = std::thread::spawn(move || caller_of_burn_a(until));
        let profile = rdebug::profile::cpu(Duration::from_secs(1), 200).expect("profile");
        burner.join().expect("burner");
        let out = std::env::var_os("RDEBUG_TEST_OUT").expect("RDEBUG_TEST_OUT");
        std::fs::write(out, profile.pprof_gz()).expect("write profile");
        return;
    }
    let _ = std::fs::remove_file(&pb);
    let out = run_child(name, &[("RDEBUG_TEST_OUT", pb.as_os_str())], TIMEOUT);
    out.assert_success();
    assert!(
        out.stderr.contains("process_vm_readv is refused"),
        "{}",
        out.stderr
    );
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    let burn = t.row("burn_a").map_or(0.0, |r| r.cum);
    let caller = t.row("caller_of_burn_a").map_or(0.0, |r| r.cum);
    assert!(
        burn > 0.0 && caller >= 0.9 * burn,
        "burn_a {burn}, its caller {caller}: stacks collapsed\n{}",
        t.text
    );
}

/// Bytes painted below the stack pointer by [`paint_stack`].
const PAINTED: usize = 256 << 10;
const PAINT: u8 = 0xA5;

/// Fills `PAINTED` bytes of this thread's stack with `PAINT` in a frame that then returns, so
/// they lie unused below the caller's frames; returns their range.
#[inline(never)]
fn paint_stack() -> (usize, usize) {
    let mut area = [0u8; PAINTED];
    for b in area.iter_mut() {
        // SAFETY: a byte of a local array.
        unsafe { std::ptr::write_volatile(b, PAINT) };
    }
    let low = std::hint::black_box(area.as_ptr()) as usize;
    (low, low + PAINTED)
}

/// The lowest address in `range` whose byte is no longer `PAINT`, read through the kernel (the
/// memory is below the stack pointer, no Rust object's).
fn lowest_touched(range: (usize, usize), copy: &mut [u8]) -> usize {
    let copy = &mut copy[..range.1 - range.0];
    let local = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    let remote = libc::iovec {
        iov_base: range.0 as *mut libc::c_void,
        iov_len: copy.len(),
    };
    // SAFETY: our own process; the kernel checks the remote range.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    assert_eq!(
        n,
        copy.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
    range.0 + copy.iter().position(|&b| b != PAINT).unwrap_or(copy.len())
}

/// The SIGPROF handler's own use of the interrupted thread's stack (kernel signal frame plus
/// the walk), measured: a thread paints 256 KiB below its frames, burns CPU in a shallow loop
/// while a 1000 Hz profile samples it, and the deepest byte changed, less what the same loop
/// changes without signals, tells. rdebug's docs state the figure (about 42 KiB in a debug
/// build, most of it framehop's on-stack DWARF unwind context); this test holds it to 64 KiB,
/// the room the handler makes sure a thread has left before it walks (`WALK_NEEDS`).
#[test]
fn the_handler_uses_a_bounded_part_of_the_stack() {
    let name = support::test_name!();
    if is_child(name) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                // Allocated before painting: nothing after it calls into the allocator.
                let mut copy = vec![0u8; PAINTED];
                let mut burn = |ms: u64| {
                    let until = Instant::now() + Duration::from_millis(ms);
                    let range = paint_stack();
                    while Instant::now() < until {
                        std::hint::black_box(burn_a(50_000));
                    }
                    range.1 - lowest_touched(range, &mut copy)
                };
                let alone = burn(200);
                let _ = ready_tx.send(());
                (alone, burn(1500))
            })
            .expect("spawn");
        ready_rx.recv().expect("worker ready");
        let profile = rdebug::profile::cpu(Duration::from_secs(1), 1000).expect("profile");
        let (alone, sampled) = worker.join().expect("worker");
        println!(
            "RESULT {} {} {}",
            sampled.saturating_sub(alone),
            alone,
            profile.samples()
        );
        return;
    }
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    let v = support::result_numbers(&out.stdout);
    let (used, alone, samples) = (v[0], v[1], v[2]);
    eprintln!(
        "stack used by the handler below the burning frames: {used} bytes ({alone} without \
         signals), {samples} samples"
    );
    assert!(samples >= 20, "too few samples to measure: {samples}");
    assert!(used > 0 && used <= 64 << 10, "{used} bytes");
}

/// Stack left (bytes) at which the deep thread of the test below burns: well under the ~42 KiB
/// the handler's walk needs, well over the kernel's signal frame.
const LEFT: usize = 20 << 10;

/// Set by the deep thread once it burns at depth; it burns until `DEEP_STOP`.
static DEEP_BURNING: AtomicBool = AtomicBool::new(false);
static DEEP_STOP: AtomicBool = AtomicBool::new(false);

/// Goes `LEFT` deep into the calling thread's stack and burns CPU there, allocating nothing,
/// until `DEEP_STOP`; returns the stack that was left.
fn burn_deep() -> usize {
    support::deep::at_depth(LEFT, |left| {
        DEEP_BURNING.store(true, SeqCst);
        while !DEEP_STOP.load(SeqCst) {
            std::hint::black_box(burn_a(20_000));
        }
        left
    })
}

/// The stack left on the thread of [`raw_deep_burner`], bytes.
static RAW_LEFT: AtomicUsize = AtomicUsize::new(0);

/// [`burn_deep`] on a thread started with `pthread_create`, which never allocates through
/// `Alloc` (so rdebug has no recorded bounds for it).
extern "C" fn raw_deep_burner(_: *mut libc::c_void) -> *mut libc::c_void {
    RAW_LEFT.store(burn_deep(), SeqCst);
    std::ptr::null_mut()
}

/// The scenario of the tests below: a thread with a 256 KiB stack burns CPU with `LEFT` of it
/// left while a 1000 Hz profile runs; prints what was left and what the profile says.
fn profile_a_deep_thread(raw: bool) {
    let join: Box<dyn FnOnce() -> usize> = if raw {
        // SAFETY: attributes initialised before use and destroyed once; a valid start routine.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_attr_init(&mut attr), 0);
            assert_eq!(libc::pthread_attr_setstacksize(&mut attr, 256 << 10), 0);
            let mut thread: libc::pthread_t = 0;
            let rc =
                libc::pthread_create(&mut thread, &attr, raw_deep_burner, std::ptr::null_mut());
            libc::pthread_attr_destroy(&mut attr);
            assert_eq!(rc, 0);
            Box::new(move || {
                libc::pthread_join(thread, std::ptr::null_mut());
                RAW_LEFT.load(SeqCst)
            })
        }
    } else {
        let deep = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                // Allocates now (this thread records its stack bounds), not at depth.
                std::hint::black_box(vec![0u8; 64]);
                burn_deep()
            })
            .expect("spawn");
        Box::new(move || deep.join().expect("deep thread"))
    };
    while !DEEP_BURNING.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let profile = rdebug::profile::cpu(Duration::from_secs(1), 1000).expect("profile");
    DEEP_STOP.store(true, SeqCst);
    let left = join();
    let svg = String::from_utf8(profile.flamegraph_svg()).expect("svg");
    println!(
        "RESULT {} {} {} {} {}",
        left,
        profile.samples(),
        profile.no_room_samples(),
        u8::from(svg.contains("too little stack left")),
        u8::from(svg.contains("burn_a")),
    );
}

/// What [`profile_a_deep_thread`] printed must say: the child lived, the deep thread's samples
/// were counted as not walked for want of room, and kept its function under the pseudo-frame.
fn check_deep_profile(name: &str) {
    let out = run_child(name, support::NO_ENV, TIMEOUT);
    out.assert_success();
    let v = support::result_numbers(&out.stdout);
    let (left, samples, no_room, named, leaf) = (v[0], v[1], v[2], v[3], v[4]);
    eprintln!("stack left {left} bytes; {samples} samples, {no_room} without room");
    assert!(left <= LEFT as u64 && left >= 8 << 10, "{left} bytes left");
    // The deep thread burnt the whole second (less on a loaded machine): most samples are its.
    assert!(no_room >= 20, "{no_room} of {samples} samples without room");
    assert!(
        no_room * 2 >= samples,
        "{no_room} of {samples} samples without room"
    );
    assert_eq!(
        (named, leaf),
        (1, 1),
        "the flame graph lacks the pseudo-frame or burn_a"
    );
}

/// A `SIGPROF` that lands on a thread with little stack left (here ~20 KiB of a 256 KiB stack,
/// less than the ~42 KiB a walk needs) does not walk: no overflow into the guard page, the
/// process lives, and each such sample is counted as one without room, keeping its CPU time
/// and its interrupted function (`burn_a`) under the pseudo-frame that says why. The thread
/// allocated before, so rdebug knows its stack's bounds.
#[test]
fn a_sample_on_a_thread_with_little_stack_left_does_not_overflow_it() {
    let name = support::test_name!();
    if is_child(name) {
        profile_a_deep_thread(false);
        return;
    }
    check_deep_profile(name);
}

/// As above, on a thread that never allocated through `Alloc` (started with `pthread_create`):
/// rdebug has no bounds recorded for it and asks the kernel whether the pages below the stack
/// pointer can be read.
#[test]
fn a_sample_on_a_thread_that_never_allocated_with_little_stack_left_does_not_overflow_it() {
    let name = support::test_name!();
    if is_child(name) {
        profile_a_deep_thread(true);
        return;
    }
    check_deep_profile(name);
}
