//! The server's doors, checked before any route runs: the `Host` a request names, where it comes
//! from (`Sec-Fetch-Site`, `Origin`), and the token.
//!
//! Decisions (the crate docs of [`http`](super) say the same for users):
//! - **Host.** A web page can point a name it controls at 127.0.0.1 (DNS rebinding) and then
//!   read the loopback server as if it were its own origin. So a request whose `Host` is neither
//!   a loopback name (`localhost`, `*.localhost`) nor an IP literal is refused with 403, unless
//!   the name is listed in `RDEBUG_HTTP_HOSTS` (comma-separated; `*` accepts every name: for a
//!   server reached by its DNS name behind a token). A request without `Host` (HTTP/1.0) passes:
//!   browsers always send one. Every path is checked.
//! - **Cross-site.** A page on another site (or another port of `localhost`, which browsers count
//!   as the same *site*) can make the browser send requests: start a 300 s CPU profile, purge the
//!   arenas, ask for a task dump. Requests with `Sec-Fetch-Site: cross-site` or `same-site`, an
//!   `Origin` of `null`, or an `Origin` whose host and port differ from the `Host` header are
//!   refused with 403. Typing the URL, a bookmark, `curl` and `go tool pprof` are not affected.
//! - **Token.** With `RDEBUG_HTTP_TOKEN` set, every path that shows the process needs it: all of
//!   `/debug/pprof/` (the index counts tasks and threads), `/debug/vars`, `/metrics` and the
//!   dashboard's data (`/debug/rdebug/history`).
//!
//! Only the dashboard's own files (`/debug/rdebug`, its script, style sheet and license) and the
//! `/debug/pprof` redirect are open past the `Host` check: they are the same bytes in every
//! process. Any other path, including a route added later, is guarded.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap};

use super::auth::Token;
use super::reply::{self, Refusal};

/// The variable naming the host names accepted besides loopback names and IP literals.
pub(crate) const HOSTS_ENV: &str = "RDEBUG_HTTP_HOSTS";

/// Host names accepted besides loopback names and IP literals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    /// Lowercase, without a trailing dot.
    names: Vec<String>,
    /// `*`: every name.
    any: bool,
}

impl Hosts {
    /// From `RDEBUG_HTTP_HOSTS` (comma-separated names; `*` for any); unset is none.
    pub(crate) fn from_env() -> Hosts {
        let v = std::env::var(HOSTS_ENV).unwrap_or_default();
        Hosts::parse(&v)
    }

    fn parse(list: &str) -> Hosts {
        let mut h = Hosts::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                h.any = true;
            } else {
                h.names.push(normal(name));
            }
        }
        h
    }

    /// Whether a `Host` header value names this server acceptably.
    fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if name.starts_with('[') || name.parse::<std::net::Ipv4Addr>().is_ok() {
            return true; // an IP literal (host_name checked the IPv6 one)
        }
        let name = normal(name);
        self.any
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.names.contains(&name)
    }
}

/// Lowercase, without a trailing dot.
fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]:port`), port checked and removed;
/// an IPv6 literal keeps its brackets. `None` when malformed.
fn host_name(host: &str) -> Option<&str> {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some(&host[..v6.len() + 2]),
            p => p
                .strip_prefix(':')
                .filter(|p| port_ok(p))
                .map(|_| &host[..v6.len() + 2]),
        };
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return None,
        None => host,
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    valid.then_some(name)
}

/// Paths that show nothing of the process: the dashboard's own files, the same in every
/// process. Everything else is guarded.
fn is_static(path: &str) -> bool {
    matches!(
        path,
        "/debug/pprof"
            | "/debug/rdebug"
            | "/debug/rdebug/"
            | "/debug/rdebug/dashboard.js"
            | "/debug/rdebug/uPlot.iife.min.js"
            | "/debug/rdebug/uPlot.min.css"
            | "/debug/rdebug/LICENSE-uPlot"
    )
}

fn forbidden(message: &str) -> Refusal {
    Box::new(reply::error(StatusCode::FORBIDDEN, message))
}

/// The checks every request passes before its route runs (see the module docs).
pub(crate) fn check(
    path: &str,
    headers: &HeaderMap,
    query: &str,
    hosts: &Hosts,
    token: &Token,
) -> Result<(), Refusal> {
    let host = match headers.get(header::HOST).map(|h| h.to_str()) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return Err(forbidden("the Host header is not readable")),
    };
    if let Some(h) = host
        && !hosts.allows(h)
    {
        return Err(forbidden(&format!(
            "Host {:?} is neither a loopback name nor an IP literal (DNS rebinding?): \
             list the name in {HOSTS_ENV} to serve it",
            h.chars().take(100).collect::<String>()
        )));
    }
    if is_static(path) {
        return Ok(());
    }
    cross_site(headers, host)?;
    token.check(headers, query)
}

/// Refuses a request a browser sent for a page of another site or origin.
fn cross_site(headers: &HeaderMap, host: Option<&str>) -> Result<(), Refusal> {
    const HINT: &str = "open the debug server's pages directly (type the URL), or use curl or \
                        go tool pprof";
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        if site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site") {
            return Err(forbidden(&format!(
                "refused: a request from another site's page (Sec-Fetch-Site: {}); {HINT}",
                String::from_utf8_lossy(site)
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, a)| a);
        let same = match (authority, host) {
            (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
            _ => false,
        };
        if !same {
            return Err(forbidden(&format!(
                "refused: a request from a page of another origin (Origin: {}); {HINT}",
                String::from_utf8_lossy(origin.as_bytes())
                    .chars()
                    .take(100)
                    .collect::<String>()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none = Hosts::default();
        for ok in [
            "localhost",
            "LOCALHOST:6060",
            "localhost.:1",
            "app.localhost:80",
            "127.0.0.1",
            "127.0.0.1:6060",
            "10.1.2.3:6060",
            "[::1]",
            "[::1]:6060",
            "[fe80::1]:1",
        ] {
            assert!(none.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:6060",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1",
            "[zz]:1",
            "localhost:abc",
            "localhost:",
            "",
            "a b",
            "[::1]x",
        ] {
            assert!(!none.allows(bad), "{bad}");
        }
        let some = Hosts::parse(" Box.Internal. , other");
        assert!(some.allows("box.internal:6060") && some.allows("OTHER"));
        assert!(!some.allows("evil.example"));
        assert!(Hosts::parse("*").allows("anything.example:1"));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Any text: no panic. IP literals with or without a port pass; DNS names that are
            /// not under `localhost` do not.
            #[test]
            fn hosts_are_ip_literals_or_loopback_names(
                text in any::<String>(),
                v4 in any::<std::net::Ipv4Addr>(),
                v6 in any::<std::net::Ipv6Addr>(),
                port in proptest::option::of(any::<u16>()),
                labels in proptest::collection::vec("[a-z][a-z0-9-]{0,10}", 1..4),
                tld in "(com|example|io|internal|dev)",
            ) {
                let none = Hosts::default();
                let _ = none.allows(&text);
                let with_port = |h: String| match port {
                    Some(p) => format!("{h}:{p}"),
                    None => h,
                };
                prop_assert!(none.allows(&with_port(v4.to_string())));
                let v6 = format!("[{v6}]");
                prop_assert!(none.allows(&with_port(v6)));
                let name = format!("{}.{tld}", labels.join("."));
                prop_assert!(!none.allows(&with_port(name.clone())), "{}", name);
                let local = format!("{name}.localhost");
                prop_assert!(none.allows(&with_port(local)));
            }
        }
    }
}
