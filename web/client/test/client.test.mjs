// The client against a real herald server built from this repository.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { Client, DisconnectCode, ErrorCode, HeraldError, UnauthorizedError } from "../../static/herald.js";
import { HeraldServer, Proxy, cleanupBuild, requireHerald, waitEvent, waitUntil } from "./support/server.mjs";

let bin = null;
let server = null;
const clients = [];

// Short heartbeats so that pong handling and dead-server detection show
// within a test's time.
const serverArgs = ["--ping-interval=1s", "--pong-timeout=1s"];

before(async (t) => {
  bin = await requireHerald(t);
  if (bin) server = await HeraldServer.start(bin, { args: serverArgs });
});

after(async () => {
  for (const c of clients) c.disconnect();
  await server?.stop();
  await cleanupBuild();
});

/** A client for url with fast reconnects; disconnected after the run. */
function newClient(options = {}, url = server.wsURL) {
  const c = new Client(url, { WebSocket, minReconnectDelay: 50, maxReconnectDelay: 500, timeout: 5000, ...options });
  clients.push(c);
  return c;
}

async function connected(options, url) {
  const c = newClient(options, url);
  const ev = waitEvent(c, "connected");
  c.connect();
  await ev;
  return c;
}

async function subscribed(c, channel, options) {
  const sub = c.newSubscription(channel, options);
  const ev = waitEvent(sub, "subscribed");
  sub.subscribe();
  return { sub, ctx: await ev };
}

let roomSeq = 0;
function room() {
  return `chat:node-${process.pid}-${++roomSeq}`;
}

/** Collects the publication data of sub. */
function collect(sub) {
  const got = [];
  sub.on("publication", (p) => got.push(p));
  return got;
}

describe("herald client", { skip: false }, () => {
  test("connects anonymously and goes through connecting -> connected", async (t) => {
    if (!server) return t.skip("no server");
    const c = newClient();
    const states = [];
    c.on("state", (s) => states.push(s.newState));
    const ev = waitEvent(c, "connected");
    c.connect();
    const ctx = await ev;
    assert.equal(typeof ctx.client, "string");
    assert.ok(ctx.client.length > 0);
    assert.equal(c.clientId, ctx.client);
    assert.equal(ctx.ping, 1);
    assert.deepEqual(states, ["connecting", "connected"]);
    await c.ping();
    const gone = waitEvent(c, "disconnected");
    c.disconnect();
    assert.deepEqual(await gone, { code: DisconnectCode.Closed, reason: "disconnect called" });
    assert.equal(c.state, "disconnected");
    await assert.rejects(c.ping(), (e) => e instanceof HeraldError && e.code === ErrorCode.Disconnected);
  });

  test("publishes and receives its own publication with offsets", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    const ch = room();
    const { sub, ctx } = await subscribed(c, ch);
    assert.equal(ctx.recovered, false);
    assert.equal(ctx.wasRecovering, false);
    assert.equal(ctx.recoverable, true);
    const got = collect(sub);
    const r1 = await sub.publish({ text: "one" });
    const r2 = await c.publish(ch, { text: "two" });
    assert.equal(r2.offset, r1.offset + 1);
    await waitUntil(() => got.length === 2, 5000, "two publications");
    assert.deepEqual(
      got.map((p) => p.data),
      [{ text: "one" }, { text: "two" }],
    );
    assert.equal(got[0].info.client, c.clientId);
    assert.equal(got[1].offset, r2.offset);
    assert.deepEqual(sub.position, { offset: r2.offset, epoch: r2.epoch });
  });

  test("receives publications from the server API", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    const ch = room();
    const { sub } = await subscribed(c, ch);
    const got = collect(sub);
    for (let i = 0; i < 5; i++) await server.publish(ch, { n: i });
    await waitUntil(() => got.length === 5, 5000, "five publications");
    assert.deepEqual(
      got.map((p) => p.data.n),
      [0, 1, 2, 3, 4],
    );
  });

  test("history returns publications and the stream position", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    const ch = room();
    for (let i = 1; i <= 4; i++) await c.publish(ch, { n: i });
    const h = await c.history(ch, { limit: 2, reverse: true });
    assert.deepEqual(
      h.publications.map((p) => p.data.n),
      [4, 3],
    );
    assert.equal(h.offset, h.publications[0].offset);
    assert.ok(h.epoch);
    const since = await c.history(ch, { limit: -1, since: { offset: h.offset - 3, epoch: h.epoch } });
    assert.deepEqual(
      since.publications.map((p) => p.data.n),
      [2, 3, 4],
    );
  });

  test("subscribing with since delivers exactly the publications after it", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    const ch = room();
    for (let i = 1; i <= 3; i++) await c.publish(ch, { n: i });
    const h = await c.history(ch, { limit: 0 });
    await c.publish(ch, { n: 4 });
    await c.publish(ch, { n: 5 });
    const sub = c.newSubscription(ch, { since: { offset: h.offset, epoch: h.epoch } });
    const got = collect(sub);
    const ev = waitEvent(sub, "subscribed");
    sub.subscribe();
    const ctx = await ev;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    assert.deepEqual(
      got.map((p) => p.data.n),
      [4, 5],
    );
  });

  test("recovers every missed publication in order after a forced reconnect", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected({ token: server.token("erin") });
    const ch = room();
    const { sub } = await subscribed(c, ch);
    const got = collect(sub);
    await server.publish(ch, { n: 0 });
    await waitUntil(() => got.length === 1, 5000, "first publication");

    const reconnecting = waitEvent(c, "connecting");
    const resubscribed = waitEvent(sub, "subscribed");
    await server.api("disconnect", { user: "erin" });
    const why = await reconnecting;
    assert.equal(why.code, 3003);
    // Publish while the client is away.
    for (let i = 1; i <= 20; i++) await server.publish(ch, { n: i });
    const ctx = await resubscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    for (let i = 21; i <= 25; i++) await server.publish(ch, { n: i });
    await waitUntil(() => got.length >= 26, 5000, "26 publications");
    assert.deepEqual(
      got.map((p) => p.data.n),
      Array.from({ length: 26 }, (_, i) => i),
    );
    const offsets = got.map((p) => p.offset);
    assert.deepEqual(
      offsets,
      offsets.map((_, i) => offsets[0] + i),
    );
  });

  test("reports recovered: false when the server lost the stream, then keeps delivering", async (t) => {
    if (!server) return t.skip("no server");
    const own = await HeraldServer.start(bin, { args: serverArgs });
    t.after(() => own.stop());
    const c = await connected({}, own.wsURL);
    const ch = room();
    const { sub } = await subscribed(c, ch);
    const got = collect(sub);
    await own.publish(ch, { n: 1 });
    await waitUntil(() => got.length === 1, 5000, "first publication");

    const resubscribed = waitEvent(sub, "subscribed", () => true, 20000);
    await own.restart(); // in-memory history and epoch are gone
    const ctx = await resubscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, false);
    await own.publish(ch, { n: 2 });
    await waitUntil(() => got.length === 2, 5000, "publication after restart");
    assert.equal(got[1].data.n, 2);
    assert.equal(sub.position.epoch, ctx.position.epoch);
  });

  test("presence, presence stats, join and leave", async (t) => {
    if (!server) return t.skip("no server");
    const a = await connected();
    const ch = room();
    const { sub } = await subscribed(a, ch);
    const b = await connected();
    const joined = waitEvent(sub, "join", (j) => j.info.client === b.clientId);
    const { sub: subB } = await subscribed(b, ch);
    await joined;
    const p = await sub.presence();
    assert.deepEqual(Object.keys(p).sort(), [a.clientId, b.clientId].sort());
    assert.equal(p[b.clientId].client, b.clientId);
    const stats = await a.presenceStats(ch);
    assert.equal(stats.numClients, 2);
    const left = waitEvent(sub, "leave", (l) => l.info.client === b.clientId);
    subB.unsubscribe();
    await left;
    assert.equal((await a.presenceStats(ch)).numClients, 1);
  });

  test("direct messages reach every connection of the user", async (t) => {
    if (!server) return t.skip("no server");
    const bob1 = await connected({ token: server.token("bob") });
    const bob2 = await connected({ getToken: async () => server.token("bob") });
    const m1 = waitEvent(bob1, "message");
    const m2 = waitEvent(bob2, "message");
    await server.api("send", { user: "bob", data: { text: "psst" } });
    for (const m of await Promise.all([m1, m2])) assert.deepEqual(m.data, { text: "psst" });

    // Client-to-user sends are off unless the server enables them (108);
    // when enabled, the message must arrive with the sender's identity.
    const alice = await connected({ token: server.token("alice") });
    const m3 = waitEvent(bob1, "message", (m) => m.data.text === "from alice", 3000);
    m3.catch(() => {}); // unused when the server refuses the send
    try {
      await alice.send("bob", { text: "from alice" });
      assert.equal((await m3).info?.user, "alice");
    } catch (err) {
      assert.ok(err instanceof HeraldError && err.code === 108, `send failed: ${err.message}`);
    }
  });

  test("refreshes an expiring token through the callback before it expires", async (t) => {
    if (!server) return t.skip("no server");
    let calls = 0;
    const errors = [];
    const c = newClient({
      getToken: async () => {
        calls++;
        return server.token("carol", 3);
      },
    });
    c.on("error", (e) => errors.push(e));
    const disconnects = [];
    c.on("connecting", (e) => disconnects.push(e));
    const ev = waitEvent(c, "connected");
    c.connect();
    const ctx = await ev;
    assert.equal(ctx.expires, true);
    assert.ok(ctx.ttl > 0 && ctx.ttl <= 3, `ttl ${ctx.ttl}`);
    await waitUntil(() => calls >= 2, 5000, "token refresh");
    await c.ping();
    assert.deepEqual(errors, []);
    assert.equal(c.state, "connected");
    assert.equal(disconnects.length, 1, "only the initial connecting event");
  });

  test("an invalid token stops the client without reconnecting", async (t) => {
    if (!server) return t.skip("no server");
    const c = newClient({ token: "not.a.token" });
    const ev = waitEvent(c, "disconnected");
    c.connect();
    const d = await ev;
    assert.equal(d.code, DisconnectCode.Unauthorized);
    assert.equal(c.state, "disconnected");
  });

  test("UnauthorizedError from the token callback stops the client", async (t) => {
    if (!server) return t.skip("no server");
    const c = newClient({
      getToken: async () => {
        throw new UnauthorizedError("logged out");
      },
    });
    const ev = waitEvent(c, "disconnected");
    c.connect();
    assert.deepEqual(await ev, { code: DisconnectCode.Unauthorized, reason: "logged out" });
  });

  test("a disconnect that forbids reconnecting is honoured", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected({ token: server.token("dave") });
    const ev = waitEvent(c, "disconnected");
    await server.api("disconnect", { user: "dave", reconnect: false });
    const d = await ev;
    assert.ok(d.code >= 3500 && d.code < 4000, `code ${d.code}`);
    assert.equal(c.state, "disconnected");
  });

  test("answers server pings so the server keeps the connection", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    const lost = [];
    c.on("connecting", (e) => lost.push(e));
    // Several ping intervals (1 s) plus the pong timeout (1 s).
    const start = Date.now();
    await waitUntil(() => Date.now() - start > 3500, 5000, "time to pass");
    assert.deepEqual(lost, []);
    assert.equal(c.state, "connected");
  });

  test("detects a silent server and reconnects; commands time out meanwhile", async (t) => {
    if (!server) return t.skip("no server");
    const proxy = await Proxy.start(server.port);
    t.after(() => proxy.close());
    const c = await connected({ maxServerPingDelay: 500, timeout: 1000 }, proxy.wsURL);
    const ch = room();
    const { sub } = await subscribed(c, ch);
    const got = collect(sub);
    const firstClient = c.clientId;

    proxy.freeze();
    await assert.rejects(c.ping(), (e) => e instanceof HeraldError && e.code === ErrorCode.Timeout);
    const why = await waitEvent(c, "connecting", () => true, 5000);
    assert.equal(why.code, DisconnectCode.NoPing);
    // New connections hang as well: the attempt times out and is retried.
    const attempt = await waitEvent(c, "error", (e) => e.type === "transport", 5000);
    assert.match(attempt.error.message, /4002/);
    await server.publish(ch, { n: 1 }); // missed while reconnecting
    const back = waitEvent(sub, "subscribed", () => true, 10000);
    proxy.thaw();
    const ctx = await back;
    assert.equal(ctx.recovered, true);
    assert.notEqual(c.clientId, firstClient);
    await waitUntil(() => got.length === 1, 5000, "recovered publication");
    assert.equal(got[0].data.n, 1);
  });

  test("reconnects after the network drops, with backoff, and resubscribes", async (t) => {
    if (!server) return t.skip("no server");
    const proxy = await Proxy.start(server.port);
    t.after(() => proxy.close());
    const c = await connected({}, proxy.wsURL);
    const ch = room();
    const { sub } = await subscribed(c, ch);
    const got = collect(sub);
    for (let round = 1; round <= 3; round++) {
      const back = waitEvent(sub, "subscribed");
      const why = waitEvent(c, "connecting");
      proxy.cutAll();
      assert.equal((await why).code, 1006);
      await server.publish(ch, { n: round });
      assert.equal((await back).recovered, true);
    }
    await waitUntil(() => got.length === 3, 5000, "three publications");
    assert.deepEqual(
      got.map((p) => p.data.n),
      [1, 2, 3],
    );
  });

  test("command errors carry the server's codes", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    await assert.rejects(c.publish("nope:x", {}), (e) => e instanceof HeraldError && e.code === 102);
    // The demo namespace does not let clients publish (108: feature off).
    await assert.rejects(c.publish("demo:ticker", {}), (e) => e instanceof HeraldError && e.code === 108);
    await assert.rejects(c.publish(room(), undefined), TypeError);
    const sub = c.newSubscription("nope:x");
    const err = waitEvent(sub, "error");
    const un = waitEvent(sub, "unsubscribed");
    sub.subscribe();
    assert.equal((await err).error.code, 102);
    assert.equal((await un).code, 102);
    assert.equal(sub.state, "unsubscribed");
  });

  test("unsubscribe stops deliveries; subscribe again recovers what was missed", async (t) => {
    if (!server) return t.skip("no server");
    const c = await connected();
    const ch = room();
    const { sub } = await subscribed(c, ch);
    const got = collect(sub);
    await c.publish(ch, { n: 1 });
    await waitUntil(() => got.length === 1, 5000, "first publication");
    sub.unsubscribe();
    assert.equal(sub.state, "unsubscribed");
    await server.publish(ch, { n: 2 });
    const ev = waitEvent(sub, "subscribed");
    sub.subscribe();
    const ctx = await ev;
    assert.equal(ctx.recovered, true);
    await waitUntil(() => got.length === 2, 5000, "recovered publication");
    assert.deepEqual(
      got.map((p) => p.data.n),
      [1, 2],
    );
  });
});
