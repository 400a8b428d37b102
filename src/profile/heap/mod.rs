//! Heap profiles from jemalloc's sampling profiler: [`heap`], [`HeapProfile`].

mod dump_parse;
mod label_budget;
mod label_frames;
pub(crate) mod prof_ctl;
pub(crate) mod stack_hook;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::BufReader;
use std::time::SystemTime;

use super::ProfileError;
use super::proto::Builder;
use crate::stats::MemStats;
use crate::stats::fields::{MEMSTATS, Value};
use crate::symbols::{Frame, Symbolized, symbolize};
use dump_parse::{Counts, unscale};

/// Which default view a heap profile's pprof form has: Go's `/debug/pprof/heap` or
/// `/debug/pprof/allocs`. The samples are the same.
///
/// ```
/// assert_ne!(rdebug::profile::HeapKind::Heap, rdebug::profile::HeapKind::Allocs);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeapKind {
    /// `default_sample_type` left unset: `go tool pprof` shows `inuse_space`.
    #[default]
    Heap,
    /// `default_sample_type = alloc_space`: bytes allocated since sampling began.
    Allocs,
}

/// One stack of a heap profile, counts as jemalloc sampled them (not unscaled).
#[derive(Debug, Clone)]
struct Record {
    /// Code addresses, innermost first, allocator frames removed (return address − 1).
    stack: Vec<u64>,
    /// The [`labels`](crate::sampler::task_labels) in force when the allocations were sampled (label bytes;
    /// empty for none).
    labels: &'static [u8],
    counts: Counts,
}

/// A heap profile: jemalloc's heap samples at one moment, symbolized, with [`MemStats`] read
/// right after.
///
/// Sampling is on by default whenever the `pprof` feature is compiled in and
/// [`Alloc`](crate::Alloc) is the global allocator: one sample per 512 KiB allocated on
/// average (Go's `MemProfileRate`); `RDEBUG=memprofilerate=N` or [`set_memprofilerate`](crate::profile::set_memprofilerate)
/// changes it. Unlike Go's, the profile is current (not as of the last collection).
///
/// Unlike Go's, its samples carry the [`labels`](crate::sampler::task_labels) in force when each sampled
/// allocation was made, as pprof sample labels (`go tool pprof -tagfocus=route=/cache`, `-tags`),
/// without the task id: an allocation made under other labels is another record, even from the
/// same stack. What labels add is bounded (3.4 MiB at most): up to 1024 distinct label sets and
/// 2048 (stack, label set, thread) records keep their labels for the life of the process;
/// samples beyond that carry no labels, stderr says so once, naming the key, and the pprof
/// form's comment counts them. Use route templates, not raw paths, as label values. The
/// `debug=1` text has no labels (Go's format has none): a stack allocated under several label
/// sets shows as several records.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let held: Vec<Vec<u8>> = (0..16).map(|_| vec![1u8; 1 << 20]).collect();
/// let p = rdebug::profile::heap().unwrap();
/// assert!(p.inuse_bytes() > 4 << 20); // 16 MiB held, sampled
/// let gz = p.pprof_gz(rdebug::profile::HeapKind::Heap);
/// assert_eq!(&gz[..2], &[0x1f, 0x8b]);
/// assert!(p.debug_text().starts_with("heap profile: "));
/// drop(held);
/// ```
#[derive(Debug, Clone)]
pub struct HeapProfile {
    rate: u64,
    records: Vec<Record>,
    symbolized: Symbolized,
    memstats: MemStats,
    time: SystemTime,
    /// Zero for a profile of now; the window for a delta.
    duration: std::time::Duration,
    dropped: usize,
    /// Sampled allocations that carry no labels because their label set was beyond the bound
    /// on what labels add (`label_budget`), since the process started.
    labels_overflowed: u64,
}

/// The pseudo-address and name of the one frame of a sample taken with no stack (the
/// allocating thread had too little stack left for the walk; see the stack hook).
const NO_STACK: u64 = 0x10;
const NO_STACK_NAME: &str = "(no stack, too little stack left to walk)";

/// Frames at the top of jemalloc's stacks that are the allocator, not the program: jemalloc's
/// own functions and libgcc's unwinder, the global-allocator shims (`__rust_alloc`,
/// `__rustc::*`, `__rg_*`/`__rdl_*`), rdebug's [`Alloc`](crate::Alloc) and tikv-jemallocator,
/// and the `alloc` crate's functions (`alloc::alloc::*`, `Box::new`, `Vec`'s growth, `clone`,
/// `to_vec`…). The leaf of a heap stack is then the code that asked for the memory, as the leaf
/// of Go's is the function that called `make` or `new`.
///
/// Told by name where the name is a full path, and by source file for inlined frames, which
/// carry only their short name in a `line-tables-only` build (`alloc`, `grow_one`).
fn is_allocator_frame(f: &Frame) -> bool {
    const NAMES: &[&str] = &[
        "_rjem_",
        "je_",
        "prof_",
        "imalloc",
        "__rust_alloc",
        "__rust_realloc",
        "__rust_dealloc",
        "__rust_alloc_zeroed",
        "__rustc::",
        "__rg_",
        "__rdl_",
        "_Unwind_",
        "tikv_jemallocator::",
        "<tikv_jemallocator::",
        "rdebug::alloc::",
        "<rdebug::alloc::",
        "alloc::",
        "<alloc::",
        "0x",
        "?",
    ];
    const FILES: &[&str] = &[
        "/library/alloc/src/",
        "/tikv-jemalloc-sys-",
        "/tikv-jemallocator-",
        "/jemalloc/src/",
        "/jemalloc/include/",
    ];
    /// rdebug's own allocator wrapper, where this crate was built.
    const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc/");
    NAMES.iter().any(|p| f.name.starts_with(p))
        || FILES.iter().any(|p| f.file.contains(p))
        || f.file.starts_with(OWN)
}

/// Drops the allocator's frames from the top of `stack` (addresses innermost first): whole
/// addresses whose frames are all the allocator's, then the allocator's inlined frames at the
/// top of the first address left (a call site of the allocator is only ever at the top, so its
/// frames are trimmed for good). A stack of nothing but allocator frames keeps its innermost
/// address, so its bytes still show.
fn trim_allocator_frames(sym: &mut Symbolized, stack: Vec<u64>) -> Vec<u64> {
    let all_allocator = |sym: &Symbolized, a: u64| {
        let f = sym.frames(a);
        f.is_empty() || f.iter().all(is_allocator_frame)
    };
    let Some(first) = stack.iter().position(|&a| !all_allocator(sym, a)) else {
        return stack.into_iter().take(1).collect();
    };
    if let Some(r) = sym.addrs.get_mut(&stack[first]) {
        let n = r
            .frames
            .iter()
            .take_while(|f| is_allocator_frame(f))
            .count();
        r.frames.drain(..n);
    }
    stack.into_iter().skip(first).collect()
}

/// Takes a heap profile now: jemalloc's samples of every live allocation (and, with
/// cumulative counts on, every allocation since sampling began), symbolized in this process.
///
/// Errors: [`ProfileError::Unavailable`] when jemalloc's profiler is off (another global
/// allocator, `_RJEM_MALLOC_CONF=prof:false`) or on a platform without `memfd_create`.
/// Costs a `prof.dump` (jemalloc holds its profiling locks while writing, ~ms for thousands of
/// stacks) and reading the executable's symbol table (~24 bytes per function, freed after).
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// match rdebug::profile::heap() {
///     Ok(p) => println!("{} bytes in use (estimated)", p.inuse_bytes()),
///     Err(e) => eprintln!("no heap profile: {e}"),
/// }
/// ```
pub fn heap() -> Result<HeapProfile, ProfileError> {
    // Stacks sampled from here on are taken by rdebug's unwinder (if `init` has not yet).
    stack_hook::install_stack_hook();
    let file = prof_ctl::dump().map_err(ProfileError::Unavailable)?;
    let memstats = crate::stats::mem::read();
    let time = SystemTime::now();
    let mut dump = dump_parse::parse(BufReader::new(file)).map_err(ProfileError::Failed)?;
    // The labels' pseudo-frames come off first: they are not code, never symbolized.
    let sets: Vec<&'static [u8]> = dump
        .records
        .iter_mut()
        .map(|r| label_frames::split(&mut r.stack))
        .collect();
    let mut symbolized = symbolize(
        dump.records
            .iter()
            .flat_map(|r| r.stack.iter().map(|ret| ret.saturating_sub(1))),
    );
    let mut records = Vec::with_capacity(dump.records.len());
    for (r, labels) in dump.records.into_iter().zip(sets) {
        let stack: Vec<u64> = r.stack.iter().map(|ret| ret.saturating_sub(1)).collect();
        let stack = trim_allocator_frames(&mut symbolized, stack);
        records.push(Record {
            stack,
            labels,
            counts: r.counts,
        });
    }
    let used: HashSet<u64> = records
        .iter()
        .flat_map(|r| r.stack.iter().copied())
        .collect();
    symbolized.addrs.retain(|a, _| used.contains(a));
    Ok(HeapProfile {
        rate: dump.rate,
        records,
        symbolized,
        memstats,
        time,
        duration: std::time::Duration::ZERO,
        dropped: dump.dropped,
        labels_overflowed: label_budget::refused_count(),
    })
}

impl HeapProfile {
    /// The sampling rate the samples were taken at, bytes (jemalloc's `2^lg_prof_sample`).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// assert_eq!(rdebug::profile::heap().unwrap().rate(), 524288);
    /// ```
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Estimated bytes in live allocations: the samples unscaled (Go's and jeprof's way).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::heap().unwrap();
    /// assert!(p.inuse_bytes() <= p.alloc_bytes());
    /// ```
    pub fn inuse_bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| unscale(r.counts.cur_objs, r.counts.cur_bytes, self.rate).1)
            .fold(0, u64::saturating_add)
    }

    /// Estimated bytes allocated since sampling began (or was last reset).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// assert!(rdebug::profile::heap().unwrap().alloc_bytes() > 0);
    /// ```
    pub fn alloc_bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| unscale(r.counts.acc_objs, r.counts.acc_bytes, self.rate).1)
            .fold(0, u64::saturating_add)
    }

    /// The allocations made since `base` was taken: `alloc_*` counts are this profile's minus
    /// `base`'s, stack by stack; `inuse_*` counts are this profile's, not subtracted (what is
    /// live now is what a delta's reader wants: Go subtracts them too, golang/go#67942, and
    /// Grafana's godeltaprof keeps them as rdebug does). What `heap?seconds=N` and
    /// `allocs?seconds=N` serve, as Go's delta profiles.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let before = rdebug::profile::heap().unwrap();
    /// let churn: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1 << 20]).collect();
    /// drop(churn);
    /// let delta = rdebug::profile::heap().unwrap().delta_since(&before);
    /// assert!(delta.alloc_bytes() > 16 << 20); // 64 MiB allocated in the window, sampled
    /// assert!(delta.alloc_bytes() < before.alloc_bytes() + (128 << 20));
    /// ```
    pub fn delta_since(&self, base: &HeapProfile) -> HeapProfile {
        let mut old: HashMap<(&[u8], &[u64]), Counts> = HashMap::new();
        for r in &base.records {
            let c = old.entry((r.labels, &r.stack)).or_default();
            c.acc_objs = c.acc_objs.saturating_add(r.counts.acc_objs);
            c.acc_bytes = c.acc_bytes.saturating_add(r.counts.acc_bytes);
        }
        let mut records = self.records.clone();
        for r in &mut records {
            if let Some(c) = old.get_mut(&(r.labels, r.stack.as_slice())) {
                // Several records may share a trimmed stack: subtract the base once in all.
                let objs = c.acc_objs.min(r.counts.acc_objs);
                let bytes = c.acc_bytes.min(r.counts.acc_bytes);
                r.counts.acc_objs -= objs;
                r.counts.acc_bytes -= bytes;
                c.acc_objs -= objs;
                c.acc_bytes -= bytes;
            }
        }
        records.retain(|r| r.counts != Counts::default());
        HeapProfile {
            records,
            time: base.time,
            duration: self.time.duration_since(base.time).unwrap_or_default(),
            ..self.clone()
        }
    }

    /// The [`MemStats`] read right after the samples were dumped (the `debug=1` footer).
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let p = rdebug::profile::heap().unwrap();
    /// assert!(p.memstats().heap_alloc > 0);
    /// ```
    pub fn memstats(&self) -> &MemStats {
        &self.memstats
    }

    /// The profile in pprof format, gzipped: sample types `alloc_objects`, `alloc_space`,
    /// `inuse_objects`, `inuse_space` (unscaled estimates), period type `space/bytes`, period the
    /// sampling rate; [`HeapKind::Allocs`] sets `alloc_space` as the default type; samples made
    /// under [`labels`](crate::sampler::task_labels) carry them as string labels; a sample taken with no stack
    /// (its thread had too little stack left for the walk) has the one frame `(no stack, too
    /// little stack left to walk)`, since pprof leaves out samples with none. Function names
    /// are in the profile, under one mapping marked `has_functions`, so `go tool pprof` needs
    /// neither the binary nor `/debug/pprof/symbol`.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let gz = rdebug::profile::heap().unwrap().pprof_gz(rdebug::profile::HeapKind::Allocs);
    /// std::fs::write(std::env::temp_dir().join("allocs.pb.gz"), gz).unwrap();
    /// // go tool pprof -top allocs.pb.gz
    /// ```
    pub fn pprof_gz(&self, kind: HeapKind) -> Vec<u8> {
        let mut b = Builder::new(
            &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            ("space", "bytes"),
            i64::try_from(self.rate).unwrap_or(i64::MAX),
        );
        if kind == HeapKind::Allocs {
            b.default_sample_type("alloc_space");
        }
        b.times(self.time, self.duration);
        b.add_symbolized(&self.symbolized);
        if self.dropped > 0 {
            b.comment(&format!(
                "rdebug: {} stacks left out (limit reached)",
                self.dropped
            ));
        }
        if self.labels_overflowed > 0 {
            b.comment(&format!(
                "rdebug: {} sampled allocations carry no labels: label sets beyond the heap \
                 profile's bound ({} sets, {} stack x label set x thread records) are refused",
                self.labels_overflowed,
                label_frames::SETS,
                label_budget::RECORDS
            ));
        }
        let mut locs = Vec::new();
        for r in &self.records {
            locs.clear();
            locs.extend(
                r.stack
                    .iter()
                    .map(|&a| b.symbolized_location(&self.symbolized, a)),
            );
            if locs.is_empty() {
                // pprof leaves out a sample with no location: its bytes (and labels) would
                // vanish from every view.
                locs.push(b.location(NO_STACK, NO_STACK_NAME));
            }
            let c = r.counts;
            let (ao, ab) = unscale(c.acc_objs, c.acc_bytes, self.rate);
            let (io, ib) = unscale(c.cur_objs, c.cur_bytes, self.rate);
            let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            let values = [v(ao), v(ab), v(io), v(ib)];
            if r.labels.is_empty() {
                b.sample(&locs, &values);
            } else {
                let strs: Vec<(&str, &str)> =
                    crate::sampler::task_labels::pairs(r.labels).collect();
                b.sample_labeled(&locs, &values, &strs, &[]);
            }
        }
        b.encode_gz()
    }

    /// Go's `heap?debug=1` text: `heap profile: <inuse objs>: <inuse bytes> [<alloc objs>:
    /// <alloc bytes>] @ heap/<2×rate>`, one record per stack sorted by in-use bytes (sampled
    /// counts, as Go prints them) with a `#` line per frame, then `# runtime.MemStats` and one
    /// `# Name = value` line per [`MemStats`] field, Go's CamelCase names.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
    /// let text = rdebug::profile::heap().unwrap().debug_text();
    /// assert!(text.contains("\n# runtime.MemStats\n# Alloc = "));
    /// ```
    pub fn debug_text(&self) -> String {
        let mut out = String::new();
        // Go's header is the sum of its records (jemalloc's own `t*` total counts differently).
        let t = self.records.iter().fold(Counts::default(), |t, r| Counts {
            cur_objs: t.cur_objs.saturating_add(r.counts.cur_objs),
            cur_bytes: t.cur_bytes.saturating_add(r.counts.cur_bytes),
            acc_objs: t.acc_objs.saturating_add(r.counts.acc_objs),
            acc_bytes: t.acc_bytes.saturating_add(r.counts.acc_bytes),
        });
        let _ = writeln!(
            out,
            "heap profile: {}: {} [{}: {}] @ heap/{}",
            t.cur_objs,
            t.cur_bytes,
            t.acc_objs,
            t.acc_bytes,
            self.rate.saturating_mul(2)
        );
        let mut order: Vec<&Record> = self.records.iter().collect();
        order.sort_by(|a, b| {
            (b.counts.cur_bytes, b.counts.acc_bytes).cmp(&(a.counts.cur_bytes, a.counts.acc_bytes))
        });
        for r in order {
            let c = r.counts;
            let _ = write!(
                out,
                "{}: {} [{}: {}] @",
                c.cur_objs, c.cur_bytes, c.acc_objs, c.acc_bytes
            );
            for a in &r.stack {
                let _ = write!(out, " {:#x}", a + 1);
            }
            out.push('\n');
            for a in &r.stack {
                let frames = self.symbolized.frames(*a);
                if frames.is_empty() {
                    let _ = writeln!(out, "#\t{a:#x}\t?");
                }
                // Go's format: one line per frame, inlined frames sharing the address.
                for f in frames {
                    if f.file.is_empty() {
                        let _ = writeln!(out, "#\t{a:#x}\t{}", f.name);
                    } else {
                        let _ = writeln!(out, "#\t{a:#x}\t{}\t{}:{}", f.name, f.file, f.line);
                    }
                }
            }
            out.push('\n');
        }
        out.push_str("\n# runtime.MemStats\n");
        for f in MEMSTATS {
            let value = match (f.get)(&self.memstats) {
                Value::Int(v) => v.to_string(),
                Value::Bool(v) => u8::from(v).to_string(),
                Value::Float(v) => v.to_string(),
                Value::Missing => continue,
            };
            let _ = writeln!(out, "# {} = {value}", go_name(f.key));
        }
        out
    }
}

/// Go's `runtime.MemStats` name for a snake_case field: `total_alloc` → `TotalAlloc`,
/// `gc_cpu_fraction` → `GCCPUFraction`, `next_gc` → `NextGC`.
fn go_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for word in key.split('_') {
        match word {
            "gc" | "cpu" | "rss" => out.push_str(&word.to_ascii_uppercase()),
            _ => {
                let mut c = word.chars();
                if let Some(first) = c.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(c.as_str());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(records: Vec<Record>, labels_overflowed: u64) -> HeapProfile {
        HeapProfile {
            rate: 524288,
            records,
            symbolized: Symbolized::default(),
            memstats: MemStats::default(),
            time: SystemTime::now(),
            duration: std::time::Duration::ZERO,
            dropped: 0,
            labels_overflowed,
        }
    }

    fn record(labels: &'static [u8], acc_objs: u64) -> Record {
        Record {
            stack: vec![0x1234],
            labels,
            counts: Counts {
                cur_objs: 1,
                cur_bytes: 1 << 20,
                acc_objs,
                acc_bytes: acc_objs << 20,
            },
        }
    }

    const ROUTE_A: &[u8] = b"\x05route\x02/a";

    #[test]
    fn labelled_samples_carry_their_labels_and_the_table_says_when_it_was_full() {
        use std::io::Read;
        let p = profile(
            vec![
                record(ROUTE_A, 1),
                record(&[], 1),
                Record {
                    stack: Vec::new(),
                    ..record(&[], 1)
                },
            ],
            3,
        );
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&p.pprof_gz(HeapKind::Heap)[..])
            .read_to_end(&mut raw)
            .expect("gzip");
        let has = |s: &[u8]| raw.windows(s.len()).any(|w| w == s);
        assert!(has(b"route") && has(b"/a"));
        assert!(has(b"rdebug: 3 sampled allocations carry no labels"));
        assert!(
            has(NO_STACK_NAME.as_bytes()),
            "a stackless sample keeps a frame"
        );
        // No label for the plain samples: one Sample.label message in the whole profile (a
        // sample's field 3, a message holding key and value string indices: 0x1a 0x04 0x08).
        let labels = raw.windows(3).filter(|w| w == &[0x1a, 0x04, 0x08]).count();
        assert_eq!(labels, 1);
    }

    #[test]
    fn a_delta_subtracts_each_label_set_from_its_own() {
        let base = profile(vec![record(ROUTE_A, 2), record(&[], 1)], 0);
        let now = profile(vec![record(ROUTE_A, 5), record(&[], 4)], 0);
        let d = now.delta_since(&base);
        let acc = |l: &[u8]| {
            d.records
                .iter()
                .filter(|r| r.labels == l)
                .map(|r| r.counts.acc_objs)
                .sum::<u64>()
        };
        assert_eq!(acc(ROUTE_A), 3);
        assert_eq!(acc(&[]), 3);
    }

    #[test]
    fn memstats_fields_get_go_names() {
        assert_eq!(go_name("total_alloc"), "TotalAlloc");
        assert_eq!(go_name("gc_cpu_fraction"), "GCCPUFraction");
        assert_eq!(go_name("next_gc"), "NextGC");
        assert_eq!(go_name("num_forced_gc"), "NumForcedGC");
        assert_eq!(go_name("pause_total_ns"), "PauseTotalNs");
    }
}
