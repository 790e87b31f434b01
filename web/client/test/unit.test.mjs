// Behaviour that needs no server.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, DisconnectCode, Emitter, ErrorCode, HeraldError, shouldReconnect } from "../../static/herald.js";

test("shouldReconnect follows the protocol's disconnect codes", () => {
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 3000, 3001, 3002, 3003, 3004, 3005, 3006, 3499, 4001, 4002]) {
    assert.equal(shouldReconnect(code), true, `code ${code}`);
  }
  for (const code of [1000, 1002, 1003, 1008, 1009, 3500, 3501, 3502, 3503, 3504, 3999]) {
    assert.equal(shouldReconnect(code), false, `code ${code}`);
  }
});

test("emitter: on, once, off and a throwing listener", () => {
  class E extends Emitter {
    fire(v) {
      this._emit("x", v);
    }
  }
  const e = new E();
  const seen = [];
  const off = e.on("x", (v) => seen.push(`a${v}`));
  e.once("x", (v) => seen.push(`b${v}`));
  e.on("x", () => {
    throw new Error("listener bug");
  });
  e.on("x", (v) => seen.push(`c${v}`));
  // The listener's exception is rethrown from a timer, not into fire().
  const deferred = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn) => deferred.push(fn);
  try {
    e.fire(1);
    off();
    e.fire(2);
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  assert.deepEqual(seen, ["a1", "b1", "c1", "c2"]);
  assert.equal(deferred.length, 2);
  assert.throws(deferred[0], /listener bug/);
});

test("commands fail at once while disconnected", async () => {
  const c = new Client("ws://127.0.0.1:9/ws");
  assert.equal(c.state, "disconnected");
  await assert.rejects(c.publish("chat:x", 1), (e) => e instanceof HeraldError && e.code === ErrorCode.Disconnected);
  await assert.rejects(c.ready(), (e) => e.code === ErrorCode.Disconnected);
  await assert.rejects(c.send("u", () => {}), TypeError);
});

test("connect without any WebSocket implementation reports it and stops", async () => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket;
  try {
    const c = new Client("ws://127.0.0.1:9/ws");
    const errors = [];
    c.on("error", (e) => errors.push(e));
    const d = new Promise((resolve) => c.on("disconnected", resolve));
    c.connect();
    assert.equal((await d).code, DisconnectCode.TransportFailed);
    assert.equal(errors[0].type, "transport");
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
});

test("one subscription per channel", () => {
  const c = new Client("ws://127.0.0.1:9/ws");
  const s = c.newSubscription("chat:a");
  assert.throws(() => c.newSubscription("chat:a"));
  c.removeSubscription(s);
  assert.equal(c.getSubscription("chat:a"), null);
  c.newSubscription("chat:a");
});
