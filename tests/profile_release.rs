//! Profiles as users read them: a release build with `debug = "line-tables-only"` of a program
//! doing known work (`tests/fixtures/profile_truth.rs`), its CPU, heap and delta profiles read
//! with the real `go tool pprof` (`-top`, `-lines`, `-list`, `-raw`, `-traces`).
//!
//! The program is built once per test binary, as its own small package (rdebug with `pprof`,
//! tokio, libc: no dev-dependencies) in `target/profile-fixture`, without the test run's
//! `RUSTFLAGS`, so every `cargo test` run shares one release build.
#![cfg(feature = "pprof")]

#[allow(unused_macros)] // this file runs no child
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::pprof::top;
use support::release_fixture::{build, result_in};

/// What the fixture wrote: its directory and its `RESULT` lines.
struct Run {
    bin: PathBuf,
    dir: PathBuf,
    stdout: String,
}

impl Run {
    fn result(&self, key: &str) -> f64 {
        result_in(&self.stdout, key)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Builds the fixture in release with line tables (once) and runs it (once).
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let bin = build();
        let dir = support::temp_path("profile-release");
        std::fs::create_dir_all(&dir).expect("out dir");
        let out = Command::new(&bin)
            .arg(&dir)
            .env_remove("RDEBUG")
            .output()
            .expect("run the fixture");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "fixture failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Run { bin, dir, stdout }
    })
}

/// `go tool pprof <args> <file>`'s output.
fn pprof(file: &Path, args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .output()
        .expect("go tool pprof (apt-get install golang-go)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pprof {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn cpu_profile_names_inlined_user_code_with_file_and_line() {
    let run = run();
    let cpu = run.file("cpu.pb.gz");
    let t = top(&cpu, &[]);
    // Every address's DWARF was read (ThinLTO's cross-unit references included).
    let comments = pprof(&cpu, &["-comments"]);
    assert!(!comments.contains("could not be read"), "{comments}");
    // The #[inline(always)] hot function inside an async fn is a frame of its own, and the
    // hand-written Future's poll keeps its `<Type as Trait>` qualifier (pprof would strip it
    // to `::poll` if name and system_name were equal).
    let hot = t.row("hot_inlined").unwrap_or_else(|| panic!("{}", t.text));
    let spin = t
        .rows
        .iter()
        .find(|r| r.name == "<profile_truth::Spinner as core::future::future::Future>::poll")
        .unwrap_or_else(|| panic!("no Spinner poll with its qualifier:\n{}", t.text));
    // 2M iterations of hot_inlined for every 1M of Spinner's, about as costly each: 2/3.
    let share = hot.cum / (hot.cum + spin.cum);
    assert!(
        (0.55..=0.78).contains(&share),
        "hot_inlined share {share:.3}, expected 2/3:\n{}",
        t.text
    );
    // -lines names the hot loop's file and line.
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/profile_truth.rs"),
    )
    .expect("fixture source");
    let hot_line = src
        .lines()
        .position(|l| l.contains("// HOT LINE"))
        .expect("HOT LINE marker")
        + 1;
    let lines = pprof(&cpu, &["-top", "-lines", "-nodecount=400"]);
    let want = format!("hot_inlined {}:", "tests/fixtures/profile_truth.rs");
    assert!(
        lines
            .lines()
            .any(|l| l.contains(&want) || l.contains(&format!("profile_truth.rs:{hot_line}"))),
        "no hot_inlined file:line in -lines:\n{lines}"
    );
    // -list prints the hot line with samples.
    let list = pprof(&cpu, &["-list", "hot_inlined"]);
    let row = list
        .lines()
        .find(|l| l.contains("// HOT LINE"))
        .unwrap_or_else(|| panic!("-list shows no source:\n{list}"));
    let mut cols = row.split_whitespace();
    let (flat, cum) = (cols.next().unwrap_or("."), cols.next().unwrap_or("."));
    assert!(
        flat != "." || cum != ".",
        "the hot line has no samples in -list:\n{list}"
    );
    assert_eq!(
        cols.next().map(|c| c.trim_end_matches(':')),
        Some(hot_line.to_string().as_str()),
        "{row}"
    );
}

#[test]
fn every_loaded_object_is_a_mapping_and_libc_code_sits_under_libc() {
    let run = run();
    let raw = pprof(&run.file("cpu.pb.gz"), &["-raw"]);
    // Mappings: the executable first, with its build ID; libc among them.
    let maps: Vec<&str> = raw
        .lines()
        .skip_while(|l| !l.starts_with("Mappings"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(maps.len() >= 2, "{raw}");
    assert!(
        maps[0].contains("profile_truth") && maps[0].split_whitespace().count() >= 5,
        "first mapping is not the executable with a build ID: {}",
        maps[0]
    );
    let libc_id = maps
        .iter()
        .find(|m| m.contains("libc.so"))
        .and_then(|m| m.split(':').next())
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no libc mapping:\n{raw}"));
    // The copier thread spends its time in libc's memcpy: some sample's leaf location lies in
    // libc's mapping (named or not: Debian strips libc's symbol table).
    let locations: Vec<&str> = raw
        .lines()
        .skip_while(|l| !l.starts_with("Locations"))
        .skip(1)
        .take_while(|l| !l.starts_with("Mappings"))
        .collect();
    let in_libc = locations.iter().any(|l| {
        l.split_whitespace()
            .nth(2)
            .is_some_and(|m| m == format!("M={libc_id}"))
    });
    assert!(in_libc, "no location under libc's mapping:\n{raw}");
}

#[test]
fn heap_leaves_are_the_allocating_functions_for_small_and_large_objects() {
    let run = run();
    let heap = run.file("heap.pb.gz");
    let small_objects = run.result("small_objects");
    let small_bytes = run.result("small_bytes");
    let large_bytes = run.result("large_bytes");
    let large_objects = run.result("large_objects");
    let within = |got: f64, want: f64, tol: f64| (got / want - 1.0).abs() <= tol;
    // All four sample types, against what the program allocated: leaf = the user's function
    // (the allocator shims and the `alloc` crate stripped), both for 1,000,000 boxes of 64 bytes
    // and for 64 blocks of 1 MiB.
    for (index, want_small, want_large, tol) in [
        ("inuse_space", small_bytes, large_bytes, 0.15),
        ("alloc_space", small_bytes, large_bytes, 0.15),
        ("inuse_objects", small_objects, large_objects, 0.15),
        ("alloc_objects", small_objects, large_objects, 0.15),
    ] {
        let t = top(
            &heap,
            &[&format!("-sample_index={index}"), "-nodefraction=0"],
        );
        let flat = |name: &str| {
            t.rows
                .iter()
                .filter(|r| r.name.contains(name))
                .map(|r| r.flat)
                .sum::<f64>()
        };
        let (small, large) = (flat("make_small"), flat("make_large"));
        assert!(
            within(small, want_small, tol),
            "{index}: make_small flat {small}, expected {want_small}:\n{}",
            t.text
        );
        assert!(
            within(large, want_large, tol),
            "{index}: make_large flat {large}, expected {want_large}:\n{}",
            t.text
        );
        let leaf_allocator = t.rows.iter().filter(|r| r.flat > 0.0).find(|r| {
            r.name.starts_with("__rust") || r.name == "alloc" || r.name.contains("jemalloc")
        });
        assert!(
            leaf_allocator.is_none(),
            "{index}: an allocator frame is a leaf: {leaf_allocator:?}\n{}",
            t.text
        );
    }
}

#[test]
fn a_delta_allocs_profile_counts_the_window_only() {
    let run = run();
    let t = top(
        &run.file("allocs_delta.pb.gz"),
        &["-sample_index=alloc_space"],
    );
    let churned = run.result("churned_bytes");
    let window = t
        .rows
        .iter()
        .filter(|r| r.name.contains("churn_window"))
        .map(|r| r.flat)
        .sum::<f64>();
    assert!(
        (window / churned - 1.0).abs() <= 0.15,
        "churn_window {window} bytes in the delta, {churned} allocated:\n{}",
        t.text
    );
    // What was allocated before the window (64 MiB of boxes, 64 MiB of blocks) is not in it.
    let before: f64 = t
        .rows
        .iter()
        .filter(|r| r.name.contains("make_small") || r.name.contains("make_large"))
        .map(|r| r.flat)
        .sum();
    assert!(
        before < 1e6,
        "allocations before the window: {before}\n{}",
        t.text
    );
}

#[test]
fn one_profile_with_full_symbolization_adds_little_memory() {
    // Peak RSS the CPU profile added (symbolization with DWARF included), measured in the
    // program with VmHWM reset before the profile. The bound is 50 MiB for the webapp
    // (a 47 MB binary); this fixture is 24 MB, so half of it. Measured: ~14 MB; 32 MB when a
    // unit referring into others made the whole `.debug_info` be read.
    let kib = run().result("profile_peak_added_kib");
    assert!(
        kib <= 25.0 * 1024.0,
        "a CPU profile added {kib} KiB at peak, over 25 MiB"
    );
}

/// The hand-written Future's `poll` is named, with its qualifier, in CPU profile `cpu`.
fn assert_spinner_named(cpu: &Path) {
    let t = top(cpu, &[]);
    assert!(
        t.rows
            .iter()
            .any(|r| r.name == "<profile_truth::Spinner as core::future::future::Future>::poll"),
        "{}",
        t.text
    );
}

#[test]
fn a_binary_without_dwarf_deleted_while_it_runs_still_gets_names_and_says_why() {
    let run = run();
    // The same program without its DWARF (symbol table kept), run from a copy that is deleted
    // while it runs, as a deploy by rename leaves a running service.
    let copy = support::temp_path("profile_truth-stripped");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&run.bin)
        .arg(&copy)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let dir = support::temp_path("profile-stripped");
    std::fs::create_dir_all(&dir).expect("out dir");
    let child = Command::new(&copy)
        .arg(&dir)
        .env_remove("RDEBUG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the stripped copy");
    std::thread::sleep(std::time::Duration::from_millis(1500)); // the CPU profile runs 4 s
    std::fs::remove_file(&copy).expect("delete the running binary");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let cpu = dir.join("cpu.pb.gz");
    // Names from the symbol table still (the running image, read through /proc/self/exe).
    assert_spinner_named(&cpu);
    // No file:line, and both reasons said: in the profile's comments, and once on stderr.
    let comments = pprof(&cpu, &["-comments"]);
    assert!(
        comments.contains("has no DWARF line tables")
            && comments.contains("debug = \"line-tables-only\"")
            && comments.contains("deleted or replaced"),
        "{comments}"
    );
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("has no DWARF line tables"))
        .count();
    assert_eq!(warnings, 1, "one warning for three profiles: {stderr}");
    let lines = pprof(&cpu, &["-top", "-lines"]);
    assert!(!lines.contains("profile_truth.rs:"), "{lines}");
}

/// Bytes of `path`'s section `name`, by `objcopy --dump-section`.
fn dump_section(bin: &Path, name: &str, out: &Path) -> Vec<u8> {
    let status = Command::new("objcopy")
        .arg(format!("--dump-section={name}={}", out.display()))
        .arg(bin)
        .arg(support::temp_path("dump-scratch"))
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success(), "objcopy --dump-section {name}");
    std::fs::read(out).expect("dumped section")
}

/// Damaged DWARF never hurts the program: with one byte in 4093 of `.debug_info` changed (most
/// unit headers still parse, their entries fail here or there; how many depends on the build) and
/// `.debug_line` cut in half, the program runs to its end, its profiles are written, functions
/// still get their names (from the symbol table where DWARF fails), and the loss is said.
#[test]
fn damaged_dwarf_costs_frames_not_the_program() {
    let run = run();
    let info_file = support::temp_path("damaged.debug_info");
    let line_file = support::temp_path("damaged.debug_line");
    let mut info = dump_section(&run.bin, ".debug_info", &info_file);
    for (i, b) in info.iter_mut().enumerate() {
        if i % 4093 == 7 {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&info_file, &info).expect("write");
    let line = dump_section(&run.bin, ".debug_line", &line_file);
    std::fs::write(&line_file, &line[..line.len() / 2]).expect("write");
    let copy = support::temp_path("profile_truth-damaged");
    let status = Command::new("objcopy")
        .arg(format!(
            "--update-section=.debug_info={}",
            info_file.display()
        ))
        .arg(format!(
            "--update-section=.debug_line={}",
            line_file.display()
        ))
        .arg(&run.bin)
        .arg(&copy)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success(), "objcopy --update-section");
    let dir = support::temp_path("profile-damaged");
    std::fs::create_dir_all(&dir).expect("out dir");
    let out = Command::new(&copy)
        .arg(&dir)
        .env_remove("RDEBUG")
        .output()
        .expect("run the damaged copy");
    for f in [&info_file, &line_file, &copy] {
        let _ = std::fs::remove_file(f);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_spinner_named(&dir.join("cpu.pb.gz"));
    // What was lost is said: in the profile's comments, and once on stderr.
    let comments = pprof(&dir.join("cpu.pb.gz"), &["-comments"]);
    assert!(comments.contains("could not be read for"), "{comments}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("could not be read for"))
        .count();
    assert_eq!(warnings, 1, "{stderr}");
}
