//! Labels on heap samples: the [`labels`](crate::sampler::task_labels) in force when a sampled allocation was
//! made, carried through jemalloc's profiler as one pseudo-frame at the outer end of its stack.
//!
//! jemalloc keeps no per-sample data of ours: a sampled allocation has a backtrace, and its
//! counts are kept per distinct backtrace. So the stack hook (which runs only for sampled
//! allocations) appends one more "address" when a labelled future is being polled on the
//! thread: [`MARK`] plus the index of the label set in a fixed table of label sets, each set
//! interned there once. Allocations with different labels then land in different jemalloc
//! buckets (the backtrace is the key), and when a profile is read [`split`] takes the
//! pseudo-frame off again, before anything is symbolized, and gives back the labels.
//!
//! The table is static (no allocation, in the allocator or anywhere): [`SETS`] label sets of
//! up to [`SAMPLE_BYTES`] bytes, 256 KiB of address space, touched only as sets arrive. A set
//! is never removed (a sample may name it as long as its object lives); once the table holds
//! [`SETS`] sets (or [`PROBES`] probes found no room), samples with a new set carry no labels,
//! and [`super::label_budget`] counts them and warns once: the profile's comment says how many.
//! That module also bounds the (stack, label set, thread) records labels make in jemalloc.
//!
//! Not the tokio task id: it would make every task its own bucket (jemalloc's memory for
//! buckets grows with them, and the table would fill with ids), and memory outlives the task
//! that allocated it, so the id says little about who holds it. Go's heap profiles carry no
//! labels at all.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sampler::task_labels::{Captured, SAMPLE_BYTES};

pub(crate) use super::label_budget::SETS;
/// Slots looked at for a set before giving up on it.
const PROBES: usize = 32;
/// The pseudo-frame's high bits: an upper-half (kernel) address, which no user-space return
/// address is on Linux (x86-64, aarch64); the index of the set is in the low bits.
const MARK: u64 = 0xffff_ff1a_b000_0000;
const INDEX_BITS: u64 = 0xffff;

/// A slot's state: [`EMPTY`], [`BUSY`] (being written), or ready: the set's hash with the top
/// bit set (never `EMPTY` or `BUSY`).
const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const READY: u64 = 1 << 63;

struct Slot {
    state: AtomicU64,
    len: UnsafeCell<u16>,
    bytes: UnsafeCell<[u8; SAMPLE_BYTES]>,
}

// SAFETY: `len` and `bytes` are written once, by the thread that moved `state` from EMPTY to
// BUSY, and read only after `state` was seen ready (Release/Acquire); never written again.
unsafe impl Sync for Slot {}

/// The label sets, and the samples that found no room for theirs.
struct Table {
    slots: [Slot; SETS],
    overflowed: AtomicU64,
}

impl Table {
    const fn new() -> Table {
        Table {
            slots: [const {
                Slot {
                    state: AtomicU64::new(EMPTY),
                    len: UnsafeCell::new(0),
                    bytes: UnsafeCell::new([0; SAMPLE_BYTES]),
                }
            }; SETS],
            overflowed: AtomicU64::new(0),
        }
    }
}

static TABLE: Table = Table::new();

/// FNV-1a, 64 bits.
fn hash(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The table's index for the label bytes `set`, putting it there the first time. `None` when
/// the table has no room for it. No allocation, no lock: a slot being written by another
/// thread is passed over (the same set may then take two slots, which read back the same).
fn intern(table: &'static Table, set: &[u8]) -> Option<usize> {
    let set = set.get(..SAMPLE_BYTES).unwrap_or(set);
    let h = hash(set) | READY;
    let start = (h as usize) % SETS;
    for i in 0..PROBES {
        let idx = (start + i) % SETS;
        let slot = &table.slots[idx];
        let mut state = slot.state.load(Ordering::Acquire);
        if state == EMPTY {
            match slot
                .state
                .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: the CAS gave this thread the slot; nobody reads it until READY.
                    unsafe {
                        (&mut *slot.bytes.get())[..set.len()].copy_from_slice(set);
                        *slot.len.get() = set.len() as u16;
                    }
                    slot.state.store(h, Ordering::Release);
                    return Some(idx);
                }
                Err(now) => state = now,
            }
        }
        if state == h && read(slot) == Some(set) {
            return Some(idx);
        }
    }
    let _ = table
        .overflowed
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    if std::ptr::eq(table, &TABLE) {
        super::label_budget::refused(set);
    }
    None
}

/// A ready slot's bytes.
fn read(slot: &'static Slot) -> Option<&'static [u8]> {
    if slot.state.load(Ordering::Acquire) < READY {
        return None;
    }
    // SAFETY: ready: written once before the Release store seen above, never written again.
    let (len, bytes) = unsafe { (*slot.len.get(), &*slot.bytes.get()) };
    bytes.get(..usize::from(len))
}

/// The pseudo-frame for the labels in force on this thread, or `None` when there are none (or
/// the table has no room for a new set). For the stack hook, which calls it only when
/// [`labelled_here`](crate::sampler::task_labels::labelled_here): no allocation, no lock, bounded work (a copy
/// of at most [`SAMPLE_BYTES`] bytes, a hash, at most [`PROBES`] slots looked at).
pub(crate) fn pseudo_frame() -> Option<u64> {
    let mut c = Captured::EMPTY;
    crate::sampler::task_labels::capture_labels(&mut c);
    if c.labels().is_empty() {
        return None;
    }
    intern(&TABLE, c.labels()).map(|i| MARK | i as u64)
}

/// Takes the label pseudo-frames out of a stack read from a dump (return addresses, innermost
/// first) and returns the label bytes of the outermost one (empty when there is none or its
/// set is unknown). Every address in the pseudo-frames' range goes, so none is symbolized.
pub(crate) fn split(stack: &mut Vec<u64>) -> &'static [u8] {
    split_in(&TABLE, stack)
}

fn split_in(table: &'static Table, stack: &mut Vec<u64>) -> &'static [u8] {
    let mut set: &'static [u8] = &[];
    stack.retain(|&a| {
        if a & !INDEX_BITS != MARK {
            return true;
        }
        set = table
            .slots
            .get((a & INDEX_BITS) as usize)
            .and_then(read)
            .unwrap_or(&[]);
        false
    });
    set
}

/// The label bytes of the set a pseudo-frame names (empty when it names none).
pub(crate) fn set_of(frame: u64) -> &'static [u8] {
    if frame & !INDEX_BITS != MARK {
        return &[];
    }
    TABLE
        .slots
        .get((frame & INDEX_BITS) as usize)
        .and_then(read)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static Table {
        Box::leak(Box::new(Table::new()))
    }

    #[test]
    fn a_set_is_interned_once_and_read_back() {
        let t = table();
        let a = intern(t, b"\x05route\x02/a").expect("room");
        let b = intern(t, b"\x05route\x02/b").expect("room");
        assert_ne!(a, b);
        assert_eq!(intern(t, b"\x05route\x02/a"), Some(a));
        let mut stack = vec![0x10, 0x20, MARK | a as u64];
        assert_eq!(split_in(t, &mut stack), b"\x05route\x02/a");
        assert_eq!(stack, [0x10, 0x20]);
        let mut plain = vec![0x10, 0x20];
        assert!(split_in(t, &mut plain).is_empty());
        assert_eq!(plain, [0x10, 0x20]);
        // An index past the table, or of an empty slot: taken out, no labels.
        let mut bad = vec![
            0x10,
            MARK | INDEX_BITS,
            MARK | ((a as u64 + 1) % SETS as u64),
        ];
        assert!(split_in(t, &mut bad).is_empty());
        assert_eq!(bad, [0x10]);
        assert_eq!(t.overflowed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_table_is_bounded_and_counts_what_did_not_fit() {
        let t = table();
        let mut fitted = std::collections::HashSet::new();
        let mut missed = 0;
        for i in 0..2 * SETS {
            let v = format!("{i:06}");
            let mut set = vec![1, b'k', v.len() as u8];
            set.extend_from_slice(v.as_bytes());
            match intern(t, &set) {
                Some(idx) => {
                    assert!(fitted.insert(idx), "one slot, one set");
                    assert_eq!(intern(t, &set), Some(idx), "found again");
                }
                None => missed += 1,
            }
        }
        assert!(
            fitted.len() <= SETS && fitted.len() >= SETS / 2,
            "{}",
            fitted.len()
        );
        assert_eq!(missed, 2 * SETS - fitted.len());
        assert_eq!(t.overflowed.load(Ordering::Relaxed), missed as u64);
        // A set longer than a sample's labels is cut, not refused.
        assert!(intern(table(), &[7; 4 * SAMPLE_BYTES]).is_some());
    }
}
