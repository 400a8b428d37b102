//! One object's DWARF, read a compilation unit at a time.
//!
//! `addr2line` builds its index over every unit of the sections it is given, which for a large
//! service (thousands of units) means reading most of `.debug_info` and parsing every unit's
//! abbreviations: tens of MB for one profile. rdebug instead finds each address's unit in
//! `.debug_aranges` and hands `addr2line` a `.debug_info` holding that unit alone, so only the
//! units a profile touches are read, one at a time, and each is dropped once its addresses are
//! resolved. Line programs, strings and ranges are addressed by absolute offsets and are given
//! whole; an object without `.debug_aranges` is read in one piece.
//!
//! A unit that refers into another (`DW_FORM_ref_addr`: ThinLTO keeps an imported function's
//! abstract origin in the unit it came from) makes `addr2line` fail on it alone. Such a unit is
//! read with the units it refers to ([`Part::WithRefs`]): a `.debug_info` the size of the real
//! one, in pages mapped on demand, holding those units at their own offsets and, in every gap,
//! one empty type unit that `addr2line` skips. References stay valid, and only those units' bytes
//! and abbreviations are read. A second level of references is tried next, the whole section
//! last.

use object::{Object, ObjectSection};

/// The reader: section bytes borrowed from a file mapped for the rest of the process.
pub(crate) type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// A context over part of an object's DWARF, as `addr2line` gives frames for it (dereferences
/// to `addr2line::Context`).
pub(crate) struct UnitContext {
    /// Dropped before `_sparse`, whose bytes it borrows.
    ctx: std::mem::ManuallyDrop<addr2line::Context<Reader>>,
    _sparse: Option<Sparse>,
}

impl std::ops::Deref for UnitContext {
    type Target = addr2line::Context<Reader>;
    fn deref(&self) -> &Self::Target {
        &self.ctx
    }
}

impl Drop for UnitContext {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, before the bytes it borrows (`_sparse`, dropped after).
        unsafe { std::mem::ManuallyDrop::drop(&mut self.ctx) };
    }
}

/// Which part of `.debug_info` a context covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Part {
    /// The unit at this offset.
    Unit(usize),
    /// The unit at this offset with the units it refers to, `depth` levels of references deep.
    WithRefs(usize, u8),
    /// The whole section (no `.debug_aranges`, or a unit whose references reach too far).
    Whole,
}

/// Most units a [`Part::WithRefs`] context holds; more and the whole section is read instead.
const MAX_UNITS_WITH_REFS: usize = 64;

/// Most `DW_TAG_inlined_subroutine` entries nested in one another that a unit may hold to be
/// given to `addr2line`, which parses each level with one more call (its stack). Real code
/// stays far below: 31 levels at most in rdebug's own library test binary (617 units, tokio
/// and hyper inlined; the test `real_units_nest_far_below_the_limit`). A deeper unit is crafted
/// or damaged: its addresses get the symbol table's name alone, and the profile says why.
pub(crate) const MAX_INLINE_NESTING: usize = 256;

/// Most nested entries of any kind (children of children) a unit may hold, for the same reason.
const MAX_ENTRY_DEPTH: usize = 4096;

/// Why a part of `.debug_info` was not given to `addr2line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A unit nests its entries deeper than rdebug reads (see [`MAX_INLINE_NESTING`]).
    TooDeep,
    /// A unit, or what it refers to, could not be read.
    Unreadable,
}

/// An object's DWARF sections and its address → unit index.
pub(crate) struct Dwarf {
    file: object::File<'static>,
    endian: gimli::RunTimeEndian,
    info: &'static [u8],
    /// `(start, end, unit offset)` from `.debug_aranges`, sorted by start.
    aranges: Vec<(u64, u64, usize)>,
    /// The unit offsets `.debug_aranges` names, sorted (where to start looking for a unit).
    unit_starts: Vec<usize>,
}

impl std::fmt::Debug for Dwarf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dwarf")
            .field("aranges", &self.aranges.len())
            .finish_non_exhaustive()
    }
}

impl Dwarf {
    /// The DWARF of the ELF image `data`, if it has line tables in uncompressed sections.
    pub(crate) fn open(data: &'static [u8]) -> Option<Dwarf> {
        let file = object::File::parse(data).ok()?;
        let line = file.section_by_name(".debug_line")?;
        if line.size() == 0 || is_compressed(&line) {
            return None;
        }
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let info = section(&file, ".debug_info");
        if info.is_empty() {
            return None;
        }
        let mut aranges = Vec::new();
        let raw = gimli::DebugAranges::new(section(&file, ".debug_aranges"), endian);
        let mut headers = raw.headers();
        while let Ok(Some(h)) = headers.next() {
            let unit = h.debug_info_offset().0;
            let mut entries = h.entries();
            while let Ok(Some(e)) = entries.next() {
                let r = e.range();
                // Code the linker dropped keeps its ranges, at address 0.
                if r.begin != 0 && r.begin < r.end {
                    aranges.push((r.begin, r.end, unit));
                }
            }
        }
        aranges.sort_unstable();
        aranges.shrink_to_fit();
        let mut unit_starts: Vec<usize> = aranges.iter().map(|a| a.2).collect();
        unit_starts.sort_unstable();
        unit_starts.dedup();
        unit_starts.shrink_to_fit();
        Some(Dwarf {
            file,
            endian,
            info,
            aranges,
            unit_starts,
        })
    }

    /// The part of `.debug_info` that describes file address `svma` (`None`: no unit does).
    pub(crate) fn part_of(&self, svma: u64) -> Option<Part> {
        if self.aranges.is_empty() {
            return Some(Part::Whole);
        }
        let i = self.aranges.partition_point(|a| a.0 <= svma);
        let (_, end, unit) = *self.aranges.get(i.checked_sub(1)?)?;
        (svma < end).then_some(Part::Unit(unit))
    }

    /// A context over `part` alone; refused (`Err`) for a unit nested deeper than
    /// [`MAX_INLINE_NESTING`] or one that cannot be read.
    pub(crate) fn context(&self, part: Part) -> Result<UnitContext, Refused> {
        self.check_nesting(part)?;
        self.context_unchecked(part).ok_or(Refused::Unreadable)
    }

    /// Whether every unit of `part` nests its entries within the limits: a scan of the units'
    /// entries that keeps one flag per open entry (no recursion).
    fn check_nesting(&self, part: Part) -> Result<(), Refused> {
        let units: Vec<usize> = match part {
            Part::Unit(offset) => vec![offset],
            Part::WithRefs(offset, depth) => self
                .with_refs(offset, depth)
                .ok_or(Refused::Unreadable)?
                .into_iter()
                .map(|(u, _)| u)
                .collect(),
            Part::Whole => {
                let mut all = Vec::new();
                let mut headers = gimli::DebugInfo::new(self.info, self.endian).units();
                while let Ok(Some(h)) = headers.next() {
                    if let Some(o) = h.offset().as_debug_info_offset() {
                        all.push(o.0);
                    }
                }
                all
            }
        };
        units
            .into_iter()
            .try_for_each(|u| self.inline_nesting(u).map(drop))
    }

    /// How deep the unit at `offset` nests inlined subroutines; refused past the limits.
    fn inline_nesting(&self, offset: usize) -> Result<usize, Refused> {
        let all = gimli::DebugInfo::new(self.info, self.endian);
        let header = all
            .header_from_offset(gimli::DebugInfoOffset(offset))
            .map_err(|_| Refused::Unreadable)?;
        let abbrev = gimli::DebugAbbrev::new(section(&self.file, ".debug_abbrev"), self.endian);
        let abbrevs = header
            .abbreviations(&abbrev)
            .map_err(|_| Refused::Unreadable)?;
        let mut raw = header
            .entries_raw(&abbrevs, None)
            .map_err(|_| Refused::Unreadable)?;
        // One flag per open entry: whether it is an inlined subroutine.
        let mut open: Vec<bool> = Vec::new();
        let (mut inlined, mut most) = (0usize, 0usize);
        while !raw.is_empty() {
            match raw.read_abbreviation().map_err(|_| Refused::Unreadable)? {
                // A null entry closes the innermost open one.
                None => {
                    if open.pop() == Some(true) {
                        inlined -= 1;
                    }
                }
                Some(a) => {
                    raw.skip_attributes(a.attributes())
                        .map_err(|_| Refused::Unreadable)?;
                    if a.has_children() {
                        let is_inlined = a.tag() == gimli::DW_TAG_inlined_subroutine;
                        open.push(is_inlined);
                        inlined += usize::from(is_inlined);
                        most = most.max(inlined);
                        if inlined > MAX_INLINE_NESTING || open.len() > MAX_ENTRY_DEPTH {
                            return Err(Refused::TooDeep);
                        }
                    }
                }
            }
        }
        Ok(most)
    }

    /// [`context`](Self::context) without the nesting check.
    fn context_unchecked(&self, part: Part) -> Option<UnitContext> {
        let mut sparse = None;
        let info: &'static [u8] = match part {
            Part::Whole => self.info,
            Part::Unit(offset) => {
                let len = self.unit_len(offset)?;
                self.info.get(offset..offset.checked_add(len)?)?
            }
            Part::WithRefs(offset, depth) => {
                let units = self.with_refs(offset, depth)?;
                let s = self.sparse(&units)?;
                // SAFETY: the bytes live in `s`, which the returned context owns and drops
                // after the `addr2line` context that borrows them (see `UnitContext::drop`).
                let bytes = unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) };
                sparse = Some(s);
                bytes
            }
        };
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data = match id {
                gimli::SectionId::DebugInfo => info,
                // Its offsets name units a part does not hold.
                gimli::SectionId::DebugAranges if part != Part::Whole => &[],
                _ => section(&self.file, id.name()),
            };
            Ok(gimli::EndianSlice::new(data, self.endian))
        };
        let dwarf = gimli::Dwarf::load(load).ok()?;
        let ctx = addr2line::Context::from_dwarf(dwarf).ok()?;
        Some(UnitContext {
            ctx: std::mem::ManuallyDrop::new(ctx),
            _sparse: sparse,
        })
    }

    /// The length of the unit at `offset`, header included.
    fn unit_len(&self, offset: usize) -> Option<usize> {
        let all = gimli::DebugInfo::new(self.info, self.endian);
        let header = all
            .header_from_offset(gimli::DebugInfoOffset(offset))
            .ok()?;
        Some(header.length_including_self())
    }

    /// The start of the unit holding `.debug_info` offset `target`: from the nearest unit
    /// `.debug_aranges` names at or before it, header by header.
    fn unit_holding(&self, target: usize) -> Option<usize> {
        let i = self.unit_starts.partition_point(|&u| u <= target);
        let mut at = i.checked_sub(1).map_or(0, |i| self.unit_starts[i]);
        loop {
            let end = at.checked_add(self.unit_len(at)?)?;
            if target < end {
                return Some(at);
            }
            at = end;
        }
    }

    /// The units `offset`'s unit refers to, `depth` levels deep, with it; sorted. `None` when
    /// a unit cannot be read or they are more than [`MAX_UNITS_WITH_REFS`].
    fn with_refs(&self, offset: usize, depth: u8) -> Option<Vec<(usize, usize)>> {
        let mut units = vec![(offset, self.unit_len(offset)?)];
        let mut scan = vec![offset];
        for _ in 0..depth {
            let mut next = Vec::new();
            for unit in scan {
                for target in self.refs_out_of(unit)? {
                    if units
                        .iter()
                        .any(|&(u, len)| (u..u.saturating_add(len)).contains(&target))
                    {
                        continue;
                    }
                    let u = self.unit_holding(target)?;
                    units.push((u, self.unit_len(u)?));
                    next.push(u);
                    if units.len() > MAX_UNITS_WITH_REFS {
                        return None;
                    }
                }
            }
            scan = next;
        }
        units.sort_unstable();
        Some(units)
    }

    /// The `.debug_info` offsets the unit at `offset` refers to with `DW_FORM_ref_addr`,
    /// outside itself, deduplicated.
    fn refs_out_of(&self, offset: usize) -> Option<Vec<usize>> {
        let all = gimli::DebugInfo::new(self.info, self.endian);
        let header = all
            .header_from_offset(gimli::DebugInfoOffset(offset))
            .ok()?;
        let end = offset.checked_add(header.length_including_self())?;
        let abbrev = gimli::DebugAbbrev::new(section(&self.file, ".debug_abbrev"), self.endian);
        let abbrevs = header.abbreviations(&abbrev).ok()?;
        let mut raw = header.entries_raw(&abbrevs, None).ok()?;
        let mut out = Vec::new();
        while !raw.is_empty() {
            let Some(a) = raw.read_abbreviation().ok()? else {
                continue;
            };
            for spec in a.attributes() {
                let attr = raw.read_attribute(*spec).ok()?;
                if let gimli::AttributeValue::DebugInfoRef(r) = attr.value()
                    && !(offset..end).contains(&r.0)
                {
                    out.push(r.0);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// A `.debug_info` as long as the real one holding `units` (sorted `(offset, length)`) at
    /// their offsets, each gap one empty type unit (a DWARF 5 `DW_UT_type` header), which
    /// `addr2line` skips without reading further. `None` if a gap is too short for the header.
    fn sparse(&self, units: &[(usize, usize)]) -> Option<Sparse> {
        let address_size = self.file.architecture().address_size()?.bytes();
        let s = Sparse::zeroed(self.info.len())?;
        // SAFETY: `s` maps `s.len` writable bytes, not shared.
        let out = unsafe { std::slice::from_raw_parts_mut(s.ptr.cast::<u8>(), s.len) };
        let mut at = 0;
        let fill = |from: usize, to: usize, out: &mut [u8]| -> Option<()> {
            if from == to {
                return Some(());
            }
            // unit_length, version 5, DW_UT_type, address size, abbreviation offset 0, then
            // signature and type offset left zero: 24 bytes.
            let len = u32::try_from(to.checked_sub(from)?.checked_sub(4)?).ok()?;
            if !(20..0xffff_fff0).contains(&len) {
                return None;
            }
            let (l, v) = match self.endian {
                gimli::RunTimeEndian::Little => (len.to_le_bytes(), 5u16.to_le_bytes()),
                gimli::RunTimeEndian::Big => (len.to_be_bytes(), 5u16.to_be_bytes()),
            };
            let w = out.get_mut(from..from + 8)?;
            w[0..4].copy_from_slice(&l);
            w[4..6].copy_from_slice(&v);
            w[6] = gimli::DW_UT_type.0;
            w[7] = address_size;
            Some(())
        };
        for &(u, len) in units {
            fill(at, u, out)?;
            let end = u.checked_add(len)?;
            out.get_mut(u..end)?.copy_from_slice(self.info.get(u..end)?);
            at = end;
        }
        fill(at, self.info.len(), out)?;
        Some(s)
    }
}

/// Zeroed bytes mapped on demand (`mmap`): a page costs memory only once written.
struct Sparse {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: plain memory owned by this value alone.
unsafe impl Send for Sparse {}
// SAFETY: read-only once built.
unsafe impl Sync for Sparse {}

impl Sparse {
    fn zeroed(len: usize) -> Option<Sparse> {
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh private anonymous mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Sparse { ptr, len })
    }
}

impl Drop for Sparse {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `zeroed`, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The bytes of section `name`, empty when missing or compressed.
fn section(file: &object::File<'static>, name: &str) -> &'static [u8] {
    match file.section_by_name(name) {
        Some(s) if !is_compressed(&s) => s.data().unwrap_or(&[]),
        _ => &[],
    }
}

fn is_compressed(s: &object::Section<'static, '_>) -> bool {
    matches!(
        s.compressed_file_range().map(|r| r.format),
        Ok(f) if f != object::CompressionFormat::None
    ) || s.name().is_ok_and(|n| n.starts_with(".zdebug"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ctx` gives for `svma`: each frame's raw name, file and line.
    fn frames(ctx: &UnitContext, svma: u64) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        let mut it = ctx.find_frames(svma).skip_all_loads().expect("frames");
        while let Some(f) = it.next().expect("a frame") {
            let name = f
                .function
                .as_ref()
                .and_then(|n| n.raw_name().ok())
                .map(|n| n.into_owned())
                .unwrap_or_default();
            let (file, line) = f.location.map_or((String::new(), 0), |l| {
                (l.file.unwrap_or("").to_owned(), l.line.unwrap_or(0))
            });
            out.push((name, file, line));
        }
        out
    }

    /// A unit read into the sparse section (its own bytes at its own offset, one empty unit in
    /// each gap) resolves its addresses as the unit read alone does, for a spread of this test
    /// binary's units (which refer to no other unit: no ThinLTO in a test build).
    #[test]
    fn a_unit_in_a_sparse_section_resolves_as_the_unit_alone() {
        let data =
            crate::sys::loaded::map(std::path::Path::new("/proc/self/exe")).expect("this binary");
        let d = Dwarf::open(data.0).expect("test binaries carry DWARF");
        assert!(d.aranges.len() > 20, "{d:?}");
        let step = d.aranges.len() / 20;
        let mut resolved = 0;
        for &(start, end, unit) in d.aranges.iter().step_by(step) {
            let alone = d.context(Part::Unit(unit)).expect("the unit alone");
            let sparse = d
                .context(Part::WithRefs(unit, 1))
                .expect("the sparse section");
            for svma in [start, start + (end - start) / 2] {
                let (a, b) = (frames(&sparse, svma), frames(&alone, svma));
                assert_eq!(a, b, "unit at {unit}, address {svma:#x}");
                resolved += usize::from(!a.is_empty());
            }
        }
        assert!(resolved >= 20, "only {resolved} addresses had frames");
    }

    /// Every unit of this test binary nests its inlined subroutines far below the limit (the
    /// figure behind [`MAX_INLINE_NESTING`]), and its contexts are not refused.
    #[test]
    fn real_units_nest_far_below_the_limit() {
        let data =
            crate::sys::loaded::map(std::path::Path::new("/proc/self/exe")).expect("this binary");
        let d = Dwarf::open(data.0).expect("test binaries carry DWARF");
        let mut units = gimli::DebugInfo::new(d.info, d.endian).units();
        let (mut most, mut n) = (0, 0);
        while let Ok(Some(h)) = units.next() {
            let o = h
                .offset()
                .as_debug_info_offset()
                .expect("a .debug_info unit")
                .0;
            most = most.max(d.inline_nesting(o).expect("a real unit"));
            n += 1;
        }
        eprintln!("{n} units, inlined subroutines nested {most} deep at most");
        assert!(
            n > 10 && most > 0 && most * 4 <= MAX_INLINE_NESTING,
            "{most}"
        );
        assert!(d.context(Part::Whole).is_ok());
    }
}
