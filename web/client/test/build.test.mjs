// The library served at /herald.js (web/static/herald.js) is committed
// build output: it must be exactly what the TypeScript source compiles to.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const pkg = fileURLToPath(new URL("..", import.meta.url));

test("web/static/herald.js is up to date with src/herald.ts", async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), "herald-build-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const tsc = path.join(pkg, "node_modules", "typescript", "bin", "tsc");
  await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { cwd: pkg });
  const fresh = readFileSync(path.join(out, "herald.js"), "utf8");
  const committed = readFileSync(path.join(pkg, "..", "static", "herald.js"), "utf8");
  assert.ok(fresh.includes("export class Client"), "compiled output looks wrong");
  assert.equal(committed, fresh, "web/static/herald.js is stale: run `npm run build` in web/client");
  const types = readFileSync(path.join(out, "herald.d.ts"), "utf8");
  assert.match(types, /export declare class Subscription/);
  assert.doesNotMatch(types, /_command|_onClientLost/, "internal methods leak into the types");
});

// A strict TypeScript consumer of the published types must compile.
const consumer = `
import { Client, Subscription, HeraldError, ErrorCode, type PublicationContext } from "./herald.js";
declare function log(...args: unknown[]): void;
const c = new Client("ws://127.0.0.1:8080/ws", { getToken: async () => "t", timeout: 5000 });
const sub: Subscription = c.newSubscription("chat:a", { since: { offset: 1, epoch: "e" } });
sub.on("publication", (p: PublicationContext) => log(p.channel, p.offset, p.data));
sub.on("subscribed", (s) => { const r: boolean = s.recovered && s.wasRecovering; log(r, s.position?.epoch); });
c.on("disconnected", ({ code, reason }) => log(code.toFixed(), reason.length));
async function run(): Promise<number> {
  const h = await c.history<{ text: string }>("chat:a", { limit: 10, reverse: true });
  const stats = await sub.presenceStats();
  try { await c.send("u", { a: 1 }); } catch (e) { if (e instanceof HeraldError && e.code === ErrorCode.Timeout) return 0; }
  return h.publications[0].data.text.length + stats.numClients;
}
void run;
`;

test("the published types serve a strict TypeScript consumer", async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), "herald-types-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const tsc = path.join(pkg, "node_modules", "typescript", "bin", "tsc");
  await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { cwd: pkg });
  writeFileSync(path.join(out, "consumer.ts"), consumer);
  const args = ["--noEmit", "--strict", "--target", "ES2020", "--module", "ES2020", "--moduleResolution", "bundler",
    "--lib", "ES2020,DOM", path.join(out, "consumer.ts")];
  try {
    await promisify(execFile)(process.execPath, [tsc, ...args], { cwd: out });
  } catch (err) {
    assert.fail(`consumer does not type-check:\n${err.stdout}${err.stderr}`);
  }
});
