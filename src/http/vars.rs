//! `/debug/vars`: what Go's expvar serves, for rdebug's figures. One JSON object:
//!
//! ```text
//! {"cmdline":["./webapp"],"memstats":{"alloc":..,...},
//!  "sched":[{"runtime":"main","workers":2,...,"per_worker":[{"parked":true,...},...],
//!   "recent_stalls":[{"unix_ms":..,"worker":1,"polled_ms":52,"lasted_ms":203,"stack":["blocks_in_sleep",...]}]}]}
//! ```
//!
//! Written from the field tables (the same keys as the JSON lines and serde), so no JSON library
//! is needed at run time.

use std::io::Write as _;

use hyper::Response;

use super::reply::{self, Body, JSON};
use super::runtimes;
use crate::stats::encode::{json_fields, json_object};
use crate::stats::{fields, mem};
use crate::sys::stderr::json_str;

pub(crate) fn page() -> Response<Body> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(b"{\"cmdline\":[");
    for (i, a) in std::env::args_os().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(&mut out, &a.to_string_lossy());
    }
    out.extend_from_slice(b"],\"memstats\":");
    json_object(&mut out, fields::MEMSTATS, &mem::read());
    out.extend_from_slice(b",\"sched\":[");
    for (i, (label, s, stalls)) in runtimes::snapshot_with_stalls().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"runtime\":");
        json_str(&mut out, label);
        json_fields(&mut out, fields::SCHED, s);
        let rest: Vec<_> = fields::BLOCKING
            .iter()
            .filter(|b| !fields::SCHED.iter().any(|f| f.key == b.key))
            .collect();
        for f in rest {
            json_fields(&mut out, std::slice::from_ref(f), s);
        }
        out.extend_from_slice(b",\"per_worker\":[");
        for (k, w) in s.per_worker.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            json_object(&mut out, fields::WORKER, w);
        }
        out.extend_from_slice(b"],\"recent_stalls\":[");
        for (k, st) in stalls.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            let _ = write!(
                out,
                "{{\"unix_ms\":{},\"worker\":{},\"polled_ms\":{},\"lasted_ms\":",
                st.unix_ms, st.worker, st.polled_ms
            );
            match st.lasted_ms {
                Some(ms) => {
                    let _ = write!(out, "{ms}");
                }
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"stack\":[");
            for (f, name) in st.stack.iter().enumerate() {
                if f > 0 {
                    out.push(b',');
                }
                json_str(&mut out, name);
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
    }
    let _ = writeln!(out, "]}}");
    reply::ok(JSON, out)
}
