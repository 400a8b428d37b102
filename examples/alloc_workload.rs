//! A request-like workload for checking rdebug's allocator CPU against `perf`
//! (`scripts/perf-alloc-cpu.sh`): two tokio workers build structs, format strings and fill hash
//! maps for a few seconds, then the program prints what rdebug measured and the process's CPU.
//!
//! `--spin` adds a thread that spins on the same cores without allocating, forcing preemption.
//! `--secs N` sets the length (default 5).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

#[derive(Debug)]
struct Order {
    id: u64,
    customer: String,
    items: Vec<(String, u32)>,
}

/// One "request": build a few structs, render them, index them.
#[inline(never)]
fn handle(i: u64) -> usize {
    let orders: Vec<Order> = (0..8)
        .map(|k| Order {
            id: i * 8 + k,
            customer: format!("customer-{}", (i + k) % 97),
            items: (0..4).map(|n| (format!("sku-{n}-{k}"), n as u32)).collect(),
        })
        .collect();
    let mut index: HashMap<String, &Order> = HashMap::new();
    for o in &orders {
        index.insert(format!("{}/{}", o.customer, o.id), o);
    }
    let rendered: Vec<String> = orders.iter().map(|o| format!("{o:?}")).collect();
    let items: usize = orders
        .iter()
        .map(|o| o.items.len() + o.id as usize % 2)
        .sum();
    rendered.iter().map(String::len).sum::<usize>() + index.len() + items
}

fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spin = args.iter().any(|a| a == "--spin");
    let secs = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5u64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let _ = rdebug::memstats(); // starts the CPU-time sampler
    let alloc0 = rdebug::alloc_counters().alloc_cpu_ns;
    let cpu0 = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = spin.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let total: usize = rt.block_on(async move {
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                tokio::spawn(async move {
                    let mut sum = 0usize;
                    let mut i = t * 1_000_000;
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            i += 1;
                            sum = sum.wrapping_add(handle(i));
                        }
                        tokio::task::yield_now().await;
                    }
                    sum
                })
            })
            .collect();
        let mut total = 0usize;
        for t in tasks {
            total = total.wrapping_add(t.await.unwrap_or(0));
        }
        total
    });
    stop.store(true, Relaxed);
    if let Some(s) = spinner {
        let _ = s.join();
    }
    let alloc = rdebug::alloc_counters().alloc_cpu_ns - alloc0;
    let cpu = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    println!("rdebug alloc_cpu_ns={alloc} process_cpu_ns={cpu} work={total}");
}
