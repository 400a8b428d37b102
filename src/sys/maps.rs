//! `/proc/self/maps`: the one reader of the process's mappings, for the loaded objects
//! ([`super::loaded`], feature `pprof`) and the allocator's address table (libgcc's code).

/// One file mapping of `/proc/self/maps`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // offset, dev, inode: the loaded objects
pub(crate) struct MapEntry {
    pub start: u64,
    pub limit: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The file's device (as `st_dev`) and inode; 0 for the vDSO.
    pub dev: u64,
    pub inode: u64,
    /// Whether the mapping is executable.
    pub exec: bool,
    /// The path the kernel shows (`" (deleted)"` removed).
    pub path: String,
}

/// The file mappings of `/proc/self/maps`, in address order.
pub(crate) fn read_maps() -> Vec<MapEntry> {
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
        let (range, perms, offset, dev, inode) = (field(), field(), field(), field(), field());
        let path = rest.trim();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let (Some(start), Some(limit), Some(offset), Some(major), Some(minor), Ok(inode)) = (
            hex(s),
            hex(e),
            hex(offset),
            hex(major).and_then(|m| u32::try_from(m).ok()),
            hex(minor).and_then(|m| u32::try_from(m).ok()),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        out.push(MapEntry {
            start,
            limit,
            offset,
            dev: libc::makedev(major, minor),
            inode,
            exec: perms.contains('x'),
            path: path.trim_end_matches(" (deleted)").to_owned(),
        });
    }
    out
}
