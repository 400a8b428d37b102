//! The lines of code addresses STALL stacks have shown, kept between stalls.

/// The lines of the code addresses STALL stacks have shown, so that a stack seen again (by the
/// deciding sample of the same poll, or at a later stall or suspicion in the same code) is named
/// without reading DWARF: one `HashMap` lookup per frame. The first sample of a suspected stall
/// has its new addresses named on a thread of its own ([`NameCache::prefetch`]), so that neither
/// the look that took it nor the next one waits for DWARF (tens of ms for a large binary with
/// full debug info) and the STALL line is written when it is decided. At most
/// [`NameCache::MAX`] addresses (then emptied); emptied too when a shared object was loaded or
/// unloaded since.
#[derive(Debug, Default)]
pub(crate) struct NameCache {
    lines: std::collections::HashMap<u64, Vec<String>>,
    generation: u64,
    /// The naming under way: the generation and addresses it names, and its thread.
    naming: Option<Naming>,
}

type Naming = (u64, Vec<u64>, std::thread::JoinHandle<Vec<Vec<String>>>);

impl NameCache {
    const MAX: usize = 4096;

    /// Starts naming the addresses of `frames` a STALL line would show and not named yet, on a
    /// thread of its own, unless one is under way (then they are named when needed).
    pub(crate) fn prefetch(&mut self, frames: &[u64]) {
        self.collect(false);
        if self.naming.is_some() {
            return;
        }
        let missing = self.missing(frames);
        if missing.is_empty() {
            return;
        }
        let addrs = missing.clone();
        if let Ok(h) = std::thread::Builder::new()
            .name("rdebug-symbols".into())
            .spawn(move || crate::symbols::frame_lines::address_lines(&addrs))
        {
            self.naming = Some((self.generation, missing, h));
        }
    }

    /// Keeps the answer of the naming under way if it is done (`wait`: once it is).
    fn collect(&mut self, wait: bool) {
        let done = self
            .naming
            .as_ref()
            .is_some_and(|(_, _, h)| wait || h.is_finished());
        if !done {
            return;
        }
        if let Some((generation, addrs, h)) = self.naming.take()
            && let Ok(named) = h.join()
            && generation == self.generation
        {
            self.insert(addrs, named);
        }
    }

    /// The addresses of `frames` that have no lines yet (for the objects
    /// loaded now).
    fn missing(&mut self, frames: &[u64]) -> Vec<u64> {
        let generation = crate::sys::loaded::generation();
        if generation != self.generation {
            self.lines.clear();
            self.generation = generation;
        }
        let mut missing: Vec<u64> = frames
            .iter()
            .copied()
            .filter(|a| !self.lines.contains_key(a))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    fn insert(&mut self, addrs: Vec<u64>, named: Vec<Vec<String>>) {
        if self.lines.len().saturating_add(addrs.len()) > Self::MAX {
            self.lines.clear();
        }
        self.lines.extend(addrs.into_iter().zip(named));
    }

    /// The lines for `frames` (innermost first): `max` at most. Waits for a naming under way (it
    /// may hold these frames), and names the rest here.
    pub(crate) fn stack(&mut self, frames: &[u64], max: usize) -> Vec<String> {
        self.collect(true);
        let missing = self.missing(frames);
        if !missing.is_empty() {
            let named = crate::symbols::frame_lines::address_lines(&missing);
            self.insert(missing, named);
        }
        let mut out = Vec::with_capacity(max);
        for a in frames {
            if out.len() >= max {
                break;
            }
            if let Some(lines) = self.lines.get(a) {
                out.extend(lines.iter().cloned());
            }
        }
        out.truncate(max);
        out
    }
}
