//! A bounded, preallocated, lock-free queue of stack samples: many signal handlers write, one
//! profile thread reads (Vyukov's bounded queue: a sequence number per slot).
//!
//! Writing allocates nothing, takes no lock and never waits for the reader: a full queue drops
//! the sample and counts it ([`Ring::lost`]).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sampler::task_labels::Captured;

/// Most frames kept per sample (Go keeps 64).
pub(crate) const MAX_DEPTH: usize = 64;

/// One sample: its weight, stack, and the labels and task id in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub weight_ns: u64,
    pub depth: usize,
    pub frames: [u64; MAX_DEPTH],
    pub tags: Captured,
}

impl Sample {
    pub(crate) const EMPTY: Sample = Sample {
        weight_ns: 0,
        depth: 0,
        frames: [0; MAX_DEPTH],
        tags: Captured::EMPTY,
    };

    pub(crate) fn stack(&self) -> &[u64] {
        &self.frames[..self.depth.min(MAX_DEPTH)]
    }
}

struct Slot {
    seq: AtomicUsize,
    sample: UnsafeCell<Sample>,
}

/// The queue.
pub(crate) struct Ring {
    slots: Box<[Slot]>,
    head: AtomicUsize,
    tail: AtomicUsize,
    lost: AtomicU64,
}

// SAFETY: a slot's sample is touched only by the one writer or the one reader that its
// sequence number hands it to.
unsafe impl Sync for Ring {}
// SAFETY: as above.
unsafe impl Send for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.slots.len())
            .field("lost", &self.lost())
            .finish()
    }
}

impl Ring {
    /// A queue of `capacity` samples (~780 bytes each), allocated now.
    pub(crate) fn new(capacity: usize) -> Ring {
        let slots = (0..capacity.max(2))
            .map(|i| Slot {
                seq: AtomicUsize::new(i),
                sample: UnsafeCell::new(Sample::EMPTY),
            })
            .collect();
        Ring {
            slots,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// Claims a slot, lets `fill` write the sample in place, and publishes it. Returns false
    /// (and counts a lost sample) when the queue is full. Async-signal-safe.
    pub(crate) fn push(&self, fill: impl FnOnce(&mut Sample)) -> bool {
        let n = self.slots.len();
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos % n];
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == pos {
                match self.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the sequence number gives this writer the slot alone.
                        fill(unsafe { &mut *slot.sample.get() });
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return true;
                    }
                    Err(p) => pos = p,
                }
            } else if (seq.wrapping_sub(pos) as isize) < 0 {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return false;
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the oldest sample, if any (one reader at a time).
    pub(crate) fn pop(&self, out: &mut Sample) -> bool {
        let n = self.slots.len();
        let pos = self.tail.load(Ordering::Relaxed);
        let slot = &self.slots[pos % n];
        if slot.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
            return false;
        }
        // SAFETY: published by its writer (Acquire above); no writer takes it until the store below.
        *out = unsafe { *slot.sample.get() };
        slot.seq.store(pos.wrapping_add(n), Ordering::Release);
        self.tail.store(pos.wrapping_add(1), Ordering::Relaxed);
        true
    }

    /// Samples dropped because the queue was full.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_out_in_order_and_a_full_ring_counts_losses() {
        let r = Ring::new(4);
        for i in 0..6u64 {
            r.push(|s| {
                s.weight_ns = i;
                s.depth = 1;
                s.frames[0] = i;
            });
        }
        assert_eq!(r.lost(), 2);
        let mut s = Sample::EMPTY;
        for i in 0..4u64 {
            assert!(r.pop(&mut s));
            assert_eq!((s.weight_ns, s.stack()), (i, &[i][..]));
        }
        assert!(!r.pop(&mut s));
        assert!(r.push(|s| s.weight_ns = 9));
        assert!(r.pop(&mut s));
        assert_eq!(s.weight_ns, 9);
    }

    #[test]
    fn many_writers_lose_nothing_when_the_reader_keeps_up() {
        let r = std::sync::Arc::new(Ring::new(64));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        while !r.push(|s| s.weight_ns = 1) {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut s = Sample::EMPTY;
        let mut got = 0;
        while got < 4000 {
            if r.pop(&mut s) {
                got += s.weight_ns;
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(!r.pop(&mut s));
    }
}
