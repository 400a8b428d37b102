//! `goroutine?debug=1&dump=1` and `?debug=2&dump=1`: every task of every watched runtime, traced
//! with tokio's `Handle::dump` (compiled in only with `RUSTFLAGS="--cfg tokio_unstable"`, rdebug's feature
//! `taskdump`, on Linux on aarch64, x86, x86_64 or s390x; the binary needs debuginfo for names
//! and lines: without it frames show addresses and `?`). `debug=0`, and any level without
//! `dump=1`, keeps the summary of [`dumps`](super::dumps), which pauses nothing.
//!
//! `dump=1` is asked for because tokio 1.54.1's dump is not safe for the app (below): two dumps
//! in a row, with no worker blocked, left a worker waiting for good at the dump's end barrier in
//! 4 runs of 6 on a loaded 2-core machine (seen with gdb: `Barrier::wait` in `trace_core`,
//! `worker/taskdump.rs:51`); the runtime then cannot shut down. Whoever adds `dump=1` takes that
//! risk knowingly; the summary never does.
//!
//! # What it looks like
//!
//! A trace is where a task's last poll stopped, innermost first: from the tokio resource it
//! awaits (a `Notify`, a channel, a socket, a timer) out to the task's own future. tokio traces
//! only tokio resources: a task parked in a hand-written future or `std::future::pending` has no
//! frames. `debug=1` groups identical traces as Go groups identical stacks: the count and the
//! frame addresses, then one `#` line per frame (address, function, file:line; the columns are
//! separated by tabs):
//!
//! ```text
//! goroutine profile: total 26
//! # runtime main: workers=2 idleworkers=2 threads=9 tasks=26 runqueue=0
//! 25 @ 0x55d1c0a1b2c4 0x55d1c0a1b1f0
//! #    0x55d1c0a1b2c4    tokio::sync::notify::Notified::poll_notified    /…/tokio-1.54.1/src/sync/notify.rs:1130
//! #    0x55d1c0a1b1f0    app::wait_for_orders::{{closure}}    /…/src/main.rs:41
//!
//! 1 @
//! #    (no trace: the task awaits no tokio resource)
//! ```
//!
//! `debug=2` prints each task as Go prints each goroutine, with tokio's task id and the runtime
//! in the brackets where Go puts the state (tokio says none), functions on their own lines and
//! places indented (by a tab), a blank line after each task:
//!
//! ```text
//! goroutine 12 [runtime main]:
//! tokio::sync::notify::Notified::poll_notified
//!     /…/tokio-1.54.1/src/sync/notify.rs:1130
//! app::wait_for_orders::{{closure}}
//!     /…/src/main.rs:41
//! ```
//!
//! The header line and the `# runtime` summary lines are the summary's (both levels). A task that
//! awaits several resources at once (`join!`, `select!`) has one trace per resource, separated by
//! `# also awaiting:`. rdebug's own task in each runtime (which notices its shutdown) is left out,
//! so `total` matches `tasks=`. A current-thread runtime is not traced (tokio dumps one only from
//! inside it): its section says so and counts its tasks.
//!
//! # Costs and safety
//!
//! A dump pauses every worker of the runtime at a barrier, re-polls every idle task in a tracing
//! mode (tokio resources answer `Pending` at once and defer a wake, so every traced task is
//! polled once more after the dump), then lets the workers go. Names and lines are resolved in
//! the process from the binary's debuginfo, on a thread of rdebug's (`rdebug-dump`), not on a
//! worker: the first resolution parses the debuginfo (100 ms and more, and the parsed tables
//! stay cached in memory), later ones are faster. At most [`MAX_TRACED`] tasks are resolved and
//! [`MAX_BYTES`] written; one line counts the rest. One dump runs at a time: another request
//! gets 409 saying what the running one waits for.
//!
//! What tokio 1.54.1 does when a worker does not come (read from its source,
//! `runtime/scheduler/multi_thread/{handle,worker}/taskdump.rs`, `trace.rs`, `loom/std/barrier.rs`):
//!
//! * `Handle::dump` runs the request on a thread of its own and the caller only awaits a oneshot
//!   answer. Dropping the caller's future on a timeout cancels nothing: the thread keeps its
//!   request up (`trace_requested`) until the workers have traced and it has taken the result,
//!   then ends. The runtime is left as after any dump. So a timeout is safe for the caller.
//! * While that request is up, a second `Handle::dump` spins (`notify_all` + `yield_now` in a
//!   loop) on its own thread until the first ends: a CPU burnt for as long as the workers stay
//!   blocked. rdebug therefore keeps its one-dump slot until tokio's dump has really ended (its
//!   thread awaits it after answering), and refuses others with 409 meanwhile.
//! * Workers wait for each other at a barrier for 250 ms, then give up and run on; the barrier's
//!   timed wait does not undo its arrival count (tokio-rs/tokio#8370, open). A worker blocked
//!   for longer than that in synchronous code can so make a later arrival lead the trace alone,
//!   tracing tasks that another worker may be running (tokio's assertion then panics a worker),
//!   or leave that leader waiting for good at the end barrier. No blocked worker is needed: a
//!   worker that comes out of the end barrier and passes its maintenance before the requesting
//!   thread has lowered `trace_requested` enters the start barrier again, times out alone and
//!   leaves an arrival behind; the next dump's first worker then leads alone. The fix (roll the
//!   count back on timeout) is tokio's to make; nothing outside tokio can undo a stale arrival.
//!   So rdebug first watches each
//!   worker for [`PROBE`]: one that is out of its park and has not passed its scheduler's
//!   maintenance (poll and park counters unchanged) is in one poll for that long, and rdebug
//!   then requests no dump and says which workers block. A worker that blocks after the probe
//!   is not caught: the [`DUMP_TIMEOUT`] then answers.
//!
//! So the answer comes within [`PROBE`] + [`DUMP_TIMEOUT`] plus the time to resolve names; when
//! no runtime could be traced it is a 503 with one line per runtime saying why.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hyper::{Response, StatusCode};
use tokio::runtime::dump::{Dump, Trace};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use super::dumps::runtime_lines;
use super::reply::{self, Body, TEXT};
use crate::stats::{SchedStats, sched_stats};
use crate::runtime::watched;
use crate::sync::lock;

/// The longest rdebug waits for tokio's dump of the watched runtimes (all of them together)
/// before answering that it timed out: long enough for a runtime of many tasks, short enough
/// that a client, or `curl`, is not left hanging when a worker is blocked.
pub(crate) const DUMP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each worker is watched before a dump: longer than the 250 ms tokio's workers wait
/// for each other at the dump's barrier, so a worker that would miss it is seen.
pub(crate) const PROBE: Duration = Duration::from_millis(300);
/// Most tasks whose traces are resolved to names in one answer.
pub(crate) const MAX_TRACED: usize = 10_000;
/// Most bytes of one answer (past it, one line counts the tasks left out).
pub(crate) const MAX_BYTES: usize = 8 << 20;

/// The dump running now: when it started and what it waits for.
static RUNNING: Mutex<Option<(Instant, String)>> = Mutex::new(None);

/// The one-dump slot: held until tokio's dump has ended, freed when dropped.
struct Slot;

impl Slot {
    fn take() -> Result<Slot, String> {
        let mut running = lock(&RUNNING);
        if let Some((at, what)) = &*running {
            return Err(format!(
                "goroutine: a task dump started {:.1} s ago is still running ({what}); only one \
                 runs at a time: try again when it ends",
                at.elapsed().as_secs_f64()
            ));
        }
        *running = Some((Instant::now(), "watching the workers".into()));
        Ok(Slot)
    }

    fn now(&self, what: String) {
        if let Some(r) = lock(&RUNNING).as_mut() {
            r.1 = what;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *lock(&RUNNING) = None;
    }
}

/// A watched runtime to trace.
struct Target {
    label: String,
    handle: Handle,
    /// rdebug's own task in it, left out.
    own: tokio::task::Id,
}

/// What became of one runtime's dump.
enum Outcome {
    Traced(Dump),
    NotTraced(String),
}

/// The dump thread's answer.
enum Answer {
    Text(Vec<u8>),
    Refused(StatusCode, String),
}

/// `goroutine?debug=1|2`.
pub(crate) async fn serve(debug: u8) -> Response<Body> {
    let slot = match Slot::take() {
        Ok(s) => s,
        Err(why) => return reply::error(StatusCode::CONFLICT, &why),
    };
    let targets: Vec<Target> = watched::watched()
        .iter()
        .filter(|w| w.alive.load(Relaxed))
        .map(|w| Target {
            label: w.label.clone().unwrap_or_else(|| "main".into()),
            handle: w.handle.clone(),
            own: w.own_task,
        })
        .collect();
    if targets.is_empty() {
        return super::dumps::goroutine(debug);
    }
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("rdebug-dump".into())
        .spawn(move || run(slot, targets, debug, tx));
    if let Err(e) = spawned {
        let why = format!("goroutine: cannot start the dump thread: {e}");
        return reply::error(StatusCode::SERVICE_UNAVAILABLE, &why);
    }
    match rx.await {
        Ok(Answer::Text(text)) => reply::ok(TEXT, text),
        Ok(Answer::Refused(status, why)) => reply::error(status, &why),
        Err(_) => reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "goroutine: the dump thread ended without an answer",
        ),
    }
}

/// The dump thread: probe, dump under the timeout, answer, then wait out a late dump.
fn run(slot: Slot, targets: Vec<Target>, debug: u8, tx: oneshot::Sender<Answer>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let why = format!("goroutine: cannot build the dump thread's runtime: {e}");
            let _ = tx.send(Answer::Refused(StatusCode::SERVICE_UNAVAILABLE, why));
            return;
        }
    };
    rt.block_on(async move {
        let multi = |h: &Handle| matches!(h.runtime_flavor(), RuntimeFlavor::MultiThread);
        let before: Vec<_> = targets
            .iter()
            .map(|t| multi(&t.handle).then(|| counters(&t.handle)))
            .collect();
        tokio::time::sleep(PROBE).await;
        // The summary lines describe the runtimes as they were before the dump (which wakes
        // every traced task once).
        let stats: Vec<_> = targets.iter().map(|t| sched_stats(&t.handle)).collect();
        let deadline = tokio::time::Instant::now() + DUMP_TIMEOUT;
        let mut outcomes = Vec::with_capacity(targets.len());
        let mut late = None;
        for (t, before) in targets.iter().zip(before) {
            let Some(before) = before else {
                outcomes.push(Outcome::NotTraced(
                    "a current-thread runtime: tokio dumps one only from inside it".into(),
                ));
                continue;
            };
            let blocked = blocked(&before, &counters(&t.handle));
            if !blocked.is_empty() {
                outcomes.push(Outcome::NotTraced(format!(
                    "no dump requested: worker{} {} {} been in one poll for over {} ms \
                     (blocked in synchronous code?); a dump would wait for {}, and with tokio \
                     1.54 it can then wedge a worker (tokio-rs/tokio#8370)",
                    if blocked.len() > 1 { "s" } else { "" },
                    blocked.join(", "),
                    if blocked.len() > 1 { "have" } else { "has" },
                    PROBE.as_millis(),
                    if blocked.len() > 1 { "them" } else { "it" },
                )));
                continue;
            }
            if late.is_some() {
                outcomes.push(Outcome::NotTraced(
                    "not tried: an earlier runtime's dump used up the time".into(),
                ));
                continue;
            }
            slot.now(format!("waiting for the workers of runtime {}", t.label));
            let handle = t.handle.clone();
            let mut dump = Box::pin(async move { handle.dump().await });
            match tokio::time::timeout_at(deadline, dump.as_mut()).await {
                Ok(d) => outcomes.push(Outcome::Traced(d)),
                Err(_) => {
                    late = Some(dump);
                    outcomes.push(Outcome::NotTraced(format!(
                        "the dump timed out after {} s: a worker did not come to it (blocked in \
                         synchronous code, or a task's re-poll blocks); it goes on in the \
                         background and no other dump starts until it ends",
                        DUMP_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        slot.now("resolving names".into());
        let _ = tx.send(render(&targets, &stats, &outcomes, debug));
        drop(outcomes);
        if let Some(dump) = late {
            slot.now("a dump that timed out, still waiting for its workers".into());
            drop(dump.await);
        }
        drop(slot);
    });
}

/// Each worker's park/unpark and poll counters.
fn counters(h: &Handle) -> Vec<(u64, u64)> {
    let m = h.metrics();
    (0..m.num_workers())
        .map(|w| (m.worker_park_unpark_count(w), m.worker_poll_count(w)))
        .collect()
}

/// The workers (as `W<i>`) out of their park at both reads whose counters did not move: tokio
/// flushes them when a worker parks and at its maintenance every 61 ticks, so such a worker has
/// been in one poll (or very long ones) all the time between.
fn blocked(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| b == a && b.0 % 2 == 0)
        .map(|(i, _)| format!("W{i}"))
        .collect()
}

/// One resolved frame: address, function, `file:line`.
struct Frame {
    ip: usize,
    name: String,
    place: String,
}

/// A task's traces (one per tokio resource it awaits), innermost frame first.
fn frames(trace: &Trace) -> Vec<Vec<Frame>> {
    trace
        .resolve_backtraces()
        .iter()
        .map(|bt| {
            let mut out = Vec::new();
            for f in bt.frames() {
                let ip = f.ip() as usize;
                let mut any = false;
                for s in f.symbols() {
                    any = true;
                    let name = s.name_demangled().map_or("?", without_hash).to_owned();
                    let place = match (s.filename(), s.lineno()) {
                        (Some(file), Some(line)) => format!("{}:{line}", file.display()),
                        (Some(file), None) => file.display().to_string(),
                        _ => "?".into(),
                    };
                    out.push(Frame { ip, name, place });
                }
                if !any {
                    let (name, place) = ("?".into(), "?".into());
                    out.push(Frame { ip, name, place });
                }
            }
            out
        })
        .collect()
}

/// `name` without a legacy-mangling hash suffix (`::h0123456789abcdef`).
fn without_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

/// The answer: 503 when no runtime was traced, else the text.
fn render(targets: &[Target], stats: &[SchedStats], outcomes: &[Outcome], debug: u8) -> Answer {
    if outcomes.iter().all(|o| matches!(o, Outcome::NotTraced(_))) {
        let lines: Vec<String> = targets
            .iter()
            .zip(outcomes)
            .map(|(t, o)| match o {
                Outcome::NotTraced(why) => format!("goroutine: runtime {}: {why}", t.label),
                Outcome::Traced(_) => String::new(),
            })
            .collect();
        return Answer::Refused(StatusCode::SERVICE_UNAVAILABLE, lines.join("\n"));
    }
    let tasks = |t: &Target, d: &Dump| d.tasks().iter().filter(|k| k.id() != t.own).count();
    let total = targets
        .iter()
        .zip(outcomes)
        .zip(stats)
        .map(|((t, o), s)| match o {
            Outcome::Traced(d) => tasks(t, d),
            Outcome::NotTraced(_) => s.tasks,
        })
        .fold(0usize, usize::saturating_add);
    let mut out = Vec::with_capacity(4096);
    let _ = writeln!(out, "goroutine profile: total {total}");
    let mut budget = MAX_TRACED;
    for ((t, o), s) in targets.iter().zip(outcomes).zip(stats) {
        runtime_lines(&mut out, &t.label, s, debug);
        let dump = match o {
            Outcome::Traced(d) => d,
            Outcome::NotTraced(why) => {
                let _ = writeln!(out, "# {} tasks not traced: {why}", s.tasks);
                continue;
            }
        };
        let mut left_out = 0usize;
        let mut groups: Vec<(String, usize)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut grouped = 0usize;
        for task in dump.tasks().iter().filter(|k| k.id() != t.own) {
            if budget == 0 || out.len().saturating_add(grouped) >= MAX_BYTES {
                left_out += 1;
                continue;
            }
            budget -= 1;
            let traces = frames(task.trace());
            let mut block = String::new();
            if debug >= 2 {
                let _ = writeln!(block, "goroutine {} [runtime {}]:", task.id(), t.label);
                if traces.is_empty() {
                    block.push_str("# no trace: the task awaits no tokio resource\n");
                }
                for (i, tr) in traces.iter().enumerate() {
                    if i > 0 {
                        block.push_str("# also awaiting:\n");
                    }
                    for f in tr {
                        let _ = writeln!(block, "{}\n\t{}", f.name, f.place);
                    }
                }
                block.push('\n');
                out.extend_from_slice(block.as_bytes());
                continue;
            }
            let mut ips = String::new();
            if traces.is_empty() {
                block.push_str("#\t(no trace: the task awaits no tokio resource)\n");
            }
            for (i, tr) in traces.iter().enumerate() {
                if i > 0 {
                    block.push_str("# also awaiting:\n");
                }
                for f in tr {
                    if !ips.ends_with(&format!(" {:#x}", f.ip)) {
                        let _ = write!(ips, " {:#x}", f.ip);
                    }
                    let _ = writeln!(block, "#\t{:#x}\t{}\t{}", f.ip, f.name, f.place);
                }
            }
            let key = format!("@{ips}\n{block}");
            match index.get(&key) {
                Some(&g) => groups[g].1 += 1,
                None => {
                    grouped = grouped.saturating_add(2 * key.len());
                    index.insert(key.clone(), groups.len());
                    groups.push((key, 1));
                }
            }
        }
        groups.sort_by_key(|g| std::cmp::Reverse(g.1));
        for (key, count) in &groups {
            let _ = writeln!(out, "{count} {key}");
        }
        if left_out > 0 {
            let _ = writeln!(
                out,
                "# {left_out} more tasks not listed: at most {MAX_TRACED} tasks and {} MiB per answer",
                MAX_BYTES >> 20
            );
        }
    }
    Answer::Text(out)
}
