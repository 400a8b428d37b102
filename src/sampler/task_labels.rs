//! Labels that follow a future: [`labels`], Go's `pprof.Do` for futures.
//!
//! A labelled future sets a thread-local pointer to a frame on its own stack while it is polled
//! (the frame points at the label bytes it owns, and at the frame of the labelled future
//! around it, if any), and puts the previous pointer back when the poll returns, also when it
//! unwinds. The CPU sampler's `SIGPROF` handler, running on the thread it interrupted, walks
//! that chain and copies the labels into its sample: a `const` thread-local without a
//! destructor and a few bounded copies, so no allocation and no lock. The heap profiler's stack
//! hook, which jemalloc calls for sampled allocations only, reads the same thread-local (one
//! load when it is null) and copies the labels the same way.
//!
//! Without the `pprof` feature [`labels`] returns the future itself.

use std::future::Future;

/// Most label pairs one [`labels`] call keeps (more are left out).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) const MAX_PAIRS: usize = 8;
/// Longest key kept, bytes (longer ones are cut at a character boundary).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) const MAX_KEY: usize = 32;
/// Longest value kept, bytes (longer ones are cut at a character boundary).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) const MAX_VALUE: usize = 96;
/// Bytes of label data one sample carries: the labels of all the scopes around the sampled
/// code, innermost first; pairs that do not fit are left out.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) const SAMPLE_BYTES: usize = 240;

/// Runs `fut` with the profiler labels `pairs`, as Go's `pprof.Do` runs a function: while the
/// returned future is polled, CPU samples taken on its thread carry the labels (and the id of
/// the tokio task polling it, as `task_id`), so `go tool pprof -tagfocus=route=/cache` shows
/// the time spent for that route and `-tags` lists the labels. A labelled future awaited inside
/// another one carries both sets (the inner value wins for a key in both); a task spawned from
/// inside carries none unless it is labelled itself.
///
/// Block profile samples carry them as CPU samples do. Heap samples (`/debug/pprof/heap`,
/// `allocs`, [`profile::heap`](crate::profile::heap)) carry the labels in force when the sampled
/// allocation was made, but not the task id: `go tool pprof -sample_index=inuse_space
/// -tagfocus=route=/cache` shows the memory still held that was allocated for that route,
/// whichever task frees it later. (Go's heap profiles carry no labels; a task id there would make
/// every task's allocations their own record, in jemalloc as in the profile, and memory often
/// outlives the task that allocated it.) jemalloc's profiler keeps its counts per stack, so the
/// label set travels in the sampled stack, as an index into a table of the label sets seen, and
/// jemalloc keeps a record per (stack, label set) and thread for the life of the process. So
/// what labels add to heap profiling is bounded (3.4 MiB at most, at any rate): up to 1024
/// distinct sets and 2048 (stack, set, thread) records keep their labels; heap samples beyond
/// that are taken without labels, stderr says so once naming the key, and the heap profile's
/// comment counts them (CPU samples keep theirs). Use route templates (`/users/:id`), not raw
/// paths or ids, as values. Labelling costs heap sampling
/// about 470 instructions per sampled stack (one sample per 512 KiB allocated, on average), and
/// nothing measurable for allocations made without labels. Stacks taken by libgcc
/// (`RDEBUG_HEAP_UNWIND=libgcc`) carry no labels.
///
/// The task id is read by the labelled future when it is polled. Outside any labelled future,
/// the signal handler asks tokio only on the worker threads of watched runtimes that rdebug has
/// found (a CPU or block profile, or `stalltrace`, sends one short task to each worker first):
/// reaching tokio's thread-local for the first time on a thread registers its destructor, which
/// may allocate, and a signal handler must not. So unlabelled code on those workers carries its
/// `task_id` too; elsewhere (a worker rdebug has not found, an unwatched runtime), wrapping a task
/// in `labels(&[], fut)` gives its samples the `task_id` label alone.
///
/// Bounded: at most 8 pairs (later ones are left out; for a repeated key the last value wins),
/// keys cut to 32 bytes and values to 96 bytes at a character boundary, pairs with an empty key
/// left out, and 240 bytes of labels per sample (the outermost labels that do not fit are left
/// out of that sample). The labels are copied once, when `labels` is called; a poll then costs a
/// few nanoseconds more (`benches/labels.rs`). Without the `pprof` feature this returns `fut`
/// itself and costs nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// async fn cache() -> u32 {
///     42
/// }
/// let n = rdebug::labels(&[("route", "/cache")], cache()).await;
/// assert_eq!(n, 42);
/// # }
/// ```
///
/// Each request of an axum app labelled by its matched route, in three lines of middleware
/// (`examples/webapp.rs` does this):
///
/// ```
/// use axum::{extract::{MatchedPath, Request}, middleware::Next, response::Response};
///
/// async fn label_route(req: Request, next: Next) -> Response {
///     let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
///     rdebug::labels(&[("route", route.as_deref().unwrap_or(""))], next.run(req)).await
/// }
///
/// let app: axum::Router = axum::Router::new()
///     .route("/cache", axum::routing::post(|| async { "ok" }))
///     .layer(axum::middleware::from_fn(label_route));
/// # let _ = app;
/// ```
#[inline(always)]
pub fn labels<F: Future>(
    pairs: &[(&str, &str)],
    fut: F,
) -> impl Future<Output = F::Output> + use<F> {
    imp::wrap(pairs, fut)
}

thread_local! {
    /// Set on threads known to run tokio tasks (rdebug's probe task ran there), where tokio's
    /// own thread-local is set up, so the signal handler may ask it for the task id.
    static TOKIO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one that runs tokio tasks (call it from inside a task).
pub(crate) fn mark_tokio_thread() {
    let _ = TOKIO_THREAD.try_with(|f| f.set(true));
}

/// The id of the tokio task running on this thread, 0 for none or unknown. Async-signal-safe:
/// asks tokio only on a thread [`mark_tokio_thread`] marked.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) fn task_id_in_handler() -> u64 {
    if !TOKIO_THREAD.try_with(std::cell::Cell::get).unwrap_or(false) {
        return 0;
    }
    tokio::task::try_id().map_or(0, id_number)
}

/// The number a tokio `Id` shows, a task's or a runtime's (tokio has no other public way to read
/// it). No allocation, no lock (it runs in the CPU profiler's signal handler, and in the
/// allocator's runtime probe).
///
/// Both `Id`s derive `Hash` over a `NonZeroU64`, which hashes as one `write_u64` of the
/// number: that is read first, in a few instructions (formatting the `Id` and reading its digits
/// back cost about 200 per call, once per labelled future: measured in `BENCHMARKS.md`). Should a
/// tokio version hash it any other way, the number comes from its `Display`, as tokio shows it.
pub(crate) fn id_number<I: std::hash::Hash + std::fmt::Display>(id: I) -> u64 {
    use std::hash::Hasher;
    /// Keeps the one `u64` written, and notes anything else.
    struct OneU64 {
        n: Option<u64>,
        other: bool,
    }
    impl Hasher for OneU64 {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {
            self.other = true;
        }
        fn write_u64(&mut self, n: u64) {
            self.other |= self.n.replace(n).is_some();
        }
    }
    let mut h = OneU64 {
        n: None,
        other: false,
    };
    id.hash(&mut h);
    match h {
        OneU64 {
            n: Some(n),
            other: false,
        } => n,
        _ => shown_number(id),
    }
}

/// The digits of tokio's `Display` of `id`, as a number. No allocation.
fn shown_number(id: impl std::fmt::Display) -> u64 {
    struct Digits(u64);
    impl std::fmt::Write for Digits {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for b in s.bytes().filter(u8::is_ascii_digit) {
                self.0 = self
                    .0
                    .saturating_mul(10)
                    .saturating_add(u64::from(b - b'0'));
            }
            Ok(())
        }
    }
    let mut d = Digits(0);
    let _ = std::fmt::write(&mut d, format_args!("{id}"));
    d.0
}

#[cfg(not(feature = "pprof"))]
mod imp {
    use std::future::Future;

    pub(super) fn wrap<F: Future>(_pairs: &[(&str, &str)], fut: F) -> F {
        fut
    }
}

#[cfg(feature = "pprof")]
pub(crate) use imp::{
    Captured, capture, capture_labels, capture_remote, labelled_here, pairs, state_address,
};

#[cfg(feature = "pprof")]
mod imp {
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{Ordering, compiler_fence};
    use std::task::{Context, Poll};

    use super::{MAX_KEY, MAX_PAIRS, MAX_VALUE, SAMPLE_BYTES, id_number};
    #[allow(unused_imports)]
    use std::mem::size_of;

    /// The part of a labelled future's poll the handler reads: on the polling thread's stack.
    struct Frame {
        /// The label bytes (`[key len][key][value len][value]`…), owned by the future.
        set: *const u8,
        len: usize,
        /// The enclosing labelled poll's frame, or null.
        parent: *const Frame,
        /// The tokio task id, or 0 outside a task.
        task: u64,
    }

    thread_local! {
        /// The innermost labelled poll running on this thread, or null. `const`, no destructor:
        /// reading it never allocates or registers anything (the signal handler reads it).
        static CURRENT: Cell<*const Frame> = const { Cell::new(std::ptr::null()) };
    }

    /// Deepest chain of nested labelled polls the handler walks.
    const MAX_NESTING: usize = 32;

    /// The largest `n <= max` that is a character boundary of `s`.
    fn cut(s: &str, max: usize) -> &str {
        if s.len() <= max {
            return s;
        }
        let mut n = max;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        &s[..n]
    }

    /// The label bytes of `pairs`: bounded, empty keys left out, the last value of a repeated
    /// key kept.
    pub(super) fn encode(pairs: &[(&str, &str)]) -> Box<[u8]> {
        // On the stack: one allocation per label set, the result's.
        let mut slots = [("", ""); MAX_PAIRS];
        let mut n = 0;
        for &(k, v) in pairs {
            let (k, v) = (cut(k, MAX_KEY), cut(v, MAX_VALUE));
            if k.is_empty() {
                continue;
            }
            if let Some(p) = slots[..n].iter_mut().find(|p| p.0 == k) {
                p.1 = v;
            } else if n < MAX_PAIRS {
                slots[n] = (k, v);
                n += 1;
            }
        }
        let kept = &slots[..n];
        let mut out = Vec::with_capacity(kept.iter().map(|(k, v)| 2 + k.len() + v.len()).sum());
        for &(k, v) in kept {
            // Both fit in a byte: MAX_KEY and MAX_VALUE are below 256.
            out.push(k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.push(v.len() as u8);
            out.extend_from_slice(v.as_bytes());
        }
        out.into_boxed_slice()
    }

    /// The pairs of label bytes made by [`encode`] or [`capture`] (stops at anything malformed).
    pub(crate) fn pairs(mut b: &[u8]) -> impl Iterator<Item = (&str, &str)> {
        std::iter::from_fn(move || {
            let (&kl, rest) = b.split_first()?;
            let k = rest.get(..usize::from(kl))?;
            let (&vl, rest) = rest[usize::from(kl)..].split_first()?;
            let v = rest.get(..usize::from(vl))?;
            b = &rest[usize::from(vl)..];
            Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?))
        })
    }

    /// What the handler copied: the labels in force and the task id.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Captured {
        pub len: u16,
        pub bytes: [u8; SAMPLE_BYTES],
        /// The tokio task id, 0 for none.
        pub task: u64,
    }

    impl Captured {
        pub(crate) const EMPTY: Captured = Captured {
            len: 0,
            bytes: [0; SAMPLE_BYTES],
            task: 0,
        };

        /// The label bytes.
        pub(crate) fn labels(&self) -> &[u8] {
            &self.bytes[..usize::from(self.len).min(SAMPLE_BYTES)]
        }
    }

    /// Copies the labels in force on this thread into `out`: innermost scope first, a key
    /// already there (set by an inner scope) skipped, pairs that do not fit left out.
    /// Async-signal-safe: no allocation, no lock, bounded work.
    pub(crate) fn capture(out: &mut Captured) {
        capture_labels(out);
        if out.task == 0 {
            out.task = super::task_id_in_handler();
        }
    }

    /// Whether a labelled future is being polled on this thread: one load of a `const`
    /// thread-local (what the heap profiler's stack hook checks first, so that unlabelled
    /// allocations pay nothing more).
    #[inline]
    pub(crate) fn labelled_here() -> bool {
        !CURRENT
            .try_with(Cell::get)
            .unwrap_or(std::ptr::null())
            .is_null()
    }

    /// [`capture`] without asking tokio for the task id when no labelled future knows it:
    /// touches no thread-local but rdebug's own `const` one (safe inside the allocator, where
    /// the heap profiler's stack hook runs).
    pub(crate) fn capture_labels(out: &mut Captured) {
        out.len = 0;
        out.task = 0;
        let mut frame = CURRENT.try_with(Cell::get).unwrap_or(std::ptr::null());
        let mut len = 0usize;
        let mut depth = 0;
        while !frame.is_null() && depth < MAX_NESTING {
            // SAFETY: every frame in the chain lives on this thread's stack, in a poll that has
            // not returned (each poll puts its parent back before its frame goes).
            let f = unsafe { &*frame };
            if out.task == 0 {
                out.task = f.task;
            }
            // SAFETY: the set is owned by the future being polled, alive for the poll.
            let set = unsafe { std::slice::from_raw_parts(f.set, f.len) };
            add_set(out, &mut len, set);
            frame = f.parent;
            depth += 1;
        }
        out.len = len as u16;
    }

    /// Appends the pairs of `set` whose keys `out` lacks (an inner scope's win), as fit.
    fn add_set(out: &mut Captured, len: &mut usize, set: &[u8]) {
        let mut i = 0;
        while i + 1 < set.len() {
            let kl = usize::from(set[i]);
            let Some(&vl) = set.get(i + 1 + kl) else {
                break;
            };
            let pair = 2 + kl + usize::from(vl);
            let Some(bytes) = set.get(i..i + pair) else {
                break;
            };
            let key = &bytes[..1 + kl];
            if !has_key(&out.bytes[..*len], key) && *len + pair <= SAMPLE_BYTES {
                out.bytes[*len..*len + pair].copy_from_slice(bytes);
                *len += pair;
            }
            i += pair;
        }
    }

    /// The address of this thread's label state, for [`capture_remote`] on another thread (0
    /// while the thread is being torn down). No allocation: a `const` thread-local.
    pub(crate) fn state_address() -> usize {
        CURRENT
            .try_with(|c| std::ptr::from_ref(c) as usize)
            .unwrap_or(0)
    }

    /// [`capture_labels`] for another thread, blocked in a system call, whose label state is at
    /// `state` ([`state_address`] on that thread): every read goes through the kernel
    /// ([`read_memory`](crate::sys::thread::read_memory)), so a chain that changed meanwhile
    /// gives wrong labels at worst (the caller checks the thread did not move), never a fault.
    pub(crate) fn capture_remote(state: usize, out: &mut Captured) {
        use crate::sys::thread::read_memory;
        out.len = 0;
        out.task = 0;
        let read_word = |addr: usize| {
            let mut b = [0u8; size_of::<usize>()];
            (read_memory(addr as u64, &mut b) == b.len()).then(|| usize::from_ne_bytes(b))
        };
        let Some(mut frame) = read_word(state) else {
            return;
        };
        let mut len = 0usize;
        let mut depth = 0;
        // Largest set `encode` makes: MAX_PAIRS pairs of a length byte and bytes each.
        let mut set = [0u8; MAX_PAIRS * (2 + MAX_KEY + MAX_VALUE)];
        while frame != 0 && depth < MAX_NESTING {
            let mut raw = std::mem::MaybeUninit::<Frame>::uninit();
            // SAFETY: a byte view of `raw`'s own storage.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(raw.as_mut_ptr().cast::<u8>(), size_of::<Frame>())
            };
            if read_memory(frame as u64, bytes) != bytes.len() {
                break;
            }
            // SAFETY: every byte was written; `Frame` is plain integers and pointers, valid for
            // any bits (its pointers are only ever read through the kernel here).
            let f = unsafe { raw.assume_init() };
            if out.task == 0 {
                out.task = f.task;
            }
            let n = f.len.min(set.len());
            if read_memory(f.set as u64, &mut set[..n]) != n {
                break;
            }
            add_set(out, &mut len, &set[..n]);
            frame = f.parent as usize;
            depth += 1;
        }
        out.len = len as u16;
    }

    /// Whether the label bytes `b` have the key `key` (its length byte and bytes).
    fn has_key(b: &[u8], key: &[u8]) -> bool {
        let mut i = 0;
        while i < b.len() {
            let kl = usize::from(b[i]);
            if b.get(i..i + 1 + kl) == Some(key) {
                return true;
            }
            let vl = b.get(i + 1 + kl).map_or(0, |&v| usize::from(v));
            i += 2 + kl + vl;
        }
        false
    }

    /// A future polled under labels.
    struct Labeled<F> {
        set: Box<[u8]>,
        /// The task id seen at the previous poll and its number (tokio's `Id` shows it only
        /// through `Display`): formatted again only when the task changes.
        task: Option<(tokio::task::Id, u64)>,
        fut: F,
    }

    /// Puts the enclosing poll's frame back when the poll returns or unwinds.
    struct Restore(*const Frame);

    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|c| c.set(self.0));
            compiler_fence(Ordering::SeqCst);
        }
    }

    impl<F: Future> Future for Labeled<F> {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            // SAFETY: `fut` is pinned structurally and never moved out; the other fields are
            // not pinned.
            let this = unsafe { self.get_unchecked_mut() };
            let task = match (tokio::task::try_id(), this.task) {
                (None, _) => 0,
                (Some(id), Some((seen, n))) if id == seen => n,
                (Some(id), _) => {
                    super::mark_tokio_thread();
                    let n = id_number(id);
                    this.task = Some((id, n));
                    n
                }
            };
            let Ok(parent) = CURRENT.try_with(Cell::get) else {
                // SAFETY: as above.
                return unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx);
            };
            let frame = Frame {
                set: this.set.as_ptr(),
                len: this.set.len(),
                parent,
                task,
            };
            compiler_fence(Ordering::SeqCst);
            CURRENT.with(|c| c.set(&frame));
            let _restore = Restore(parent);
            // SAFETY: as above.
            unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx)
        }
    }

    #[inline(always)]
    pub(super) fn wrap<F: Future>(
        pairs: &[(&str, &str)],
        fut: F,
    ) -> impl Future<Output = F::Output> + use<F> {
        Labeled {
            set: encode(pairs),
            task: None,
            fut,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn captured() -> Vec<(String, String)> {
            let mut c = Captured::EMPTY;
            capture(&mut c);
            pairs(c.labels())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        }

        fn block_on<F: Future>(f: F) -> F::Output {
            let mut f = std::pin::pin!(f);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            loop {
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    return v;
                }
            }
        }

        /// The task number read from `Id`'s hash is the number tokio shows, on every task.
        #[test]
        fn task_numbers_are_the_ids_tokio_shows() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            for _ in 0..50 {
                let id = rt
                    .block_on(rt.spawn(async { tokio::task::id() }))
                    .expect("task");
                let shown: u64 = id.to_string().parse().expect("tokio shows a number");
                assert_eq!(id_number(id), shown);
                assert_eq!(super::super::shown_number(id), shown);
            }
        }

        #[test]
        fn labels_are_set_while_polled_nested_and_cleared_after() {
            assert!(captured().is_empty());
            let got = block_on(wrap(&[("route", "/a"), ("x", "1")], async {
                let outer = captured();
                let inner = wrap(&[("x", "2"), ("y", "3")], async { captured() }).await;
                (outer, inner, captured())
            }));
            let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
            assert_eq!(got.0, [p("route", "/a"), p("x", "1")]);
            assert_eq!(got.1, [p("x", "2"), p("y", "3"), p("route", "/a")]);
            assert_eq!(got.2, got.0);
            assert!(captured().is_empty());
        }

        #[test]
        fn a_panicking_poll_puts_the_labels_back() {
            let r = std::panic::catch_unwind(|| {
                block_on(wrap(&[("k", "v")], async { panic!("boom") }))
            });
            assert!(r.is_err());
            assert!(captured().is_empty());
        }

        #[test]
        fn labels_are_bounded() {
            let huge = "é".repeat(1000);
            let many: Vec<(String, String)> = (0..20)
                .map(|i| (format!("k{i}"), format!("v{i}")))
                .collect();
            let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (&**k, &**v)).collect();
            let set = encode(&many);
            assert_eq!(pairs(&set).count(), MAX_PAIRS);
            let set = encode(&[("", "x"), (&huge, &huge), ("k", ""), ("k", "last")]);
            let got: Vec<_> = pairs(&set).collect();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].0.len(), MAX_KEY); // 16 two-byte characters
            assert_eq!(got[0].1.len(), MAX_VALUE);
            assert_eq!(got[1], ("k", "last"));
            // Nested scopes of huge labels: a sample keeps what fits, never more.
            let n = block_on(wrap(&[("a", &huge)], async {
                wrap(&[("b", &huge)], async {
                    wrap(&[("c", &huge)], async { captured() }).await
                })
                .await
            }));
            let bytes: usize = n.iter().map(|(k, v)| 2 + k.len() + v.len()).sum();
            assert!(bytes <= SAMPLE_BYTES && n.len() == 2, "{n:?}");
            assert_eq!(n[0].0, "c");
        }

        #[test]
        fn the_task_id_is_the_polling_tasks() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let (id, c) = rt.block_on(async {
                tokio::spawn(wrap(&[("r", "x")], async {
                    let mut c = Captured::EMPTY;
                    capture(&mut c);
                    (tokio::task::id(), c.task)
                }))
                .await
                .unwrap()
            });
            assert_eq!(id.to_string(), c.to_string());
        }
    }
}
