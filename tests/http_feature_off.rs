//! `RDEBUG=http=` in a program built without rdebug's `http` feature: one warning naming the
//! feature, and no server thread.

#![cfg(not(feature = "http"))]

mod support;

use std::time::Duration;

use support::{is_child, run_child};

#[test]
fn http_without_the_feature_warns_once_naming_it() {
    let name = support::test_name!();
    if is_child(name) {
        let rt = support::two_worker_runtime();
        rt.block_on(async { rdebug::init() });
        let mut names = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let comm = entry.expect("task").path().join("comm");
            names.push(
                std::fs::read_to_string(comm)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            );
        }
        let servers = names.iter().filter(|n| *n == "rdebug-http").count();
        println!("RESULT {servers}");
        return;
    }
    let out = run_child(
        name,
        &[("RDEBUG", "http=127.0.0.1:0")],
        Duration::from_secs(20),
    );
    out.assert_success();
    assert_eq!(support::result_line(&out.stdout), "0", "no server thread");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert_eq!(
        lines[0],
        "rdebug: warning: http=127.0.0.1:0: needs rdebug's `http` Cargo feature: \
         rdebug = { features = [\"http\"] }, ignoring it"
    );
}
