//! Turning a profile's code addresses into what pprof shows: for each address its mapping (the
//! loaded object it lies in) and its frames, innermost first — one per inlined function, with
//! file and line where the object carries DWARF line tables.
//!
//! * **Names** come from each object's ELF symbol table (`.symtab`, else `.dynsym`) for the
//!   outermost frame and from DWARF for the frames inlined into it, cleaned by
//!   [`names::clean`](super::names::clean); the raw symbol is kept as `system_name`.
//! * **Inlined frames, file and line** come from DWARF (`.debug_info`, `.debug_line`; a
//!   release build with `debug = "line-tables-only"` is enough), read by `addr2line`/`gimli`
//!   (what std's own backtraces use), lazily: only the compilation units that hold the
//!   profile's addresses are parsed, and everything is dropped with the profile.
//! * **Separate debug files**: an object without its own DWARF or symbols is looked up under
//!   `/usr/lib/debug/.build-id/xx/yyyy.debug` by its GNU build ID. Compressed DWARF sections
//!   (as Debian's debug packages ship) are not read: their symbol table still names functions.
//! * **Mappings**: every executable file mapping of `/proc/self/maps` becomes a pprof Mapping
//!   with start, limit, file offset, file name and GNU build ID, the main executable first;
//!   `has_filenames` and `has_line_numbers` true to what was found, `has_functions` on every
//!   one (else `go tool pprof URL` posts the unnamed addresses to `/debug/pprof/symbol`, which
//!   rdebug does not serve), so `go tool pprof -symbolize=local,force` (with
//!   `PPROF_BINARY_PATH`) can redo what this process could not name.
//!
//! Nothing here runs in a signal handler.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol, SymbolKind};

use super::dwarf::{Dwarf, Part, UnitContext};
use super::modules::{self, Mapped, Module};
use super::names;
use super::proto::Builder;

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

/// Adds `sym`'s mappings (ids 1, 2, … in order) and comments to a profile being built.
pub(crate) fn add_to_profile(b: &mut Builder, sym: &Symbolized) {
    for m in &sym.mappings {
        b.mapping(m);
    }
    for c in &sym.comments {
        b.comment(c);
    }
}

/// The location id of `addr` in a profile that [`add_to_profile`] was given `sym`.
pub(crate) fn location(b: &mut Builder, sym: &Symbolized, addr: u64) -> u64 {
    match sym.addrs.get(&addr) {
        Some(r) => b.location_frames(addr, r.mapping.map_or(0, |i| i as u64 + 1), &r.frames),
        None => b.location_frames(addr, 0, &[]),
    }
}

/// The main executable's mapping alone, marked `has_functions` (for profiles whose frames are
/// all named pseudo-frames, so pprof knows the binary and asks for no symbols).
pub(crate) fn main_mapping() -> Option<Mapping> {
    let mut m = symbolize(std::iter::empty()).mappings.into_iter().next()?;
    m.has_functions = true;
    Some(m)
}

/// Symbolizes `addrs` (code addresses for lookup: a pc, or a return address − 1), reading
/// what it needs and dropping it after (for a whole profile).
pub(crate) fn symbolize(addrs: impl IntoIterator<Item = u64>) -> Symbolized {
    Symbolizer::new().symbolize(addrs)
}

/// Symbolizes `addrs` with a process-wide [`Symbolizer`] kept between calls (made anew when
/// the loaded objects change): for the few addresses of a STALL line, many times.
pub(crate) fn symbolize_cached(addrs: impl IntoIterator<Item = u64>) -> Symbolized {
    static CACHE: std::sync::Mutex<Option<Symbolizer>> = std::sync::Mutex::new(None);
    let mut cache = crate::sync::lock(&CACHE);
    if !cache.as_ref().is_some_and(Symbolizer::is_current) {
        *cache = Some(Symbolizer::new());
    }
    match cache.as_mut() {
        Some(s) => s.symbolize(addrs),
        None => symbolize(addrs),
    }
}

/// A symbolizer that keeps each object's symbol table and DWARF unit index between calls (what
/// a STALL line's few addresses need, without reading the tables again each time); the DWARF
/// units themselves are still read per call and dropped. About 24 bytes per function symbol and
/// per `.debug_aranges` range of the objects used.
pub(crate) struct Symbolizer {
    loaded: Vec<Module>,
    /// Per loaded object: `None` not opened yet, `Some(None)` unreadable.
    objects: Vec<Option<Option<ObjectInfo>>>,
    comments: Vec<String>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("objects", &self.loaded.len())
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// A symbolizer for the objects loaded now (nothing read yet).
    pub(crate) fn new() -> Symbolizer {
        let loaded = modules::loaded();
        let mut objects = Vec::new();
        objects.resize_with(loaded.len(), || None);
        Symbolizer {
            loaded,
            objects,
            comments: Vec::new(),
        }
    }

    /// Whether the objects loaded now are those it was made for.
    pub(crate) fn is_current(&self) -> bool {
        let now = modules::loaded();
        now.len() == self.loaded.len()
            && now
                .iter()
                .zip(&self.loaded)
                .all(|(a, b)| a.path == b.path && a.base == b.base)
    }

    /// Symbolizes `addrs` (code addresses for lookup: a pc, or a return address − 1).
    pub(crate) fn symbolize(&mut self, addrs: impl IntoIterator<Item = u64>) -> Symbolized {
        let mut addrs: Vec<u64> = addrs.into_iter().collect();
        addrs.sort_unstable();
        addrs.dedup();
        let loaded = &self.loaded;
        let maps = exec_mappings();
        let mut out = Symbolized::default();
        // Mappings, main executable's first; each tied to its loaded module.
        let mut order: Vec<(Mapping, Option<usize>)> = maps
            .into_iter()
            .map(|m| {
                let module = loaded.iter().position(|l| l.range.contains(&m.start));
                (m, module)
            })
            .collect();
        order.sort_by_key(|(m, module)| {
            (
                !module.is_some_and(|i| loaded.get(i).is_some_and(|l| l.is_main)),
                m.start,
            )
        });
        for (m, _) in &order {
            out.mappings.push(m.clone());
        }
        let main_index = loaded.iter().position(|l| l.is_main);
        // Each address's mapping and module; then each module's addresses, a DWARF unit at a time.
        let mut by_module: Vec<Vec<(u64, usize)>> = vec![Vec::new(); loaded.len()];
        for &addr in &addrs {
            let Some(mi) = out
                .mappings
                .iter()
                .position(|m| (m.start..m.limit).contains(&addr))
            else {
                out.addrs.insert(addr, Resolved::default());
                continue;
            };
            match order[mi].1 {
                Some(i) => by_module[i].push((addr, mi)),
                None => {
                    out.addrs.insert(
                        addr,
                        Resolved {
                            mapping: Some(mi),
                            frames: Vec::new(),
                        },
                    );
                }
            }
        }
        for (i, list) in by_module.iter_mut().enumerate() {
            if list.is_empty() {
                continue;
            }
            if self.objects[i].is_none() {
                self.objects[i] = Some(ObjectInfo::open(
                    &loaded[i],
                    main_index == Some(i),
                    &mut self.comments,
                ));
            }
            let Some(Some(obj)) = &self.objects[i] else {
                for &(addr, mi) in list.iter() {
                    out.addrs.insert(
                        addr,
                        Resolved {
                            mapping: Some(mi),
                            frames: Vec::new(),
                        },
                    );
                }
                continue;
            };
            let base = loaded[i].base;
            let part = |addr: u64| {
                obj.dwarf
                    .as_ref()
                    .and_then(|d| d.part_of(addr.wrapping_sub(base)))
            };
            list.sort_by_key(|&(addr, _)| (part(addr), addr));
            // The context in use: the unit it serves, the part it was made of, the context.
            let mut current: Option<(Part, Part, Option<UnitContext>)> = None;
            // The whole `.debug_info`, made only if a unit with its references is not enough.
            let mut whole: Option<Option<UnitContext>> = None;
            // Addresses whose unit `.debug_aranges` names but whose DWARF could not be read.
            let mut unreadable = 0usize;
            for &(addr, mi) in list.iter() {
                let p = part(addr);
                let svma = addr.wrapping_sub(base);
                let context = |part: Part| obj.dwarf.as_ref().and_then(|d| d.context(part));
                let mut dwarf = match (p, &whole) {
                    (None, _) => Ok(Vec::new()),
                    // Once the whole section is read, it serves the rest of this object's
                    // addresses: no unit is read a second time.
                    (Some(_), Some(w)) => {
                        w.as_ref().map_or(Ok(Vec::new()), |c| dwarf_frames(c, svma))
                    }
                    (Some(p), None) => {
                        if current.as_ref().is_none_or(|c| c.0 != p) {
                            // The previous unit's context is dropped first: one at a time.
                            drop(current.take());
                            current = Some((p, p, context(p)));
                        }
                        let mut r = current
                            .as_ref()
                            .and_then(|c| c.2.as_ref())
                            .map_or(Ok(Vec::new()), |c| dwarf_frames(c, svma));
                        // A unit that refers into others (ThinLTO's imported functions keep
                        // their abstract origin in the unit they came from): the unit with the
                        // units it refers to, then with theirs.
                        while r.is_err() {
                            let Some(c) = current.as_mut() else { break };
                            let next = match c.1 {
                                Part::Unit(u) => Part::WithRefs(u, 1),
                                Part::WithRefs(u, 1) => Part::WithRefs(u, 2),
                                _ => break,
                            };
                            c.2 = None;
                            c.1 = next;
                            c.2 = context(next);
                            r = c.2.as_ref().map_or(Err(()), |c| dwarf_frames(c, svma));
                        }
                        r
                    }
                };
                if dwarf.is_err() && whole.is_none() && matches!(p, Some(Part::Unit(_))) {
                    // References too far-reaching: the whole section, once.
                    drop(current.take());
                    let w = whole.insert(context(Part::Whole));
                    dwarf = w.as_ref().map_or(Ok(Vec::new()), |c| dwarf_frames(c, svma));
                }
                let read = match (&dwarf, &whole, &current) {
                    (Err(()), _, _) => false,
                    (Ok(_), Some(w), _) => w.is_some(),
                    (Ok(_), None, Some(c)) => c.2.is_some(),
                    (Ok(_), None, None) => true,
                };
                unreadable = unreadable.saturating_add(usize::from(p.is_some() && !read));
                let frames = obj.frames(svma, dwarf.unwrap_or_default());
                let m = &mut out.mappings[mi];
                m.has_functions |= !frames.is_empty();
                m.has_filenames |= frames.iter().any(|f| !f.file.is_empty());
                m.has_line_numbers |= frames.iter().any(|f| f.line != 0);
                out.addrs.insert(
                    addr,
                    Resolved {
                        mapping: Some(mi),
                        frames,
                    },
                );
            }
            if unreadable > 0 {
                let note = damaged_dwarf_note(&loaded[i].name, unreadable, list.len());
                damaged_warn_once(&note);
                out.comments.push(note);
            }
        }
        // Every mapping says its functions are resolved: what this process could name is named.
        // A mapping without it makes `go tool pprof URL` post the rest to `/debug/pprof/symbol`,
        // which rdebug does not serve; `-symbolize=local,force` re-symbolizes from the files
        // (found by path or build ID) where the machine has better symbols.
        for m in &mut out.mappings {
            m.has_functions = true;
        }
        // Build IDs for every mapping (pprof finds files offline by them).
        let mut ids: HashMap<String, String> = HashMap::new();
        for (m, module) in out.mappings.iter_mut().zip(order.iter().map(|o| o.1)) {
            if let Some(id) = ids.get(&m.file) {
                m.build_id = id.clone();
                continue;
            }
            let id = module
                .and_then(|i| {
                    self.objects
                        .get(i)
                        .and_then(|o| o.as_ref())
                        .and_then(|o| o.as_ref())
                        .map(|o| o.build_id.clone())
                })
                .or_else(|| {
                    let path =
                        module.map_or_else(|| PathBuf::from(&m.file), |i| loaded[i].path.clone());
                    modules::map(&path).and_then(|d| build_id(&d))
                })
                .unwrap_or_default();
            ids.insert(m.file.clone(), id.clone());
            m.build_id = id;
        }
        let this_call = std::mem::take(&mut out.comments);
        out.comments = self.comments.clone();
        out.comments.extend(this_call);
        out
    }
}

/// The executable file mappings of `/proc/self/maps` (and the vDSO), in address order.
fn exec_mappings() -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        // start-end perms offset dev inode path (the path may hold spaces)
        let mut rest = line;
        let mut field = || {
            rest = rest.trim_start();
            let end = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let (f, r) = rest.split_at(end);
            rest = r;
            f
        };
        let (range, perms, offset, _dev, _inode) = (field(), field(), field(), field(), field());
        let path = rest.trim();
        if !perms.contains('x') || path.is_empty() || (path.starts_with('[') && path != "[vdso]") {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(limit), Ok(offset)) = (
            u64::from_str_radix(s, 16),
            u64::from_str_radix(e, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        out.push(Mapping {
            start,
            limit,
            offset,
            file: path.trim_end_matches(" (deleted)").to_owned(),
            ..Mapping::default()
        });
    }
    out
}

/// The GNU build ID of an ELF image, hex.
fn build_id(data: &[u8]) -> Option<String> {
    let file = object::File::parse(data).ok()?;
    let id = file.build_id().ok()??;
    let mut s = String::with_capacity(id.len() * 2);
    for b in id {
        let _ = write!(s, "{b:02x}");
    }
    Some(s)
}

#[derive(Debug, Clone, Copy)]
struct Sym {
    start: u64,
    end: u64,
    name: &'static [u8],
}

/// One object's symbols and line tables, addressed in the object's own (file) addresses.
struct ObjectInfo {
    syms: Vec<Sym>,
    dwarf: Option<Dwarf>,
    build_id: String,
}

impl ObjectInfo {
    /// Reads `module`'s symbol table and DWARF (or its separate debug file's). Notes what is
    /// missing in `comments`.
    fn open(module: &Module, is_main: bool, comments: &mut Vec<String>) -> Option<ObjectInfo> {
        let path = module.name.as_path();
        let Some(data) = modules::map(&module.path) else {
            comments.push(format!(
                "rdebug: cannot read {}: its functions are unnamed",
                path.display()
            ));
            return None;
        };
        let Ok(file) = object::File::parse(data.0) else {
            comments.push(format!(
                "rdebug: {} is not a readable ELF file: its functions are unnamed",
                path.display()
            ));
            return None;
        };
        let build_id = build_id(&data).unwrap_or_default();
        let mut syms = symbols(&file);
        let mut dwarf = Dwarf::open(data.0);
        if dwarf.is_none() || syms.is_empty() {
            if let Some(debug) = separate_debug_file(&build_id) {
                if let Ok(dfile) = object::File::parse(debug.0) {
                    if syms.is_empty() {
                        syms = symbols(&dfile);
                    }
                    if dwarf.is_none() {
                        dwarf = Dwarf::open(debug.0);
                    }
                } else {
                    comments.push(format!(
                        "rdebug: the debug file for {} (build ID {build_id}) is not a readable ELF file; ignored",
                        path.display()
                    ));
                }
            }
        }
        if is_main && path.to_string_lossy().ends_with(" (deleted)") {
            comments.push(format!(
                "rdebug: the executable {} was deleted or replaced after it started; symbols were read from the running image (/proc/self/exe)",
                path.display()
            ));
        }
        if is_main && dwarf.is_none() {
            let note = no_line_tables_note(path);
            warn_once(&note);
            comments.push(note);
        }
        Some(ObjectInfo {
            syms,
            dwarf,
            build_id,
        })
    }

    /// The frames at file address `svma`, innermost first.
    fn frames(&self, svma: u64, dwarf: Vec<Frame>) -> Vec<Frame> {
        let sym = self.symbol(svma);
        let mut frames = dwarf;
        // The outermost frame is the symbol itself: the symbol table names it when DWARF has
        // no name (or no frames at all).
        if let Some(raw) = sym {
            match frames.last_mut() {
                Some(last) if last.system_name.is_empty() || !is_mangled(&last.system_name) => {
                    if last.system_name.is_empty() || names::clean(raw) != last.name {
                        last.name = names::clean(raw);
                        last.system_name = raw.to_owned();
                    }
                }
                Some(_) => {}
                None => frames.push(Frame {
                    name: names::clean(raw),
                    system_name: raw.to_owned(),
                    file: String::new(),
                    line: 0,
                }),
            }
        }
        // Inlined frames DWARF left unnamed keep their place with the file's name.
        for f in &mut frames {
            if f.name.is_empty() {
                f.name = if f.file.is_empty() {
                    "?".to_owned()
                } else {
                    format!("({})", f.file)
                };
            }
        }
        frames
    }

    fn symbol(&self, svma: u64) -> Option<&'static str> {
        let i = self.syms.partition_point(|s| s.start <= svma);
        let s = self.syms.get(i.checked_sub(1)?)?;
        if svma >= s.end {
            return None;
        }
        std::str::from_utf8(s.name).ok()
    }
}

/// The frames DWARF gives for file address `svma` in `ctx`, innermost first; `Err` when
/// `addr2line` failed part way (a reference out of the unit it was given, a damaged section).
fn dwarf_frames(ctx: &UnitContext, svma: u64) -> Result<Vec<Frame>, ()> {
    let mut frames = Vec::new();
    let mut it = ctx.find_frames(svma).skip_all_loads().map_err(|_| ())?;
    while let Some(f) = it.next().map_err(|_| ())? {
        let raw = f
            .function
            .as_ref()
            .and_then(|n| n.raw_name().ok())
            .map(|n| n.into_owned());
        let (file, line) = f.location.as_ref().map_or((String::new(), 0), |l| {
            (l.file.unwrap_or("").to_owned(), l.line.unwrap_or(0))
        });
        let raw = raw.unwrap_or_default();
        frames.push(Frame {
            name: names::clean(&raw),
            system_name: raw,
            file,
            line,
        });
        if frames.len() >= MAX_INLINED {
            break;
        }
    }
    Ok(frames)
}

/// Most inlined frames kept for one address.
const MAX_INLINED: usize = 64;

fn is_mangled(s: &str) -> bool {
    s.starts_with("_ZN") || s.starts_with("_R")
}

/// Address-sorted function symbols of one object (file addresses).
fn symbols(file: &object::File<'static>) -> Vec<Sym> {
    let add = |syms: &mut Vec<Sym>, s: object::Symbol<'static, '_>| {
        if s.kind() != SymbolKind::Text || s.size() == 0 || s.address() == 0 {
            return;
        }
        if let Ok(name) = s.name_bytes() {
            syms.push(Sym {
                start: s.address(),
                end: s.address().saturating_add(s.size()),
                name,
            });
        }
    };
    let mut syms = Vec::new();
    for s in file.symbols() {
        add(&mut syms, s);
    }
    if syms.is_empty() {
        for s in file.dynamic_symbols() {
            add(&mut syms, s);
        }
    }
    syms.sort_unstable_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    syms.dedup_by_key(|s| s.start);
    syms.shrink_to_fit();
    syms
}

/// `/usr/lib/debug/.build-id/xx/yyyy.debug`, mapped, when the system has it.
fn separate_debug_file(build_id: &str) -> Option<Mapped> {
    if build_id.len() < 3 {
        return None;
    }
    let (dir, rest) = build_id.split_at(2);
    let path = Path::new("/usr/lib/debug/.build-id")
        .join(dir)
        .join(format!("{rest}.debug"));
    if !path.exists() {
        return None;
    }
    modules::map(&path)
}

/// The note for an executable without line tables: which binary, and the `Cargo.toml` line.
pub(crate) fn no_line_tables_note(path: &Path) -> String {
    format!(
        "rdebug: {} has no DWARF line tables, so profiles show functions from its symbol table only (no inlined functions, no file:line); add `debug = \"line-tables-only\"` under `[profile.release]` in Cargo.toml",
        path.display()
    )
}

/// The note for an object whose DWARF could not be read for some addresses.
fn damaged_dwarf_note(path: &Path, unreadable: usize, of: usize) -> String {
    format!(
        "rdebug: the DWARF of {} could not be read for {unreadable} of the profile's {of} addresses in it (damaged or of a form rdebug does not read): those show the function from the symbol table, without inlined functions or file:line",
        path.display()
    )
}

/// Prints a damaged-DWARF `note` on stderr the first time only.
fn damaged_warn_once(note: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::sys::stderr::note("warning", note.trim_start_matches("rdebug: "));
    }
}

/// Prints `note` on stderr the first time only.
fn warn_once(note: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::sys::stderr::note("warning", note.trim_start_matches("rdebug: "));
    }
}

/// The address range of a mapping, for tests.
#[cfg(test)]
fn range(m: &Mapping) -> std::ops::Range<u64> {
    m.start..m.limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_name() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn an_address_of_this_binary_gets_its_function_file_and_line() {
        let f = a_function_with_a_name as *const () as usize as u64;
        let malloc = libc::malloc as *const () as usize as u64;
        let s = symbolize([f + 1, malloc]);
        let r = &s.addrs[&(f + 1)];
        let frames = &r.frames;
        let last = frames.last().expect("a frame");
        assert!(last.name.ends_with("a_function_with_a_name"), "{frames:?}");
        assert_ne!(last.name, last.system_name);
        // Test binaries carry full debug info.
        assert!(last.file.ends_with("symbolize.rs"), "{frames:?}");
        assert!(last.line > 0);
        let main = &s.mappings[r.mapping.expect("mapped")];
        assert!(range(main).contains(&f));
        assert_eq!(r.mapping, Some(0), "the executable's mapping comes first");
        assert!(main.has_functions && main.has_line_numbers);
        assert_eq!(main.build_id.len() % 2, 0);
        let m = s.addrs[&malloc].mapping.expect("malloc is mapped");
        assert!(range(&s.mappings[m]).contains(&malloc));
    }
}
