//! The reporter's output buffer: the lines of one tick, formatted into reused memory and written
//! one `write` per line when the tick ends.

use crate::config::Format;
use crate::sys::stderr::Sink;

use super::line_format;

/// Lines of the current tick, where each ends, and where they go.
pub(super) struct Lines {
    buf: Vec<u8>,
    ends: Vec<usize>,
    sink: Sink,
}

impl Lines {
    pub(super) fn new(sink: Sink) -> Self {
        Lines {
            buf: Vec::with_capacity(8192),
            ends: Vec::with_capacity(256),
            sink,
        }
    }

    /// The buffer to append one complete line to; call [`end`](Self::end) after it.
    pub(super) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Marks the end of the line just appended (nothing, if nothing was appended).
    pub(super) fn end(&mut self) {
        if self.ends.last().copied().unwrap_or(0) != self.buf.len() {
            self.ends.push(self.buf.len());
        }
    }

    /// Appends a note line.
    pub(super) fn note(&mut self, fmt: Format, kind: &str, message: &str) {
        line_format::note(&mut self.buf, fmt, kind, message);
        self.end();
    }

    /// Writes the pending lines, one `write` each; returns how many were written and how many the
    /// sink has dropped in all.
    pub(super) fn flush(&mut self) -> (u64, u64) {
        let mut start = 0;
        let mut written = 0u64;
        for &end in &self.ends {
            if end > start && self.sink.line(&self.buf[start..end]) {
                written += 1;
            }
            start = end;
        }
        self.buf.clear();
        self.ends.clear();
        (written, self.sink.dropped())
    }
}
