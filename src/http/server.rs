//! The server's own thread, runtime and connections: one thread named `rdebug-http` running a
//! current-thread tokio runtime of its own (console-subscriber's pattern), so the endpoints
//! answer while the application's runtime is saturated.
//!
//! Limits (nothing a client sends can hold the server for long or grow its memory):
//! - request head at most [`MAX_HEADER_BYTES`] (hyper answers 431 past it); no request bodies;
//! - the head must arrive within [`HEADER_TIMEOUT`] of the connection (or of the previous
//!   answer, on a kept-alive connection): slow-drip clients are dropped;
//! - at most [`MAX_CONNECTIONS`] connections; at the limit a new connection closes the oldest
//!   one that is not being answered (idle or still sending its head), and is itself closed at
//!   once when every connection is being answered;
//! - a connection lives at most [`MAX_CONNECTION_LIFE`] (the longest profile plus a margin).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::Request;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, oneshot};

use super::params::MAX_SECONDS;
use super::reply::Body;
use super::routes::{Ctx, respond};
use crate::error::Error;
use crate::sync::lock;

/// Largest request head (request line and headers), bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 16 << 10;
/// Time a client has to send its request head.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections open at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Longest a connection lives.
pub(crate) const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(MAX_SECONDS + 60);

/// The running debug server: its address, and a way to stop it.
///
/// Dropping it leaves the server running (as the reporter does); [`Server::stop`] stops it.
///
/// ```
/// let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
/// assert_ne!(server.local_addr().port(), 0);
/// server.stop();
/// ```
pub struct Server {
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// The address the server listens on (with the real port when port 0 was asked for).
    ///
    /// ```
    /// let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
    /// println!("http://{}/debug/pprof/", server.local_addr());
    /// # server.stop();
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and closes every connection. Waits for the thread up to one second.
    ///
    /// ```
    /// let server = rdebug::http::serve("127.0.0.1:0".parse().unwrap()).unwrap();
    /// let addr = server.local_addr();
    /// server.stop();
    /// assert!(std::net::TcpStream::connect(addr).is_err());
    /// ```
    pub fn stop(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
        crate::sync::join_within(&self.thread, Duration::from_secs(1));
    }
}

/// Binds `addr`, starts the thread, returns once listening.
pub(crate) fn start(addr: SocketAddr, ctx: Ctx) -> Result<Server, Error> {
    let bind_error = |source| Error::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::ServerThread)?;
    // The server's own runtime is not one of the program's.
    crate::runtime::discover::exclude(rt.handle());
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("rdebug-http".into())
        .spawn(move || {
            rt.block_on(accept_loop(listener, Arc::new(ctx), stop_rx));
            // Connections still open are dropped with the runtime.
            rt.shutdown_timeout(Duration::from_millis(100));
        })
        .map_err(Error::ServerThread)?;
    Ok(Server {
        addr: local,
        stop: Mutex::new(Some(stop_tx)),
        thread: Mutex::new(Some(thread)),
    })
}

/// One open connection as the accept loop sees it.
struct Conn {
    id: u64,
    /// Requests being answered on it (their bodies not yet finished).
    busy: Arc<AtomicUsize>,
    /// Notified to close it.
    close: Arc<Notify>,
}

/// Open connections, oldest first.
#[derive(Default)]
struct Table {
    conns: VecDeque<Conn>,
    next_id: u64,
}

impl Table {
    /// Makes room for one more connection if needed by closing the oldest one not being
    /// answered; false when there is no room.
    fn make_room(&mut self) -> bool {
        if self.conns.len() < MAX_CONNECTIONS {
            return true;
        }
        match self.conns.iter().position(|c| c.busy.load(Relaxed) == 0) {
            Some(i) => {
                if let Some(c) = self.conns.remove(i) {
                    c.close.notify_one();
                }
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.conns.iter().position(|c| c.id == id) {
            self.conns.remove(i);
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        crate::sys::stderr::note(
            "warning",
            "debug server: cannot register its socket; stopped",
        );
        return;
    };
    // The dashboard's history is kept from the start.
    super::history::ensure_feeding();
    let table = Arc::new(Mutex::new(Table::default()));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(2 * MAX_HEADER_BYTES)
        .keep_alive(true);
    loop {
        let accepted = poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok((stream, _peer))) => stream,
            Some(Err(_)) => {
                // Out of file descriptors, or a connection reset before it was accepted: wait a
                // little rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (id, busy, close) = {
            let mut t = lock(&table);
            if !t.make_room() {
                drop(stream); // every connection is being answered: close this one at once
                continue;
            }
            let id = t.next_id;
            t.next_id = t.next_id.wrapping_add(1);
            let conn = Conn {
                id,
                busy: Arc::new(AtomicUsize::new(0)),
                close: Arc::new(Notify::new()),
            };
            let handles = (id, conn.busy.clone(), conn.close.clone());
            t.conns.push_back(conn);
            handles
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let svc_busy = busy.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let ctx = ctx.clone();
            let guard = BusyGuard::new(svc_busy.clone());
            async move {
                let (parts, _body) = req.into_parts();
                let r = respond(&parts.method, &parts.uri, &parts.headers, &ctx).await;
                Ok::<_, Infallible>(r.map(|inner| Tracked {
                    inner,
                    _busy: guard,
                }))
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let table = table.clone();
        tokio::spawn(async move {
            serve_for(conn, &close, MAX_CONNECTION_LIFE).await;
            lock(&table).remove(id);
        });
    }
}

/// Drives connection `conn` until it ends, `close` is notified (evicted), or `life` has passed,
/// whatever it is doing then (a request still being answered included); then drops it, which
/// closes its socket.
async fn serve_for<C: Future>(conn: C, close: &Notify, life: Duration) {
    let mut conn = pin!(conn);
    let mut closed = pin!(close.notified());
    let mut life = pin!(tokio::time::sleep(life));
    poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready()
            || closed.as_mut().poll(cx).is_ready()
            || life.as_mut().poll(cx).is_ready()
        {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Counts a request as being answered until its response body is done (dropped).
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(busy: Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Relaxed);
        BusyGuard(busy)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its connection counted as busy while it is being sent.
struct Tracked {
    inner: Body,
    _busy: BusyGuard,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// A connection whose request is never answered is closed when its life ends: the client
    /// reads end-of-file after the life (300 ms here; `MAX_CONNECTION_LIFE` in the server), not
    /// at its own 10 s read timeout.
    #[test]
    fn a_connection_is_closed_when_its_life_ends_mid_request() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let t = Instant::now();
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .expect("request");
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).expect("end-of-file, not a read timeout");
            (n, t.elapsed())
        });
        rt.block_on(async {
            let (stream, _) = listener.accept().await.expect("accept");
            let service = service_fn(|_req: Request<Incoming>| async {
                std::future::pending::<Result<hyper::Response<Body>, Infallible>>().await
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Bounded here too, so that a server without the life check fails, not hangs.
            let never = Notify::new();
            let life = serve_for(conn, &never, Duration::from_millis(300));
            let _ = tokio::time::timeout(Duration::from_secs(6), life).await;
        });
        let (n, took) = client.join().expect("client");
        assert_eq!(n, 0, "no answer, only the close");
        assert!(
            (Duration::from_millis(250)..Duration::from_secs(5)).contains(&took),
            "closed after {took:?}"
        );
    }
}
