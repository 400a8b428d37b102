//! Reads `rdebug::memstats()` and `rdebug::sched_stats()` and prints them as JSON on stdout.
//!
//! ```text
//! cargo run --example memstats
//! ```

use serde::Serialize;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

#[derive(Serialize)]
struct Snapshot {
    memstats: rdebug::MemStats,
    sched: rdebug::SchedStats,
    alloc_counters: rdebug::AllocCounters,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    rdebug::init();
    // Hold 16 MiB so the heap figures have something to show.
    let held = vec![7u8; 16 << 20];
    let snapshot = Snapshot {
        memstats: rdebug::memstats(),
        sched: rdebug::sched_stats(&tokio::runtime::Handle::current()),
        alloc_counters: rdebug::alloc_counters(),
    };
    match serde_json::to_string_pretty(&snapshot) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("memstats: cannot serialise: {e}"),
    }
    drop(held);
}
