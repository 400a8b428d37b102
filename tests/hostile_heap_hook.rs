//! The heap profiler's stack hook runs inside the allocator on any thread, from `init()` on:
//! whatever the code that allocates does with its registers, the hook's walk reads only the
//! allocating thread's own stack, and it unwinds code loaded after it was first built.
#![cfg(all(feature = "pprof", target_os = "linux", target_arch = "x86_64"))]

mod support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::pprof::{raw, top};
use support::{is_child, run_child};

#[global_allocator]
static ALLOC: rdebug::Alloc = rdebug::Alloc::new();

const TIMEOUT: Duration = Duration::from_secs(60);
const MIB: f64 = (1 << 20) as f64;

/// Blocks the tests hold, allocated where they say.
static HELD: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// Blocks of 64 KiB [`allocate_from_jit`] holds.
const JIT_BLOCKS: usize = 64;

/// Allocates `n` blocks of 64 KiB and holds them: called from the JIT page, with `rbp` just
/// past the thread's stack.
#[inline(never)]
extern "C" fn allocate_from_jit(n: usize) -> usize {
    let blocks: Vec<Box<[u8]>> = (0..n)
        .map(|_| vec![3u8; 64 << 10].into_boxed_slice())
        .collect();
    let got = blocks.len();
    HELD.lock().unwrap().extend(blocks);
    std::hint::black_box(got)
}

/// Machine code of `fn(f: extern "C" fn(usize) -> usize, arg: usize, rbp: u64) -> usize`: sets
/// `rbp` to its third argument, calls `f(arg)`, puts `rbp` back. Code with no unwind
/// information, as a JIT's: a walk through it can only follow `rbp`.
const SET_RBP_AND_CALL: [u8; 14] = [
    0x55, // push rbp
    0x48, 0x89, 0xd5, // mov rbp, rdx
    0x48, 0x89, 0xf8, // mov rax, rdi
    0x48, 0x89, 0xf7, // mov rdi, rsi
    0xff, 0xd0, // call rax
    0x5d, // pop rbp
    0xc3, // ret
];

type SetRbpAndCall = unsafe extern "C" fn(extern "C" fn(usize) -> usize, usize, u64) -> usize;

/// [`SET_RBP_AND_CALL`] on an anonymous executable page of its own (kept for the process).
fn jit_page() -> SetRbpAndCall {
    // SAFETY: a fresh private anonymous page, written, then made read+execute; the code is a
    // complete function with the signature of `SetRbpAndCall`.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED, "mmap");
        std::ptr::copy_nonoverlapping(
            SET_RBP_AND_CALL.as_ptr(),
            page.cast::<u8>(),
            SET_RBP_AND_CALL.len(),
        );
        assert_eq!(
            libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
        std::mem::transmute::<*mut libc::c_void, SetRbpAndCall>(page)
    }
}

/// Stack of the thread [`on_a_fenced_stack`] makes.
const FENCED_STACK: usize = 1 << 20;

/// Runs `f` on a new thread whose stack is a mapping of its own with an inaccessible page right
/// above it (so a read just past the stack's top faults, wherever the test runs); returns the
/// stack's top.
fn on_a_fenced_stack(f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) -> u64 {
    // SAFETY: a fresh anonymous mapping: the stack, then one page made inaccessible; the thread
    // is joined before the mapping is left (it is never unmapped).
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            FENCED_STACK + 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        let fence = map.cast::<u8>().add(FENCED_STACK);
        assert_eq!(libc::mprotect(fence.cast(), 4096, libc::PROT_NONE), 0);
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(libc::pthread_attr_setstack(&mut attr, map, FENCED_STACK), 0);
        let mut t: libc::pthread_t = 0;
        assert_eq!(
            libc::pthread_create(&mut t, &attr, f, std::ptr::null_mut()),
            0
        );
        libc::pthread_attr_destroy(&mut attr);
        assert_eq!(libc::pthread_join(t, std::ptr::null_mut()), 0);
        fence as u64
    }
}

/// The fenced thread of the test below: allocates once (so rdebug records its stack), then
/// calls [`allocate_from_jit`] through the JIT page with `rbp` at the first word past its
/// stack.
extern "C" fn jit_thread(_: *mut libc::c_void) -> *mut libc::c_void {
    drop(std::hint::black_box(vec![0u8; 64]));
    let call = jit_page();
    let (_, top) = support::deep::stack_bounds();
    // SAFETY: the page's function, with a function of the signature it calls.
    let got = unsafe { call(allocate_from_jit, JIT_BLOCKS, top as u64) };
    assert_eq!(got, JIT_BLOCKS);
    std::ptr::null_mut()
}

/// Code without unwind information (an anonymous executable page, as a JIT's) sets `rbp` to
/// the first word past the top of its thread's stack (an inaccessible page there), then calls
/// a function that allocates 64 blocks of 64 KiB with every block sampled (4 KiB rate): the
/// stack hook's walk reaches the page, where only `rbp` is left to follow. rdebug's walk stops
/// there (every read bounded to the thread's stack) instead of faulting: the child lives (it
/// died of SIGSEGV before the bound) and the 4 MiB are in the heap profile under
/// `allocate_from_jit`, ±10% (every block is sampled: each is 16 times the rate).
#[test]
fn a_bogus_frame_pointer_past_the_stack_does_not_crash_the_heap_hook() {
    let name = support::test_name!();
    let pb = support::temp_path("heap-jit.pb.gz");
    if is_child(name) {
        rdebug::init();
        rdebug::profile::set_memprofilerate(4096).expect("heap sampling");
        on_a_fenced_stack(jit_thread);
        let p = rdebug::profile::heap().expect("heap profile");
        std::fs::write(
            std::env::var("PB").unwrap(),
            p.pprof_gz(rdebug::profile::HeapKind::Heap),
        )
        .unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let t = top(&pb, &["-sample_index=inuse_space"]);
    let _ = std::fs::remove_file(&pb);
    let got = t.row("allocate_from_jit").map_or(0.0, |r| r.cum) / MIB;
    let want = (JIT_BLOCKS << 16) as f64 / MIB;
    assert!(
        (got / want - 1.0).abs() <= 0.1,
        "allocate_from_jit: {got:.2} MiB in the profile, {want} MiB held\n{}",
        t.text
    );
}

/// Calls to [`zalloc`], and the blocks it holds.
static ZALLOC_CALLS: AtomicUsize = AtomicUsize::new(0);

/// zlib's allocation callback: holds one 1 MiB block (the ground truth the test counts) and
/// hands zlib memory of the size it asked for (held too).
extern "C" fn zalloc(_opaque: *mut libc::c_void, items: u32, size: u32) -> *mut libc::c_void {
    ZALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
    let mut mem = vec![0u8; items as usize * size as usize].into_boxed_slice();
    let ptr = mem.as_mut_ptr().cast();
    let mut held = HELD.lock().unwrap();
    held.push(vec![5u8; 1 << 20].into_boxed_slice());
    held.push(mem);
    ptr
}

extern "C" fn zfree(_opaque: *mut libc::c_void, _ptr: *mut libc::c_void) {}

/// zlib's `z_stream` (x86_64 LP64 layout), only what `deflateInit_` reads and writes.
#[repr(C)]
struct ZStream {
    next_in: *mut u8,
    avail_in: u32,
    total_in: u64,
    next_out: *mut u8,
    avail_out: u32,
    total_out: u64,
    msg: *mut i8,
    state: *mut libc::c_void,
    zalloc: extern "C" fn(*mut libc::c_void, u32, u32) -> *mut libc::c_void,
    zfree: extern "C" fn(*mut libc::c_void, *mut libc::c_void),
    opaque: *mut libc::c_void,
    data_type: i32,
    adler: u64,
    reserved: u64,
}

/// Has libz (loaded with `dlopen`) allocate through [`zalloc`]: the allocations' stacks go
/// through libz's frames to this function.
#[inline(never)]
fn deflate_through_libz(lib: *mut libc::c_void) -> usize {
    // SAFETY: a NUL-terminated name in a library we opened.
    let sym = unsafe { libc::dlsym(lib, c"deflateInit_".as_ptr()) };
    assert!(!sym.is_null(), "dlsym deflateInit_");
    type DeflateInit = unsafe extern "C" fn(*mut ZStream, i32, *const libc::c_char, i32) -> i32;
    // SAFETY: zlib's `int deflateInit_(z_streamp, int level, const char *version, int size)`.
    let init: DeflateInit = unsafe { std::mem::transmute(sym) };
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut z = Box::new(ZStream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        // SAFETY: a zeroed stream with our allocator; "1" matches any zlib 1.x version check.
        let rc = unsafe { init(&mut *z, 6, c"1".as_ptr(), size_of::<ZStream>() as i32) };
        assert_eq!(rc, 0, "deflateInit_");
        streams.push(z);
    }
    let n = ZALLOC_CALLS.load(Ordering::Relaxed);
    std::mem::forget(streams); // their state lives in HELD
    std::hint::black_box(n)
}

/// A library loaded with `dlopen` after the stack hook's unwinder was built is unwound by the
/// hook once a heap profile has been asked for: allocations zlib makes through a callback are
/// held under the function that called zlib. Ground truth: one 1 MiB block per callback,
/// sampled at 4 KiB (each block surely), all under `deflate_through_libz` (±10%). Before the
/// unwinder followed loaded objects, libz was walked by frame pointers, which zlib's code does
/// not keep.
#[test]
fn the_heap_hook_unwinds_a_library_loaded_after_it_was_installed() {
    let name = support::test_name!();
    let pb = support::temp_path("heap-dlopen.pb.gz");
    if is_child(name) {
        rdebug::init();
        rdebug::profile::set_memprofilerate(4096).expect("heap sampling");
        // SAFETY: a NUL-terminated name; the handle is kept for the rest of the process.
        let lib = unsafe { libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW) };
        assert!(!lib.is_null(), "dlopen libz.so.1");
        // A heap profile has the hook's unwinder follow what is loaded now.
        drop(rdebug::profile::heap().expect("heap profile"));
        let calls = deflate_through_libz(lib);
        println!("RESULT zalloc_calls {calls}");
        let p = rdebug::profile::heap().expect("heap profile");
        std::fs::write(
            std::env::var("PB").unwrap(),
            p.pprof_gz(rdebug::profile::HeapKind::Heap),
        )
        .unwrap();
        return;
    }
    let out = run_child(name, &[("PB", &pb)], TIMEOUT);
    out.assert_success();
    let calls: u64 = support::result_value(&out.stdout, "zalloc_calls");
    assert!(calls >= 8, "{calls} zalloc calls");
    let (types, samples) = raw(pb.to_str().expect("utf-8 path"));
    let _ = std::fs::remove_file(&pb);
    let inuse = types
        .iter()
        .position(|t| t.starts_with("inuse_space"))
        .unwrap_or_else(|| panic!("no inuse_space in {types:?}"));
    // The 1 MiB blocks zalloc holds (libz's own requests are all smaller).
    let zalloc_blocks = |under: bool| -> f64 {
        samples
            .iter()
            .filter(|s| s.functions.iter().any(|f| f.contains("zalloc")))
            .filter(|s| {
                s.functions
                    .iter()
                    .any(|f| f.contains("deflate_through_libz"))
                    == under
            })
            .map(|s| s.values[inuse] as f64)
            .sum::<f64>()
            / MIB
    };
    let (under, lost) = (zalloc_blocks(true), zalloc_blocks(false));
    // zlib's own buffers (at most 64 KiB + 3 × 64 KiB per stream at level 6) ride along.
    let want = calls as f64;
    assert!(
        under >= 0.9 * want && lost <= 0.1 * want,
        "{under:.1} MiB of zalloc's under deflate_through_libz, {lost:.1} MiB not; \
         {calls} MiB held"
    );
}
