//! The bounds on one symbolization (one profile request), and the DWARF contexts of one object
//! as its addresses are named one unit at a time.
//!
//! * **Time**: DWARF is read for at most [`MAX_TIME`]; addresses after that get their symbol
//!   table's name alone.
//! * **Memory**: while what the symbolizing thread allocated and has not freed stays under
//!   [`MAX_LIVE_BYTES`] (measured by [`Alloc`](crate::Alloc)'s own per-thread counters, so only
//!   with `rdebug::Alloc` as the global allocator); past it, the contexts are dropped and the
//!   rest of the addresses get their symbol table's name alone. The bound is checked between
//!   addresses: one unit's context may go past it before it is noticed.
//! * **Depth**: a unit that nests inlined subroutines deeper than
//!   [`MAX_INLINE_NESTING`](super::dwarf::MAX_INLINE_NESTING) is not read (`addr2line` would
//!   recurse once per level), and symbolizing runs on a thread of its own whose stack holds that
//!   many levels many times over ([`on_own_stack`]).
//!
//! When a bound is hit the profile is still served, and one comment says which and how many
//! addresses it left with the symbol table's name alone.

use std::time::{Duration, Instant};

use super::dwarf::{Dwarf, Part, Refused, UnitContext};
use super::objects::dwarf_frames;
use super::resolved::Frame;

/// The calling thread's allocated and freed bytes so far (its own counters).
fn this_thread_bytes() -> (u64, u64) {
    let own = crate::alloc::this_thread_counters();
    (own.allocated_bytes, own.freed_bytes)
}

/// Longest time one symbolization reads DWARF.
pub(crate) const MAX_TIME: Duration = Duration::from_secs(10);
/// Most bytes one symbolization holds on the heap while it reads DWARF.
pub(crate) const MAX_LIVE_BYTES: u64 = 256 << 20;
/// The stack of the thread that symbolizes: address space, touched only as deep as the walk
/// goes. Measured with the test `deeply_nested_debug_info_neither_crashes_nor_hangs_the_host`'s
/// object and the nesting limit lifted: a debug build of `addr2line` overflows this stack
/// between 5,000 and 10,000 nested inlined subroutines (2 to 3.4 KiB a level), so the
/// [`MAX_INLINE_NESTING`](super::dwarf::MAX_INLINE_NESTING) levels it is given take under 1 MiB.
pub(crate) const STACK: usize = 16 << 20;

/// The time and memory left to one symbolization.
#[derive(Debug)]
pub(crate) struct Budget {
    deadline: Instant,
    max_live: u64,
    /// The thread's allocated and freed bytes when it started.
    start: (u64, u64),
    /// The bound hit first, if one was.
    hit: Option<&'static str>,
    /// Addresses left with the symbol table's name alone because of it.
    pub(crate) skipped: usize,
}

impl Budget {
    /// The default bounds, from now, on this thread.
    pub(crate) fn new() -> Budget {
        Budget::with(MAX_TIME, MAX_LIVE_BYTES)
    }

    /// `time` and `live` bytes from now, on this thread.
    pub(crate) fn with(time: Duration, live: u64) -> Budget {
        Budget {
            deadline: Instant::now() + time,
            max_live: live,
            start: this_thread_bytes(),
            hit: None,
            skipped: 0,
        }
    }

    /// Whether DWARF may still be read (checks the clock and the thread's heap).
    pub(crate) fn allows(&mut self) -> bool {
        if self.hit.is_some() {
            return false;
        }
        let (allocated, freed) = this_thread_bytes();
        let live = allocated
            .wrapping_sub(self.start.0)
            .saturating_sub(freed.wrapping_sub(self.start.1));
        if live > self.max_live {
            self.hit = Some("memory");
        } else if Instant::now() >= self.deadline {
            self.hit = Some("time");
        }
        self.hit.is_none()
    }

    /// The profile's comment when a bound was hit.
    pub(crate) fn note(&self) -> Option<String> {
        let hit = self.hit?;
        Some(format!(
            "rdebug: symbolizing hit its {hit} bound ({} s, {} MiB of heap per profile): {} addresses have only their symbol table's name, without inlined functions or file:line",
            MAX_TIME.as_secs(),
            MAX_LIVE_BYTES >> 20,
            self.skipped
        ))
    }
}

/// Runs `f` on a thread of its own with a [`STACK`]-byte stack and returns what it returns
/// (on the calling thread if no thread can be started; `None` if `f` panicked).
pub(crate) fn on_own_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let f = std::sync::Arc::new(std::sync::Mutex::new(Some(f)));
    let theirs = f.clone();
    let spawned = std::thread::Builder::new()
        .name("rdebug-symbols".into())
        .stack_size(STACK)
        .spawn(move || {
            let f = crate::sync::lock(&theirs).take();
            f.map(|f| f())
        });
    match spawned {
        Ok(h) => h.join().ok().flatten(),
        Err(_) => crate::sync::lock(&f).take().map(|f| f()),
    }
}

/// One object's DWARF contexts while its addresses are named, a unit at a time: the context in
/// use and, once needed, the whole section's.
#[derive(Default)]
pub(crate) struct Contexts {
    /// The unit it serves, the part it was made of, the context.
    current: Option<(Part, Part, Result<UnitContext, Refused>)>,
    /// The whole `.debug_info`, made only if a unit with its references is not enough.
    whole: Option<Result<UnitContext, Refused>>,
}

impl Contexts {
    /// The frames DWARF gives for file address `svma`, in part `p` of `d`.
    pub(crate) fn frames(&mut self, d: &Dwarf, p: Part, svma: u64) -> Result<Vec<Frame>, Refused> {
        // Once the whole section is read, it serves the rest of this object's addresses: no
        // unit is read a second time.
        if let Some(w) = &self.whole {
            return frames_of(w, svma);
        }
        if p == Part::Whole {
            return frames_of(self.whole.insert(d.context(Part::Whole)), svma);
        }
        if self.current.as_ref().is_none_or(|c| c.0 != p) {
            // The previous unit's context is dropped first: one at a time.
            drop(self.current.take());
            self.current = Some((p, p, d.context(p)));
        }
        let Some(c) = self.current.as_mut() else {
            return Err(Refused::Unreadable);
        };
        let mut r = frames_of(&c.2, svma);
        // A unit that refers into others (ThinLTO's imported functions keep their abstract
        // origin in the unit they came from): the unit with the units it refers to, then with
        // theirs. A unit refused as too deep is not read in any form.
        while matches!(r, Err(Refused::Unreadable)) {
            let next = match c.1 {
                Part::Unit(u) => Part::WithRefs(u, 1),
                Part::WithRefs(u, 1) => Part::WithRefs(u, 2),
                _ => break,
            };
            c.2 = Err(Refused::Unreadable);
            c.1 = next;
            c.2 = d.context(next);
            r = frames_of(&c.2, svma);
        }
        if matches!(r, Err(Refused::Unreadable)) {
            // References too far-reaching: the whole section, once.
            drop(self.current.take());
            r = frames_of(self.whole.insert(d.context(Part::Whole)), svma);
        }
        r
    }
}

fn frames_of(ctx: &Result<UnitContext, Refused>, svma: u64) -> Result<Vec<Frame>, Refused> {
    match ctx {
        Ok(c) => dwarf_frames(c, svma).map_err(|()| Refused::Unreadable),
        Err(e) => Err(*e),
    }
}
