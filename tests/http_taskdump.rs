//! `goroutine?debug=1|2` as tokio task dumps, against ground truths the child creates: tasks
//! parked in a function of a distinctive name, workers blocked in synchronous code, a task whose
//! re-poll blocks. Compiled only where the dumps are (`--cfg tokio_unstable`, feature
//! `taskdump`, Linux on a supported architecture): CI's unstable pass runs it.

#![cfg(all(
    tokio_unstable,
    feature = "taskdump",
    target_os = "linux",
    any(
        target_arch = "aarch64",
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "s390x"
    )
))]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use support::http_client::{Answer, ServerChild, get, serve_commands};
use support::is_child;

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// Tasks the first child parks in [`rdebug_test_parked_in_named_await`].
const PARKED: usize = 1000;
/// How long the blocking scenarios block a worker: longer than rdebug's probe + timeout (2.3 s)
/// and the answer margin, so an answer that came only when the workers freed is told apart.
const BLOCK: Duration = Duration::from_secs(5);
/// The latest a dump that cannot be had may answer: probe 0.3 s + timeout 2 s + 1.5 s margin.
const ANSWER_WITHIN: Duration = Duration::from_millis(3800);

/// The function the parked tasks wait in, named to be found in the traces.
#[inline(never)]
async fn rdebug_test_parked_in_named_await(never: Arc<tokio::sync::Notify>) {
    never.notified().await;
}

/// Ready never; its second poll (the dump's re-poll) blocks its worker for [`BLOCK`].
struct BlocksOnSecondPoll(u32);

impl Future for BlocksOnSecondPoll {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        self.0 += 1;
        if self.0 == 2 {
            std::thread::sleep(BLOCK);
        }
        Poll::Pending
    }
}

/// The child: a 2-worker runtime watched by `init`; commands: `park` (PARKED tasks in the named
/// fn), `block` (both workers in std::thread::sleep), `slowpoll` (a task whose re-poll blocks),
/// `tasks` (sched_stats().tasks).
fn child_scenario() {
    let rt = support::two_worker_runtime();
    rt.block_on(async { rdebug::init() });
    let never = Arc::new(tokio::sync::Notify::new());
    serve_commands(|cmd| match cmd {
        "park" => {
            for _ in 0..PARKED {
                rt.spawn(rdebug_test_parked_in_named_await(never.clone()));
            }
            while rdebug::sched_stats(rt.handle()).tasks < PARKED {
                std::thread::sleep(Duration::from_millis(5));
            }
            println!("PARKED");
        }
        "block" => {
            let started = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = std::sync::mpsc::channel();
            for _ in 0..2 {
                let (started, tx) = (started.clone(), tx.clone());
                rt.spawn(async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(BLOCK);
                    let _ = tx.send(());
                });
            }
            while started.load(Ordering::SeqCst) < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("BLOCKED");
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let _ = rx.recv();
                }
                println!("UNBLOCKED");
            });
        }
        "slowpoll" => {
            rt.spawn(BlocksOnSecondPoll(0));
            std::thread::sleep(Duration::from_millis(50));
            println!("SLOWPOLL");
        }
        "tasks" => println!("TASKS {}", rdebug::sched_stats(rt.handle()).tasks),
        _ => println!("UNKNOWN {cmd}"),
    });
    // Not `drop(rt)`: with tokio 1.54.1 a dump can leave a worker waiting for good at the dump's
    // end barrier (tokio-rs/tokio#8370), and shutting the runtime down would wait for it.
    std::process::exit(0);
}

/// `total` of the first line.
fn total(a: &Answer) -> usize {
    let text = a.text();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("goroutine profile: total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total line: {text}"))
}

/// debug=1 groups: (count, the group's lines).
fn groups(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for l in text.lines() {
        if let Some((n, _)) = l.split_once(" @") {
            if let Ok(n) = n.parse() {
                out.push((n, String::new()));
                continue;
            }
        }
        if let (Some(g), true) = (out.last_mut(), l.starts_with("#\t")) {
            g.1.push_str(l);
            g.1.push('\n');
        }
    }
    out
}

/// The child of a dump test, with [`PARKED`] tasks parked and counted.
fn parked_child(name: &str) -> (ServerChild, usize) {
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    c.command("park", "PARKED");
    let tasks: usize = c.command("tasks", "TASKS ").trim().parse().expect("tasks");
    assert_eq!(tasks, PARKED);
    (c, tasks)
}

// Each test asks tokio for one dump per child process: with tokio 1.54.1 a second dump can find
// a worker stuck at the first one's end barrier (tokio-rs/tokio#8370; see src/http/taskdump.rs).

#[test]
fn dump_lists_every_task_where_it_awaits() {
    let name = support::test_name!();
    if is_child(name) {
        child_scenario();
        return;
    }
    let (mut c, tasks) = parked_child(name);
    let t0 = Instant::now();
    let d1 = get(c.addr, "/debug/pprof/goroutine?debug=1&dump=1");
    println!(
        "debug=1 dump of {tasks} tasks: {:?} (probe 300 ms included), {} bytes",
        t0.elapsed(),
        d1.body.len()
    );
    assert_eq!(d1.status, 200, "{}", d1.text());
    assert_eq!(total(&d1), tasks, "{}", d1.text());
    let text = d1.text();
    let gs = groups(&text);
    assert_eq!(gs.iter().map(|g| g.0).sum::<usize>(), tasks, "{text}");
    let named: Vec<_> = gs
        .iter()
        .filter(|g| g.1.contains("rdebug_test_parked_in_named_await"))
        .collect();
    assert_eq!(named.len(), 1, "one group for one await point: {text}");
    assert_eq!(named[0].0, PARKED, "{text}");
    assert!(named[0].1.contains("Notified"), "{text}");
    let main = text
        .lines()
        .find(|l| l.starts_with("# runtime main: "))
        .expect("runtime line");
    assert_eq!(support::num(main, "tasks"), tasks as u64, "{main}");
    // Without dump=1 the answer stays the summary (debug=0 is its pprof form, checked in
    // http_endpoints); the dump woke nothing for good: the tasks are still there.
    let d0 = get(c.addr, "/debug/pprof/goroutine?debug=1").text();
    assert!(d0.contains("?debug=2&dump=1 (each task)"), "{d0}");
    let after: usize = c.command("tasks", "TASKS ").trim().parse().expect("tasks");
    assert_eq!(after, PARKED);
    c.finish().assert_success();
}

#[test]
fn dump_debug_2_has_a_block_per_task() {
    let name = support::test_name!();
    if is_child(name) {
        child_scenario();
        return;
    }
    let (c, tasks) = parked_child(name);
    let t0 = Instant::now();
    let d2 = get(c.addr, "/debug/pprof/goroutine?debug=2&dump=1");
    println!("debug=2 dump of {tasks} tasks: {:?}", t0.elapsed());
    assert_eq!(d2.status, 200, "{}", d2.text());
    let text = d2.text();
    assert_eq!(total(&d2), tasks);
    let blocks: Vec<&str> = text.split("\ngoroutine ").skip(1).collect();
    assert_eq!(blocks.len(), tasks, "{text}");
    assert!(blocks.iter().all(|b| b.contains(" [runtime main]:\n")));
    let named = blocks
        .iter()
        .filter(|b| b.contains("rdebug_test_parked_in_named_await"))
        .count();
    assert_eq!(named, PARKED);
    c.finish().assert_success();
}

/// A dump asked for while it cannot be had: the answer, after checking it is a 503 that came
/// within [`ANSWER_WITHIN`].
fn refused_in_time(c: &ServerChild, why: &str) -> String {
    let t0 = Instant::now();
    let a = get(c.addr, "/debug/pprof/goroutine?debug=1&dump=1");
    let took = t0.elapsed();
    println!("answer {why}: {took:?}: {}", a.text());
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(took < ANSWER_WITHIN, "{took:?}");
    a.text()
}

#[test]
fn blocked_workers_get_a_clear_answer_and_a_later_dump_works() {
    let name = support::test_name!();
    if is_child(name) {
        child_scenario();
        return;
    }
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    c.command("block", "BLOCKED");
    let text = refused_in_time(&c, "with both workers blocked");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("goroutine: runtime main: no dump requested"),
        "{text}"
    );
    assert!(
        text.contains("workers W0, W1 have been in one poll"),
        "{text}"
    );
    // The summary needs no dump and still answers.
    assert_eq!(get(c.addr, "/debug/pprof/goroutine").status, 200);

    c.wait_stdout("UNBLOCKED");
    // The two blocking tasks sent their last message; wait until they are gone too.
    let deadline = Instant::now() + Duration::from_secs(2);
    let tasks = loop {
        let n: usize = c.command("tasks", "TASKS ").trim().parse().expect("tasks");
        if n == 0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(tasks, 0, "the blocking tasks ended");
    let a = get(c.addr, "/debug/pprof/goroutine?debug=2&dump=1");
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(total(&a), tasks, "{}", a.text());
    c.finish().assert_success();
}

#[test]
fn a_dump_that_times_out_answers_in_time_and_holds_the_slot_while_tokio_dumps() {
    let name = support::test_name!();
    if is_child(name) {
        child_scenario();
        return;
    }
    let mut c = ServerChild::start(name, &[("RDEBUG", "http=127.0.0.1:0")]);
    c.command("slowpoll", "SLOWPOLL");
    let text = refused_in_time(&c, "while a re-poll blocks");
    assert!(
        text.starts_with("goroutine: runtime main: the dump timed out after 2 s"),
        "{text}"
    );
    // tokio's dump goes on: a second one is refused while it does.
    let busy = get(c.addr, "/debug/pprof/goroutine?debug=2&dump=1");
    assert_eq!(busy.status, 409, "{}", busy.text());
    assert!(busy.text().contains("still running"), "{}", busy.text());
    // That the slot frees once tokio's dump ends is not checked here: the dump that timed out
    // is the case tokio-rs/tokio#8370 can leave stuck. The child exits while it still runs.
    c.finish().assert_success();
}
