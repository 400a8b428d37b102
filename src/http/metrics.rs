//! `/metrics`: every rdebug figure in the Prometheus text format, from
//! [`export::prometheus`](crate::export) (one read of `memstats()`, the watched runtimes and
//! `/proc` per scrape; ~70 µs, so it runs on the server's thread).

use hyper::Response;

use super::reply::{self, Body};

pub(crate) async fn serve(query: &str) -> Response<Body> {
    let _ = query;
    let mut out = String::with_capacity(8 << 10);
    crate::export::prometheus::render(&mut out);
    reply::ok(crate::export::CONTENT_TYPE, out)
}
