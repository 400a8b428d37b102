//! CPU the tests burn themselves, in named functions a profile must show, and the CPU clocks
//! that tell how much was burnt.

/// Burns `n` iterations of one mix (its name is what the CPU profile tests look for).
#[inline(never)]
pub fn burn_a(n: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i ^ (x >> 3)));
    }
    x
}

/// Burns `n` iterations of another mix, about as costly per iteration as [`burn_a`].
#[inline(never)]
pub fn burn_b(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_mul(17).wrapping_add(i ^ (x >> 5)));
    }
    x
}

/// The time of CPU clock `clock` (`CLOCK_THREAD_CPUTIME_ID`, `CLOCK_PROCESS_CPUTIME_ID`), ns.
pub fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
