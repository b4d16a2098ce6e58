// Drift detection (issue 19, section 7): an endpoint with `digest: true` sends, with every
// snapshot and patch, the SHA-256 of the RFC 8785 form of the document it results in.
// - The proxy's digests (Swift: its own JSON engine, canonicalizer and OpenSSL) equal those of
//   the client library's canonicalizer and node's own SHA-256, on a document full of RFC 8785's
//   hard cases.
// - A client whose state was corrupted behind the library's back is repaired within one
//   change on every transport: the patch's digest disagrees, no wrong state is delivered, the
//   library resubscribes, reports it, and the proxy counts it in deltacast_client_drift_total.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import crypto from 'node:crypto';
import { Deltacast, NodeEventSource, startSimulator, startProxy, proxyConfig, stop, until } from './helpers.mjs';

const simulator = await startSimulator();
const proxy = await startProxy(proxyConfig(simulator.port, `  - path: /d/{name}
    interval: 100ms
    array_keys: { /rows: id }
    digest: true
  - path: /plain
    interval: 100ms`));
after(async () => { await stop(proxy.child); await stop(simulator.child); });

const base = `http://127.0.0.1:${proxy.port}`;
const sha256 = (text) => crypto.createHash('sha256').update(text, 'utf8').digest('hex');

function rows(version) {
  // Large enough that a change travels as a patch, not a smaller snapshot.
  return { version, rows: Array.from({ length: 40 }, (_, i) => ({ id: i, v: i === version % 40 ? version : 0, name: `row ${i}` })) };
}

async function metric(name) {
  const text = await (await fetch(base + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

/** The next `count` events of an event stream (raw, not through the library). */
async function streamEvents(path, count) {
  const controller = new AbortController();
  const response = await fetch(base + path, { headers: { Accept: 'text/event-stream' }, signal: controller.signal });
  const reader = response.body.getReader();
  const events = [];
  let buffer = '';
  try {
    while (events.length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += Buffer.from(value).toString('utf8');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0 && events.length < count) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (data) events.push(JSON.parse(data));
      }
    }
  } finally {
    controller.abort();
    reader.cancel().catch(() => {});
  }
  return events;
}

test('the proxy digests what an independent canonicalizer digests, for snapshots and patches', async () => {
  const tricky = {
    'numbers': [333333333.33333329, 1e30, 4.5, 0.002, 1e-27, -0, 1e21, 1e-7, 123456789012345680000, 0.1],
    'string': '\u20ac$\u000f\nA\'B"\\\\"/\u2028\u0000',
    '\u20ac': 1, '\r': 2, '\ufb33': 3, '1': 4, '\ud83d\ude00': 5, '\u0080': 6, '\u00f6': 7,
    'nested': { z: [true, false, null, {}, []], a: 'x' },
    'rows': Array.from({ length: 30 }, (_, i) => ({ id: i, v: 0, note: 'long enough that a change travels as a patch' })),
  };
  await simulator.put('/d/tricky', tricky);
  const [snapshot] = await streamEvents('/d/tricky', 1);
  assert.equal(snapshot.type, 'snapshot');
  assert.equal(snapshot.digest, sha256(Deltacast.canonicalJSON(tricky)));
  assert.equal(snapshot.digest, Deltacast.sha256Hex(Deltacast.canonicalJSON(snapshot.data)));

  const events = streamEvents(`/d/tricky?since=${snapshot.cursor}`, 1);
  const next = { ...tricky, rows: tricky.rows.map((r) => (r.id === 7 ? { ...r, v: 1 } : r)), 'numbers': [...tricky.numbers, 5e-324] };
  await simulator.put('/d/tricky', next);
  const [patch] = await events;
  assert.equal(patch.type, 'patch');
  assert.equal(patch.digest, sha256(Deltacast.canonicalJSON(next)));
  assert.equal(patch.digest, sha256(Deltacast.canonicalJSON(Deltacast.applyPatch(snapshot.data, patch.patch))));

  // Endpoints without `digest: true` send none.
  await simulator.put('/plain', { a: 1 });
  const [plain] = await streamEvents('/plain', 1);
  assert.equal(plain.type, 'snapshot');
  assert.equal('digest' in plain, false);
});

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`a corrupted client state is repaired within one change (${transport})`, async () => {
    const topic = `/d/${transport}`;
    const versions = new Map();
    const put = async (version) => { versions.set(version, rows(version)); await simulator.put(topic, rows(version)); };
    await put(1);
    const before = await metric('deltacast_client_drift_total');
    const dc = new Deltacast(base, { EventSource: NodeEventSource, transports: [transport] });
    const delivered = [];
    const drifts = [];
    dc.on('drift', (drift) => drifts.push(drift));
    const sub = dc.subscribe(topic, { onState: (state) => delivered.push(structuredClone(state)) });
    try {
      await until(() => delivered.length === 1, 15000, 'the first snapshot');
      // Corrupt the state the library holds, as a bug in the page (or the library) would.
      sub.state.rows[3].v = 999;
      await put(2);
      await until(() => isDeepStrictEqual(delivered.at(-1), rows(2)), 15000, 'the repaired state');
      assert.equal(drifts.length, 1, JSON.stringify(drifts));
      assert.equal(drifts[0].topic, topic);
      assert.equal(dc.drifts, 1);
      for (const state of delivered) assert.deepEqual(state, versions.get(state.version), 'every delivered state is one the upstream had');
      await until(async () => await metric('deltacast_client_drift_total') === before + 1, 10000, 'the proxy counts the drift');
    } finally { dc.close(); }
  });
}
