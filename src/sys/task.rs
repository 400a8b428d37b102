//! This process's threads as `/proc/self/task` shows them: the task list, a task's `stat`
//! (name, state, CPU time) and its `schedstat`. Each file has one parser here; the fixed-size
//! ones read into stack buffers.

use super::proc::{ProcFile, clock_ticks_per_sec, parse_u64, stat_field, stat_fields_after_comm};

/// Every thread of the process now, from `/proc/self/task` (allocates: call it rarely). The one
/// place that lists the directory.
pub(crate) fn thread_ids() -> Vec<i64> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One thread as `/proc/self/task/<tid>/stat` describes it.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the debug server's threadcreate page
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskStat {
    /// `comm`, lossily decoded.
    pub(crate) name: String,
    /// The state letter: `R` running or runnable, `S` asleep, `D` in uninterruptible sleep, ...
    pub(crate) state: u8,
    /// utime + stime, ns (clock-tick resolution, usually 10 ms).
    pub(crate) cpu_ns: u64,
}

/// Thread `tid`'s `stat` (`None` when it is gone or unreadable).
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the debug server's threadcreate page
pub(crate) fn task_stat(tid: i64) -> Option<TaskStat> {
    let mut buf = [0u8; 1024];
    let file = ProcFile::open(&format!("/proc/self/task/{tid}/stat"));
    let (name, state, ticks) = file.read_with(&mut buf, |b| {
        let open = b.iter().position(|&c| c == b'(')?;
        let close = b.iter().rposition(|&c| c == b')')?;
        let name = String::from_utf8_lossy(b.get(open + 1..close)?).into_owned();
        let state = b.get(close + 2).copied().unwrap_or(b'?');
        let ticks = stat_field(b, 14)?.saturating_add(stat_field(b, 15)?);
        Some((name, state, ticks))
    })?;
    Some(TaskStat {
        name,
        state,
        cpu_ns: ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec(),
    })
}

/// Thread `tid`'s state letter alone, from its `stat`, read into a stack buffer.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the block profile (feature `pprof`)
pub(crate) fn task_state(tid: i64) -> Option<u8> {
    let mut buf = [0u8; 1024];
    ProcFile::open(&format!("/proc/self/task/{tid}/stat")).read_with(&mut buf, |b| {
        let close = b.iter().rposition(|&c| c == b')')?;
        b.get(close + 2).copied()
    })
}

/// Thread `tid`'s `schedstat`: time on a CPU and time runnable waiting for one, ns (brought up
/// to date at each switch). The one reader of that file.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // block profile and stalls (feature `pprof`)
pub(crate) fn schedstat(tid: i64) -> Option<(u64, u64)> {
    let mut buf = [0u8; 128];
    ProcFile::open(&format!("/proc/self/task/{tid}/schedstat")).read_with(&mut buf, |b| {
        let text = std::str::from_utf8(b).ok()?;
        let mut f = text.split_whitespace();
        let run = parse_u64(f.next()?.as_bytes())?;
        let wait = parse_u64(f.next()?.as_bytes())?;
        Some((run, wait))
    })
}

/// CPU time (user + system) of one thread of this process, from `/proc/self/task/<tid>/stat`.
#[derive(Debug)]
pub(crate) struct ThreadCpu {
    stat: ProcFile,
}

impl ThreadCpu {
    pub(crate) fn open(tid: i64) -> Self {
        ThreadCpu {
            stat: ProcFile::open(&format!("/proc/self/task/{tid}/stat")),
        }
    }

    /// utime + stime, in nanoseconds (clock-tick resolution, usually 10 ms).
    pub(crate) fn cpu_ns(&self) -> Option<u64> {
        let mut buf = [0u8; 1024];
        let ticks = self.stat.read_with(&mut buf, |b| {
            let mut f = stat_fields_after_comm(b)?.skip(14 - 3);
            let utime = parse_u64(f.next()?)?;
            let stime = parse_u64(f.next()?)?;
            Some(utime.saturating_add(stime))
        })?;
        Some(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec())
    }
}

/// Thread ids of this process whose name (`comm`) is `name`. Allocates: call it rarely.
pub(crate) fn threads_named(name: &str) -> Vec<i64> {
    thread_ids()
        .into_iter()
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}
