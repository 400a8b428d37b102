//! Where trace lines go: one `write` per line, never blocking the program.
//!
//! stderr is shared with the host program, so rdebug never changes its flags. Instead, at start it
//! looks at what fd 2 is:
//! - a pipe or FIFO: it is reopened through `/proc/self/fd/2`, which gives rdebug its own open
//!   file description of the same pipe, set non-blocking. A full pipe (nobody reading) drops the
//!   line instead of waiting; a pipe whose reader went away (`EPIPE`) ends output.
//! - a socket (journald, a supervisor): `send` with `MSG_DONTWAIT | MSG_NOSIGNAL`.
//! - a terminal or other character device: `poll` with a zero timeout first, then `write`.
//! - a regular file, `/dev/null`: a plain `write`.
//!
//! A write to a pipe whose reader went away raises `SIGPIPE`, which kills a program that restored
//! the signal's default action (Rust programs ignore it unless built otherwise; C hosts do not):
//! the reporter thread blocks `SIGPIPE` for good, and a write from any other thread (a warning at
//! `init`, the panic hook) blocks it for the write and takes the signal back off (Linux).
//!
//! Dropped lines are counted and reported in one line (`rdebug: N lines dropped ...`) as soon as a
//! write goes through again. Any other error (`EBADF`, `EPIPE`, `EIO`) ends output until fd 2
//! changes; the figures stay readable from code.
//!
//! fd 2 is followed: before each line rdebug checks (one `fstat`) that fd 2 is still the file it
//! opened; when the program closed or redirected it (daemonizing), rdebug closes its own
//! description of the old pipe (so the old reader sees the end of it) and writes to what fd 2 is
//! now.
//!
//! Lines are written whole or not at all: a line longer than `PIPE_BUF` (4096 bytes on Linux,
//! what a pipe writes atomically; a `SCHED` JSON line of hundreds of workers) is cut to fit and
//! ends with ` [rdebug: line cut]` and its newline, and a line that went out only in part (a
//! socket took part of it) is finished with a newline before the next one, so lines from rdebug
//! and from the program never run together.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// A destination for lines.
pub(crate) enum Sink {
    /// The process's stderr, as described in the module docs.
    Stderr(Stderr),
    /// A caller-supplied writer (from [`Builder::writer`](crate::Builder::writer)).
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    /// Writes one complete line. Returns false if it was dropped or output has ended.
    pub(crate) fn line(&mut self, line: &[u8]) -> bool {
        match self {
            Sink::Stderr(s) => s.line(line),
            Sink::Writer(w) => w.write_all(line).and_then(|()| w.flush()).is_ok(),
        }
    }

    /// Lines dropped so far because the destination was full.
    pub(crate) fn dropped(&self) -> u64 {
        match self {
            Sink::Stderr(s) => s.dropped_total,
            Sink::Writer(_) => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Output has ended (or fd 2 was never open).
    Dead,
    Plain,
    PollFirst,
    Socket,
    /// Our own non-blocking description of the pipe.
    OwnPipe,
}

/// stderr, opened for non-blocking line writes.
pub(crate) struct Stderr {
    fd: i32,
    kind: Kind,
    /// Owned fd to close on drop (the reopened pipe).
    owned: bool,
    /// What fd 2 was when classified (device, inode), `None` if it was not open.
    ident: Option<(u64, u64)>,
    /// The last line went out in part: the next write starts with a newline.
    torn: bool,
    /// Lines dropped since the last one that went through.
    dropped_pending: u64,
    dropped_total: u64,
}

impl Drop for Stderr {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.owned {
            // SAFETY: we opened this fd and nobody else uses it.
            unsafe { libc::close(self.fd) };
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Written,
    /// Would block: the line was dropped.
    Full,
    /// Output is over.
    Closed,
}

impl Stderr {
    /// Looks at fd 2 and picks how to write to it.
    pub(crate) fn open() -> Self {
        let (fd, kind, owned) = classify();
        Stderr {
            fd,
            kind,
            owned,
            ident: fd2_ident(),
            torn: false,
            dropped_pending: 0,
            dropped_total: 0,
        }
    }

    /// Re-classifies fd 2 if it is no longer the file it was (closed, or redirected).
    fn follow_fd2(&mut self) {
        let now = fd2_ident();
        if now == self.ident {
            return;
        }
        let dropped = (self.dropped_pending, self.dropped_total);
        // Dropping the old value closes our description of the old pipe.
        *self = Stderr::open();
        (self.dropped_pending, self.dropped_total) = dropped;
    }

    pub(crate) fn line(&mut self, line: &[u8]) -> bool {
        self.follow_fd2();
        let mut cut = Vec::new();
        let line = if line.len() > MAX_LINE {
            cut_line(line, &mut cut);
            &cut[..]
        } else {
            line
        };
        if self.torn {
            match self.write(b"\n") {
                Outcome::Written => self.torn = false,
                Outcome::Full => return self.drop_line(),
                Outcome::Closed => return false,
            }
        }
        if self.dropped_pending > 0 {
            let mut buf = [0u8; 96];
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = writeln!(
                cur,
                "rdebug: {} lines dropped: stderr was not being read",
                self.dropped_pending
            );
            let n = cur.position() as usize;
            match self.write(&buf[..n]) {
                Outcome::Written => self.dropped_pending = 0,
                Outcome::Full => return self.drop_line(),
                Outcome::Closed => return false,
            }
        }
        match self.write(line) {
            Outcome::Written => true,
            Outcome::Full => self.drop_line(),
            Outcome::Closed => false,
        }
    }

    fn drop_line(&mut self) -> bool {
        self.dropped_pending = self.dropped_pending.saturating_add(1);
        self.dropped_total = self.dropped_total.saturating_add(1);
        false
    }

    #[cfg(unix)]
    fn write(&mut self, mut bytes: &[u8]) -> Outcome {
        if self.kind == Kind::Dead {
            return Outcome::Closed;
        }
        if self.kind == Kind::PollFirst {
            let mut p = libc::pollfd {
                fd: self.fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            if n == 0 {
                return Outcome::Full;
            }
            if n > 0 && p.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                self.kind = Kind::Dead;
                return Outcome::Closed;
            }
        }
        // A pipe whose reader went away answers EPIPE and raises SIGPIPE, which kills a program
        // that restored its default action: hold it off for this write.
        let sigpipe = match self.kind {
            Kind::Socket => None,
            _ => SigpipeGuard::new(),
        };
        while !bytes.is_empty() {
            // SAFETY: `bytes` is a valid buffer; the fd is ours to write.
            let n = unsafe {
                match self.kind {
                    Kind::Socket => libc::send(
                        self.fd,
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    ),
                    _ => libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()),
                }
            };
            if n > 0 {
                bytes = &bytes[n as usize..];
                self.torn = !bytes.is_empty();
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                // Lines are at most PIPE_BUF long, so a pipe takes all of one or none of it; a
                // socket may have taken part of it (`torn`).
                Some(libc::EAGAIN) => return Outcome::Full,
                e => {
                    if e == Some(libc::EPIPE)
                        && let Some(g) = &sigpipe
                    {
                        g.consume();
                    }
                    self.kind = Kind::Dead;
                    return Outcome::Closed;
                }
            }
        }
        Outcome::Written
    }

    #[cfg(not(unix))]
    fn write(&mut self, bytes: &[u8]) -> Outcome {
        if std::io::stderr().write_all(bytes).is_ok() {
            Outcome::Written
        } else {
            Outcome::Closed
        }
    }
}

#[cfg(target_os = "linux")]
std::thread_local! {
    /// Set on a thread that blocks SIGPIPE for good (the reporter thread).
    static SIGPIPE_BLOCKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Blocks SIGPIPE on the calling thread for good, so its writes need no [`SigpipeGuard`]. A
/// SIGPIPE raised by one of its writes then stays pending on this thread, never delivered.
pub(crate) fn block_sigpipe_on_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain signal-set calls on a local set; no old mask is asked for.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0 {
            let _ = SIGPIPE_BLOCKED.try_with(|b| b.set(true));
        }
    }
}

/// SIGPIPE blocked on this thread for the life of the guard; a SIGPIPE the guarded write raised
/// is taken off the pending set ([`consume`](Self::consume)) before the old mask comes back.
/// Elsewhere than Linux there is no guard (`sigtimedwait` is missing): a program there that
/// restored SIGPIPE's default action dies of a broken stderr pipe, as it would with `eprintln!`.
#[cfg(unix)]
struct SigpipeGuard {
    #[cfg(target_os = "linux")]
    old: libc::sigset_t,
    #[cfg(target_os = "linux")]
    was_pending: bool,
}

#[cfg(unix)]
impl SigpipeGuard {
    /// `None` when this thread blocks SIGPIPE already.
    fn new() -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            if SIGPIPE_BLOCKED.try_with(|b| b.get()).unwrap_or(false) {
                return None;
            }
            // SAFETY: signal-set calls on local sets.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                let mut pending: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPIPE);
                if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
                    return None;
                }
                libc::sigemptyset(&mut pending);
                libc::sigpending(&mut pending);
                let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
                Some(SigpipeGuard { old, was_pending })
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Takes the SIGPIPE our write raised off the pending set (one that was pending before is
    /// left alone).
    fn consume(&self) {
        #[cfg(target_os = "linux")]
        if !self.was_pending {
            // SAFETY: a local set and a zero timeout: returns at once.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPIPE);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Longest line written, newline included: what a pipe writes atomically (POSIX `PIPE_BUF`,
/// 4096 on Linux).
pub(crate) const MAX_LINE: usize = 4096;

/// What ends a line [`cut_line`] shortened.
const CUT_MARK: &[u8] = b" [rdebug: line cut]\n";

/// `line` shortened to [`MAX_LINE`] bytes at a UTF-8 boundary, ending with [`CUT_MARK`].
fn cut_line(line: &[u8], out: &mut Vec<u8>) {
    let mut end = MAX_LINE - CUT_MARK.len();
    // Back to the start of a UTF-8 character (continuation bytes are 0b10xx_xxxx).
    while end > 0 && line.get(end).is_some_and(|&b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    out.extend_from_slice(&line[..end]);
    out.extend_from_slice(CUT_MARK);
}

/// fd 2's device and inode now, `None` when it is not open.
fn fd2_ident() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        // SAFETY: fstat writes into the zeroed struct only.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(2, &mut st) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Some((st.st_dev as u64, st.st_ino as u64))
    }
    #[cfg(not(unix))]
    {
        Some((0, 0))
    }
}

#[cfg(unix)]
fn classify() -> (i32, Kind, bool) {
    // SAFETY: fstat writes into the zeroed struct only.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return (2, Kind::Dead, false);
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => {
            #[cfg(target_os = "linux")]
            {
                // SAFETY: a NUL-terminated path.
                let fd = unsafe {
                    libc::open(
                        c"/proc/self/fd/2".as_ptr(),
                        libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                    )
                };
                if fd >= 0 {
                    return (fd, Kind::OwnPipe, true);
                }
                // ENXIO: a FIFO with no reader left.
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                    return (2, Kind::Dead, false);
                }
            }
            (2, Kind::PollFirst, false)
        }
        libc::S_IFSOCK => (2, Kind::Socket, false),
        libc::S_IFCHR => (2, Kind::PollFirst, false),
        _ => (2, Kind::Plain, false),
    }
}

#[cfg(not(unix))]
fn classify() -> (i32, Kind, bool) {
    (2, Kind::Plain, false)
}

/// Whether notes written outside the reporter thread (warnings at `init`, the missing-figures
/// note) are JSON objects rather than `rdebug: ...` text: set from the `format` in effect.
static NOTES_JSON: AtomicBool = AtomicBool::new(false);

/// Sets the format of notes written with [`note`].
pub(crate) fn set_notes_json(json: bool) {
    NOTES_JSON.store(json, Relaxed);
}

/// Whether notes are JSON now.
pub(crate) fn notes_json() -> bool {
    NOTES_JSON.load(Relaxed)
}

/// Appends an `rdebug: <kind>: <message>` line, or `{"type":"<kind>","message":"..."}`.
pub(crate) fn encode_note(out: &mut Vec<u8>, json: bool, kind: &str, message: &str) {
    if json {
        out.extend_from_slice(b"{\"type\":");
        json_str(out, kind);
        out.extend_from_slice(b",\"message\":");
        json_str(out, message);
        out.extend_from_slice(b"}\n");
    } else {
        let _ = writeln!(out, "rdebug: {kind}: {message}");
    }
}

/// Writes one note line on stderr now, in the format set by [`set_notes_json`], never blocking.
pub(crate) fn note(kind: &str, message: &str) {
    let mut line = Vec::new();
    encode_note(&mut line, notes_json(), kind, message);
    Stderr::open().line(&line);
}

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A `Stderr` writing to the write end of a fresh non-blocking pipe, and the read end.
    fn pipe() -> (Stderr, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: a valid array of two fds.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        let s = Stderr {
            fd: fds[1],
            kind: Kind::OwnPipe,
            owned: true,
            ident: fd2_ident(),
            torn: false,
            dropped_pending: 0,
            dropped_total: 0,
        };
        (s, fds[0])
    }

    fn read_all(fd: i32) -> Vec<u8> {
        let mut out = vec![0u8; 1 << 16];
        // SAFETY: a valid buffer; our own fd.
        let n = unsafe { libc::read(fd, out.as_mut_ptr().cast(), out.len()) };
        out.truncate(n.max(0) as usize);
        out
    }

    #[test]
    fn long_lines_are_cut_to_one_atomic_pipe_write() {
        let (mut s, r) = pipe();
        let mut long = "é".repeat(5000).into_bytes(); // 10000 bytes of two-byte characters
        long.push(b'\n');
        assert!(s.line(&long));
        assert!(s.line(b"next\n"));
        let got = read_all(r);
        let text = String::from_utf8(got).expect("cut at a character boundary");
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].len() <= MAX_LINE, "{}", lines[0].len());
        assert!(lines[0].ends_with(" [rdebug: line cut]\n"));
        assert_eq!(lines[1], "next\n");
        // SAFETY: our own fd.
        unsafe { libc::close(r) };
    }

    #[test]
    fn a_line_that_went_out_in_part_is_ended_before_the_next() {
        let (mut s, r) = pipe();
        s.torn = true; // as after a socket took part of a line
        assert!(s.line(b"abc\n"));
        assert_eq!(read_all(r), b"\nabc\n");
        // SAFETY: our own fd.
        unsafe { libc::close(r) };
    }
}
