//! Parsing jemalloc's heap profile dump (`heap_v2`, the format `jeprof` reads):
//!
//! ```text
//! heap_v2/524288
//!   t*: 28: 12582912 [40: 16777216]
//!   t0: 28: 12582912 [40: 16777216] main
//! @ 0x55d1c0 0x55d2a4 0x55d300
//!   t*: 2: 2097152 [2: 2097152]
//!   t0: 2: 2097152 [2: 2097152]
//!
//! MAPPED_LIBRARIES:
//! ...
//! ```
//!
//! `t*:` lines carry `curobjs: curbytes [accumobjs: accumbytes]`, sampled (not yet unscaled):
//! first for the whole heap, then per stack (`@` lists return addresses, innermost first).
//! Per-thread `tN:` lines and the maps after `MAPPED_LIBRARIES:` are skipped.

use std::io::BufRead;

/// Longest line read (a stack of 1024 frames is ~20 kB).
const MAX_LINE: usize = 64 * 1024;
/// Most stacks kept; past it the rest are counted in [`Dump::dropped`].
pub(crate) const MAX_STACKS: usize = 100_000;
/// Most frames kept per stack.
const MAX_FRAMES: usize = 256;

/// The four sampled counts of a `t*:` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub cur_objs: u64,
    pub cur_bytes: u64,
    pub acc_objs: u64,
    pub acc_bytes: u64,
}

/// One stack and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Return addresses, innermost first.
    pub stack: Vec<u64>,
    pub counts: Counts,
}

/// A parsed dump.
#[derive(Debug, Default)]
pub(crate) struct Dump {
    /// The sampling rate, bytes (`heap_v2/<rate>`).
    pub rate: u64,
    /// The whole heap's counts.
    pub total: Counts,
    pub records: Vec<Record>,
    /// Stacks left out past [`MAX_STACKS`].
    pub dropped: usize,
}

fn counts(s: &str) -> Option<Counts> {
    // "28: 12582912 [40: 16777216]"
    let mut it = s
        .split(|c: char| c == ':' || c == '[' || c == ']' || c.is_whitespace())
        .filter(|p| !p.is_empty());
    let mut next = || it.next()?.parse::<u64>().ok();
    Some(Counts {
        cur_objs: next()?,
        cur_bytes: next()?,
        acc_objs: next()?,
        acc_bytes: next()?,
    })
}

/// Parses a dump; a malformed one is an error naming the line.
pub(crate) fn parse(input: impl BufRead) -> Result<Dump, String> {
    let mut dump = Dump::default();
    let mut pending: Option<Vec<u64>> = None;
    let mut header = false;
    let mut line = String::new();
    let mut reader = input.take(u64::MAX);
    let mut n = 0usize;
    loop {
        line.clear();
        reader.set_limit(MAX_LINE as u64);
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the heap dump: {e}"))?;
        if read == 0 {
            break;
        }
        n += 1;
        if !line.ends_with('\n') && read == MAX_LINE {
            return Err(format!(
                "heap dump line {n} is longer than {MAX_LINE} bytes"
            ));
        }
        let l = line.trim_end();
        if n == 1 {
            let rate = l
                .strip_prefix("heap_v2/")
                .and_then(|r| r.parse::<u64>().ok())
                .ok_or_else(|| format!("not a jemalloc heap_v2 dump: {l:.40}"))?;
            dump.rate = rate;
            header = true;
            continue;
        }
        if l.starts_with("MAPPED_LIBRARIES:") {
            break;
        }
        if let Some(frames) = l.strip_prefix('@') {
            let stack: Vec<u64> = frames
                .split_whitespace()
                .take(MAX_FRAMES)
                .filter_map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
                .collect();
            pending = Some(stack);
            continue;
        }
        if let Some(rest) = l.trim_start().strip_prefix("t*:") {
            let c =
                counts(rest).ok_or_else(|| format!("heap dump line {n}: bad counts {l:.60}"))?;
            if let Some(stack) = pending.take() {
                if dump.records.len() < MAX_STACKS {
                    dump.records.push(Record { stack, counts: c });
                } else {
                    dump.dropped += 1;
                }
            } else if header {
                dump.total = c;
                header = false;
            }
        }
    }
    if dump.rate == 0 {
        return Err("empty heap dump".into());
    }
    Ok(dump)
}

/// Go's and jeprof's unscaling of a sampled `(objects, bytes)` pair: an allocation of average
/// size `a` is sampled with probability `1 - exp(-a/rate)`, so both are divided by that.
pub(crate) fn unscale(objs: u64, bytes: u64, rate: u64) -> (u64, u64) {
    if objs == 0 || bytes == 0 || rate <= 1 {
        return (objs, bytes);
    }
    let avg = bytes as f64 / objs as f64;
    let scale = 1.0 / (1.0 - (-avg / rate as f64).exp());
    ((objs as f64 * scale) as u64, (bytes as f64 * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "heap_v2/524288\n  t*: 3: 3145728 [4: 4194304]\n  t0: 3: 3145728 [4: 4194304] main\n\
        @ 0x10 0x20 0x30\n  t*: 2: 2097152 [2: 2097152]\n  t0: 2: 2097152 [2: 2097152]\n\
        @ 0x40\n  t*: 1: 1048576 [2: 2097152]\n\nMAPPED_LIBRARIES:\n@ 0x99\n  t*: 9: 9 [9: 9]\n";

    #[test]
    fn a_dump_parses_into_stacks_and_counts() {
        let d = parse(DUMP.as_bytes()).expect("parses");
        assert_eq!(d.rate, 524288);
        assert_eq!(d.total.cur_bytes, 3145728);
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.records[0].stack, [0x10, 0x20, 0x30]);
        assert_eq!(d.records[1].counts.acc_objs, 2);
        assert!(parse(&b"garbage\n"[..]).is_err());
        assert!(parse(&b""[..]).is_err());
    }

    #[test]
    fn unscaling_matches_go() {
        // 1 MiB objects at 512 KiB: sampled with probability 1 - e^-2.
        let (o, b) = unscale(100, 100 << 20, 524288);
        assert_eq!(o, 115);
        assert!((b as f64 / (100u64 << 20) as f64 - 1.1565).abs() < 0.001);
    }
}
