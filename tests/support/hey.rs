//! `hey` (Debian package `hey`, installed by CI), the load generator of Go's profiling
//! walkthroughs, run against a server of the test.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The `hey` binary; fails (never skips) when it is missing.
pub fn hey() -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|d| d.join("hey"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`hey` is not installed: this test loads its server with it (Debian: apt-get install -y hey)")
        })
}

/// A running `hey`; killed when dropped.
pub struct Hey(Child);

impl Hey {
    /// Starts `hey` with `args` (its report is thrown away).
    pub fn start(args: &[&str]) -> Hey {
        let child = Command::new(hey())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hey");
        Hey(child)
    }

    /// Starts `hey` posting `{"a":1,"b":2}` to the test server's `/sendjson` at `app`
    /// ([`super::server`]) from `connections` connections for `duration` (hey's `-z`, e.g.
    /// `"3s"`).
    pub fn sendjson(app: std::net::SocketAddr, duration: &str, connections: u32) -> Hey {
        Hey::start(&[
            "-z",
            duration,
            "-c",
            &connections.to_string(),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-d",
            r#"{"a":1,"b":2}"#,
            &format!("http://{app}/sendjson"),
        ])
    }

    /// Waits for `hey` to finish, up to `timeout`.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        super::child::wait(&mut self.0, timeout)
    }
}

impl Drop for Hey {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
