//! A real headless Chromium (Debian package `chromium`, installed by CI): a page's DOM after its
//! scripts ran, and screenshots.
//!
//! `--virtual-time-budget` lets the page's timers run for that much virtual time; virtual time
//! stands still while a request is pending, so a page that long-polls its server sees real
//! seconds go by.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The Chromium binary; fails (never skips) when it is missing.
pub fn chromium() -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&paths).map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`chromium` is not installed: this test needs a real browser \
                 (Debian: apt-get install -y --no-install-recommends chromium)"
            )
        })
}

/// Runs Chromium headless on `url` with `extra` arguments and a fresh profile directory; kills
/// its whole process group after `timeout`, and fails.
fn run(url: &str, extra: &[String], timeout: Duration) -> Output {
    try_run(url, extra, timeout)
        .unwrap_or_else(|| panic!("chromium did not finish within {timeout:?}"))
}

/// [`run`], `None` when Chromium did not finish within `timeout` (its process group killed).
fn try_run(url: &str, extra: &[String], timeout: Duration) -> Option<Output> {
    let profile = super::temp_path(&format!("chromium-{}", extra.len()));
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let child = cmd.spawn().expect("start chromium");
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("chromium output"),
        Err(_) => {
            // SAFETY: kill(2) on the process group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = std::fs::remove_dir_all(&profile);
            return None;
        }
    };
    // SAFETY: as above; helpers it left behind go too.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = std::fs::remove_dir_all(&profile);
    Some(out)
}

/// The DOM of `url` after the page's scripts ran for `budget` of virtual time.
pub fn dump_dom(url: &str, budget: Duration, timeout: Duration) -> String {
    let out = run(
        url,
        &[
            format!("--virtual-time-budget={}", budget.as_millis()),
            "--dump-dom".into(),
        ],
        timeout,
    );
    assert!(
        out.status.success(),
        "chromium --dump-dom: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG of `url` at `size` after `budget` of virtual time, written to `path`, for people to
/// look at (no test reads it): when Chromium does not finish within `timeout` (a live page's
/// long-polls can keep its virtual time from running out), it says so and returns.
pub fn screenshot(url: &str, path: &Path, size: (u32, u32), budget: Duration, timeout: Duration) {
    let _ = std::fs::remove_file(path);
    let Some(out) = try_run(
        url,
        &[
            format!("--window-size={},{}", size.0, size.1),
            format!("--virtual-time-budget={}", budget.as_millis()),
            format!("--screenshot={}", path.display()),
        ],
        timeout,
    ) else {
        println!("no screenshot: chromium did not finish within {timeout:?}");
        return;
    };
    assert!(
        out.status.success() && path.is_file(),
        "chromium --screenshot: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of attribute `name` of the first element that has it, HTML entities decoded.
pub fn attribute(dom: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = dom[start..].find('"')?;
    Some(
        dom[start..start + len]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}
