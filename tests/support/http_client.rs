//! For the debug-server tests: a hyper client for one request, and a child process running a
//! scenario with the server on, driven by commands on its stdin.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::child::{ChildOutput, child_command, stdout_lines};

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name`, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET target` (path and query) with `headers` (`Host` is the address unless `headers` name
/// one), on a fresh connection; `None` if the
/// connection failed or no answer came within `timeout`.
pub fn get_within(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Option<Answer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        tokio::time::timeout(timeout, async {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(conn);
            let mut req = hyper::Request::get(target);
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
                req = req.header("host", addr.to_string());
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let res = tx
                .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
                .await
                .ok()?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.into_body().collect().await.ok()?.to_bytes().to_vec();
            Some(Answer {
                status,
                headers,
                body,
            })
        })
        .await
        .ok()
        .flatten()
    })
}

/// `GET target`, panicking if no answer comes within 10 s.
pub fn get(addr: SocketAddr, target: &str) -> Answer {
    get_within(addr, target, &[], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer to GET {target} from {addr}"))
}

/// The note line that names the server's URL.
pub const SERVER_NOTE: &str = "rdebug: note: debug server on http://";

/// A child process running test `name` with `env`, its debug server found from the note line on
/// its stderr.
pub struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    /// stderr lines so far.
    stderr_rx: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
    pub stdout_seen: Vec<String>,
    /// Where the debug server listens.
    pub addr: SocketAddr,
}

impl ServerChild {
    /// Starts the child and waits (up to 20 s) for the note line.
    pub fn start(name: &str, env: &[(&str, &str)]) -> ServerChild {
        let mut cmd = child_command(name);
        cmd.stdin(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn test child");
        let stdin = child.stdin.take();
        let stdout = stdout_lines(&mut child);
        let err = child.stderr.take().expect("stderr piped");
        let (tx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut me = ServerChild {
            child,
            stdin,
            stdout,
            stderr_rx,
            stderr: Vec::new(),
            stdout_seen: Vec::new(),
            addr: "127.0.0.1:1".parse().expect("addr"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = me.stderr_rx.recv_timeout(left).unwrap_or_else(|e| {
                let _ = me.child.kill();
                panic!(
                    "no server note from the child ({e}); stderr: {:#?}",
                    me.stderr
                )
            });
            me.stderr.push(line.clone());
            if let Some(rest) = line.strip_prefix(SERVER_NOTE) {
                let host = rest
                    .strip_suffix("/debug/pprof/")
                    .expect("note ends in /debug/pprof/");
                me.addr = host.parse().expect("address in the note");
                return me;
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends command `cmd` on the child's stdin and waits (up to 20 s) for the stdout line that
    /// starts with `ack`; returns that line.
    pub fn command(&mut self, cmd: &str, ack: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}").expect("write command");
        stdin.flush().expect("flush command");
        self.wait_stdout(ack)
    }

    /// Waits (up to 20 s) for the stdout line that starts with `prefix`.
    pub fn wait_stdout(&mut self, prefix: &str) -> String {
        super::child::expect_line(
            &self.stdout,
            prefix,
            Duration::from_secs(20),
            &mut self.stdout_seen,
        )
    }

    /// Closes stdin (the child's cue to exit) and collects what is left.
    pub fn finish(mut self) -> ChildOutput {
        drop(self.stdin.take());
        let status = super::child::wait(&mut self.child, Duration::from_secs(20));
        let mut stderr = self.stderr.join("\n");
        while let Ok(l) = self.stderr_rx.recv_timeout(Duration::from_millis(200)) {
            stderr.push('\n');
            stderr.push_str(&l);
        }
        let mut stdout = self.stdout_seen.join("\n");
        while let Ok(l) = self.stdout.try_recv() {
            stdout.push('\n');
            stdout.push_str(&l);
        }
        ChildOutput {
            status,
            stdout,
            stderr,
        }
    }
}

/// In the child: reads commands from stdin, one a line, calling `f` for each, until stdin ends.
pub fn serve_commands(mut f: impl FnMut(&str)) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        f(line.trim());
    }
}

/// The environment variable that tells a child where its app listens.
pub const APP_ADDR_ENV: &str = "RDEBUG_TEST_APP_ADDR";

/// A free loopback address for a child's app (bound and released: another process could take
/// it in between, which on a test machine does not happen).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Waits (up to 20 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In the child: runs `serve(addr)` — an app's main future, e.g. the webapp example's `serve` —
/// for the address in [`APP_ADDR_ENV`] on a 2-worker runtime (threads named `webapp-server`)
/// on a thread of its own; returns the runtime's handle.
pub fn start_app<F, Fut>(serve: F) -> tokio::runtime::Handle
where
    F: FnOnce(SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let addr: SocketAddr = std::env::var(APP_ADDR_ENV)
        .expect("the app's address")
        .parse()
        .expect("address");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("webapp-server")
        .build()
        .expect("runtime");
    let handle = rt.handle().clone();
    std::thread::spawn(move || {
        if let Err(e) = rt.block_on(serve(addr)) {
            println!("APP FAILED {e}");
        }
    });
    handle
}
