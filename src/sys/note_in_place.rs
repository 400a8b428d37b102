//! A note line written without allocating, for code that runs inside the allocator (the heap
//! profiler's stack hook): the line is built in a stack buffer and written as
//! [`note`](super::stderr::note) writes, never blocking.

/// Writes one note line on stderr now, as [`note`](super::stderr::note) does, without
/// allocating: for code that runs inside the allocator (the heap profiler's stack hook). The
/// line is built in a 512-byte stack buffer; a longer message is cut.
pub(crate) fn note_in_place(kind: &str, message: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let mut buf = [0u8; 512];
    let mut w = InPlace {
        buf: &mut buf,
        len: 0,
        json: false,
    };
    if super::stderr::notes_json() {
        w.raw(b"{\"type\":\"");
        w.json = true;
        let _ = w.write_str(kind);
        w.json = false;
        w.raw(b"\",\"message\":\"");
        w.json = true;
        let _ = w.write_fmt(message);
        w.json = false;
        w.end(b"\"}\n");
    } else {
        w.raw(b"rdebug: ");
        let _ = w.write_str(kind);
        w.raw(b": ");
        let _ = w.write_fmt(message);
        w.end(b"\n");
    }
    let len = w.len;
    super::stderr::Stderr::open().line(&buf[..len]);
}

/// A line built in a fixed buffer ([`note_in_place`]), JSON-escaped while `json` is set; what
/// does not fit, less room for the line's end, is left out.
struct InPlace<'a> {
    buf: &'a mut [u8],
    len: usize,
    json: bool,
}

impl InPlace<'_> {
    /// Room kept for the line's end.
    const END: usize = 4;

    fn raw(&mut self, b: &[u8]) {
        let room = self.buf.len() - Self::END - self.len.min(self.buf.len() - Self::END);
        let n = b.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }

    fn end(&mut self, b: &[u8]) {
        let n = b.len().min(Self::END);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }
}

impl std::fmt::Write for InPlace<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if !self.json {
            self.raw(s.as_bytes());
            return Ok(());
        }
        for c in s.chars() {
            let mut tmp = [0u8; 6];
            let b: &[u8] = match c {
                '"' => b"\\\"",
                '\\' => b"\\\\",
                '\n' => b"\\n",
                c if (c as u32) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    tmp = [
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(c as usize) >> 4],
                        HEX[(c as usize) & 15],
                    ];
                    &tmp
                }
                c => c.encode_utf8(&mut tmp).as_bytes(),
            };
            self.raw(b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_place_line_is_escaped_for_json_and_cut_to_its_buffer() {
        use std::fmt::Write as _;
        let mut buf = [0u8; 24];
        let mut w = InPlace {
            buf: &mut buf,
            len: 0,
            json: true,
        };
        let _ = w.write_str("k\"\\\n\u{1}");
        w.end(b"\"}\n");
        let len = w.len;
        assert_eq!(&buf[..len], b"k\\\"\\\\\\n\\u0001\"}\n");
        let mut small = [0u8; 12];
        let mut w = InPlace {
            buf: &mut small,
            len: 0,
            json: false,
        };
        let _ = write!(w, "{}", "x".repeat(40));
        w.end(b"\n");
        let len = w.len;
        assert_eq!(&small[..len], b"xxxxxxxx\n");
    }
}
