//! What the daemon's HTTP listeners (admin, SCIM) share: the accept loop
//! with its connection limits ([`crate::infra::conn_limit`]), serving one
//! HTTP/1 connection with a header timeout and a graceful stop, and the
//! shape of an answer. Each listener keeps its routes (and SCIM its TLS).

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::infra::conn_limit::{Activity, Busy, Limiter, Slot, SUMMARY_INTERVAL};

/// How long a client may take to send a request's headers once it has
/// sent a byte. Also closes idle keep-alive connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a request's body within this time.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After an accept error (typically out of file descriptors), wait this
/// long rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// On shutdown, requests in flight get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A connection asked to close to make room goes at once when it is fresh
/// or an idle keep-alive one (hyper closes those on a graceful shutdown);
/// one with part of a request head, or still flushing its last answer, gets
/// this long and is then dropped unless a request has started meanwhile.
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// Resolves once `shutdown` is true. A dropped sender also stops: nobody
/// is left to tell the listener to stop, so the daemon is going away.
pub async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accept connections on `listener` until `shutdown` becomes true, each
/// admitted by `limiter` and served by its own task, `connection`; then
/// stop accepting, let requests in flight finish (for at most
/// [`SHUTDOWN_GRACE`]) and return.
pub async fn serve_listener<F, Fut>(
    listener: TcpListener,
    limiter: Arc<Limiter>,
    shutdown: watch::Receiver<bool>,
    mut connection: F,
) where
    F: FnMut(TcpStream, SocketAddr, Slot) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let label = limiter.label();
    let mut stop = pin!(stopped(shutdown));
    let mut conns = JoinSet::new();
    // Refusals are summarised, not logged one by one: this flushes what
    // the last summary left waiting.
    let mut summary = tokio::time::interval(SUMMARY_INTERVAL);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => log_task_end(label, done),
            _ = summary.tick() => limiter.log_summary(false),
            accepted = async {
                limiter.room().await;
                listener.accept().await
            } => match accepted {
                // A refused socket closes as it drops; the limiter counted it.
                Ok((stream, peer)) => if let Some(slot) = limiter.admit(peer.ip(), sent_already(&stream)) {
                    // Answers are small and whole: send them at once.
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, peer, slot));
                },
                Err(e) => {
                    tracing::warn!(error = %e, "{label} listener: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // New connections are refused from here on.
    drop(listener);
    let drain = async {
        while let Some(done) = conns.join_next().await {
            log_task_end(label, done);
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            connections = conns.len(),
            "{label} listener: closing connections still busy after the grace period"
        );
        conns.shutdown().await;
    }
    limiter.log_summary(true);
}

fn log_task_end(label: &str, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "{label} listener: a connection task panicked");
        }
    }
}

/// Whether a just-accepted client has sent bytes already: a look at the
/// socket's queue that does not wait (the socket is non-blocking).
fn sent_already(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

/// Wait until a new connection has sent its first byte, within its slot's
/// first-byte timeout; false when it closed, stayed silent or was asked to
/// close meanwhile.
pub async fn first_byte(stream: &TcpStream, slot: &Slot) -> bool {
    slot.before_first_byte(sending(stream, slot)).await == Some(true)
}

/// Wait for the client's first byte (no time limit: see [`first_byte`]);
/// from then on it is sending a request, not idling. False when it closed
/// first.
pub async fn sending(stream: &TcpStream, slot: &Slot) -> bool {
    let mut byte = [0u8; 1];
    let sent = matches!(stream.peek(&mut byte).await, Ok(n) if n > 0);
    if sent {
        slot.sending();
    }
    sent
}

/// Any connection a listener serves: plain TCP or TLS over it.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// [`serve_listener`] for a listener that may speak TLS: with `tls`, the
/// first byte and the whole handshake must come within the first-byte
/// timeout (a client that has not finished it holds no place for long);
/// without, the first byte must. Then `connection` serves the stream.
pub async fn serve_maybe_tls<F, Fut>(
    listener: TcpListener,
    limiter: Arc<Limiter>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
    connection: F,
) where
    F: Fn(Box<dyn Io>, SocketAddr, Slot) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let label = limiter.label();
    let serve = move |stream: TcpStream, peer: SocketAddr, slot: Slot| {
        let (tls, connection) = (tls.clone(), connection.clone());
        async move {
            let Some(acceptor) = tls else {
                if first_byte(&stream, &slot).await {
                    connection(Box::new(stream), peer, slot).await;
                }
                return;
            };
            let handshake = async {
                if !sending(&stream, &slot).await {
                    return None;
                }
                Some(acceptor.accept(stream).await)
            };
            match slot.before_first_byte(handshake).await {
                Some(Some(Ok(tls))) => connection(Box::new(tls), peer, slot).await,
                Some(Some(Err(e))) => {
                    tracing::debug!(%peer, error = %e, "{label} TLS handshake failed")
                }
                Some(None) => {}
                None => {
                    tracing::debug!(%peer, "{label} TLS handshake unfinished, connection closed")
                }
            }
        }
    };
    serve_listener(listener, limiter, shutdown, serve).await;
}

/// Serve `stream` until the client closes it, `shutdown` asks, or the
/// limiter asks (through `slot`) to make room; then the request in flight
/// (if any) finishes and the connection closes.
pub async fn serve_connection<IO, S, B>(
    stream: IO,
    service: S,
    peer: SocketAddr,
    slot: Slot,
    shutdown: watch::Receiver<bool>,
    listener: &'static str,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>> + Send,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let service = Counted {
        inner: service,
        activity: slot.activity(),
    };
    let mut conn = pin!(http1::Builder::new()
        // The header timeout needs a timer; hyper has none of its own.
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service));
    let mut stop = pin!(stopped(shutdown));
    let mut asked = pin!(slot.asked_to_close());
    let mut grace = pin!(tokio::time::sleep(EVICTION_GRACE));
    let (mut stopping, mut evicted, mut in_grace) = (false, false, false);
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break Some(result),
            () = &mut stop, if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            () = &mut asked, if !evicted => {
                conn.as_mut().graceful_shutdown();
                (stopping, evicted, in_grace) = (true, true, true);
                grace.as_mut().reset(tokio::time::Instant::now() + EVICTION_GRACE);
            }
            () = &mut grace, if in_grace => {
                if slot.is_idle() {
                    break None;
                }
                // A request started after all: it finishes, then hyper
                // closes (keep-alive is off).
                in_grace = false;
            }
        }
    };
    if let Some(Err(e)) = result {
        tracing::debug!(%peer, error = %e, "{listener} connection ended with an error");
    }
}

/// The listener's service, marking its connection busy from a request's
/// complete head until hyper has written the answer's body.
struct Counted<S> {
    inner: S,
    activity: Activity,
}

impl<S, B> Service<Request<Incoming>> for Counted<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = Response<BusyBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = self.activity.busy();
        let answer = self.inner.call(req);
        Box::pin(async move { Ok(answer.await?.map(|body| BusyBody { body, _busy: busy })) })
    }
}

/// An answer's body that keeps its connection busy until hyper drops it.
struct BusyBody<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    // Hyper sends a Content-Length from it.
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// 405 for a method other than GET or HEAD (HEAD too: some probes and
/// fetchers use it; hyper leaves the body out), else `None`.
pub fn unless_get_or_head(method: &hyper::Method) -> Option<Response<Full<Bytes>>> {
    if method == hyper::Method::GET || method == hyper::Method::HEAD {
        return None;
    }
    let mut r = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed\n",
    );
    r.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static("GET, HEAD"),
    );
    Some(r)
}

/// An answer of the admin listener (every route's: health, connectors,
/// enrollment).
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Live figures, certificates and PKCS#12 files: no proxy or browser
    // should keep any of them.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON answer of the admin listener.
pub fn respond_json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec_pretty(body).expect("JSON serialises"),
    )
}

/// A request's body, whole: at most `max` bytes, within
/// [`BODY_READ_TIMEOUT`]; else the answer that refuses it. A chunked body
/// declares no length: it is read and counted so that an oversized one is
/// refused, not buffered.
pub async fn read_body(
    body: Incoming,
    max: usize,
    peer: SocketAddr,
    label: &str,
) -> Result<Bytes, Response<Full<Bytes>>> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large(max)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "{label} request: unreadable body");
            Err(closing(respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "unreadable body\n",
            )))
        }
        Err(_) => Err(closing(respond(
            StatusCode::REQUEST_TIMEOUT,
            "text/plain; charset=utf-8",
            "request body too slow\n",
        ))),
    }
}

/// The rest of the request may be unread: do not keep the connection.
pub fn closing(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub fn too_large(max: usize) -> Response<Full<Bytes>> {
    closing(respond(
        StatusCode::PAYLOAD_TOO_LARGE,
        "text/plain; charset=utf-8",
        format!("request body larger than {max} bytes\n"),
    ))
}

/// An HTML page with the headers every page of ours carries: `csp` as its
/// Content-Security-Policy, no framing, no MIME sniffing, no referrer,
/// nothing cached (pages show the directory's data).
pub fn html_page(status: StatusCode, html: String, csp: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// A query string as a map, each name and value `%XX`- and `+`-decoded (a
/// repeated parameter keeps its last value).
pub fn parse_query(q: Option<&str>) -> std::collections::HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

/// Decode `%XX` (and `+` as a space in a query, `plus_is_space`).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'+', _, _) if plus_is_space => out.push(b' '),
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::conn_limit::{Limits, ListenerStats};
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpSocket;

    const SLOW: Duration = Duration::from_millis(1500);
    const WAIT: Duration = Duration::from_secs(5);

    struct Server {
        addr: SocketAddr,
        stats: Arc<ListenerStats>,
        _stop: watch::Sender<bool>,
    }

    /// A listener whose `/slow` answers after [`SLOW`], everything else at once.
    async fn start(max_connections: usize, max_per_peer: usize, first_byte_ms: u64) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ListenerStats::new("test"));
        let limits = Limits {
            max_connections,
            max_per_peer,
            first_byte_timeout: Duration::from_millis(first_byte_ms),
        };
        let limiter = Limiter::new("test", limits, stats.clone());
        let (stop, rx) = watch::channel(false);
        let shutdown = rx.clone();
        let serve = move |stream, peer, slot| {
            let shutdown = shutdown.clone();
            async move {
                if !first_byte(&stream, &slot).await {
                    return;
                }
                let service = service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(SLOW).await;
                    }
                    Ok::<_, Infallible>(respond(StatusCode::OK, "text/plain", "ok\n"))
                });
                serve_connection(stream, service, peer, slot, shutdown, "test").await;
            }
        };
        tokio::spawn(serve_listener(listener, limiter, rx, serve));
        Server {
            addr,
            stats,
            _stop: stop,
        }
    }

    async fn connect_from(local: [u8; 4], to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((local, 0).into()).unwrap();
        socket.connect(to).await.unwrap()
    }

    async fn send(conn: &mut TcpStream, path: &str, close: bool) {
        let connection = if close { "close" } else { "keep-alive" };
        let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
    }

    /// Read one answer (all answers end in "ok\n"), or what came before
    /// the server closed.
    async fn answer(conn: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 512];
            while !got.ends_with(b"ok\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("an answer or a close");
        String::from_utf8_lossy(&got).into_owned()
    }

    async fn get(from: [u8; 4], to: SocketAddr, path: &str) -> String {
        let mut conn = connect_from(from, to).await;
        send(&mut conn, path, true).await;
        answer(&mut conn).await
    }

    /// Whether the server closes `conn` within `limit`.
    async fn closed_within(conn: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(limit, conn.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const HOME: [u8; 4] = [127, 0, 0, 1];
    const OTHER: [u8; 4] = [127, 0, 0, 2];

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
        let s = start(8, 8, 200).await;
        let mut silent = connect_from(HOME, s.addr).await;
        let mut started = connect_from(HOME, s.addr).await;
        started.write_all(b"GET /").await.unwrap();
        assert!(closed_within(&mut silent, WAIT).await);
        assert_eq!(s.stats.first_byte_timeout.load(Relaxed), 1);
        // Once a byte came, hyper's header timeout (10 s) applies.
        assert!(!closed_within(&mut started, Duration::from_millis(600)).await);
        started
            .write_all(b" HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert!(answer(&mut started).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_makes_room_and_a_busy_one_does_not() {
        let s = start(2, 2, 30_000).await;
        let mut idle = connect_from(HOME, s.addr).await;
        send(&mut idle, "/", false).await;
        assert!(answer(&mut idle).await.starts_with("HTTP/1.1 200"));
        let mut busy = connect_from(OTHER, s.addr).await;
        send(&mut busy, "/slow", true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        // The listener is full: the newcomer takes the idle one's place.
        assert!(get(OTHER, s.addr, "/").await.starts_with("HTTP/1.1 200"));
        assert!(closed_within(&mut idle, WAIT).await);
        assert!(answer(&mut busy).await.starts_with("HTTP/1.1 200"));
        assert_eq!(s.stats.evicted.load(Relaxed), 1);
        assert_eq!(s.stats.refused_max_connections.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_listener_of_busy_connections_refuses_and_a_peer_has_its_own_cap() {
        let s = start(3, 2, 30_000).await;
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut c = connect_from(HOME, s.addr).await;
            send(&mut c, "/slow", true).await;
            slow.push(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The peer's two are busy: its third is refused, another peer's is not.
        assert_eq!(get(HOME, s.addr, "/").await, "");
        assert_eq!(s.stats.refused_per_peer.load(Relaxed), 1);
        let mut third = connect_from(OTHER, s.addr).await;
        send(&mut third, "/slow", true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Three busy of three: nobody gets in until one is done.
        assert_eq!(get(OTHER, s.addr, "/").await, "");
        assert_eq!(s.stats.refused_max_connections.load(Relaxed), 1);
        for c in slow.iter_mut().chain([&mut third]) {
            assert!(answer(c).await.starts_with("HTTP/1.1 200"));
        }
        assert!(get(OTHER, s.addr, "/").await.starts_with("HTTP/1.1 200"));
        assert_eq!(s.stats.evicted.load(Relaxed), 0);
    }
}

#[cfg(test)]
mod query_tests {
    use super::parse_query;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some(
            "filter=userName%20eq%20%22a%40b%22&count=10&x&attributes=a,b+c&bad=%zz%4",
        ));
        assert_eq!(q["filter"], "userName eq \"a@b\"");
        assert_eq!(q["count"], "10");
        assert_eq!(q["x"], "");
        assert_eq!(q["attributes"], "a,b c");
        assert_eq!(q["bad"], "%zz%4");
    }
}
