//! The HTTPS server of the web stage: hyper (HTTP/1.1) with axum's router and WebSocket,
//! TLS by tokio-rustls (aws-lc-rs), on a current-thread tokio runtime in one thread of the
//! web stage. Plain HTTP is answered only for peers on the loopback interface.
//!
//! Routes: `GET /` (the page), `GET /<module>.js` (its ES modules), `POST /api/login`
//! (`{"pin": "123456"}` → 200 with the session cookie [`COOKIE`] (`HttpOnly; Secure;
//! SameSite=Strict`, Max-Age = `web.session_ttl_s`) and `{"expires_s": N}`, 403 wrong PIN,
//! 429 blocked), `GET /api/session` (204 with a valid session cookie, else 403), `GET /ws` (WebSocket: media and JSON, see [`super`]) and `POST
//! /api/webrtc` (`{"sdp": offer}` → `{"type": "answer", "sdp": answer}`, see
//! [`super::rtc`]), both 403 without a valid, unexpired session cookie and 503 beyond
//! `web.max_viewers` viewers. Anything else 404 (405 for a known path with another method).
//!
//! Only peers in `web.allow` (default: the `--ip` address and loopback) are served at
//! all: others get 403 for every request, the page included, before any PIN.
//!
//! Whoever reaches the port is untrusted, so every resource a peer can make this process
//! use is bounded (`[web]` keys, `config/default.toml`):
//! - connections open at once, in all (`max_connections`) and per client address
//!   (`max_connections_per_address`): one more is reset at accept, before any byte is read
//!   or any task exists for it;
//! - the TLS handshake and each request head must arrive within `header_timeout_ms`
//!   (also the idle time allowed between requests on a keep-alive connection: hyper's
//!   header read timeout starts when the previous response is written); a whole request
//!   (body included) within the same time again;
//! - request bodies up to `max_body_bytes`; hyper's read buffer to [`MAX_BUF`];
//! - viewers (WebSocket and WebRTC) up to `max_viewers`, each with a queue of
//!   [`super::VIEWER_QUEUE`] access units; a WebSocket whose page sent nothing for
//!   `idle_timeout_s` is closed (pages send a ping every second).

use super::Hub;
use super::auth::{Gate, Refusal};
use super::error::WebError;
use crate::rt::monotonic_ns;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The page and its modules, compiled in (`web/` in the repository).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/clock.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/clock.js"),
    ),
    (
        "/xr.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/xr.js"),
    ),
    (
        "/boxes.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/boxes.js"),
    ),
];

/// The session cookie's name.
pub const COOKIE: &str = "vrs_session";
/// hyper's largest read buffer per connection, bytes (its minimum is 8192; the default
/// ~400 kB would let each connection hold that much).
pub const MAX_BUF: usize = 16 << 10;
/// Largest message a page may send on the WebSocket, bytes (its JSON is under 1 kB).
pub const MAX_WS_MESSAGE: usize = 64 << 10;
/// Bytes queued for one WebSocket before a send waits (then the hub skips its frames).
pub const MAX_WS_WRITE_BUFFER: usize = 4 << 20;

/// The limits of [`config::WebConfig`](crate::config::WebConfig), in units.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// Connections open at once from one address.
    pub per_address: usize,
    /// TLS handshake and each request head (and a whole request) must take less.
    pub header_timeout: Duration,
    /// A WebSocket whose page sent nothing this long is closed.
    pub idle_timeout: Duration,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Viewers at once (WebSocket + WebRTC).
    pub viewers: usize,
}

/// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 address) is in `allowed`.
pub fn is_allowed(allowed: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        a => a,
    };
    allowed.iter().any(|n| n.contains(&ip))
}

impl Limits {
    /// From the `[web]` configuration.
    pub fn from_config(w: &crate::config::WebConfig) -> Limits {
        Limits {
            connections: w.max_connections as usize,
            per_address: w.max_connections_per_address as usize,
            header_timeout: Duration::from_millis(w.header_timeout_ms as u64),
            idle_timeout: Duration::from_secs(w.idle_timeout_s as u64),
            max_body: w.max_body_bytes as usize,
            viewers: w.max_viewers as usize,
        }
    }
}

/// Open connections, in all and per client address.
#[derive(Default)]
struct Admission {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; frees its place when dropped.
struct Admitted {
    app: Arc<App>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut g = self
            .app
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

/// A viewer's place (of [`Limits::viewers`]); freed when dropped.
pub struct ViewerSlot(Arc<AtomicUsize>);

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything the server's tasks share.
pub struct App {
    /// rustls configuration (certificate and key loaded).
    pub tls: Arc<rustls::ServerConfig>,
    /// PIN and sessions.
    pub gate: Mutex<Gate>,
    /// The stream.
    pub hub: Arc<Hub>,
    /// The limits in force.
    pub limits: Limits,
    /// Who may use the page at all (`web.allow`); others get 403 for every request.
    pub allowed: Vec<ipnet::IpNet>,
    admission: Admission,
    viewers: Arc<AtomicUsize>,
    /// Connections reset at accept because a limit was reached.
    pub limited: AtomicU64,
}

impl App {
    /// The server's state for `hub` with `gate` and `limits`.
    pub fn new(
        tls: Arc<rustls::ServerConfig>,
        gate: Gate,
        hub: Arc<Hub>,
        limits: Limits,
        allowed: Vec<ipnet::IpNet>,
    ) -> Arc<App> {
        Arc::new(App {
            tls,
            gate: Mutex::new(gate),
            hub,
            limits,
            allowed,
            admission: Admission::default(),
            viewers: Arc::default(),
            limited: AtomicU64::new(0),
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut g = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let per = g.1.get(&ip).copied().unwrap_or(0);
        if g.0 >= self.limits.connections || per >= self.limits.per_address {
            return None;
        }
        g.0 += 1;
        *g.1.entry(ip).or_insert(0) += 1;
        Some(Admitted {
            app: self.clone(),
            ip,
        })
    }

    /// A viewer's place, or `None` when [`Limits::viewers`] are watching.
    pub fn viewer_slot(&self) -> Option<ViewerSlot> {
        let n = self.viewers.fetch_add(1, Ordering::AcqRel);
        let slot = ViewerSlot(self.viewers.clone());
        (n < self.limits.viewers).then_some(slot)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.admission.open.lock().map(|g| g.0).unwrap_or(0)
    }
}

/// What a request's connection is (inserted into each request's extensions).
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
}

/// A rustls server configuration for `id` (TLS 1.2 and 1.3, ALPN http/1.1).
///
/// Errors: the key does not match the certificate, or is of an unsupported type.
pub fn tls_config(id: super::cert::Identity) -> Result<Arc<rustls::ServerConfig>, WebError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(WebError::TlsVersions)?
        .with_no_client_auth()
        .with_single_cert(id.chain, id.key)
        .map_err(|error| WebError::Tls {
            cert: id.cert_path,
            error,
        })?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Fills `b` from the OS CSPRNG (getrandom(2) through the `getrandom` crate).
///
/// Errors: the OS random source failed; the caller refuses to make a PIN or token
/// without it (there is no fallback).
pub fn os_random(b: &mut [u8]) -> Result<(), WebError> {
    getrandom::fill(b).map_err(WebError::Random)
}

/// Binds `addr` and serves `app` from a thread of its own (a current-thread tokio runtime).
///
/// Errors: the address cannot be bound (in use, no permission), naming it; no runtime.
pub fn start(addr: SocketAddr, app: Arc<App>) -> Result<(), WebError> {
    let bind = |error| WebError::Bind { addr, error };
    let l = std::net::TcpListener::bind(addr).map_err(bind)?;
    l.set_nonblocking(true).map_err(bind)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| WebError::Server {
            what: "runtime",
            error,
        })?;
    std::thread::Builder::new()
        .name("web-http".into())
        .spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => accept_loop(l, app).await,
                    Err(e) => eprintln!("vr-stream[web]: {addr}: {e}"),
                }
            })
        })
        .map_err(|error| WebError::Server {
            what: "thread",
            error,
        })?;
    Ok(())
}

async fn accept_loop(listener: tokio::net::TcpListener, app: Arc<App>) {
    let router = router(app.clone());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors or a peer gone before accept: try again soon.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(admitted) = app.admit(peer.ip()) else {
            // Reset (SO_LINGER 0): no FIN_WAIT state kept for a peer over the limit.
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            app.limited.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _ = connection(tcp, peer, admitted, router).await;
        });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    router: Router,
) -> std::io::Result<()> {
    let app = admitted.app.clone();
    let head = app.limits.header_timeout;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr()?;
    let mut first = [0u8; 1];
    let timed_out = |_| std::io::Error::from(std::io::ErrorKind::TimedOut);
    if tokio::time::timeout(head, tcp.peek(&mut first))
        .await
        .map_err(timed_out)??
        == 0
    {
        return Ok(());
    }
    // A TLS record starts with 0x16 (handshake).
    if first[0] == 0x16 {
        let acceptor = tokio_rustls::TlsAcceptor::from(app.tls.clone());
        let tls = tokio::time::timeout(head, acceptor.accept(tcp))
            .await
            .map_err(timed_out)??;
        http(
            hyper_util::rt::TokioIo::new(tls),
            Conn {
                peer,
                local,
                tls: true,
            },
            &app,
            router,
        )
        .await
    } else if peer.ip().is_loopback() {
        http(
            hyper_util::rt::TokioIo::new(tcp),
            Conn {
                peer,
                local,
                tls: false,
            },
            &app,
            router,
        )
        .await
    } else {
        use tokio::io::AsyncWriteExt;
        let body = "plain HTTP is served on localhost only: use https://\n";
        let mut tcp = tcp;
        let reply = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::time::timeout(head, tcp.write_all(reply.as_bytes()))
            .await
            .map_err(timed_out)?
    }
}

async fn http<I>(
    io: hyper_util::rt::TokioIo<I>,
    conn: Conn,
    app: &App,
    router: Router,
) -> std::io::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(conn);
        router.clone().oneshot(req)
    });
    hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.limits.header_timeout)
        .max_buf_size(MAX_BUF)
        .serve_connection(io, svc)
        .with_upgrades()
        .await
        .map_err(std::io::Error::other)
}

fn router(app: Arc<App>) -> Router {
    // What needs a live session: refused with 403 before a body is read or a WebSocket
    // upgraded. `GET /api/session` is 204 while the session cookie is valid (a reconnecting
    // page asks before it tries again, and shows the PIN form when its session is gone).
    let with_session = Router::new()
        .route("/api/session", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/webrtc", post(webrtc))
        .route("/ws", get(ws))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_session,
        ));
    let mut r = Router::new()
        .route("/api/login", post(login))
        .merge(with_session)
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }));
    for &(path, ctype, body) in ASSETS {
        r = r.route(
            path,
            get(move |Extension(c): Extension<Conn>| async move {
                let mut h = vec![
                    (header::CONTENT_TYPE, ctype),
                    (header::CACHE_CONTROL, "no-store"),
                ];
                if c.tls {
                    h.push((header::STRICT_TRANSPORT_SECURITY, "max-age=0"));
                }
                (
                    h.into_iter()
                        .map(|(k, v)| (k, HeaderValue::from_static(v)))
                        .collect::<HeaderMap>(),
                    body,
                )
            }),
        );
    }
    let limit = app.limits.max_body;
    r.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            whole_request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            allow_list,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// `web.allow`: a peer outside it gets 403 for every request, before any PIN is asked.
async fn allow_list(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Conn>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if is_allowed(&app.allowed, c.peer.ip()) {
        return next.run(req).await;
    }
    app.hub.refused();
    let nets: Vec<String> = app.allowed.iter().map(|n| n.to_string()).collect();
    let body = format!(
        "this viewer page is for {} only (web.allow; vr-stream --ip names the headset)\n",
        nets.join(", ")
    );
    (
        StatusCode::FORBIDDEN,
        [(header::CACHE_CONTROL, "no-store")],
        body,
    )
        .into_response()
}

/// A whole request (head and body) gets [`Limits::header_timeout`] to be handled; a
/// WebSocket's life after its 101 is not a request and is not limited by it.
async fn whole_request_timeout(
    State(app): State<Arc<App>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(app.limits.header_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request took too long\n").into_response(),
    }
}

fn text(code: StatusCode, msg: &'static str) -> Response {
    (code, [(header::CACHE_CONTROL, "no-store")], msg).into_response()
}

/// The session token in the request's [`COOKIE`], if any. The `Cookie` header is parsed by
/// the `cookie` crate (RFC 6265 §5.4 pairs).
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// Lets a request through only when it carries a live session; else 403 [`NO_SESSION`],
/// and the refusal is counted.
async fn require_session(
    State(app): State<Arc<App>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let token = session_token(req.headers()).unwrap_or_default();
    let ok = app
        .gate
        .lock()
        .map(|g| g.allows(&token, monotonic_ns()))
        .unwrap_or(false);
    if ok {
        return next.run(req).await;
    }
    app.hub.refused();
    text(StatusCode::FORBIDDEN, NO_SESSION)
}

const NO_SESSION: &str = "no valid session: log in with the PIN first\n";
const TOO_MANY: &str = "too many viewers: close another one first\n";

async fn login(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Conn>,
    body: Bytes,
) -> Response {
    let pin = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["pin"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut random = [0u8; 16];
    if let Err(e) = os_random(&mut random) {
        eprintln!("vr-stream[web]: login from {}: {e}", c.peer);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random source: cannot make a session\n",
        );
    }
    let (r, ttl) = {
        let mut g = app.gate.lock().unwrap_or_else(|e| e.into_inner());
        (
            g.login(c.peer.ip(), &pin, monotonic_ns(), random),
            g.ttl_s(),
        )
    };
    match r {
        Ok(token) => {
            let cookie = cookie::Cookie::build((COOKIE, token))
                .http_only(true)
                .secure(true)
                .same_site(cookie::SameSite::Strict)
                .path("/")
                .max_age(cookie::time::Duration::seconds(ttl as i64))
                .build();
            let set =
                HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""));
            let body = serde_json::json!({ "expires_s": ttl }).to_string();
            (
                StatusCode::OK,
                [
                    (header::SET_COOKIE, set),
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                body,
            )
                .into_response()
        }
        Err(Refusal::WrongPin) => {
            app.hub.refused();
            (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"wrong PIN"}"#,
            )
                .into_response()
        }
        Err(Refusal::Blocked { retry_after_ns }) => {
            app.hub.refused();
            let secs = retry_after_ns.div_ceil(1_000_000_000);
            let body = serde_json::json!({ "error": "too many wrong PINs", "retry_after_s": secs })
                .to_string();
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (header::RETRY_AFTER, secs.to_string()),
                ],
                body,
            )
                .into_response()
        }
    }
}

async fn webrtc(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Conn>,
    body: Bytes,
) -> Response {
    let Some(offer) = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["sdp"].as_str().map(str::to_string))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected {\"sdp\": \"<SDP offer>\"}\n",
        );
    };
    let Some(slot) = app.viewer_slot() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, TOO_MANY);
    };
    // The peer's UDP socket on the address the page reached us at.
    match super::rtc::answer(&offer, c.local.ip(), c.peer, app.hub.clone(), slot) {
        Ok(answer) => {
            axum::Json(serde_json::json!({ "type": "answer", "sdp": answer })).into_response()
        }
        Err(e) => {
            eprintln!("vr-stream[web]: WebRTC offer from {}: {e}", c.peer);
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
    }
}

async fn ws(
    State(app): State<Arc<App>>,
    Extension(c): Extension<Conn>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = app.viewer_slot() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, TOO_MANY);
    };
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .max_write_buffer_size(MAX_WS_WRITE_BUFFER)
        .on_upgrade(move |socket| viewer(socket, app, slot, c.peer))
}

/// A logged-in page on the WebSocket: media out as it comes, page messages in between.
async fn viewer(mut ws: WebSocket, app: Arc<App>, _slot: ViewerSlot, peer: SocketAddr) {
    let hub = app.hub.clone();
    if ws.send(Message::text(hub.hello())).await.is_err() {
        return;
    }
    let (id, mut rx) = hub.join(peer, crate::shm::stats::PageTransport::WebSocket);
    let mut det_seen = 0u64;
    let idle = app.limits.idle_timeout;
    let mut last_heard = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        if let Some((n, m)) = hub.detections_after(det_seen) {
            det_seen = n;
            if ws.send(Message::text(m.as_str())).await.is_err() {
                break;
            }
        }
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { break };
                if ws.send(Message::Binary(m)).await.is_err() {
                    break;
                }
            }
            msg = ws.recv() => {
                last_heard = tokio::time::Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(reply) = hub.page_message(id, t.as_bytes())
                            && ws.send(Message::text(reply)).await.is_err()
                        {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            _ = tick.tick() => {
                if last_heard.elapsed() > idle {
                    break;
                }
            }
        }
    }
    hub.leave(id);
}
