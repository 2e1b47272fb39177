// vr-stream viewer: log in with the PIN, receive access units over a WebSocket (one per
// message, layout in src/web/mod.rs), decode with WebCodecs, draw to a canvas, measure
// capture -> decoded latency with the clock offset from clock.js, report it back.
import { ClockSync, nowMs, quantile } from './clock.js';
import { enterVR } from './xr.js';

const params = new URLSearchParams(location.search);
// Chunks the decoder may hold before the page skips to the next IDR.
const MAX_DECODE_QUEUE = 8;
const $ = (id) => document.getElementById(id);

// Everything a test (or a curious user, from the console) may want to read.
const state = (window.__vr = {
  status: 'login', // login | refused | connecting | streaming | closed | error
  error: null,
  received: 0,
  keyframes: 0,
  decoded: 0,
  decodedIds: [],
  latencies: [], // capture -> decoded, ms, last 600
  decodeMs: [], // chunk in -> frame out, ms, last 600
  drawn: 0, // frames drawn (at most one per display refresh)
  dropped: 0, // frames not given to a decoder that fell behind (then: the next IDR)
  offset: null,
  codec: null,
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
  return (await r.json()).token;
}

function keep(arr, v, n = 600) {
  arr.push(v);
  if (arr.length > n) arr.shift();
}

function start(token) {
  state.status = 'connecting';
  $('login').style.display = 'none';
  const canvas = $('view');
  canvas.style.display = 'block';
  const ctx = canvas.getContext('2d');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(token)}`);
  ws.binaryType = 'arraybuffer';
  const clock = new ClockSync();
  const pending = new Map(); // chunk timestamp -> { capMs (server clock), tIn }
  let decoder = null;
  let waitKey = true;
  let hello = null;

  let lastAsk = 0;
  const askKeyframe = () => {
    const t = performance.now();
    if (ws.readyState === 1 && t - lastAsk > 200) {
      lastAsk = t;
      ws.send(JSON.stringify({ type: 'keyframe' }));
    }
  };
  const ping = () => ws.readyState === 1 && ws.send(JSON.stringify({ type: 'ping', t1: nowMs() }));
  let pings = 0;
  const pinger = setInterval(() => {
    pings++;
    if (pings < 12 || pings % 8 === 0) ping(); // 4/s for 3 s, then every 2 s
  }, 250);

  let toDraw = null;
  let drawScheduled = false;
  let xrLatest = null; // the newest frame, for the XR session (which uploads it)
  let xrOn = false;
  function draw() {
    drawScheduled = false;
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
  }

  function makeDecoder() {
    decoder = new VideoDecoder({
      output: (frame) => {
        const p = pending.get(frame.timestamp);
        pending.delete(frame.timestamp);
        if (xrOn) {
          if (xrLatest) xrLatest.close();
          xrLatest = frame;
        } else {
        // Latest-wins to the screen: one draw per display refresh, of the newest frame.
        if (toDraw) toDraw.close();
        toDraw = frame;
        if (!drawScheduled) {
          drawScheduled = true;
          requestAnimationFrame(draw);
        }
        }
        const t = nowMs();
        state.decoded++;
        state.status = 'streaming';
        if (p) {
          keep(state.decodedIds, p.id, 100000);
          keep(state.decodeMs, performance.now() - p.tIn);
          const b = clock.best();
          if (b) keep(state.latencies, t - (p.capMs - b.offset));
        }
      },
      error: (e) => {
        state.error = String(e);
        waitKey = true;
        decoder = null; // a new one at the next keyframe
        askKeyframe();
      },
    });
    // No `description`: the chunks are Annex-B. optimizeForLatency: without it the
    // decoder holds each frame until the next arrives.
    decoder.configure({ codec: state.codec, optimizeForLatency: true, hardwareAcceleration: 'no-preference' });
  }

  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      const m = JSON.parse(ev.data);
      if (m.type === 'hello') {
        hello = m;
        state.codec = m.codec || 'avc1.42e01f';
      } else if (m.type === 'pong') {
        clock.add(m.t1, m.t2, nowMs());
        state.offset = clock.best()?.offset ?? null;
      }
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
      askKeyframe();
      return;
    }
    if (!decoder || decoder.state === 'closed') {
      if (!key) return;
      makeDecoder();
    }
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
  // "Enter VR" when the browser has immersive-vr (the Quest Browser; an emulator in tests).
  const enter = $('enter');
  if (navigator.xr) {
    navigator.xr.isSessionSupported('immersive-vr').then((ok) => {
      if (!ok) return;
      enter.style.display = 'block';
      enter.onclick = async () => {
        try {
          xrOn = true;
          const session = await enterVR({
            source: () => xrLatest,
            stereo: !!(hello && hello.stereo),
            probe: params.has('xrprobe'),
            report: (r) => (state.xr = { ...r, pixels: { ...r.pixels } }),
          });
          enter.style.display = 'none';
          session.addEventListener('end', () => {
            xrOn = false;
            enter.style.display = 'block';
          });
        } catch (e) {
          xrOn = false;
          state.error = `Enter VR: ${e.message || e}`;
        }
      };
    });
  }

  ws.onclose = () => {
    clearInterval(pinger);
    clearInterval(reporter);
    if (state.status !== 'error') state.status = 'closed';
  };

  // Once a second: the HUD, and the report to vr-stream (it shows in its stats).
  let lastDecoded = 0;
  let lastT = performance.now();
  const reporter = setInterval(() => {
    const t = performance.now();
    const fps = ((state.decoded - lastDecoded) * 1000) / (t - lastT);
    lastDecoded = state.decoded;
    lastT = t;
    const p50 = quantile(state.latencies, 0.5);
    const p99 = quantile(state.latencies, 0.99);
    const dec = quantile(state.decodeMs, 0.5);
    $('hud').textContent =
      `${hello ? `${hello.width}x${hello.height} ${state.codec}` : ''}\n` +
      `fps ${fps.toFixed(1)}  decode ${dec.toFixed(1)} ms\n` +
      `capture->decoded p50 ${p50.toFixed(1)} p99 ${p99.toFixed(1)} ms`;
    if (ws.readyState === 1) {
      ws.send(JSON.stringify({ type: 'stats', decoded: state.decoded, latency_p50_ms: p50, latency_p99_ms: p99, decode_ms: dec, fps }));
    }
  }, 1000);
}

async function attempt(pin) {
  try {
    const token = await login(pin);
    start(token);
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
if (!('VideoDecoder' in window)) {
  state.status = 'error';
  state.error = 'this browser has no WebCodecs VideoDecoder (needs a secure context: https)';
  $('msg').textContent = state.error;
} else if (params.has('pin')) {
  attempt(params.get('pin'));
}
