// "Enter VR": an immersive-vr WebXR session drawing the newest decoded frame as a texture
// on a quad 2 m in front of the user (mono), or per eye from the two halves of a
// side-by-side frame (stereo: left half to the left eye), with the YOLO boxes (--yolo)
// blended over it from an overlay texture in the same frame coordinates, and the HUD on a
// panel under it. WebGL 2, no libraries.
import { paintBoxes, BOXES_TTL_MS } from './boxes.js';

const VS = `#version 300 es
in vec2 pos;
uniform mat4 proj;
uniform mat4 view;
uniform vec2 size;     // quad width, height, m
uniform vec3 center;   // quad centre, m, in the reference space
uniform vec3 right;    // the quad's horizontal axis (unit; it stands upright, facing the user)
uniform vec2 uvScale;  // (0.5, 1) per eye for side by side, (1, 1) mono
uniform vec2 uvOffset; // (0 | 0.5, 0)
out vec2 uv;
void main() {
  uv = uvOffset + vec2(pos.x * 0.5 + 0.5, 0.5 - pos.y * 0.5) * uvScale;
  vec3 p = center + right * (pos.x * size.x * 0.5) + vec3(0.0, pos.y * size.y * 0.5, 0.0);
  gl_Position = proj * view * vec4(p, 1.0);
}`;

const FS = `#version 300 es
precision mediump float;
in vec2 uv;
uniform sampler2D tex;
uniform sampler2D overlay; // boxes, premultiplied alpha, same uv as the frame
uniform float showOverlay;
out vec4 color;
void main() {
  vec4 o = texture(overlay, uv) * showOverlay;
  color = vec4(texture(tex, uv).rgb * (1.0 - o.a) + o.rgb, 1.0);
}`;

function compile(gl, type, src) {
  const s = gl.createShader(type);
  gl.shaderSource(s, src);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
  return s;
}

function texture(gl) {
  const t = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array([0, 0, 0, 0]));
  return t;
}

/** Pixels that differ (any channel by more than 8) between two RGBA readbacks. */
function differing(a, b) {
  let n = 0;
  for (let i = 0; i < a.length; i += 4) {
    if (Math.abs(a[i] - b[i]) > 8 || Math.abs(a[i + 1] - b[i + 1]) > 8 || Math.abs(a[i + 2] - b[i + 2]) > 8) n++;
  }
  return n;
}

/**
 * Starts an immersive-vr session. `source()` returns the newest VideoFrame (or null; the
 * caller owns it), `stereo` says whether frames are side by side, `boxes()` the newest
 * detections ({ m: message, at: performance.now() on arrival } or null; drawn until
 * BOXES_TTL_MS old), `hud()` the HUD text (lines; shown on a panel under the video),
 * `report` receives { views, frames, recenters, hudOn, overlayBoxes, pixels: { left: [r,g,b,a],
 * right: [...] }, overlay, hud } — with `probe` (tests), the pixel at each eye's centre every
 * frame, and once a second `overlay` = { probes, withBoxes, minPixelsWithBoxes,
 * maxPixelsWithout } and `hud` = { probes, minPixels, text, lastPixels } (probes once it
 * has text and is on; lastPixels: the latest probe's, on or off): how many of the left eye's
 * pixels the boxes and the HUD changed (the eye drawn again without each and compared).
 */
export async function enterVR({ source, stereo, probe, report, boxes = () => null, hud = () => null }) {
  const canvas = document.createElement('canvas');
  const gl = canvas.getContext('webgl2', { xrCompatible: true, antialias: false });
  if (!gl) throw new Error('no WebGL 2');
  const session = await navigator.xr.requestSession('immersive-vr');
  await gl.makeXRCompatible();
  const layer = new XRWebGLLayer(session, gl);
  session.updateRenderState({ baseLayer: layer });
  let space;
  try {
    space = await session.requestReferenceSpace('local-floor');
  } catch {
    space = await session.requestReferenceSpace('local');
  }

  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VS));
  gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, FS));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  const u = (n) => gl.getUniformLocation(prog, n);
  const buf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, buf);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const loc = gl.getAttribLocation(prog, 'pos');
  gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
  const tex = texture(gl);
  const overlayTex = texture(gl);
  gl.useProgram(prog);
  gl.uniform1i(u('tex'), 0);
  gl.uniform1i(u('overlay'), 1);
  // The boxes are painted on a canvas in frame pixels (at most 1280 wide) and uploaded
  // when the set changes or expires.
  const ov = document.createElement('canvas');
  let shown = null;
  function updateOverlay() {
    const b = boxes();
    const live = b && b.m && b.m.w && b.m.h && performance.now() - b.at < BOXES_TTL_MS ? b : null;
    if (live === shown) return;
    shown = live;
    out.overlayBoxes = live ? live.m.boxes.length : 0;
    const g = ov.getContext('2d');
    if (live) {
      const k = Math.min(1, 1280 / live.m.w);
      if (ov.width !== Math.round(live.m.w * k) || ov.height !== Math.round(live.m.h * k)) {
        ov.width = Math.round(live.m.w * k);
        ov.height = Math.round(live.m.h * k);
      }
      g.clearRect(0, 0, ov.width, ov.height);
      // Thicker than on the 2D view: read 2 m away; a light tint inside.
      paintBoxes(g, live.m, { k, unit: 2 * k, fill: 0.15 });
    } else {
      g.clearRect(0, 0, ov.width, ov.height);
    }
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, overlayTex);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, true);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, ov);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.activeTexture(gl.TEXTURE0);
  }

  // The HUD (the 2D view's text: fps, decode time, latency, detections) on a small panel
  // under the video, repainted when the text changes.
  const hudCanvas = document.createElement('canvas');
  hudCanvas.width = 640;
  hudCanvas.height = 160;
  const hudTex = texture(gl);
  let hudShown = null;
  function updateHud() {
    const text = hud();
    if (!text || text === hudShown) return;
    hudShown = text;
    const g = hudCanvas.getContext('2d');
    g.fillStyle = 'rgb(40,44,52)'; // lighter than the surroundings (0.05 grey)
    g.fillRect(0, 0, hudCanvas.width, hudCanvas.height);
    g.fillStyle = 'rgb(235,235,235)';
    g.font = '26px ui-monospace, monospace';
    text.split('\n').slice(0, 5).forEach((line, i) => g.fillText(line, 14, 34 + i * 30));
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, hudTex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, hudCanvas);
  }

  const out = { views: 0, frames: 0, pixels: {}, aspect: 16 / 9, overlayBoxes: 0 };
  if (probe) {
    out.overlay = { probes: 0, withBoxes: 0, minPixelsWithBoxes: null, maxPixelsWithout: null };
    out.hud = { probes: 0, minPixels: null, text: null };
  }
  let lastFrame = null;
  let lastProbe = 0;
  // Where the screen stands: 2 m ahead of the head along its heading (yaw only), upright,
  // facing it; set at the first frame and again after a recenter — the trigger ("select")
  // or the system's own (the reference space's `reset`, e.g. holding the Meta button).
  let center = null;
  let axis = [1, 0, 0];
  out.recenters = 0;
  const recenter = () => {
    center = null;
    out.recenters++;
  };
  session.addEventListener('select', recenter);
  // The grip (squeeze) shows or hides the HUD panel.
  out.hudOn = true;
  session.addEventListener('squeeze', () => (out.hudOn = !out.hudOn));
  space.addEventListener('reset', recenter);
  function anchor(t) {
    const p = t.position, q = t.orientation;
    // The head's forward (0, 0, -1) rotated by q, flattened to the floor.
    let fx = -2 * (q.x * q.z + q.w * q.y);
    let fz = -(1 - 2 * (q.x * q.x + q.y * q.y));
    const n = Math.hypot(fx, fz);
    [fx, fz] = n > 1e-3 ? [fx / n, fz / n] : [0, -1]; // looking straight up or down: -z
    center = [p.x + 2 * fx, p.y, p.z + 2 * fz];
    axis = [-fz, 0, fx]; // forward x up
  }
  const H = 2.0; // video height, m: about 53 degrees tall at 2 m
  const HUD_W = 0.8; // HUD panel width, m (height from the canvas' aspect)

  // One eye: the video quad (its half with stereo) with the boxes blended in, then the
  // HUD panel 5 cm under it.
  function drawEye(view, vp, { overlay = true, withHud = true } = {}) {
    gl.viewport(vp.x, vp.y, vp.width, vp.height);
    gl.uniformMatrix4fv(u('proj'), false, view.projectionMatrix);
    gl.uniformMatrix4fv(u('view'), false, view.transform.inverse.matrix);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, overlayTex);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.uniform1f(u('showOverlay'), overlay ? 1 : 0);
    gl.uniform2f(u('size'), H * out.aspect, H);
    gl.uniform3f(u('center'), center[0], center[1], center[2]);
    gl.uniform3f(u('right'), axis[0], axis[1], axis[2]);
    const right = view.eye === 'right';
    gl.uniform2f(u('uvScale'), stereo ? 0.5 : 1, 1);
    gl.uniform2f(u('uvOffset'), stereo && right ? 0.5 : 0, 0);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    if (withHud && out.hudOn && hudShown) {
      const hh = (HUD_W * hudCanvas.height) / hudCanvas.width;
      gl.bindTexture(gl.TEXTURE_2D, hudTex);
      gl.uniform1f(u('showOverlay'), 0);
      gl.uniform2f(u('size'), HUD_W, hh);
      gl.uniform3f(u('center'), center[0], center[1] - H / 2 - 0.05 - hh / 2, center[2]);
      gl.uniform2f(u('uvScale'), 1, 1);
      gl.uniform2f(u('uvOffset'), 0, 0);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    }
  }

  function onFrame(t, xrFrame) {
    session.requestAnimationFrame(onFrame);
    const pose = xrFrame.getViewerPose(space);
    if (!pose) return;
    if (!center) anchor(pose.transform);
    const vf = source();
    updateOverlay();
    updateHud();
    if (vf && vf !== lastFrame) {
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, vf);
      out.aspect = (vf.displayWidth / (stereo ? 2 : 1)) / vf.displayHeight;
      lastFrame = vf;
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
    gl.clearColor(0.05, 0.05, 0.05, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.useProgram(prog);
    gl.bindVertexArray(vao);
    const eyeProbe = probe && t - lastProbe > 1000;
    if (eyeProbe) lastProbe = t;
    out.views = pose.views.length;
    for (const view of pose.views) {
      const vp = layer.getViewport(view);
      const right = view.eye === 'right';
      drawEye(view, vp);
      if (eyeProbe && !right) {
        // The left eye drawn again without the boxes, then without the HUD: the pixels
        // each one changed. Then the whole eye once more for the display.
        const read = () => {
          const a = new Uint8Array(vp.width * vp.height * 4);
          gl.readPixels(vp.x, vp.y, vp.width, vp.height, gl.RGBA, gl.UNSIGNED_BYTE, a);
          return a;
        };
        // Clears this eye only (a plain clear would take the other eye with it).
        const clearEye = () => {
          gl.enable(gl.SCISSOR_TEST);
          gl.scissor(vp.x, vp.y, vp.width, vp.height);
          gl.clear(gl.COLOR_BUFFER_BIT);
          gl.disable(gl.SCISSOR_TEST);
        };
        const all = read();
        clearEye();
        drawEye(view, vp, { overlay: false });
        const boxPx = differing(all, read());
        clearEye();
        drawEye(view, vp, { withHud: false });
        const hudPx = differing(all, read());
        clearEye();
        drawEye(view, vp);
        const o = out.overlay;
        o.probes++;
        if (out.overlayBoxes > 0) {
          o.withBoxes++;
          o.minPixelsWithBoxes = Math.min(o.minPixelsWithBoxes ?? boxPx, boxPx);
        } else {
          o.maxPixelsWithout = Math.max(o.maxPixelsWithout ?? boxPx, boxPx);
        }
        out.hud.lastPixels = hudPx;
        if (hudShown && out.hudOn) {
          out.hud.probes++;
          out.hud.minPixels = Math.min(out.hud.minPixels ?? hudPx, hudPx);
          out.hud.text = hudShown;
        }
      }
      if (probe) {
        out.viewports = out.viewports || {};
        out.viewports[view.eye || 'none'] = [vp.x, vp.y, vp.width, vp.height, stereo && right ? 0.5 : 0];
        const px = new Uint8Array(4);
        gl.readPixels(vp.x + (vp.width >> 1), vp.y + (vp.height >> 1), 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
        out.pixels[view.eye || 'none'] = Array.from(px);
      }
    }
    out.frames++;
    report(out);
  }
  session.requestAnimationFrame(onFrame);
  return session;
}
