// herald demo app: a chat room with presence, history, typing indicator and
// private messages, plus a live ticker, over one herald connection.
//
// Channels used (all in the server's default namespaces):
//   chat:<room>           messages; keeps history, presence, join/leave
//   signals.<room>        transient events: "hello" (name announcements) and
//                         "typing"; no history, so they never crowd it out
//   inbox.<member>        private messages to one browser tab (anonymous
//                         users have no user id for the send command); the
//                         member id is random per tab and announced in hello,
//                         so it survives reconnects. Not secret: anyone who
//                         knows the id can subscribe. Token users (#token=...)
//                         are also reachable with the send command.
//   demo:ticker           the server's demo ticker
//
// All text from the network is rendered with textContent, never as HTML.

import { Client } from "./herald.js";

const $ = (id) => document.getElementById(id);

const HISTORY_LIMIT = 50;
const MAX_MESSAGES = 300;
const TYPING_SEND_EVERY = 2000;
const TYPING_SHOW_FOR = 3500;
const SPARK_POINTS = 80;

const params = new URLSearchParams(location.hash.slice(1));
const wsURL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const client = new Client(wsURL, { token: params.get("token") || undefined });
const member = randomId();

// --- connection indicator ----------------------------------------------------

let everConnected = false;
let lastDrop = "";
let reloadingHistory = false;

client.on("connecting", (ctx) => {
  if (everConnected) lastDrop = ctx.reason;
  render();
});
client.on("connected", (ctx) => {
  everConnected = true;
  lastDrop = "";
  document.body.dataset.clientId = ctx.client;
  render();
});
client.on("disconnected", (ctx) => {
  lastDrop = ctx.reason;
  delete document.body.dataset.clientId;
  render();
});
client.on("state", render);
client.on("error", (ctx) => console.warn("herald:", ctx.type, ctx.error));

$("reconnect").addEventListener("click", () => client.connect());

function connectionState() {
  if (client.state === "disconnected") return ["disconnected", `Disconnected${lastDrop ? ` (${lastDrop})` : ""}`];
  if (client.state === "connecting") {
    return everConnected ? ["reconnecting", "Reconnecting…"] : ["connecting", "Connecting…"];
  }
  if (room && (room.sub?.state === "subscribing" || reloadingHistory)) return ["recovering", "Recovering messages…"];
  return ["connected", "Connected"];
}

function render() {
  const [state, text] = connectionState();
  const conn = $("conn");
  if (conn.dataset.state !== state) conn.dataset.state = state;
  if ($("conn-text").textContent !== text) $("conn-text").textContent = text;
  $("reconnect").hidden = state !== "disconnected";
  $("conn").title = lastDrop ? `last drop: ${lastDrop}` : "";
}

// --- ticker ------------------------------------------------------------------

const ticks = [];
let tickCount = 0;
/** Fills the chart from the ticker's short history, then follows it live from there. */
async function startTicker() {
  let since;
  try {
    await client.ready(30000);
    const h = await client.history("demo:ticker", { limit: SPARK_POINTS, reverse: true });
    for (const p of h.publications.reverse()) onTick(p.data);
    if (h.epoch) since = { offset: h.offset, epoch: h.epoch };
  } catch (err) {
    console.warn("herald demo: ticker history unavailable:", err.message);
  }
  const ticker = client.newSubscription("demo:ticker", since ? { since } : {});
  ticker.on("publication", ({ data }) => onTick(data));
  ticker.subscribe();
}

function onTick(data) {
  if (!data || typeof data.price !== "number") return;
  tickCount++;
  ticks.push(data.price);
  if (ticks.length > SPARK_POINTS) ticks.shift();
  $("ticker-symbol").textContent = String(data.symbol ?? "");
  $("ticker-price").textContent = data.price.toFixed(2);
  const change = Number(data.change) || 0;
  const dir = change > 0 ? "up" : change < 0 ? "down" : "flat";
  const el = $("ticker-change");
  el.dataset.dir = dir;
  el.textContent = `${dir === "up" ? "▲" : dir === "down" ? "▼" : "■"} ${Math.abs(change).toFixed(2)}`;
  el.setAttribute("aria-label", `change ${change.toFixed(2)}`);
  $("ticker-rate").textContent = String(tickCount);
  $("ticker-time").textContent = new Date(data.time || Date.now()).toLocaleTimeString();
  drawSpark();
}

function drawSpark() {
  const min = Math.min(...ticks);
  const max = Math.max(...ticks);
  const span = max - min || 1;
  const step = 240 / Math.max(ticks.length - 1, 1);
  const pts = ticks.map((p, i) => `${(i * step).toFixed(1)},${(56 - ((p - min) / span) * 52).toFixed(1)}`);
  $("spark-line").setAttribute("points", pts.join(" "));
}

// --- joining and leaving a room ------------------------------------------------

/** The joined room: its subscriptions and state, or null. */
let room = null;

const nameInput = $("name");
nameInput.value = params.get("name") || localStorage.getItem("herald-demo-name") || "";
if (params.get("room")) $("room").value = params.get("room");

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = nameInput.value.trim().slice(0, 24);
  const roomName = $("room").value.trim();
  if (!name || !/^[A-Za-z0-9_-]{1,32}$/.test(roomName)) return;
  localStorage.setItem("herald-demo-name", name);
  join(name, roomName);
});

$("leave").addEventListener("click", () => leave());

function join(name, roomName) {
  const channel = `chat:${roomName}`;
  const signals = client.newSubscription(`signals.${roomName}`);
  const inbox = client.newSubscription(`inbox.${member}`);
  room = {
    name,
    roomName,
    channel,
    sub: null, // created once the history is loaded
    signals,
    inbox,
    messages: new Map(), // offset -> publication (one epoch at a time)
    members: new Map(), // client id -> {name, member, user}
    online: new Map(), // client id -> ClientInfo
    typing: new Map(), // client id -> timeout
    announcedJoin: new Set(), // client ids whose join is not yet shown
    dmTarget: null,
    lastTypingSent: 0,
    subscribedOnce: false,
  };
  const r = room;
  signals.on("publication", (p) => r === room && onSignal(p));
  signals.on("subscribed", () => r === room && hello(false));
  inbox.on("publication", (p) => r === room && onPrivate(p.data, p.time));

  $("join-form").hidden = true;
  $("chat").hidden = false;
  $("leave").hidden = false;
  $("room-label").textContent = `#${roomName}`;
  $("messages").replaceChildren();
  system(`Welcome to #${roomName}, ${name}.`);
  loadHistory(r).then((position) => {
    if (r !== room) return;
    subscribeRoom(r, position);
    inbox.subscribe();
    signals.subscribe();
  });
  render();
  $("text").focus();
}

function leave() {
  if (!room) return;
  for (const s of [room.sub, room.signals, room.inbox]) if (s) client.removeSubscription(s);
  for (const t of room.typing.values()) clearTimeout(t);
  room = null;
  reloadingHistory = false;
  $("chat").hidden = true;
  $("leave").hidden = true;
  $("join-form").hidden = false;
  $("room-label").textContent = "";
  $("typing").textContent = "";
  renderOnline();
  render();
  nameInput.focus();
}

/**
 * Renders the room's recent history and returns the stream position it was
 * read at (null if the room keeps none), retrying until it succeeds or the
 * room is left.
 */
async function loadHistory(r) {
  for (let attempt = 0; r === room; attempt++) {
    try {
      if (client.state !== "connected") await client.ready(30000);
      const h = await client.history(r.channel, { limit: HISTORY_LIMIT, reverse: true });
      if (r !== room) return null;
      for (const p of h.publications.reverse()) r.messages.set(p.offset, p);
      renderMessages();
      return h.epoch ? { offset: h.offset, epoch: h.epoch } : null;
    } catch (err) {
      if (r !== room) return null;
      if (attempt === 0) system(`Could not load history (${err.message}); retrying…`, true);
      await new Promise((res) => setTimeout(res, Math.min(5000, 500 * 2 ** attempt)));
    }
  }
  return null;
}

/**
 * Subscribes to the room from the position its history was read at:
 * publications after it arrive through the subscription, with no gap and
 * no duplicate.
 */
function subscribeRoom(r, position) {
  const sub = client.newSubscription(r.channel, position ? { since: position } : {});
  r.sub = sub;
  sub.on("publication", (p) => r === room && addMessage(p));
  sub.on("subscribed", (ctx) => r === room && onRoomSubscribed(ctx));
  sub.on("state", render);
  sub.on("join", ({ info }) => {
    if (r !== room) return;
    r.online.set(info.client, info);
    if (info.client !== client.clientId) {
      // Announce the join once the name is known (the hello may come first).
      const who = r.members.get(info.client);
      if (who) system(`${who.name} joined`);
      else r.announcedJoin.add(info.client);
    }
    renderOnline();
  });
  sub.on("leave", ({ info }) => {
    if (r !== room) return;
    r.online.delete(info.client);
    const who = r.members.get(info.client);
    if (who && info.client !== client.clientId) system(`${who.name} left`);
    stopTyping(info.client);
    renderOnline();
  });
  sub.on("error", ({ error }) => r === room && system(`Room error: ${error.message}`, true));
  sub.on("unsubscribed", ({ code, reason }) => {
    if (r === room && code !== 1) system(`Unsubscribed from the room: ${reason}`, true);
  });
  sub.subscribe();
}

async function onRoomSubscribed(ctx) {
  const r = room;
  const first = !r.subscribedOnce;
  r.subscribedOnce = true;
  if (ctx.wasRecovering && !ctx.recovered) {
    // The server could not replay what we missed (for example it
    // restarted and lost its in-memory history): start over from history.
    reloadingHistory = true;
    render();
    r.messages.clear();
    if (!first) system("Reconnected, but missed messages could not be recovered: history reloaded.", true);
    await loadHistory(r);
    reloadingHistory = false;
  }
  await refreshPresence(r);
  render();
}

async function refreshPresence(r) {
  try {
    const presence = await r.sub.presence();
    if (r !== room) return;
    r.online = new Map(Object.entries(presence));
    renderOnline();
  } catch (err) {
    system(`Could not load who is online: ${err.message}`, true);
  }
}

// --- messages ------------------------------------------------------------------

function addMessage(p) {
  const r = room;
  if (typeof p.offset !== "number") return;
  if (r.messages.has(p.offset)) return;
  r.messages.set(p.offset, p);
  if (p.info) stopTyping(p.info.client);
  const list = $("messages");
  const last = list.querySelector("li.msg:last-of-type");
  if (last && Number(last.dataset.offset) > p.offset) {
    renderMessages();
    return;
  }
  list.append(messageItem(p));
  trim();
  scrollDown();
}

function renderMessages() {
  const r = room;
  const sorted = [...r.messages.values()].sort((a, b) => a.offset - b.offset);
  const keep = sorted.slice(-MAX_MESSAGES);
  r.messages = new Map(keep.map((p) => [p.offset, p]));
  const list = $("messages");
  const systemItems = [...list.querySelectorAll("li.system")];
  list.replaceChildren(...systemItems.slice(-3), ...keep.map(messageItem));
  scrollDown();
}

function trim() {
  const r = room;
  while (r.messages.size > MAX_MESSAGES) {
    const oldest = Math.min(...r.messages.keys());
    r.messages.delete(oldest);
    $("messages").querySelector(`li.msg[data-offset="${oldest}"]`)?.remove();
  }
}

function messageItem(p) {
  const d = p.data && typeof p.data === "object" ? p.data : {};
  const li = document.createElement("li");
  li.className = "msg";
  li.dataset.offset = String(p.offset);
  if (p.info && p.info.client === client.clientId) li.classList.add("mine");
  else if (d.member === member) li.classList.add("mine"); // sent before a reconnect
  const meta = document.createElement("span");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = String(d.name ?? "someone").slice(0, 24);
  const time = document.createElement("time");
  if (p.time) {
    const t = new Date(p.time);
    time.dateTime = t.toISOString();
    time.textContent = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  meta.append(author, time);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = typeof d.text === "string" ? d.text.slice(0, 500) : JSON.stringify(p.data);
  li.append(meta, text);
  return li;
}

function system(text, notice = false) {
  const li = document.createElement("li");
  li.className = notice ? "system notice" : "system";
  li.textContent = text;
  $("messages").append(li);
  scrollDown();
}

function scrollDown() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = room;
  const input = $("text");
  const text = input.value.trim();
  if (!r || !text) return;
  input.value = "";
  r.lastTypingSent = 0; // the next keystroke announces typing again
  try {
    if (r.dmTarget) await sendPrivate(r, r.dmTarget, text);
    else await client.publish(r.channel, { name: r.name, member, text });
  } catch (err) {
    input.value = text;
    system(`Not sent: ${err.message}`, true);
  }
});

// --- presence, names and typing --------------------------------------------------

/** Announces our name; reply answers someone else's hello. */
function hello(reply) {
  const r = room;
  if (!r || r.signals.state !== "subscribed") return;
  r.signals.publish({ type: "hello", name: r.name, member, reply }).catch(() => {});
}

function onSignal(p) {
  const r = room;
  const d = p.data;
  const from = p.info && p.info.client;
  if (!d || typeof d !== "object" || !from || from === client.clientId) return;
  const name = String(d.name ?? "").slice(0, 24) || "someone";
  if (d.type === "hello") {
    const known = r.members.has(from);
    const memberId = String(d.member ?? "");
    // The same tab under a new client id has reconnected rather than joined.
    const returning = [...r.members.values()].some((m) => m.member && m.member === memberId);
    r.members.set(from, { name, member: memberId, user: p.info.user });
    if (r.announcedJoin.delete(from) && !returning) system(`${name} joined`);
    if (!d.reply && !known) hello(true);
    renderOnline();
  } else if (d.type === "typing") {
    showTyping(from, name);
  }
}

$("text").addEventListener("input", () => {
  const r = room;
  if (!r || r.dmTarget || r.signals.state !== "subscribed") return;
  const now = Date.now();
  if (now - r.lastTypingSent < TYPING_SEND_EVERY) return;
  r.lastTypingSent = now;
  r.signals.publish({ type: "typing", name: r.name }).catch(() => {});
});

function showTyping(clientId, name) {
  const r = room;
  clearTimeout(r.typing.get(clientId));
  r.typing.set(
    clientId,
    setTimeout(() => stopTyping(clientId), TYPING_SHOW_FOR),
  );
  r.members.set(clientId, { ...(r.members.get(clientId) ?? {}), name });
  renderTyping();
}

function stopTyping(clientId) {
  const r = room;
  if (!r || !r.typing.has(clientId)) return;
  clearTimeout(r.typing.get(clientId));
  r.typing.delete(clientId);
  renderTyping();
}

function renderTyping() {
  const names = [...room.typing.keys()].map((id) => room.members.get(id)?.name ?? "someone");
  $("typing").textContent =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

function displayName(r, clientId, info) {
  if (clientId === client.clientId) return r.name;
  return r.members.get(clientId)?.name ?? (info?.user ? info.user : `guest-${clientId.slice(0, 4)}`);
}

function renderOnline() {
  const list = $("online");
  const r = room;
  $("online-help").hidden = !r;
  if (!r) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "Join a room to see who is online.";
    list.replaceChildren(li);
    $("online-count").textContent = "0";
    return;
  }
  const entries = [...r.online.entries()].sort(([a, ia], [b, ib]) => {
    if (a === client.clientId) return -1;
    if (b === client.clientId) return 1;
    return displayName(r, a, ia).localeCompare(displayName(r, b, ib));
  });
  $("online-count").textContent = String(entries.length);
  list.replaceChildren(
    ...entries.map(([id, info]) => {
      const li = document.createElement("li");
      li.dataset.client = id;
      const b = document.createElement("button");
      b.type = "button";
      const name = displayName(r, id, info);
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = name.slice(0, 1).toUpperCase();
      avatar.style.background = colorFor(name);
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      b.append(avatar, label);
      if (id === client.clientId) {
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = "(you)";
        b.append(you);
        b.disabled = true;
      } else {
        b.setAttribute("aria-pressed", String(r.dmTarget?.client === id));
        b.setAttribute("aria-label", `Send a private message to ${name}`);
        b.addEventListener("click", () => setDMTarget(id));
      }
      li.append(b);
      return li;
    }),
  );
}

// --- private messages ----------------------------------------------------------

function setDMTarget(clientId) {
  const r = room;
  const who = r.members.get(clientId);
  const info = r.online.get(clientId);
  r.dmTarget = { client: clientId, name: displayName(r, clientId, info), member: who?.member, user: info?.user };
  $("dm-name").textContent = r.dmTarget.name;
  $("dm-target").hidden = false;
  $("text").placeholder = `Private message to ${r.dmTarget.name}…`;
  renderOnline();
  $("text").focus();
}

function clearDMTarget() {
  if (!room) return;
  room.dmTarget = null;
  $("dm-target").hidden = true;
  $("text").placeholder = "Write a message…";
  renderOnline();
  $("text").focus();
}

$("dm-cancel").addEventListener("click", clearDMTarget);
$("text").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && room?.dmTarget) clearDMTarget();
});

async function sendPrivate(r, target, text) {
  const data = { type: "dm", name: r.name, member, text };
  if (target.member) {
    await client.publish(`inbox.${target.member}`, data);
  } else if (target.user) {
    await client.send(target.user, data);
  } else {
    throw new Error(`${target.name} has not announced an inbox yet`);
  }
  privateItem(`To ${target.name} (private)`, text, Date.now(), true);
}

function onPrivate(data, time) {
  if (!data || typeof data !== "object") return;
  const name = String(data.name ?? "someone").slice(0, 24);
  privateItem(`${name} → you (private)`, typeof data.text === "string" ? data.text : JSON.stringify(data), time, false);
}

// Direct messages through the send command or the server API's /api/send.
client.on("message", ({ data, info }) => {
  if (!room) return;
  if (data && typeof data === "object" && data.type === "dm") onPrivate(data, Date.now());
  else privateItem(`Message from ${info?.user || "the server"}`, typeof data === "string" ? data : JSON.stringify(data), Date.now(), false);
});

function privateItem(title, text, time, mine) {
  const li = document.createElement("li");
  li.className = mine ? "msg dm mine" : "msg dm";
  const meta = document.createElement("span");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = title;
  const t = document.createElement("time");
  const d = new Date(time || Date.now());
  t.dateTime = d.toISOString();
  t.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.append(author, t);
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text.slice(0, 500);
  li.append(meta, body);
  $("messages").append(li);
  scrollDown();
}

// --- helpers -------------------------------------------------------------------

function randomId() {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function colorFor(name) {
  let h = 2166136261;
  for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0), 16777619) >>> 0;
  return `hsl(${h % 360} 55% 38%)`; // dark enough for white initials
}

client.connect();
render();
renderOnline();
startTicker();
