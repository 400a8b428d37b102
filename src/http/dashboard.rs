//! `/debug/rdebug`: the live dashboard (the dashboard work fills this in).

use hyper::{Response, StatusCode};

use super::reply::{self, Body};

pub(crate) async fn serve(path: &str, query: &str) -> Response<Body> {
    let _ = (path, query);
    reply::error(StatusCode::NOT_FOUND, "/debug/rdebug: not built yet")
}
