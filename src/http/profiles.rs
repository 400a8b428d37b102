//! `/debug/pprof/profile`, `/debug/pprof/heap`, `/debug/pprof/allocs`, `/debug/pprof/block`:
//! CPU, heap and block profiles in pprof format (gzipped protobuf), from
//! [`rdebug::profile`](crate::profile) (feature `pprof`). `block` answers 409 while another
//! runs and 503 when no tokio runtime is watched.
//!
//! The router has already checked the request (token, and the parameters with
//! [`Params`]: `seconds` 1..=300, `hz` 1..=1000, `debug`, `gc`) when it calls [`serve`], and for
//! `profile` it has taken the process's one [`CpuSlot`] (a second request meanwhile gets 409):
//! it is held until the profile ends. A CPU profile whose client closed its connection ends
//! within one drain (50 ms) and frees the slot; a block profile's ends within one look (1/`hz`
//! s) and frees the one block profile's place. `heap` and `allocs` take the one heap-dump slot
//! ([`HeapSlot`](super::params::HeapSlot)): a second one meanwhile gets 409 rather than queueing.
//! Profiles are made on tokio's blocking pool, so the server keeps answering other requests
//! meanwhile.
//!
//! Without the `pprof` feature each route answers 404 saying which feature is needed.

use hyper::{Response, StatusCode};

#[cfg(feature = "pprof")]
use super::params::HeapSlot;
use super::params::{CpuSlot, Params};
use super::reply::{self, Body};

/// The answer for profile `name` (`profile`, `heap` or `allocs`) with checked `params`.
#[cfg(not(feature = "pprof"))]
pub(crate) async fn serve(name: &str, params: &Params, slot: Option<CpuSlot>) -> Response<Body> {
    let _ = (params, slot);
    reply::error(
        StatusCode::NOT_FOUND,
        &format!(
            "{name} profile: needs rdebug's `pprof` Cargo feature: \
             rdebug = {{ features = [\"pprof\"] }}"
        ),
    )
}

/// The answer for profile `name` (`profile`, `heap` or `allocs`) with checked `params`.
#[cfg(feature = "pprof")]
pub(crate) async fn serve(name: &str, params: &Params, slot: Option<CpuSlot>) -> Response<Body> {
    use crate::profile::{self, HeapKind, ProfileError};

    /// Go's default CPU profile length and rate.
    const DEFAULT_SECONDS: u64 = 30;
    const DEFAULT_HZ: u64 = 100;

    let refuse = |e: ProfileError| {
        let status = match e {
            ProfileError::Busy => StatusCode::CONFLICT,
            ProfileError::Invalid(_) => StatusCode::BAD_REQUEST,
            ProfileError::Unavailable(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        reply::error(status, &format!("{name} profile: {e}"))
    };
    let lost = || reply::error(StatusCode::INTERNAL_SERVER_ERROR, "profiler task failed");
    match name {
        "profile" => {
            let seconds = params.seconds.unwrap_or(DEFAULT_SECONDS);
            let hz = u32::try_from(params.hz.unwrap_or(DEFAULT_HZ)).unwrap_or(100);
            let svg = params.format.as_deref() == Some("svg");
            // Set when this request's future is dropped: hyper drops it when the client closes
            // its connection, and the profile then ends rather than holding the slot.
            let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let _stop_when_gone = SetOnDrop(gone.clone());
            let made = tokio::task::spawn_blocking(move || {
                let _slot = slot; // held until the profile is done
                let duration = std::time::Duration::from_secs(seconds);
                profile::cpu_unless(duration, hz, &gone).map(|p| {
                    if svg {
                        p.flamegraph_svg()
                    } else {
                        p.pprof_gz()
                    }
                })
            })
            .await;
            match made {
                Ok(Ok(bytes)) if svg => reply::ok("image/svg+xml", bytes),
                Ok(Ok(bytes)) => reply::attachment(reply::ok(reply::OCTETS, bytes), "profile"),
                Ok(Err(e)) => refuse(e),
                Err(_) => lost(),
            }
        }
        "block" => {
            let seconds = params.seconds.unwrap_or(DEFAULT_SECONDS);
            let hz = u32::try_from(params.hz.unwrap_or(DEFAULT_HZ)).unwrap_or(100);
            // As for `profile`: a client that leaves ends the profile and frees the one block
            // profile's place (and its blocking-pool thread) within one look.
            let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let _stop_when_gone = SetOnDrop(gone.clone());
            let made = tokio::task::spawn_blocking(move || {
                let duration = std::time::Duration::from_secs(seconds);
                profile::block_unless(duration, hz, &gone).map(|p| p.pprof_gz())
            })
            .await;
            match made {
                Ok(Ok(bytes)) => reply::attachment(reply::ok(reply::OCTETS, bytes), "block"),
                Ok(Err(ProfileError::BlockBusy)) => reply::error(
                    StatusCode::CONFLICT,
                    "a block profile is already running; only one can run at a time: try again \
                     when it ends",
                ),
                // No runtime watched: the service has nothing to show yet.
                Ok(Err(e @ ProfileError::Unavailable(_))) => reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("block profile: {e}"),
                ),
                Ok(Err(e)) => refuse(e),
                Err(_) => lost(),
            }
        }
        "heap" | "allocs" => {
            let slot = match HeapSlot::take() {
                Ok(slot) => slot,
                Err(busy) => return *busy,
            };
            let (gc, debug, window) = (params.gc, params.debug, params.seconds);
            // A delta's client may leave during its window: the wait then ends at once.
            let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let _stop_when_gone = SetOnDrop(gone.clone());
            let kind = if name == "heap" {
                HeapKind::Heap
            } else {
                HeapKind::Allocs
            };
            let made = tokio::task::spawn_blocking(move || {
                let _slot = slot; // held until the dump is done
                if gc {
                    crate::stats::free_os_memory();
                }
                // `?seconds=N`: the allocations of the next N seconds (Go's delta profile).
                let base = match window {
                    Some(n) => {
                        let base = profile::heap()?;
                        let end = std::time::Instant::now() + std::time::Duration::from_secs(n);
                        while std::time::Instant::now() < end {
                            if gone.load(std::sync::atomic::Ordering::Acquire) {
                                return Err(ProfileError::Failed("the client went away".into()));
                            }
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        Some(base)
                    }
                    None => None,
                };
                profile::heap().map(|p| {
                    let p = match &base {
                        Some(base) => p.delta_since(base),
                        None => p,
                    };
                    if debug > 0 {
                        (true, p.debug_text().into_bytes())
                    } else {
                        (false, p.pprof_gz(kind))
                    }
                })
            })
            .await;
            let file = if name == "heap" { "heap" } else { "allocs" };
            match made {
                Ok(Ok((true, text))) => reply::ok(reply::TEXT, text),
                Ok(Ok((false, bytes))) => reply::attachment(reply::ok(reply::OCTETS, bytes), file),
                Ok(Err(e)) => refuse(e),
                Err(_) => lost(),
            }
        }
        _ => reply::error(StatusCode::NOT_FOUND, "Unknown profile"),
    }
}

/// Sets its flag when dropped.
#[cfg(feature = "pprof")]
struct SetOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

#[cfg(feature = "pprof")]
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Samples in profile `name` now, for the index page's Count column (`None`: unknown).
pub(crate) fn count(name: &str) -> Option<u64> {
    let _ = name;
    None
}
