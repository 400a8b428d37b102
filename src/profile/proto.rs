//! A small writer for pprof's `profile.proto` (the messages Go's `go tool pprof` reads), gzipped.
//!
//! Only what rdebug emits: sample types, samples, mappings, locations with one line per
//! inlined frame, functions and the string table. Field numbers are those of
//! `github.com/google/pprof/proto/profile.proto`.

use std::collections::HashMap;
use std::io::Write;

/// Protobuf wire encoding into a byte buffer.
#[derive(Debug, Default)]
struct Wire(Vec<u8>);

impl Wire {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    /// A varint field; zero is the default and is left out.
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn packed(&mut self, field: u32, values: impl Iterator<Item = u64>) {
        let mut inner = Wire::default();
        for v in values {
            inner.varint(v);
        }
        if !inner.0.is_empty() {
            self.bytes(field, &inner.0);
        }
    }

    fn message(&mut self, field: u32, f: impl FnOnce(&mut Wire)) {
        let mut inner = Wire::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

/// A location: one code address, its mapping (0: none) and its lines `(function id, line)`,
/// innermost first.
#[derive(Debug, Clone)]
struct Location {
    address: u64,
    mapping: u64,
    lines: Vec<(u64, i64)>,
}

/// A function: name, system name and file, as string ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Function {
    name: i64,
    system_name: i64,
    filename: i64,
}

/// A mapping as it is encoded.
#[derive(Debug, Clone)]
struct MappingRow {
    start: u64,
    limit: u64,
    offset: u64,
    file: i64,
    build_id: i64,
    flags: [bool; 3],
}

/// Builds one pprof `Profile`: strings, functions and locations are interned as they come.
#[derive(Debug)]
pub(crate) struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Function>,
    function_ids: HashMap<Function, u64>,
    locations: Vec<Location>,
    location_ids: HashMap<u64, u64>,
    samples: Wire,
    sample_types: Vec<(i64, i64)>,
    period_type: (i64, i64),
    period: i64,
    duration_nanos: i64,
    time_nanos: i64,
    default_sample_type: i64,
    mappings: Vec<MappingRow>,
    comments: Vec<i64>,
}

impl Builder {
    /// A profile with these `(type, unit)` sample types and period type.
    pub(crate) fn new(
        sample_types: &[(&str, &str)],
        period_type: (&str, &str),
        period: i64,
    ) -> Self {
        let mut b = Builder {
            strings: vec![String::new()],
            string_ids: HashMap::from([(String::new(), 0)]),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            samples: Wire::default(),
            sample_types: Vec::new(),
            period_type: (0, 0),
            period,
            duration_nanos: 0,
            time_nanos: 0,
            default_sample_type: 0,
            mappings: Vec::new(),
            comments: Vec::new(),
        };
        for (t, u) in sample_types {
            let st = (b.string(t), b.string(u));
            b.sample_types.push(st);
        }
        b.period_type = (b.string(period_type.0), b.string(period_type.1));
        b
    }

    /// The string table index of `s`.
    pub(crate) fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ids.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), i);
        i
    }

    /// Sets `default_sample_type` to the named sample type.
    pub(crate) fn default_sample_type(&mut self, t: &str) {
        self.default_sample_type = self.string(t);
    }

    /// Sets `time_nanos` (the start, as Unix ns) and `duration_nanos`.
    pub(crate) fn times(&mut self, start: std::time::SystemTime, duration: std::time::Duration) {
        let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        self.time_nanos = start
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, nanos);
        self.duration_nanos = nanos(duration);
    }

    /// Adds a comment line (`go tool pprof -comments`).
    pub(crate) fn comment(&mut self, c: &str) {
        let i = self.string(c);
        self.comments.push(i);
    }

    /// Adds a mapping and returns its id: an executable file mapping of the process, with its
    /// file offset, GNU build ID and `(has_functions, has_filenames, has_line_numbers)`.
    /// Adds `sym`'s mappings (ids 1, 2, … in order) and comments.
    pub(crate) fn add_symbolized(&mut self, sym: &crate::symbols::Symbolized) {
        for m in &sym.mappings {
            self.mapping(m);
        }
        for c in &sym.comments {
            self.comment(c);
        }
    }

    /// The location id of `addr`, named from `sym` (given to [`Builder::add_symbolized`] first).
    pub(crate) fn symbolized_location(
        &mut self,
        sym: &crate::symbols::Symbolized,
        addr: u64,
    ) -> u64 {
        match sym.addrs.get(&addr) {
            Some(r) => self.location_frames(addr, r.mapping.map_or(0, |i| i as u64 + 1), &r.frames),
            None => self.location_frames(addr, 0, &[]),
        }
    }

    pub(crate) fn mapping(&mut self, m: &crate::symbols::Mapping) -> u64 {
        let file = self.string(&m.file);
        let build_id = self.string(&m.build_id);
        self.mappings.push(MappingRow {
            start: m.start,
            limit: m.limit,
            offset: m.offset,
            file,
            build_id,
            flags: [m.has_functions, m.has_filenames, m.has_line_numbers],
        });
        self.mappings.len() as u64
    }

    /// The id of the function named `name` (raw symbol `system_name`) in `file`.
    fn function(&mut self, name: &str, system_name: &str, file: &str) -> u64 {
        let f = Function {
            name: self.string(name),
            system_name: self.string(system_name),
            filename: self.string(file),
        };
        if let Some(&id) = self.function_ids.get(&f) {
            return id;
        }
        self.functions.push(f);
        let id = self.functions.len() as u64;
        self.function_ids.insert(f, id);
        id
    }

    /// The location id of code address `address` in mapping `mapping` (0: none), one line per
    /// frame, innermost first (none: an unsymbolized address pprof may symbolize itself).
    pub(crate) fn location_frames(
        &mut self,
        address: u64,
        mapping: u64,
        frames: &[crate::symbols::Frame],
    ) -> u64 {
        if let Some(&id) = self.location_ids.get(&address) {
            return id;
        }
        let lines = frames
            .iter()
            .map(|f| {
                let system = if f.system_name.is_empty() {
                    &f.name
                } else {
                    &f.system_name
                };
                (self.function(&f.name, system, &f.file), i64::from(f.line))
            })
            .collect();
        self.locations.push(Location {
            address,
            mapping,
            lines,
        });
        let id = self.locations.len() as u64;
        self.location_ids.insert(address, id);
        id
    }

    /// The location id of a pseudo-address `address` in function `name` (no mapping, no file).
    pub(crate) fn location(&mut self, address: u64, name: &str) -> u64 {
        if let Some(&id) = self.location_ids.get(&address) {
            return id;
        }
        let function = self.function(name, name, "");
        self.locations.push(Location {
            address,
            mapping: 0,
            lines: vec![(function, 0)],
        });
        let id = self.locations.len() as u64;
        self.location_ids.insert(address, id);
        id
    }

    /// Adds a sample: location ids leaf first, one value per sample type.
    pub(crate) fn sample(&mut self, locations: &[u64], values: &[i64]) {
        self.sample_labeled(locations, values, &[], &[]);
    }

    /// Adds a sample with labels (`Sample.label`): string labels `(key, value)` and numeric
    /// labels `(key, number)`, as Go's `pprof.Labels` and `runtime/pprof`'s numeric ones.
    pub(crate) fn sample_labeled(
        &mut self,
        locations: &[u64],
        values: &[i64],
        strs: &[(&str, &str)],
        nums: &[(&str, i64)],
    ) {
        let strs: Vec<(i64, i64)> = strs
            .iter()
            .map(|(k, v)| (self.string(k), self.string(v)))
            .collect();
        let nums: Vec<(i64, i64)> = nums.iter().map(|(k, n)| (self.string(k), *n)).collect();
        self.samples.message(2, |m| {
            m.packed(1, locations.iter().copied());
            m.packed(2, values.iter().map(|&v| v as u64));
            for (k, v) in strs {
                m.message(3, |l| {
                    l.int(1, k);
                    l.int(2, v);
                });
            }
            for (k, n) in nums {
                m.message(3, |l| {
                    l.int(1, k);
                    l.int(3, n);
                });
            }
        });
    }

    /// The encoded `Profile`, not compressed.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut w = Wire::default();
        for &(t, u) in &self.sample_types {
            w.message(1, |m| {
                m.int(1, t);
                m.int(2, u);
            });
        }
        w.0.extend_from_slice(&self.samples.0);
        for (i, m) in self.mappings.iter().enumerate() {
            w.message(3, |w| {
                w.uint(1, i as u64 + 1);
                w.uint(2, m.start);
                w.uint(3, m.limit);
                w.uint(4, m.offset);
                w.int(5, m.file);
                w.int(6, m.build_id);
                w.uint(7, u64::from(m.flags[0]));
                w.uint(8, u64::from(m.flags[1]));
                w.uint(9, u64::from(m.flags[2]));
                w.uint(10, u64::from(m.flags[2])); // has_inline_frames: DWARF gives them
            });
        }
        for (i, loc) in self.locations.iter().enumerate() {
            w.message(4, |m| {
                m.uint(1, i as u64 + 1);
                m.uint(2, loc.mapping);
                m.uint(3, loc.address);
                for &(function, line) in &loc.lines {
                    m.message(4, |l| {
                        l.uint(1, function);
                        l.int(2, line);
                    });
                }
            });
        }
        for (i, f) in self.functions.iter().enumerate() {
            w.message(5, |m| {
                m.uint(1, i as u64 + 1);
                m.int(2, f.name);
                m.int(3, f.system_name);
                m.int(4, f.filename);
            });
        }
        for s in &self.strings {
            w.bytes(6, s.as_bytes());
        }
        w.int(9, self.time_nanos);
        w.int(10, self.duration_nanos);
        w.message(11, |m| {
            m.int(1, self.period_type.0);
            m.int(2, self.period_type.1);
        });
        w.int(12, self.period);
        w.packed(13, self.comments.iter().map(|&c| c as u64));
        w.int(14, self.default_sample_type);
        w.0
    }

    /// The encoded `Profile`, gzipped (what Go serves).
    pub(crate) fn encode_gz(self) -> Vec<u8> {
        gzip(&self.encode())
    }
}

/// Gzips `data` at the default level.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_strings_encode_as_protobuf_does() {
        let mut w = Wire::default();
        w.varint(300);
        assert_eq!(w.0, [0xac, 0x02]);
        let mut b = Builder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10);
        assert_eq!(b.string("samples"), 1);
        assert_eq!(b.string("cpu"), 3);
        let l = b.location(0x1000, "main");
        assert_eq!(b.location(0x1000, "main"), l);
        b.sample(&[l], &[5]);
        let bytes = b.encode();
        // sample_type { type: 1 unit: 2 }
        assert_eq!(&bytes[..6], &[0x0a, 0x04, 0x08, 0x01, 0x10, 0x02]);
    }
}
