//! Alloc + free pairs through `rdebug::Alloc` in a build with the `pprof` feature (jemalloc
//! built with `--enable-prof`): heap sampling on at Go's rate (512 KiB) against sampling
//! paused (`prof.active=false`), in the same run. Compare `alloc_rdebug` built without `pprof`
//! for the cost of `--enable-prof` itself.

#[path = "common/alloc_loop.rs"]
mod alloc_loop;

use criterion::Criterion;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

fn main() {
    // `ALLOC_PROF_RATE=BYTES` (0: paused) for the fixed-steps run under callgrind; without it
    // sampling runs at the build's default, Go's 512 KiB.
    if let Some(rate) = std::env::var("ALLOC_PROF_RATE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        rdebug::profile::set_memprofilerate(rate).expect("jemalloc profiling");
    }
    // `ALLOC_LABEL=key=value`: the fixed-steps run (one thread) polled inside
    // `rdebug::labels`, so that sampled stacks carry a label set.
    let label = std::env::var("ALLOC_LABEL").ok();
    let done = match label.as_deref().and_then(|l| l.split_once('=')) {
        Some((k, v)) => poll_once(rdebug::labels(&[(k, v)], async {
            alloc_loop::fixed_steps()
        })),
        None => alloc_loop::fixed_steps(),
    };
    if done {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    rdebug::profile::set_memprofilerate(524_288).expect("jemalloc profiling");
    alloc_loop::bench_alloc(&mut c, "alloc_pprof_sampling_on");
    rdebug::profile::set_memprofilerate(0).expect("jemalloc profiling");
    alloc_loop::bench_alloc(&mut c, "alloc_pprof_sampling_off");
    c.final_summary();
}

/// Polls `fut` once; it must be ready then.
fn poll_once<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the fixed-steps run does not wait"),
    }
}
