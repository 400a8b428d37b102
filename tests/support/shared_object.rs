//! Shared objects a test builds itself with `gcc` (C, or assembly with hand-written DWARF), and
//! loads with `dlopen`: the ground truth for what rdebug names and trusts.

use std::ffi::{CString, c_void};
use std::path::Path;
use std::process::Command;

/// Builds `out` (a `.so`) from `source` (C or assembly, as `source_name`'s extension says:
/// written beside `out`, named after it) with `gcc -shared -fPIC` and `args`; panics with gcc's
/// output if it fails.
pub fn build(source_name: &str, source: &str, out: &Path, args: &[&str]) {
    let ext = Path::new(source_name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("c");
    let mut src = out.as_os_str().to_owned();
    src.push(format!(".{ext}"));
    let src = std::path::PathBuf::from(src);
    std::fs::write(&src, source).expect("write the source");
    let o = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(out)
        .arg(&src)
        .args(args)
        .output()
        .expect("gcc");
    assert!(o.status.success(), "gcc failed: {o:?}");
    let _ = std::fs::remove_file(&src);
}

/// `dlopen(path, RTLD_NOW)`; panics if it fails.
pub fn open(path: &Path) -> *mut c_void {
    let c = CString::new(path.to_str().expect("a UTF-8 path")).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
    assert!(!h.is_null(), "dlopen {}", path.display());
    h
}

/// The address of `name` in the object `handle`; panics if it is missing.
pub fn symbol(handle: *mut c_void, name: &str) -> *mut c_void {
    let c = CString::new(name).expect("no NUL");
    // SAFETY: a handle from `open` and a NUL-terminated name.
    let s = unsafe { libc::dlsym(handle, c.as_ptr()) };
    assert!(!s.is_null(), "dlsym {name}");
    s
}

/// A spin function `name(n)` (counts `n` down, returns 0), as x86-64 assembly whose
/// `.debug_info` nests `depth` `DW_TAG_inlined_subroutine` entries, each inside the previous,
/// all covering the function's code: about 21 bytes per level. `.loc` lines make the
/// assembler write the line table.
pub fn deeply_inlined_asm(name: &str, depth: usize) -> String {
    let mut s = String::with_capacity(depth * 80 + 2048);
    s.push_str(&format!(
        "\t.text\n\t.globl {name}\n\t.type {name}, @function\n\t.file 1 \"deep.c\"\n{name}:\n\
         .Lbegin:\n\t.loc 1 1 0\n\tmov %rdi, %rax\n1:\n\t.loc 1 2 0\n\tdec %rax\n\tjnz 1b\n\
         \t.loc 1 3 0\n\tret\n.Lend:\n\t.size {name}, .-{name}\n"
    ));
    // Abbreviations: 1 compile unit, 2 subprogram, 3 inlined subroutine (with children).
    s.push_str(
        "\t.section .debug_abbrev,\"\",@progbits\n.Labbrev:\n\
         \t.uleb128 1\n\t.uleb128 0x11\n\t.byte 1\n\
         \t.uleb128 0x03\n\t.uleb128 0x08\n\
         \t.uleb128 0x11\n\t.uleb128 0x01\n\t.uleb128 0x12\n\t.uleb128 0x01\n\
         \t.uleb128 0x10\n\t.uleb128 0x17\n\t.byte 0, 0\n\
         \t.uleb128 2\n\t.uleb128 0x2e\n\t.byte 1\n\
         \t.uleb128 0x03\n\t.uleb128 0x08\n\
         \t.uleb128 0x11\n\t.uleb128 0x01\n\t.uleb128 0x12\n\t.uleb128 0x01\n\t.byte 0, 0\n\
         \t.uleb128 3\n\t.uleb128 0x1d\n\t.byte 1\n\
         \t.uleb128 0x31\n\t.uleb128 0x13\n\
         \t.uleb128 0x11\n\t.uleb128 0x01\n\t.uleb128 0x12\n\t.uleb128 0x01\n\
         \t.uleb128 0x58\n\t.uleb128 0x0b\n\t.uleb128 0x59\n\t.uleb128 0x0b\n\t.byte 0, 0\n\
         \t.byte 0\n",
    );
    s.push_str(&format!(
        "\t.section .debug_info,\"\",@progbits\n.Linfo:\n\t.long .Linfo_end - .Linfo_start\n\
         .Linfo_start:\n\t.short 4\n\t.long .Labbrev\n\t.byte 8\n\
         \t.uleb128 1\n\t.string \"deep.c\"\n\t.quad .Lbegin\n\t.quad .Lend\n\t.long .Lline\n\
         .Lsub:\n\t.uleb128 2\n\t.string \"{name}\"\n\t.quad .Lbegin\n\t.quad .Lend\n"
    ));
    for _ in 0..depth {
        s.push_str(
            "\t.uleb128 3\n\t.long .Lsub - .Linfo\n\t.quad .Lbegin\n\t.quad .Lend\n\
             \t.byte 1\n\t.byte 2\n",
        );
    }
    // Each inlined subroutine's children end, then the subprogram's and the unit's.
    s.push_str(&format!("\t.zero {depth}\n\t.byte 0, 0\n.Linfo_end:\n"));
    s.push_str("\t.section .debug_line,\"\",@progbits\n.Lline:\n");
    s.push_str("\t.section .note.GNU-stack,\"\",@progbits\n");
    s
}

/// `dladdr(addr)`: the base address of the object holding `addr` and the name of the symbol
/// that covers it, as the loader knows them (the ground truth for what is loaded there).
pub fn loaded_at(addr: *const c_void) -> (usize, String) {
    // SAFETY: a zeroed Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: any address may be asked about; `info` is written on success.
    let ok = unsafe { libc::dladdr(addr, &mut info) };
    assert!(ok != 0, "dladdr {addr:?}");
    let name = if info.dli_sname.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated name owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dli_sname) }
            .to_string_lossy()
            .into_owned()
    };
    (info.dli_fbase as usize, name)
}

/// C source of a spin function `name(n)` (counts `n` down), with `pad` bytes of data after it:
/// read-only data in the file (which pushes the unwind tables that far into the file), or, with
/// `in_bss`, zeroed memory that takes no room in the file (the same span in memory).
pub fn spin_c(name: &str, pad: usize, in_bss: bool) -> String {
    let pad_decl = if in_bss {
        format!("static volatile unsigned char pad[{}];", pad.max(1))
    } else {
        format!("static const unsigned char pad[{}] = {{1}};", pad.max(1))
    };
    format!(
        "#include <stdint.h>\n\
         {pad_decl}\n\
         uint64_t {name}(uint64_t n) {{\n\
         \tvolatile uint64_t x = n;\n\
         \twhile (x) x--;\n\
         \treturn pad[n % {len}];\n\
         }}\n",
        len = pad.max(1)
    )
}
