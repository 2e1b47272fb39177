// vr-stream viewer: log in with the PIN, then receive the stream over one of two transports
// and measure capture -> decoded latency with the clock offset from clock.js (NTP-style
// pings to vr-stream), reporting it back once a second:
// - WebRTC (the default): an SDP offer (recvonly H.264 video + data channel "vr") POSTed to
//   /api/webrtc; the browser's own jitter buffer, decoder and <video>; each frame's capture
//   time arrives over the data channel keyed by its RTP timestamp, and
//   requestVideoFrameCallback gives the RTP timestamp of each frame handed to the screen.
// - WebSocket + WebCodecs (?transport=ws): one access unit per message (layout in
//   src/web/mod.rs), VideoDecoder with optimizeForLatency, latest-wins drawing to a canvas.
// Wi-Fi drops: when the WebSocket closes, the peer connection's ICE goes disconnected or
// failed, or no frame is decoded for NO_FRAME_MS, the page drops the connection and makes
// a new one by itself (backoff RECONNECT_FIRST_MS doubling to RECONNECT_MAX_MS), keeping
// its login (the HttpOnly session cookie) while the session lasts; vr-stream starts every
// new viewer at an IDR. The HUD says "reconnecting" meanwhile. A session that is gone
// (vr-stream restarted, or expired) brings the PIN form back.
import { ClockSync, nowMs, quantile } from './clock.js';
import { enterVR } from './xr.js';
import { paintBoxes, BOXES_TTL_MS } from './boxes.js';

const params = new URLSearchParams(location.search);
// Chunks the decoder may hold before the page skips to the next IDR.
const MAX_DECODE_QUEUE = 8;
// No frame decoded for this long: the connection is dropped and made again.
const NO_FRAME_MS = 2000;
// The first connection gets longer for its first frame (ICE gathering, decoder set-up).
const FIRST_FRAME_MS = 8000;
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 2000;
// Requests of a reconnecting page (session check, WebRTC offer) give up after this long.
const REQUEST_TIMEOUT_MS = 2000;
const $ = (id) => document.getElementById(id);

// Everything a test (or a curious user, from the console) may want to read.
const state = (window.__vr = {
  status: 'login', // login | refused | connecting | streaming | reconnecting | error
  reconnects: 0, // connections made again after a drop
  lastDrop: null, // why the last connection was dropped
  error: null,
  received: 0,
  keyframes: 0,
  decoded: 0,
  decodedIds: [],
  latencies: [], // capture -> decoded, ms, last 600
  // capture -> expected display, ms, last 600: WebRTC, requestVideoFrameCallback's
  // expectedDisplayTime; WebSocket, the drawing frame's time + one display refresh
  displayLatencies: [],
  decodeMs: [], // chunk in -> frame out, ms, last 600
  drawn: 0, // frames drawn (at most one per display refresh)
  dropped: 0, // frames not given to a decoder that fell behind (then: the next IDR)
  offset: null,
  codec: null,
  transport: null, // 'webrtc' | 'ws'
  framesSent: 0, // WebRTC: frame messages from vr-stream (one per access unit written)
  rtc: null, // WebRTC: the inbound-rtp statistics, refreshed once a second
  detections: { messages: 0, last: null, ages: [] }, // --yolo: the newest set (see drawBoxes); ages: capture -> arrival, ms
  xr: null, // { views, frames, pixels } once "Enter VR" started a session
});

async function login(pin) {
  const r = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ pin }),
  });
  if (r.status === 429) {
    const j = await r.json().catch(() => ({}));
    throw new Error(`too many wrong PINs: wait ${j.retry_after_s ?? 30} s`);
  }
  if (!r.ok) throw new Error('wrong PIN');
  // The session is an HttpOnly cookie the browser keeps and sends with /ws and
  // /api/webrtc: no token in any URL, none readable by scripts.
}

// Detection boxes (--yolo) over the 2D view: `m` is a `detections` message (boxes in frame
// pixels), `el` the element showing the video (object-fit: contain). Cleared BOXES_TTL_MS
// after the last set.
let boxesTimer = null;
function drawBoxes(m, el) {
  const c = $('boxes');
  const dpr = window.devicePixelRatio || 1;
  const cw = el.clientWidth, ch = el.clientHeight;
  if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) {
    c.width = Math.round(cw * dpr);
    c.height = Math.round(ch * dpr);
  }
  const g = c.getContext('2d');
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.clearRect(0, 0, c.width, c.height);
  clearTimeout(boxesTimer);
  if (!m || !m.w || !m.h) return;
  const k = Math.min(cw / m.w, ch / m.h) * dpr;
  paintBoxes(g, m, { k, ox: (c.width - m.w * k) / 2, oy: (c.height - m.h * k) / 2, unit: dpr });
  boxesTimer = setTimeout(() => g.clearRect(0, 0, c.width, c.height), BOXES_TTL_MS);
}

// The RFC 6381 codec string (avc1.PPCCLL: profile_idc, constraint flags, level_idc) of
// the first SPS (NAL type 7) in an Annex-B access unit, or null.
function codecOf(au) {
  for (let i = 0; i + 7 < au.length; i++) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1 && (au[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, '0');
      return `avc1.${hex(au[i + 4])}${hex(au[i + 5])}${hex(au[i + 6])}`;
    }
  }
  return null;
}

function keep(arr, v, n = 600) {
  arr.push(v);
  if (arr.length > n) arr.shift();
}

// What both transports share: the clock, the HUD and report, "Enter VR". `send(obj)`
// sends a JSON message to vr-stream (false when the channel is not open).
function common(send) {
  const clock = new ClockSync();
  const io = {
    clock,
    hello: null,
    xrOn: false,
    xrLatest: null, // the newest frame (a VideoFrame the page owns), for the XR session
    boxes: null, // --yolo: { m: the newest detections message, at: performance.now() on arrival }
    send,
    askKeyframe: (() => {
      let last = 0;
      return () => {
        const t = performance.now();
        if (t - last > 200 && send({ type: 'keyframe' })) last = t;
      };
    })(),
    onMessage(m) {
      if (m.type === 'hello') {
        io.hello = m;
        state.codec = m.codec || state.codec;
      } else if (m.type === 'pong') {
        clock.add(m.t1, m.t2, nowMs());
        state.offset = clock.best()?.offset ?? null;
      } else if (m.type === 'detections') {
        const b = clock.best();
        state.detections.messages++;
        // Age on arrival: capture -> detections here (the detector's time included).
        state.detections.last = { ...m, ageMs: b ? nowMs() - (m.cap - b.offset) : null };
        if (b) keep(state.detections.ages, state.detections.last.ageMs);
        io.boxes = { m, at: performance.now() };
        drawBoxes(m, state.transport === 'ws' ? $('view') : $('video'));
      }
    },
    /** A frame reached the screen path: capture time (server ms), decode time (ms), id. */
    onDecoded(capMs, decodeMs, id, t = nowMs()) {
      state.decoded++;
      state.status = 'streaming';
      io.lastFrameAt = performance.now();
      if (capMs == null) return;
      keep(state.decodedIds, id, 100000);
      if (decodeMs != null) keep(state.decodeMs, decodeMs);
      const b = clock.best();
      if (b) keep(state.latencies, t - (capMs - b.offset));
    },
    /** A frame is expected on the display at `t` (Unix ms): capture time (server ms). */
    onDisplayed(capMs, t) {
      const b = clock.best();
      if (capMs != null && b) keep(state.displayLatencies, t - (capMs - b.offset));
    },
    setXrFrame(frame) {
      if (io.xrLatest) io.xrLatest.close();
      io.xrLatest = frame;
    },
    lastFrameAt: 0,
  };
  let pings = 0;
  const pinger = setInterval(() => {
    pings++;
    if (pings < 12 || pings % 8 === 0) send({ type: 'ping', t1: nowMs() }); // 4/s for 3 s, then every 2 s
  }, 250);

  // "Enter VR" when the browser has immersive-vr (the Quest Browser; an emulator in tests).
  const enter = $('enter');
  if (navigator.xr) {
    navigator.xr.isSessionSupported('immersive-vr').then((ok) => {
      if (!ok) return;
      enter.style.display = 'block';
      enter.onclick = async () => {
        try {
          io.xrOn = true;
          const session = await enterVR({
            source: () => io.xrLatest,
            boxes: () => io.boxes,
            hud: () => $('hud').textContent,
            stereo: !!(io.hello && io.hello.stereo),
            probe: params.has('xrprobe'),
            report: (r) => (state.xr = { ...r, pixels: { ...r.pixels }, overlay: r.overlay && { ...r.overlay }, hud: r.hud && { ...r.hud } }),
          });
          enter.style.display = 'none';
          session.addEventListener('end', () => {
            io.xrOn = false;
            enter.style.display = 'block';
          });
        } catch (e) {
          io.xrOn = false;
          state.error = `Enter VR: ${e.message || e}`;
        }
      };
    });
  }

  // Once a second: the HUD, and the report to vr-stream (it shows in its stats).
  let lastDecoded = 0;
  let lastT = performance.now();
  const reporter = setInterval(async () => {
    const t = performance.now();
    const fps = ((state.decoded - lastDecoded) * 1000) / (t - lastT);
    lastDecoded = state.decoded;
    lastT = t;
    if (io.stats) await io.stats().catch(() => {});
    const dp50 = quantile(state.displayLatencies, 0.5);
    const dp99 = quantile(state.displayLatencies, 0.99);
    const p50 = quantile(state.latencies, 0.5);
    const p99 = quantile(state.latencies, 0.99);
    const dec = quantile(state.decodeMs, 0.5);
    const h = io.hello;
    $('hud').textContent =
      (state.status === 'reconnecting' ? `reconnecting… (${state.lastDrop})\n` : '') +
      `${h ? `${h.width}x${h.height} ${state.codec || 'H.264'} over ${state.transport === 'ws' ? 'WebSocket' : 'WebRTC'}` : ''}\n` +
      `fps ${fps.toFixed(1)}  decode ${dec.toFixed(1)} ms\n` +
      `capture->decoded p50 ${p50.toFixed(1)} p99 ${p99.toFixed(1)} ms\n` +
      `capture->display p50 ${dp50.toFixed(1)} p99 ${dp99.toFixed(1)} ms (expected)` +
      (state.detections.last ? `\ndetections ${state.detections.last.boxes.length} (p50 ${quantile(state.detections.ages, 0.5).toFixed(0)} ms after capture)` : '');
    send({ type: 'stats', transport: state.transport, decoded: state.decoded, latency_p50_ms: p50, latency_p99_ms: p99, display_p50_ms: dp50, display_p99_ms: dp99, decode_ms: dec, fps, reconnects: state.reconnects });
  }, 1000);
  return io;
}

// The connection in use (replaced on every reconnect); `idle` while there is none.
const idle = { send: () => false, close() {} };
let conn = idle;
let io = null;
let gen = 0; // bumped when a connection is dropped: its late callbacks then do nothing
let backoff = RECONNECT_FIRST_MS;
let connectedAt = 0;
let watchdog = null;

function fetchTimeout(url, opts = {}) {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), REQUEST_TIMEOUT_MS);
  return fetch(url, { ...opts, signal: ac.signal }).finally(() => clearTimeout(t));
}

function start() {
  state.status = 'connecting';
  $('login').style.display = 'none';
  const want = params.get('transport') || 'webrtc';
  state.transport = want === 'ws' || !('RTCPeerConnection' in window) ? 'ws' : 'webrtc';
  (state.transport === 'ws' ? $('view') : $('video')).style.display = 'block';
  if (!io) io = common((m) => conn.send(m));
  clearInterval(watchdog);
  watchdog = setInterval(() => {
    if (conn === idle) return;
    const limit = state.decoded ? NO_FRAME_MS : FIRST_FRAME_MS;
    if (performance.now() - Math.max(io.lastFrameAt, connectedAt) > limit) drop(`no frame for ${limit / 1000} s`);
  }, 250);
  connect();
}

// One connection attempt; a failure is a drop (then another attempt after the backoff).
async function connect() {
  const my = ++gen;
  const down = (why) => my === gen && drop(why);
  try {
    if (state.reconnects > 0) {
      const r = await fetchTimeout('/api/session');
      if (r.status === 403) return sessionGone();
      if (!r.ok) throw new Error(`session check: HTTP ${r.status}`);
    }
    if (my !== gen) return;
    const c = await (state.transport === 'ws' ? connectWs(io, down) : connectRtc(io, down));
    if (my !== gen) return c.close();
    conn = c;
    connectedAt = performance.now();
  } catch (e) {
    if (e.refused) return sessionGone();
    down(e.message || String(e));
  }
}

function drop(why) {
  gen++;
  try {
    conn.close();
  } catch {}
  conn = idle;
  state.reconnects++;
  state.lastDrop = why;
  state.status = 'reconnecting';
  $('hud').textContent = `reconnecting… (${why})`;
  setTimeout(connect, backoff);
  backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
}

function sessionGone() {
  gen++;
  clearInterval(watchdog);
  conn.close();
  conn = idle;
  state.status = 'refused';
  state.error = 'the session ended (vr-stream restarted or it expired): enter the PIN again';
  $('msg').textContent = state.error;
  $('login').style.display = 'flex';
}

// WebRTC: the browser depacketizes, decodes and presents; the page pairs each presented
// frame (requestVideoFrameCallback: RTP timestamp, presentation time, decode time) with
// the capture time vr-stream sent for that RTP timestamp over the data channel.
async function connectRtc(io, down) {
  const video = $('video');
  let closed = false;
  const pc = new RTCPeerConnection({ iceServers: [] });
  const tr = pc.addTransceiver('video', { direction: 'recvonly' });
  const dc = pc.createDataChannel('vr');
  const send = (m) => dc.readyState === 'open' && (dc.send(JSON.stringify(m)), true);
  const caps = new Map(); // RTP timestamp -> { cap (server ms), id }
  dc.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === 'frame') {
      state.framesSent++;
      state.received++;
      caps.set(m.rtp, { cap: m.cap, id: m.id });
      if (caps.size > 240) caps.delete(caps.keys().next().value);
    } else io.onMessage(m);
  };
  // Ask the jitter buffer for no extra delay (playout-delay 0/0 also comes in the RTP
  // header extension); older Chromium knows only playoutDelayHint (seconds).
  if ('jitterBufferTarget' in tr.receiver) tr.receiver.jitterBufferTarget = 0;
  else tr.receiver.playoutDelayHint = 0;
  pc.ontrack = (ev) => {
    video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    video.play().catch((e) => (state.error = `video: ${e.message}`));
  };
  pc.onconnectionstatechange = () => {
    if (['disconnected', 'failed', 'closed'].includes(pc.connectionState)) down(`WebRTC connection ${pc.connectionState}`);
  };
  pc.oniceconnectionstatechange = () => {
    if (['disconnected', 'failed'].includes(pc.iceConnectionState)) down(`ICE ${pc.iceConnectionState}`);
  };
  const onVideoFrame = (_now, md) => {
    if (closed) return;
    video.requestVideoFrameCallback(onVideoFrame);
    const c = caps.get(md.rtpTimestamp);
    // presentationTime: when the decoded frame was handed to the compositor.
    const t = performance.timeOrigin + md.presentationTime;
    io.onDecoded(c?.cap, md.processingDuration != null ? md.processingDuration * 1000 : null, c?.id, t);
    if (md.expectedDisplayTime != null) io.onDisplayed(c?.cap, performance.timeOrigin + md.expectedDisplayTime);
    if (io.xrOn) io.setXrFrame(new VideoFrame(video, { timestamp: md.rtpTimestamp }));
    else state.drawn++;
  };
  video.requestVideoFrameCallback(onVideoFrame);
  // The browser's own counts: what its decoder did (not only what reached the screen).
  io.stats = async () => {
    const r = await pc.getStats(tr.receiver.track);
    r.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        state.rtc = {
          framesReceived: s.framesReceived, framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
          keyFramesDecoded: s.keyFramesDecoded, packetsLost: s.packetsLost, nackCount: s.nackCount,
          pliCount: s.pliCount, jitterBufferDelay: s.jitterBufferDelay, jitterBufferEmittedCount: s.jitterBufferEmittedCount,
          totalDecodeTime: s.totalDecodeTime,
        };
      }
    });
  };

  await pc.setLocalDescription(await pc.createOffer());
  // Not trickle: wait until the host candidates are in the offer (at most 2 s).
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      const done = () => pc.iceGatheringState === 'complete' && resolve();
      pc.addEventListener('icegatheringstatechange', done);
      setTimeout(resolve, 2000);
    });
  }
  const r = await fetchTimeout('/api/webrtc', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp }),
  });
  const close = () => {
    closed = true;
    pc.close();
  };
  if (r.status === 403) {
    close();
    throw Object.assign(new Error('session refused: log in again'), { refused: true });
  }
  if (!r.ok) {
    close();
    throw new Error(`offer refused: ${await r.text()}`);
  }
  const answer = await r.json();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  return { send, close };
}

// WebSocket + WebCodecs.
function connectWs(io, down) {
  const canvas = $('view');
  const ctx = canvas.getContext('2d');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  const send = (m) => ws.readyState === 1 && (ws.send(JSON.stringify(m)), true);
  const pending = new Map(); // chunk timestamp -> { id, capMs (server clock), tIn }
  let decoder = null;
  let waitKey = true;

  let toDraw = null;
  let toDrawCap = null; // its capture time (server ms)
  let drawScheduled = false;
  // The display's refresh interval, ms, from successive animation frames (60 Hz at first).
  let refreshMs = 1000 / 60;
  let lastRaf = null;
  function draw(ts) {
    drawScheduled = false;
    if (lastRaf != null && ts - lastRaf > 4 && ts - lastRaf < 50) refreshMs += (ts - lastRaf - refreshMs) / 16;
    lastRaf = ts;
    const frame = toDraw;
    toDraw = null;
    if (!frame) return;
    if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
      canvas.width = frame.displayWidth;
      canvas.height = frame.displayHeight;
    }
    ctx.drawImage(frame, 0, 0);
    frame.close();
    state.drawn++;
    // Drawn in the animation frame that started at `ts`: shown at the next refresh.
    io.onDisplayed(toDrawCap, performance.timeOrigin + ts + refreshMs);
  }

  function makeDecoder() {
    decoder = new VideoDecoder({
      output: (frame) => {
        const p = pending.get(frame.timestamp);
        pending.delete(frame.timestamp);
        if (io.xrOn) {
          io.setXrFrame(frame);
        } else {
          // Latest-wins to the screen: one draw per display refresh, of the newest frame.
          if (toDraw) toDraw.close();
          toDraw = frame;
          toDrawCap = p?.capMs;
          if (!drawScheduled) {
            drawScheduled = true;
            requestAnimationFrame(draw);
          }
        }
        io.onDecoded(p?.capMs, p ? performance.now() - p.tIn : null, p?.id);
      },
      error: (e) => {
        state.error = String(e);
        waitKey = true;
        decoder = null; // a new one at the next keyframe
        io.askKeyframe();
      },
    });
    configured = null;
  }
  let configured = null; // the codec string the decoder is configured with
  // (Re)configures for a keyframe's SPS: the hello's codec string is empty when the page
  // joined before vr-stream's first IDR, and a new SPS may bring another level.
  function configure(au) {
    const codec = codecOf(au) || state.codec || 'avc1.42e01f';
    if (codec === configured) return;
    // No `description`: the chunks are Annex-B. optimizeForLatency: without it the
    // decoder holds each frame until the next arrives.
    decoder.configure({ codec, optimizeForLatency: true, hardwareAcceleration: 'no-preference' });
    configured = state.codec = codec;
  }

  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      io.onMessage(JSON.parse(ev.data));
      return;
    }
    const dv = new DataView(ev.data);
    if (dv.getUint8(0) !== 1) return;
    const key = (dv.getUint8(1) & 1) === 1;
    const id = dv.getUint32(4);
    const capMs = Number(dv.getBigUint64(8)) / 1e6;
    state.received++;
    if (key) state.keyframes++;
    if (waitKey && !key) {
      state.dropped++;
      return;
    }
    // Latest-wins: a decoder that falls behind would turn its backlog into latency. Drop
    // to the next IDR instead, and ask for it (like a PLI).
    if (!key && decoder && decoder.decodeQueueSize > MAX_DECODE_QUEUE) {
      state.dropped++;
      waitKey = true;
      io.askKeyframe();
      return;
    }
    if (!decoder || decoder.state === 'closed') {
      if (!key) return;
      makeDecoder();
    }
    if (key) configure(new Uint8Array(ev.data, 24));
    waitKey = false;
    pending.set(id, { id, capMs, tIn: performance.now() });
    if (pending.size > 120) pending.delete(pending.keys().next().value);
    try {
      decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp: id, data: new Uint8Array(ev.data, 24) }));
    } catch (e) {
      state.error = String(e);
      waitKey = true;
    }
  };
  ws.onclose = () => down('WebSocket closed');
  return {
    send,
    close() {
      ws.onclose = null;
      ws.close();
      if (decoder && decoder.state !== 'closed') decoder.close();
      if (toDraw) toDraw.close();
      toDraw = null;
    },
  };
}

async function attempt(pin) {
  try {
    await login(pin);
    start();
  } catch (e) {
    state.status = 'refused';
    state.error = e.message;
    $('msg').textContent = e.message;
  }
}

$('pinform').addEventListener('submit', (ev) => {
  ev.preventDefault();
  attempt($('pin').value);
});
if (!('VideoDecoder' in window) && params.get('transport') === 'ws') {
  state.status = 'error';
  state.error = 'this browser has no WebCodecs VideoDecoder (needs a secure context: https)';
  $('msg').textContent = state.error;
} else if (params.has('pin')) {
  attempt(params.get('pin'));
}
