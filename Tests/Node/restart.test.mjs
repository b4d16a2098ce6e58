// A graceful restart under load, with the client library (issue 19, section 6): 3,000
// subscribers, a third on each transport, over ten topics that keep changing. The proxy gets
// SIGTERM (WebSocket close 1012, SSE a final retry:, long-polls answered) and a new process
// starts on the same port. Every client must reach the new process and converge, with one
// snapshot of the new epoch per client and no patch across epochs; and at no moment may a
// client hold a state that the upstream never had.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Deltacast, NodeEventSource, startSimulator, startDeltacast, stop, until } from './helpers.mjs';

const TOPICS = 10;
const CLIENTS = Number(process.env.RESTART_CLIENTS || 3000);

function doc(topic, version) {
  return { topic, version, rows: Array.from({ length: 8 }, (_, i) => ({ id: i, v: i === version % 8 ? version : 0 })) };
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => { const { port } = server.address(); server.close(() => resolve(port)); });
  });
}

const simulator = await startSimulator();
const port = await freePort();
const file = path.join(os.tmpdir(), `deltacast-restart-${process.pid}.yaml`);
fs.writeFileSync(file, `listen: 127.0.0.1:${port}
upstream: { base: http://127.0.0.1:${simulator.port}, timeout: 2s }
endpoints:
  - path: /r/{n}
    interval: 100ms
    array_keys: { /rows: id }
limits: { max_connections_per_ip: 10000 }
server: { sse_heartbeat: 2s, shutdown_timeout: 5s }
`);
let proxy = await startDeltacast(['serve', '-c', file]);
after(async () => { await stop(proxy.child); await stop(simulator.child); fs.rmSync(file, { force: true }); });

test(`a graceful restart under ${CLIENTS} subscribers: everyone reconnects, nobody holds a wrong state`, { timeout: 240000 }, async () => {
  const versions = Array.from({ length: TOPICS }, () => new Map());
  async function put(n, version) {
    const value = doc(n, version);
    versions[n].set(version, value);
    await simulator.put(`/r/${n}`, value);
  }
  for (let n = 0; n < TOPICS; n++) await put(n, 0);

  const wrong = [];
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    const transport = ['websocket', 'sse', 'longpoll'][i % 3];
    const n = i % TOPICS;
    const record = { transport, n, version: -1, events: [] };
    const dc = new Deltacast(`http://127.0.0.1:${port}`, { EventSource: NodeEventSource, transports: [transport] });
    dc.subscribe(`/r/${n}`, {
      onState(state, event) {
        const expected = versions[n].get(state && state.version);
        if (!isDeepStrictEqual(state, expected)) wrong.push({ i, transport, state });
        record.version = state.version;
        record.events.push({ type: event.type, cursor: event.cursor, base: event.base });
      },
    });
    record.dc = dc;
    clients.push(record);
    if (i % 250 === 249) await new Promise((r) => setTimeout(r, 50));
  }
  const allAt = (version) => () => clients.every((c) => c.version === version);
  try {
    await until(allAt(0), 60000, 'every client holds version 0');
    for (let version = 1; version <= 3; version++) {
      for (let n = 0; n < TOPICS; n++) await put(n, version);
      await new Promise((r) => setTimeout(r, 300));
    }
    await until(allAt(3), 60000, 'every client holds version 3');
    const oldEpoch = clients[0].events.at(-1).cursor.split('-')[0];
    for (const c of clients) c.mark = c.events.length;

    // What a raw WebSocket and a raw event stream see of the shutdown.
    const raw = new WebSocket(`ws://127.0.0.1:${port}/r/0`);
    await new Promise((resolve, reject) => { raw.onopen = resolve; raw.onerror = reject; });
    const closed = new Promise((resolve) => { raw.onclose = (event) => resolve(event.code); });
    const streamEnd = fetch(`http://127.0.0.1:${port}/r/1`, { headers: { Accept: 'text/event-stream' } })
      .then((response) => response.text());
    await new Promise((r) => setTimeout(r, 300));

    const exited = new Promise((resolve) => proxy.child.once('exit', (code, signal) => resolve({ code, signal })));
    proxy.child.kill('SIGTERM');
    assert.equal(await closed, 1012, 'WebSocket close code on a graceful restart');
    assert.match(await streamEnd, /\nretry: \d+\n/, 'the event stream ends with a retry: hint');
    assert.deepEqual(await exited, { code: 0, signal: null }, 'the old process exits cleanly');
    proxy = await startDeltacast(['serve', '-c', file]);

    for (let version = 4; version <= 6; version++) {
      for (let n = 0; n < TOPICS; n++) await put(n, version);
      await new Promise((r) => setTimeout(r, 300));
    }
    await until(allAt(6), 120000, 'every client holds version 6 from the new process');

    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} states the upstream never had`);
    const byTransport = {};
    for (const c of clients) {
      const after = c.events.slice(c.mark);
      const newEpoch = after.filter((e) => !e.cursor.startsWith(oldEpoch + '-'));
      assert.ok(newEpoch.length > 0 && newEpoch[0].type === 'snapshot', `${c.transport} client starts the new epoch with a snapshot: ${JSON.stringify(after)}`);
      assert.equal(newEpoch.filter((e) => e.type === 'snapshot').length, 1, `one snapshot of the new epoch: ${JSON.stringify(after)}`);
      for (const e of newEpoch) if (e.type === 'patch') assert.equal(e.base.split('-')[0], e.cursor.split('-')[0], 'no patch across epochs');
      byTransport[c.transport] = (byTransport[c.transport] || 0) + 1;
    }
    assert.deepEqual(byTransport, { websocket: CLIENTS / 3, sse: CLIENTS / 3, longpoll: CLIENTS / 3 });
  } finally {
    for (const c of clients) c.dc.close();
  }
});
