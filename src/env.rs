//! From `RDEBUG` to a running reporter: read the variable, warn about what cannot be used (or
//! refuse it, strictly), and start the one process-wide reporter.

use std::sync::{Mutex, OnceLock};

use tokio::runtime::Handle;

use crate::config::{Config, Format};
use crate::error::ConfigError;
use crate::error::Error;
use crate::stats::{self, runtimes};
use crate::sync::lock;
use crate::sys::stderr::{self, Stderr};
use crate::trace::{self, Builder, Reporter, panic_hook};

/// The reporter started from `RDEBUG`, if any.
static GLOBAL: OnceLock<Reporter> = OnceLock::new();
/// Whether `RDEBUG` has been read successfully once.
static STARTED: Mutex<bool> = Mutex::new(false);

pub(crate) fn start_from_env(strict: bool) -> Result<(), Error> {
    let mut started = lock(&STARTED);
    if *started {
        if let (Some(_), Ok(h)) = (GLOBAL.get(), Handle::try_current()) {
            runtimes::watch(&h, None);
        }
        return if strict {
            Err(Error::AlreadyStarted)
        } else {
            Ok(())
        };
    }
    let Some(raw) = std::env::var_os("RDEBUG") else {
        *started = true;
        return Ok(());
    };
    let text = env_text(&raw);
    let (config, problems) = Config::parse(&text);
    if strict {
        if let Some(p) = problems.into_iter().next() {
            return Err(Error::Config(p));
        }
    } else {
        warn(config.format(), &problems);
    }
    *started = true;
    // `gcpercent` sets the goal `memstats().next_gc` reports even when no trace is on.
    stderr::set_notes_json(config.format() == Format::Json);
    stats::gc::set_gcpercent(config.gcpercent());
    #[cfg(feature = "pprof")]
    crate::profile::whole_run::start(&config);
    if !config.any_trace() {
        return Ok(());
    }
    let reporter = Builder::new().config_from(config).start()?;
    let _ = GLOBAL.set(reporter);
    if let Some(r) = GLOBAL.get() {
        panic_hook::install(r);
    }
    Ok(())
}

/// `RDEBUG` as text. Bytes that are not UTF-8 become `\xNN` escapes, so a warning shows what
/// was there (and no such item can ever be valid).
fn env_text(raw: &std::ffi::OsStr) -> String {
    #[cfg(unix)]
    {
        use std::fmt::Write;
        use std::os::unix::ffi::OsStrExt;
        let mut text = String::with_capacity(raw.len());
        for chunk in raw.as_bytes().utf8_chunks() {
            text.push_str(chunk.valid());
            for b in chunk.invalid() {
                let _ = write!(text, "\\x{b:02x}");
            }
        }
        text
    }
    #[cfg(not(unix))]
    {
        raw.to_string_lossy().into_owned()
    }
}

/// Bad items named one per line; past this many, one line counts the rest.
const MAX_WARNINGS: usize = 16;

/// One warning line per distinct problem, in the configured format; a flood of bad items (a
/// 100 kB `RDEBUG`) names the first [`MAX_WARNINGS`] and counts the rest in one line.
fn warn(format: Format, problems: &[ConfigError]) {
    if problems.is_empty() {
        return;
    }
    let mut sink = Stderr::open();
    let mut line = Vec::new();
    let mut said: Vec<&ConfigError> = Vec::new();
    let mut more = 0usize;
    for p in problems {
        if said.contains(&p) {
            continue;
        }
        if said.len() == MAX_WARNINGS {
            more += 1;
            continue;
        }
        said.push(p);
        line.clear();
        trace::note(&mut line, format, "warning", &format!("{p}, ignoring it"));
        sink.line(&line);
    }
    if more > 0 {
        line.clear();
        let message = format!("{more} more unusable RDEBUG items, ignoring them");
        trace::note(&mut line, format, "warning", &message);
        sink.line(&line);
    }
}

/// The reporter started from `RDEBUG`, if any.
pub(crate) fn global() -> Option<&'static Reporter> {
    GLOBAL.get()
}
