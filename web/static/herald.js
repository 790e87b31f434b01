/**
 * herald client for browsers and Node 20+: one WebSocket connection to a
 * herald server speaking the JSON client protocol (docs/protocol.md).
 *
 * - `Client` connects (anonymously, with a token, or with a token-fetching
 *   callback that is also used to refresh the token before it expires),
 *   reconnects by itself with exponential backoff and full jitter, answers
 *   server pings and notices a silent server.
 * - `Subscription` follows one channel; after a reconnect it resubscribes
 *   from the last offset it processed, so the app receives every missed
 *   publication in order, or learns `recovered: false` and reloads.
 *
 * Everything runs on the event loop: no method blocks and every event is
 * delivered from a WebSocket or timer callback, never synchronously from
 * the method call that caused it, except where noted.
 *
 * @module
 */
/** Library version, sent in the connect command. */
export const VERSION = "1.0.0";
// ---------------------------------------------------------------------------
// Codes
/**
 * Client-side error codes (`HeraldError.code`). Server error codes are 100
 * and above (docs/protocol.md), so these never collide with them.
 */
export const ErrorCode = {
    /** The command got no reply within the timeout. */
    Timeout: 1,
    /** The client is disconnected, or the connection closed before the reply. */
    Disconnected: 2,
    /** The subscription was unsubscribed while the command waited. */
    Unsubscribed: 3,
    /** Server error codes this client acts on. */
    Internal: 100,
    Unauthorized: 101,
    BrokerUnavailable: 114,
    TooManyRequests: 115,
    TokenExpired: 109,
    Unrecoverable: 113,
};
/**
 * Codes the client reports in `connecting`, `disconnected`, `subscribing`
 * and `unsubscribed` events for reasons of its own. Server disconnect
 * codes (1001, 3000-3999) and WebSocket close codes (1006, ...) are
 * reported as received.
 */
export const DisconnectCode = {
    /** `connect()` or `subscribe()` was called. */
    Called: 0,
    /** `disconnect()` or `unsubscribe()` was called. */
    Closed: 1,
    /** Nothing arrived from the server for ping + maxServerPingDelay. */
    NoPing: 4001,
    /** The connection was not established within the timeout. */
    ConnectTimeout: 4002,
    /** The transport could not be created (bad URL, no WebSocket). */
    TransportFailed: 4003,
    /** The connect command failed with a temporary error. */
    ConnectFailed: 4004,
    /** The token callback threw UnauthorizedError, or the server refused the token. */
    Unauthorized: 3502,
};
/** Whether a disconnect code means "reconnect" (docs/protocol.md). */
export function shouldReconnect(code) {
    if (code === 1001)
        return true; // server shutdown or drain
    if (code >= 3000 && code < 3500)
        return true; // server: reconnect with backoff
    if (code >= 3500 && code < 4000)
        return false; // server: do not reconnect
    if (code >= 4000 && code < 5000)
        return true; // client-side reasons above
    switch (code) {
        case 1005: // no status: the peer closed without a code
        case 1006: // abnormal closure: the connection dropped
        case 1011: // server error
        case 1012: // service restart
        case 1013: // try again later
        case 1014: // bad gateway
        case 1015: // TLS handshake
            return true;
    }
    return false; // 1000 normal, 1002/1003/1007/1008/1009/1010 protocol-level refusals
}
/** A command failed. `code` is a server error code or one of `ErrorCode`. */
export class HeraldError extends Error {
    constructor(code, message, temporary = false) {
        super(message);
        this.name = "HeraldError";
        this.code = code;
        this.temporary = temporary;
    }
}
/**
 * Thrown by a `getToken` callback to say the user is not allowed to connect
 * at all: the client then stops instead of retrying.
 */
export class UnauthorizedError extends Error {
    constructor(message = "unauthorized") {
        super(message);
        this.name = "UnauthorizedError";
    }
}
function isTemporary(err) {
    if (!(err instanceof HeraldError))
        return false;
    return (err.temporary ||
        err.code === ErrorCode.Timeout ||
        err.code === ErrorCode.Internal ||
        err.code === ErrorCode.BrokerUnavailable ||
        err.code === ErrorCode.TooManyRequests);
}
/**
 * A minimal typed event emitter. Listeners run in registration order; a
 * listener that throws does not stop the others or the client: its
 * exception is rethrown from a separate task, so it still surfaces.
 */
export class Emitter {
    constructor() {
        this._listeners = new Map();
    }
    /** Adds a listener and returns a function that removes it. */
    on(event, listener) {
        let set = this._listeners.get(event);
        if (!set) {
            set = new Set();
            this._listeners.set(event, set);
        }
        set.add(listener);
        return () => this.off(event, listener);
    }
    /** Adds a listener that runs at most once. */
    once(event, listener) {
        const off = this.on(event, (ctx) => {
            off();
            listener(ctx);
        });
        return off;
    }
    off(event, listener) {
        this._listeners.get(event)?.delete(listener);
    }
    _emit(event, ctx) {
        const set = this._listeners.get(event);
        if (!set)
            return;
        for (const l of [...set]) {
            try {
                l(ctx);
            }
            catch (err) {
                setTimeout(() => {
                    throw err;
                }, 0);
            }
        }
    }
}
const WS_OPEN = 1;
/**
 * A connection to herald. Create it, add subscriptions, call `connect()`.
 *
 * The client keeps itself connected until `disconnect()` or a disconnect
 * code that forbids reconnecting (3500-3999, 1000). Commands issued while
 * it is connecting wait for the connection (within `timeout`); commands
 * issued while it is disconnected fail at once with ErrorCode.Disconnected.
 */
export class Client extends Emitter {
    /** @param url WebSocket URL of the server, e.g. `ws://127.0.0.1:8080/ws`. */
    constructor(url, options = {}) {
        super();
        /** Current state; `state` events report changes. */
        this.state = "disconnected";
        /** This connection's id while connected, else null. */
        this.clientId = null;
        this._ws = null;
        /** Incremented whenever a transport is abandoned: callbacks of older transports are ignored. */
        this._gen = 0;
        this._nextId = 0;
        this._pending = new Map();
        this._waiters = new Set();
        this._subs = new Map();
        this._reconnectAttempts = 0;
        this._reconnectTimer = null;
        this._connectTimer = null;
        this._watchdog = null;
        this._refreshTimer = null;
        this._onlineListener = null;
        this._serverPing = 0;
        this._sendPong = false;
        this.url = url;
        this._token = options.token;
        this._opts = {
            getToken: options.getToken,
            WebSocket: options.WebSocket,
            name: options.name ?? "herald-js",
            version: options.version ?? VERSION,
            timeout: options.timeout ?? 10000,
            minReconnectDelay: options.minReconnectDelay ?? 500,
            maxReconnectDelay: options.maxReconnectDelay ?? 20000,
            maxServerPingDelay: options.maxServerPingDelay ?? 10000,
        };
    }
    /** Starts connecting; no-op unless disconnected. */
    connect() {
        if (this.state !== "disconnected")
            return;
        this._reconnectAttempts = 0;
        this._setState("connecting");
        this._emit("connecting", { code: DisconnectCode.Called, reason: "connect called" });
        this._startTransport();
    }
    /** Closes the connection and stops reconnecting. Subscriptions are kept and resubscribe on the next `connect()`. */
    disconnect() {
        if (this.state === "disconnected")
            return;
        this._abandonTransport(1000, "disconnect called");
        this._toDisconnected(DisconnectCode.Closed, "disconnect called");
    }
    /** Resolves when connected; rejects if the client ends up disconnected or `timeout` ms pass. */
    ready(timeout = this._opts.timeout) {
        if (this.state === "connected")
            return Promise.resolve();
        if (this.state === "disconnected") {
            return Promise.reject(new HeraldError(ErrorCode.Disconnected, "client is disconnected"));
        }
        return new Promise((resolve, reject) => {
            const w = {
                resolve,
                reject,
                timer: setTimeout(() => {
                    this._waiters.delete(w);
                    reject(new HeraldError(ErrorCode.Timeout, "timed out waiting for the connection"));
                }, timeout),
            };
            this._waiters.add(w);
        });
    }
    /** Creates a subscription to channel (call its `subscribe()`). A channel can have one subscription per client. */
    newSubscription(channel, options = {}) {
        if (this._subs.has(channel))
            throw new Error(`herald: already have a subscription to ${channel}`);
        const sub = new Subscription(this, channel, options);
        this._subs.set(channel, sub);
        return sub;
    }
    getSubscription(channel) {
        return this._subs.get(channel) ?? null;
    }
    /** Unsubscribes sub and forgets it, so its channel can get a new subscription. */
    removeSubscription(sub) {
        sub.unsubscribe();
        if (this._subs.get(sub.channel) === sub)
            this._subs.delete(sub.channel);
    }
    subscriptions() {
        return [...this._subs.values()];
    }
    /** Publishes data (any JSON value) to a channel the namespace lets clients publish to. */
    async publish(channel, data) {
        checkData(data);
        const r = await this._call("publish", { channel, data });
        return { offset: r.offset, epoch: r.epoch };
    }
    /** Who is subscribed to channel: client id -> info. */
    async presence(channel) {
        const r = await this._call("presence", { channel });
        return r.presence ?? {};
    }
    async presenceStats(channel) {
        const r = await this._call("presence_stats", { channel });
        return { numClients: r.num_clients ?? 0, numUsers: r.num_users ?? 0 };
    }
    /** Reads a channel's history and current position. */
    async history(channel, options = {}) {
        const params = { channel };
        if (options.limit !== undefined)
            params.limit = options.limit;
        if (options.since)
            params.since = { offset: options.since.offset, epoch: options.since.epoch };
        if (options.reverse)
            params.reverse = true;
        const r = await this._call("history", params);
        return { publications: r.publications ?? [], offset: r.offset ?? 0, epoch: r.epoch ?? "" };
    }
    /** Sends data (any JSON value) to every connection of user; they get a `message` event. */
    async send(user, data) {
        checkData(data);
        await this._call("send", { user, data });
    }
    /** Round trip to the server. */
    async ping() {
        await this._call("ping", undefined);
    }
    // -- commands --------------------------------------------------------------
    /** @internal Sends a command once connected and resolves with its result. */
    async _call(method, params) {
        if (this.state !== "connected")
            await this.ready();
        return new Promise((resolve, reject) => {
            this._command(method, params, (err, result) => (err ? reject(err) : resolve(result)));
        });
    }
    /**
     * @internal
     * Sends a command now and calls cb exactly once, synchronously from the
     * message handler that received the reply (so that state changes happen
     * before any later message of the same read is processed).
     */
    _command(method, params, cb) {
        const ws = this._ws;
        if (!ws || ws.readyState !== WS_OPEN) {
            cb(new HeraldError(ErrorCode.Disconnected, "not connected"), null);
            return;
        }
        this._nextId = (this._nextId % 0x7fffffff) + 1;
        const id = this._nextId;
        const timer = setTimeout(() => {
            if (this._pending.delete(id))
                cb(new HeraldError(ErrorCode.Timeout, `${method}: no reply within ${this._opts.timeout} ms`), null);
        }, this._opts.timeout);
        this._pending.set(id, { cb, timer });
        const cmd = { id, method };
        if (params !== undefined)
            cmd.params = params;
        try {
            ws.send(JSON.stringify(cmd));
        }
        catch (err) {
            clearTimeout(timer);
            this._pending.delete(id);
            cb(new HeraldError(ErrorCode.Disconnected, `${method}: ${errorMessage(err)}`), null);
        }
    }
    /** @internal */
    _isConnected() {
        return this.state === "connected";
    }
    // -- connection lifecycle ----------------------------------------------------
    _setState(s) {
        if (s === this.state)
            return;
        const old = this.state;
        this.state = s;
        this._emit("state", { oldState: old, newState: s });
    }
    async _startTransport() {
        const gen = ++this._gen;
        if (this._token === undefined && this._opts.getToken) {
            let token;
            try {
                token = await this._opts.getToken();
            }
            catch (err) {
                if (gen !== this._gen)
                    return;
                if (err instanceof UnauthorizedError) {
                    this._toDisconnected(DisconnectCode.Unauthorized, err.message);
                    return;
                }
                this._emit("error", { type: "token", error: asError(err) });
                this._scheduleReconnect();
                return;
            }
            if (gen !== this._gen)
                return;
            this._token = token;
        }
        const WS = this._opts.WebSocket ?? globalThis.WebSocket;
        if (typeof WS !== "function") {
            this._emit("error", { type: "transport", error: new Error("no WebSocket implementation: pass options.WebSocket") });
            this._toDisconnected(DisconnectCode.TransportFailed, "no WebSocket implementation");
            return;
        }
        let ws;
        try {
            ws = new WS(this.url);
        }
        catch (err) {
            this._emit("error", { type: "transport", error: asError(err) });
            this._toDisconnected(DisconnectCode.TransportFailed, errorMessage(err));
            return;
        }
        this._ws = ws;
        this._connectTimer = setTimeout(() => {
            if (gen !== this._gen)
                return;
            this._lost(DisconnectCode.ConnectTimeout, "connect timeout");
        }, this._opts.timeout);
        ws.onopen = () => {
            if (gen === this._gen)
                this._sendConnect(gen);
        };
        ws.onmessage = (ev) => {
            if (gen === this._gen)
                this._onData(ev.data);
        };
        ws.onerror = () => {
            // The close event that follows carries the code.
        };
        ws.onclose = (ev) => {
            if (gen !== this._gen)
                return;
            this._ws = null;
            this._lost(ev.code || 1006, ev.reason || "connection closed");
        };
    }
    _sendConnect(gen) {
        const params = { name: this._opts.name, version: this._opts.version };
        if (this._token !== undefined)
            params.token = this._token;
        this._command("connect", params, (err, r) => {
            if (gen !== this._gen)
                return;
            if (err) {
                this._emit("error", { type: "connect", error: err });
                if (err.code === ErrorCode.TokenExpired && this._opts.getToken) {
                    this._token = undefined;
                    this._lost(3005, err.message);
                }
                else if (isTemporary(err) || err.code === ErrorCode.Disconnected) {
                    this._lost(DisconnectCode.ConnectFailed, err.message);
                }
                else {
                    const code = err.code === ErrorCode.Unauthorized || err.code === ErrorCode.TokenExpired ? DisconnectCode.Unauthorized : 3501;
                    this._abandonTransport(1000, "connect failed");
                    this._toDisconnected(code, err.message);
                }
                return;
            }
            this._onConnected(r ?? {});
        });
    }
    _onConnected(r) {
        this._clearTimer("_connectTimer");
        this._reconnectAttempts = 0;
        this.clientId = r.client ?? null;
        this._serverPing = Number(r.ping) || 0;
        this._sendPong = !!r.pong;
        this._resetWatchdog();
        this._setState("connected");
        const ttl = Number(r.ttl) || 0;
        if (r.expires && ttl > 0)
            this._scheduleRefresh(ttl);
        for (const w of this._waiters) {
            clearTimeout(w.timer);
            w.resolve();
        }
        this._waiters.clear();
        this._emit("connected", {
            client: r.client,
            version: r.version,
            node: r.node,
            expires: !!r.expires,
            ttl,
            ping: this._serverPing,
        });
        for (const sub of this._subs.values())
            sub._onClientConnected();
    }
    _onData(data) {
        this._resetWatchdog();
        if (typeof data !== "string") {
            this._emit("error", { type: "protocol", error: new Error("binary frame on a JSON connection") });
            return;
        }
        let msg;
        try {
            msg = JSON.parse(data);
        }
        catch (err) {
            this._emit("error", { type: "protocol", error: new Error(`malformed message: ${errorMessage(err)}`) });
            return;
        }
        if (msg === null || typeof msg !== "object")
            return;
        if (typeof msg.id === "number" && msg.id > 0) {
            const p = this._pending.get(msg.id);
            if (!p)
                return; // timed out already
            this._pending.delete(msg.id);
            clearTimeout(p.timer);
            if (msg.error) {
                const e = msg.error;
                p.cb(new HeraldError(Number(e.code) || 0, String(e.message ?? "error"), !!e.temporary), null);
            }
            else {
                p.cb(null, msg.result ?? {});
            }
            return;
        }
        this._onPush(msg);
    }
    _onPush(msg) {
        switch (msg.type) {
            case "ping":
                if (this._sendPong && this._ws && this._ws.readyState === WS_OPEN) {
                    try {
                        this._ws.send('{"method":"pong"}');
                    }
                    catch {
                        // The close event follows.
                    }
                }
                return;
            case "publication":
                this._subs.get(msg.channel)?._onPublication(msg);
                return;
            case "join":
                this._subs.get(msg.channel)?._onJoinLeave("join", msg.info);
                return;
            case "leave":
                this._subs.get(msg.channel)?._onJoinLeave("leave", msg.info);
                return;
            case "unsubscribe":
                this._subs.get(msg.channel)?._onServerUnsubscribe(Number(msg.code) || 0, String(msg.reason ?? ""), !!msg.resubscribe);
                return;
            case "message":
                this._emit("message", { data: msg.data, info: msg.info });
                return;
            case "disconnect": {
                // The close frame follows over WebSocket; act on the push at once so
                // that its reconnect advice is honoured whatever the transport does.
                const code = Number(msg.code) || 0;
                const reason = String(msg.reason ?? "");
                this._abandonTransport(undefined, undefined);
                this._lost(code, reason, typeof msg.reconnect === "boolean" ? msg.reconnect : undefined);
                return;
            }
        }
    }
    _resetWatchdog() {
        this._clearTimer("_watchdog");
        if (this._serverPing <= 0)
            return;
        const gen = this._gen;
        this._watchdog = setTimeout(() => {
            if (gen !== this._gen)
                return;
            this._lost(DisconnectCode.NoPing, "no data from server");
        }, this._serverPing * 1000 + this._opts.maxServerPingDelay);
    }
    _scheduleRefresh(ttl) {
        this._clearTimer("_refreshTimer");
        if (!this._opts.getToken)
            return;
        // Refresh a little before expiry: a minute early for long tokens,
        // a fifth of the lifetime for short ones.
        const ms = ttl * 1000;
        const delay = Math.max(0, ms - Math.min(60000, ms / 5));
        this._refreshTimer = setTimeout(() => this._refresh(0), delay);
    }
    async _refresh(attempt) {
        const gen = this._gen;
        const retry = () => {
            if (gen !== this._gen || this.state !== "connected")
                return;
            this._refreshTimer = setTimeout(() => this._refresh(attempt + 1), this._backoff(attempt));
        };
        let token;
        try {
            token = await this._opts.getToken();
        }
        catch (err) {
            if (gen !== this._gen)
                return;
            if (err instanceof UnauthorizedError) {
                this._abandonTransport(1000, "unauthorized");
                this._toDisconnected(DisconnectCode.Unauthorized, err.message);
                return;
            }
            this._emit("error", { type: "token", error: asError(err) });
            retry();
            return;
        }
        if (gen !== this._gen || this.state !== "connected")
            return;
        this._token = token;
        this._command("refresh", { token }, (err, r) => {
            if (gen !== this._gen)
                return;
            if (err) {
                this._emit("error", { type: "refresh", error: err });
                // A refused token ends with a 3005 disconnect at expiry, after
                // which a fresh token is fetched; temporary failures are retried.
                if (isTemporary(err))
                    retry();
                return;
            }
            const ttl = Number(r.ttl) || 0;
            if (r.expires && ttl > 0)
                this._scheduleRefresh(ttl);
        });
    }
    _backoff(attempt) {
        const cap = Math.min(this._opts.maxReconnectDelay, this._opts.minReconnectDelay * 2 ** Math.min(attempt, 30));
        return Math.random() * cap; // full jitter
    }
    /** Closes the current transport (if any) and ignores its further events. */
    _abandonTransport(code, reason) {
        this._gen++;
        const ws = this._ws;
        this._ws = null;
        this._clearTimer("_connectTimer");
        this._clearTimer("_watchdog");
        this._clearTimer("_refreshTimer");
        this._cancelReconnect();
        this._failPending(new HeraldError(ErrorCode.Disconnected, "connection closed"));
        if (ws) {
            ws.onopen = ws.onmessage = ws.onclose = null;
            ws.onerror = () => { };
            try {
                if (code !== undefined)
                    ws.close(code, reason);
                else
                    ws.close();
            }
            catch {
                // Already closing.
            }
        }
    }
    /** The connection ended with code: reconnect or stop as the code says. */
    _lost(code, reason, reconnect = shouldReconnect(code)) {
        this._abandonTransport(undefined, undefined);
        this.clientId = null;
        if (code === 3005 && this._opts.getToken)
            this._token = undefined;
        for (const sub of this._subs.values())
            sub._onClientLost(code, reason);
        if (!reconnect) {
            this._toDisconnected(code, reason);
            return;
        }
        if (this.state === "connected") {
            this._setState("connecting");
            this._emit("connecting", { code, reason });
        }
        else {
            this._emit("error", { type: "transport", error: new Error(`connection attempt failed: ${code} ${reason}`) });
        }
        this._scheduleReconnect();
    }
    _scheduleReconnect() {
        this._cancelReconnect();
        const delay = this._backoff(this._reconnectAttempts++);
        const retry = () => {
            this._cancelReconnect();
            if (this.state === "connecting")
                this._startTransport();
        };
        this._reconnectTimer = setTimeout(retry, delay);
        // In browsers, retry at once when the network comes back instead of
        // sleeping through a long backoff.
        const g = globalThis;
        if (typeof g.addEventListener === "function" && typeof g.removeEventListener === "function") {
            this._onlineListener = retry;
            g.addEventListener("online", retry);
        }
    }
    _cancelReconnect() {
        this._clearTimer("_reconnectTimer");
        if (this._onlineListener) {
            globalThis.removeEventListener("online", this._onlineListener);
            this._onlineListener = null;
        }
    }
    _toDisconnected(code, reason) {
        this._gen++;
        this._cancelReconnect();
        this._clearTimer("_connectTimer");
        this._clearTimer("_watchdog");
        this._clearTimer("_refreshTimer");
        this.clientId = null;
        for (const w of this._waiters) {
            clearTimeout(w.timer);
            w.reject(new HeraldError(ErrorCode.Disconnected, `client disconnected: ${reason}`));
        }
        this._waiters.clear();
        for (const sub of this._subs.values())
            sub._onClientLost(code, reason);
        if (this.state === "disconnected")
            return;
        this._setState("disconnected");
        this._emit("disconnected", { code, reason });
    }
    _failPending(err) {
        const pending = [...this._pending.values()];
        this._pending.clear();
        for (const p of pending) {
            clearTimeout(p.timer);
            p.cb(err, null);
        }
    }
    _clearTimer(name) {
        const t = this[name];
        if (t !== null) {
            clearTimeout(t);
            this[name] = null;
        }
    }
    /** @internal */
    _subscriptionBackoff(attempt) {
        return this._backoff(attempt);
    }
}
/**
 * One channel subscription. It stays subscribed across reconnects: when the
 * connection drops it goes back to `subscribing` and, once the client is
 * connected again, subscribes with the position of the last publication it
 * delivered, so that missed publications arrive in order before live ones.
 */
export class Subscription extends Emitter {
    /** Use `Client.newSubscription`. */
    constructor(client, channel, options = {}) {
        super();
        this.state = "unsubscribed";
        this._position = null;
        this._recoverable = false;
        /** Incremented per subscribe attempt and on unsubscribe: stale replies are ignored. */
        this._gen = 0;
        this._attempts = 0;
        this._retryTimer = null;
        this._waiters = new Set();
        this._client = client;
        this.channel = channel;
        if (options.since) {
            this._position = { offset: options.since.offset, epoch: options.since.epoch };
            this._recoverable = true;
        }
    }
    /** The position of the last publication delivered (null on channels without history or before the first subscribe). */
    get position() {
        return this._position && this._recoverable ? { ...this._position } : null;
    }
    /** Starts subscribing (now if the client is connected, else once it is). */
    subscribe() {
        if (this.state !== "unsubscribed")
            return;
        this._attempts = 0;
        this._setState("subscribing");
        this._emit("subscribing", { channel: this.channel, code: DisconnectCode.Called, reason: "subscribe called" });
        if (this._client._isConnected())
            this._sendSubscribe();
    }
    /** Stops the subscription; `subscribe()` may start it again (recovering from where it stopped). */
    unsubscribe() {
        if (this.state === "unsubscribed")
            return;
        this._gen++;
        this._clearRetry();
        if (this._client._isConnected()) {
            // Commands are handled in order, so this also undoes a subscribe
            // still in flight. Errors (not subscribed, connection lost) leave
            // nothing to undo.
            this._client._command("unsubscribe", { channel: this.channel }, () => { });
        }
        this._toUnsubscribed(DisconnectCode.Closed, "unsubscribe called");
    }
    /** Resolves when subscribed; rejects if it ends up unsubscribed or after timeout ms. */
    ready(timeout = 10000) {
        if (this.state === "subscribed")
            return Promise.resolve();
        if (this.state === "unsubscribed") {
            return Promise.reject(new HeraldError(ErrorCode.Unsubscribed, `${this.channel}: not subscribing`));
        }
        return new Promise((resolve, reject) => {
            const w = {
                resolve,
                reject,
                timer: setTimeout(() => {
                    this._waiters.delete(w);
                    reject(new HeraldError(ErrorCode.Timeout, `${this.channel}: timed out waiting for the subscription`));
                }, timeout),
            };
            this._waiters.add(w);
        });
    }
    publish(data) {
        return this._client.publish(this.channel, data);
    }
    presence() {
        return this._client.presence(this.channel);
    }
    presenceStats() {
        return this._client.presenceStats(this.channel);
    }
    history(options = {}) {
        return this._client.history(this.channel, options);
    }
    // -- driven by the client ---------------------------------------------------
    /** @internal */
    _onClientConnected() {
        if (this.state === "subscribing")
            this._sendSubscribe();
    }
    /** @internal */
    _onClientLost(code, reason) {
        this._gen++;
        this._clearRetry();
        if (this.state === "subscribed") {
            this._setState("subscribing");
            this._emit("subscribing", { channel: this.channel, code, reason });
        }
    }
    /** @internal */
    _onPublication(msg) {
        if (this.state !== "subscribed")
            return;
        this._deliver({ offset: msg.offset, data: msg.data, info: msg.info, time: msg.time });
    }
    /** @internal */
    _onJoinLeave(type, info) {
        if (this.state !== "subscribed" || !info)
            return;
        this._emit(type, { channel: this.channel, info });
    }
    /** @internal */
    _onServerUnsubscribe(code, reason, resubscribe) {
        if (this.state === "unsubscribed")
            return;
        this._gen++;
        this._clearRetry();
        if (resubscribe || code === 2001) {
            this._setState("subscribing");
            this._emit("subscribing", { channel: this.channel, code, reason });
            if (this._client._isConnected())
                this._sendSubscribe();
            return;
        }
        this._toUnsubscribed(code, reason);
    }
    // -- internals -------------------------------------------------------------
    _sendSubscribe(forcedRecovering = false) {
        this._clearRetry();
        const gen = ++this._gen;
        const params = { channel: this.channel };
        const since = this._recoverable ? this._position : null;
        if (since)
            params.since = { offset: since.offset, epoch: since.epoch };
        this._client._command("subscribe", params, (err, r) => {
            if (gen !== this._gen || this.state !== "subscribing")
                return;
            if (err) {
                if (err.code === ErrorCode.Disconnected)
                    return; // resubscribes on reconnect
                if (since && err.code === ErrorCode.Unrecoverable) {
                    // Too far behind: subscribe afresh and report recovered: false.
                    this._position = null;
                    this._sendSubscribe(true);
                    return;
                }
                this._emit("error", { channel: this.channel, error: err });
                if (isTemporary(err)) {
                    const delay = this._client._subscriptionBackoff(this._attempts++);
                    this._retryTimer = setTimeout(() => {
                        this._retryTimer = null;
                        if (this.state === "subscribing" && this._client._isConnected())
                            this._sendSubscribe(forcedRecovering);
                    }, delay);
                    return;
                }
                this._toUnsubscribed(err.code, err.message);
                return;
            }
            this._onSubscribed(r ?? {}, since !== null || forcedRecovering, since !== null);
        });
    }
    _onSubscribed(r, wasRecovering, sentSince) {
        this._attempts = 0;
        this._recoverable = !!r.recoverable;
        const recovered = sentSince && !!r.recovered;
        const pubs = recovered && Array.isArray(r.publications) ? r.publications : [];
        const epoch = String(r.epoch ?? "");
        const offset = Number(r.offset) || 0;
        // Position before the recovered publications: each delivery advances it.
        if (recovered && this._position) {
            this._position = { offset: this._position.offset, epoch };
        }
        else {
            this._position = { offset, epoch };
        }
        this._setState("subscribed");
        for (const w of this._waiters) {
            clearTimeout(w.timer);
            w.resolve();
        }
        this._waiters.clear();
        this._emit("subscribed", {
            channel: this.channel,
            wasRecovering,
            recovered,
            recoverable: this._recoverable,
            position: this._recoverable ? { offset, epoch } : null,
        });
        for (const p of pubs) {
            if (this.state !== "subscribed")
                return; // a listener unsubscribed
            this._deliver(p);
        }
        if (this._position && offset > this._position.offset)
            this._position = { offset, epoch };
    }
    _deliver(p) {
        if (typeof p.offset === "number" && p.offset > 0 && this._position) {
            this._position = { offset: p.offset, epoch: this._position.epoch };
        }
        this._emit("publication", { channel: this.channel, offset: p.offset, data: p.data, info: p.info, time: p.time });
    }
    _toUnsubscribed(code, reason) {
        this._setState("unsubscribed");
        for (const w of this._waiters) {
            clearTimeout(w.timer);
            w.reject(new HeraldError(ErrorCode.Unsubscribed, `${this.channel}: ${reason}`));
        }
        this._waiters.clear();
        this._emit("unsubscribed", { channel: this.channel, code, reason });
    }
    _setState(s) {
        if (s === this.state)
            return;
        const old = this.state;
        this.state = s;
        this._emit("state", { channel: this.channel, oldState: old, newState: s });
    }
    _clearRetry() {
        if (this._retryTimer !== null) {
            clearTimeout(this._retryTimer);
            this._retryTimer = null;
        }
    }
}
// ---------------------------------------------------------------------------
function checkData(data) {
    if (data === undefined || typeof data === "function" || typeof data === "symbol") {
        throw new TypeError("herald: data must be a JSON value");
    }
}
function errorMessage(err) {
    return err instanceof Error ? err.message : String(err);
}
function asError(err) {
    return err instanceof Error ? err : new Error(String(err));
}
