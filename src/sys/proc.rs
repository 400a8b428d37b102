//! What the operating system knows about this process: thread count, resident memory, and the CPU
//! time of single threads, read from `/proc`.
//!
//! The files are opened once and re-read with `pread` into a stack buffer, so a read allocates
//! nothing (the `procfs` crate allocates a `String` per read, which the reporter must not do on
//! every tick). Elsewhere than Linux every read returns `None`.

/// A `/proc` file kept open and re-read from offset 0 on every call.
#[derive(Debug)]
pub(crate) struct ProcFile {
    #[cfg(target_os = "linux")]
    file: Option<std::fs::File>,
}

impl ProcFile {
    /// Opens `path`; a file that cannot be opened reads as `None` forever.
    pub(crate) fn open(path: &str) -> Self {
        #[cfg(target_os = "linux")]
        {
            ProcFile {
                file: std::fs::File::open(path).ok(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            ProcFile {}
        }
    }

    /// Reads the whole file (up to `buf.len()` bytes) and hands the bytes to `f`.
    pub(crate) fn read_with<T>(
        &self,
        buf: &mut [u8],
        f: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<T> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt;
            let file = self.file.as_ref()?;
            let n = file.read_at(buf, 0).ok()?;
            f(&buf[..n])
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (buf, f);
            None
        }
    }
}

/// Splits a `/proc/.../stat` line into its fields after the command name (which may itself hold
/// spaces and parentheses): the returned iterator's item 0 is field 3 (`state`).
pub(crate) fn stat_fields_after_comm(bytes: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    Some(
        bytes[close + 1..]
            .split(|&b| b == b' ' || b == b'\n')
            .filter(|f| !f.is_empty()),
    )
}

pub(crate) fn parse_u64(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// The `n`th field (1-based, as in `proc(5)`) of a stat line, for `n >= 3`.
pub(crate) fn stat_field(bytes: &[u8], n: usize) -> Option<u64> {
    parse_u64(stat_fields_after_comm(bytes)?.nth(n.checked_sub(3)?)?)
}

/// CPU time (`utime` + `stime`, fields 14 and 15) of a process's or a thread's `stat`, ns
/// (clock-tick resolution, usually 10 ms).
pub(crate) fn stat_cpu_ns(bytes: &[u8]) -> Option<u64> {
    let ticks = stat_field(bytes, 14)?.saturating_add(stat_field(bytes, 15)?);
    Some(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec())
}

/// The state letter (field 3) of a process's or a thread's `stat`.
pub(crate) fn stat_state(bytes: &[u8]) -> Option<u8> {
    stat_fields_after_comm(bytes)?.next()?.first().copied()
}

/// Clock ticks per second for the `utime`/`stime` fields.
pub(crate) fn clock_ticks_per_sec() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            return t as u64;
        }
    }
    100
}

/// The system's page size in bytes.
pub(crate) fn page_size() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            return p as u64;
        }
    }
    4096
}

/// The process's `/proc` files, opened once.
pub(crate) fn process_files() -> &'static ProcessFiles {
    static FILES: std::sync::OnceLock<ProcessFiles> = std::sync::OnceLock::new();
    FILES.get_or_init(ProcessFiles::open)
}

/// Readers for this process: `/proc/self/stat` (threads) and `/proc/self/statm` (RSS).
#[derive(Debug)]
pub(crate) struct ProcessFiles {
    stat: ProcFile,
    statm: ProcFile,
    page: u64,
}

impl ProcessFiles {
    pub(crate) fn open() -> Self {
        ProcessFiles {
            stat: ProcFile::open("/proc/self/stat"),
            statm: ProcFile::open("/proc/self/statm"),
            page: page_size(),
        }
    }

    /// OS threads of the whole process: `/proc/self/stat` field 20 (`num_threads`).
    pub(crate) fn threads(&self) -> Option<u64> {
        let mut buf = [0u8; 1024];
        self.stat.read_with(&mut buf, |b| stat_field(b, 20))
    }

    /// Resident set size in bytes: `/proc/self/statm` field 2 times the page size.
    pub(crate) fn rss(&self) -> Option<u64> {
        self.statm_bytes(1)
    }

    /// Virtual memory size in bytes: `/proc/self/statm` field 1 times the page size.
    #[cfg_attr(
        not(any(feature = "prometheus", feature = "metrics")),
        allow(dead_code)
    )]
    pub(crate) fn virtual_size(&self) -> Option<u64> {
        self.statm_bytes(0)
    }

    /// Field `i` (0-based) of `/proc/self/statm`, pages, times the page size.
    fn statm_bytes(&self, i: usize) -> Option<u64> {
        let mut buf = [0u8; 256];
        let pages = self
            .statm
            .read_with(&mut buf, |b| parse_u64(b.split(|&c| c == b' ').nth(i)?))?;
        Some(pages.saturating_mul(self.page))
    }

    /// CPU time (user + system) of the whole process, ns: `/proc/self/stat` fields 14 and 15
    /// (clock-tick resolution, usually 10 ms).
    #[cfg_attr(
        not(any(feature = "prometheus", feature = "metrics")),
        allow(dead_code)
    )]
    pub(crate) fn cpu_ns(&self) -> Option<u64> {
        let mut buf = [0u8; 1024];
        self.stat.read_with(&mut buf, stat_cpu_ns)
    }

    /// When the process started, seconds since the Unix epoch: `/proc/self/stat` field 22
    /// (clock ticks after boot) plus `btime` of `/proc/stat`. Constant, so read once.
    #[cfg_attr(
        not(any(feature = "prometheus", feature = "metrics")),
        allow(dead_code)
    )]
    pub(crate) fn start_time_secs(&self) -> Option<f64> {
        static START: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
        *START.get_or_init(|| {
            let mut buf = [0u8; 1024];
            let ticks = self.stat.read_with(&mut buf, |b| stat_field(b, 22))?;
            let boot = boot_time_secs()?;
            Some(boot as f64 + ticks as f64 / clock_ticks_per_sec() as f64)
        })
    }
}

/// `btime` of `/proc/stat`: when the system booted, seconds since the Unix epoch. Allocates
/// (the file grows with the CPU count): call it once.
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
fn boot_time_secs() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| parse_u64(v.trim().as_bytes()))
}

/// Open file descriptors of this process: the entries of `/proc/self/fd`, less the one this
/// count opens to read them. Reads through `opendir`/`readdir` (no Rust allocation).
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) fn open_fds() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a NUL-terminated path; the stream is closed below and not used after.
        let dir = unsafe { libc::opendir(c"/proc/self/fd".as_ptr()) };
        if dir.is_null() {
            return None;
        }
        let mut n: u64 = 0;
        loop {
            // SAFETY: `dir` is an open stream; the entry is read before the next call.
            let entry = unsafe { libc::readdir(dir) };
            if entry.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                n = n.saturating_add(1);
            }
        }
        // SAFETY: `dir` came from opendir and is closed once.
        unsafe { libc::closedir(dir) };
        // The stream itself holds one descriptor while it is read.
        Some(n.saturating_sub(1))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The most file descriptors this process may open: the soft `RLIMIT_NOFILE` (what
/// `/proc/self/limits` shows as "Max open files"); `None` when unlimited.
#[cfg_attr(
    not(any(feature = "prometheus", feature = "metrics")),
    allow(dead_code)
)]
pub(crate) fn max_fds() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
            || lim.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        #[allow(clippy::useless_conversion)] // rlim_t is not u64 everywhere
        u64::try_from(lim.rlim_cur).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::task::ThreadCpu;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let line = b"42 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 7 18 19\n";
        assert_eq!(stat_field(line, 3), None); // "R" is not a number
        assert_eq!(stat_field(line, 4), Some(1));
        assert_eq!(stat_field(line, 14), Some(11));
        assert_eq!(stat_field(line, 20), Some(7));
        assert_eq!(stat_field(b"no parens", 4), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_count_matches_proc_status() {
        let files = ProcessFiles::open();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let from_status: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let from_stat = files.threads().unwrap();
        // Other tests run threads meanwhile; the two reads are close in time.
        assert!(
            from_stat.abs_diff(from_status) <= 4,
            "{from_stat} vs {from_status}"
        );
        assert!(files.rss().unwrap() > 1 << 20);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_figures_match_what_the_test_makes() {
        let files = ProcessFiles::open();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let size: u64 = statm.split(' ').next().unwrap().parse().unwrap();
        let vsz = files.virtual_size().unwrap();
        // Other tests map memory meanwhile: within 64 MiB.
        assert!(
            vsz.abs_diff(size * page_size()) < 64 << 20,
            "{vsz} vs {size} pages"
        );
        assert!(vsz >= files.rss().unwrap());

        // Ground truth for descriptors: open 50 more, see 50 more. Other tests may open and
        // close files meanwhile, so the smallest of a few tries is taken.
        let delta = (0..5)
            .map(|_| {
                let before = open_fds().unwrap();
                let held: Vec<_> = (0..50)
                    .map(|_| std::fs::File::open("/proc/self/statm").unwrap())
                    .collect();
                let during = open_fds().unwrap();
                drop(held);
                during.abs_diff(before + 50)
            })
            .min()
            .unwrap();
        assert_eq!(delta, 0, "open_fds moves by the descriptors opened");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(max_fds(), Some(lim.rlim_cur));

        // Burn 300 ms of CPU on this thread, by its own clock (the machine may be busy): the
        // process's CPU time grows by at least that, less a clock tick of rounding per read.
        // SAFETY: gettid has no preconditions.
        let me = ThreadCpu::open(i64::from(unsafe { libc::gettid() }));
        let cpu0 = files.cpu_ns().unwrap();
        let mine0 = me.cpu_ns().unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while me.cpu_ns().unwrap() < mine0 + 300_000_000 && t.elapsed().as_secs() < 20 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let burnt = me.cpu_ns().unwrap() - mine0;
        let cpu1 = files.cpu_ns().unwrap();
        let tick = 1_000_000_000 / clock_ticks_per_sec();
        assert!(
            burnt >= 300_000_000,
            "the thread got {burnt} ns of CPU in 20 s"
        );
        assert!(
            cpu1 + 2 * tick >= cpu0 + burnt,
            "{cpu0} -> {cpu1}, thread burnt {burnt}"
        );

        let start = files.start_time_secs().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // This test process started within the last ten minutes, not in the future.
        assert!(
            start <= now + 1.0 && start > now - 600.0,
            "{start} vs {now}"
        );
    }
}
