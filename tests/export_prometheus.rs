//! The Prometheus exposition against real Prometheus tools: `promtool check metrics` (Debian
//! package `prometheus`) on a render, and a real `prometheus` server scraping the webapp
//! example's debug server while `hey` loads the webapp and the child holds a known amount of
//! memory, queried through its HTTP API.
#![cfg(feature = "http")]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use support::hey::Hey;
use support::http_client::{
    APP_ADDR_ENV, ServerChild, free_addr, serve_commands, start_app, wait_listening,
};
use support::{is_child, rss_of};

/// The webapp example itself (its routes, its global allocator, its `rdebug::init()`), run by
/// the child.
#[allow(dead_code)]
#[path = "../examples/webapp.rs"]
mod webapp;

const HELD: usize = 64 << 20;
/// The child's `RDEBUG_HTTP_TOKEN`: Prometheus sends it from `authorization: {credentials: ...}`.
const TOKEN: &str = "prom-s3cret";

/// Fails (never skips) when a Prometheus tool is missing: CI installs the package.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: this test needs a real Prometheus \
             (Debian: apt-get install -y --no-install-recommends prometheus)"
        )
    })
}

/// A render of this process passes `promtool check metrics` (the exposition parser and linter of
/// Prometheus itself), and every TYPE has its HELP and at least one sample.
#[test]
fn promtool_accepts_the_exposition() {
    let rt = support::two_worker_runtime();
    rdebug::watch_named(rt.handle(), "app");
    let text = rdebug::export::prometheus_text();
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\n--- exposition\n{text}",
        out.status
    );
    let mut help = 0;
    let mut typed = Vec::new();
    for l in text.lines() {
        if l.starts_with("# HELP ") {
            help += 1;
        } else if let Some(t) = l.strip_prefix("# TYPE ") {
            typed.push(t.split(' ').next().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(help, typed.len(), "one HELP per TYPE");
    for name in &typed {
        // A histogram's samples are its `_bucket`, `_sum` and `_count` series.
        assert!(
            text.lines()
                .any(|l| l.strip_prefix(name.as_str()).is_some_and(|r| {
                    let r = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| r.strip_prefix(s))
                        .unwrap_or(r);
                    r.starts_with([' ', '{'])
                })),
            "{name} has no sample"
        );
    }
    assert!(
        text.contains("rdebug_sched_workers{runtime=\"app\"} 2\n"),
        "{text}"
    );
}

/// Kills and reaps the Prometheus server and removes its directory, whatever happens.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_prometheus(target: SocketAddr, dir: &Path) -> (Server, SocketAddr) {
    std::fs::create_dir_all(dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: child\n    authorization:\n      credentials: {TOKEN}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config");
    let web = free_addr();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start prometheus");
    (
        Server {
            child,
            dir: dir.to_owned(),
        },
        web,
    )
}

/// GET with hyper; `None` if the server does not answer.
fn get(rt: &tokio::runtime::Runtime, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let res = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
            .await
            .ok()?
            .ok()?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `(evaluation time, value)` of the first series `query` gives now, if any.
fn query(rt: &tokio::runtime::Runtime, prom: SocketAddr, q: &str) -> Option<(f64, f64)> {
    let (status, body) = get(rt, prom, &format!("/api/v1/query?query={}", urlencode(q)))?;
    if status != 200 {
        return None; // 503 while it starts
    }
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let first = v["data"]["result"].as_array()?.first()?.clone();
    let value = first["value"].as_array()?;
    Some((value[0].as_f64()?, value[1].as_str()?.parse().ok()?))
}

/// Polls `q` until `ok` holds for its value, for at most `within`; returns the last value.
fn wait_for(
    rt: &tokio::runtime::Runtime,
    prom: SocketAddr,
    q: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = query(rt, prom, q).map(|(_, v)| v);
        if last.is_some_and(&ok) {
            return last.unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{q}: last value {last:?} after {within:?}");
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The value of `metric` from a scrape that started after `after` (Unix seconds), with the
/// child's RSS read from /proc right then.
fn fresh(rt: &tokio::runtime::Runtime, prom: SocketAddr, metric: &str, after: f64) -> f64 {
    let q = format!("{metric} and timestamp({metric}) > {after}");
    wait_for(rt, prom, &q, Duration::from_secs(5), |_| true)
}

/// The child: the webapp example (2 workers, its debug server from `RDEBUG=http=`), and
/// `hold` / `release` of 64 MiB on stdin, each acknowledged on stdout.
fn child_main() {
    let _app = start_app(webapp::serve);
    let mut held: Option<Vec<u8>> = None;
    serve_commands(|cmd| match cmd {
        "hold" => {
            held = Some(vec![1u8; HELD]); // every page written: RSS grows too
            println!("HELD");
        }
        "release" => {
            held = None;
            println!("RELEASED");
        }
        _ => println!("UNKNOWN {cmd}"),
    });
    drop(held);
}

/// A real Prometheus scrapes the child every second, sending the child's `RDEBUG_HTTP_TOKEN`
/// from `authorization: {credentials: ...}` (without it `/metrics` is 401); through its HTTP
/// API: the target is up,
/// the allocation counter rises under load, the runtime has its 2 workers, the live heap moves
/// by the 64 MiB the child holds (±5%) and back, and RSS agrees with /proc within 10%.
#[test]
fn a_real_prometheus_scrapes_true_figures() {
    let name = support::test_name!();
    if is_child(name) {
        child_main();
        return;
    }
    tool("prometheus"); // fail first, clearly, when it is missing
    support::hey::hey();
    let started = Instant::now();
    let app = free_addr();
    let app_env = app.to_string();
    let mut c = ServerChild::start(
        name,
        &[
            ("RDEBUG", "http=127.0.0.1:0"),
            (APP_ADDR_ENV, &app_env),
            ("RDEBUG_HTTP_TOKEN", TOKEN),
        ],
    );
    let pid = c.pid();
    let target = c.addr;
    // /metrics is guarded: only the token's holder (Prometheus, below) reads it.
    let bare = support::http_client::get(target, "/metrics");
    assert_eq!(bare.status, 401, "{}", bare.text());
    wait_listening(app);
    // hey loads the webapp for the whole test: /sendjson allocates per request but keeps the
    // live heap flat, so the 64 MiB the child holds stands out.
    let load = Hey::start(&[
        "-z",
        "40s",
        "-c",
        "2",
        "-q",
        "200",
        &format!("http://{app}/sendjson"),
    ]);

    let dir = std::env::temp_dir().join(format!("rdebug-prometheus-{}", std::process::id()));
    let (server, prom) = start_prometheus(target, &dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&rt, prom, "/-/ready").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "prometheus not ready after 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(&rt, prom, "up", Duration::from_secs(10), |v| v == 1.0);
    let rate = wait_for(
        &rt,
        prom,
        "rate(rdebug_memstats_mallocs_total[5s])",
        Duration::from_secs(8),
        |v| v > 0.0,
    );
    wait_for(
        &rt,
        prom,
        r#"rdebug_sched_workers{runtime="main"}"#,
        Duration::from_secs(2),
        |v| v == 2.0,
    );
    // The README's three questions evaluate, with windows short enough for this test: the
    // allocator's CPU share, the heap's growth rate, and the workers' busy share (the child's
    // four tasks keep its 2 workers partly busy: strictly between 0 and 1).
    wait_for(
        &rt,
        prom,
        "max by (instance) (rdebug_gc_cpu_fraction)",
        Duration::from_secs(5),
        |v| (0.0..=1.0).contains(&v),
    );
    wait_for(
        &rt,
        prom,
        "deriv(rdebug_memstats_heap_alloc_bytes[5s]) * 3600",
        Duration::from_secs(5),
        f64::is_finite,
    );
    wait_for(
        &rt,
        prom,
        "avg by (instance, runtime) (rate(rdebug_sched_worker_busy_seconds_total[5s]))",
        Duration::from_secs(8),
        |v| v > 0.0 && v < 1.0,
    );

    let heap = "rdebug_memstats_heap_alloc_bytes";
    let before = fresh(&rt, prom, heap, now_secs());
    c.command("hold", "HELD");
    let held_at = now_secs();
    let during = fresh(&rt, prom, heap, held_at);
    let rss_metric = fresh(&rt, prom, "process_resident_memory_bytes", held_at);
    let rss_proc = rss_of(pid) as f64;
    c.command("release", "RELEASED");
    let after = fresh(&rt, prom, heap, now_secs());
    drop(load);
    let out = c.finish();
    drop(server);

    let grew = during - before;
    let held = HELD as f64;
    eprintln!(
        "prometheus: mallocs rate {rate:.0}/s; heap {before:.0} -> {during:.0} -> {after:.0} \
         (+{:.2} MiB); RSS metric {rss_metric:.0} vs /proc {rss_proc:.0}; {:?}",
        grew / (1 << 20) as f64,
        started.elapsed()
    );
    out.assert_success();
    assert!(
        (grew - held).abs() <= 0.05 * held,
        "heap grew by {grew} bytes while the child held {held}"
    );
    assert!(
        (during - after - held).abs() <= 0.05 * held,
        "heap fell by {} bytes when the child released {held}",
        during - after
    );
    assert!(
        (rss_metric - rss_proc).abs() <= 0.10 * rss_proc,
        "process_resident_memory_bytes {rss_metric} vs /proc/{pid}/statm {rss_proc}"
    );
}
