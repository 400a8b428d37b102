//! The bound on what labels add to heap profiling.
//!
//! jemalloc keeps a record per distinct sampled stack (`prof_gctx_t`, holding the stack) and,
//! under it, one per thread that sampled it (`prof_tctx_t`), and with `prof_accum` (rdebug's
//! default, for `allocs`) it frees neither, for the life of the process. A label set's
//! pseudo-frame ([`super::label_frames`]) makes each (stack, label set) its own record, so an
//! app that labels by raw path or user id would add records without end, and a client could
//! make it do so.
//!
//! So a labelled sample keeps its labels only if its (stack, label set, thread) was seen
//! before or finds room in a fixed table of [`RECORDS`] such keys (a 64-bit hash of the three;
//! a new thread, or a new epoch after `prof.reset` ([`new_epoch`]), is a new key, since jemalloc
//! then makes new thread records). Otherwise the sample is taken without its labels, under the
//! same stack as an unlabelled one (a record jemalloc keeps anyway), and counted; the first
//! refusal writes one warning naming the set's keys. Each admitted key adds at most one stack
//! record and one thread record, so what labels add is bounded by [`RECORDS`] times their size
//! (see [`WORST_CASE_BYTES`]), at any sampling rate. CPU and block samples are not concerned:
//! they keep their labels.
//!
//! The table is static (16 KiB), written lock-free, and never emptied: jemalloc never frees
//! the records either, so a key's room stays taken.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Label sets the table holds.
pub(crate) const SETS: usize = 1024;

/// (stack, label set, thread) keys whose samples keep their labels.
pub(crate) const RECORDS: usize = 2048;

/// Most bytes of jemalloc metadata one admitted key adds, at jemalloc's default maximum stack
/// depth (`prof_bt_max` 128 frames): the stack record (72 bytes and 8 per frame: 1,096, in
/// jemalloc's 1,280-byte size class), the thread record (a 160-byte class) and their entries
/// in jemalloc's two hash tables (16-byte cells, at most 4 per entry after a table doubles:
/// 128), rounded up to 1,600.
pub(crate) const RECORD_BYTES: usize = 1600;

/// The bound on memory labels add to heap profiling: [`RECORDS`] × [`RECORD_BYTES`] (3.1 MiB)
/// in jemalloc, plus rdebug's two static tables (the label sets, 1024 × 256 bytes, and this
/// one's 16 KiB): 3.4 MiB.
pub(crate) const WORST_CASE_BYTES: usize =
    RECORDS * RECORD_BYTES + SETS * (crate::sampler::task_labels::SAMPLE_BYTES + 16) + RECORDS * 8;

// The bound DESIGN.md states: at most 4 MiB.
const _: () = assert!(WORST_CASE_BYTES <= 4 << 20);

/// Slots looked at for a key before it is refused.
const PROBES: usize = 64;

/// The admitted keys (0: empty).
static KEYS: [AtomicU64; RECORDS] = [const { AtomicU64::new(0) }; RECORDS];
/// Threads numbered in the order they first made a labelled sample.
static THREADS: AtomicU64 = AtomicU64::new(0);
/// Bumped by `prof.reset`: jemalloc's threads start new records after it.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Labelled samples taken without their labels (by this bound or the table of label sets).
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// The one-time warning was written.
static WARNED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's number (0: none yet). `const`, no destructor: safe inside the allocator.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

/// FNV-1a over 64-bit words.
fn mix(h: u64, x: u64) -> u64 {
    x.to_le_bytes()
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether a sample with stack `frames` and label pseudo-frame `label` keeps its labels (see
/// the module docs). No allocation, no lock, at most [`PROBES`] slots looked at: for the stack
/// hook. A refusal is counted and warned about ([`refused`]).
pub(crate) fn admit(frames: &[u64], label: u64, set: &[u8]) -> bool {
    let thread = THREAD
        .try_with(|t| {
            if t.get() == 0 {
                t.set(THREADS.fetch_add(1, Relaxed).wrapping_add(1));
            }
            t.get()
        })
        .unwrap_or(0);
    let mut h = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h = mix(h, f);
    }
    h = mix(mix(mix(h, label), thread), EPOCH.load(Relaxed));
    if admit_in(&KEYS, h | 1) {
        return true;
    }
    refused(set);
    false
}

fn admit_in(keys: &[AtomicU64], key: u64) -> bool {
    let start = (key >> 1) as usize % keys.len();
    for i in 0..PROBES.min(keys.len()) {
        let slot = &keys[(start + i) % keys.len()];
        match slot.load(Relaxed) {
            k if k == key => return true,
            0 => match slot.compare_exchange(0, key, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(k) if k == key => return true,
                Err(_) => {}
            },
            _ => {}
        }
    }
    false
}

/// Counts a labelled sample taken without its labels, and the first time writes one warning
/// naming the keys of its set (`set`: label bytes). No allocation: for the stack hook.
pub(crate) fn refused(set: &[u8]) {
    let _ = REFUSED.fetch_update(Relaxed, Relaxed, |n| n.checked_add(1));
    if WARNED.swap(true, Relaxed) {
        return;
    }
    let mut keys = crate::sampler::task_labels::pairs(set).map(|(k, _)| k);
    let first = keys.next().unwrap_or("?");
    let more = if keys.next().is_some() {
        " (and the set's other keys)"
    } else {
        ""
    };
    crate::sys::note_in_place::note_in_place(
        "warning",
        format_args!(
            "heap profile labels: too many distinct label sets under key \"{first}\"{more}: \
             heap samples beyond the bound ({RECORDS} stack x label set x thread records, \
             {} sets, {:.1} MiB at most) are taken without labels from now on, and counted in \
             the heap profile's comments; CPU samples keep them. Use route templates, not raw \
             paths or ids, as label values",
            SETS,
            WORST_CASE_BYTES as f64 / f64::from(1 << 20),
        ),
    );
}

/// Labelled heap samples taken without their labels since the process started.
pub(crate) fn refused_count() -> u64 {
    REFUSED.load(Relaxed)
}

/// After `prof.reset`: keys from now on are new (jemalloc's threads make new records).
pub(crate) fn new_epoch() {
    EPOCH.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_admitted_once_up_to_the_bound() {
        let keys: Vec<AtomicU64> = (0..256).map(|_| AtomicU64::new(0)).collect();
        let mut admitted = 0;
        for k in 0..1024u64 {
            let key = mix(0xcbf2_9ce4_8422_2325, k) | 1;
            if admit_in(&keys, key) {
                admitted += 1;
                assert!(admit_in(&keys, key), "seen again");
            }
        }
        assert!((200..=256).contains(&admitted), "{admitted}");
        let used = keys.iter().filter(|k| k.load(Relaxed) != 0).count();
        assert_eq!(used, admitted);
    }
}
