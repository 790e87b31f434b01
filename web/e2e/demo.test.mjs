// The demo app in a real headless Chromium against a real herald server
// built from this repository.
//
// Chromium: /usr/bin/chromium, or the CHROMIUM environment variable.
// Without a browser or server the tests skip, except under CI=true, where
// they fail.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";

import {
  HeraldServer,
  Proxy,
  cleanupBuild,
  repoRoot,
  requireHerald,
  waitUntil,
} from "../client/test/support/server.mjs";

const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const artifacts = path.join(repoRoot, "test-artifacts");

let server = null;
let browser = null;

before(async (t) => {
  if (!existsSync(chromiumPath)) {
    if (process.env.CI === "true") throw new Error(`no Chromium at ${chromiumPath}`);
    t.skip(`no Chromium at ${chromiumPath}`);
    return;
  }
  const bin = await requireHerald(t);
  if (!bin) return;
  server = await HeraldServer.start(bin);
  // Playwright runs Chromium with a fresh temporary profile (user data dir).
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await cleanupBuild();
});

let roomSeq = 0;
function newRoom() {
  return `e2e-${process.pid}-${++roomSeq}`;
}

/** Opens the demo in a fresh browser context (its own storage) and fails the test on page errors. */
async function openDemo(t, baseURL = server.httpURL, viewport = { width: 1200, height: 800 }) {
  const context = await browser.newContext({ viewport });
  t.after(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err));
  t.after(() => assert.deepEqual(errors, [], "uncaught errors in the page"));
  await page.goto(baseURL + "/");
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  return page;
}

async function join(page, name, room) {
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Room").fill(room);
  await page.getByRole("button", { name: "Join room" }).click();
  await page.waitForSelector("#chat:not([hidden])");
  // Joined: subscribed to the room and announced on the signals channel.
  await page.waitForFunction(() => document.querySelector('#online li button[disabled]') !== null, null, {
    timeout: 10_000,
  });
}

async function say(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.keyboard.press("Enter");
}

/** The texts of the chat messages in display order. */
function messageTexts(page) {
  return page.$$eval("#messages li.msg:not(.dm) .text", (els) => els.map((e) => e.textContent));
}

function onlineNames(page) {
  return page.$$eval("#online li .name", (els) => els.map((e) => e.textContent).sort());
}

async function waitForTexts(page, want, what) {
  await waitUntil(
    async () => {
      const got = await messageTexts(page);
      return JSON.stringify(got) === JSON.stringify(want);
    },
    15_000,
    what,
  ).catch(async (err) => {
    throw new Error(`${err.message}: have ${JSON.stringify(await messageTexts(page))}, want ${JSON.stringify(want)}`);
  });
}

describe("demo app", () => {
  test("two pages chat, see each other online, type and message privately", async (t) => {
    if (!browser) return t.skip("no browser");
    const room = newRoom();
    const ada = await openDemo(t);
    await join(ada, "Ada", room);
    const bob = await openDemo(t);
    await join(bob, "Bob", room);

    // Presence: each sees both names (names arrive with the hello signal).
    await waitUntil(async () => JSON.stringify(await onlineNames(ada)) === '["Ada","Bob"]', 10_000, "Ada sees Bob");
    await waitUntil(async () => JSON.stringify(await onlineNames(bob)) === '["Ada","Bob"]', 10_000, "Bob sees Ada");
    await ada.waitForSelector("#messages li.system:has-text('Bob joined')");

    await say(ada, "hello Bob");
    await waitForTexts(bob, ["hello Bob"], "Bob receives Ada's message");
    await say(bob, "hi Ada!");
    await waitForTexts(ada, ["hello Bob", "hi Ada!"], "Ada receives Bob's reply");
    assert.equal(await ada.locator("#messages li.msg.mine .text").textContent(), "hello Bob");

    // Typing indicator.
    await bob.getByLabel("Message", { exact: true }).pressSequentially("typing…", { delay: 10 });
    await ada.waitForSelector("#typing:has-text('Bob is typing')", { timeout: 5000 });

    // A private message by keyboard: select Bob in the online list.
    await ada.getByRole("button", { name: "Send a private message to Bob" }).focus();
    await ada.keyboard.press("Enter");
    await ada.waitForSelector("#dm-target:not([hidden])");
    await say(ada, "just between us");
    await bob.waitForSelector("#messages li.dm:has-text('Ada → you (private)')");
    assert.equal(await bob.locator("#messages li.dm .text").textContent(), "just between us");
    await ada.waitForSelector("#messages li.dm.mine:has-text('To Bob (private)')");
    assert.deepEqual(await messageTexts(bob), ["hello Bob", "hi Ada!"], "private message stays out of the room");

    // A late joiner gets the room's recent history.
    const cy = await openDemo(t);
    await join(cy, "Cy", room);
    await waitForTexts(cy, ["hello Bob", "hi Ada!"], "Cy loads history");

    // Leave: Bob closes his page; Ada's online list drops him.
    await bob.close();
    await waitUntil(async () => JSON.stringify(await onlineNames(ada)) === '["Ada","Cy"]', 10_000, "Bob leaves");
    await ada.waitForSelector("#messages li.system:has-text('Bob left')");
  });

  test("the live ticker updates", async (t) => {
    if (!browser) return t.skip("no browser");
    const page = await openDemo(t);
    await page.waitForFunction(() => Number(document.querySelector("#ticker-rate").textContent) >= 3, null, {
      timeout: 10_000,
    });
    const price = await page.locator("#ticker-price").textContent();
    assert.match(price, /^\d+\.\d\d$/);
    const points = await page.locator("#spark-line").getAttribute("points");
    assert.ok(points.split(" ").length >= 3);
  });

  test("a page whose network drops recovers every message in order, without duplicates", async (t) => {
    if (!browser) return t.skip("no browser");
    const proxy = await Proxy.start(server.port);
    t.after(() => proxy.close());
    const room = newRoom();
    const channel = `chat:${room}`;
    const page = await openDemo(t, proxy.httpURL);
    await join(page, "Flaky", room);
    const want = [];
    const publish = async (n) => {
      const text = `message ${n}`;
      want.push(text);
      await server.publish(channel, { name: "backend", text });
    };
    for (let n = 1; n <= 5; n++) await publish(n);
    await waitForTexts(page, want, "messages before the outage");

    // Outage: the connection drops and reconnects are refused for a while,
    // and messages keep coming meanwhile.
    proxy.pause();
    proxy.cutAll();
    await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 5000 });
    for (let n = 6; n <= 30; n++) await publish(n);
    proxy.resume();
    for (let n = 31; n <= 35; n++) await publish(n);

    await page.waitForSelector('#conn[data-state="connected"]', { timeout: 30_000 });
    await waitForTexts(page, want, "every message after the outage");
    for (let n = 36; n <= 40; n++) await publish(n);
    await waitForTexts(page, want, "live messages after recovery");
    const offsets = await page.$$eval("#messages li.msg:not(.dm)", (els) => els.map((e) => Number(e.dataset.offset)));
    assert.equal(new Set(offsets).size, offsets.length, "duplicate offsets");
    assert.deepEqual(
      offsets,
      [...offsets].sort((a, b) => a - b),
    );
  });

  test("pages reconnect after a server restart and reload the lost history", async (t) => {
    if (!browser) return t.skip("no browser");
    const room = newRoom();
    const ada = await openDemo(t);
    await join(ada, "Ada", room);
    const bob = await openDemo(t);
    await join(bob, "Bob", room);
    await say(ada, "before the restart");
    await waitForTexts(bob, ["before the restart"], "message before the restart");

    await server.restart(); // the memory broker loses history and epochs
    for (const page of [ada, bob]) {
      await page.waitForSelector("#messages li.notice:has-text('history reloaded')", { timeout: 30_000 });
      await page.waitForSelector('#conn[data-state="connected"]', { timeout: 30_000 });
      // The reloaded history is the new server's: empty.
      await waitForTexts(page, [], "history reloaded after the restart");
    }
    await waitUntil(async () => JSON.stringify(await onlineNames(ada)) === '["Ada","Bob"]', 10_000, "presence after restart");
    await say(bob, "after the restart");
    await waitForTexts(ada, ["after the restart"], "chat works after the restart");

    mkdirSync(artifacts, { recursive: true });
    await ada.screenshot({ path: path.join(artifacts, "demo-after-restart.png") });
  });

  test("screenshots of the demo, wide and narrow", async (t) => {
    if (!browser) return t.skip("no browser");
    const room = newRoom();
    const ada = await openDemo(t);
    await join(ada, "Ada", room);
    const grace = await openDemo(t, server.httpURL, { width: 390, height: 844 });
    await join(grace, "Grace", room);
    // Each line is sent once the previous one has arrived: two pages typing
    // at once have no order between them.
    const lines = [
      [ada, grace, "Welcome to herald! Messages arrive in milliseconds."],
      [grace, ada, "Looks great on a phone too!"],
      [ada, grace, "Try closing the network: nothing gets lost."],
    ];
    for (const [i, [from, to, text]] of lines.entries()) {
      await say(from, text);
      await waitForTexts(to, lines.slice(0, i + 1).map((l) => l[2]), "conversation");
    }
    await grace.getByLabel("Message", { exact: true }).pressSequentially("typing", { delay: 10 });
    await ada.waitForSelector("#typing:has-text('Grace is typing')");
    await ada.waitForFunction(() => Number(document.querySelector("#ticker-rate").textContent) >= 8);

    // Every form control has a label.
    const unlabelled = await ada.$$eval("input", (els) =>
      els.filter((e) => !document.querySelector(`label[for="${e.id}"]`)).map((e) => e.id),
    );
    assert.deepEqual(unlabelled, []);

    mkdirSync(artifacts, { recursive: true });
    await ada.screenshot({ path: path.join(artifacts, "demo.png") });
    await grace.screenshot({ path: path.join(artifacts, "demo-narrow.png"), fullPage: true });
  });
});
