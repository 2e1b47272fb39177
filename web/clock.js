// Clock offset between the page and vr-stream, NTP-style (RFC 5905 §8 on-wire, simplified):
// the page sends t1 (its Unix ms), the server answers with t2 (its Unix ms) at once, the
// page notes t4 on arrival. offset = t2 - (t1 + t4) / 2, rtt = t4 - t1. Of the last 16
// samples the one with the smallest RTT wins: queueing only ever adds delay, so the
// fastest round trip is the least skewed.

/** Page clock, Unix ms (sub-ms resolution). */
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

export class ClockSync {
  constructor(keep = 16) {
    this.keep = keep;
    this.samples = [];
  }
  /** Adds one exchange: t1 sent (page ms), t2 server time (ms), t4 received (page ms). */
  add(t1, t2, t4) {
    const rtt = t4 - t1;
    if (!(rtt >= 0)) return;
    this.samples.push({ offset: t2 - (t1 + t4) / 2, rtt });
    if (this.samples.length > this.keep) this.samples.shift();
  }
  /** Server clock minus page clock, ms, from the minimum-RTT sample; null before any. */
  best() {
    if (!this.samples.length) return null;
    return this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
  }
}

/** The q-quantile (0..1) of an array of numbers (nearest rank), NaN when empty. */
export function quantile(xs, q) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
