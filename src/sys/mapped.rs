//! Part of a file mapped read-only (`mmap`), for reading large tables (symbols, DWARF, unwind
//! rules) without copying them onto the heap: the pages cost address space, and RAM only for
//! what is read.

use std::fs::File;
use std::os::fd::AsRawFd;

/// A read-only private mapping of part of a file, unmapped when dropped (or kept for good with
/// [`Region::leak`]). Its range is checked against the file's size when it is made; a file
/// truncated under it later would fault on read: the executable cannot be written while it
/// runs (`ETXTBSY`), package managers replace shared objects rather than truncate them, and
/// [`loaded`](super::loaded) maps a file rewritten in place anew rather than read it through
/// an older mapping.
#[derive(Debug)]
pub(crate) struct Region {
    base: *mut libc::c_void,
    map_len: usize,
    skip: usize,
    len: usize,
}

impl Region {
    /// `len` bytes of `file` from `offset`; `None` if `len` is 0, the range reaches past the
    /// file's end (its pages would fault on read), or the mapping fails.
    pub(crate) fn new(file: &File, offset: u64, len: u64) -> Option<Region> {
        if len == 0 || offset.checked_add(len)? > file.metadata().ok()?.len() {
            return None;
        }
        // SAFETY: sysconf has no preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())?;
        let start = offset & !(page - 1);
        let skip = usize::try_from(offset - start).ok()?;
        let len = usize::try_from(len).ok()?;
        let map_len = len.checked_add(skip)?;
        // SAFETY: a new read-only private mapping of an open file; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                libc::off_t::try_from(start).ok()?,
            )
        };
        (base != libc::MAP_FAILED).then_some(Region {
            base,
            map_len,
            skip,
            len,
        })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `skip + len` bytes are mapped readable from `base` while `self` lives.
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(self.skip), self.len) }
    }

    /// Keeps the mapping for the rest of the process.
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the profiles' objects (`pprof`)
    pub(crate) fn leak(self) -> &'static [u8] {
        // SAFETY: never unmapped: `self` is forgotten, so its `Drop` does not run.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(self.skip), self.len) };
        std::mem::forget(self);
        bytes
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range within the file maps and reads the file's bytes; one reaching a byte past its
    /// end is refused.
    #[test]
    fn a_range_past_the_end_of_the_file_is_refused() {
        let path = std::env::temp_dir().join(format!("rdebug-region-{}", std::process::id()));
        std::fs::write(&path, [7u8; 100]).unwrap();
        let f = File::open(&path).unwrap();
        let r = Region::new(&f, 10, 90).expect("within the file");
        assert_eq!(r.bytes(), &[7u8; 90][..]);
        assert!(Region::new(&f, 10, 91).is_none());
        assert!(Region::new(&f, u64::MAX, 2).is_none());
        let _ = std::fs::remove_file(&path);
    }
}
