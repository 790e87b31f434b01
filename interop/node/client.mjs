// Interop client for herald's WebSocket server, using the Node.js ws
// package. Run by TestNodeClient (../node_test.go):
//
//   node client.mjs <ws-url> <plain|deflate|deflate-window10> <expect-deflate|expect-plain>
//
// It runs the same script as the Go peers (see ../script_test.go): echoes
// of text and binary messages up to 1 MiB (some fragmented), a ping each
// way, a close started by the client (4001) and one started by the server
// (4002). It exits 0 on success and 1 with a message otherwise.
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const [url, mode, expectation] = process.argv.slice(2);
if (!url || !mode || !expectation) {
  console.error('usage: node client.mjs <ws-url> <plain|deflate|deflate-window10> <expect-deflate|expect-plain>');
  process.exit(2);
}
const expectDeflate = expectation === 'expect-deflate';

const deflateOptions = {
  plain: false,
  deflate: { threshold: 0 },
  // A 1 KiB window on both sides: zlib refuses any back-reference further
  // than the server promised, so this checks server_max_window_bits.
  'deflate-window10': { threshold: 0, serverMaxWindowBits: 10, clientMaxWindowBits: 10 },
}[mode];
if (deflateOptions === undefined) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}

setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, 60_000).unref();

function fail(msg) {
  throw new Error(msg);
}

// connect opens a connection and returns helpers that await its events
// in order.
function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: deflateOptions, maxPayload: 4 << 20 });
    const messages = [];
    const waiters = [];
    let closed = null;
    const pongs = [];
    ws.on('message', (data, isBinary) => {
      messages.push({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary });
      waiters.splice(0).forEach((w) => w());
    });
    ws.on('pong', (data) => {
      pongs.push(Buffer.from(data));
      waiters.splice(0).forEach((w) => w());
    });
    ws.on('close', (code, reason) => {
      closed = { code, reason: reason.toString() };
      waiters.splice(0).forEach((w) => w());
    });
    ws.on('error', (err) => {
      reject(err);
      waiters.splice(0).forEach((w) => w());
    });
    const next = (pick) =>
      new Promise((res, rej) => {
        const check = () => {
          const v = pick();
          if (v !== undefined) return res(v);
          if (closed && pick !== closeEvent) return rej(new Error(`connection closed ${closed.code} ${closed.reason} while waiting`));
          waiters.push(check);
        };
        check();
      });
    const closeEvent = () => closed ?? undefined;
    ws.on('open', () =>
      resolve({
        ws,
        message: () => next(() => messages.shift()),
        pong: () => next(() => pongs.shift()),
        close: () => next(closeEvent),
      }),
    );
  });
}

function json(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) s += `{"channel":"news","offset":${i},"data":{"text":"hello world ${i % 97}"}},`;
  return Buffer.from(s.slice(0, n));
}

async function expectEcho(c, name, payload, isBinary, fragments = 1) {
  if (fragments <= 1) {
    c.ws.send(payload, { binary: isBinary });
  } else {
    const size = Math.ceil(payload.length / fragments);
    for (let i = 0; i < fragments; i++) {
      c.ws.send(payload.subarray(i * size, (i + 1) * size), { binary: isBinary, fin: i === fragments - 1 });
    }
  }
  const m = await c.message();
  if (m.isBinary !== isBinary || !m.data.equals(payload)) {
    fail(`${name}: echo is ${m.isBinary ? 'binary' : 'text'} of ${m.data.length} bytes, want ${isBinary ? 'binary' : 'text'} of ${payload.length}`);
  }
}

async function expectReply(c, cmd, want) {
  c.ws.send(cmd);
  const m = await c.message();
  if (m.isBinary || m.data.toString() !== want) fail(`${cmd}: reply ${JSON.stringify(m.data.toString())}, want ${JSON.stringify(want)}`);
}

async function main() {
  // Connection 1: messages, pings, close by the client.
  let c = await connect();
  const negotiated = c.ws.extensions.includes('permessage-deflate');
  if (negotiated !== expectDeflate) fail(`permessage-deflate negotiated: ${negotiated} (extensions ${JSON.stringify(c.ws.extensions)}), want ${expectDeflate}`);
  await expectReply(c, 'cmd:compressed', String(expectDeflate));

  const text = json(1 << 20);
  await expectEcho(c, 'text hello', Buffer.from('hello, herald'), false);
  await expectEcho(c, 'empty text', Buffer.alloc(0), false);
  await expectEcho(c, 'empty binary', Buffer.alloc(0), true);
  await expectEcho(c, 'utf-8 text', Buffer.from('héllo wörld ✓ 😀'), false);
  for (const n of [125, 126, 65535, 65536]) await expectEcho(c, `binary ${n}`, randomBytes(n), true);
  await expectEcho(c, 'text 300', text.subarray(0, 300), false);
  await expectEcho(c, 'text fragmented', text.subarray(0, 10000), false, 3);
  await expectEcho(c, 'binary fragmented', randomBytes(70000), true, 5);
  await expectEcho(c, 'text 1 MiB', text, false);
  await expectEcho(c, 'binary 1 MiB', randomBytes(1 << 20), true);
  await expectEcho(c, 'text 256 KiB fragmented', text.subarray(0, 256 << 10), false, 4);

  // RFC 6455 §5.5.2-3: ping from the client, then from the server.
  const payload = Buffer.from('node-ping');
  c.ws.ping(payload);
  const pong = await c.pong();
  if (!pong.equals(payload)) fail(`pong payload ${pong}, want ${payload}`);
  await expectReply(c, 'cmd:ping', 'pong-ok');

  // RFC 6455 §7: the client closes; the server echoes the code.
  c.ws.close(4001, 'client bye');
  let closed = await c.close();
  if (closed.code !== 4001) fail(`client close answered with ${closed.code} ${closed.reason}`);

  // Connection 2: the server closes.
  c = await connect();
  c.ws.send('cmd:close');
  closed = await c.close();
  if (closed.code !== 4002 || closed.reason !== 'server bye') fail(`server close seen as ${closed.code} ${JSON.stringify(closed.reason)}, want 4002 "server bye"`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  },
);
