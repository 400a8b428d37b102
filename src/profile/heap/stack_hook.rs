//! The stack jemalloc records for a heap sample: taken by rdebug's unwinder (bounded to the
//! thread's stack) with the labels in force, in place of libgcc's.

use std::ffi::{c_uint, c_void};

use crate::alloc::mallctl::write_named as write;
use crate::sampler::hook_unwinder;
use crate::sampler::unwind::Unwinder;

/// jemalloc's `prof_backtrace_hook_t`: the stack of a sampled allocation, taken with rdebug's
/// framehop unwinder ([`hook_unwinder`]: its tables built outside the allocator, anew when
/// libraries were loaded since) instead of libgcc's `_Unwind_Backtrace`, which
/// searches the FDE tables for every frame (`_Unwind_Find_FDE`). Called by jemalloc on the
/// allocating thread, outside any signal handler; allocates nothing. On a thread with less
/// than 64 KiB of stack left the sample gets no stack (the walk would overflow it).
///
/// When a labelled future is being polled on the thread ([`crate::sampler::task_labels`]), the stack is taken
/// by [`labelled_stack`] instead; unlabelled, that check is one thread-local load.
unsafe extern "C" fn stack_hook(vec: *mut *mut c_void, len: *mut c_uint, max_len: c_uint) {
    if vec.is_null() || len.is_null() {
        return;
    }
    // SAFETY: jemalloc hands a vector of `max_len` pointers; a code address fits in each.
    let out = unsafe { std::slice::from_raw_parts_mut(vec.cast::<u64>(), max_len as usize) };
    let Some(u) = hook_unwinder::hold() else {
        // SAFETY: jemalloc's length out-parameter.
        unsafe { *len = 0 };
        return;
    };
    if out.len() >= 2 && crate::sampler::task_labels::labelled_here() {
        // SAFETY: jemalloc's length out-parameter.
        unsafe { *len = labelled_stack(&u, out) as c_uint };
        return;
    }
    // A thread deep in its stack has no room for the walk (about 42 KiB): its sampled object is
    // recorded with no stack rather than the walk running into the guard page.
    if !crate::profile::cpu::room_to_walk_here() {
        // SAFETY: jemalloc's length out-parameter.
        unsafe { *len = 0 };
        return;
    }
    let n = u.walk_here(out, 1);
    // SAFETY: jemalloc's length out-parameter.
    unsafe { *len = n as c_uint };
}

/// [`stack_hook`]'s stack for an allocation made under [`labels`](crate::sampler::task_labels): the walk
/// (leaving out this function and the hook), its last frame replaced if need be by one
/// pseudo-frame naming the label set ([`super::label_frames`]), which the dump's reader takes
/// off again. jemalloc keys its samples by the whole stack, so each label set gets its own
/// counts. Beyond the bound on what labels add ([`super::label_budget`]) the walk alone, as
/// for an unlabelled allocation. With less than 64 KiB of stack left, the pseudo-frame alone.
/// Returns the stack's length.
#[inline(never)]
fn labelled_stack(u: &Unwinder, out: &mut [u64]) -> usize {
    let n = if crate::profile::cpu::room_to_walk_here() {
        u.walk_here(out, 2).min(out.len())
    } else {
        0
    };
    let Some(label) = super::label_frames::pseudo_frame() else {
        return n;
    };
    let keep = n.min(out.len().saturating_sub(1));
    let set = super::label_frames::set_of(label);
    if keep >= out.len() || !super::label_budget::admit(&out[..keep], label, set) {
        return n;
    }
    out[keep] = label;
    keep + 1
}

/// Has jemalloc take sampled stacks with rdebug's unwinder (`experimental.hooks.prof_backtrace`)
/// from now on; before, libgcc's. Builds the unwinder the first time, and anew on later calls
/// when libraries were loaded or unloaded since (allocates: never from inside the allocator;
/// called at `init`, by each heap profile and by `set_memprofilerate`).
/// `RDEBUG_HEAP_UNWIND=libgcc` in the environment keeps libgcc's.
pub(crate) fn install_stack_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if !super::prof_ctl::enabled()
        || std::env::var_os("RDEBUG_HEAP_UNWIND").is_some_and(|v| v == "libgcc")
    {
        return;
    }
    hook_unwinder::refresh();
    ONCE.call_once(|| {
        type Hook = unsafe extern "C" fn(*mut *mut c_void, *mut c_uint, c_uint);
        if write::<Hook>(c"experimental.hooks.prof_backtrace", stack_hook).is_ok() {
            crate::sampler::allocator_code::libgcc_stacks_done();
        }
    });
}
