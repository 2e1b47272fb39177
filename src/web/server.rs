//! The HTTPS server: one thread accepting, one thread per connection (a handful of
//! viewers, not a web farm). TLS by rustls (aws-lc-rs); plain HTTP is answered only for
//! peers on the loopback interface. HTTP/1.1 request heads are parsed by `httparse`, the
//! WebSocket framing is `tungstenite`'s.
//!
//! Routes: `GET /` (the page), `GET /<module>.js` (its ES modules), `POST /api/login`
//! (`{"pin": "123456"}` → `{"token": "…"}`, 403 wrong PIN, 429 blocked), `GET /ws?token=T`
//! (WebSocket: media and JSON, see [`super`]; 403 without a valid token), `POST
//! /api/webrtc?token=T` (`{"sdp": offer}` → `{"type": "answer", "sdp": answer}`, see
//! [`super::rtc`]; 403 without a valid token). Anything else 404.

use super::auth::{Gate, Refusal};
use super::Hub;
use crate::rt::{monotonic_ns, realtime_ns};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

/// The page and its modules, compiled in (`web/` in the repository).
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../../web/index.html")),
    ("/index.html", "text/html; charset=utf-8", include_str!("../../web/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_str!("../../web/app.js")),
    ("/clock.js", "text/javascript; charset=utf-8", include_str!("../../web/clock.js")),
    ("/xr.js", "text/javascript; charset=utf-8", include_str!("../../web/xr.js")),
    ("/boxes.js", "text/javascript; charset=utf-8", include_str!("../../web/boxes.js")),
];

/// Largest request head, bytes.
const MAX_HEAD: usize = 16 << 10;
/// Largest request body (login), bytes.
const MAX_BODY: usize = 4 << 10;
/// Largest WebRTC offer (JSON around the SDP), bytes; Chromium's are 4–10 kB.
const MAX_SDP: usize = 64 << 10;
/// How long a viewer's thread waits on its socket for a page message between frames.
const READ_SLICE: Duration = Duration::from_millis(1);

/// Everything a connection thread needs.
pub struct Shared {
    /// rustls configuration (certificate and key loaded).
    pub tls: Arc<rustls::ServerConfig>,
    /// PIN and tokens.
    pub gate: Mutex<Gate>,
    /// The stream.
    pub hub: Arc<Hub>,
}

/// A rustls server configuration for `id` (TLS 1.2 and 1.3, ALPN http/1.1).
///
/// Errors: the key does not match the certificate, or is of an unsupported type.
pub fn tls_config(id: super::cert::Identity) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(id.chain, id.key)
        .map_err(|e| format!("{}: {e}", id.cert_path.display()))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Binds `addr` and serves from a background thread.
///
/// Errors: the address cannot be bound (in use, no permission), naming it.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<(), String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("web server on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("web-accept".into())
        .spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let sh = shared.clone();
                let _ = std::thread::Builder::new().name("web-conn".into()).spawn(move || {
                    let _ = connection(c, sh);
                });
            }
        })
        .map_err(|e| format!("web server thread: {e}"))?;
    Ok(())
}

fn connection(tcp: TcpStream, sh: Arc<Shared>) -> std::io::Result<()> {
    let peer = tcp.peer_addr()?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut first = [0u8; 1];
    if tcp.peek(&mut first)? == 0 {
        return Ok(());
    }
    // A TLS record starts with 0x16 (handshake).
    if first[0] == 0x16 {
        let conn = rustls::ServerConnection::new(sh.tls.clone()).map_err(std::io::Error::other)?;
        let sock = tcp.try_clone()?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        serve(&mut s, &sock, peer.ip(), &sh, true)
    } else if peer.ip().is_loopback() {
        let sock = tcp.try_clone()?;
        let mut s = tcp;
        serve(&mut s, &sock, peer.ip(), &sh, false)
    } else {
        let mut s = tcp;
        respond(&mut s, 403, "text/plain", b"plain HTTP is served on localhost only: use https://\n", &[])
    }
}

fn respond<S: Write>(s: &mut S, code: u16, ctype: &str, body: &[u8], extra: &[(&str, String)]) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// Whether the request's `?token=` names a live session; a refusal is counted.
fn authorized(sh: &Shared, path: &str) -> bool {
    let token = query_param(path, "token").unwrap_or("");
    let ok = sh.gate.lock().map(|g| g.allows(token)).unwrap_or(false);
    if !ok {
        sh.hub.refused();
    }
    ok
}

fn query_param<'a>(path: &'a str, key: &str) -> Option<&'a str> {
    path.split_once('?')?.1.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// One request (then the connection closes, or becomes a WebSocket).
fn serve<S: Read + Write>(s: &mut S, sock: &TcpStream, peer: IpAddr, sh: &Shared, tls: bool) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let head_len = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_HEAD {
            return respond(s, 400, "text/plain", b"request head too large\n", &[]);
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&buf[..head_len]), Ok(httparse::Status::Complete(_))) {
        return respond(s, 400, "text/plain", b"malformed request\n", &[]);
    }
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("/").to_string();
    let header = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value).into_owned());
    let route = path.split('?').next().unwrap_or("/");
    match (method.as_str(), route) {
        ("GET", "/ws") => {
            if !authorized(sh, &path) {
                return respond(s, 403, "text/plain", b"no valid session: log in with the PIN first\n", &[]);
            }
            let Some(key) = header("Sec-WebSocket-Key") else {
                return respond(s, 400, "text/plain", b"expected a WebSocket upgrade\n", &[]);
            };
            let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
            let head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
            s.write_all(head.as_bytes())?;
            s.flush()?;
            // Bytes after the head (a page sending before our 101) belong to the socket.
            viewer(s, sock, sh, buf[head_len..].to_vec())
        }
        ("POST", "/api/webrtc") => {
            if !authorized(sh, &path) {
                return respond(s, 403, "text/plain", b"no valid session: log in with the PIN first\n", &[]);
            }
            let len: usize = header("Content-Length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            let Some(body) = read_body(s, &buf[head_len..], len, MAX_SDP)? else {
                return respond(s, 400, "text/plain", b"body too large\n", &[]);
            };
            let Some(offer) = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["sdp"].as_str().map(str::to_string)) else {
                return respond(s, 400, "text/plain", b"expected {\"sdp\": \"<SDP offer>\"}\n", &[]);
            };
            // The peer's UDP socket on the address the page reached us at.
            let host = sock.local_addr()?.ip();
            match super::rtc::answer(&offer, host, sh.hub.clone()) {
                Ok(answer) => respond(s, 200, "application/json", serde_json::json!({ "type": "answer", "sdp": answer }).to_string().as_bytes(), &[]),
                Err(e) => {
                    eprintln!("vr-stream[network]: WebRTC offer from {peer}: {e}");
                    respond(s, 400, "text/plain", format!("{e}\n").as_bytes(), &[])
                }
            }
        }
        ("POST", "/api/login") => {
            let len: usize = header("Content-Length").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            let Some(body) = read_body(s, &buf[head_len..], len, MAX_BODY)? else {
                return respond(s, 400, "text/plain", b"body too large\n", &[]);
            };
            let pin = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["pin"].as_str().map(str::to_string)).unwrap_or_default();
            let mut random = [0u8; 16];
            fill_random(&mut random);
            let r = sh.gate.lock().map_err(|_| std::io::Error::other("gate poisoned"))?.login(peer, &pin, monotonic_ns(), random);
            match r {
                Ok(token) => respond(s, 200, "application/json", serde_json::json!({ "token": token }).to_string().as_bytes(), &[]),
                Err(Refusal::WrongPin) => {
                    sh.hub.refused();
                    respond(s, 403, "application/json", br#"{"error":"wrong PIN"}"#, &[])
                }
                Err(Refusal::Blocked { retry_after_ns }) => {
                    sh.hub.refused();
                    let secs = retry_after_ns.div_ceil(1_000_000_000);
                    let body = serde_json::json!({ "error": "too many wrong PINs", "retry_after_s": secs }).to_string();
                    respond(s, 429, "application/json", body.as_bytes(), &[("Retry-After", secs.to_string())])
                }
            }
        }
        ("GET", "/favicon.ico") => respond(s, 204, "image/x-icon", b"", &[]),
        ("GET", _) => match ASSETS.iter().find(|(p, _, _)| *p == route) {
            Some((_, ctype, body)) => {
                let mut extra = vec![];
                if tls {
                    extra.push(("Strict-Transport-Security", "max-age=0".to_string()));
                }
                respond(s, 200, ctype, body.as_bytes(), &extra)
            }
            None => respond(s, 404, "text/plain", b"not found\n", &[]),
        },
        _ => respond(s, 405, "text/plain", b"method not allowed\n", &[]),
    }
}

/// The request body of `len` bytes (`early`: what came with the head); `None` if `len`
/// is over `max`. A body cut short by the peer is returned as far as it came.
fn read_body<S: Read>(s: &mut S, early: &[u8], len: usize, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    if len > max {
        return Ok(None);
    }
    let mut body = early.to_vec();
    let mut chunk = [0u8; 2048];
    while body.len() < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Some(body))
}

/// Fills `b` from the kernel's random source (getrandom(2)); the time as a last resort.
pub fn fill_random(b: &mut [u8]) {
    // SAFETY: getrandom writes at most b.len() bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, b.len(), 0) };
    if n != b.len() as isize {
        let t = realtime_ns() ^ monotonic_ns().rotate_left(29);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 8) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
}

/// A logged-in page: media out as it comes, page messages in between.
fn viewer<S: Read + Write>(s: &mut S, sock: &TcpStream, sh: &Shared, early: Vec<u8>) -> std::io::Result<()> {
    sock.set_read_timeout(Some(READ_SLICE))?;
    let mut ws = WebSocket::from_partially_read(s, early, Role::Server, None);
    if ws.send(Message::text(sh.hub.hello())).is_err() {
        return Ok(());
    }
    let (id, rx) = sh.hub.join();
    let mut det_seen = 0u64;
    let end = loop {
        if let Some((n, m)) = sh.hub.detections_after(det_seen) {
            det_seen = n;
            if ws.send(Message::text(m.as_str())).is_err() {
                break Ok(());
            }
        }
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(m) => {
                if ws.send(Message::binary(m.as_slice().to_vec())).is_err() {
                    break Ok(());
                }
                // Drain what queued meanwhile before reading.
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        }
        match ws.read() {
            Ok(Message::Text(t)) => {
                if let Some(reply) = sh.hub.page_message(t.as_bytes())
                    && ws.send(Message::text(reply)).is_err()
                {
                    break Ok(());
                }
            }
            Ok(Message::Close(_)) => break Ok(()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break Ok(()),
        }
    };
    sh.hub.leave(id);
    end
}
