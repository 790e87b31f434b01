// Test support: builds the herald binary from this repository, runs it on a
// loopback port, and offers the server API, token signing and a TCP proxy
// that can cut or freeze connections. Used by the client tests and by the
// browser tests in web/e2e.
//
// When the binary cannot be built, requireHerald() skips the calling test,
// except under CI=true, where it fails: CI must never pass by skipping.

import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));

let built = null; // Promise<{bin, dir} | {error}>

/** Builds cmd/herald once per process into a temporary directory. */
function build() {
  if (!built) {
    built = new Promise((resolve) => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "herald-test-"));
      const bin = path.join(dir, "herald");
      execFile(
        "go",
        ["build", "-o", bin, "./cmd/herald"],
        { cwd: repoRoot, timeout: 300_000, maxBuffer: 16 << 20 },
        (err, _stdout, stderr) => {
          if (err) resolve({ error: `go build ./cmd/herald failed: ${err.message}\n${stderr}`, dir });
          else resolve({ bin, dir });
        },
      );
    });
  }
  return built;
}

/** Removes the build directory; call from an after() hook. */
export async function cleanupBuild() {
  if (!built) return;
  const b = await built;
  rmSync(b.dir, { recursive: true, force: true });
  built = null;
}

/**
 * Returns the path of a freshly built herald binary. Skips the test t when
 * it cannot be built, or throws under CI=true.
 */
export async function requireHerald(t) {
  const b = await build();
  if (b.error) {
    if (process.env.CI === "true") throw new Error(b.error);
    t.skip(`herald server not available: ${b.error.split("\n")[0]}`);
    return null;
  }
  return b.bin;
}

/** A random printable secret of n bytes. */
export function secret(n = 32) {
  return randomBytes(n).toString("base64url").slice(0, n);
}

const addrPattern = /127\.0\.0\.1:(\d{2,5})/g;

/**
 * A running herald. Start with HeraldServer.start(bin, options); stop() is
 * idempotent and waits for the process to exit.
 */
export class HeraldServer {
  /**
   * @param {string} bin
   * @param {{port?: number, args?: string[], apiKey?: string, tokenSecret?: string}} [options]
   */
  static async start(bin, options = {}) {
    const s = new HeraldServer(bin, options);
    await s._start(options.port ?? 0);
    return s;
  }

  constructor(bin, options) {
    this.bin = bin;
    this.args = options.args ?? [];
    this.apiKey = options.apiKey ?? secret(24);
    this.tokenSecret = options.tokenSecret ?? secret(40);
    this.port = 0;
    this.proc = null;
    this.output = "";
  }

  get httpURL() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsURL() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async _start(port) {
    const args = [
      "serve",
      `--listen=127.0.0.1:${port}`,
      `--api-key=${this.apiKey}`,
      `--token-secret=${this.tokenSecret}`,
      "--drain-timeout=100ms",
      ...this.args,
    ];
    const proc = spawn(this.bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    this.output = "";
    const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
    this._exited = exited;
    let onOutput;
    const found = new Promise((resolve) => {
      onOutput = (chunk) => {
        this.output += chunk.toString();
        for (const m of this.output.matchAll(addrPattern)) {
          const p = Number(m[1]);
          if (p > 0 && (port === 0 || p === port)) {
            resolve(p);
            return;
          }
        }
      };
    });
    proc.stdout.on("data", onOutput);
    proc.stderr.on("data", onOutput);
    const deadline = timeout(20_000, "herald did not print its address");
    try {
      const result = await Promise.race([
        found,
        exited.then((e) => Promise.reject(new Error(`herald exited (${e.code ?? e.signal}) before listening`))),
        deadline.promise,
      ]);
      this.port = result;
      await this._waitHTTP();
    } catch (err) {
      proc.kill("SIGKILL");
      await exited;
      throw new Error(`${err.message}\n--- herald output ---\n${this.output}`);
    } finally {
      deadline.cancel();
    }
  }

  /** Polls until the HTTP listener answers. */
  async _waitHTTP() {
    const end = Date.now() + 10_000;
    for (;;) {
      try {
        await fetch(this.httpURL + "/api/info", { headers: { "X-API-Key": this.apiKey } });
        return;
      } catch (err) {
        if (Date.now() > end) throw new Error(`herald HTTP not answering: ${err.message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** POSTs body to /api/<method> and returns the parsed JSON answer; throws on a non-2xx status. */
  async api(method, body) {
    const res = await fetch(`${this.httpURL}/api/${method}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-API-Key": this.apiKey },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST /api/${method}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : {};
  }

  /** Publishes data to channel through the server API. */
  publish(channel, data) {
    return this.api("publish", { channel, data });
  }

  /** A HS256 connection token for user, valid ttlSeconds (0: no expiry). */
  token(user, ttlSeconds = 3600, info) {
    return signToken(this.tokenSecret, user, ttlSeconds, info);
  }

  /** Stops the server (SIGTERM, then SIGKILL after 15 s) and waits for it. */
  async stop() {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await this._exited;
      clearTimeout(t);
    }
  }

  /** Stops the server and starts it again on the same port (in-memory state is lost). */
  async restart() {
    const port = this.port;
    await this.stop();
    const end = Date.now() + 10_000;
    for (;;) {
      try {
        await this._start(port);
        return;
      } catch (err) {
        // The port can linger for a moment after the old process exits.
        if (Date.now() > end || !/address already in use/.test(err.message)) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

/** Signs a HS256 JWT with sub=user and, when ttlSeconds > 0, exp. */
export function signToken(secretKey, user, ttlSeconds = 3600, info) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, iat: now };
  if (ttlSeconds > 0) claims.exp = now + ttlSeconds;
  if (info !== undefined) claims.info = info;
  const enc = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = enc({ alg: "HS256", typ: "JWT" });
  const body = enc(claims);
  const sig = createHmac("sha256", secretKey).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/**
 * A TCP proxy on a loopback port in front of target. cutAll() resets every
 * connection (the peers see an abnormal close); freeze() keeps connections
 * open but stops forwarding bytes in both directions, on open connections
 * and on new ones until thaw() (a silent network); pause() refuses new
 * connections until resume() (a network outage).
 */
export class Proxy {
  static async start(targetPort) {
    const p = new Proxy(targetPort);
    await new Promise((resolve, reject) => {
      p.server.once("error", reject);
      p.server.listen(0, "127.0.0.1", resolve);
    });
    p.port = p.server.address().port;
    return p;
  }

  constructor(targetPort) {
    this.targetPort = targetPort;
    this.paused = false;
    this.frozen = false;
    this.pairs = new Set();
    this.server = net.createServer((client) => this._accept(client));
  }

  get wsURL() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  _accept(client) {
    if (this.paused) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    const pair = { client, upstream, frozen: this.frozen };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (b) => {
      if (!pair.frozen) upstream.write(b);
    });
    upstream.on("data", (b) => {
      if (!pair.frozen) client.write(b);
    });
  }

  /** Stops forwarding on every open and new connection; they stay open. */
  freeze() {
    this.frozen = true;
    for (const pair of this.pairs) pair.frozen = true;
  }

  /** New connections forward again; frozen ones stay frozen. */
  thaw() {
    this.frozen = false;
  }

  /** Refuses (resets) new connections until resume(). */
  pause() {
    this.paused = true;
  }

  resume() {
    this.paused = false;
  }

  get httpURL() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Resets every open connection. */
  cutAll() {
    for (const pair of [...this.pairs]) {
      pair.client.resetAndDestroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  async close() {
    this.cutAll();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A cancellable timeout whose promise rejects with message. */
export function timeout(ms, message) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  promise.catch(() => {});
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Resolves with the first ctx of emitter's event that satisfies pred;
 * rejects after ms.
 */
export function waitEvent(emitter, event, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for ${event}`));
    }, ms);
    const off = emitter.on(event, (ctx) => {
      if (!pred(ctx)) return;
      clearTimeout(timer);
      off();
      resolve(ctx);
    });
  });
}

/** Polls cond every 20 ms until it returns a truthy value or ms pass. */
export async function waitUntil(cond, ms = 10_000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
