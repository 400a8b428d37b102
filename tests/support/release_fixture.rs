//! The release fixture (`tests/fixtures/profile_truth.rs`): a program doing known work, built
//! as users build theirs (release, `debug = "line-tables-only"`), once per test binary, as its own
//! small package (rdebug with `pprof`, tokio, libc: no dev-dependencies) in
//! `target/profile-fixture`, without the test run's `RUSTFLAGS`, so every `cargo test` run shares
//! one release build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the fixture in release with line tables (once); its path.
pub fn build() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pkg = repo.join("target").join("profile-fixture");
        std::fs::create_dir_all(&pkg).expect("fixture dir");
        let manifest = format!(
            r#"[package]
name = "profile_truth"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "profile_truth"
path = "{src}"

[dependencies]
rdebug = {{ path = "{repo}", features = ["pprof"] }}
tokio = {{ version = "1.47", features = ["rt-multi-thread", "time"] }}
libc = "0.2"

[profile.release]
debug = "line-tables-only"

[workspace]
"#,
            src = repo.join("tests/fixtures/profile_truth.rs").display(),
            repo = repo.display()
        );
        std::fs::write(pkg.join("Cargo.toml"), manifest).expect("fixture manifest");
        if !pkg.join("Cargo.lock").exists() {
            // The crate's own lock: the same versions, nothing fetched anew.
            std::fs::copy(repo.join("Cargo.lock"), pkg.join("Cargo.lock")).expect("lock");
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(pkg.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", pkg.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .status()
            .expect("cargo build of the fixture");
        assert!(status.success(), "the fixture did not build");
        pkg.join("target/release/profile_truth")
    })
    .clone()
}

/// The value of the fixture's `RESULT key=value` line in `stdout`.
pub fn result_in(stdout: &str, key: &str) -> f64 {
    let prefix = format!("RESULT {key}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
}
