// deltacast.js against a real proxy (`deltacast serve`) in front of the simulated legacy API
// (`deltacast simulate`), in node 20 (run with --experimental-websocket; EventSource is the
// small one in helpers.mjs). Each scenario ends with the client's state equal to the upstream's.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { Deltacast, NodeEventSource, startSimulator, startProxy, proxyConfig, startTCPProxy, stop, until } from './helpers.mjs';

const endpoints = `  - path: /doc
    interval: 100ms
    array_keys: { /items: id }
  - path: /other
    interval: 100ms`;

function doc(version, count = 6) {
  return { version, items: Array.from({ length: count }, (_, i) => ({ id: i, price: 100 + i + (i === version % count ? version : 0) })), note: 'long enough that a price change travels as a patch' };
}

const simulator = await startSimulator();
const proxy = await startProxy(proxyConfig(simulator.port, endpoints));
after(async () => { await stop(proxy.child); await stop(simulator.child); });

function client(port, options = {}) {
  return new Deltacast(`http://127.0.0.1:${port}`, { EventSource: NodeEventSource, ...options });
}

/** Subscribes to /doc and /other, mutates the upstream, and waits for both to converge. */
async function scenario(dc, { mutations = 8, during } = {}) {
  const states = {};
  const statuses = [];
  const kinds = [];
  for (const topic of ['/doc', '/other']) {
    dc.subscribe(topic, {
      onState: (state, event) => { states[topic] = state; if (topic === '/doc') kinds.push(event.type); },
      onStatus: (s) => statuses.push(s),
    });
  }
  await until(() => states['/doc'] && states['/other'], 15000, 'first snapshots');
  let last;
  for (let v = 1; v <= mutations; v++) {
    last = doc(v);
    await simulator.put('/doc', last);
    if (during) during(v);
    await new Promise((r) => setTimeout(r, 150));
  }
  await simulator.put('/other', { done: true });
  await until(() => isDeepStrictEqual(states['/doc'], last) && states['/other'] && states['/other'].done, 30000, 'convergence');
  assert.deepStrictEqual(states['/doc'], last);
  return { states, statuses, kinds };
}

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`the same scenario over ${transport}, both topics on one connection`, async () => {
    await simulator.put('/doc', doc(0));
    await simulator.put('/other', { done: false });
    const tcp = await startTCPProxy(proxy.port);
    const dc = client(tcp.port, { transports: [transport] });
    const seen = [];
    dc.on('transport', (t) => seen.push(t));
    try {
      await scenario(dc);
      assert.deepStrictEqual(seen, [transport]);
      // Both topics share one connection: one WebSocket, or one event stream (the stream is
      // reopened once when the second topic joins, as SSE names its topics in the URL).
      if (transport === 'websocket') assert.equal(tcp.counts.upgrades, 1);
      if (transport === 'sse') assert.ok(tcp.counts.streams <= 2, `${tcp.counts.streams} streams`);
    } finally { dc.close(); tcp.close(); }
  });
}

test('a WebSocket that never opens falls back to SSE within a few seconds', async () => {
  await simulator.put('/doc', doc(0));
  const tcp = await startTCPProxy(proxy.port, { hangUpgrades: true });
  const dc = client(tcp.port);
  const started = Date.now();
  try {
    let state;
    dc.subscribe('/doc', { onState: (s) => { state = s; } });
    await until(() => state, 15000, 'state over the fallback');
    assert.equal(dc.transport, 'sse');
    assert.ok(Date.now() - started < 8000, `fell back after ${Date.now() - started} ms`);
  } finally { dc.close(); tcp.close(); }
});

test('SSE refused as well: long-poll', async () => {
  await simulator.put('/doc', doc(0));
  const tcp = await startTCPProxy(proxy.port, { hangUpgrades: true, refuseSSE: true });
  const dc = client(tcp.port);
  try {
    await scenario(dc, { mutations: 4 });
    assert.equal(dc.transport, 'longpoll');
  } finally { dc.close(); tcp.close(); }
});

test('connections cut at random: reconnect with backoff, resume, converge', async () => {
  await simulator.put('/doc', doc(0));
  const tcp = await startTCPProxy(proxy.port);
  const dc = client(tcp.port, { initialBackoff: 100, maxBackoff: 1000 });
  let drops = 0;
  dc.on('disconnected', () => { drops++; });
  try {
    const { kinds } = await scenario(dc, { mutations: 16, during: (v) => { if (v % 3 === 0) tcp.cutAll(); } });
    assert.ok(drops >= 3, `${drops} drops`);
    // Every resume was served from the journal: one snapshot at the start, patches after.
    assert.equal(kinds.filter((k) => k === 'snapshot').length, 1, kinds.join(' '));
  } finally { dc.close(); tcp.close(); }
});

test('upstream failures reach onStatus, and recovery too', async () => {
  await simulator.put('/doc', doc(0));
  const dc = client(proxy.port);
  const statuses = [];
  let state;
  try {
    dc.subscribe('/doc', { onState: (s) => { state = s; }, onStatus: (s) => statuses.push(s.upstream) });
    // The topic is already live from the tests before, so the first snapshot may be their
    // last document: wait until the proxy has polled doc(0) before the upstream fails.
    await until(() => isDeepStrictEqual(state, doc(0)), 15000, 'snapshot of doc(0)');
    await simulator.control('POST', '/_sim/fail/doc?mode=status&status=503');
    await until(() => statuses.includes('error'), 15000, 'status error');
    await simulator.control('DELETE', '/_sim/fail/doc');
    await until(() => statuses.at(-1) === 'ok', 15000, 'status ok');
    assert.deepStrictEqual(state, doc(0));
  } finally { dc.close(); }
});

test('a patch whose base is not the cursor is never applied: the client resubscribes', () => {
  const dc = new Deltacast('http://127.0.0.1:1');
  const states = [];
  const sub = dc.subscribe('/t', { onState: (s) => states.push(s) });
  dc._stop();   // no network: events are fed by hand
  const sent = [];
  dc._conn = { kind: 'websocket', open: true, send: (m) => sent.push(m), close() {} };
  dc._handle({ type: 'snapshot', topic: '/t', cursor: 'abcd-1', data: { a: 1 } });
  dc._handle({ type: 'patch', topic: '/t', cursor: 'abcd-2', base: 'abcd-1', patch: [{ op: 'replace', path: '/a', value: 2 }] });
  dc._handle({ type: 'patch', topic: '/t', cursor: 'abcd-2', base: 'abcd-1', patch: [{ op: 'replace', path: '/a', value: 2 }] });   // duplicate
  dc._handle({ type: 'patch', topic: '/t', cursor: 'abcd-9', base: 'abcd-8', patch: [{ op: 'replace', path: '/a', value: 9 }] });
  assert.deepStrictEqual(states, [{ a: 1 }, { a: 2 }]);
  assert.equal(sub.cursor, null);
  assert.deepStrictEqual(sent, [{ type: 'subscribe', topic: '/t' }]);
  dc._conn = null;
  dc.close();
});
