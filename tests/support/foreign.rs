//! The memstats scenario of a program whose global allocator is not `rdebug::Alloc` (plain
//! jemalloc, or `std::alloc::System`), and what its figures must show.

use std::time::Duration;

use super::{field, two_worker_runtime};

/// The global allocator of a program that does not use `rdebug::Alloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// `tikv_jemallocator::Jemalloc`: jemalloc's own figures are there.
    Jemalloc,
    /// `std::alloc::System`: only the RSS is there.
    System,
}

/// For a program whose global allocator is not `rdebug::Alloc`: starts rdebug in a two-worker
/// runtime, holds `bytes` (touched) for a while, and prints `MEM before|during|after key=value
/// ...` lines of `memstats()` read before, while held, and after freeing and
/// `free_os_memory()`.
pub fn hold_and_report_memstats(bytes: usize) {
    let rt = two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    std::thread::sleep(Duration::from_millis(200));
    let before = rdebug::memstats();
    let held = std::hint::black_box(vec![1u8; bytes]);
    std::thread::sleep(Duration::from_millis(300));
    let during = rdebug::memstats();
    drop(held);
    rdebug::free_os_memory();
    let after = rdebug::memstats();
    for (name, m) in [("before", &before), ("during", &during), ("after", &after)] {
        println!(
            "MEM {name} rss={} mallocs={} frees={} total_alloc={} heap_objects={} heap_alloc={} \
             heap_sys={} sys={} dirty={} num_gc={} num_forced_gc={}",
            m.rss,
            m.mallocs,
            m.frees,
            m.total_alloc,
            m.heap_objects,
            m.heap_alloc,
            m.heap_sys,
            m.sys,
            m.dirty,
            m.num_gc,
            m.num_forced_gc
        );
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// The `MEM <name> ...` line [`hold_and_report_memstats`] printed.
pub fn mem_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    let prefix = format!("MEM {name} ");
    stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{stdout}"))
}

/// Checks the `MEM` lines [`hold_and_report_memstats`]`(held)` printed under allocator
/// `alloc`: the counts only `rdebug::Alloc` keeps are zero (and, under the system allocator, so
/// are the heap figures and the cycles), and what the allocator can tell is right.
pub fn check_memstats(stdout: &str, alloc: Foreign, held: usize) {
    let before = mem_line(stdout, "before");
    let during = mem_line(stdout, "during");
    let after = mem_line(stdout, "after");
    let held = held as u64;
    match alloc {
        Foreign::Jemalloc => {
            for l in [before, during, after] {
                for key in ["mallocs", "frees", "total_alloc", "heap_objects"] {
                    assert_eq!(field(l, key), Some(0), "{key} is not counted here: {l}");
                }
            }
            // What jemalloc knows is right: the memory held shows in the live heap (give or
            // take the runtime's own MiB) and leaves after.
            let f = |l, k| field(l, k).unwrap();
            assert!(
                f(during, "heap_alloc") + (1 << 20) >= f(before, "heap_alloc") + held,
                "{before}\n{during}"
            );
            assert!(
                f(after, "heap_alloc") + held / 2 <= f(during, "heap_alloc"),
                "{during}\n{after}"
            );
            assert!(
                f(during, "num_gc") >= 1,
                "the growth closed no cycle: {during}"
            );
            assert_eq!(f(after, "num_forced_gc"), 1, "{after}");
            assert!(f(after, "dirty") < held / 2, "not purged: {after}");
        }
        Foreign::System => {
            for l in [before, during, after] {
                for key in [
                    "mallocs",
                    "frees",
                    "total_alloc",
                    "heap_objects",
                    "heap_alloc",
                    "heap_sys",
                    "sys",
                    "num_gc",
                    "num_forced_gc",
                ] {
                    assert_eq!(field(l, key), Some(0), "{key} cannot be known here: {l}");
                }
            }
            // What can be had: the RSS, which must show the memory held.
            let grew = field(during, "rss").unwrap() - field(before, "rss").unwrap();
            assert!(grew >= held * 9 / 10, "rss grew by {grew} only");
        }
    }
}
