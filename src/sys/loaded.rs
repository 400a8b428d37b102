//! The code loaded in this process: every object `dl_iterate_phdr` reports (the executable, its
//! shared libraries), where it sits in memory, and its file mapped read-only.
//!
//! Files are mapped once and kept for the life of the process (clean, file-backed pages: they cost
//! address space, and RAM only for the pages read), so the unwinder and the symbol table can
//! borrow from them as `&'static [u8]` without copying sections onto the heap.

use std::collections::HashMap;
use std::ffi::{CStr, c_int, c_void};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::sync::lock;

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
}

/// Every loaded object with a file, the main executable first.
pub(crate) fn loaded() -> Vec<Module> {
    let mut out: Vec<Module> = Vec::new();
    // SAFETY: the callback only reads what dl_iterate_phdr hands it, for the duration of the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut Vec<Module>).cast()) };
    out
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

unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our own `data`.
    let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let is_main = out.is_empty();
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
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type != libc::PT_LOAD {
            continue;
        }
        let start = base.wrapping_add(ph.p_vaddr);
        let end = start.saturating_add(ph.p_memsz);
        lo = lo.min(start);
        hi = hi.max(end);
    }
    if lo < hi {
        out.push(Module {
            path,
            name,
            base,
            range: lo..hi,
            is_main,
        });
    }
    0
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

/// `path` mapped read-only, once per path per process; `None` if it cannot be opened or mapped.
pub(crate) fn map(path: &Path) -> Option<Mapped> {
    static MAPPED: Mutex<Option<HashMap<PathBuf, Mapped>>> = Mutex::new(None);
    let mut all = lock(&MAPPED);
    let all = all.get_or_insert_with(HashMap::new);
    if let Some(m) = all.get(path) {
        return Some(*m);
    }
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let m = Mapped(crate::sys::mapped::Region::new(&file, 0, len)?.leak());
    all.insert(path.to_owned(), m);
    Some(m)
}
