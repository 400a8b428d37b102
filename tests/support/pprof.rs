//! Running the real `go tool pprof` on a profile file and reading its `-top` table.

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
