//! `stalltrace` as users run it: the STALL line's delay in a release build with line tables
//! (the fixture `tests/fixtures/profile_truth.rs` in its `stall-after-a-look` mode), in a test
//! binary of its own so that no other test loads the two cores while it is timed.
#![cfg(feature = "pprof")]

#[allow(unused_macros)] // this file runs no child
mod support;

use std::process::Command;

use support::release_fixture::{build, result_in};

/// With `stalltrace=50`, the first request after a quiet spell, its poll blocking 200 ms from
/// right after one of the reporter's looks (the worst case: seen 40 ms on, decided 50 ms after
/// that), gets one STALL line naming the blocking function, written within 100 ms of the poll's
/// start: the frames of the first sample were named on a thread of their own while the stall
/// was being confirmed, and the confirming burst takes about 2 ms.
#[test]
fn a_stall_after_idleness_is_written_within_100_ms() {
    let out = Command::new(build())
        .arg("stall-after-a-look")
        .env_remove("RDEBUG")
        .output()
        .expect("run the fixture");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "fixture failed: {stdout}");
    let r = |key: &str| result_in(&stdout, key) as u64;
    assert_eq!(r("stall_lines"), 1, "{stdout}");
    assert_eq!(r("names_it"), 1, "{stdout}");
    assert_eq!(r("while_blocking"), 1, "{stdout}");
    assert!(
        r("written_ms") <= 100,
        "the STALL line was written {} ms after the poll started (decided at {} ms):\n{stdout}",
        r("written_ms"),
        r("decided_ms")
    );
    eprintln!(
        "STALL line decided {} ms and written {} ms after the poll started",
        r("decided_ms"),
        r("written_ms")
    );
}
