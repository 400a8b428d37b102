//! From `RDEBUG` to a running reporter: read the variable, warn about what cannot be used (or
//! refuse it, strictly), and start the one process-wide reporter.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::config::{Config, Format};
use crate::error::ConfigError;
use crate::error::Error;
use crate::runtime::{discover, watched};
use crate::stats;
use crate::sync::lock;
use crate::sys::stderr::{self, Stderr};
use crate::trace::{self, Builder, Reporter, panic_hook};

/// Whether `RDEBUG` has been read successfully once.
static STARTED: Mutex<bool> = Mutex::new(false);

pub(crate) fn start_from_env(strict: bool) -> Result<(), Error> {
    let mut started = lock(&STARTED);
    if *started {
        if let (true, Ok(h)) = (
            trace::global().is_some() || serving(),
            Handle::try_current(),
        ) {
            watched::watch(&h, None);
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
    if !config.any_service() {
        return Ok(());
    }
    // The reporter first, so the debug server's first request already sees its periods.
    #[cfg(feature = "http")]
    let http = config.http().map(|addr| (addr, config.format()));
    let schedtrace = config.schedtrace_ms() > 0;
    if config.any_trace() {
        let reporter = Builder::new().config_from(config).start()?;
        trace::set_global(reporter);
        if let Some(r) = trace::global() {
            panic_hook::install(r);
            flush_at_exit();
        }
    }
    #[cfg(feature = "http")]
    if let Some((addr, format)) = http {
        start_http(addr, strict, format)?;
    }
    // Runtimes nobody hands over are found from the allocator, registered by the reporter or
    // the debug server (each started just above).
    let finding = crate::alloc::is_installed();
    if finding {
        discover::enable();
    }
    if schedtrace && watched::watched().is_empty() {
        if finding {
            // Said at the reporter's second SCHED tick if no runtime was found by then.
            discover::warn_if_none_found();
        } else {
            stderr::note(
                "warning",
                "schedtrace is on but no tokio runtime is watched: rdebug::init() was called \
                 outside a runtime; call it inside one (in #[tokio::main]) or call \
                 rdebug::watch(&handle) (runtimes are found on their own only with rdebug::Alloc \
                 as the global allocator); SCHED lines start once a runtime is watched",
            );
        }
    }
    Ok(())
}

/// Whether `RDEBUG=http=` started the debug server.
fn serving() -> bool {
    #[cfg(feature = "http")]
    {
        crate::http::from_env_running()
    }
    #[cfg(not(feature = "http"))]
    {
        false
    }
}

/// Starts the debug server for `http=ADDR`, watching the current runtime (if any) so its pages
/// show it. Strictly, a bind failure is the error; leniently, one warning and the program goes on.
#[cfg(feature = "http")]
fn start_http(addr: std::net::SocketAddr, strict: bool, format: Format) -> Result<(), Error> {
    crate::clock::origin();
    if let Ok(h) = Handle::try_current() {
        watched::watch(&h, None);
    }
    match crate::http::start_from_env(addr) {
        Ok(()) => Ok(()),
        Err(e) if strict => Err(e),
        Err(e) => {
            let mut line = Vec::new();
            trace::note(
                &mut line,
                format,
                "warning",
                &format!("debug server: {e}; going on without it"),
            );
            Stderr::open().line(&line);
            Ok(())
        }
    }
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

/// How long a flush waits for the reporter thread.
const FLUSH_WAIT: Duration = Duration::from_millis(100);

/// Has the reporter started from `RDEBUG` write what is pending now (bounded wait).
pub(crate) fn flush_reporter() {
    if let Some(r) = trace::global() {
        r.flush_now(FLUSH_WAIT);
    }
}

/// Registers, once, a flush of the reporter at normal process exit (`exit`, or returning from
/// `main`), so the last cycle's `gc` line of a short program is not lost.
fn flush_at_exit() {
    #[cfg(unix)]
    {
        extern "C" fn at_exit() {
            flush_reporter();
        }
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        // SAFETY: `at_exit` is a plain function that never unwinds (it blocks at most FLUSH_WAIT).
        REGISTERED.call_once(|| unsafe {
            libc::atexit(at_exit);
        });
    }
}

/// The reporter started from `RDEBUG`, if any.
pub(crate) fn global() -> Option<&'static Reporter> {
    trace::global()
}
