//! Records written from the field tables of [`fields`](super::fields): the one implementation of
//! `key=value` text fields, JSON fields, and the JSON `sched` and `gc` lines, shared by every
//! presenter (the reporter's lines, the debug server's `/debug/vars` and `trace`).
//!
//! Every function appends to a reused buffer with `write!`, which formats integers without
//! allocating.

use std::io::Write;

use super::fields::{self, Field, Unit, Value};
use super::{GcCycle, SchedStats};
use crate::sys::stderr::json_str;

/// Writes `key=value` for every field of `table` that has a text key and a value, each preceded
/// by a space except the first when `first` is set.
pub(crate) fn text_fields<R>(out: &mut Vec<u8>, table: &[Field<R>], r: &R, mut first: bool) {
    for f in table.iter().filter(|f| !f.text.is_empty()) {
        let v = (f.get)(r);
        if v == Value::Missing {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        first = false;
        let _ = write!(out, "{}=", f.text);
        let _ = match (v, f.unit) {
            (Value::Int(n), Unit::Plain) => write!(out, "{n}"),
            (Value::Int(n), Unit::NsAsMs) => write!(out, "{}ms", n / 1_000_000),
            (Value::Int(n), Unit::NsAsUs) => write!(out, "{}us", n / 1_000),
            (Value::Bool(b), _) => write!(out, "{}", u8::from(b)),
            (Value::Float(x), _) => write!(out, "{x}"),
            (Value::Missing, _) => Ok(()),
        };
    }
}

/// Writes `,"key":value` for every field of `table` that has a value. A share that is not a
/// finite number is written as 0, so the output stays JSON.
pub(crate) fn json_fields<R>(out: &mut Vec<u8>, table: &[Field<R>], r: &R) {
    for f in table {
        let v = (f.get)(r);
        if v == Value::Missing {
            continue;
        }
        let _ = write!(out, ",\"{}\":", f.key);
        let _ = match v {
            Value::Int(n) => write!(out, "{n}"),
            Value::Bool(b) => write!(out, "{b}"),
            Value::Float(x) if x.is_finite() => write!(out, "{x}"),
            Value::Float(_) => write!(out, "0"),
            Value::Missing => Ok(()),
        };
    }
}

/// Writes `{"key":value,...}`: every field of `table` that has a value.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn json_object<R>(out: &mut Vec<u8>, table: &[Field<R>], r: &R) {
    let start = out.len();
    json_fields(out, table, r);
    if out.len() > start {
        out[start] = b'{';
    } else {
        out.push(b'{');
    }
    out.push(b'}');
}

/// `{"type":"<kind>"[,"runtime":"<label>"]`
pub(crate) fn json_head(out: &mut Vec<u8>, kind: &str, label: Option<&str>) {
    let _ = write!(out, "{{\"type\":\"{kind}\"");
    if let Some(l) = label {
        out.extend_from_slice(b",\"runtime\":");
        json_str(out, l);
    }
}

/// The per-worker local queue depths, or `None` when any is unknown (without `tokio_unstable`).
pub(crate) fn local_queues(s: &SchedStats) -> Option<impl Iterator<Item = usize> + '_> {
    let known =
        !s.per_worker.is_empty() && s.per_worker.iter().all(|w| w.local_queue_depth.is_some());
    known.then(|| {
        s.per_worker
            .iter()
            .map(|w| w.local_queue_depth.unwrap_or(0))
    })
}

/// The JSON SCHED line: `{"type":"sched"[,"runtime":..],"ms":..,<SCHED fields>[,"per_worker":
/// [{"local_queue_depth":l0},...]]}` and a newline.
pub(crate) fn sched_json(out: &mut Vec<u8>, ms: u64, label: Option<&str>, s: &SchedStats) {
    json_head(out, "sched", label);
    let _ = write!(out, ",\"ms\":{ms}");
    json_fields(out, fields::SCHED, s);
    if let Some(depths) = local_queues(s) {
        out.extend_from_slice(b",\"per_worker\":[");
        for (i, d) in depths.enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let _ = write!(out, "{comma}{{\"local_queue_depth\":{d}}}");
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
}

/// The JSON gc line: `{"type":"gc",<GC fields>}` and a newline.
pub(crate) fn gc_json(out: &mut Vec<u8>, c: &GcCycle) {
    json_head(out, "gc", None);
    json_fields(out, fields::GC, c);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::WorkerStats;

    #[test]
    fn objects_are_json_with_or_without_fields() {
        let w = WorkerStats {
            parked: true,
            park_count: 3,
            ..WorkerStats::default()
        };
        let mut out = Vec::new();
        json_object(&mut out, fields::WORKER, &w);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("{\"parked\":true,\"park_count\":3,"),
            "{text}"
        );
        assert!(text.ends_with('}') && !text.contains(",,"), "{text}");
        let empty: &[Field<WorkerStats>] = &[];
        let mut out = Vec::new();
        json_object(&mut out, empty, &w);
        assert_eq!(out, b"{}");
    }
}
