//! The names a profile gives functions: demangled Rust paths without the hash and without
//! generic parameters, with the `<Type as Trait>` qualifier kept.
//!
//! `go tool pprof` shows `Function.name` as it is when it differs from `Function.system_name`;
//! when the two are equal it takes the name for an undemangled C++ one and strips every `<…>`
//! group, so `<Conn as Future>::poll` would become `::poll`. rdebug therefore stores this clean
//! name as `name` and the raw (mangled) symbol as `system_name`.

/// The profile's name for the raw symbol `raw`: demangled (Rust legacy and v0 manglings),
/// hash and generic parameters removed, `<Type as Trait>` qualifiers kept. A name that is not a
/// Rust symbol (C, C++ left mangled) comes back as it is.
pub(crate) fn clean(raw: &str) -> String {
    match rustc_demangle::try_demangle(raw) {
        Ok(d) => strip_generics(&format!("{d:#}")),
        Err(_) => raw.to_owned(),
    }
}

/// Removes generic argument lists (`Vec<T>` → `Vec`, `f::<T>` → `f`) and keeps qualified-path
/// brackets (`<A<T> as B>::f` → `<A as B>::f`). A `<` opens generic arguments when it follows
/// a path segment (an identifier, `}` of `{{closure}}`, or the `::` of a turbofish); anywhere
/// else (start, after `<`, a space, `(`, `&`, `*`, `[`, `,`) it opens a qualified path.
pub(crate) fn strip_generics(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // Depth of generic-argument groups being skipped.
    let mut skip = 0usize;
    // For each open bracket: whether it is a generic group (skipped) or a qualifier (kept).
    let mut stack: Vec<bool> = Vec::new();
    let mut prev: Option<char> = None;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => {
                let generic = skip > 0
                    || matches!(prev, Some(p) if p.is_alphanumeric() || p == '_' || p == '}' || p == ':');
                if generic {
                    if skip == 0 && out.ends_with("::") {
                        out.truncate(out.len() - 2); // the turbofish's `::`
                    }
                    skip += 1;
                } else {
                    out.push(c);
                }
                stack.push(generic);
            }
            '>' => match stack.pop() {
                Some(true) => skip = skip.saturating_sub(1),
                Some(false) => out.push(c),
                // `->` in a fn pointer type, or an unbalanced bracket: keep it.
                None => {
                    if skip == 0 {
                        out.push(c);
                    }
                }
            },
            _ if skip > 0 => {}
            _ => out.push(c),
        }
        // `-` before `>` makes `->`: never a bracket.
        if c == '-' && chars.peek() == Some(&'>') {
            chars.next();
            if skip == 0 {
                out.push('>');
            }
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_parameters_go_and_trait_qualifiers_stay() {
        assert_eq!(
            strip_generics(
                "<hyper::server::conn::http1::UpgradeableConnection<I,S> as core::future::future::Future>::poll"
            ),
            "<hyper::server::conn::http1::UpgradeableConnection as core::future::future::Future>::poll"
        );
        assert_eq!(
            strip_generics("alloc::vec::Vec<T,A>::with_capacity"),
            "alloc::vec::Vec::with_capacity"
        );
        assert_eq!(
            strip_generics("core::iter::Iterator::collect::<alloc::vec::Vec<u8>>"),
            "core::iter::Iterator::collect"
        );
        assert_eq!(
            strip_generics("<<A as B>::C as D<E>>::f"),
            "<<A as B>::C as D>::f"
        );
        assert_eq!(
            strip_generics("webapp::send_json::{{closure}}"),
            "webapp::send_json::{{closure}}"
        );
        assert_eq!(
            strip_generics("<&mut F as core::ops::function::FnOnce<A>>::call_once"),
            "<&mut F as core::ops::function::FnOnce>::call_once"
        );
        assert_eq!(
            strip_generics("<fn() -> u8 as Fn<()>>::call"),
            "<fn() -> u8 as Fn>::call"
        );
        assert_eq!(strip_generics("memcpy"), "memcpy");
    }

    #[test]
    fn mangled_rust_names_are_demangled_without_hash() {
        // <alloc::vec::Vec<u8> as core::clone::Clone>::clone, legacy mangling.
        let raw = "_ZN67_$LT$alloc..vec..Vec$LT$T$C$A$GT$$u20$as$u20$core..clone..Clone$GT$5clone17h0123456789abcdefE";
        assert_eq!(clean(raw), "<alloc::vec::Vec as core::clone::Clone>::clone");
        assert_eq!(clean("malloc"), "malloc");
    }
}
