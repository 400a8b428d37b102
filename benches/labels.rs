//! What a poll under `rdebug::labels` costs against the same poll bare (issue 16: "a labelled
//! poll pays at most a few nanoseconds"). Each iteration polls one future that is never ready;
//! the labelled one is `rdebug::labels(&[("route", "/cache")], that future)`, built once. Polled
//! on a plain thread (`tokio::task::try_id()` is `None`) and inside a tokio task (the task id is
//! read, and formatted only when it changes). Without feature `pprof` the two are the same
//! future.
//!
//! `cargo bench --features pprof --bench labels -- --warm-up-time 1 --measurement-time 3`

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// A future that is never ready and counts its polls.
struct Never(u64);

impl Future for Never {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        self.0 = black_box(self.0 + 1);
        Poll::Pending
    }
}

fn poll_many<F: Future>(f: Pin<&mut F>, n: u64) {
    let mut f = f;
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let _ = black_box(f.as_mut().poll(&mut cx));
    }
}

fn polls(c: &mut Criterion) {
    let mut g = c.benchmark_group("poll");
    g.bench_function("plain", |b| {
        let mut f = std::pin::pin!(Never(0));
        b.iter(|| poll_many(f.as_mut(), 1));
    });
    g.bench_function("labelled", |b| {
        let mut f = std::pin::pin!(rdebug::labels(&[("route", "/cache")], Never(0)));
        b.iter(|| poll_many(f.as_mut(), 1));
    });
    // Inside a task: 1000 polls per iteration, timed by criterion around the whole task.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for labelled in [false, true] {
        let name = if labelled {
            "in task, labelled (x1000)"
        } else {
            "in task, plain (x1000)"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(rt.spawn(async move {
                    if labelled {
                        let mut f =
                            std::pin::pin!(rdebug::labels(&[("route", "/cache")], Never(0)));
                        poll_many(f.as_mut(), 1000);
                    } else {
                        let mut f = std::pin::pin!(Never(0));
                        poll_many(f.as_mut(), 1000);
                    }
                }))
                .unwrap()
            });
        });
    }
    // What a request pays once: a labelled future made (its label set encoded) and polled for
    // the first time (the task number read), against the same future plain; 100 per iteration.
    for labelled in [false, true] {
        let name = if labelled {
            "in task, new future polled once, labelled (x100)"
        } else {
            "in task, new future polled once, plain (x100)"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(rt.spawn(async move {
                    for i in 0..100 {
                        if labelled {
                            let mut f = std::pin::pin!(rdebug::labels(
                                &[("route", black_box("/users/{id}"))],
                                Never(i)
                            ));
                            poll_many(f.as_mut(), 1);
                        } else {
                            let mut f = std::pin::pin!(Never(i));
                            poll_many(f.as_mut(), 1);
                        }
                    }
                }))
                .unwrap()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, polls);
criterion_main!(benches);
