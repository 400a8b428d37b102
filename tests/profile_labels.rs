//! Labels that follow a future (`rdebug::labels`, Go's `pprof.Do`): CPU samples carry them and
//! the tokio task id, read back with the real `go tool pprof -tagfocus` / `-tags`.
#![cfg(feature = "pprof")]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::burn::{burn_a, burn_b, cpu_ns};
use support::pprof::top;
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(90);

/// Burns `units` chunks in `burn` per turn, then yields, until `until`; returns this task's id
/// and the thread CPU time it burned, ns.
async fn route(until: Instant, units: u32, burn: fn(u64) -> u64) -> (tokio::task::Id, u64) {
    let mut spent = 0;
    while Instant::now() < until {
        let t0 = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        for _ in 0..units {
            burn(150_000);
        }
        spent += cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - t0;
        tokio::task::yield_now().await;
    }
    (tokio::task::id(), spent)
}

/// `go tool pprof -tags <args> <file>`'s output.
fn tags(file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof", "-tags"])
        .args(args)
        .arg(file)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The percentage `-tags` gives the label value `value` (`  1.6s (78.09%): /a`).
fn share_of(tags: &str, value: &str) -> f64 {
    tags.lines()
        .find_map(|l| {
            let (head, v) = l.rsplit_once("): ")?;
            (v.trim_end() == value).then_some(())?;
            head.rsplit_once('(')?
                .1
                .strip_suffix('%')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {value} in:\n{tags}"))
}

/// Two tasks on one worker take turns burning CPU 3:1 under `route=/a` and `route=/b` (the
/// truth: the thread CPU time each burned). `-tagfocus` splits the profile as the truth splits,
/// within 0.12 of the share; each route's `task_id` label is the id of the task that burned
/// for it; a label of hostile length and characters is cut, not fatal.
#[test]
fn cpu_samples_carry_labels_and_the_task_id() {
    let name = support::test_name!();
    let pb = support::temp_path("labels.pb.gz");
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let until = Instant::now() + Duration::from_millis(2600);
        let hostile = "\u{202e}\u{0}\u{fffd}é".repeat(300);
        let a = rt.spawn(rdebug::labels(&[("route", "/a")], route(until, 3, burn_a)));
        let b = rt.spawn(rdebug::labels(
            &[("route", "/b"), ("note", &hostile), ("", "empty key")],
            route(until, 1, burn_b),
        ));
        std::thread::sleep(Duration::from_millis(200));
        let p = rdebug::profile::cpu(Duration::from_secs(2), 200).expect("cpu profile");
        let (a, b) = rt.block_on(async { (a.await.unwrap(), b.await.unwrap()) });
        println!("RESULT task_a {}", a.0);
        println!("RESULT task_b {}", b.0);
        println!("RESULT share_a {}", a.1 as f64 / (a.1 + b.1) as f64);
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let stdout = &out.stdout;
    let truth: f64 = support::result_value(stdout, "share_a");
    assert!(
        (truth - 0.75).abs() <= 0.12,
        "the scenario burned {truth:.3} in /a, not 3:1"
    );
    for r in ["/a", "/b"] {
        let t = top(&pb, &[&format!("-tagfocus=route={r}")]);
        let f = format!("burn_{}", &r[1..]);
        assert!(t.row(&f).is_some(), "{f} under route={r}:\n{}", t.text);
    }
    let t = tags(&pb, &["-tagshow=route"]);
    let a = share_of(&t, "/a");
    let b = share_of(&t, "/b");
    let share = a / (a + b);
    assert!(
        (share - truth).abs() <= 0.12,
        "/a's share: profile {share:.3}, thread CPU time {truth:.3}\n{t}"
    );
    for (r, key) in [("/a", "task_a"), ("/b", "task_b")] {
        let id: u64 = support::result_value(stdout, key);
        let t = tags(&pb, &[&format!("-tagfocus=route={r}"), "-tagshow=task_id"]);
        let ids: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("task_id:"))
            .skip(1)
            .take_while(|l| l.contains('%'))
            .collect();
        assert_eq!(ids.len(), 1, "one task id under route={r}:\n{t}");
        assert!(
            ids[0].trim_end().ends_with(&format!(": {id}")),
            "route={r}: task {id} expected:\n{t}"
        );
    }
    let t = tags(&pb, &["-tagfocus=route=/b", "-tagshow=note"]);
    let note = t
        .lines()
        .find(|l| l.contains('\u{fffd}'))
        .unwrap_or_else(|| panic!("the hostile label is missing:\n{t}"));
    assert!(note.len() < 200, "the note label is cut: {note}");
    let _ = std::fs::remove_file(&pb);
}

/// An unlabelled task on a watched runtime: once the CPU profile has found the workers, its
/// samples carry its `task_id` all the same.
#[test]
fn unlabelled_tasks_on_watched_workers_carry_their_id() {
    let name = support::test_name!();
    let pb = support::temp_path("task-id.pb.gz");
    if is_child(name) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rdebug::watch(rt.handle());
        // A first profile while the runtime is idle finds its worker.
        let _ = rdebug::profile::cpu(Duration::from_millis(100), 100).expect("warm-up");
        let until = Instant::now() + Duration::from_millis(1600);
        let task = rt.spawn(route(until, 1, burn_b));
        std::thread::sleep(Duration::from_millis(200));
        let p = rdebug::profile::cpu(Duration::from_secs(1), 200).expect("cpu profile");
        let (id, _) = rt.block_on(task).unwrap();
        println!("RESULT task {id}");
        std::fs::write(std::env::var("PB").unwrap(), p.pprof_gz()).unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let id: u64 = support::result_value(&out.stdout, "task");
    let t = tags(&pb, &["-tagshow=task_id"]);
    let share = share_of(&t, &id.to_string());
    assert!(share >= 80.0, "task {id}: {share}% of the samples:\n{t}");
    let _ = std::fs::remove_file(&pb);
}

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

/// One sample of `go tool pprof -raw`: its values, its functions (leaf first) and labels.
#[derive(Debug)]
struct RawSample {
    values: Vec<i64>,
    functions: Vec<String>,
    labels: Vec<String>,
}

/// `go tool pprof -raw <source>`: the sample types and the samples.
fn raw(source: &str) -> (Vec<String>, Vec<RawSample>) {
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw", source])
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut types = Vec::new();
    let mut samples: Vec<(Vec<i64>, Vec<u64>, Vec<String>)> = Vec::new();
    let mut functions: std::collections::HashMap<u64, Vec<String>> = Default::default();
    let mut section = "";
    let mut location: Option<u64> = None;
    for line in text.lines() {
        match line.trim_end() {
            "Samples:" => section = "types",
            "Locations" => section = "locations",
            "Mappings" => section = "",
            l if section == "types" => {
                types = l.split_whitespace().map(str::to_owned).collect();
                section = "samples";
            }
            l if section == "samples" => {
                if let Some((values, locs)) = l
                    .split_once(':')
                    .filter(|(v, _)| v.split_whitespace().all(|x| x.parse::<i64>().is_ok()))
                {
                    samples.push((
                        values
                            .split_whitespace()
                            .map(|x| x.parse().unwrap())
                            .collect(),
                        locs.split_whitespace()
                            .filter_map(|x| x.parse().ok())
                            .collect(),
                        Vec::new(),
                    ));
                } else if let Some(s) = samples.last_mut() {
                    s.2.push(l.trim().to_owned());
                }
            }
            l if section == "locations" => {
                // "     1: 0x55d1c0 M=1 block src/x.rs:10 s=0" or an inlined frame's
                // "             alloc::vec::from_elem ..." after it.
                let t = l.trim_start();
                let name = match t.split_once(": ") {
                    Some((id, rest)) if id.parse::<u64>().is_ok() => {
                        location = id.parse().ok();
                        rest.split_whitespace().nth(2)
                    }
                    _ => t.split_whitespace().next(),
                };
                if let (Some(id), Some(name)) = (location, name) {
                    functions.entry(id).or_default().push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    let samples = samples
        .into_iter()
        .map(|(values, locs, labels)| RawSample {
            values,
            functions: locs
                .iter()
                .flat_map(|l| functions.get(l).cloned().unwrap_or_default())
                .collect(),
            labels,
        })
        .collect();
    (types, samples)
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
