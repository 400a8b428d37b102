//! One object's DWARF, read a compilation unit at a time.
//!
//! `addr2line` builds its index over every unit of the sections it is given, which for a large
//! service (thousands of units) means reading most of `.debug_info` and parsing every unit's
//! abbreviations: tens of MB for one profile. rdebug instead finds each address's unit in
//! `.debug_aranges` and hands `addr2line` a `.debug_info` holding that unit alone, so only the
//! units a profile touches are read, one at a time, and each is dropped once its addresses are
//! resolved. Line programs, strings and ranges are addressed by absolute offsets and are given
//! whole; an object without `.debug_aranges` is read in one piece. A unit that refers into
//! another (`DW_FORM_ref_addr`, as ThinLTO leaves for imported functions) makes `addr2line` fail
//! on it alone: the symbolizer then resolves that address with [`Part::Whole`], once per profile.

use object::{Object, ObjectSection};

/// The reader: section bytes borrowed from a file mapped for the rest of the process.
pub(crate) type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// A unit's context, as `addr2line` gives frames for it.
pub(crate) type UnitContext = addr2line::Context<Reader>;

/// Which part of `.debug_info` a context covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Part {
    /// The unit at this offset.
    Unit(usize),
    /// The whole section (no `.debug_aranges`).
    Whole,
}

/// An object's DWARF sections and its address → unit index.
pub(crate) struct Dwarf {
    file: object::File<'static>,
    endian: gimli::RunTimeEndian,
    info: &'static [u8],
    /// `(start, end, unit offset)` from `.debug_aranges`, sorted by start.
    aranges: Vec<(u64, u64, usize)>,
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
                if r.begin < r.end {
                    aranges.push((r.begin, r.end, unit));
                }
            }
        }
        aranges.sort_unstable();
        aranges.shrink_to_fit();
        Some(Dwarf {
            file,
            endian,
            info,
            aranges,
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

    /// A context over `part` alone.
    pub(crate) fn context(&self, part: Part) -> Option<UnitContext> {
        let info = match part {
            Part::Whole => self.info,
            Part::Unit(offset) => {
                let all = gimli::DebugInfo::new(self.info, self.endian);
                let header = all
                    .header_from_offset(gimli::DebugInfoOffset(offset))
                    .ok()?;
                let len = header.length_including_self();
                self.info.get(offset..offset.checked_add(len)?)?
            }
        };
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data = match id {
                gimli::SectionId::DebugInfo => info,
                // Offsets in it would point into the whole section.
                gimli::SectionId::DebugAranges if part != Part::Whole => &[],
                _ => section(&self.file, id.name()),
            };
            Ok(gimli::EndianSlice::new(data, self.endian))
        };
        let dwarf = gimli::Dwarf::load(load).ok()?;
        addr2line::Context::from_dwarf(dwarf).ok()
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
