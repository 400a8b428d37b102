//! Answers: the response body type (whole bytes, or lines streamed from a channel) and the
//! builders every endpoint uses, so content types and the error convention (`text/plain` with
//! `X-Go-Pprof: 1`, which `go tool pprof` reads as "print the body") live in one place.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

/// `text/plain; charset=utf-8`
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
/// `text/html; charset=utf-8`
pub(crate) const HTML: &str = "text/html; charset=utf-8";
/// `application/json`
pub(crate) const JSON: &str = "application/json";
/// `application/octet-stream` (pprof protobuf; used by the `pprof` side)
#[allow(dead_code)]
pub(crate) const OCTETS: &str = "application/octet-stream";
/// `application/x-ndjson`: one JSON object per line.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// A response body: bytes in one piece, or chunks sent by a task as they are made (`trace`).
#[derive(Debug)]
pub(crate) enum Body {
    /// The whole body (taken when sent).
    Full(Option<Bytes>),
    /// Chunks until the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// A refusal: the error answer of a check (boxed: a response is large).
pub(crate) type Refusal = Box<Response<Body>>;

/// A response with `status`, `content_type` and `body`.
pub(crate) fn with(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(body.into())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// 200 with `content_type` and `body`.
pub(crate) fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    with(StatusCode::OK, content_type, body)
}

/// An error as Go's `net/http/pprof` answers one: `text/plain`, `X-Go-Pprof: 1`, the message and
/// a newline as the body.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = with(status, TEXT, format!("{message}\n"));
    r.headers_mut()
        .insert("x-go-pprof", HeaderValue::from_static("1"));
    r
}

/// Sets `Content-Disposition: attachment; filename="<name>"`, as Go does for profiles.
pub(crate) fn attachment(mut r: Response<Body>, name: &'static str) -> Response<Body> {
    let value = match name {
        "profile" => "attachment; filename=\"profile\"",
        "trace" => "attachment; filename=\"trace\"",
        "heap" => "attachment; filename=\"heap\"",
        "allocs" => "attachment; filename=\"allocs\"",
        "goroutine" => "attachment; filename=\"goroutine\"",
        "threadcreate" => "attachment; filename=\"threadcreate\"",
        _ => "attachment",
    };
    r.headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(value));
    r
}

/// A 200 whose body is streamed from the returned sender's chunks until it is dropped.
pub(crate) fn stream(
    content_type: &'static str,
    depth: usize,
) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    let mut r = Response::new(Body::Stream(rx));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    (r, tx)
}
