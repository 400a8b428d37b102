//! `/metrics`: every rdebug figure in the Prometheus text format (the export work fills this in).

use hyper::{Response, StatusCode};

use super::reply::{self, Body};

pub(crate) async fn serve(query: &str) -> Response<Body> {
    let _ = query;
    reply::error(StatusCode::NOT_FOUND, "/metrics: not built yet")
}
