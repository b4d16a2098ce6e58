// Type declarations for deltacast.js, the Deltacast v1 client, served beside it at
// /deltacast.d.ts. With a topic map, each topic's state has its own type:
//
//   import { Deltacast } from './deltacast.mjs';
//   interface Topics { '/api/prices': Prices; [users: `/api/users/${string}/notifications`]: Notifications }
//   const dc = new Deltacast<Topics>('https://proxy.example', { token });
//   dc.subscribe('/api/prices', { onState(prices) { /* prices: Prices */ } });
//
// Without one, name the state's type at the call: dc.subscribe<Prices>('/api/prices', ...).
// `deltacast types -c FILE` writes a topic map from the endpoints' live answers (topics.d.ts).

/** Any JSON value. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/** The transports, in the order the client tries them by default. */
export type Transport = 'websocket' | 'sse' | 'longpoll';

/** One JSON Patch (RFC 6902) operation. */
export type PatchOperation =
  | { op: 'add'; path: string; value: JSONValue }
  | { op: 'remove'; path: string }
  | { op: 'replace'; path: string; value: JSONValue }
  | { op: 'move'; from: string; path: string }
  | { op: 'copy'; from: string; path: string }
  | { op: 'test'; path: string; value: JSONValue };

/** The topic's whole state. `cursor` is `EPOCH-SEQ`. */
export interface SnapshotEvent<T = JSONValue> {
  type: 'snapshot';
  topic: string;
  cursor: string;
  data: T;
  /** SHA-256 (hex) of the state's RFC 8785 form, when the endpoint has `digest: true`. */
  digest?: string;
}

/** What changed since `base`: a JSON Patch, or a JSON Merge Patch (RFC 7396) with `diff: merge`. */
export interface PatchEvent {
  type: 'patch';
  topic: string;
  cursor: string;
  base: string;
  patch?: PatchOperation[];
  merge?: JSONValue;
  digest?: string;
}

/** The upstream failed (the state is stale) or recovered; or, in cluster mode, Redis did. */
export interface StatusEvent {
  type: 'status';
  topic: string;
  upstream?: 'ok' | 'error';
  /** The upstream's HTTP status, when it answered. */
  http?: number;
  message?: string;
  stale?: boolean;
  cluster?: 'ok' | 'unavailable';
}

/** Why a subscription ended (or, for `expired`, why the connection must renew its token). */
export type ErrorCode = 'forbidden' | 'not_found' | 'bad_request' | 'too_many' | 'expired';

export interface ErrorEvent {
  type: 'error';
  /** Absent when the error concerns the connection, not one topic. */
  topic?: string;
  code: ErrorCode;
  message: string;
}

export type DeltacastEvent<T = JSONValue> = SnapshotEvent<T> | PatchEvent | StatusEvent | ErrorEvent;

/** What a subscription calls. */
export interface SubscriptionHandlers<T> {
  /** The new state, after a snapshot or once a patch is applied (and its digest checked). */
  onState?(state: T, event: SnapshotEvent<T> | PatchEvent): void;
  /** A patch just applied (after `onState`): `event.patch` holds its operations, or
   *  `event.merge` its merge patch. */
  onPatch?(event: PatchEvent): void;
  /** The upstream's health (`stale: true` while it fails), or the cluster's. */
  onStatus?(status: StatusEvent): void;
  /** The subscription ended: forbidden, not found, a bad request, too many. */
  onError?(error: ErrorEvent): void;
}

export interface Subscription<T> {
  readonly topic: string;
  /** The state now; undefined before the first snapshot. */
  readonly state: T | undefined;
  /** The cursor of `state`; null before the first snapshot. */
  readonly cursor: string | null;
  /** The last status event. */
  readonly status: StatusEvent | null;
  /** True once unsubscribed or ended by an error. */
  readonly ended: boolean;
  unsubscribe(): void;
}

/** A token, or a function giving one (called before each connection and when it expires). */
export type TokenSource = string | null | (() => string | null | Promise<string | null>);

export interface DeltacastOptions {
  token?: TokenSource;
  /** Which transports, in order (default: all three). */
  transports?: Transport[];
  /** How long a transport may take to open before the next is tried, ms (default 4000). */
  openTimeout?: number;
  /** Reconnection backoff: first delay and cap, ms (default 1000 and 30000), with full jitter. */
  initialBackoff?: number;
  maxBackoff?: number;
  /** Connected this long, ms, the backoff starts over (default 10000). */
  stableAfter?: number;
  /** How long a long-poll request is held, s (default 25). */
  pollWait?: number;
  /** Implementations to use instead of the global ones (tests, node). */
  WebSocket?: unknown;
  EventSource?: unknown;
  fetch?: (input: string, init?: { method?: string; headers?: Record<string, string>; body?: string; signal?: unknown }) => Promise<unknown>;
}

/** What `on(name, …)` listeners receive. */
export interface ClientEvents {
  transport: Transport;
  connected: { transport: Transport };
  disconnected: { transport: Transport };
  expired: ErrorEvent;
  drift: { topic: string; cursor: string; type: 'snapshot' | 'patch' };
}

/** The topic names of a topic map (literal paths and `${string}` templates). */
export type TopicName<Topics> = Extract<keyof Topics, string>;

export declare class Deltacast<Topics extends object = {}> {
  constructor(baseURL: string, options?: DeltacastOptions);
  readonly baseURL: string;
  /** The transport in use, once connected. */
  readonly transport: Transport | null;
  readonly connected: boolean;
  /** States that did not match their digest (each reported and repaired). */
  readonly drifts: number;

  /** A topic of the topic map: its state has the map's type. */
  subscribe<P extends TopicName<Topics>>(topic: P, handlers?: SubscriptionHandlers<Topics[P]>): Subscription<Topics[P]>;
  /** Any topic, its state typed `T` (unknown unless given). */
  subscribe<T = unknown>(topic: string, handlers?: SubscriptionHandlers<T>): Subscription<T>;
  on<E extends keyof ClientEvents>(name: E, listener: (value: ClientEvents[E]) => void): this;
  /** Renews the credential (a WebSocket sends an `auth` message; SSE and long-poll use it next). */
  setToken(token: string): void;
  /** Ends every subscription and the connection. */
  close(): void;

  static applyPatch(document: JSONValue, operations: PatchOperation[]): JSONValue;
  static applyMerge(target: JSONValue, patch: JSONValue): JSONValue;
  /** RFC 8785 canonical JSON. */
  static canonicalJSON(value: JSONValue): string;
  static sha256Hex(text: string): string;
  static readonly version: 'deltacast.v1';
}

export default Deltacast;
