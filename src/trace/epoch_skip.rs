//! When the reporter may skip jemalloc's `epoch`: the policy that lets an idle program's reporter
//! stop touching jemalloc.

use std::sync::atomic::Ordering::Relaxed;

use crate::alloc::mallctl::HeapSample;
use crate::stats::alloc_counters;
use crate::stats::gc::{POLLER_ACTIVE, Tracker};

/// The last allocator sample and the activity around it.
#[derive(Default)]
pub(super) struct EpochSkip {
    /// `[allocs + frees, threads, slots, num_gc]` when the last real sample was taken.
    key: [u64; 4],
    sample: Option<HeapSample>,
    /// The last two real samples saw the same key.
    confirmed: bool,
    /// `rdebug::Alloc` is the global allocator, so its counters see every allocator call.
    pub(super) counted: bool,
}

impl EpochSkip {
    /// Samples the allocator for cycles: `Tracker::poll`, which advances jemalloc's `epoch` (it
    /// takes every arena's locks and merges their statistics: ~7 µs per arena in use with warm
    /// caches, several times that with the cold caches of a thread that wakes every 100 ms), or,
    /// when the allocator cannot have changed, the last sample again, which is what `epoch` would
    /// have returned.
    ///
    /// It cannot have changed when no call went through `rdebug::Alloc` on any thread, no thread
    /// took or handed back a counter slot, no cycle was closed by anyone else (`free_os_memory`),
    /// jemalloc runs no background threads (those purge on their own) and this is the only
    /// poller; and, to let the jemalloc work of a thread that just exited land, only after two
    /// real samples in a row saw it so.
    pub(super) fn sample(&mut self, t: &mut Tracker, rss: u64) {
        let c = alloc_counters();
        let key = [
            c.allocs.wrapping_add(c.frees),
            c.threads,
            c.slots,
            t.totals().num_gc,
        ];
        if let Some(s) = self.sample
            && self.confirmed
            && self.counted
            && self.key == key
            && s.background_threads == 0
            && POLLER_ACTIVE.load(Relaxed) == 1
        {
            t.observe(s, crate::stats::gc::live_bytes(&s, &c), rss, false);
            return;
        }
        let s = t.poll(rss);
        self.confirmed = self.sample.is_some() && s.is_some() && self.key == key;
        self.key = key;
        self.sample = s;
    }
}
