//! Running the real `go tool pprof` on a profile file and reading its `-top`, `-tags` and
//! `-raw` output.

use std::path::Path;
use std::process::Command;

/// One row of `go tool pprof -top`: flat and cum in the profile's unit (bytes or ns).
#[derive(Debug, Clone)]
pub struct TopRow {
    pub flat: f64,
    pub cum: f64,
    pub name: String,
}

/// What `go tool pprof -top` printed: the header lines and the rows.
#[derive(Debug)]
pub struct Top {
    pub header: Vec<String>,
    pub rows: Vec<TopRow>,
    pub text: String,
}

impl Top {
    /// The row of the function whose name is `name` or ends in `::name`.
    pub fn row(&self, name: &str) -> Option<&TopRow> {
        let suffix = format!("::{name}");
        self.rows
            .iter()
            .find(|r| r.name == name || r.name.ends_with(&suffix))
    }
}

/// A pprof quantity with its unit, in bytes or ns: `256MB`, `1.50s`, `10ms`, `512kB`, `42`.
pub fn quantity(s: &str) -> Option<f64> {
    let units: &[(&str, f64)] = &[
        ("TB", 1024f64 * 1024.0 * 1024.0 * 1024.0),
        ("GB", 1024f64 * 1024.0 * 1024.0),
        ("MB", 1024f64 * 1024.0),
        ("kB", 1024.0),
        ("B", 1.0),
        ("hrs", 3600e9),
        ("mins", 60e9),
        ("ns", 1.0),
        ("us", 1e3),
        ("\u{b5}s", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ];
    for (u, m) in units {
        if let Some(v) = s.strip_suffix(u) {
            return v.parse::<f64>().ok().map(|v| v * m);
        }
    }
    s.parse().ok()
}

/// Runs `go tool pprof -top <args> <file>`; panics with a clear message when `go` is missing.
pub fn top(file: &Path, args: &[&str]) -> Top {
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-nodecount=200"])
        .args(args)
        .arg(file)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `go tool pprof` ({e}): these tests need Go's pprof \
                 (Debian: apt-get install -y golang-go)"
            )
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof failed: {}\n{text}\n{err}",
        out.status
    );
    assert!(
        !err.contains("symbol") && !err.contains("Main binary filename not available"),
        "pprof wanted symbols or a binary: {err}"
    );
    let mut header = Vec::new();
    let mut rows = Vec::new();
    let mut in_rows = false;
    for line in text.lines() {
        if in_rows {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() >= 6 {
                if let (Some(flat), Some(cum)) = (quantity(parts[0]), quantity(parts[3])) {
                    rows.push(TopRow {
                        flat,
                        cum,
                        // `(inline)` marks a frame inlined into its caller: not part of the name.
                        name: parts[5..]
                            .join(" ")
                            .trim_end_matches(" (inline)")
                            .to_owned(),
                    });
                }
            }
        } else if line.trim_start().starts_with("flat") {
            in_rows = true;
        } else {
            header.push(line.to_owned());
        }
    }
    Top {
        header,
        rows,
        text: format!("{text}{err}"),
    }
}

/// The total of `go tool pprof -top`'s "Showing nodes accounting for X, P% of T total" line.
pub fn total(t: &Top) -> f64 {
    t.header
        .iter()
        .find_map(|l| {
            let (_, rest) = l.split_once(" of ")?;
            quantity(rest.strip_suffix(" total")?.trim())
        })
        .unwrap_or_else(|| panic!("no total in pprof's output:\n{}", t.text))
}

/// `go tool pprof -tags <args> <file>`'s output.
pub fn tags(file: &Path, args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof", "-tags"])
        .args(args)
        .arg(file)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The percentage `-tags` gives the label value `value` (`  1.6s (78.09%): /a`).
pub fn share_of(tags: &str, value: &str) -> f64 {
    tags.lines()
        .find_map(|l| {
            let (head, v) = l.rsplit_once("): ")?;
            (v.trim_end() == value).then_some(())?;
            head.rsplit_once('(')?
                .1
                .strip_suffix('%')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {value} in:\n{tags}"))
}

/// One sample of `go tool pprof -raw`: its values, its functions (leaf first) and labels.
#[derive(Debug)]
pub struct RawSample {
    pub values: Vec<i64>,
    pub functions: Vec<String>,
    pub labels: Vec<String>,
}

/// `go tool pprof -raw <source>`: the sample types and the samples.
pub fn raw(source: &str) -> (Vec<String>, Vec<RawSample>) {
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw", source])
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .expect("go tool pprof");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut types = Vec::new();
    let mut samples: Vec<(Vec<i64>, Vec<u64>, Vec<String>)> = Vec::new();
    let mut functions: std::collections::HashMap<u64, Vec<String>> = Default::default();
    let mut section = "";
    let mut location: Option<u64> = None;
    for line in text.lines() {
        match line.trim_end() {
            "Samples:" => section = "types",
            "Locations" => section = "locations",
            "Mappings" => section = "",
            l if section == "types" => {
                types = l.split_whitespace().map(str::to_owned).collect();
                section = "samples";
            }
            l if section == "samples" => {
                if let Some((values, locs)) = l
                    .split_once(':')
                    .filter(|(v, _)| v.split_whitespace().all(|x| x.parse::<i64>().is_ok()))
                {
                    samples.push((
                        values
                            .split_whitespace()
                            .map(|x| x.parse().unwrap())
                            .collect(),
                        locs.split_whitespace()
                            .filter_map(|x| x.parse().ok())
                            .collect(),
                        Vec::new(),
                    ));
                } else if let Some(s) = samples.last_mut() {
                    s.2.push(l.trim().to_owned());
                }
            }
            l if section == "locations" => {
                // "     1: 0x55d1c0 M=1 block src/x.rs:10 s=0" or an inlined frame's
                // "             alloc::vec::from_elem ..." after it.
                let t = l.trim_start();
                let name = match t.split_once(": ") {
                    Some((id, rest)) if id.parse::<u64>().is_ok() => {
                        location = id.parse().ok();
                        rest.split_whitespace().nth(2)
                    }
                    _ => t.split_whitespace().next(),
                };
                if let (Some(id), Some(name)) = (location, name) {
                    functions.entry(id).or_default().push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    let samples = samples
        .into_iter()
        .map(|(values, locs, labels)| RawSample {
            values,
            functions: locs
                .iter()
                .flat_map(|l| functions.get(l).cloned().unwrap_or_default())
                .collect(),
            labels,
        })
        .collect();
    (types, samples)
}
