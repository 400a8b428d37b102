//! Query parameters of the profile routes, checked the same way everywhere: a bad value is a 400
//! naming the parameter and what is accepted; unknown parameters are ignored (as Go does); when a
//! parameter is given twice, the first wins (Go's `FormValue`).
//!
//! Also the one-at-a-time slot for CPU profiles ([`CpuSlot`]), for the `pprof` side to take.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::StatusCode;

#[cfg(test)]
use super::reply::Body;
use super::reply::{self, Refusal};

/// The longest a profile or trace may run, seconds.
pub(crate) const MAX_SECONDS: u64 = 300;
/// The highest CPU sampling rate accepted, Hz.
pub(crate) const MAX_HZ: u64 = 1000;

/// The parameters of one request, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    /// `seconds=N`, 1 to [`MAX_SECONDS`].
    pub seconds: Option<u64>,
    /// `hz=N`, 1 to [`MAX_HZ`].
    pub hz: Option<u64>,
    /// `debug=N`: 0 (binary or default), 1 (text), 2 (more text).
    pub debug: u8,
    /// `gc=1`: purge before a heap profile.
    pub gc: bool,
    /// `format=...` (`svg` for a flame graph), as given.
    pub format: Option<String>,
}

/// The first value of `name` in `query`, percent-decoded (`+` is a space).
pub(crate) fn value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == name).then(|| decode(v))
        })
        .next()
}

/// Percent-decodes `s`; bad escapes are kept as written, bytes that are not UTF-8 replaced.
fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `name=<text>` cut to a readable length, for error lines.
fn shown(name: &str, text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!("{name}={}{more}", cut.escape_debug())
}

/// A whole number from `min` to `max`, or the 400 naming `name`.
pub(crate) fn number(
    name: &str,
    text: &str,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<u64, Refusal> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(&format!(
            "bad {}: expected a whole number of {unit} from {min} to {max}",
            shown(name, text)
        ))),
    }
}

/// A 400 with `message`.
pub(crate) fn bad(message: &str) -> Refusal {
    Box::new(reply::error(StatusCode::BAD_REQUEST, message))
}

impl Params {
    /// Checks the parameters rdebug knows in `query`.
    ///
    /// ```text
    /// seconds=abc -> 400 "bad seconds=abc: expected a whole number of seconds from 1 to 300"
    /// ```
    pub(crate) fn parse(query: &str) -> Result<Params, Refusal> {
        let mut p = Params::default();
        if let Some(v) = value(query, "seconds") {
            p.seconds = Some(number("seconds", &v, 1, MAX_SECONDS, "seconds")?);
        }
        if let Some(v) = value(query, "hz") {
            p.hz = Some(number("hz", &v, 1, MAX_HZ, "samples per second")?);
        }
        if let Some(v) = value(query, "debug") {
            p.debug = match &*v {
                "" | "0" => 0,
                "1" => 1,
                "2" => 2,
                _ => {
                    return Err(bad(&format!(
                        "bad {}: expected 0, 1 or 2",
                        shown("debug", &v)
                    )));
                }
            };
        }
        if let Some(v) = value(query, "gc") {
            p.gc = match &*v {
                "" | "0" => false,
                "1" => true,
                _ => return Err(bad(&format!("bad {}: expected 0 or 1", shown("gc", &v)))),
            };
        }
        if let Some(v) = value(query, "format") {
            p.format = Some(v.into_owned());
        }
        Ok(p)
    }

    /// `seconds`, or `default` when not given.
    pub(crate) fn seconds_or(&self, default: u64) -> u64 {
        self.seconds.unwrap_or(default)
    }
}

/// Whether a CPU profile is running (one at a time per process: the profiler's signal and
/// timer are process-wide).
static CPU_PROFILE_RUNNING: AtomicBool = AtomicBool::new(false);

/// The one CPU-profile slot: held while a profile runs, freed when dropped.
#[derive(Debug)]
pub(crate) struct CpuSlot(());

impl CpuSlot {
    /// Takes the slot, or answers 409 saying a profile is already running.
    pub(crate) fn take() -> Result<CpuSlot, Refusal> {
        if CPU_PROFILE_RUNNING.swap(true, Ordering::AcqRel) {
            Err(Box::new(reply::error(
                StatusCode::CONFLICT,
                "a CPU profile is already running; only one can run at a time: try again when it ends",
            )))
        } else {
            Ok(CpuSlot(()))
        }
    }
}

impl Drop for CpuSlot {
    fn drop(&mut self) {
        CPU_PROFILE_RUNNING.store(false, Ordering::Release);
    }
}

/// Whether a heap dump (`heap`, `allocs`) is being made for a request.
static HEAP_DUMP_RUNNING: AtomicBool = AtomicBool::new(false);

/// The one heap-dump slot: a second `heap` or `allocs` request while one is made gets 409 rather
/// than queueing on jemalloc's dump lock (each waiter would hold a connection and a blocking
/// thread).
#[derive(Debug)]
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the heap profiles (feature `pprof`) use it
pub(crate) struct HeapSlot(());

#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
impl HeapSlot {
    /// Takes the slot, or answers 409 saying a heap dump is being made.
    pub(crate) fn take() -> Result<HeapSlot, Refusal> {
        if HEAP_DUMP_RUNNING.swap(true, Ordering::AcqRel) {
            Err(Box::new(reply::error(
                StatusCode::CONFLICT,
                "a heap profile is being made; one at a time: try again when it ends",
            )))
        } else {
            Ok(HeapSlot(()))
        }
    }
}

impl Drop for HeapSlot {
    fn drop(&mut self) {
        HEAP_DUMP_RUNNING.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::boxed_local)]
    fn message(r: Refusal) -> (u16, String) {
        let r = *r;
        let status = r.status().as_u16();
        let go = r.headers().get("x-go-pprof").is_some();
        assert!(go, "errors carry X-Go-Pprof");
        match r.into_body() {
            Body::Full(Some(b)) => (status, String::from_utf8_lossy(&b).into_owned()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seconds_are_whole_and_bounded() {
        assert_eq!(Params::parse("seconds=5").unwrap().seconds, Some(5));
        assert_eq!(Params::parse("seconds=300").unwrap().seconds, Some(300));
        assert_eq!(Params::parse("").unwrap().seconds, None);
        for bad in [
            "abc",
            "-1",
            "0",
            "301",
            "99999999999999999999",
            "1.5",
            "",
            "%FF",
        ] {
            let (status, msg) = message(Params::parse(&format!("seconds={bad}")).unwrap_err());
            assert_eq!(status, 400);
            assert!(msg.starts_with("bad seconds="), "{msg}");
            assert!(msg.contains("from 1 to 300"), "{msg}");
        }
        let (_, msg) =
            message(Params::parse(&format!("seconds={}", "9".repeat(5000))).unwrap_err());
        assert!(msg.len() < 200, "long values are cut: {msg}");
    }

    #[test]
    fn other_parameters() {
        let p = Params::parse("hz=250&debug=1&gc=1&format=svg&x=y&seconds=2&seconds=3").unwrap();
        assert_eq!(
            p,
            Params {
                seconds: Some(2),
                hz: Some(250),
                debug: 1,
                gc: true,
                format: Some("svg".into())
            }
        );
        for q in ["hz=0", "hz=1001", "debug=3", "debug=x", "gc=2"] {
            let (status, msg) = message(Params::parse(q).unwrap_err());
            assert_eq!(status, 400, "{q}");
            assert!(msg.contains(q.split('=').next().unwrap()), "{msg}");
        }
    }

    #[test]
    fn values_are_percent_decoded() {
        assert_eq!(value("token=a%2Bb%3D&x", "token").as_deref(), Some("a+b="));
        assert_eq!(value("token=a+b", "token").as_deref(), Some("a b"));
        assert_eq!(value("token=%zz%", "token").as_deref(), Some("%zz%"));
        assert_eq!(value("token", "token").as_deref(), Some(""));
        assert_eq!(value("a=1", "token"), None);
    }

    #[test]
    fn one_cpu_profile_at_a_time() {
        let slot = CpuSlot::take().unwrap();
        let (status, msg) = message(CpuSlot::take().unwrap_err());
        assert_eq!(status, 409);
        assert!(msg.contains("already running"), "{msg}");
        drop(slot);
        drop(CpuSlot::take().unwrap());
    }

    /// Percent-encodes every byte of `s` but unreserved ones, as a browser or `url.Values`
    /// would (space as `+` or `%20`, chosen by `plus`).
    fn encode(s: &str, plus: bool) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' if plus => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// Query text a client could send: any characters, with `&`, `=`, `%`, `+` and hex digits
        /// frequent.
        fn query() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just("&".to_owned()),
                    Just("=".to_owned()),
                    Just("%".to_owned()),
                    Just("+".to_owned()),
                    "[0-9a-fA-F]{1,2}",
                    "(seconds|hz|debug|gc|format|token|since)",
                    any::<char>().prop_map(String::from),
                ],
                0..40,
            )
            .prop_map(|parts| parts.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Any query: no panic; a refusal is a 400 naming the parameter with a short line.
            #[test]
            fn any_query_parses_or_is_a_short_400(q in query()) {
                for name in ["seconds", "hz", "debug", "gc", "format", "token", "x"] {
                    let _ = value(&q, name);
                }
                if let Err(r) = Params::parse(&q) {
                    let (status, msg) = message(r);
                    prop_assert_eq!(status, 400);
                    prop_assert!(msg.starts_with("bad "), "{}", msg);
                    prop_assert!(msg.chars().count() < 200, "{}", msg);
                }
            }

            /// Whatever a value holds, encoded as a client encodes it, it decodes back; the first
            /// of two occurrences wins; other parameters around it do not matter.
            #[test]
            fn encoded_values_decode_back_and_the_first_wins(
                v in any::<String>(),
                other in any::<String>(),
                before in "[a-z]{0,6}",
                plus in any::<bool>(),
            ) {
                prop_assume!(before != "token");
                let q = format!(
                    "{before}=1&token={}&token={}&z",
                    encode(&v, plus),
                    encode(&other, plus)
                );
                let got = value(&q, "token").map(|c| c.into_owned());
                prop_assert_eq!(got.as_deref(), Some(v.as_str()));
                // The name itself may be encoded too.
                let q = format!("%74oken={}", encode(&v, plus));
                let got = value(&q, "token").map(|c| c.into_owned());
                prop_assert_eq!(got.as_deref(), Some(v.as_str()));
            }

            /// `seconds=n` is accepted exactly for 1..=300, and then is n.
            #[test]
            fn seconds_accepted_exactly_in_range(n in any::<u64>(), pad in "(&x=1)?") {
                let p = Params::parse(&format!("seconds={n}{pad}"));
                if (1..=MAX_SECONDS).contains(&n) {
                    prop_assert_eq!(p.ok().and_then(|p| p.seconds), Some(n));
                } else {
                    prop_assert!(p.is_err());
                }
            }
        }
    }

    #[test]
    fn one_heap_dump_at_a_time() {
        let slot = HeapSlot::take().unwrap();
        let (status, msg) = message(HeapSlot::take().unwrap_err());
        assert_eq!(status, 409);
        assert!(msg.contains("one at a time"), "{msg}");
        drop(slot);
        drop(HeapSlot::take().unwrap());
    }
}
