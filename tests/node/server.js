// A WebSocket server on the Node `ws` library, for wsload's tests: a protocol implementation we
// did not write. Listens on 127.0.0.1 (port from argv[2], 0 for a free one) and prints
// "PORT <n>" once listening. Paths:
//   /echo (and any other)  every message back, same opcode
//   /stall?every=1000&for=200  echo, but the whole server stalls (a busy-wait: nothing is read or
//                          sent) for `for` ms every `every` ms: what coordinated omission hides
//   /room/NAME             every message to every member of room NAME
//   /close?code=4001&reason=bye  closes with that code and reason after the first message
// It exits when its stdin closes (the test process went away) or after 15 minutes.
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");

const rooms = new Map();
const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });

let stallTimer = null;
function startStalls(everyMs, forMs) {
  if (stallTimer) return;
  stallTimer = setInterval(() => {
    const end = Date.now() + forMs;
    while (Date.now() < end) { /* the whole process stalls, as a GC pause or a blocked loop would */ }
  }, everyMs);
}

wss.on("connection", (ws, req) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname.startsWith("/room/")) {
    const name = url.pathname.slice(6);
    if (!rooms.has(name)) rooms.set(name, new Set());
    const room = rooms.get(name);
    room.add(ws);
    ws.on("close", () => room.delete(ws));
    ws.on("message", (data, isBinary) => { for (const peer of room) peer.send(data, { binary: isBinary }); });
    return;
  }
  if (url.pathname === "/close") {
    const code = Number(url.searchParams.get("code") || 1000);
    ws.on("message", () => ws.close(code, url.searchParams.get("reason") || ""));
    return;
  }
  if (url.pathname === "/stall") {
    startStalls(Number(url.searchParams.get("every") || 1000), Number(url.searchParams.get("for") || 200));
  }
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(0), 15 * 60 * 1000).unref();
