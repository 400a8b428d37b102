//! Heap samples carry `rdebug::labels` (not the task id), read back with the real `go tool
//! pprof` (`-tags`, `-tagfocus`, `-raw`). Apart from `profile_labels`, whose CPU test compares
//! shares of thread CPU time and is best run without these children allocating beside it.
#![cfg(feature = "pprof")]

mod support;

use std::process::Command;
use std::time::Duration;

use support::pprof::{raw, share_of, tags, top};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(90);

/// Heap held per label set, in blocks of [`BLOCK`] bytes.
const BLOCK: usize = 64 << 10;

/// One block, always from here: the labelled and unlabelled allocations share this stack, so
/// only their labels tell them apart.
#[inline(never)]
fn block() -> Vec<u8> {
    std::hint::black_box(vec![7u8; BLOCK])
}

/// Allocates and returns `mib` MiB in blocks, yielding now and then so that the tasks' polls
/// interleave on the workers.
async fn hold(mib: usize) -> Vec<Vec<u8>> {
    let n = (mib << 20) / BLOCK;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(block());
        if i % 16 == 15 {
            tokio::task::yield_now().await;
        }
    }
    v
}

/// Two labelled tasks allocate 48 MiB (`route=/a`) and 16 MiB (`route=/b`) in 64 KiB blocks
/// from the same function, an unlabelled task 32 MiB more from it; all held while `go tool
/// pprof` reads `/debug/pprof/heap` from the debug server. Sampling at 16 KiB (each block
/// sampled with probability 1 - e^-4 = 0.98), the sampling error of each amount is about 1%
/// (binomial: sqrt(0.018 / (0.98 n)) for n = 256 blocks), so the checks' 10% are far outside
/// the noise and far inside a wrong attribution:
/// - `-tags` gives /a and /b their 3:1 share of the labelled in-use bytes (0.75 ± 0.025);
/// - `-raw`: the samples of `block` with route=/a, /b and none hold 48, 16 and 32 MiB ± 10%
///   (the labels alone tell them apart: jemalloc keeps a bucket per label set); no heap sample
///   carries a `task_id` or any label other than `route`;
/// - `-tagfocus=route=/a -top`: `block` holds 48 MiB ± 10% under the focus.
#[test]
fn heap_samples_carry_labels() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() }); // RDEBUG=http=127.0.0.1:0,memprofilerate=16384
        let held = rt.block_on(async {
            let a = tokio::spawn(rdebug::labels(&[("route", "/a")], hold(48)));
            let b = tokio::spawn(rdebug::labels(&[("route", "/b")], hold(16)));
            let plain = tokio::spawn(hold(32));
            (a.await.unwrap(), b.await.unwrap(), plain.await.unwrap())
        });
        println!("READY");
        support::http_client::serve_commands(|_| {});
        drop(held);
        return;
    }
    let mut server = support::http_client::ServerChild::start(
        name,
        &[("RDEBUG", "http=127.0.0.1:0,memprofilerate=16384")],
    );
    server.wait_stdout("READY");
    let url = format!("http://{}/debug/pprof/heap", server.addr);
    let pb = support::temp_path("heap-labels.pb.gz");
    let get = Command::new("go")
        .args(["tool", "pprof", "-proto", "-output"])
        .arg(&pb)
        .arg(&url)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    assert!(get.status.success(), "{get:?}");
    server.finish();
    const MIB: f64 = (1 << 20) as f64;

    let t = tags(&pb, &["-sample_index=inuse_space", "-tagshow=route"]);
    let a = share_of(&t, "/a");
    let b = share_of(&t, "/b");
    let share = a / (a + b);
    assert!(
        (share - 0.75).abs() <= 0.025,
        "/a's share of the labelled heap {share:.3}, held 0.75:\n{t}"
    );

    let (types, samples) = raw(pb.to_str().expect("utf-8 path"));
    let inuse = types
        .iter()
        .position(|t| t.starts_with("inuse_space"))
        .unwrap_or_else(|| panic!("no inuse_space in {types:?}"));
    let mut held = std::collections::HashMap::<String, f64>::new();
    for s in &samples {
        for l in &s.labels {
            assert!(l.starts_with("route:"), "a heap sample with {l}: {s:?}");
        }
        if s.functions.iter().any(|f| f.ends_with("::block")) {
            let route = s.labels.first().cloned().unwrap_or_default();
            *held.entry(route).or_default() += s.values[inuse] as f64 / MIB;
        }
    }
    for (route, mib) in [("route:[/a]", 48.0), ("route:[/b]", 16.0), ("", 32.0)] {
        let got = held.get(route).copied().unwrap_or(0.0);
        assert!(
            (got / mib - 1.0).abs() <= 0.1,
            "{route:?}: {got:.1} MiB in the profile, {mib} MiB held; all: {held:?}"
        );
    }

    let focused = top(&pb, &["-sample_index=inuse_space", "-tagfocus=route=/a"]);
    let got = focused.row("block").map_or(0.0, |r| r.cum) / MIB;
    assert!(
        (got / 48.0 - 1.0).abs() <= 0.1,
        "block under route=/a: {got:.1} MiB, 48 held:\n{}",
        focused.text
    );
    let _ = std::fs::remove_file(&pb);
}

/// Polls `fut` once; it must be ready then.
fn poll_once<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("not ready"),
    }
}

/// Labelled allocations sampled on a thread with little stack left (80 KiB of 256 KiB, as
/// `profile_heap`'s test of the unlabelled case): the stack hook takes no stack for them but
/// still their labels, and the process lives; their 4 MiB show under `route=/deep`, in the
/// profile's one-frame "no stack" sample (pprof would leave out a sample with no frame).
#[test]
fn labelled_allocations_with_little_stack_left_keep_their_labels() {
    let name = support::test_name!();
    let pb = support::temp_path("heap-deep-labels.pb.gz");
    if is_child(name) {
        rdebug::profile::set_memprofilerate(4096).expect("heap sampling");
        let (_, held) = support::deep::on_a_small_thread(256 << 10, 80 << 10, || {
            poll_once(rdebug::labels(&[("route", "/deep")], async {
                (0..64)
                    .map(|_| vec![1u8; 64 << 10].into_boxed_slice())
                    .collect::<Vec<Box<[u8]>>>()
            }))
        });
        let p = rdebug::profile::heap().expect("heap profile");
        std::fs::write(
            std::env::var("PB").unwrap(),
            p.pprof_gz(rdebug::profile::HeapKind::Heap),
        )
        .unwrap();
        drop(std::hint::black_box(held));
        return;
    }
    run_child(name, &[("PB", &pb)], TIMEOUT).assert_success();
    let (types, samples) = raw(pb.to_str().expect("utf-8 path"));
    let inuse = types
        .iter()
        .position(|t| t.starts_with("inuse_space"))
        .unwrap_or_else(|| panic!("no inuse_space in {types:?}"));
    let deep: i64 = samples
        .iter()
        .filter(|s| s.labels.iter().any(|l| l == "route:[/deep]"))
        .map(|s| s.values[inuse])
        .sum();
    assert!(
        deep >= 4 << 20,
        "{deep} bytes under route=/deep: {samples:?}"
    );
    let _ = std::fs::remove_file(&pb);
}

/// Label sets [`labels_add_bounded_memory_to_heap_profiling`] makes, and stacks each allocates
/// from.
const SETS: usize = 1024;
const STACKS: usize = 32;
/// Bytes of each of its allocations (not a power of two: nothing else allocates exactly this).
const ODD_BLOCK: usize = 4000;
/// Frames of `alloc_at` under its shallowest stack: with the test's own frames below, the
/// stacks are 76 to 107 frames deep once the allocator's are trimmed (some 10 more as jemalloc
/// records them), near jemalloc's limit of 128 (`prof_bt_max`), where a record costs most.
const BASE_DEPTH: usize = 64;

/// Allocates and frees one block from a stack `depth` frames of itself deep: a distinct stack
/// per depth.
#[inline(never)]
fn alloc_at(depth: usize) {
    if depth == 0 {
        drop(std::hint::black_box(vec![1u8; ODD_BLOCK]));
    } else {
        alloc_at(depth - 1);
        std::hint::black_box(depth);
    }
}

/// jemalloc's `stats.metadata` now (after an `epoch` refresh), bytes.
fn jemalloc_metadata() -> usize {
    // SAFETY: mallctl reads and writes of the sizes jemalloc documents for these names.
    unsafe {
        let mut epoch: u64 = 1;
        let mut len = size_of::<u64>();
        let rc = tikv_jemalloc_sys::mallctl(
            c"epoch".as_ptr(),
            (&mut epoch as *mut u64).cast(),
            &mut len,
            (&mut epoch as *mut u64).cast(),
            size_of::<u64>(),
        );
        assert_eq!(rc, 0, "epoch");
        let mut v: usize = 0;
        let mut len = size_of::<usize>();
        let rc = tikv_jemalloc_sys::mallctl(
            c"stats.metadata".as_ptr(),
            (&mut v as *mut usize).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        );
        assert_eq!(rc, 0, "stats.metadata");
        v
    }
}

/// An app labels by user id: 1,024 label sets, each allocating (and freeing) from 32 stacks,
/// every allocation sampled (rate 1). jemalloc keeps a record per (stack, label set) for the
/// life of the process: 19.4 MiB of allocator metadata before the bound. Now:
/// - jemalloc's `stats.metadata` grows by at most 4 MiB over the run (measured against the
///   same stacks sampled unlabelled first);
/// - the counts still add up to the ground truth: in the heap profile, `alloc_at`'s samples
///   with a `user` label and without hold 32,768 + 32 allocations (exact at rate 1), and the
///   profile's comment counts the labelled ones that were refused their labels: 32,768 minus
///   those that kept them; at most 2,048 (stack, set, thread) keep them, and most of the table
///   is used (≥ 1,800);
/// - stderr has one warning naming the key, `user`;
/// - a CPU profile taken afterwards under a new label set still carries it (CPU samples keep
///   their labels).
#[test]
fn labels_add_bounded_memory_to_heap_profiling() {
    let name = support::test_name!();
    let pb = support::temp_path("heap-label-bound.pb.gz");
    let cpu_pb = support::temp_path("cpu-label-bound.pb.gz");
    if is_child(name) {
        assert_eq!(
            rdebug::profile::set_memprofilerate(1).expect("heap sampling"),
            1
        );
        for d in 0..STACKS {
            alloc_at(BASE_DEPTH + d);
        }
        let ids: Vec<String> = (0..SETS).map(|i| format!("{i:05}")).collect();
        let before = jemalloc_metadata();
        for id in &ids {
            poll_once(rdebug::labels(&[("user", id)], async {
                for d in 0..STACKS {
                    alloc_at(BASE_DEPTH + d);
                }
            }));
        }
        let after = jemalloc_metadata();
        println!("RESULT metadata_growth {}", after.saturating_sub(before));
        let p = rdebug::profile::heap().expect("heap profile");
        std::fs::write(
            std::env::var("PB").unwrap(),
            p.pprof_gz(rdebug::profile::HeapKind::Allocs),
        )
        .unwrap();
        // Sampling every allocation is slow: back to the default for the CPU part.
        rdebug::profile::set_memprofilerate(512 << 10).expect("heap sampling");
        let profiler = std::thread::spawn(|| {
            rdebug::profile::cpu(Duration::from_millis(600), 200).expect("cpu profile")
        });
        poll_once(rdebug::labels(&[("user", "late")], async {
            let end = std::time::Instant::now() + Duration::from_millis(700);
            let mut x = 0u64;
            while std::time::Instant::now() < end {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }));
        let cpu = profiler.join().unwrap();
        std::fs::write(std::env::var("CPU_PB").unwrap(), cpu.pprof_gz()).unwrap();
        return;
    }
    // Every allocation sampled from the start (a rate set later applies to each thread only
    // after its next sample at the old rate).
    let env = [
        ("PB", pb.to_str().expect("utf-8 path")),
        ("CPU_PB", cpu_pb.to_str().expect("utf-8 path")),
        ("_RJEM_MALLOC_CONF", "lg_prof_sample:0"),
    ];
    let out = run_child(name, &env, TIMEOUT);
    out.assert_success();
    let growth: u64 = support::result_value(&out.stdout, "metadata_growth");
    println!("metadata growth {growth} bytes");
    assert!(
        growth <= 4 << 20,
        "labels added {:.1} MiB of jemalloc metadata",
        growth as f64 / f64::from(1 << 20)
    );
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("rdebug: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("\"user\""), "{}", warnings[0]);

    let (types, samples) = raw(pb.to_str().expect("utf-8 path"));
    let objs = types
        .iter()
        .position(|t| t.starts_with("alloc_objects"))
        .unwrap_or_else(|| panic!("no alloc_objects in {types:?}"));
    let (mut labelled, mut plain) = (0i64, 0i64);
    for s in samples
        .iter()
        .filter(|s| s.functions.iter().any(|f| f.ends_with("::alloc_at")))
    {
        if s.labels.iter().any(|l| l.starts_with("user:")) {
            labelled += s.values[objs];
        } else {
            plain += s.values[objs];
        }
    }
    let made = (SETS * STACKS) as i64;
    assert_eq!(
        labelled + plain,
        made + STACKS as i64,
        "{labelled} + {plain}"
    );
    assert!(
        (1800..=2048).contains(&labelled),
        "{labelled} kept their labels"
    );
    println!("{labelled} of {made} labelled allocations kept their labels");
    let comments = Command::new("go")
        .args(["tool", "pprof", "-comments"])
        .arg(&pb)
        .output()
        .expect("go tool pprof -comments");
    let comments = String::from_utf8_lossy(&comments.stdout);
    let refused: i64 = comments
        .lines()
        .find_map(|l| {
            l.strip_prefix("rdebug: ")?
                .split_once(" sampled allocations carry no labels")
                .and_then(|(n, _)| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no refusal comment in:\n{comments}"));
    assert_eq!(refused, made - labelled, "{comments}");
    let _ = std::fs::remove_file(&pb);

    let (_, cpu) = raw(cpu_pb.to_str().expect("utf-8 path"));
    let _ = std::fs::remove_file(&cpu_pb);
    let late = cpu
        .iter()
        .filter(|s| s.labels.iter().any(|l| l == "user:[late]"))
        .count();
    assert!(late > 0, "no CPU sample carries user=late: {cpu:?}");
}
