//! The code loaded in this process, found once for the unwinder, the symbolizer and the STALL
//! lines' name cache: every object `dl_iterate_phdr` reports (the executable, its shared
//! libraries), where it sits in memory, the GNU build ID its loaded image carries, and its file
//! mappings in `/proc/self/maps` (file offset, device and inode) — with the loader's generation
//! they were found at ([`loaded`]).
//!
//! **One staleness rule**: what was found stays true while the loader's [`generation`]
//! (glibc's `dlpi_adds + dlpi_subs`) is unchanged; any `dlopen` or `dlclose` that loads or
//! unloads an object changes it, also when an object comes back at the same path and address.
//!
//! **Files are trusted only once matched to what is mapped** ([`Module::file`]): the file at
//! the object's path must carry the build ID found in the loaded image, or, for an object
//! without one, be the very file (device and inode) `/proc/self/maps` shows mapped there.
//! A shared object replaced on disk (by rename) after it was loaded is therefore not read for
//! the old code: its names and unwind rules would be another build's. [`Untrusted::note`] says
//! why, for the profile's comments.
//!
//! Files are mapped once per version (device, inode, size and modification time: a file
//! rewritten in place is mapped anew, never read through a mapping of its older, perhaps
//! longer, self) and kept for the life of the process (clean, file-backed pages: they cost
//! address space, and RAM only for the pages read), so the unwinder and the symbol table can
//! borrow from them as `&'static [u8]` without copying sections onto the heap. At most
//! [`MAX_FILES`] versions are mapped.

use std::collections::HashMap;
use std::ffi::{CStr, c_int, c_void};
use std::fmt::Write as _;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::maps::{MapEntry, read_maps};

use crate::sync::lock;

/// Most file versions mapped for the life of the process (then files are not read).
pub(crate) const MAX_FILES: usize = 1024;

/// One loaded object.
#[derive(Debug, Clone)]
pub(crate) struct Module {
    /// The file to read it from: `/proc/self/exe` for the executable (the running image even
    /// when its path was deleted or replaced by a deploy), else the loader's path.
    pub path: PathBuf,
    /// Its name: the executable's path as `/proc/self/exe` reads (" (deleted)" included), else
    /// the loader's path.
    pub name: PathBuf,
    /// Load bias: runtime address = address in the file + `base`.
    pub base: u64,
    /// Runtime addresses its loadable segments span.
    pub range: Range<u64>,
    /// Whether it is the main executable.
    pub is_main: bool,
    /// The GNU build ID of the loaded image, read from its notes in memory (empty: none).
    pub build_id: Vec<u8>,
    /// Its file mappings in `/proc/self/maps`.
    pub maps: Vec<MapEntry>,
}

/// The loaded objects at one loader generation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loaded {
    /// The loader's [`generation`] they were found at.
    pub generation: u64,
    /// Every loaded object with a file, the main executable first.
    pub modules: Vec<Module>,
    /// The executable file mappings of `/proc/self/maps` (and the vDSO), in address order,
    /// each with the index of the module it belongs to.
    pub exec_maps: Vec<(MapEntry, Option<usize>)>,
}

impl IntoIterator for Loaded {
    type Item = Module;
    type IntoIter = std::vec::IntoIter<Module>;
    fn into_iter(self) -> Self::IntoIter {
        self.modules.into_iter()
    }
}

impl Loaded {
    /// How many objects.
    pub(crate) fn len(&self) -> usize {
        self.modules.len()
    }
}

/// The objects loaded now, with their mappings and build IDs, and the generation they belong to
/// (found again if an object was loaded or unloaded while `/proc/self/maps` was read).
pub(crate) fn loaded() -> Loaded {
    let mut found = Loaded::default();
    for _ in 0..3 {
        let mut walk = Walk::default();
        // SAFETY: the callback only reads what dl_iterate_phdr hands it, for the duration of
        // the call.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut walk as *mut Walk).cast()) };
        found = Loaded {
            generation: walk.generation,
            modules: walk.modules,
            exec_maps: Vec::new(),
        };
        for e in read_maps() {
            let owner = found
                .modules
                .iter()
                .position(|m| m.range.contains(&e.start));
            let named = !e.path.is_empty() && !e.path.starts_with('[');
            if e.exec && (named || e.path == "[vdso]") {
                found.exec_maps.push((e.clone(), owner));
            }
            if let (Some(i), true) = (owner, named && e.inode != 0) {
                found.modules[i].maps.push(e);
            }
        }
        if generation() == found.generation {
            break;
        }
    }
    found
}

/// How many times objects were loaded and unloaded since the process started (glibc's
/// `dlpi_adds + dlpi_subs`): unchanged, every code address still belongs to the same object.
/// Cheap: `dl_iterate_phdr` stops at the first object.
pub(crate) fn generation() -> u64 {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our own `data`.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<u64>()) };
        *out = info.dlpi_adds.wrapping_add(info.dlpi_subs);
        1
    }
    let mut g = 0u64;
    // SAFETY: the callback only reads what dl_iterate_phdr hands it, for the duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut g as *mut u64).cast()) };
    g
}

/// What one `dl_iterate_phdr` walk found.
#[derive(Default)]
struct Walk {
    generation: u64,
    seen: usize,
    modules: Vec<Module>,
}

unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our own `data`.
    let (info, walk) = unsafe { (&*info, &mut *data.cast::<Walk>()) };
    let is_main = walk.seen == 0;
    if is_main {
        walk.generation = info.dlpi_adds.wrapping_add(info.dlpi_subs);
    }
    walk.seen += 1;
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a NUL-terminated string owned by the dynamic loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let (path, name) = if is_main && name.is_empty() {
        let exe = PathBuf::from("/proc/self/exe");
        (exe.clone(), std::fs::read_link(&exe).unwrap_or(exe))
    } else if name.is_empty() || !name.starts_with(b"/") {
        return 0; // the vDSO and other objects without a file
    } else {
        use std::os::unix::ffi::OsStrExt;
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(name));
        (p.clone(), p)
    };
    let base = info.dlpi_addr;
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for ph in phdrs.iter().filter(|ph| ph.p_type == libc::PT_LOAD) {
        let start = base.wrapping_add(ph.p_vaddr);
        let end = start.saturating_add(ph.p_memsz);
        lo = lo.min(start);
        hi = hi.max(end);
    }
    if lo < hi {
        walk.modules.push(Module {
            path,
            name,
            base,
            range: lo..hi,
            is_main,
            build_id: build_id_in_memory(base, phdrs).unwrap_or_default(),
            maps: Vec::new(),
        });
    }
    0
}

/// Most bytes of notes read from one loaded image.
const MAX_NOTES: u64 = 64 << 10;

/// The GNU build ID in the notes of the image loaded at `base` with program headers `phdrs`:
/// read only where a readable loadable segment maps the notes' bytes from the file, and
/// through the kernel ([`read_own_memory`]).
fn build_id_in_memory(base: u64, phdrs: &[libc::Elf64_Phdr]) -> Option<Vec<u8>> {
    for note in phdrs.iter().filter(|ph| ph.p_type == libc::PT_NOTE) {
        let (start, len) = (note.p_vaddr, note.p_filesz.min(MAX_NOTES));
        let end = start.checked_add(len)?;
        let mapped = phdrs.iter().any(|ph| {
            ph.p_type == libc::PT_LOAD
                && ph.p_flags & libc::PF_R != 0
                && ph.p_vaddr <= start
                && end <= ph.p_vaddr.saturating_add(ph.p_filesz)
        });
        if !mapped || len == 0 {
            continue;
        }
        let at = usize::try_from(base.checked_add(start)?).ok()?;
        let bytes = read_own_memory(at, usize::try_from(len).ok()?)?;
        if let Some(id) = gnu_build_id(&bytes, note.p_align.max(4)) {
            return Some(id.to_vec());
        }
    }
    None
}

/// `len` bytes of this process's memory at `at`, copied through the kernel
/// (`process_vm_readv`: a page the program made unreadable is an error, never a fault); where
/// a seccomp filter refuses that call, read directly (the caller checked that a readable
/// segment the loader mapped holds them).
fn read_own_memory(at: usize, len: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; len];
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: at as *mut c_void,
        iov_len: len,
    };
    // SAFETY: a syscall on our own process into our own buffer; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if usize::try_from(n).ok() == Some(len) {
        return Some(out);
    }
    if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT) {
        return None;
    }
    // SAFETY: `len` bytes inside a readable segment the loader mapped from the file, which
    // it keeps mapped while `dl_iterate_phdr` runs.
    out.copy_from_slice(unsafe { std::slice::from_raw_parts(at as *const u8, len) });
    Some(out)
}

/// The `NT_GNU_BUILD_ID` descriptor in a note segment's bytes (entries aligned to `align`).
pub(crate) fn gnu_build_id(mut notes: &[u8], align: u64) -> Option<&[u8]> {
    let align = usize::try_from(align).ok().filter(|a| *a == 4 || *a == 8)?;
    let pad = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    while notes.len() >= 12 {
        let word =
            |i: usize| u32::from_ne_bytes([notes[i], notes[i + 1], notes[i + 2], notes[i + 3]]);
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name_end = 12usize.checked_add(namesz)?;
        let desc_at = 12usize.checked_add(pad(namesz)?)?;
        let desc_end = desc_at.checked_add(descsz)?;
        let next = desc_at.checked_add(pad(descsz)?)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_at..desc_end)?;
        if kind == 3 && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc);
        }
        notes = notes.get(next.min(notes.len())..)?;
    }
    None
}

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Why a loaded object's file is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Untrusted {
    /// It cannot be opened or mapped (or [`MAX_FILES`] versions are mapped already).
    Unreadable,
    /// The file at its path has another build ID than the loaded image: replaced since.
    OtherBuild { on_disk: String, loaded: String },
    /// The loaded image has no build ID and the file at its path is not the file mapped
    /// (device and inode): replaced since.
    OtherFile,
    /// The file is shorter than what is mapped from it: rewritten in place since.
    Shorter,
    /// The loaded image has no build ID and no file mapping of it was found to compare with.
    Unmatched,
}

impl Untrusted {
    /// The profile's comment for module `m`.
    pub(crate) fn note(&self, m: &Module) -> String {
        let (path, at) = (m.name.display(), m.range.start);
        match self {
            Untrusted::Unreadable => {
                format!("rdebug: cannot read {path}: its functions are unnamed")
            }
            Untrusted::OtherBuild { on_disk, loaded } => format!(
                "rdebug: {path} on disk (build ID {on_disk}) is not the object loaded at {at:#x} (build ID {loaded}): it was replaced after it was loaded, so its names and unwind rules are not used for that code"
            ),
            Untrusted::OtherFile => format!(
                "rdebug: {path} on disk is not the file mapped at {at:#x} (another device or inode): it was replaced after it was loaded, so its names and unwind rules are not used for that code"
            ),
            Untrusted::Shorter => format!(
                "rdebug: {path} on disk is shorter than what is mapped at {at:#x}: it was rewritten after it was loaded, so it is not read"
            ),
            Untrusted::Unmatched => format!(
                "rdebug: {path} could not be matched to the object loaded at {at:#x} (no build ID, no file mapping): it is not read"
            ),
        }
    }
}

impl Module {
    /// Its file, mapped read-only, once matched to what is loaded: the same build ID as the
    /// loaded image, or, without one, the same device and inode as its mappings.
    pub(crate) fn file(&self) -> Result<Mapped, Untrusted> {
        let f = std::fs::File::open(&self.path).map_err(|_| Untrusted::Unreadable)?;
        let meta = f.metadata().map_err(|_| Untrusted::Unreadable)?;
        let same = |e: &&MapEntry| e.dev == meta.dev() && e.inode == meta.ino();
        let same_file = self.maps.iter().any(|e| same(&e));
        if self
            .maps
            .iter()
            .filter(same)
            .any(|e| e.offset >= meta.size())
        {
            return Err(Untrusted::Shorter);
        }
        let mapped = map_file(&f, &meta).ok_or(Untrusted::Unreadable)?;
        if !self.build_id.is_empty() {
            let on_disk = file_build_id(mapped.0).unwrap_or_default();
            if on_disk == self.build_id {
                return Ok(mapped);
            }
            return Err(Untrusted::OtherBuild {
                on_disk: hex(&on_disk),
                loaded: hex(&self.build_id),
            });
        }
        match (same_file, self.maps.is_empty()) {
            (true, _) => Ok(mapped),
            (false, false) => Err(Untrusted::OtherFile),
            (false, true) => Err(Untrusted::Unmatched),
        }
    }

    /// The build ID of the loaded image, hex ("" without one).
    pub(crate) fn build_id_hex(&self) -> String {
        hex(&self.build_id)
    }
}

/// The GNU build ID in an ELF file's note segments.
pub(crate) fn file_build_id(data: &[u8]) -> Option<Vec<u8>> {
    use object::Object;
    let file = object::File::parse(data).ok()?;
    Some(file.build_id().ok()??.to_vec())
}

/// A file mapped read-only for the rest of the process's life.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapped(pub &'static [u8]);

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0
    }
}

/// A version of a file: device, inode, size, modification time (s, ns).
type Version = (u64, u64, u64, i64, i64);

/// `file` (whose metadata is `meta`) mapped read-only, once per version of it.
fn map_file(file: &std::fs::File, meta: &std::fs::Metadata) -> Option<Mapped> {
    static MAPPED: Mutex<Option<HashMap<Version, Mapped>>> = Mutex::new(None);
    let version = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    );
    let mut all = lock(&MAPPED);
    let all = all.get_or_insert_with(HashMap::new);
    if let Some(m) = all.get(&version) {
        return Some(*m);
    }
    if all.len() >= MAX_FILES {
        return None;
    }
    let m = Mapped(crate::sys::mapped::Region::new(file, 0, meta.size())?.leak());
    all.insert(version, m);
    Some(m)
}

/// `path` mapped read-only, once per version of the file; `None` if it cannot be opened or
/// mapped. For files found by what they are (`/proc/self/exe`, a debug file named by build ID):
/// a loaded object's file is [`Module::file`].
pub(crate) fn map(path: &Path) -> Option<Mapped> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    map_file(&file, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object found has its build ID read from memory equal to its file's, and its file
    /// trusted; the executable's mappings carry the inode `/proc/self/exe` has.
    #[test]
    fn loaded_objects_match_their_files() {
        let l = loaded();
        assert_eq!(l.generation, generation());
        let main = l.modules.first().expect("the executable");
        assert!(main.is_main && !main.maps.is_empty());
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        assert!(
            main.maps
                .iter()
                .all(|e| e.inode == exe.ino() && e.dev == exe.dev())
        );
        let mut with_ids = 0;
        for m in l.modules.iter() {
            let f = m.file().unwrap_or_else(|e| panic!("{}", e.note(m)));
            if !m.build_id.is_empty() {
                with_ids += 1;
                assert_eq!(file_build_id(f.0).as_deref(), Some(&m.build_id[..]));
            }
        }
        assert!(with_ids >= 2, "libc and the executable carry build IDs");
        assert!(l.exec_maps.iter().any(|(e, m)| m == &Some(0) && e.exec));
    }

    /// A build ID note is found after another note; damaged sizes give `None`, never a panic.
    #[test]
    fn build_id_notes_are_parsed_within_their_bytes() {
        let note = |namesz: u32, descsz: u32, kind: u32, name: &[u8], desc: &[u8]| {
            let mut v = Vec::new();
            for w in [namesz, descsz, kind] {
                v.extend_from_slice(&w.to_ne_bytes());
            }
            v.extend_from_slice(name);
            v.resize(v.len().next_multiple_of(4), 0);
            v.extend_from_slice(desc);
            v.resize(v.len().next_multiple_of(4), 0);
            v
        };
        let mut notes = note(4, 4, 1, b"GNU\0", &[9; 4]);
        notes.extend(note(4, 20, 3, b"GNU\0", &[0xab; 20]));
        assert_eq!(gnu_build_id(&notes, 4), Some(&[0xab; 20][..]));
        assert_eq!(hex(gnu_build_id(&notes, 4).unwrap()).len(), 40);
        let damaged = note(u32::MAX, 20, 3, b"GNU\0", &[1; 20]);
        assert_eq!(gnu_build_id(&damaged, 4), None);
        let long = note(4, u32::MAX, 3, b"GNU\0", &[1; 20]);
        assert_eq!(gnu_build_id(&long, 4), None);
        assert_eq!(gnu_build_id(&notes[..30], 4), None);
        assert_eq!(gnu_build_id(&notes, 3), None);
    }
}
