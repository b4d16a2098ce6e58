/*
 * deltacast.js: the Deltacast v1 client. One dependency-free file, served by the proxy at
 * /deltacast.js (a classic script: it defines globalThis.Deltacast) and at /deltacast.mjs (the
 * same file with an `export` line appended, for `import { Deltacast } from '/deltacast.mjs'`).
 *
 *   const dc = new Deltacast('https://proxy.example', { token, transports: ['websocket', 'sse', 'longpoll'] });
 *   const sub = dc.subscribe('/api/prices', {
 *     onState(state, event) {}, onPatch(event) {}, onStatus(status) {}, onError(error) {},
 *   });
 *   sub.state; sub.cursor; sub.unsubscribe(); dc.setToken(t); dc.close();
 *   dc.on('transport' | 'connected' | 'disconnected' | 'expired' | 'drift', fn);
 *
 * `token` is a string or a function returning one (or a promise): it is called before each
 * connection and when the server reports `expired`. WebSocket carries it as a `token.<jwt>`
 * subprotocol entry, SSE as a single-use ticket from POST /deltacast/ticket, long-poll as
 * `Authorization: Bearer`.
 *
 * Every subscription shares one connection. The client negotiates, tries WebSocket, falls back
 * to SSE and then long-poll when a transport fails or never opens (openTimeout, 4 s), reconnects
 * with exponential backoff and full jitter (1 s doubling to 30 s, reset after 10 s connected),
 * resumes every topic from its cursor, applies JSON Patch (RFC 6902) and Merge Patch (RFC 7396),
 * and never applies a patch whose base is not its cursor: it resubscribes for a snapshot. Where
 * the endpoint has `digest: true`, it checks each resulting state against the event's SHA-256
 * of its RFC 8785 form; a mismatch (drift) is never delivered: it is reported and repaired.
 * TypeScript declarations are served beside it at /deltacast.d.ts.
 */
(function (global) {
  'use strict';

  function pointerTokens(pointer) {
    if (pointer === '') return [];
    if (pointer[0] !== '/') throw new Error('invalid JSON Pointer: ' + pointer);
    return pointer.slice(1).split('/').map(function (t) { return t.replace(/~1/g, '/').replace(/~0/g, '~'); });
  }

  function isArrayIndex(token, length, allowEnd) {
    if (allowEnd && token === '-') return true;
    if (!/^(0|[1-9][0-9]*)$/.test(token)) return false;
    var index = Number(token);
    return allowEnd ? index <= length : index < length;
  }

  function clone(value) {
    return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
  }

  function deepEqual(a, b) {
    if (a === b) return true;
    if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    if (Array.isArray(a)) {
      if (a.length !== b.length) return false;
      for (var i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
      return true;
    }
    var keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    for (var k = 0; k < keys.length; k++) {
      if (!Object.prototype.hasOwnProperty.call(b, keys[k]) || !deepEqual(a[keys[k]], b[keys[k]])) return false;
    }
    return true;
  }

  /** Finds the parent container of `pointer` in `doc` and the last token. */
  function locate(doc, pointer) {
    var tokens = pointerTokens(pointer);
    if (tokens.length === 0) return { parent: null, key: null };
    var parent = doc;
    for (var i = 0; i < tokens.length - 1; i++) {
      var t = tokens[i];
      if (Array.isArray(parent)) {
        if (!isArrayIndex(t, parent.length, false)) throw new Error('path not found: ' + pointer);
        parent = parent[Number(t)];
      } else if (parent !== null && typeof parent === 'object' && Object.prototype.hasOwnProperty.call(parent, t)) {
        parent = parent[t];
      } else {
        throw new Error('path not found: ' + pointer);
      }
    }
    if (parent === null || typeof parent !== 'object') throw new Error('path not found: ' + pointer);
    return { parent: parent, key: tokens[tokens.length - 1] };
  }

  function getValue(doc, pointer) {
    var at = locate(doc, pointer);
    if (at.parent === null) return doc;
    if (Array.isArray(at.parent)) {
      if (!isArrayIndex(at.key, at.parent.length, false)) throw new Error('path not found: ' + pointer);
      return at.parent[Number(at.key)];
    }
    if (!Object.prototype.hasOwnProperty.call(at.parent, at.key)) throw new Error('path not found: ' + pointer);
    return at.parent[at.key];
  }

  function addValue(doc, pointer, value) {
    var at = locate(doc, pointer);
    if (at.parent === null) return value;
    if (Array.isArray(at.parent)) {
      if (!isArrayIndex(at.key, at.parent.length, true)) throw new Error('index out of range: ' + pointer);
      if (at.key === '-') at.parent.push(value); else at.parent.splice(Number(at.key), 0, value);
    } else {
      at.parent[at.key] = value;
    }
    return doc;
  }

  function removeValue(doc, pointer) {
    var at = locate(doc, pointer);
    if (at.parent === null) throw new Error('cannot remove the whole document');
    if (Array.isArray(at.parent)) {
      if (!isArrayIndex(at.key, at.parent.length, false)) throw new Error('path not found: ' + pointer);
      at.parent.splice(Number(at.key), 1);
    } else {
      if (!Object.prototype.hasOwnProperty.call(at.parent, at.key)) throw new Error('path not found: ' + pointer);
      delete at.parent[at.key];
    }
    return doc;
  }

  /** Applies an RFC 6902 patch; returns the new document (the input is not modified). */
  function applyPatch(document, operations) {
    if (!Array.isArray(operations)) throw new Error('a JSON Patch is an array');
    var doc = clone(document);
    for (var i = 0; i < operations.length; i++) {
      var op = operations[i];
      if (op === null || typeof op !== 'object' || typeof op.path !== 'string') throw new Error('operation ' + i + ' needs a path');
      switch (op.op) {
        case 'add':
          if (!('value' in op)) throw new Error('add needs a value');
          doc = addValue(doc, op.path, clone(op.value)); break;
        case 'remove':
          doc = removeValue(doc, op.path); break;
        case 'replace':
          if (!('value' in op)) throw new Error('replace needs a value');
          getValue(doc, op.path);   // must exist
          if (op.path === '') { doc = clone(op.value); break; }
          var target = locate(doc, op.path);   // in place: an object's keys keep their order
          target.parent[Array.isArray(target.parent) ? Number(target.key) : target.key] = clone(op.value);
          break;
        case 'move':
          if (typeof op.from !== 'string') throw new Error('move needs from');
          if (op.path !== op.from && op.path.indexOf(op.from + '/') === 0) throw new Error('cannot move a value into itself');
          var moved = getValue(doc, op.from);
          doc = removeValue(doc, op.from); doc = addValue(doc, op.path, moved); break;
        case 'copy':
          if (typeof op.from !== 'string') throw new Error('copy needs from');
          doc = addValue(doc, op.path, clone(getValue(doc, op.from))); break;
        case 'test':
          if (!('value' in op)) throw new Error('test needs a value');
          if (!deepEqual(getValue(doc, op.path), op.value)) throw new Error('test failed at ' + op.path);
          break;
        default:
          throw new Error('unknown operation ' + JSON.stringify(op.op));
      }
    }
    return doc;
  }

  /** Applies an RFC 7396 merge patch; returns the new document. */
  function applyMerge(target, patch) {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
    var result = (target !== null && typeof target === 'object' && !Array.isArray(target)) ? clone(target) : {};
    Object.keys(patch).forEach(function (key) {
      if (patch[key] === null) delete result[key];
      else result[key] = applyMerge(result[key], patch[key]);
    });
    return result;
  }

  /** RFC 8785 (JSON Canonicalization Scheme) of a parsed value: what an event's `digest`
   *  covers. JSON.stringify already writes strings and numbers as the RFC asks, and the
   *  default sort compares UTF-16 code units, as the RFC orders member names. */
  function canonicalJSON(value) {
    if (value === null || typeof value !== 'object') return JSON.stringify(value);
    if (Array.isArray(value)) return '[' + value.map(canonicalJSON).join(',') + ']';
    return '{' + Object.keys(value).sort().map(function (key) {
      return JSON.stringify(key) + ':' + canonicalJSON(value[key]);
    }).join(',') + '}';
  }

  function utf8(text) {
    if (typeof TextEncoder !== 'undefined') return new TextEncoder().encode(text);
    var binary = unescape(encodeURIComponent(text));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  var SHA256_K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2];

  /** SHA-256 (FIPS 180-4) of a string's UTF-8, as lowercase hex. Synchronous and everywhere:
   *  crypto.subtle is asynchronous and absent from plain-http pages. */
  function sha256Hex(text) {
    var bytes = utf8(text);
    var blocks = ((bytes.length + 8) >> 6) + 1;
    var words = new Int32Array(blocks * 16);
    for (var i = 0; i < bytes.length; i++) words[i >> 2] |= bytes[i] << (24 - (i & 3) * 8);
    words[bytes.length >> 2] |= 0x80 << (24 - (bytes.length & 3) * 8);
    words[blocks * 16 - 1] = bytes.length * 8;
    words[blocks * 16 - 2] = Math.floor(bytes.length / 0x20000000);
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    var w = new Int32Array(64);
    for (var block = 0; block < blocks; block++) {
      for (var t = 0; t < 64; t++) {
        if (t < 16) { w[t] = words[block * 16 + t]; continue; }
        var x = w[t - 15], y = w[t - 2];
        var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (t = 0; t < 64; t++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var t1 = (k + S1 + ((e & f) ^ (~e & g)) + SHA256_K[t] + w[t]) | 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
      h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
    }
    return h.map(function (v) { return ('0000000' + (v >>> 0).toString(16)).slice(-8); }).join('');
  }

  function parseCursor(cursor) {
    var m = /^([a-z0-9]{4,12})-([0-9]+)$/.exec(cursor || '');
    return m ? { epoch: m[1], seq: Number(m[2]) } : null;
  }

  function Subscription(client, topic, handlers) {
    this.topic = topic;
    this.state = undefined;
    this.cursor = null;
    this.status = null;
    this.ended = false;
    this._client = client;
    this._handlers = handlers || {};
  }
  Subscription.prototype.unsubscribe = function () {
    if (this.ended) return;
    this.ended = true;
    this._client._unsubscribe(this);
  };

  var DEFAULT_TRANSPORTS = ['websocket', 'sse', 'longpoll'];

  function Deltacast(baseURL, options) {
    options = options || {};
    this.baseURL = String(baseURL || '').replace(/\/+$/, '');
    // A token string, or a function returning one (or a promise of one), called before each
    // connection and when the server says the token expired.
    this._tokenSource = typeof options.token === 'function' ? options.token : null;
    this.token = this._tokenSource ? null : (options.token || null);
    this.preferred = (options.transports || DEFAULT_TRANSPORTS).slice();
    this.openTimeout = options.openTimeout || 4000;
    this.initialBackoff = options.initialBackoff || 1000;
    this.maxBackoff = options.maxBackoff || 30000;
    this.stableAfter = options.stableAfter || 10000;
    this.pollWait = options.pollWait || 25;
    this._WebSocket = options.WebSocket || global.WebSocket;
    this._EventSource = options.EventSource || global.EventSource;
    this._fetch = options.fetch || (global.fetch ? global.fetch.bind(global) : null);
    this._subs = new Map();
    this._listeners = {};
    this._attempt = 0;
    this._closed = false;
    this._negotiated = null;
    this._conn = null;
    this._generation = 0;
    this._timer = null;
    this.transport = null;
    this.connected = false;
    this.drifts = 0;
    this._drift = [];   // drifted topics to name in the next SSE or long-poll request
  }

  Deltacast.applyPatch = applyPatch;
  Deltacast.canonicalJSON = canonicalJSON;
  Deltacast.sha256Hex = sha256Hex;
  Deltacast.applyMerge = applyMerge;
  Deltacast.version = 'deltacast.v1';

  Deltacast.prototype.on = function (name, fn) {
    (this._listeners[name] = this._listeners[name] || []).push(fn);
    return this;
  };

  Deltacast.prototype._emit = function (name, value) {
    (this._listeners[name] || []).forEach(function (fn) { try { fn(value); } catch (e) { /* a listener's problem */ } });
  };

  Deltacast.prototype.subscribe = function (topic, handlers) {
    if (this._subs.has(topic)) throw new Error('already subscribed to ' + topic);
    var sub = new Subscription(this, topic, handlers);
    this._subs.set(topic, sub);
    if (this._conn && this._conn.kind === 'websocket' && this._conn.open) {
      this._conn.send({ type: 'subscribe', topic: topic });
    } else if (this._conn) {
      this._restart();   // SSE and long-poll name their topics in the URL
    } else {
      this._start();
    }
    return sub;
  };

  Deltacast.prototype._unsubscribe = function (sub) {
    if (this._subs.get(sub.topic) !== sub) return;
    this._subs.delete(sub.topic);
    if (this._conn && this._conn.kind === 'websocket' && this._conn.open) {
      this._conn.send({ type: 'unsubscribe', topic: sub.topic });
    } else if (this._conn) {
      this._restart();
    }
    if (this._subs.size === 0) this._stop();
  };

  /** Renews the credential: a WebSocket sends an `auth` message (no subscription drops);
   *  SSE and long-poll use it from their next request. */
  Deltacast.prototype.setToken = function (token) {
    this.token = token;
    if (this._conn && this._conn.kind === 'websocket' && this._conn.open) this._conn.send({ type: 'auth', token: token });
  };

  /** Asks the token function (if any) for a fresh token. */
  Deltacast.prototype._refreshToken = function () {
    var self = this;
    if (!this._tokenSource) return Promise.resolve(this.token);
    return Promise.resolve().then(function () { return self._tokenSource(); })
      .then(function (token) { self.token = token || null; return self.token; });
  };

  Deltacast.prototype.close = function () {
    this._closed = true;
    this._subs.forEach(function (sub) { sub.ended = true; });
    this._subs.clear();
    this._stop();
  };

  Deltacast.prototype._stop = function () {
    this._generation++;
    if (this._timer) { clearTimeout(this._timer); this._timer = null; }
    if (this._conn) { var c = this._conn; this._conn = null; c.close(); }
    if (this.connected) { this.connected = false; this._emit('disconnected', { transport: this.transport }); }
  };

  /** Reopens the current transport at once (the topic set changed, or a resync is needed). */
  Deltacast.prototype._restart = function () {
    var kind = this._conn ? this._conn.kind : null;
    this._stop();
    if (this._subs.size > 0 && !this._closed) this._open(kind ? this._order().indexOf(kind) : 0);
  };

  Deltacast.prototype._url = function (relative, http) {
    var url = this.baseURL + '/deltacast/' + relative;
    if (!http) url = url.replace(/^http/, 'ws');
    return url;
  };

  Deltacast.prototype._order = function () {
    var offered = this._negotiated ? this._negotiated.transports : DEFAULT_TRANSPORTS;
    return this.preferred.filter(function (t) { return offered.indexOf(t) >= 0; });
  };

  Deltacast.prototype._start = function () {
    var self = this;
    if (this._closed || this._subs.size === 0) return;
    var generation = ++this._generation;
    var done = function (info) {
      if (generation !== self._generation) return;
      if (info) self._negotiated = info;
      self._open(0);
    };
    this._refreshToken().then(function () {
      if (generation !== self._generation) return;
      if (self._negotiated || !self._fetch) return done(null);
      return self._fetch(self.baseURL + '/deltacast/negotiate', { headers: self._authHeaders() })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (info) { done(info && Array.isArray(info.transports) ? info : null); });
    }).catch(function () { if (generation === self._generation) self._retry(); });
  };

  Deltacast.prototype._authHeaders = function () {
    return this.token ? { Authorization: 'Bearer ' + this.token } : {};
  };

  /** Tries transports from `index` in order; each that fails to open hands over to the next. */
  Deltacast.prototype._open = function (index) {
    var self = this;
    var order = this._order();
    if (index < 0) index = 0;
    if (index >= order.length) return this._retry();
    var kind = order[index];
    var generation = ++this._generation;
    var opened = false;
    var openTimer = setTimeout(function () {
      if (generation !== self._generation || opened) return;
      failed(new Error(kind + ' did not open within ' + self.openTimeout + ' ms'));
    }, this.openTimeout);
    function failed() {
      if (generation !== self._generation) return;
      clearTimeout(openTimer);
      var c = self._conn; self._conn = null;
      if (c) c.close();
      if (opened) {
        if (self.connected) { self.connected = false; self._emit('disconnected', { transport: kind }); }
        if (Date.now() - openedAt >= self.stableAfter) self._attempt = 0;
        self._retry();
      } else {
        self._open(index + 1);   // fall back to the next transport
      }
    }
    var openedAt = 0;
    var callbacks = {
      open: function () {
        if (generation !== self._generation) return;
        opened = true; openedAt = Date.now();
        clearTimeout(openTimer);
        self.transport = kind;
        self.connected = true;
        self._emit('transport', kind);
        self._emit('connected', { transport: kind });
      },
      event: function (event) { if (generation === self._generation) self._handle(event); },
      failed: failed,
    };
    var conn;
    try {
      conn = kind === 'websocket' ? this._openWebSocket(callbacks)
        : kind === 'sse' ? this._openSSE(callbacks) : this._openPoll(callbacks);
    } catch (e) {
      clearTimeout(openTimer);
      return this._open(index + 1);
    }
    conn.kind = kind;
    this._conn = conn;
  };

  Deltacast.prototype._retry = function () {
    var self = this;
    if (this._closed || this._subs.size === 0) return;
    var ceiling = Math.min(this.maxBackoff, this.initialBackoff * Math.pow(2, this._attempt));
    this._attempt = Math.min(this._attempt + 1, 30);
    var delay = Math.random() * ceiling;   // full jitter
    var generation = ++this._generation;
    this._timer = setTimeout(function () {
      self._timer = null;
      if (generation === self._generation) self._start();
    }, delay);
  };

  Deltacast.prototype._subscribeMessages = function () {
    var out = [];
    this._subs.forEach(function (sub) {
      var message = { type: 'subscribe', topic: sub.topic };
      if (sub.cursor) message.since = sub.cursor;
      out.push(message);
    });
    return out;
  };

  Deltacast.prototype._openWebSocket = function (cb) {
    var self = this;
    var WS = this._WebSocket;
    if (!WS) throw new Error('no WebSocket');
    // Browsers cannot set headers on a WebSocket: the token travels as a subprotocol entry
    // (never echoed back); a token with other characters goes in an `auth` message instead.
    var inProtocol = !!this.token && /^[A-Za-z0-9._~+-]+$/.test(this.token);
    var socket = new WS(this._url(this._negotiated ? this._negotiated.websocket : 'ws', false),
                        inProtocol ? ['deltacast.v1', 'token.' + this.token] : ['deltacast.v1']);
    var conn = {
      open: false,
      send: function (message) { try { socket.send(JSON.stringify(message)); } catch (e) { /* closing */ } },
      close: function () { try { socket.close(1000); } catch (e) { /* already */ } },
    };
    socket.onopen = function () {
      conn.open = true;
      cb.open();
      if (self.token && !inProtocol) conn.send({ type: 'auth', token: self.token });
      self._subscribeMessages().forEach(conn.send);
    };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      cb.event(event);
    };
    socket.onerror = function () { cb.failed(); };
    socket.onclose = function () { cb.failed(); };
    return conn;
  };

  Deltacast.prototype._topicQuery = function () {
    var parts = [];
    this._subs.forEach(function (sub) {
      parts.push('topic=' + encodeURIComponent(sub.topic));
      parts.push('since=' + encodeURIComponent(sub.cursor || ''));
    });
    this._drift.splice(0).forEach(function (topic) { parts.push('drift=' + encodeURIComponent(topic)); });
    return parts.join('&');
  };

  Deltacast.prototype._openSSE = function (cb) {
    var self = this;
    var ES = this._EventSource;
    if (!ES) throw new Error('no EventSource');
    var url = this._url(this._negotiated ? this._negotiated.sse : 'sse', true) + '?' + this._topicQuery();
    // EventSource cannot send a header either: trade the token for a single-use ticket, so the
    // long-lived token never appears in a URL or an access log.
    var conn = { open: true, source: null, closed: false, close: function () { conn.closed = true; if (conn.source) conn.source.close(); } };
    if (!this.token) { conn.source = this._eventSource(ES, url, cb); return conn; }
    if (!this._fetch) throw new Error('no fetch for a ticket');
    this._fetch(this.baseURL + '/deltacast/ticket', { method: 'POST', headers: this._authHeaders(), cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('ticket answered ' + r.status); return r.json(); })
      .then(function (answer) {
        if (!conn.closed) conn.source = self._eventSource(ES, url + '&ticket=' + encodeURIComponent(answer.ticket), cb);
      })
      .catch(function () { if (!conn.closed) cb.failed(); });
    return conn;
  };

  Deltacast.prototype._eventSource = function (ES, url, cb) {
    var source = new ES(url);
    var handle = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      cb.event(event);
    };
    ['snapshot', 'patch', 'status', 'error'].forEach(function (name) { source.addEventListener(name, handle); });
    source.onopen = function () { cb.open(); };
    // The browser's own reconnection would resume with its Last-Event-ID; ours uses the
    // cursors we applied, with backoff, so close and let the client decide.
    // An `event: error` from the server is a MessageEvent named "error" too: not a failure.
    source.onerror = function (e) { if (e && typeof e.data === 'string') return; source.close(); cb.failed(); };
    return source;
  };

  Deltacast.prototype._openPoll = function (cb) {
    var self = this;
    var fetch = this._fetch;
    if (!fetch) throw new Error('no fetch');
    var stopped = false;
    var controller = null;
    var first = true;
    var base = this._url(this._negotiated ? this._negotiated.poll : 'poll', true);
    function next() {
      if (stopped) return;
      controller = typeof AbortController !== 'undefined' ? new AbortController() : null;
      var guard = setTimeout(function () { if (controller) controller.abort(); }, (self.pollWait + 15) * 1000);
      fetch(base + '?' + self._topicQuery() + '&wait=' + (first ? 0 : self.pollWait),
            { headers: self._authHeaders(), signal: controller ? controller.signal : undefined, cache: 'no-store' })
        .then(function (response) {
          clearTimeout(guard);
          if (response.status === 204) return [];
          if (!response.ok) throw new Error('long-poll answered ' + response.status);
          return response.json();
        })
        .then(function (events) {
          if (stopped) return;
          if (first) { first = false; cb.open(); }
          (events || []).forEach(function (event) { cb.event(event); });
          next();
        })
        .catch(function () { clearTimeout(guard); if (!stopped) { stopped = true; cb.failed(); } });
    }
    next();
    return { open: true, close: function () { stopped = true; if (controller) controller.abort(); } };
  };

  /** One event from any transport. */
  Deltacast.prototype._handle = function (event) {
    if (!event || typeof event !== 'object') return;
    var sub = this._subs.get(event.topic);
    if (!sub) {
      if (event.type === 'error' && !event.topic) this._subs.forEach(function (s) { if (s._handlers.onError) s._handlers.onError(event); });
      return;
    }
    var handlers = sub._handlers;
    switch (event.type) {
      case 'snapshot': {
        var held = parseCursor(sub.cursor), incoming = parseCursor(event.cursor);
        if (held && incoming && held.epoch === incoming.epoch && incoming.seq <= held.seq && sub.state !== undefined) return;
        // A snapshot that disagrees with its own digest is reported and kept: asking again
        // would only bring the same bytes (a canonicalization difference, not drift).
        if (typeof event.digest === 'string' && sha256Hex(canonicalJSON(event.data)) !== event.digest) this._drifted(sub, event, false);
        sub.state = event.data;
        sub.cursor = event.cursor;
        if (handlers.onState) handlers.onState(sub.state, event);
        break;
      }
      case 'patch': {
        var at = parseCursor(sub.cursor), to = parseCursor(event.cursor);
        if (at && to && at.epoch === to.epoch && to.seq <= at.seq) return;   // already applied
        if (event.base !== sub.cursor || sub.state === undefined) return this._resync(sub);
        var next;
        try {
          next = 'merge' in event ? applyMerge(sub.state, event.merge) : applyPatch(sub.state, event.patch);
        } catch (e) {
          return this._resync(sub);
        }
        // The state this patch made is not the server's: the state we held had drifted. Keep
        // the last delivered state, report, and start over from a snapshot.
        if (typeof event.digest === 'string' && sha256Hex(canonicalJSON(next)) !== event.digest) return this._drifted(sub, event, true);
        sub.state = next;
        sub.cursor = event.cursor;
        if (handlers.onState) handlers.onState(sub.state, event);
        if (handlers.onPatch) handlers.onPatch(event);
        break;
      }
      case 'status':
        sub.status = event;
        if (handlers.onStatus) handlers.onStatus(event);
        break;
      case 'error':
        if (event.code === 'expired') {
          // The subscription survives: the server closes the stream, and the next connection
          // resumes it from its cursor with a fresh token (the token function's, or setToken's).
          this._emit('expired', event);
          var self = this;
          if (this._tokenSource) this._refreshToken().then(function (t) { if (t) self.setToken(t); }).catch(function () {});
          break;
        }
        sub.ended = true;
        this._subs.delete(sub.topic);
        if (handlers.onError) handlers.onError(event);
        break;
    }
  };

  /** A patch that does not follow our cursor: drop the cursor and ask for a snapshot. */
  Deltacast.prototype._resync = function (sub) {
    sub.cursor = null;
    if (this._conn && this._conn.kind === 'websocket' && this._conn.open) {
      this._conn.send({ type: 'subscribe', topic: sub.topic });
    } else {
      this._restart();
    }
  };

  /** A state that does not match the server's digest: counted (`dc.drifts`), emitted as
   *  'drift', told to the proxy (deltacast_client_drift_total) and, for a patch, repaired by
   *  resubscribing without a cursor. */
  Deltacast.prototype._drifted = function (sub, event, resubscribe) {
    this.drifts++;
    this._emit('drift', { topic: sub.topic, cursor: event.cursor, type: event.type });
    if (this._conn && this._conn.kind === 'websocket' && this._conn.open) {
      this._conn.send({ type: 'drift', topic: sub.topic, cursor: event.cursor });
    } else {
      this._drift.push(sub.topic);
    }
    if (resubscribe) this._resync(sub);
  };

  global.Deltacast = Deltacast;
  if (typeof module === 'object' && module && module.exports) module.exports = Deltacast;
})(typeof globalThis !== 'undefined' ? globalThis : this);
