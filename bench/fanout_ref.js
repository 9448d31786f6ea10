// The fan-out benchmark's publisher and independent reference subscribers (bench/bench_fanout.py),
// on the Node `ws` library: wsload's delivery latency is compared with what this measures on the
// same messages at the same time.
//
//   node bench/fanout_ref.js URL SUBSCRIBERS JOIN_MS START_MS RATE COUNT
//
// Joins SUBSCRIBERS connections to URL spread evenly over JOIN_MS (so they sit at spread places in
// the server's send order, among wsload's subscribers joining over the same time), then one
// publisher connection; at START_MS after its start the publisher sends COUNT messages at RATE a
// second, each {"id": n, "sent_at": MICROSECONDS SINCE THE EPOCH, "pad": ...} (64 bytes or so).
// Every subscriber times each message from its stamp to its arrival by the same wall clock
// (performance.timeOrigin + performance.now(): microseconds, as wsload's `unit: us` reads them).
// Prints one JSON line: samples, p50/p99/max in ms, and how many subscribers got each message.
// Exits after the last message plus 5 s, or after 5 minutes whatever happens.
"use strict";
const path = require("path");
const WebSocket = require(path.join(__dirname, "..", "tests", "node", "node_modules", "ws"));

const [url, subs, joinMs, startMs, rate, count] = process.argv.slice(2);
const SUBSCRIBERS = Number(subs), JOIN_MS = Number(joinMs), START_MS = Number(startMs);
const RATE = Number(rate), COUNT = Number(count);
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const samples = new Float64Array(SUBSCRIBERS * COUNT);
let n = 0;
const reach = new Uint32Array(COUNT);
const t0 = Date.now();

function subscribe(i) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on("message", (data) => {
    const arrived = nowUs();
    const msg = JSON.parse(data.toString());
    if (n < samples.length) samples[n++] = (arrived - msg.sent_at) / 1000;
    if (msg.id < COUNT) reach[msg.id]++;
  });
  ws.on("error", (e) => { process.stderr.write(`subscriber ${i}: ${e.message}\n`); });
}
for (let i = 0; i < SUBSCRIBERS; i++) setTimeout(() => subscribe(i), (JOIN_MS * i) / SUBSCRIBERS);

const publisher = new WebSocket(url, { perMessageDeflate: false });
publisher.on("open", () => {
  setTimeout(() => {
    let id = 0;
    const period = 1000 / RATE;
    const first = performance.now();
    const tick = () => {
      // Sends every message due by now (a late timer sends the missed ones at once), then waits
      // for the next one: the rate holds on average without drift.
      while (id < COUNT && performance.now() >= first + id * period) {
        publisher.send(JSON.stringify({ id, sent_at: nowUs(), pad: "x".repeat(20) }));
        id++;
      }
      if (id < COUNT) setTimeout(tick, Math.max(0, first + id * period - performance.now()));
      else setTimeout(finish, 5000);
    };
    tick();
  }, Math.max(0, START_MS - (Date.now() - t0)));
});

function finish() {
  const s = Array.from(samples.subarray(0, n)).sort((a, b) => a - b);
  const at = (q) => (s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] : null);
  const got = Array.from(reach);
  process.stdout.write(JSON.stringify({
    samples: n, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: s.length ? s[s.length - 1] : null,
    reach_min: Math.min(...got), reach_max: Math.max(...got),
  }) + "\n");
  process.exit(0);
}
setTimeout(() => { process.stderr.write("fanout_ref: 5 minutes passed, giving up\n"); finish(); }, 300000).unref();
