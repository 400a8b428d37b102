//! Function names for code addresses, read in this process from the loaded objects' ELF symbol
//! tables (`.symtab`, else `.dynsym`), Rust names demangled.
//!
//! No DWARF: names only, no file or line (full DWARF symbolization is what costs hundreds of MB).
//! A table is built per profile and dropped with it: ~24 bytes per function symbol, the names
//! borrowed from the mapped files.

use object::{Object, ObjectSymbol, SymbolKind};

use super::modules::{self, Module};

#[derive(Debug, Clone, Copy)]
struct Sym {
    start: u64,
    end: u64,
    name: &'static [u8],
}

/// Address-sorted function symbols of every loaded object.
#[derive(Debug)]
pub(crate) struct Symbols {
    syms: Vec<Sym>,
    main: Option<Module>,
}

impl Symbols {
    /// Reads the symbol tables of the objects loaded now.
    pub(crate) fn load() -> Symbols {
        let loaded = modules::loaded();
        let mut syms = Vec::new();
        for m in &loaded {
            let Some(data) = modules::map(&m.path) else {
                continue;
            };
            let data: &'static [u8] = data.0;
            let Ok(file) = object::File::parse(data) else {
                continue;
            };
            let before = syms.len();
            let add = |syms: &mut Vec<Sym>, s: object::Symbol<'static, '_>| {
                if s.kind() != SymbolKind::Text || s.size() == 0 || s.address() == 0 {
                    return;
                }
                if let Ok(name) = s.name_bytes() {
                    let start = s.address().wrapping_add(m.base);
                    syms.push(Sym {
                        start,
                        end: start.saturating_add(s.size()),
                        name,
                    });
                }
            };
            for s in file.symbols() {
                add(&mut syms, s);
            }
            if syms.len() == before {
                for s in file.dynamic_symbols() {
                    add(&mut syms, s);
                }
            }
        }
        syms.sort_unstable_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
        syms.dedup_by_key(|s| s.start);
        syms.shrink_to_fit();
        Symbols {
            syms,
            main: loaded.into_iter().find(|m| m.is_main),
        }
    }

    /// The demangled name of the function containing `addr`, or `None`.
    pub(crate) fn name(&self, addr: u64) -> Option<String> {
        let i = self.syms.partition_point(|s| s.start <= addr);
        let s = self.syms.get(i.checked_sub(1)?)?;
        if addr >= s.end {
            return None;
        }
        let raw = std::str::from_utf8(s.name).ok()?;
        Some(format!("{:#}", rustc_demangle::demangle(raw)))
    }

    /// A name for `addr` even without a symbol: `0x<addr>`.
    pub(crate) fn name_or_addr(&self, addr: u64) -> String {
        self.name(addr).unwrap_or_else(|| format!("{addr:#x}"))
    }

    /// The main executable's address range and path, for the profile's one mapping.
    pub(crate) fn main_mapping(&self) -> (u64, u64, String) {
        match &self.main {
            Some(m) => (
                m.range.start,
                m.range.end,
                m.path.to_string_lossy().into_owned(),
            ),
            None => (0, 0, String::new()),
        }
    }

    /// Number of function symbols read.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.syms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_name() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn a_function_of_this_binary_is_named() {
        let s = Symbols::load();
        assert!(s.len() > 100, "{}", s.len());
        let f = a_function_with_a_name as *const () as usize as u64;
        let name = s.name(f + 1).expect("named");
        assert!(name.ends_with("a_function_with_a_name"), "{name}");
        let malloc = libc::malloc as *const () as usize as u64;
        assert!(s.name(malloc).is_some());
    }
}
