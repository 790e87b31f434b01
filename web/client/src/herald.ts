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
// Protocol shapes

/** A connection as described in presence, join/leave and publications. */
export interface ClientInfo {
  /** Server-assigned connection id. */
  client: string;
  /** User id from the connection's token; absent for anonymous clients. */
  user?: string;
  /** Connection info from the token (any JSON value). */
  conn_info?: unknown;
  /** Channel info from the token (any JSON value). */
  chan_info?: unknown;
}

/** A place in a channel's stream. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** One publication as returned by history and recovery. */
export interface Publication<T = unknown> {
  /** Position in the channel's stream; absent on channels without history. */
  offset?: number;
  data: T;
  info?: ClientInfo;
  /** Unix milliseconds when it was published. */
  time?: number;
}

/** Reply to connect, delivered with the `connected` event. */
export interface ConnectedContext {
  /** This connection's id (as it appears in presence). */
  client: string;
  version?: string;
  node?: string;
  /** Whether the token expires (the client then refreshes it). */
  expires: boolean;
  /** Seconds until the token expires. */
  ttl: number;
  /** Server ping interval in seconds (0: none). */
  ping: number;
}

/** Why the client is (re)connecting or disconnected. */
export interface DisconnectContext {
  /** A WebSocket close or herald disconnect code, or one of `DisconnectCode`. */
  code: number;
  reason: string;
}

export interface StateContext {
  oldState: ClientState;
  newState: ClientState;
}

export interface ClientErrorContext {
  /** What failed: the transport, the connect command, a token fetch, a refresh or a malformed server message. */
  type: "transport" | "connect" | "token" | "refresh" | "protocol";
  error: Error;
}

/** A direct message sent to this connection's user. */
export interface MessageContext<T = unknown> {
  data: T;
  info?: ClientInfo;
}

export interface PublicationContext<T = unknown> extends Publication<T> {
  channel: string;
}

export interface JoinLeaveContext {
  channel: string;
  info: ClientInfo;
}

export interface SubscribedContext {
  channel: string;
  /** The subscribe asked to recover from a previous position. */
  wasRecovering: boolean;
  /**
   * Every publication after that position was delivered (as `publication`
   * events right after this one). False when wasRecovering is false, or the
   * server could not recover: the app should reload its state, e.g. with
   * `history()`.
   */
  recovered: boolean;
  /** The channel keeps history, so later reconnects can recover. */
  recoverable: boolean;
  /** The channel's position after any recovered publications (null without history). */
  position: StreamPosition | null;
}

export interface SubscriptionStateContext {
  channel: string;
  code: number;
  reason: string;
}

export interface SubscriptionErrorContext {
  channel: string;
  error: Error;
}

export interface HistoryOptions {
  /** How many publications (0: only the current position; -1: as many as the server allows). */
  limit?: number;
  /** Return publications after this position. */
  since?: StreamPosition;
  /** Newest first. */
  reverse?: boolean;
}

export interface HistoryResult<T = unknown> {
  publications: Publication<T>[];
  offset: number;
  epoch: string;
}

export interface PublishResult {
  offset?: number;
  epoch?: string;
}

export interface PresenceStats {
  numClients: number;
  numUsers: number;
}

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
} as const;

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
} as const;

/** Whether a disconnect code means "reconnect" (docs/protocol.md). */
export function shouldReconnect(code: number): boolean {
  if (code === 1001) return true; // server shutdown or drain
  if (code >= 3000 && code < 3500) return true; // server: reconnect with backoff
  if (code >= 3500 && code < 4000) return false; // server: do not reconnect
  if (code >= 4000 && code < 5000) return true; // client-side reasons above
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
  readonly code: number;
  /** Retrying later may succeed. */
  readonly temporary: boolean;
  constructor(code: number, message: string, temporary = false) {
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

function isTemporary(err: unknown): boolean {
  if (!(err instanceof HeraldError)) return false;
  return (
    err.temporary ||
    err.code === ErrorCode.Timeout ||
    err.code === ErrorCode.Internal ||
    err.code === ErrorCode.BrokerUnavailable ||
    err.code === ErrorCode.TooManyRequests
  );
}

// ---------------------------------------------------------------------------
// Events

type Listener<T> = (ctx: T) => void;

/**
 * A minimal typed event emitter. Listeners run in registration order; a
 * listener that throws does not stop the others or the client: its
 * exception is rethrown from a separate task, so it still surfaces.
 */
export class Emitter<Events extends object> {
  private _listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener and returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this._listeners.get(event);
    if (!set) {
      set = new Set();
      this._listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener that runs at most once. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (ctx) => {
      off();
      listener(ctx);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this._listeners.get(event)?.delete(listener as Listener<never>);
  }

  protected _emit<K extends keyof Events>(event: K, ctx: Events[K]): void {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const l of [...set]) {
      try {
        (l as Listener<Events[K]>)(ctx);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Transport

/** The part of the WebSocket API the client uses (browsers, Node 22+, the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

const WS_OPEN = 1;

// ---------------------------------------------------------------------------
// Client

export type ClientState = "disconnected" | "connecting" | "connected";

export interface ClientOptions {
  /** Connection token (JWT). Omit for anonymous connections. */
  token?: string;
  /**
   * Fetches a fresh token. Called when there is no token yet, before a
   * token expires (using the connect reply's ttl), and after the server
   * reports it expired. Throw `UnauthorizedError` to stop connecting; any
   * other error is retried with backoff.
   */
  getToken?: () => Promise<string>;
  /** WebSocket implementation; default `globalThis.WebSocket` (Node 20 has none: pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Client name sent in connect. Default "herald-js". */
  name?: string;
  /** Client version sent in connect. Default VERSION. */
  version?: string;
  /** Milliseconds to wait for a reply to a command, and for a connection to be established. Default 10000. */
  timeout?: number;
  /** First reconnect delay bound in milliseconds. Default 500. */
  minReconnectDelay?: number;
  /** Largest reconnect delay in milliseconds. Default 20000. */
  maxReconnectDelay?: number;
  /**
   * Milliseconds of silence tolerated beyond the server's ping interval
   * before the connection is considered dead and replaced. Default 10000.
   */
  maxServerPingDelay?: number;
}

export interface ClientEvents {
  state: StateContext;
  connecting: DisconnectContext;
  connected: ConnectedContext;
  disconnected: DisconnectContext;
  error: ClientErrorContext;
  message: MessageContext;
}

type ReplyCallback = (err: HeraldError | null, result: any) => void;

interface Pending {
  cb: ReplyCallback;
  timer: ReturnType<typeof setTimeout>;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A connection to herald. Create it, add subscriptions, call `connect()`.
 *
 * The client keeps itself connected until `disconnect()` or a disconnect
 * code that forbids reconnecting (3500-3999, 1000). Commands issued while
 * it is connecting wait for the connection (within `timeout`); commands
 * issued while it is disconnected fail at once with ErrorCode.Disconnected.
 */
export class Client extends Emitter<ClientEvents> {
  readonly url: string;
  /** Current state; `state` events report changes. */
  state: ClientState = "disconnected";
  /** This connection's id while connected, else null. */
  clientId: string | null = null;

  private _opts: Required<Omit<ClientOptions, "token" | "getToken" | "WebSocket">> &
    Pick<ClientOptions, "getToken" | "WebSocket">;
  private _token: string | undefined;
  private _ws: WebSocketLike | null = null;
  /** Incremented whenever a transport is abandoned: callbacks of older transports are ignored. */
  private _gen = 0;
  private _nextId = 0;
  private _pending = new Map<number, Pending>();
  private _waiters = new Set<Waiter>();
  private _subs = new Map<string, Subscription>();
  private _reconnectAttempts = 0;
  private _reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private _connectTimer: ReturnType<typeof setTimeout> | null = null;
  private _watchdog: ReturnType<typeof setTimeout> | null = null;
  private _refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private _onlineListener: (() => void) | null = null;
  private _serverPing = 0;
  private _sendPong = false;

  /** @param url WebSocket URL of the server, e.g. `ws://127.0.0.1:8080/ws`. */
  constructor(url: string, options: ClientOptions = {}) {
    super();
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
  connect(): void {
    if (this.state !== "disconnected") return;
    this._reconnectAttempts = 0;
    this._setState("connecting");
    this._emit("connecting", { code: DisconnectCode.Called, reason: "connect called" });
    this._startTransport();
  }

  /** Closes the connection and stops reconnecting. Subscriptions are kept and resubscribe on the next `connect()`. */
  disconnect(): void {
    if (this.state === "disconnected") return;
    this._abandonTransport(1000, "disconnect called");
    this._toDisconnected(DisconnectCode.Closed, "disconnect called");
  }

  /** Resolves when connected; rejects if the client ends up disconnected or `timeout` ms pass. */
  ready(timeout = this._opts.timeout): Promise<void> {
    if (this.state === "connected") return Promise.resolve();
    if (this.state === "disconnected") {
      return Promise.reject(new HeraldError(ErrorCode.Disconnected, "client is disconnected"));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
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
  newSubscription(channel: string, options: SubscriptionOptions = {}): Subscription {
    if (this._subs.has(channel)) throw new Error(`herald: already have a subscription to ${channel}`);
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    return sub;
  }

  getSubscription(channel: string): Subscription | null {
    return this._subs.get(channel) ?? null;
  }

  /** Unsubscribes sub and forgets it, so its channel can get a new subscription. */
  removeSubscription(sub: Subscription): void {
    sub.unsubscribe();
    if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
  }

  subscriptions(): Subscription[] {
    return [...this._subs.values()];
  }

  /** Publishes data (any JSON value) to a channel the namespace lets clients publish to. */
  async publish(channel: string, data: unknown): Promise<PublishResult> {
    checkData(data);
    const r = await this._call("publish", { channel, data });
    return { offset: r.offset, epoch: r.epoch };
  }

  /** Who is subscribed to channel: client id -> info. */
  async presence(channel: string): Promise<Record<string, ClientInfo>> {
    const r = await this._call("presence", { channel });
    return r.presence ?? {};
  }

  async presenceStats(channel: string): Promise<PresenceStats> {
    const r = await this._call("presence_stats", { channel });
    return { numClients: r.num_clients ?? 0, numUsers: r.num_users ?? 0 };
  }

  /** Reads a channel's history and current position. */
  async history<T = unknown>(channel: string, options: HistoryOptions = {}): Promise<HistoryResult<T>> {
    const params: Record<string, unknown> = { channel };
    if (options.limit !== undefined) params.limit = options.limit;
    if (options.since) params.since = { offset: options.since.offset, epoch: options.since.epoch };
    if (options.reverse) params.reverse = true;
    const r = await this._call("history", params);
    return { publications: r.publications ?? [], offset: r.offset ?? 0, epoch: r.epoch ?? "" };
  }

  /** Sends data (any JSON value) to every connection of user; they get a `message` event. */
  async send(user: string, data: unknown): Promise<void> {
    checkData(data);
    await this._call("send", { user, data });
  }

  /** Round trip to the server. */
  async ping(): Promise<void> {
    await this._call("ping", undefined);
  }

  // -- commands --------------------------------------------------------------

  /** @internal Sends a command once connected and resolves with its result. */
  async _call(method: string, params: unknown): Promise<any> {
    if (this.state !== "connected") await this.ready();
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
  _command(method: string, params: unknown, cb: ReplyCallback): void {
    const ws = this._ws;
    if (!ws || ws.readyState !== WS_OPEN) {
      cb(new HeraldError(ErrorCode.Disconnected, "not connected"), null);
      return;
    }
    this._nextId = (this._nextId % 0x7fffffff) + 1;
    const id = this._nextId;
    const timer = setTimeout(() => {
      if (this._pending.delete(id)) cb(new HeraldError(ErrorCode.Timeout, `${method}: no reply within ${this._opts.timeout} ms`), null);
    }, this._opts.timeout);
    this._pending.set(id, { cb, timer });
    const cmd: Record<string, unknown> = { id, method };
    if (params !== undefined) cmd.params = params;
    try {
      ws.send(JSON.stringify(cmd));
    } catch (err) {
      clearTimeout(timer);
      this._pending.delete(id);
      cb(new HeraldError(ErrorCode.Disconnected, `${method}: ${errorMessage(err)}`), null);
    }
  }

  /** @internal */
  _isConnected(): boolean {
    return this.state === "connected";
  }

  // -- connection lifecycle ----------------------------------------------------

  private _setState(s: ClientState): void {
    if (s === this.state) return;
    const old = this.state;
    this.state = s;
    this._emit("state", { oldState: old, newState: s });
  }

  private async _startTransport(): Promise<void> {
    const gen = ++this._gen;
    if (this._token === undefined && this._opts.getToken) {
      let token: string;
      try {
        token = await this._opts.getToken();
      } catch (err) {
        if (gen !== this._gen) return;
        if (err instanceof UnauthorizedError) {
          this._toDisconnected(DisconnectCode.Unauthorized, err.message);
          return;
        }
        this._emit("error", { type: "token", error: asError(err) });
        this._scheduleReconnect();
        return;
      }
      if (gen !== this._gen) return;
      this._token = token;
    }
    const WS = this._opts.WebSocket ?? (globalThis as any).WebSocket;
    if (typeof WS !== "function") {
      this._emit("error", { type: "transport", error: new Error("no WebSocket implementation: pass options.WebSocket") });
      this._toDisconnected(DisconnectCode.TransportFailed, "no WebSocket implementation");
      return;
    }
    let ws: WebSocketLike;
    try {
      ws = new WS(this.url);
    } catch (err) {
      this._emit("error", { type: "transport", error: asError(err) });
      this._toDisconnected(DisconnectCode.TransportFailed, errorMessage(err));
      return;
    }
    this._ws = ws;
    this._connectTimer = setTimeout(() => {
      if (gen !== this._gen) return;
      this._lost(DisconnectCode.ConnectTimeout, "connect timeout");
    }, this._opts.timeout);
    ws.onopen = () => {
      if (gen === this._gen) this._sendConnect(gen);
    };
    ws.onmessage = (ev) => {
      if (gen === this._gen) this._onData(ev.data);
    };
    ws.onerror = () => {
      // The close event that follows carries the code.
    };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._ws = null;
      this._lost(ev.code || 1006, ev.reason || "connection closed");
    };
  }

  private _sendConnect(gen: number): void {
    const params: Record<string, unknown> = { name: this._opts.name, version: this._opts.version };
    if (this._token !== undefined) params.token = this._token;
    this._command("connect", params, (err, r) => {
      if (gen !== this._gen) return;
      if (err) {
        this._emit("error", { type: "connect", error: err });
        if (err.code === ErrorCode.TokenExpired && this._opts.getToken) {
          this._token = undefined;
          this._lost(3005, err.message);
        } else if (isTemporary(err) || err.code === ErrorCode.Disconnected) {
          this._lost(DisconnectCode.ConnectFailed, err.message);
        } else {
          const code = err.code === ErrorCode.Unauthorized || err.code === ErrorCode.TokenExpired ? DisconnectCode.Unauthorized : 3501;
          this._abandonTransport(1000, "connect failed");
          this._toDisconnected(code, err.message);
        }
        return;
      }
      this._onConnected(r ?? {});
    });
  }

  private _onConnected(r: any): void {
    this._clearTimer("_connectTimer");
    this._reconnectAttempts = 0;
    this.clientId = r.client ?? null;
    this._serverPing = Number(r.ping) || 0;
    this._sendPong = !!r.pong;
    this._resetWatchdog();
    this._setState("connected");
    const ttl = Number(r.ttl) || 0;
    if (r.expires && ttl > 0) this._scheduleRefresh(ttl);
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
    for (const sub of this._subs.values()) sub._onClientConnected();
  }

  private _onData(data: unknown): void {
    this._resetWatchdog();
    if (typeof data !== "string") {
      this._emit("error", { type: "protocol", error: new Error("binary frame on a JSON connection") });
      return;
    }
    let msg: any;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      this._emit("error", { type: "protocol", error: new Error(`malformed message: ${errorMessage(err)}`) });
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    if (typeof msg.id === "number" && msg.id > 0) {
      const p = this._pending.get(msg.id);
      if (!p) return; // timed out already
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) {
        const e = msg.error;
        p.cb(new HeraldError(Number(e.code) || 0, String(e.message ?? "error"), !!e.temporary), null);
      } else {
        p.cb(null, msg.result ?? {});
      }
      return;
    }
    this._onPush(msg);
  }

  private _onPush(msg: any): void {
    switch (msg.type) {
      case "ping":
        if (this._sendPong && this._ws && this._ws.readyState === WS_OPEN) {
          try {
            this._ws.send('{"method":"pong"}');
          } catch {
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

  private _resetWatchdog(): void {
    this._clearTimer("_watchdog");
    if (this._serverPing <= 0) return;
    const gen = this._gen;
    this._watchdog = setTimeout(() => {
      if (gen !== this._gen) return;
      this._lost(DisconnectCode.NoPing, "no data from server");
    }, this._serverPing * 1000 + this._opts.maxServerPingDelay);
  }

  private _scheduleRefresh(ttl: number): void {
    this._clearTimer("_refreshTimer");
    if (!this._opts.getToken) return;
    // Refresh a little before expiry: a minute early for long tokens,
    // a fifth of the lifetime for short ones.
    const ms = ttl * 1000;
    const delay = Math.max(0, ms - Math.min(60000, ms / 5));
    this._refreshTimer = setTimeout(() => this._refresh(0), delay);
  }

  private async _refresh(attempt: number): Promise<void> {
    const gen = this._gen;
    const retry = () => {
      if (gen !== this._gen || this.state !== "connected") return;
      this._refreshTimer = setTimeout(() => this._refresh(attempt + 1), this._backoff(attempt));
    };
    let token: string;
    try {
      token = await this._opts.getToken!();
    } catch (err) {
      if (gen !== this._gen) return;
      if (err instanceof UnauthorizedError) {
        this._abandonTransport(1000, "unauthorized");
        this._toDisconnected(DisconnectCode.Unauthorized, err.message);
        return;
      }
      this._emit("error", { type: "token", error: asError(err) });
      retry();
      return;
    }
    if (gen !== this._gen || this.state !== "connected") return;
    this._token = token;
    this._command("refresh", { token }, (err, r) => {
      if (gen !== this._gen) return;
      if (err) {
        this._emit("error", { type: "refresh", error: err });
        // A refused token ends with a 3005 disconnect at expiry, after
        // which a fresh token is fetched; temporary failures are retried.
        if (isTemporary(err)) retry();
        return;
      }
      const ttl = Number(r.ttl) || 0;
      if (r.expires && ttl > 0) this._scheduleRefresh(ttl);
    });
  }

  private _backoff(attempt: number): number {
    const cap = Math.min(this._opts.maxReconnectDelay, this._opts.minReconnectDelay * 2 ** Math.min(attempt, 30));
    return Math.random() * cap; // full jitter
  }

  /** Closes the current transport (if any) and ignores its further events. */
  private _abandonTransport(code: number | undefined, reason: string | undefined): void {
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
      ws.onerror = () => {};
      try {
        if (code !== undefined) ws.close(code, reason);
        else ws.close();
      } catch {
        // Already closing.
      }
    }
  }

  /** The connection ended with code: reconnect or stop as the code says. */
  private _lost(code: number, reason: string, reconnect = shouldReconnect(code)): void {
    this._abandonTransport(undefined, undefined);
    this.clientId = null;
    if (code === 3005 && this._opts.getToken) this._token = undefined;
    for (const sub of this._subs.values()) sub._onClientLost(code, reason);
    if (!reconnect) {
      this._toDisconnected(code, reason);
      return;
    }
    if (this.state === "connected") {
      this._setState("connecting");
      this._emit("connecting", { code, reason });
    } else {
      this._emit("error", { type: "transport", error: new Error(`connection attempt failed: ${code} ${reason}`) });
    }
    this._scheduleReconnect();
  }

  private _scheduleReconnect(): void {
    this._cancelReconnect();
    const delay = this._backoff(this._reconnectAttempts++);
    const retry = () => {
      this._cancelReconnect();
      if (this.state === "connecting") this._startTransport();
    };
    this._reconnectTimer = setTimeout(retry, delay);
    // In browsers, retry at once when the network comes back instead of
    // sleeping through a long backoff.
    const g = globalThis as any;
    if (typeof g.addEventListener === "function" && typeof g.removeEventListener === "function") {
      this._onlineListener = retry;
      g.addEventListener("online", retry);
    }
  }

  private _cancelReconnect(): void {
    this._clearTimer("_reconnectTimer");
    if (this._onlineListener) {
      (globalThis as any).removeEventListener("online", this._onlineListener);
      this._onlineListener = null;
    }
  }

  private _toDisconnected(code: number, reason: string): void {
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
    for (const sub of this._subs.values()) sub._onClientLost(code, reason);
    if (this.state === "disconnected") return;
    this._setState("disconnected");
    this._emit("disconnected", { code, reason });
  }

  private _failPending(err: HeraldError): void {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.cb(err, null);
    }
  }

  private _clearTimer(name: "_reconnectTimer" | "_connectTimer" | "_watchdog" | "_refreshTimer"): void {
    const t = this[name];
    if (t !== null) {
      clearTimeout(t);
      this[name] = null;
    }
  }

  /** @internal */
  _subscriptionBackoff(attempt: number): number {
    return this._backoff(attempt);
  }
}

// ---------------------------------------------------------------------------
// Subscription

export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

export interface SubscriptionOptions {
  /**
   * Recover from this position on the first subscribe (for example the
   * position returned by a `history()` call the app rendered), so that the
   * app gets exactly the publications after it.
   */
  since?: StreamPosition;
}

export interface SubscriptionEvents {
  state: { channel: string; oldState: SubscriptionState; newState: SubscriptionState };
  subscribing: SubscriptionStateContext;
  subscribed: SubscribedContext;
  unsubscribed: SubscriptionStateContext;
  publication: PublicationContext;
  join: JoinLeaveContext;
  leave: JoinLeaveContext;
  error: SubscriptionErrorContext;
}

/**
 * One channel subscription. It stays subscribed across reconnects: when the
 * connection drops it goes back to `subscribing` and, once the client is
 * connected again, subscribes with the position of the last publication it
 * delivered, so that missed publications arrive in order before live ones.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  readonly channel: string;
  state: SubscriptionState = "unsubscribed";

  private _client: Client;
  private _position: StreamPosition | null = null;
  private _recoverable = false;
  /** Incremented per subscribe attempt and on unsubscribe: stale replies are ignored. */
  private _gen = 0;
  private _attempts = 0;
  private _retryTimer: ReturnType<typeof setTimeout> | null = null;
  private _waiters = new Set<Waiter>();

  /** Use `Client.newSubscription`. */
  constructor(client: Client, channel: string, options: SubscriptionOptions = {}) {
    super();
    this._client = client;
    this.channel = channel;
    if (options.since) {
      this._position = { offset: options.since.offset, epoch: options.since.epoch };
      this._recoverable = true;
    }
  }

  /** The position of the last publication delivered (null on channels without history or before the first subscribe). */
  get position(): StreamPosition | null {
    return this._position && this._recoverable ? { ...this._position } : null;
  }

  /** Starts subscribing (now if the client is connected, else once it is). */
  subscribe(): void {
    if (this.state !== "unsubscribed") return;
    this._attempts = 0;
    this._setState("subscribing");
    this._emit("subscribing", { channel: this.channel, code: DisconnectCode.Called, reason: "subscribe called" });
    if (this._client._isConnected()) this._sendSubscribe();
  }

  /** Stops the subscription; `subscribe()` may start it again (recovering from where it stopped). */
  unsubscribe(): void {
    if (this.state === "unsubscribed") return;
    this._gen++;
    this._clearRetry();
    if (this._client._isConnected()) {
      // Commands are handled in order, so this also undoes a subscribe
      // still in flight. Errors (not subscribed, connection lost) leave
      // nothing to undo.
      this._client._command("unsubscribe", { channel: this.channel }, () => {});
    }
    this._toUnsubscribed(DisconnectCode.Closed, "unsubscribe called");
  }

  /** Resolves when subscribed; rejects if it ends up unsubscribed or after timeout ms. */
  ready(timeout = 10000): Promise<void> {
    if (this.state === "subscribed") return Promise.resolve();
    if (this.state === "unsubscribed") {
      return Promise.reject(new HeraldError(ErrorCode.Unsubscribed, `${this.channel}: not subscribing`));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
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

  publish(data: unknown): Promise<PublishResult> {
    return this._client.publish(this.channel, data);
  }

  presence(): Promise<Record<string, ClientInfo>> {
    return this._client.presence(this.channel);
  }

  presenceStats(): Promise<PresenceStats> {
    return this._client.presenceStats(this.channel);
  }

  history<T = unknown>(options: HistoryOptions = {}): Promise<HistoryResult<T>> {
    return this._client.history<T>(this.channel, options);
  }

  // -- driven by the client ---------------------------------------------------

  /** @internal */
  _onClientConnected(): void {
    if (this.state === "subscribing") this._sendSubscribe();
  }

  /** @internal */
  _onClientLost(code: number, reason: string): void {
    this._gen++;
    this._clearRetry();
    if (this.state === "subscribed") {
      this._setState("subscribing");
      this._emit("subscribing", { channel: this.channel, code, reason });
    }
  }

  /** @internal */
  _onPublication(msg: any): void {
    if (this.state !== "subscribed") return;
    this._deliver({ offset: msg.offset, data: msg.data, info: msg.info, time: msg.time });
  }

  /** @internal */
  _onJoinLeave(type: "join" | "leave", info: ClientInfo): void {
    if (this.state !== "subscribed" || !info) return;
    this._emit(type, { channel: this.channel, info });
  }

  /** @internal */
  _onServerUnsubscribe(code: number, reason: string, resubscribe: boolean): void {
    if (this.state === "unsubscribed") return;
    this._gen++;
    this._clearRetry();
    if (resubscribe || code === 2001) {
      this._setState("subscribing");
      this._emit("subscribing", { channel: this.channel, code, reason });
      if (this._client._isConnected()) this._sendSubscribe();
      return;
    }
    this._toUnsubscribed(code, reason);
  }

  // -- internals -------------------------------------------------------------

  private _sendSubscribe(forcedRecovering = false): void {
    this._clearRetry();
    const gen = ++this._gen;
    const params: Record<string, unknown> = { channel: this.channel };
    const since = this._recoverable ? this._position : null;
    if (since) params.since = { offset: since.offset, epoch: since.epoch };
    this._client._command("subscribe", params, (err, r) => {
      if (gen !== this._gen || this.state !== "subscribing") return;
      if (err) {
        if (err.code === ErrorCode.Disconnected) return; // resubscribes on reconnect
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
            if (this.state === "subscribing" && this._client._isConnected()) this._sendSubscribe(forcedRecovering);
          }, delay);
          return;
        }
        this._toUnsubscribed(err.code, err.message);
        return;
      }
      this._onSubscribed(r ?? {}, since !== null || forcedRecovering, since !== null);
    });
  }

  private _onSubscribed(r: any, wasRecovering: boolean, sentSince: boolean): void {
    this._attempts = 0;
    this._recoverable = !!r.recoverable;
    const recovered = sentSince && !!r.recovered;
    const pubs: Publication[] = recovered && Array.isArray(r.publications) ? r.publications : [];
    const epoch = String(r.epoch ?? "");
    const offset = Number(r.offset) || 0;
    // Position before the recovered publications: each delivery advances it.
    if (recovered && this._position) {
      this._position = { offset: this._position.offset, epoch };
    } else {
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
      if (this.state !== "subscribed") return; // a listener unsubscribed
      this._deliver(p);
    }
    if (this._position && offset > this._position.offset) this._position = { offset, epoch };
  }

  private _deliver(p: Publication): void {
    if (typeof p.offset === "number" && p.offset > 0 && this._position) {
      this._position = { offset: p.offset, epoch: this._position.epoch };
    }
    this._emit("publication", { channel: this.channel, offset: p.offset, data: p.data, info: p.info, time: p.time });
  }

  private _toUnsubscribed(code: number, reason: string): void {
    this._setState("unsubscribed");
    for (const w of this._waiters) {
      clearTimeout(w.timer);
      w.reject(new HeraldError(ErrorCode.Unsubscribed, `${this.channel}: ${reason}`));
    }
    this._waiters.clear();
    this._emit("unsubscribed", { channel: this.channel, code, reason });
  }

  private _setState(s: SubscriptionState): void {
    if (s === this.state) return;
    const old = this.state;
    this.state = s;
    this._emit("state", { channel: this.channel, oldState: old, newState: s });
  }

  private _clearRetry(): void {
    if (this._retryTimer !== null) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }
}

// ---------------------------------------------------------------------------

function checkData(data: unknown): void {
  if (data === undefined || typeof data === "function" || typeof data === "symbol") {
    throw new TypeError("herald: data must be a JSON value");
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
