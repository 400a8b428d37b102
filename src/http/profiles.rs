//! `/debug/pprof/profile`, `/debug/pprof/heap`, `/debug/pprof/allocs`: CPU and heap profiles in
//! pprof format, served by rdebug's `pprof` Cargo feature.
//!
//! The router has already checked the request (token, and the parameters with
//! [`Params`]: `seconds` 1..=300, `hz` 1..=1000, `debug`, `gc`) when it calls [`serve`], and for
//! `profile` it has taken the process's one [`CpuSlot`] (a second request meanwhile gets 409):
//! hold it until the profile ends.
//!
//! Without the `pprof` feature (and, for now, with it: the profiler lands separately) each route
//! answers 404 saying which feature is needed.

use hyper::{Response, StatusCode};

use super::params::{CpuSlot, Params};
use super::reply::{self, Body};

/// The answer for profile `name` (`profile`, `heap` or `allocs`) with checked `params`.
pub(crate) async fn serve(name: &str, params: &Params, slot: Option<CpuSlot>) -> Response<Body> {
    let _ = (params, slot);
    reply::error(
        StatusCode::NOT_FOUND,
        &format!(
            "{name} profile: needs rdebug's `pprof` Cargo feature, which this program was built \
             without (rdebug = {{ features = [\"pprof\"] }})"
        ),
    )
}

/// Samples in profile `name` now, for the index page's Count column (`None`: unknown).
pub(crate) fn count(name: &str) -> Option<u64> {
    let _ = name;
    None
}
