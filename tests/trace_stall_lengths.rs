//! How long each stall lasted, once its poll ends: the `STALL-END` line's `lasted`, the stall's
//! `lasted_ms` in `/debug/vars` and the `rdebug_sched_stall_seconds` histogram on `/metrics`,
//! each within 10% of the time the test's own polls blocked (measured around each call).

mod support;

use std::time::{Duration, Instant};

use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);

/// Blocks its worker for `d`; returns how long it did.
#[inline(never)]
fn blocks_in_sleep(d: Duration) -> Duration {
    let t = Instant::now();
    std::thread::sleep(std::hint::black_box(d));
    t.elapsed()
}

/// A 200 ms and a 1 s blocking poll with `stalltrace=50`: two STALL-END lines, two lengths in
/// `/debug/vars`, and on `/metrics` a histogram with count 2, the sum of the two, and each in
/// its bucket; every figure within 10% of the child's measure.
#[test]
fn each_stall_s_length_is_known_once_its_poll_ends() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime_with_rdebug(Duration::from_millis(400));
        for d in [200, 1000] {
            let took = rt
                .block_on(rt.spawn(async move { blocks_in_sleep(Duration::from_millis(d)) }))
                .unwrap();
            println!("RESULT blocked_{d} {}", took.as_millis());
            std::thread::sleep(Duration::from_millis(300));
        }
        #[cfg(feature = "http")]
        {
            let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = server.local_addr();
            let vars = support::http_client::get(addr, "/debug/vars").text();
            let metrics = support::http_client::get(addr, "/metrics").text();
            let vars: serde_json::Value = serde_json::from_str(&vars).unwrap();
            let lasted: Vec<String> = vars["sched"][0]["recent_stalls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["lasted_ms"].to_string())
                .collect();
            println!("RESULT vars_lasted {}", lasted.join(","));
            for l in metrics
                .lines()
                .filter(|l| l.starts_with("rdebug_sched_stall_seconds"))
            {
                println!("METRIC {l}");
            }
            server.stop();
        }
        return;
    }
    let out = run_child(name, &[("RDEBUG", "stalltrace=50")], TIMEOUT);
    out.assert_success();
    let truth: Vec<f64> = [200, 1000]
        .iter()
        .map(|d| support::result_value::<f64>(&out.stdout, &format!("blocked_{d}")))
        .collect();
    let near = |what: &str, got: f64, truth: f64| {
        assert!(
            (got - truth).abs() <= 0.1 * truth,
            "{what}: {got} ms, blocked {truth} ms\n{}\n{}",
            out.stdout,
            out.stderr
        );
    };
    let ends = out.lines_starting("STALL-END ");
    assert_eq!(ends.len(), 2, "{}", out.stderr);
    for (end, &t) in ends.iter().zip(&truth) {
        let lasted: f64 = end
            .split_once("lasted=")
            .and_then(|(_, v)| v.strip_suffix("ms")?.parse().ok())
            .unwrap_or_else(|| panic!("no lasted= in {end:?}"));
        near("STALL-END", lasted, t);
    }
    if cfg!(feature = "http") {
        let vars: Vec<f64> = support::result_value::<String>(&out.stdout, "vars_lasted")
            .split(',')
            .map(|v| v.parse().unwrap_or(-1.0))
            .collect();
        assert_eq!(vars.len(), 2, "{}", out.stdout);
        for (&v, &t) in vars.iter().zip(&truth) {
            near("/debug/vars lasted_ms", v, t);
        }
        let metric = |series: &str, le: &str| -> f64 {
            out.stdout
                .lines()
                .filter_map(|l| l.strip_prefix("METRIC "))
                .find(|l| {
                    l.starts_with(&format!("rdebug_sched_stall_seconds{series}{{"))
                        && l.contains("runtime=\"main\"")
                        && (le.is_empty() || l.contains(&format!("le=\"{le}\"")))
                })
                .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
                .unwrap_or_else(|| panic!("no {series} {le} in\n{}", out.stdout))
        };
        assert_eq!(metric("_count", ""), 2.0);
        near(
            "histogram sum",
            metric("_sum", "") * 1000.0,
            truth[0] + truth[1],
        );
        // 200 ms lies in (0.1, 0.25], 1 s in (0.5, 1] or (1, 2.5].
        assert_eq!(metric("_bucket", "0.1"), 0.0, "{}", out.stdout);
        assert_eq!(metric("_bucket", "0.25"), 1.0, "{}", out.stdout);
        assert_eq!(metric("_bucket", "0.5"), 1.0, "{}", out.stdout);
        assert_eq!(metric("_bucket", "2.5"), 2.0, "{}", out.stdout);
        assert_eq!(metric("_bucket", "+Inf"), 2.0, "{}", out.stdout);
    }
}
