//! The accept loop (finding 2 of issue 8): every connection, HTTP or HTTPS, gets a
//! header-read timeout that also bounds how long an idle keep-alive connection may
//! wait for its next request, a bounded TLS handshake, and a place among at most
//! `max_connections` open connections.
//!
//! When the cap is reached, the oldest connection that is not serving a request is
//! closed to make room, so a flood of idle or slow connections cannot lock out real
//! clients (`/v1/health` keeps answering); only when every connection is busy is the
//! new one refused. The soft open-file limit is raised to the hard one at start and the
//! cap is kept below it, so the server never runs out of descriptors.

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Descriptors kept free for the database, payload files and the log.
const FD_RESERVE: u64 = 128;
/// Connections kept at most when no `--max-connections` is given (and the open-file
/// limit allows that many).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Issue 10, point 6 (push): connections the kernel queues before `accept` when no
/// `--listen-backlog` is given; tokio's own 1024 reset hundreds of a 3,000-agent
/// fleet reconnecting after a restart.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with room for `backlog` connections waiting for `accept` (the kernel
/// caps it at `net.core.somaxconn`, which is read and reported). Non-blocking, ready for
/// tokio.
pub fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server binds again at once, past connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let wanted = i32::try_from(backlog.max(1)).unwrap_or(i32::MAX);
    socket.listen(wanted)?;
    socket.set_nonblocking(true)?;
    if let Some(cap) = somaxconn() {
        if cap < backlog {
            tracing::warn!(
                backlog,
                somaxconn = cap,
                "the kernel caps the listen backlog at net.core.somaxconn={cap}: a fleet reconnecting at once may see resets; raise it (`sysctl -w net.core.somaxconn={backlog}`)"
            );
        } else {
            tracing::info!(backlog, somaxconn = cap, "listen backlog");
        }
    }
    Ok(socket.into())
}

/// The kernel's cap on listen backlogs (Linux), when it can be read.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many connections the server keeps and how long it waits for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most open connections; `None`: [`DEFAULT_MAX_CONNECTIONS`], or fewer when the
    /// open-file limit allows fewer.
    pub max_connections: Option<usize>,
    /// Longest wait for a request's headers, and for the next request on an idle
    /// keep-alive connection.
    pub header_timeout: Duration,
    /// Longest pause while a client sends a request body or reads an answer, and
    /// longest TLS handshake.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Raises the soft open-file limit to the hard limit and returns the connection cap
/// that fits below it (`wanted`, if given and smaller).
pub fn connection_cap(wanted: Option<usize>) -> usize {
    let fds = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    };
    let fit = usize::try_from(fds.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
    match wanted {
        Some(w) if w <= fit => w,
        Some(w) => {
            tracing::warn!(
                wanted = w,
                fit,
                "--max-connections is above what the open-file limit allows; using {fit} (raise `ulimit -n`)"
            );
            fit
        }
        None => fit.min(DEFAULT_MAX_CONNECTIONS),
    }
}

/// One open connection as the accept loop sees it.
struct Tracked {
    /// Requests being served (including their response bodies).
    busy: Arc<AtomicUsize>,
    /// Closes the connection when sent (or dropped).
    close: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    /// By age: the smallest id is the oldest connection.
    open: BTreeMap<u64, Tracked>,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes room for one more connection: `None` when every connection is busy.
fn admit(
    reg: &Shared,
    cap: usize,
) -> Option<(u64, Arc<AtomicUsize>, tokio::sync::oneshot::Receiver<()>)> {
    let mut r = lock(reg);
    if r.open.len() >= cap {
        let idle = r
            .open
            .iter()
            .find(|(_, t)| t.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)?;
        if let Some(t) = r.open.remove(&idle) {
            let _ = t.close.send(());
        }
        tracing::debug!("connection cap reached: closed the oldest idle connection");
    }
    let id = r.next;
    r.next += 1;
    let busy = Arc::new(AtomicUsize::new(0));
    let (close, closed) = tokio::sync::oneshot::channel();
    r.open.insert(
        id,
        Tracked {
            busy: busy.clone(),
            close,
        },
    );
    Some((id, busy, closed))
}

/// Decrements the busy count of its connection when the response is done.
struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let cap = connection_cap(limits.max_connections);
    tracing::info!(max_connections = cap, "accepting connections");
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let reg: Shared = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a
                // moment rather than spinning, and keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((id, busy, closed)) = admit(&reg, cap) else {
            tracing::warn!(%peer, max_connections = cap, "every connection is busy: refusing a new one");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let reg = reg.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let conn = connection(stream, peer, app, limits, tls, busy);
            tokio::select! {
                () = conn => {}
                _ = closed => {}
            }
            lock(&reg).open.remove(&id);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    busy: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let io = WriteStall::new(stream, limits.body_timeout);
            http1(io, peer, app, limits, busy).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(limits.body_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => {
                    let io = WriteStall::new(s, limits.body_timeout);
                    http1(io, peer, app, limits, busy).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http1<S>(
    stream: S,
    peer: SocketAddr,
    app: axum::Router,
    limits: ConnectionLimits,
    busy: Arc<AtomicUsize>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        busy.fetch_add(1, Ordering::AcqRel);
        let guard = BusyGuard(busy.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let resp = tower::Service::call(&mut app, req.map(Body::new)).await?;
            // The connection stays busy until the response body has been sent.
            Ok::<_, std::convert::Infallible>(resp.map(|b| {
                Body::new(http_body_util::BodyExt::map_frame(b, move |f| {
                    let _busy = &guard;
                    f
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// A stream that can send a region of a file itself (issue 10: payloads without a copy).
trait SendFile {
    /// Whether [`SendFile::poll_send_file`] can send anything on this stream.
    fn can_send_file(&self) -> bool;
    /// Sends up to `len` bytes of `file` from `offset`; the count sent.
    fn poll_send_file(
        &mut self,
        cx: &mut std::task::Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> std::task::Poll<std::io::Result<usize>>;
}

impl SendFile for TcpStream {
    fn can_send_file(&self) -> bool {
        true
    }

    fn poll_send_file(
        &mut self,
        cx: &mut std::task::Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            let mut at = offset;
            let sent = self.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(&*self, file, Some(&mut at), len).map_err(Into::into)
            });
            match sent {
                // The file is shorter than the bytes it was read into: it was changed
                // in place behind the server's back. End the response, never pad it.
                Ok(0) if len > 0 => {
                    return std::task::Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "a payload file shrank while it was being sent",
                    )))
                }
                Ok(n) => return std::task::Poll::Ready(Ok(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

/// TLS encrypts in user space: the bytes are written as they are.
impl SendFile for tokio_rustls::server::TlsStream<TcpStream> {
    fn can_send_file(&self) -> bool {
        false
    }

    fn poll_send_file(
        &mut self,
        _: &mut std::task::Context<'_>,
        _: &std::fs::File,
        _: u64,
        _: usize,
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::Error::other("no sendfile through TLS")))
    }
}

/// A connection whose writes fail when the client stops reading for `limit`: a client
/// that never reads its answer would otherwise hold a busy connection forever.
struct WriteStall<S> {
    inner: S,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turns `Pending` into a timeout error once the stall has lasted `limit`.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        std::task::Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + SendFile + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    // Issue 10: vectored writes pass through. Without them hyper takes the stream for one
    // that cannot write several buffers at once and copies every response body into its
    // own write buffer first: a 1 MB payload held in memory was copied once per download
    // (1.5 GB of server memory with 2,000 agents downloading at once, 4 GB with 10,000).
    //
    // A buffer that is a verified payload's bytes (`patchday_content::file_backed`) goes
    // out as the same region of its file (`sendfile`) where the stream can: the kernel
    // sends the page-cache pages instead of copying the bytes into the socket.
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let mut upto = bufs.len();
        if self.inner.can_send_file() {
            if let Some(i) = bufs
                .iter()
                .position(|b| patchday_content::file_backed::find(b).is_some())
            {
                if i == 0 {
                    if let Some((file, offset)) = patchday_content::file_backed::find(&bufs[0]) {
                        let r = self.inner.poll_send_file(cx, &file, offset, bufs[0].len());
                        return self.watch(cx, r);
                    }
                }
                // What comes before it first (the response's head), then the file.
                upto = i;
            }
        }
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs[..upto]);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}
