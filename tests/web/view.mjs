// Opens the vr-stream viewer page in headless Chromium (Debian's, driven by playwright-core)
// and prints what the page saw as one JSON document on stdout.
//   node view.mjs URL SECONDS stream   -> waits for decoded frames, then measures SECONDS
//   node view.mjs URL SECONDS refused  -> expects the PIN refused and no media at all
//   node view.mjs URL SECONDS xr       -> with Meta's WebXR emulator (iwer, Quest 3)
//                                         installed before the page loads: clicks
//                                         "Enter VR", reports the session's views and
//                                         the pixel at each eye's centre and the pixels
//                                         the YOLO boxes changed (?xrprobe=1)
//   node view.mjs URL SECONDS timeline -> once streaming, samples the page every 100 ms for
//                                         SECONDS: [Unix ms, decoded, status, reconnects,
//                                         whether the HUD says "reconnecting"]
//   node view.mjs URL SECONDS xr-turn  -> the same with the head turned 60 degrees left;
//                                         then straight again, then the trigger pressed:
//                                         the eye-centre pixels after each
// Also, in every mode: the server's answers to a wrong PIN, to a WebSocket upgrade and to
// a WebRTC offer with no session cookie and with a forged one (HTTP status codes), from
// Node's own HTTPS client; the URLs the page requested (`requests`) and the session
// cookie's attributes as the browser stored them (`cookie`).
// The page's transport is WebRTC unless the URL says ?transport=ws.
import { chromium } from 'playwright-core';
import https from 'node:https';
import http from 'node:http';
import { createRequire } from 'node:module';

const [url, secs = '5', mode = 'stream'] = process.argv.slice(2);
const xr = mode === 'xr' || mode === 'xr-turn';
const u = new URL(url);
const client = u.protocol === 'https:' ? https : http;

function request(path, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = client.request(
      { host: u.hostname, port: u.port, path, method, headers, rejectUnauthorized: false },
      (res) => {
        res.resume();
        resolve(res.statusCode);
      },
    );
    req.on('upgrade', (res, sock) => {
      sock.destroy();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

const wrongPin = await request('/api/login', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ pin: '000000x' }),
});
const upgrade = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
const forged = { Cookie: 'vrs_session=0123456789abcdef0123456789abcdef' };
const wsNoToken = await request('/ws', { headers: upgrade });
const wsForged = await request('/ws', { headers: { ...upgrade, ...forged } });
const offer = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sdp: 'v=0\r\n' }) };
const rtcNoToken = await request('/api/webrtc', offer);
const rtcForged = await request('/api/webrtc', { ...offer, headers: { ...offer.headers, ...forged } });

// Detection boxes drawn on the 2D overlay: non-transparent pixels of #boxes now.
function boxPixels(page) {
  return page.evaluate(() => {
    const c = document.getElementById('boxes');
    if (!c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
    return n;
  });
}

// The same, sampled just after a set with boxes arrived: the overlay clears a set
// BOXES_TTL_MS (500 ms, web/boxes.js) after it came when no newer one follows, so a sample
// at an arbitrary moment finds nothing whenever the detector is slower than that (seen: a
// nice-10 detector starved by Chromium's software WebGL, a set 499 ms after capture). The
// first non-zero count within 3 s of sets, else 0.
async function freshBoxPixels(page) {
  const sets = () => page.evaluate(() => ({
    n: window.__vr.detections.messages,
    boxes: window.__vr.detections.last?.boxes?.length || 0,
  }));
  let seen = (await sets()).n;
  const t0 = Date.now();
  while (Date.now() - t0 < 3000) {
    const d = await sets();
    if (d.n !== seen && d.boxes > 0) {
      const n = await boxPixels(page);
      if (n > 0) return n;
    }
    seen = d.n;
    await new Promise((r) => setTimeout(r, 10));
  }
  return 0;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const out = { wrongPin, wsNoToken, wsForged, rtcNoToken, rtcForged };
const requests = [];
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  if (xr) {
    // Test-only page mode: the emulated runtime is installed before any page script.
    const iwer = createRequire(import.meta.url).resolve('iwer/build/iwer.min.js');
    await ctx.addInitScript({ path: iwer });
    await ctx.addInitScript((turn) => {
      const d = new window.IWER.XRDevice(window.IWER.metaQuest3);
      // The emulator renders mono (a zero-width right viewport) unless told otherwise.
      d.stereoEnabled = true;
      // xr-turn: the head turned 60 degrees to the left (about +y) before "Enter VR".
      if (turn) d.quaternion.set(0, Math.sin(Math.PI / 6), 0, Math.cos(Math.PI / 6));
      d.installRuntime({ forceInstall: true });
      window.__xrDevice = d;
    }, mode === 'xr-turn');
  }
  const page = await ctx.newPage();
  const log = [];
  page.on('console', (m) => log.push(m.text()));
  page.on('pageerror', (e) => log.push(String(e)));
  page.on('request', (r) => requests.length < 200 && requests.push(r.url()));
  page.on('websocket', (w) => requests.length < 200 && requests.push(w.url()));
  await page.goto(url);
  if (xr) {
    await page.waitForFunction(() => window.__vr && window.__vr.status === 'streaming', null, { timeout: 30000 });
    await page.waitForSelector('#enter', { state: 'visible', timeout: 10000 });
    await page.click('#enter');
    await page.waitForFunction(() => window.__vr.xr && window.__vr.xr.frames > 30 || window.__vr.error, null, { timeout: 20000 });
    await page.waitForTimeout(Number(secs) * 1000);
    const s = await page.evaluate(() => ({ status: window.__vr.status, error: window.__vr.error, xr: window.__vr.xr, decoded: window.__vr.decoded, detections: window.__vr.detections }));
    Object.assign(out, s, { boxPixels: await freshBoxPixels(page) });
    if (mode === 'xr-turn') {
      // The head straight again: the screen stays where it was put (60 degrees left); then
      // the trigger (select) puts it in front again.
      const pixels = () => page.evaluate(() => ({ ...window.__vr.xr.pixels }));
      await page.evaluate(() => window.__xrDevice.quaternion.set(0, 0, 0, 1));
      await page.waitForTimeout(700);
      out.pixelsHeadBack = await pixels();
      await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue('trigger', 1));
      await page.waitForTimeout(300);
      await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue('trigger', 0));
      await page.waitForTimeout(700);
      out.pixelsRecentered = await pixels();
      out.recenters = await page.evaluate(() => window.__vr.xr.recenters);
      // The grip (squeeze) hides the HUD: the next probes (once a second) see no HUD pixels.
      await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue('squeeze', 1));
      await page.waitForTimeout(300);
      await page.evaluate(() => window.__xrDevice.controllers.right.updateButtonValue('squeeze', 0));
      await page.waitForTimeout(1500);
      out.hudAfterSqueeze = await page.evaluate(() => ({ on: window.__vr.xr.hudOn, pixels: window.__vr.xr.hud.lastPixels }));
    }
  } else if (mode === 'timeline') {
    await page.waitForFunction(() => window.__vr && window.__vr.status === 'streaming', null, { timeout: 30000 });
    const timeline = [];
    const end = Date.now() + Number(secs) * 1000;
    while (Date.now() < end) {
      const v = await page.evaluate(() => [window.__vr.decoded, window.__vr.status, window.__vr.reconnects, document.getElementById('hud').textContent.startsWith('reconnecting')]);
      timeline.push([Date.now(), ...v]);
      await page.waitForTimeout(100);
    }
    const s = await page.evaluate(() => ({ status: window.__vr.status, error: window.__vr.error, reconnects: window.__vr.reconnects, lastDrop: window.__vr.lastDrop, transport: window.__vr.transport, hud: document.getElementById('hud').textContent }));
    Object.assign(out, s, { timeline });
  } else if (mode === 'refused') {
    await page.waitForFunction(() => window.__vr && window.__vr.status !== 'login', null, { timeout: 15000 });
    await page.waitForTimeout(Number(secs) * 1000);
    const s = await page.evaluate(() => ({ status: window.__vr.status, error: window.__vr.error, received: window.__vr.received }));
    Object.assign(out, s);
  } else {
    await page.waitForFunction(() => window.__vr && (window.__vr.status === 'streaming' || window.__vr.status === 'refused' || window.__vr.status === 'error'), null, { timeout: 30000 });
    // Let the clock offset settle (4 pings a second for the first 3 s).
    await page.waitForTimeout(1000);
    const a = await page.evaluate(() => ({ n: window.__vr.decodedIds.length, received: window.__vr.received, rtc: window.__vr.rtc }));
    await page.waitForTimeout(Number(secs) * 1000);
    const s = await page.evaluate(() => ({ ...window.__vr }));
    const ids = s.decodedIds.slice(a.n);
    const q = (xs, p) => {
      const v = [...xs].sort((x, y) => x - y);
      return v.length ? v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))] : null;
    };
    Object.assign(out, {
      status: s.status,
      error: s.error,
      codec: s.codec,
      offsetMs: s.offset,
      windowDecoded: ids.length,
      windowFirstId: ids[0] ?? null,
      windowLastId: ids[ids.length - 1] ?? null,
      windowReceived: s.received - a.received,
      decoded: s.decoded,
      keyframes: s.keyframes,
      dropped: s.dropped,
      drawn: s.drawn,
      latencyP50Ms: q(s.latencies, 0.5),
      latencyP99Ms: q(s.latencies, 0.99),
      decodeP50Ms: q(s.decodeMs, 0.5),
      inOrder: ids.every((x, i) => i === 0 || x > ids[i - 1]),
      transport: s.transport,
      // WebRTC: the browser's inbound-rtp counters (refreshed once a second) over the window.
      rtc: s.rtc,
      windowRtcDecoded: s.rtc && a.rtc ? s.rtc.framesDecoded - a.rtc.framesDecoded : null,
      // The last (up to 600) capture -> decoded latencies, ms, for benches/web_latency.rs.
      latencies: s.latencies,
      displayLatencies: s.displayLatencies || [],
      displayP50Ms: q(s.displayLatencies || [], 0.5),
      displayP99Ms: q(s.displayLatencies || [], 0.99),
      detections: s.detections,
      // Detection boxes drawn on the overlay: non-transparent pixels of #boxes now.
      boxPixels: await freshBoxPixels(page),
    });
  }
  // For a person looking at what the page showed: VIEW_SCREENSHOT=file.png.
  if (process.env.VIEW_SCREENSHOT) await page.screenshot({ path: process.env.VIEW_SCREENSHOT });
  out.log = log.slice(0, 20);
  out.requests = requests;
  const c = (await ctx.cookies()).find((k) => k.name === 'vrs_session');
  out.cookie = c ? { httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path, expires: c.expires } : null;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
