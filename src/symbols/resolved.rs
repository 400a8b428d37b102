//! What symbolizing gives: each address's mapping and frames.

use std::collections::HashMap;

/// One frame of a location: a function, and where in it (0 and "" when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The clean name (see [`names::clean`]).
    pub name: String,
    /// The raw symbol as the object spells it.
    pub system_name: String,
    /// Source file, "" when unknown.
    pub file: String,
    /// Source line, 0 when unknown.
    pub line: u32,
}

/// One pprof Mapping: an executable file mapping of the process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mapping {
    pub start: u64,
    pub limit: u64,
    pub offset: u64,
    pub file: String,
    pub build_id: String,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
}

/// A location's symbolization: the index of its mapping in [`Symbolized::mappings`] (`None`:
/// in no file mapping) and its frames, innermost first (empty: nothing known).
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    pub mapping: Option<usize>,
    pub frames: Vec<Frame>,
}

/// The addresses of one profile, symbolized.
#[derive(Debug, Clone, Default)]
pub(crate) struct Symbolized {
    pub mappings: Vec<Mapping>,
    pub addrs: HashMap<u64, Resolved>,
    /// Notes for the profile's comments (an executable without line tables, a deleted file…).
    pub comments: Vec<String>,
}

impl Symbolized {
    /// The frames of `addr` (empty when unknown).
    pub(crate) fn frames(&self, addr: u64) -> &[Frame] {
        self.addrs.get(&addr).map_or(&[][..], |r| &r.frames)
    }

    /// The function names of a stack (addresses innermost first), outermost first, one per
    /// frame, inlined frames included (what a flame graph draws).
    pub(crate) fn root_first_names(&self, stack: &[u64]) -> Vec<&str> {
        let mut out = Vec::with_capacity(stack.len() * 2);
        for a in stack.iter().rev() {
            match self.frames(*a) {
                [] => out.push("?"),
                frames => out.extend(frames.iter().rev().map(|f| f.name.as_str())),
            }
        }
        out
    }

    /// Adds a pseudo-address with a fixed name (e.g. "stack not walked").
    pub(crate) fn insert_named(&mut self, addr: u64, name: &str) {
        self.addrs.insert(
            addr,
            Resolved {
                mapping: None,
                frames: vec![Frame {
                    name: name.to_owned(),
                    system_name: name.to_owned(),
                    file: String::new(),
                    line: 0,
                }],
            },
        );
    }
}
