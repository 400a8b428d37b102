//! `RDEBUG` parsing: `key=value` items split on commas, trimmed, the last duplicate winning.
//!
//! Pure functions, no I/O: [`Config::parse`] returns the settings plus one [`ConfigError`] per item
//! it could not use (the lenient path of [`init`](crate::init)); [`Config::parse_strict`] fails on
//! the first one (the strict path of [`try_init`](crate::try_init)).

use std::fmt;
use std::time::Duration;

/// How trace lines are written.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Format {
    /// Lines shaped like Go's (`SCHED 1000ms: ...`, `gc 1 @1.384s 2%: ...`).
    #[default]
    Text,
    /// One JSON object per line with the same fields as the text line.
    Json,
}

/// What the reporter prints and how often: everything `RDEBUG` can say.
///
/// Build one from a string with [`Config::parse`] or field by field; hand it to
/// [`Builder`](crate::Builder) or [`Reporter::reconfigure`](crate::Reporter::reconfigure).
///
/// ```
/// let (cfg, problems) = rdebug::Config::parse("schedtrace=1000,gctrace=1,gcpercent=50");
/// assert!(problems.is_empty());
/// assert_eq!(cfg.schedtrace_ms, 1000);
/// assert_eq!(cfg.gctrace, 1);
/// assert_eq!(cfg.gcpercent, Some(50));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Config {
    /// `schedtrace=N`: a SCHED line every N ms; 0 is off.
    pub schedtrace_ms: u64,
    /// `scheddetail=1`: with schedtrace, one more line per worker and one for the blocking pool.
    pub scheddetail: bool,
    /// `gctrace=1`: a line per allocator cycle; `2` adds a detail line per cycle; 0 is off.
    pub gctrace: u8,
    /// `gcpercent=N` (Go's `GOGC`): goal = live × (1 + N/100). `None` is `gcpercent=off`: the
    /// goal is never reached, so only purge sweeps and forced cycles close cycles.
    pub gcpercent: Option<u64>,
    /// `gcpoll=N`: how often, in ms, the allocator is sampled for cycles.
    pub gcpoll_ms: u64,
    /// `format=text|json`.
    pub format: Format,
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
        }
    }
}

/// Longest `schedtrace` / `gcpoll` period accepted: one day.
const MAX_PERIOD_MS: u64 = 86_400_000;
/// Longest item quoted back in a message.
const MAX_QUOTE: usize = 40;

/// One `RDEBUG` item that could not be used, with what is accepted instead.
///
/// Its `Display` is the warning line's text, without the `rdebug: warning: ` prefix.
///
/// ```
/// let (_, problems) = rdebug::Config::parse("schedtrace=abc");
/// assert_eq!(
///     problems[0].to_string(),
///     "schedtrace=abc: expected a whole number of milliseconds from 0 to 86400000"
/// );
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The item as written (trimmed, cut to a readable length).
    pub item: String,
    /// What is accepted there.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.item, self.expected)
    }
}

impl std::error::Error for ConfigError {}

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

const KEYS: &str = "schedtrace, scheddetail, gctrace, gcpercent, gcpoll, format";

impl Config {
    /// Parses an `RDEBUG` string leniently: every usable item applies, and each one that is not
    /// usable comes back as a [`ConfigError`] (an unknown key, a missing `=`, a bad value).
    /// Empty items (`,,`) are skipped silently, as Go does.
    ///
    /// ```
    /// let (cfg, problems) = rdebug::Config::parse(" schedtrace=500 , bogus=1, gctrace=2");
    /// assert_eq!(cfg.schedtrace_ms, 500);
    /// assert_eq!(cfg.gctrace, 2);
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
            return Err(problem(item, format!("expected key=value (keys: {KEYS})")));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "schedtrace" => self.schedtrace_ms = period(item, value, 0)?,
            "gcpoll" => self.gcpoll_ms = period(item, value, 1)?,
            "scheddetail" => {
                self.scheddetail = match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(problem(item, "expected 0 or 1")),
                }
            }
            "gctrace" => {
                self.gctrace = match value {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    _ => return Err(problem(item, "expected 0, 1 or 2")),
                }
            }
            "gcpercent" => {
                self.gcpercent = if value == "off" {
                    None
                } else {
                    Some(number(value, 0, 1_000_000).ok_or_else(|| {
                        problem(item, "expected a percent from 0 to 1000000, or off")
                    })?)
                }
            }
            "format" => {
                self.format = match value {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    _ => return Err(problem(item, "expected text or json")),
                }
            }
            _ => return Err(problem(item, format!("unknown key (keys: {KEYS})"))),
        }
        Ok(())
    }

    /// The SCHED period, or `None` when schedtrace is off.
    pub(crate) fn sched_period(&self) -> Option<Duration> {
        (self.schedtrace_ms > 0).then(|| Duration::from_millis(self.schedtrace_ms))
    }

    /// The allocator sampling period, or `None` when gctrace is off.
    pub(crate) fn gc_period(&self) -> Option<Duration> {
        (self.gctrace > 0).then(|| Duration::from_millis(self.gcpoll_ms.max(1)))
    }

    /// Whether any trace is on (a reporter thread has work).
    pub fn any_trace(&self) -> bool {
        self.schedtrace_ms > 0 || self.gctrace > 0
    }
}

fn number(value: &str, min: u64, max: u64) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
}

fn period(item: &str, value: &str, min: u64) -> Result<u64, ConfigError> {
    number(value, min, MAX_PERIOD_MS).ok_or_else(|| {
        problem(
            item,
            format!("expected a whole number of milliseconds from {min} to {MAX_PERIOD_MS}"),
        )
    })
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
    fn strict_names_the_first_bad_item() {
        let err = Config::parse_strict("gctrace=1,format=xml,schedtrace").unwrap_err();
        assert_eq!(err.item, "format=xml");
        assert_eq!(err.expected, "expected text or json");
    }
}
