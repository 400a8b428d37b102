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
//! * **Which files**: the loaded objects come from [`crate::sys::loaded`], found once with
//!   their mappings and the build IDs their images carry in memory; an object's file is read
//!   only once matched to what is loaded (same build ID, or same device and inode), else its
//!   addresses stay unnamed and a comment says why. What was read is kept while the loader's
//!   generation is unchanged ([`Symbolizer::is_current`]).
//! * **Bounds** ([`bounded`]): DWARF is read for at most 10 s and 256 MiB of heap per
//!   symbolization, units nested too deep for `addr2line`'s recursion are not read, and the
//!   work runs on a thread with a 16 MiB stack; a bound hit leaves symbol-table names and a
//!   comment.
//! * **Mappings**: every executable file mapping of `/proc/self/maps` becomes a pprof Mapping
//!   with start, limit, file offset, file name and the loaded image's GNU build ID, the main
//!   executable first;
//!   `has_filenames` and `has_line_numbers` true to what was found, `has_functions` on every
//!   one (else `go tool pprof URL` posts the unnamed addresses to `/debug/pprof/symbol`, which
//!   rdebug does not serve), so `go tool pprof -symbolize=local,force` (with
//!   `PPROF_BINARY_PATH`) can redo what this process could not name.
//!
//! Nothing here runs in a signal handler.

mod bounded;
mod demangle;
mod dwarf;
pub(crate) mod frame_lines;
pub(crate) mod name_cache;
mod objects;
mod resolved;

use crate::sys::loaded::{self, Loaded};
use bounded::{Budget, Contexts};
use dwarf::Refused;
use objects::*;
use resolved::Resolved;
pub(crate) use resolved::{Frame, Mapping, Symbolized};

/// The main executable's mapping alone, marked `has_functions` (for profiles whose frames are
/// all named pseudo-frames, so pprof knows the binary and asks for no symbols).
pub(crate) fn main_mapping() -> Option<Mapping> {
    let mut m = symbolize(std::iter::empty()).mappings.into_iter().next()?;
    m.has_functions = true;
    Some(m)
}

/// Symbolizes `addrs` (code addresses for lookup: a pc, or a return address − 1), reading
/// what it needs and dropping it after (for a whole profile).
///
/// Runs on a thread of its own with a stack sized for the deepest DWARF it reads
/// ([`bounded::on_own_stack`]), within the time and memory bounds of [`bounded`].
pub(crate) fn symbolize(addrs: impl IntoIterator<Item = u64>) -> Symbolized {
    let addrs: Vec<u64> = addrs.into_iter().collect();
    bounded::on_own_stack(move || Symbolizer::new().symbolize(addrs)).unwrap_or_default()
}

/// Symbolizes `addrs` with a process-wide [`Symbolizer`] kept between calls (made anew when
/// the loaded objects change): for the few addresses of a STALL line, many times.
/// On a thread of its own, as [`symbolize`].
pub(crate) fn symbolize_cached(addrs: impl IntoIterator<Item = u64>) -> Symbolized {
    static CACHE: std::sync::Mutex<Option<Symbolizer>> = std::sync::Mutex::new(None);
    let addrs: Vec<u64> = addrs.into_iter().collect();
    bounded::on_own_stack(move || {
        let mut cache = crate::sync::lock(&CACHE);
        if !cache.as_ref().is_some_and(Symbolizer::is_current) {
            *cache = Some(Symbolizer::new());
        }
        match cache.as_mut() {
            Some(s) => s.symbolize(addrs),
            None => Symbolizer::new().symbolize(addrs),
        }
    })
    .unwrap_or_default()
}

/// A symbolizer that keeps each object's symbol table and DWARF unit index between calls (what
/// a STALL line's few addresses need, without reading the tables again each time); the DWARF
/// units themselves are still read per call and dropped. About 24 bytes per function symbol and
/// per `.debug_aranges` range of the objects used.
pub(crate) struct Symbolizer {
    /// The objects it was made for, and the loader generation they belong to.
    loaded: Loaded,
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
        let loaded = loaded::loaded();
        let mut objects = Vec::new();
        objects.resize_with(loaded.len(), || None);
        Symbolizer {
            loaded,
            objects,
            comments: Vec::new(),
        }
    }

    /// Whether the objects loaded now are those it was made for: the loader's generation is
    /// the same (the one staleness rule of [`crate::sys::loaded`]).
    pub(crate) fn is_current(&self) -> bool {
        loaded::generation() == self.loaded.generation
    }

    /// Symbolizes `addrs` (code addresses for lookup: a pc, or a return address − 1).
    pub(crate) fn symbolize(&mut self, addrs: impl IntoIterator<Item = u64>) -> Symbolized {
        self.symbolize_within(addrs, &mut Budget::new())
    }

    /// [`symbolize`](Self::symbolize) within `budget`'s bounds.
    pub(crate) fn symbolize_within(
        &mut self,
        addrs: impl IntoIterator<Item = u64>,
        budget: &mut Budget,
    ) -> Symbolized {
        let mut addrs: Vec<u64> = addrs.into_iter().collect();
        addrs.sort_unstable();
        addrs.dedup();
        let loaded = &self.loaded.modules;
        let mut out = Symbolized::default();
        // Mappings, main executable's first; each tied to its loaded module.
        let mut order: Vec<(Mapping, Option<usize>)> = self
            .loaded
            .exec_maps
            .iter()
            .map(|(e, module)| {
                let m = Mapping {
                    start: e.start,
                    limit: e.limit,
                    offset: e.offset,
                    file: e.path.clone(),
                    ..Mapping::default()
                };
                (m, *module)
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
            let mut contexts = Contexts::default();
            // Addresses whose unit `.debug_aranges` names but whose DWARF could not be read,
            // and those in units nested too deep to read.
            let (mut unreadable, mut too_deep) = (0usize, 0usize);
            for &(addr, mi) in list.iter() {
                let svma = addr.wrapping_sub(base);
                let dwarf = match (part(addr), obj.dwarf.as_ref()) {
                    (Some(p), Some(d)) if budget.allows() => contexts.frames(d, p, svma),
                    (Some(_), Some(_)) => {
                        // A bound was hit: what is held goes, the rest is named from symbols.
                        contexts = Contexts::default();
                        budget.skipped = budget.skipped.saturating_add(1);
                        Ok(Vec::new())
                    }
                    _ => Ok(Vec::new()),
                };
                match dwarf {
                    Err(Refused::Unreadable) => unreadable = unreadable.saturating_add(1),
                    Err(Refused::TooDeep) => too_deep = too_deep.saturating_add(1),
                    Ok(_) => {}
                }
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
            drop(contexts);
            if unreadable > 0 {
                let note = damaged_dwarf_note(&loaded[i].name, unreadable, list.len());
                damaged_warn_once(&note);
                out.comments.push(note);
            }
            if too_deep > 0 {
                let note = too_deep_note(&loaded[i].name, too_deep, list.len());
                damaged_warn_once(&note);
                out.comments.push(note);
            }
        }
        out.comments.extend(budget.note());
        // Every mapping says its functions are resolved: what this process could name is named.
        // A mapping without it makes `go tool pprof URL` post the rest to `/debug/pprof/symbol`,
        // which rdebug does not serve; `-symbolize=local,force` re-symbolizes from the files
        // (found by path or build ID) where the machine has better symbols.
        for m in &mut out.mappings {
            m.has_functions = true;
        }
        // Build IDs for every mapping (pprof finds files offline by them): the one the loaded
        // image carries in memory, which names what runs even when the file was replaced.
        for (m, module) in out.mappings.iter_mut().zip(order.iter().map(|o| o.1)) {
            m.build_id = module
                .and_then(|i| loaded.get(i))
                .map(|l| l.build_id_hex())
                .unwrap_or_default();
        }
        let this_call = std::mem::take(&mut out.comments);
        out.comments = self.comments.clone();
        out.comments.extend(this_call);
        out
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
        assert!(last.file.ends_with("symbols/mod.rs"), "{frames:?}");
        assert!(last.line > 0);
        let main = &s.mappings[r.mapping.expect("mapped")];
        assert!(range(main).contains(&f));
        assert_eq!(r.mapping, Some(0), "the executable's mapping comes first");
        assert!(main.has_functions && main.has_line_numbers);
        assert_eq!(main.build_id.len() % 2, 0);
        let m = s.addrs[&malloc].mapping.expect("malloc is mapped");
        assert!(range(&s.mappings[m]).contains(&malloc));
    }

    /// With no time left, or no heap, DWARF is not read: the address keeps its symbol table's
    /// name (no file, no line) and one comment says which bound was hit and for how many
    /// addresses; with the default bounds the same address has its file and line. (The heap is
    /// measured by `rdebug::Alloc`'s counters: that case runs only where it is the global
    /// allocator, which it is not in this library's own test binary.)
    #[test]
    fn a_bound_hit_leaves_the_symbol_name_and_says_so() {
        let f = a_function_with_a_name as *const () as usize as u64 + 1;
        let full = Symbolizer::new().symbolize_within([f], &mut Budget::new());
        assert!(full.frames(f).last().is_some_and(|l| l.line > 0));
        assert!(!full.comments.iter().any(|c| c.contains("bound")));
        let mut none = Budget::with(std::time::Duration::ZERO, u64::MAX);
        check(
            &Symbolizer::new().symbolize_within([f], &mut none),
            f,
            "time",
        );
        if crate::alloc::is_installed() {
            let mut none = Budget::with(std::time::Duration::from_secs(60), 0);
            let held = std::hint::black_box(vec![1u8; 4096]);
            check(
                &Symbolizer::new().symbolize_within([f], &mut none),
                f,
                "memory",
            );
            drop(held);
        }
        fn check(s: &Symbolized, f: u64, hit: &str) {
            let last = s.frames(f).last().expect("the symbol table's frame");
            assert!(last.name.ends_with("a_function_with_a_name"), "{last:?}");
            assert_eq!((last.file.as_str(), last.line), ("", 0), "{hit}");
            let note = format!("hit its {hit} bound");
            let c: Vec<_> = s.comments.iter().filter(|c| c.contains(&note)).collect();
            assert_eq!(c.len(), 1, "{:?}", s.comments);
            assert!(c[0].contains(": 1 addresses"), "{c:?}");
        }
    }
}
