//! Hostile `RDEBUG` values: the program runs on, every bad item gets one warning line naming it
//! and what is accepted (cut to a sane length), and the valid items still apply.
//!
//! Each value runs in a child process (the variable is process-wide); the children run in
//! parallel. A property test then checks the parser itself.

mod support;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

use proptest::prelude::*;
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

/// How long each child lets the reporter run.
const RUN: Duration = Duration::from_millis(400);
/// Longest warning line accepted as "cut to a sane length".
const MAX_LINE: usize = 200;

/// One case: the value, the items it must warn about (as the warning quotes them), and the
/// `schedtrace` period that must be in effect (0: no reporter).
struct Case {
    value: OsString,
    bad: Vec<String>,
    schedtrace_ms: u64,
    /// Warning lines beyond the per-item ones (the summary line of a flood).
    summary: Option<String>,
}

fn case(value: &str, bad: &[&str], schedtrace_ms: u64) -> Case {
    Case {
        value: value.into(),
        bad: bad.iter().map(|s| s.to_string()).collect(),
        schedtrace_ms,
        summary: None,
    }
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        case("", &[], 0),
        case(",,,", &[], 0),
        case("=1", &["=1"], 0),
        case("schedtrace", &["schedtrace"], 0),
        case("schedtrace=abc", &["schedtrace=abc"], 0),
        case("-5", &["-5"], 0),
        case("99999999999999999999999", &["99999999999999999999999"], 0),
        case(
            "schedtrace=99999999999999999999999",
            &["schedtrace=99999999999999999999999"],
            0,
        ),
        case("gctrace=9", &["gctrace=9"], 0),
        case("format=xml", &["format=xml"], 0),
        case("gcpoll=0", &["gcpoll=0"], 0),
        case("ключ=1", &["ключ=1"], 0),
        // Valid items alongside every kind of bad one: the valid ones apply.
        case(
            "schedtrace=50,=1,schedtrace,-5,gctrace=9,format=xml,gcpoll=0,ключ=1,schedtrace=abc",
            &[
                "=1",
                "schedtrace",
                "-5",
                "gctrace=9",
                "format=xml",
                "gcpoll=0",
                "ключ=1",
                "schedtrace=abc",
            ],
            50,
        ),
        // Duplicates: the last valid one wins; a repeated bad item is said once.
        case("schedtrace=5000,schedtrace=50", &[], 50),
        case(
            "gctrace=9,schedtrace=50,gctrace=9,gctrace=9",
            &["gctrace=9"],
            50,
        ),
        // Spaces around items and around `=`.
        case("  schedtrace = 50 ,   gctrace=9  , ,", &["gctrace=9"], 50),
    ];
    // Bytes that are not UTF-8 are shown as \xNN escapes.
    let mut bytes = b"schedtrace=50,\xff\xfe=1,gctrace=\xc3".to_vec();
    v.push(Case {
        value: OsString::from_vec(std::mem::take(&mut bytes)),
        bad: vec!["\\xff\\xfe=1".into(), "gctrace=\\xc3".into()],
        schedtrace_ms: 50,
        summary: None,
    });
    // 100 kB in one item: quoted cut to 40 characters.
    let long = format!("schedtrace=50,{}", "x".repeat(100_000));
    v.push(case(&long, &[&format!("{}…", "x".repeat(40))], 50));
    // 100 kB of distinct bad items: the first few are named, the rest summed up in one line.
    let mut flood = String::from("schedtrace=50");
    let mut n = 0;
    while flood.len() < 100_000 {
        flood.push_str(&format!(",k{n}=1"));
        n += 1;
    }
    let named = 16;
    v.push(Case {
        value: flood.into(),
        bad: (0..named).map(|i| format!("k{i}=1")).collect(),
        schedtrace_ms: 50,
        summary: Some(format!(
            "rdebug: warning: {} more unusable RDEBUG items, ignoring them",
            n - named
        )),
    });
    v
}

#[test]
fn rdebug_values_warn_once_per_bad_item_and_the_rest_applies() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        std::thread::sleep(RUN);
        match rdebug::reporter() {
            Some(r) => {
                let c = r.config();
                println!(
                    "CONFIG schedtrace={} gctrace={}",
                    c.schedtrace_ms(),
                    c.gctrace()
                );
            }
            None => println!("CONFIG none"),
        }
        return;
    }
    let cases = cases();
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| s.spawn(|| run_child(name, &[("RDEBUG", &c.value)], Duration::from_secs(60))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (c, out) in cases.iter().zip(&outputs) {
        let shown: String = c.value.to_string_lossy().chars().take(80).collect();
        let ctx = format!(
            "RDEBUG={shown:?}\n--- stdout\n{}\n--- stderr (first 3000 bytes)\n{}",
            out.stdout,
            out.stderr.chars().take(3000).collect::<String>()
        );
        out.assert_success();
        let warnings = out.lines_starting("rdebug: warning: ");
        let mut want = c.bad.len();
        if c.summary.is_some() {
            want += 1;
        }
        assert_eq!(warnings.len(), want, "warning count\n{ctx}");
        for (line, item) in warnings.iter().zip(&c.bad) {
            let head = format!("rdebug: warning: {item}: ");
            assert!(
                line.starts_with(&head),
                "{line:?} should name {item:?}\n{ctx}"
            );
            assert!(line.ends_with(", ignoring it"), "{line:?}\n{ctx}");
            let accepted = &line[head.len()..line.len() - ", ignoring it".len()];
            assert!(
                accepted.starts_with("expected") || accepted.starts_with("unknown key"),
                "{line:?} should say what is accepted\n{ctx}"
            );
        }
        if let Some(summary) = &c.summary {
            assert_eq!(warnings.last(), Some(&summary.as_str()), "{ctx}");
        }
        for line in &warnings {
            assert!(line.chars().count() <= MAX_LINE, "line too long: {line:?}");
        }
        let sched = out.lines_starting("SCHED ");
        if c.schedtrace_ms == 0 {
            assert!(sched.is_empty(), "no trace was asked for\n{ctx}");
            assert!(out.stdout.contains("CONFIG none"), "{ctx}");
        } else {
            // 400 ms at 50 ms: about 8 lines; at 5000 ms (the losing duplicate) only 1.
            assert!(sched.len() >= 4, "{} SCHED lines\n{ctx}", sched.len());
            let want = format!("CONFIG schedtrace={} gctrace=0", c.schedtrace_ms);
            assert!(out.stdout.contains(&want), "{ctx}");
        }
    }
}

/// The strict entry point names the first bad item and starts nothing.
#[test]
fn try_init_refuses_the_first_bad_item() {
    let name = support::test_name!();
    if is_child(name) {
        let err = rdebug::try_init().expect_err("bad items must be refused");
        println!("ERR {err}");
        println!("REPORTER {}", rdebug::reporter().is_some());
        return;
    }
    let out = run_child(
        name,
        &[(
            "RDEBUG",
            OsStr::from_bytes(b"schedtrace=50,gctrace=9,format=xml"),
        )],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(
        out.stdout
            .contains("ERR RDEBUG item gctrace=9: expected 0, 1 or 2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("REPORTER false"), "{}", out.stdout);
    assert!(out.lines_starting("SCHED").is_empty(), "{}", out.stderr);
}

// ----------------------------------------------------------------------------------------------
// The parser, property-tested.

/// A valid item and the (key, value) it sets, as the parser would store it.
fn valid_item() -> impl Strategy<Value = (String, &'static str, String)> {
    prop_oneof![
        (0u64..=86_400_000).prop_map(|n| (format!("schedtrace={n}"), "schedtrace", n.to_string())),
        (1u64..=86_400_000).prop_map(|n| (format!("gcpoll={n}"), "gcpoll", n.to_string())),
        (0u8..=1).prop_map(|n| (format!("scheddetail={n}"), "scheddetail", n.to_string())),
        (0u8..=2).prop_map(|n| (format!("gctrace={n}"), "gctrace", n.to_string())),
        (0u64..=1_000_000).prop_map(|n| (format!("gcpercent={n}"), "gcpercent", n.to_string())),
        Just(("gcpercent=off".to_string(), "gcpercent", "off".to_string())),
        prop_oneof![Just("text"), Just("json")].prop_map(|f| (
            format!("format={f}"),
            "format",
            f.to_string()
        )),
    ]
}

/// Spaces the parser must trim.
fn pad() -> impl Strategy<Value = String> {
    prop_oneof![Just(""), Just(" "), Just("  "), Just("\t")].prop_map(str::to_string)
}

/// Anything without a comma: most of it is not a valid item.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^,]{0,60}",
        "(schedtrace|gctrace|gcpoll|gcpercent|scheddetail|format)=[^,]{0,30}",
        "[a-z]{1,12}",
        "[0-9-]{1,40}",
        "\\PC{0,200}".prop_map(|s| s.replace(',', "")),
        "[\\x00-\\x1f\\u{7f}-\\u{9f}\\u{200b}-\\u{202e}]{1,50}",
    ]
}

/// Characters a warning must never print raw: controls, and the invisible and bidirectional
/// formatting characters that can garble or disguise a terminal line.
fn unprintable(c: char) -> bool {
    c.is_control()
        || ('\u{200b}'..='\u{200f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn value_of(cfg: &rdebug::Config, key: &str) -> String {
    match key {
        "schedtrace" => cfg.schedtrace_ms().to_string(),
        "gcpoll" => cfg.gcpoll_ms().to_string(),
        "scheddetail" => u8::from(cfg.scheddetail()).to_string(),
        "gctrace" => cfg.gctrace().to_string(),
        "gcpercent" => cfg.gcpercent().map_or("off".into(), |p| p.to_string()),
        "format" => match cfg.format() {
            rdebug::Format::Json => "json".into(),
            _ => "text".into(),
        },
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Only valid items: no problem, and for every key the last occurrence wins.
    #[test]
    fn valid_items_yield_no_problem_and_the_last_duplicate_wins(
        items in proptest::collection::vec((valid_item(), pad(), pad()), 0..24),
    ) {
        let text = items
            .iter()
            .map(|((item, _, _), l, r)| format!("{l}{item}{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let (cfg, problems) = rdebug::Config::parse(&text);
        prop_assert!(problems.is_empty(), "{problems:?}");
        for ((_, key, _), _, _) in &items {
            let last = items.iter().rev().find(|((_, k, _), _, _)| k == key).unwrap();
            prop_assert_eq!(value_of(&cfg, key), last.0.2.clone(), "key {}", key);
        }
        prop_assert_eq!(rdebug::Config::parse_strict(&text).ok(), Some(cfg));
    }

    /// Valid and bad items mixed: no panic; one problem per bad item, each short and on one
    /// line; the settings are exactly those of the valid items alone.
    #[test]
    fn bad_items_are_reported_short_and_never_apply(
        items in proptest::collection::vec(
            prop_oneof![
                valid_item().prop_map(|(i, _, _)| i),
                junk(),
            ],
            0..24,
        ),
    ) {
        let text = items.join(",");
        let (cfg, problems) = rdebug::Config::parse(&text);
        let is_bad = |i: &String| {
            !i.trim().is_empty() && !rdebug::Config::parse(i).1.is_empty()
        };
        let bad: Vec<&String> = items.iter().filter(|i| is_bad(i)).collect();
        prop_assert_eq!(problems.len(), bad.len());
        let good = items.iter().filter(|i| !is_bad(i)).cloned().collect::<Vec<_>>().join(",");
        let (good_cfg, good_problems) = rdebug::Config::parse(&good);
        prop_assert!(good_problems.is_empty());
        prop_assert_eq!(&cfg, &good_cfg);
        for p in &problems {
            prop_assert!(p.item.chars().count() <= 41, "item too long: {:?}", p.item);
            let shown = p.to_string();
            prop_assert!(shown.chars().count() <= 150, "message too long: {shown:?}");
            prop_assert!(!shown.chars().any(unprintable), "unprintable char in {shown:?}");
            prop_assert!(!p.expected.is_empty());
        }
        match rdebug::Config::parse_strict(&text) {
            Ok(c) => { prop_assert!(problems.is_empty()); prop_assert_eq!(c, cfg); }
            Err(e) => prop_assert_eq!(Some(&e), problems.first()),
        }
    }
}
