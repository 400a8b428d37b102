//! Addresses as the lines a STALL line prints: `name (file:line)`, one per frame, inlined
//! frames included.

use crate::sampler::unwind::{NO_ROOM, NO_ROOM_NAME};

/// Reads, on a short-lived thread of its own, the symbol tables and DWARF index that
/// [`frame_names`] keeps between calls, so that the first STALL line does not wait for them
/// (hundreds of milliseconds for a large binary built without optimisation).
pub(crate) fn warm_frame_names() {
    let _ = std::thread::Builder::new()
        .name("rdebug-symbols".into())
        .spawn(|| {
            let here = warm_frame_names as *const () as usize as u64;
            let _ = frame_names(&[here], 1);
        });
}

/// The frames of `frames` (addresses innermost first), inlined ones included, as
/// `name (file:line)` lines (`name` where the file is unknown), at most `max`. The symbol
/// tables are read the first time and kept ([`symbolize_cached`]); the DWARF units of these
/// addresses are read each time and dropped.
///
/// [`symbolize_cached`]: super::symbolize_cached
pub(crate) fn frame_names(frames: &[u64], max: usize) -> Vec<String> {
    // Each address gives one line at least: the first `max` are all that can show.
    let frames = &frames[..frames.len().min(max)];
    let mut out: Vec<String> = address_lines(frames).into_iter().flatten().collect();
    out.truncate(max);
    out
}

/// The lines of [`frame_names`] for each of `addrs`, in their order: one per frame of the
/// address (inlined ones first), or its hex value where nothing names it.
pub(crate) fn address_lines(addrs: &[u64]) -> Vec<Vec<String>> {
    let sym = super::symbolize_cached(addrs.iter().copied());
    addrs
        .iter()
        .map(|&a| {
            if a == NO_ROOM {
                return vec![NO_ROOM_NAME.to_owned()];
            }
            let fs = sym.frames(a);
            if fs.is_empty() {
                return vec![format!("{a:#x}")];
            }
            fs.iter()
                .map(|f| {
                    if f.file.is_empty() {
                        f.name.clone()
                    } else {
                        format!("{} ({}:{})", f.name, f.file, f.line)
                    }
                })
                .collect()
        })
        .collect()
}
