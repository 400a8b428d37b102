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
