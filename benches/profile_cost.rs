//! Peak memory added by one heap profile and one CPU profile (not criterion: one number each).
//!
//! The process first builds a heap of ~200 MiB from many call sites and sizes; then, for each
//! profile, the kernel's peak-RSS mark is reset (`/proc/self/clear_refs` ← 5) and `VmHWM` read
//! before and after taking the profile and encoding it (pprof, debug text / SVG).
//!
//! `cargo bench --features pprof --bench profile_cost`

use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

fn hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix(" kB")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[inline(never)]
fn site(depth: u32, size: usize) -> Vec<u8> {
    if depth == 0 {
        vec![depth as u8; size]
    } else {
        std::hint::black_box(site(depth - 1, size))
    }
}

fn measure(what: &str, f: impl FnOnce() -> usize) {
    reset_peak();
    let before = hwm_kib();
    let started = Instant::now();
    let out_bytes = f();
    let took = started.elapsed();
    let after = hwm_kib();
    println!(
        "{what}: peak RSS +{:.1} MiB (VmHWM {before} -> {after} kB), {:.0} ms, output {out_bytes} bytes",
        after.saturating_sub(before) as f64 / 1024.0,
        took.as_secs_f64() * 1e3
    );
}

fn main() {
    // ~200 MiB from 2000 distinct stacks (depth 0..20 × sizes), so the dump has many records.
    let mut held = Vec::new();
    let mut total = 0usize;
    let mut i = 0usize;
    while total < 200 << 20 {
        let size = 64 << (i % 12);
        held.push(site((i % 20) as u32, size + (i % 100)));
        total += size;
        i += 1;
    }
    println!("held {} MiB in {} objects", total >> 20, held.len());
    measure("heap profile (heap + pprof_gz + debug_text)", || {
        let p = rdebug::profile::heap().expect("heap profile");
        p.pprof_gz(rdebug::profile::HeapKind::Heap).len() + p.debug_text().len()
    });
    let stop = Instant::now() + Duration::from_millis(2200);
    let burner = std::thread::spawn(move || {
        while Instant::now() < stop {
            std::hint::black_box(site(10, 64));
        }
    });
    measure(
        "cpu profile 2 s at 100 Hz (cpu + pprof_gz + flamegraph_svg)",
        || {
            let p = rdebug::profile::cpu(Duration::from_secs(2), 100).expect("cpu profile");
            p.pprof_gz().len() + p.flamegraph_svg().len()
        },
    );
    let _ = burner.join();
    measure(
        "second cpu profile 0.5 s (unwind tables already loaded)",
        || {
            let p = rdebug::profile::cpu(Duration::from_millis(500), 100).expect("cpu profile");
            p.pprof_gz().len()
        },
    );
    drop(held);
}
