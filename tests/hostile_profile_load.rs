//! A minute-long CPU profile under everything at once: allocating threads, threads that start
//! and exit, and `hey` loading the app. Its own test binary, so its load does not slow the other
//! signal tests.
#![cfg(all(feature = "pprof", target_os = "linux"))]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use support::is_child;
use support::pprof::top;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// A minute-long CPU profile at 1000 Hz through the debug server while 8 threads allocate
/// hard, threads start and exit all the time, and `hey` loads the app: no crash, no hang, every
/// request answered, and the profile parses with `go tool pprof`.
#[test]
fn a_minute_long_profile_under_churn_and_hey() {
    use support::http_client::{ServerChild, get_within, serve_commands};
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() }); // RDEBUG=http=127.0.0.1:0
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for seed in 0..8u64 {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut x = seed | 1;
                let mut held: Vec<Vec<u8>> = Vec::new();
                while !stop.load(SeqCst) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if held.len() >= 256 {
                        held.swap_remove(x as usize % 256);
                    }
                    held.push(vec![1u8; 1 + x as usize % 8192]);
                }
            }));
        }
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let t = std::thread::spawn(|| std::hint::black_box(vec![0u8; 4096]).len());
                    let _ = t.join();
                }
            })
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let app = std::thread::spawn(move || {
            rt.block_on(support::server::serve(|a| {
                println!("APP {a}");
                let _ = tx.send(a);
            }));
        });
        let app_addr = rx.recv().expect("app address");
        serve_commands(|_| {});
        stop.store(true, SeqCst);
        for t in threads {
            t.join().expect("allocating thread");
        }
        churn.join().expect("churn");
        support::load::quit(app_addr);
        app.join().expect("app");
        return;
    }
    support::hey::hey();
    let pb = support::temp_path("minute.pb.gz");
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    let app: std::net::SocketAddr = c.wait_stdout("APP ").parse().expect("app address");
    let load = support::hey::Hey::sendjson(app, "62s", 4);
    let profile = get_within(
        c.addr,
        "/debug/pprof/profile?seconds=60&hz=1000",
        &[],
        Duration::from_secs(180),
    )
    .expect("the profile answered");
    assert_eq!(load.wait(Duration::from_secs(60)).code(), Some(0), "hey");
    assert_eq!(profile.status, 200, "{}", profile.text());
    // The app answers every request after all that.
    let after = support::load::run(app, 2, Duration::from_secs(1));
    assert!(after.ok > 0 && after.failed == 0, "{after:?}");
    std::fs::write(&pb, &profile.body).expect("write profile");
    let t = top(&pb, &[]);
    let _ = std::fs::remove_file(&pb);
    assert!(support::pprof::total(&t) > 0.0, "{}", t.text);
    c.finish().assert_success();
}
