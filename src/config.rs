//! `RDEBUG` parsing: `key=value` items split on commas, trimmed, the last duplicate winning.
//!
//! Pure functions, no I/O: [`Config::parse`] returns the settings plus one [`ConfigError`] per item
//! it could not use (the lenient path of [`init`](crate::init)); [`Config::parse_strict`] fails on
//! the first one (the strict path of [`try_init`](crate::try_init)). A [`Config`] cannot hold a
//! value `RDEBUG` would refuse: its fields are private and its setters validate.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;

/// How trace lines are written.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Format {
    /// Lines shaped like Go's (`SCHED 1000ms: ...`, `gc 1 @1.384s 2%: ...`).
    #[default]
    Text,
    /// One JSON object per line; its keys are the serde names of [`SchedStats`](crate::SchedStats),
    /// [`WorkerStats`](crate::WorkerStats) and [`GcCycle`](crate::GcCycle), so a line
    /// deserializes into its struct.
    Json,
}

/// What the reporter prints and how often: everything `RDEBUG` can say.
///
/// Build one from a string with [`Config::parse`], or start from [`Config::default`] and use the
/// setters, which refuse what `RDEBUG` would refuse; hand it to [`Builder`](crate::Builder) or
/// [`Reporter::reconfigure`](crate::Reporter::reconfigure).
///
/// ```
/// let (cfg, problems) = rdebug::Config::parse("schedtrace=1000,gctrace=1,gcpercent=50");
/// assert!(problems.is_empty());
/// assert_eq!(cfg.schedtrace_ms(), 1000);
/// assert_eq!(cfg.gctrace(), 1);
/// assert_eq!(cfg.gcpercent(), Some(50));
///
/// let mut cfg = rdebug::Config::default();
/// cfg.set_gcpoll_ms(20).unwrap();
/// assert!(cfg.set_gcpoll_ms(0).is_err()); // as RDEBUG=gcpoll=0 is
/// assert_eq!(cfg.gcpoll_ms(), 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Config {
    schedtrace_ms: u64,
    scheddetail: bool,
    gctrace: u8,
    gcpercent: Option<u64>,
    gcpoll_ms: u64,
    format: Format,
    http: Option<SocketAddr>,
    cpuprofile: Option<PathBuf>,
    memprofile: Option<PathBuf>,
    memprofilerate: u64,
    stalltrace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            schedtrace_ms: 0,
            scheddetail: false,
            gctrace: 0,
            gcpercent: Some(100),
            gcpoll_ms: 100,
            format: Format::Text,
            http: None,
            cpuprofile: None,
            memprofile: None,
            memprofilerate: DEFAULT_MEMPROFILERATE,
            stalltrace_ms: 0,
        }
    }
}

/// Longest `schedtrace` / `gcpoll` period accepted: one day.
pub(crate) const MAX_PERIOD_MS: u64 = 86_400_000;
/// Go's default heap sampling rate: one sample per 512 KiB allocated on average.
pub(crate) const DEFAULT_MEMPROFILERATE: u64 = 512 * 1024;
/// Largest `memprofilerate` accepted: 1 TiB.
pub(crate) const MAX_MEMPROFILERATE: u64 = 1 << 40;
/// Largest `gcpercent` accepted.
pub(crate) const MAX_GCPERCENT: u64 = 1_000_000;
/// Largest `stalltrace` threshold accepted: a minute.
pub(crate) const MAX_STALL_MS: u64 = 60_000;
/// Longest item quoted back in a message.
const MAX_QUOTE: usize = 40;

/// Quotes an item for a message: control characters and invisible or bidirectional formatting
/// characters escaped (`\u{202e}`), cut to `MAX_QUOTE` characters as shown, escapes included.
fn quote(item: &str) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for c in item.chars() {
        let escape = c.is_control() || (!c.is_ascii() && c.escape_debug().len() > 1);
        let width = if escape { c.escape_default().len() } else { 1 };
        if shown + width > MAX_QUOTE {
            out.push('…');
            break;
        }
        shown += width;
        if escape {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn problem(item: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        item: quote(item),
        expected: expected.into(),
    }
}

/// The keys, as warnings list them (short enough that a warning line stays under 200 characters).
const KEYS: &str =
    "sched{trace,detail} stalltrace gc{trace,percent,poll} format http cpu/memprofile[rate]";

impl Config {
    /// Parses an `RDEBUG` string leniently: every usable item applies, and each one that is not
    /// usable comes back as a [`ConfigError`] (an unknown key, a missing `=`, a bad value).
    /// Empty items (`,,`) are skipped silently, as Go does.
    ///
    /// ```
    /// let (cfg, problems) = rdebug::Config::parse(" schedtrace=500 , bogus=1, gctrace=2");
    /// assert_eq!(cfg.schedtrace_ms(), 500);
    /// assert_eq!(cfg.gctrace(), 2);
    /// assert_eq!(problems.len(), 1);
    /// assert!(problems[0].to_string().starts_with("bogus=1: unknown key"));
    /// ```
    pub fn parse(s: &str) -> (Config, Vec<ConfigError>) {
        let mut cfg = Config::default();
        let problems = cfg.apply(s);
        (cfg, problems)
    }

    /// Parses an `RDEBUG` string strictly: the first unusable item is an error that names it.
    ///
    /// ```
    /// assert!(rdebug::Config::parse_strict("schedtrace=1000").is_ok());
    /// let err = rdebug::Config::parse_strict("gctrace=9").unwrap_err();
    /// assert_eq!(err.item, "gctrace=9");
    /// ```
    pub fn parse_strict(s: &str) -> Result<Config, ConfigError> {
        let (cfg, mut problems) = Config::parse(s);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems.swap_remove(0))
        }
    }

    /// Applies the items of `s` on top of `self`; returns the items it could not use.
    pub fn apply(&mut self, s: &str) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for raw in s.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            if let Err(p) = self.apply_item(item) {
                problems.push(p);
            }
        }
        problems
    }

    fn apply_item(&mut self, item: &str) -> Result<(), ConfigError> {
        let Some((key, value)) = item.split_once('=') else {
            return Err(problem(item, "expected key=value, e.g. schedtrace=1000"));
        };
        let (key, value) = (key.trim(), value.trim());
        // The setters validate the range; what they refuse is reported with the whole item.
        let ok = match key {
            "schedtrace" => whole(value).is_some_and(|v| self.set_schedtrace_ms(v).is_ok()),
            "gcpoll" => whole(value).is_some_and(|v| self.set_gcpoll_ms(v).is_ok()),
            "stalltrace" => whole(value).is_some_and(|v| self.set_stalltrace_ms(v).is_ok()),
            "scheddetail" => {
                let ok = matches!(value, "0" | "1");
                if ok {
                    self.set_scheddetail(value == "1");
                }
                ok
            }
            "gctrace" => whole(value)
                .filter(|_| value.len() == 1)
                .and_then(|v| u8::try_from(v).ok())
                .is_some_and(|v| self.set_gctrace(v).is_ok()),
            "gcpercent" if value == "off" => self.set_gcpercent(None).is_ok(),
            "gcpercent" => whole(value).is_some_and(|v| self.set_gcpercent(Some(v)).is_ok()),
            "format" => match value {
                "text" | "json" => {
                    let json = value == "json";
                    self.set_format(if json { Format::Json } else { Format::Text });
                    true
                }
                _ => false,
            },
            "http" | "cpuprofile" | "memprofile" | "memprofilerate"
                if !feature_compiled_in(key) =>
            {
                return Err(problem(item, missing_feature(key)));
            }
            "http" => parse_addr(value).map(|a| self.http = Some(a)).is_some(),
            "cpuprofile" => (!value.is_empty())
                .then(|| self.cpuprofile = Some(value.into()))
                .is_some(),
            "memprofile" => (!value.is_empty())
                .then(|| self.memprofile = Some(value.into()))
                .is_some(),
            "memprofilerate" => whole(value).is_some_and(|v| self.set_memprofilerate(v).is_ok()),
            _ => return Err(problem(item, format!("unknown key (keys: {KEYS})"))),
        };
        if ok {
            Ok(())
        } else {
            Err(problem(item, expected(key)))
        }
    }

    /// The SCHED period, or `None` when schedtrace is off.
    pub(crate) fn sched_period(&self) -> Option<Duration> {
        (self.schedtrace_ms > 0).then(|| Duration::from_millis(self.schedtrace_ms))
    }

    /// The allocator sampling period, or `None` when no trace is on. The reporter samples the
    /// allocator whenever it runs, so cycles (`num_gc`) are counted the same with `gctrace` on or
    /// off; `gctrace` only decides whether they are printed.
    pub(crate) fn gc_period(&self) -> Option<Duration> {
        self.any_trace()
            .then(|| Duration::from_millis(self.gcpoll_ms.max(1)))
    }

    /// Whether any trace is on (a reporter thread has work).
    ///
    /// ```
    /// assert!(!rdebug::Config::default().any_trace());
    /// assert!(rdebug::Config::parse_strict("gctrace=1").unwrap().any_trace());
    /// ```
    pub fn any_trace(&self) -> bool {
        self.schedtrace_ms > 0 || self.gctrace > 0 || self.stalltrace_ms > 0
    }

    /// How often the reporter looks for stalls, or `None` when stalltrace is off: half the
    /// threshold, 1 ms to 100 ms.
    pub(crate) fn stall_period(&self) -> Option<Duration> {
        (self.stalltrace_ms > 0).then(|| {
            (Duration::from_millis(self.stalltrace_ms) / 2)
                .clamp(Duration::from_millis(1), Duration::from_millis(100))
        })
    }

    /// How often the reporter looks for stalls while every watched worker was parked at its
    /// last look: 4/5 of N ms, 1 ms to 100 ms (never shorter than
    /// [`stall_period`](Self::stall_period)). A parked worker runs no poll, so only a poll that
    /// starts after that look can be missed, and it is seen at most this long after it starts;
    /// decided N ms later and written at once, its STALL line is out within 2N ms of the poll's
    /// start, the last fifth of N left for the confirming burst and a late wake-up.
    pub(crate) fn stall_idle_period(&self) -> Option<Duration> {
        let busy = self.stall_period()?;
        let n = self.stalltrace_ms;
        Some(Duration::from_millis(n.saturating_sub(n / 5).clamp(1, 100)).max(busy))
    }

    /// `stalltrace=N`: a STALL line as soon as one poll has held a tokio worker N ms or more;
    /// 0 is off.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().stalltrace_ms(), 0);
    /// assert_eq!(rdebug::Config::parse_strict("stalltrace=50").unwrap().stalltrace_ms(), 50);
    /// ```
    pub fn stalltrace_ms(&self) -> u64 {
        self.stalltrace_ms
    }

    /// Sets `stalltrace`: 0 (off) to 60,000 ms; anything else is refused and nothing changes.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_stalltrace_ms(50).unwrap();
    /// assert!(cfg.set_stalltrace_ms(3_600_000).is_err());
    /// assert_eq!(cfg.stalltrace_ms(), 50);
    /// ```
    pub fn set_stalltrace_ms(&mut self, ms: u64) -> Result<&mut Self, ConfigError> {
        self.stalltrace_ms = in_range("stalltrace", ms, 0, MAX_STALL_MS)?;
        Ok(self)
    }

    /// `schedtrace=N`: a SCHED line every N ms; 0 is off.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().schedtrace_ms(), 0);
    /// ```
    pub fn schedtrace_ms(&self) -> u64 {
        self.schedtrace_ms
    }

    /// `scheddetail=1`: with schedtrace, one more line per worker and one for the blocking pool.
    ///
    /// ```
    /// assert!(!rdebug::Config::default().scheddetail());
    /// ```
    pub fn scheddetail(&self) -> bool {
        self.scheddetail
    }

    /// `gctrace=N`: 1 prints a line per allocator cycle, 2 adds a detail line; 0 is off.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().gctrace(), 0);
    /// ```
    pub fn gctrace(&self) -> u8 {
        self.gctrace
    }

    /// `gcpercent=N` (Go's `GOGC`): goal = live × (1 + N/100). `None` is `gcpercent=off`: the goal
    /// is never reached, so only purge sweeps and forced cycles close cycles.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().gcpercent(), Some(100));
    /// ```
    pub fn gcpercent(&self) -> Option<u64> {
        self.gcpercent
    }

    /// `gcpoll=N`: how often, in ms, the allocator is sampled for cycles.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().gcpoll_ms(), 100);
    /// ```
    pub fn gcpoll_ms(&self) -> u64 {
        self.gcpoll_ms
    }

    /// `format=text|json`.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().format(), rdebug::Format::Text);
    /// ```
    pub fn format(&self) -> Format {
        self.format
    }

    /// `http=ADDR`: where the debug server listens (feature `http`); `None` when off.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().http(), None);
    /// ```
    pub fn http(&self) -> Option<std::net::SocketAddr> {
        self.http
    }

    /// `cpuprofile=FILE`: a CPU profile of the whole run is written there at normal exit
    /// (feature `pprof`).
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().cpuprofile(), None);
    /// ```
    pub fn cpuprofile(&self) -> Option<&std::path::Path> {
        self.cpuprofile.as_deref()
    }

    /// `memprofile=FILE`: a heap profile is written there at normal exit (feature `pprof`).
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().memprofile(), None);
    /// ```
    pub fn memprofile(&self) -> Option<&std::path::Path> {
        self.memprofile.as_deref()
    }

    /// `memprofilerate=N`: heap sampling, one sample per N bytes allocated on average (Go's
    /// `runtime.MemProfileRate`); 0 turns sampling off. Default 524288.
    ///
    /// ```
    /// assert_eq!(rdebug::Config::default().memprofilerate(), 524288);
    /// ```
    pub fn memprofilerate(&self) -> u64 {
        self.memprofilerate
    }

    /// Whether anything needs starting: a trace, the debug server or a whole-run profile.
    #[allow(dead_code)] // for the debug server and whole-run profiles, coming next
    pub(crate) fn any_service(&self) -> bool {
        self.any_trace() || self.http.is_some() || self.cpuprofile.is_some()
    }

    /// Sets `http`: where the debug server listens, or `None` for off.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_http(Some("127.0.0.1:6060".parse().unwrap()));
    /// assert_eq!(cfg.http().unwrap().port(), 6060);
    /// ```
    pub fn set_http(&mut self, addr: Option<std::net::SocketAddr>) -> &mut Self {
        self.http = addr;
        self
    }

    /// Sets `memprofilerate`: 0 (off) to 2^40 bytes; anything else is refused and nothing changes.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_memprofilerate(4096).unwrap();
    /// assert!(cfg.set_memprofilerate(u64::MAX).is_err());
    /// ```
    pub fn set_memprofilerate(&mut self, bytes: u64) -> Result<&mut Self, ConfigError> {
        self.memprofilerate = in_range("memprofilerate", bytes, 0, MAX_MEMPROFILERATE)?;
        Ok(self)
    }

    /// Sets `schedtrace`: 0 (off) to one day (86,400,000 ms); anything else is refused and nothing
    /// changes.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_schedtrace_ms(1000).unwrap();
    /// assert!(cfg.set_schedtrace_ms(u64::MAX).is_err());
    /// assert_eq!(cfg.schedtrace_ms(), 1000);
    /// ```
    pub fn set_schedtrace_ms(&mut self, ms: u64) -> Result<&mut Self, ConfigError> {
        self.schedtrace_ms = in_range("schedtrace", ms, 0, MAX_PERIOD_MS)?;
        Ok(self)
    }

    /// Sets `scheddetail`.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_scheddetail(true);
    /// assert!(cfg.scheddetail());
    /// ```
    pub fn set_scheddetail(&mut self, on: bool) -> &mut Self {
        self.scheddetail = on;
        self
    }

    /// Sets `gctrace`: 0, 1 or 2; anything else is refused and nothing changes.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_gctrace(2).unwrap();
    /// assert!(cfg.set_gctrace(3).is_err());
    /// ```
    pub fn set_gctrace(&mut self, level: u8) -> Result<&mut Self, ConfigError> {
        if level > 2 {
            return Err(problem(&format!("gctrace={level}"), expected("gctrace")));
        }
        self.gctrace = level;
        Ok(self)
    }

    /// Sets `gcpercent`: `Some(0..=1_000_000)`, or `None` for off; anything else is
    /// refused and nothing changes.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_gcpercent(Some(50)).unwrap();
    /// cfg.set_gcpercent(None).unwrap();
    /// assert!(cfg.set_gcpercent(Some(u64::MAX)).is_err());
    /// assert_eq!(cfg.gcpercent(), None);
    /// ```
    pub fn set_gcpercent(&mut self, percent: Option<u64>) -> Result<&mut Self, ConfigError> {
        self.gcpercent = match percent {
            None => None,
            Some(p) => Some(in_range("gcpercent", p, 0, MAX_GCPERCENT)?),
        };
        Ok(self)
    }

    /// Sets `gcpoll`: 1 to one day (86,400,000 ms); anything else is refused and nothing changes.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// assert!(cfg.set_gcpoll_ms(0).is_err());
    /// ```
    pub fn set_gcpoll_ms(&mut self, ms: u64) -> Result<&mut Self, ConfigError> {
        self.gcpoll_ms = in_range("gcpoll", ms, 1, MAX_PERIOD_MS)?;
        Ok(self)
    }

    /// Sets `format`.
    ///
    /// ```
    /// let mut cfg = rdebug::Config::default();
    /// cfg.set_format(rdebug::Format::Json);
    /// assert_eq!(cfg.format(), rdebug::Format::Json);
    /// ```
    pub fn set_format(&mut self, format: Format) -> &mut Self {
        self.format = format;
        self
    }
}

/// What `key` accepts, as the warning says it.
fn expected(key: &str) -> String {
    match key {
        "schedtrace" => {
            format!("expected a whole number of milliseconds from 0 to {MAX_PERIOD_MS}")
        }
        "gcpoll" => format!("expected a whole number of milliseconds from 1 to {MAX_PERIOD_MS}"),
        "stalltrace" => {
            format!("expected a whole number of milliseconds from 0 (off) to {MAX_STALL_MS}")
        }
        "scheddetail" => "expected 0 or 1".into(),
        "gctrace" => "expected 0, 1 or 2".into(),
        "gcpercent" => format!("expected a percent from 0 to {MAX_GCPERCENT}, or off"),
        "format" => "expected text or json".into(),
        "http" => "expected an address to listen on: 127.0.0.1:6060, [::1]:6060, localhost:6060 \
                   or :6060 (loopback)"
            .into(),
        "cpuprofile" | "memprofile" => "expected a file name".into(),
        "memprofilerate" => {
            format!("expected bytes per sample from 0 (off) to {MAX_MEMPROFILERATE}")
        }
        _ => format!("unknown key (keys: {KEYS})"),
    }
}

/// `value` if it is within `min..=max`, else the error for `key`.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(problem(&format!("{key}={value}"), expected(key)))
    }
}

/// The Cargo feature a key needs, and whether it is compiled in.
// With only `http` on, the arms are `true` and `false`: a `matches!` would hide the features.
#[allow(clippy::match_like_matches_macro)]
fn feature_compiled_in(key: &str) -> bool {
    match key {
        "http" => cfg!(feature = "http"),
        _ => cfg!(feature = "pprof"),
    }
}

/// The warning for a key whose Cargo feature is not compiled in.
fn missing_feature(key: &str) -> String {
    let feature = if key == "http" { "http" } else { "pprof" };
    format!("needs rdebug's `{feature}` Cargo feature: rdebug = {{ features = [\"{feature}\"] }}")
}

/// A listening address: `ip:port`, `[v6]:port`, `localhost:port`, or `:port` (loopback, as Go's
/// `:6060` would be everywhere: rdebug binds loopback unless told otherwise).
fn parse_addr(value: &str) -> Option<SocketAddr> {
    if let Some(port) = value.strip_prefix(':') {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, whole_port(port)?)));
    }
    if let Some(port) = value.strip_prefix("localhost:") {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, whole_port(port)?)));
    }
    value.parse().ok()
}

fn whole_port(port: &str) -> Option<u16> {
    whole(port).and_then(|p| u16::try_from(p).ok())
}

/// A whole decimal number: digits only (no sign, no spaces), no overflow.
fn whole(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let (cfg, problems) = Config::parse("");
        assert_eq!(cfg, Config::default());
        assert!(problems.is_empty());
        assert!(!cfg.any_trace());
    }

    #[test]
    fn all_keys() {
        let (cfg, problems) = Config::parse(
            "schedtrace=250,scheddetail=1,gctrace=2,gcpercent=off,gcpoll=20,format=json",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.schedtrace_ms, 250);
        assert!(cfg.scheddetail);
        assert_eq!(cfg.gctrace, 2);
        assert_eq!(cfg.gcpercent, None);
        assert_eq!(cfg.gcpoll_ms, 20);
        assert_eq!(cfg.format, Format::Json);
    }

    #[test]
    fn last_duplicate_wins_and_spaces_are_trimmed() {
        let (cfg, problems) = Config::parse(" schedtrace = 10 ,, schedtrace=20 ,");
        assert!(problems.is_empty());
        assert_eq!(cfg.schedtrace_ms, 20);
    }

    #[test]
    fn bad_items_are_reported_and_the_rest_applies() {
        let (cfg, problems) = Config::parse(
            "schedtrace,gctrace=9,=1,schedtrace=-5,gcpoll=0,format=xml,gctrace=1,x=1",
        );
        assert_eq!(cfg.gctrace, 1);
        assert_eq!(cfg.schedtrace_ms, 0);
        assert_eq!(cfg.gcpoll_ms, 100);
        assert_eq!(cfg.format, Format::Text);
        let items: Vec<_> = problems.iter().map(|p| p.item.as_str()).collect();
        assert_eq!(
            items,
            [
                "schedtrace",
                "gctrace=9",
                "=1",
                "schedtrace=-5",
                "gcpoll=0",
                "format=xml",
                "x=1"
            ]
        );
    }

    #[test]
    fn overflowing_numbers_are_rejected() {
        let (cfg, problems) = Config::parse("schedtrace=99999999999999999999999");
        assert_eq!(cfg.schedtrace_ms, 0);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn long_items_are_cut_in_messages() {
        let long = format!("k={}", "v".repeat(100_000));
        let (_, problems) = Config::parse(&long);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().chars().count() < 200);
        let (_, problems) = Config::parse("ключ=\u{7}1");
        assert_eq!(problems[0].item, "ключ=\\u{7}1");
    }

    #[test]
    fn http_addresses_default_to_loopback() {
        let parse = |v: &str| parse_addr(v).map(|a| a.to_string());
        assert_eq!(parse(":6060").as_deref(), Some("127.0.0.1:6060"));
        assert_eq!(parse("localhost:6060").as_deref(), Some("127.0.0.1:6060"));
        assert_eq!(parse("0.0.0.0:80").as_deref(), Some("0.0.0.0:80"));
        assert_eq!(parse("[::1]:6060").as_deref(), Some("[::1]:6060"));
        for bad in [
            "",
            ":",
            ":99999",
            "6060",
            "example.com:80",
            ":-1",
            "1.2.3.4",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let (cfg, problems) = Config::parse("http=:6060,cpuprofile=cpu.pb.gz,memprofilerate=0");
        if cfg!(feature = "pprof") {
            assert!(problems.is_empty(), "{problems:?}");
            assert_eq!(cfg.http().map(|a| a.port()), Some(6060));
            assert_eq!(cfg.memprofilerate(), 0);
        } else if cfg!(feature = "http") {
            assert_eq!(problems.len(), 2, "{problems:?}");
        } else {
            assert_eq!(problems.len(), 3, "{problems:?}");
            assert!(
                problems[0].expected.contains("`http` Cargo feature"),
                "{problems:?}"
            );
            assert!(
                problems[1].expected.contains("`pprof` Cargo feature"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn stalltrace_takes_milliseconds_and_refuses_junk_and_huge_values() {
        let (cfg, problems) = Config::parse("stalltrace=50");
        assert!(problems.is_empty() && cfg.any_trace());
        assert_eq!(cfg.stall_period(), Some(Duration::from_millis(25)));
        assert_eq!(cfg.stall_idle_period(), Some(Duration::from_millis(40)));
        for (n, busy, idle) in [
            (1, 1000, 1),
            (3, 1500, 3),
            (51, 25_500, 41),
            (1000, 100_000, 100),
        ] {
            let cfg = Config::parse_strict(&format!("stalltrace={n}")).unwrap();
            assert_eq!(cfg.stall_period(), Some(Duration::from_micros(busy)), "{n}");
            assert_eq!(
                cfg.stall_idle_period(),
                Some(Duration::from_millis(idle)),
                "{n}"
            );
        }
        let (cfg, problems) = Config::parse("stalltrace=0");
        assert!(problems.is_empty() && !cfg.any_trace() && cfg.stall_period().is_none());
        assert!(cfg.stall_idle_period().is_none());
        for bad in [
            "stalltrace=x",
            "stalltrace=-1",
            "stalltrace=60001",
            "stalltrace=1e3",
            "stalltrace=99999999999999999999999",
            "stalltrace=",
        ] {
            let (cfg, problems) = Config::parse(bad);
            assert_eq!(cfg.stalltrace_ms(), 0, "{bad}");
            assert_eq!(problems.len(), 1, "{bad}");
            assert!(
                problems[0].expected.contains("0 (off) to 60000"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn strict_names_the_first_bad_item() {
        let err = Config::parse_strict("gctrace=1,format=xml,schedtrace").unwrap_err();
        assert_eq!(err.item, "format=xml");
        assert_eq!(err.expected, "expected text or json");
    }
}
