//! This process's threads as `/proc/self/task` shows them: the task list, a task's `stat`
//! (name, state, CPU time), its `schedstat` and its `syscall`. Each file has one parser (a `stat`
//! line's CPU time and state are read as the process's are, in `proc.rs`); the fixed-size
//! ones read into stack buffers.

use super::proc::{ProcFile, parse_u64, stat_cpu_ns, stat_state};

/// `/proc/self/task/<tid>/<file>`, opened.
fn task_file(tid: i64, file: &str) -> ProcFile {
    ProcFile::open(&format!("/proc/self/task/{tid}/{file}"))
}

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
    task_file(tid, "stat").read_with(&mut buf, |b| {
        let open = b.iter().position(|&c| c == b'(')?;
        let close = b.iter().rposition(|&c| c == b')')?;
        Some(TaskStat {
            name: String::from_utf8_lossy(b.get(open + 1..close)?).into_owned(),
            state: stat_state(b).unwrap_or(b'?'),
            cpu_ns: stat_cpu_ns(b)?,
        })
    })
}

/// Thread `tid`'s state letter alone, from its `stat`, read into a stack buffer.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the block profile (feature `pprof`)
pub(crate) fn task_state(tid: i64) -> Option<u8> {
    let mut buf = [0u8; 1024];
    task_file(tid, "stat").read_with(&mut buf, stat_state)
}

/// Thread `tid`'s `schedstat`: time on a CPU and time runnable waiting for one, ns (brought up
/// to date at each switch). The one reader of that file.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // block profile and stalls (feature `pprof`)
pub(crate) fn schedstat(tid: i64) -> Option<(u64, u64)> {
    let mut buf = [0u8; 128];
    task_file(tid, "schedstat").read_with(&mut buf, |b| {
        let text = std::str::from_utf8(b).ok()?;
        let mut f = text.split_whitespace();
        let run = parse_u64(f.next()?.as_bytes())?;
        let wait = parse_u64(f.next()?.as_bytes())?;
        Some((run, wait))
    })
}

/// What `/proc/self/task/<tid>/syscall` says a thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // stack reads (feature `pprof`)
pub(crate) enum Syscall {
    /// On a CPU, or runnable (the kernel shows no registers then).
    Running,
    /// Blocked in system call `nr` (-1: blocked, but not in a system call, e.g. a page fault),
    /// with the user stack pointer and program counter it will return to.
    Blocked { nr: i64, sp: u64, pc: u64 },
}

/// Thread `tid`'s [`Syscall`] state (`None` when the thread is gone or the file unreadable).
/// Read into a stack buffer; the one reader of that file.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // stack reads (feature `pprof`)
pub(crate) fn syscall(tid: i64) -> Option<Syscall> {
    let mut buf = [0u8; 256];
    task_file(tid, "syscall").read_with(&mut buf, parse_syscall)
}

#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
/// Parses the text of a `syscall` file: `running`, or the call's number (decimal) followed by
/// hexadecimal fields, the last two of which are the stack pointer and the program counter.
fn parse_syscall(b: &[u8]) -> Option<Syscall> {
    let text = std::str::from_utf8(b).ok()?.trim();
    if text == "running" {
        return Some(Syscall::Running);
    }
    let mut fields = text.split_ascii_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    let hex = |f: &str| u64::from_str_radix(f.strip_prefix("0x")?, 16).ok();
    let mut last = [0u64; 2];
    let mut n = 0usize;
    for f in fields {
        last = [last[1], hex(f)?];
        n += 1;
    }
    // A call shows 6 arguments, then sp and pc; `-1` (no call) shows sp and pc alone.
    (n >= 2).then_some(Syscall::Blocked {
        nr,
        sp: last[0],
        pc: last[1],
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
            stat: task_file(tid, "stat"),
        }
    }

    /// utime + stime, in nanoseconds (clock-tick resolution, usually 10 ms).
    pub(crate) fn cpu_ns(&self) -> Option<u64> {
        let mut buf = [0u8; 1024];
        self.stat.read_with(&mut buf, stat_cpu_ns)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_give_the_stack_and_program_counters() {
        assert_eq!(parse_syscall(b"running\n"), Some(Syscall::Running));
        assert_eq!(
            parse_syscall(b"230 0x1 0x0 0x7ffd0 0x0 0x0 0x0 0x7ffc5a10 0x7f1234\n"),
            Some(Syscall::Blocked {
                nr: 230,
                sp: 0x7ffc5a10,
                pc: 0x7f1234
            })
        );
        assert_eq!(
            parse_syscall(b"-1 0x7ffc5a10 0x7f1234\n"),
            Some(Syscall::Blocked {
                nr: -1,
                sp: 0x7ffc5a10,
                pc: 0x7f1234
            })
        );
        assert_eq!(parse_syscall(b"230 0x1 zz"), None);
        assert_eq!(parse_syscall(b""), None);
    }

    #[test]
    fn a_thread_asleep_in_a_call_shows_it_and_one_on_a_cpu_runs() {
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(crate::sys::thread::current_tid()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(400));
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        match syscall(tid) {
            Some(Syscall::Blocked { nr, sp, pc }) => {
                // clock_nanosleep (x86_64: 230; aarch64: 115), with a user stack and pc.
                assert!(nr == 230 || nr == 115 || nr == 35, "nr {nr}");
                assert!(sp != 0 && pc != 0);
            }
            other => panic!("a sleeping thread: {other:?}"),
        }
        // A thread on a CPU (not this one: it is in the read of the file while it reads it).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let spin = stop.clone();
        let spinner = std::thread::spawn(move || {
            tx.send(crate::sys::thread::current_tid()).unwrap();
            while !spin.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let busy = rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let seen: Vec<_> = (0..20).map(|_| syscall(busy)).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        // Runnable but preempted shows as running too; a page fault shows -1 now and then.
        let running = seen
            .iter()
            .filter(|s| **s == Some(Syscall::Running))
            .count();
        assert!(running >= 15, "{seen:?}");
        sleeper.join().unwrap();
    }
}
