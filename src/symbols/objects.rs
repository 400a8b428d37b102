//! The loaded objects a profile's addresses lie in: their symbol tables and DWARF, read from
//! files matched to what is loaded ([`Module::file`]), and the notes said about what they lack.

use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};

use super::demangle as names;
use super::dwarf::{Dwarf, UnitContext};
use super::resolved::Frame;
use crate::sys::loaded::{self, Mapped, Module};

/// The GNU build ID of an ELF image, hex.
pub(super) fn build_id(data: &[u8]) -> Option<String> {
    loaded::file_build_id(data).map(|id| loaded::hex(&id))
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Sym {
    start: u64,
    end: u64,
    name: &'static [u8],
}

/// One object's symbols and line tables, addressed in the object's own (file) addresses.
pub(super) struct ObjectInfo {
    pub(super) syms: Vec<Sym>,
    pub(super) dwarf: Option<Dwarf>,
}

impl ObjectInfo {
    /// Reads `module`'s symbol table and DWARF (or its separate debug file's). Notes what is
    /// missing in `comments`.
    pub(super) fn open(
        module: &Module,
        is_main: bool,
        comments: &mut Vec<String>,
    ) -> Option<ObjectInfo> {
        let path = module.name.as_path();
        let data = match module.file() {
            Ok(data) => data,
            Err(why) => {
                comments.push(why.note(module));
                return None;
            }
        };
        let Ok(file) = object::File::parse(data.0) else {
            comments.push(format!(
                "rdebug: {} is not a readable ELF file: its functions are unnamed",
                path.display()
            ));
            return None;
        };
        let build_id = match module.build_id_hex() {
            id if id.is_empty() => build_id(&data).unwrap_or_default(),
            id => id,
        };
        let mut syms = symbols(&file);
        let mut dwarf = Dwarf::open(data.0);
        if dwarf.is_none() || syms.is_empty() {
            if let Some(debug) = separate_debug_file(&build_id) {
                // Named by build ID, and read only if it carries that build ID.
                let same = self::build_id(debug.0).is_some_and(|id| id == build_id);
                if let (true, Ok(dfile)) = (same, object::File::parse(debug.0)) {
                    if syms.is_empty() {
                        syms = symbols(&dfile);
                    }
                    if dwarf.is_none() {
                        dwarf = Dwarf::open(debug.0);
                    }
                } else {
                    comments.push(format!(
                        "rdebug: the debug file for {} (build ID {build_id}) is not a readable ELF file of that build ID; ignored",
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
        Some(ObjectInfo { syms, dwarf })
    }

    /// The frames at file address `svma`, innermost first.
    pub(super) fn frames(&self, svma: u64, dwarf: Vec<Frame>) -> Vec<Frame> {
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

    pub(super) fn symbol(&self, svma: u64) -> Option<&'static str> {
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
pub(super) fn dwarf_frames(ctx: &UnitContext, svma: u64) -> Result<Vec<Frame>, ()> {
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
pub(super) const MAX_INLINED: usize = 64;

pub(super) fn is_mangled(s: &str) -> bool {
    s.starts_with("_ZN") || s.starts_with("_R")
}

/// Address-sorted function symbols of one object (file addresses).
pub(super) fn symbols(file: &object::File<'static>) -> Vec<Sym> {
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
pub(super) fn separate_debug_file(build_id: &str) -> Option<Mapped> {
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
    loaded::map(&path)
}

/// The note for an executable without line tables: which binary, and the `Cargo.toml` line.
pub(crate) fn no_line_tables_note(path: &Path) -> String {
    format!(
        "rdebug: {} has no DWARF line tables, so profiles show functions from its symbol table only (no inlined functions, no file:line); add `debug = \"line-tables-only\"` under `[profile.release]` in Cargo.toml",
        path.display()
    )
}

/// The note for an object whose DWARF could not be read for some addresses.
pub(super) fn damaged_dwarf_note(path: &Path, unreadable: usize, of: usize) -> String {
    format!(
        "rdebug: the DWARF of {} could not be read for {unreadable} of the profile's {of} addresses in it (damaged or of a form rdebug does not read): those show the function from the symbol table, without inlined functions or file:line",
        path.display()
    )
}

/// The note for an object with units nested too deep to read (crafted or damaged debug info).
pub(super) fn too_deep_note(path: &Path, deep: usize, of: usize) -> String {
    format!(
        "rdebug: the DWARF of {} nests inlined functions deeper than rdebug reads ({} levels) for {deep} of the profile's {of} addresses in it (crafted or damaged): those show the function from the symbol table, without inlined functions or file:line",
        path.display(),
        super::dwarf::MAX_INLINE_NESTING
    )
}

/// Prints a damaged-DWARF `note` on stderr the first time only.
pub(super) fn damaged_warn_once(note: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::sys::stderr::note("warning", note.trim_start_matches("rdebug: "));
    }
}

/// Prints `note` on stderr the first time only.
pub(super) fn warn_once(note: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::sys::stderr::note("warning", note.trim_start_matches("rdebug: "));
    }
}
