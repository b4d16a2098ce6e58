// deltacast.js with client authentication: the token travels as a WebSocket subprotocol entry,
// as a single-use ticket for SSE, and as a bearer header for long-poll. Tokens are HS256 JWTs
// minted here with node:crypto (an implementation independent of the proxy's OpenSSL one).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Deltacast, NodeEventSource, startProxy, stop, until } from './helpers.mjs';

const SECRET = 'node-test-secret-0123456789abcdefghij';
const ADMIN = 'node-admin-token-0123456789';

function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}
// The proxy allows 0 s of leeway here, so `seconds` is the whole lifetime.
const token = (sub, seconds = 300) => jwt({ sub, exp: Math.floor(Date.now() / 1000) + seconds });

const proxy = await startProxy(`listen: 127.0.0.1:0
admin: { token: ${ADMIN} }
auth:
  jwt: { algorithm: HS256, secret: "${SECRET}", leeway: 0s }
  expiry_grace: 1s
endpoints:
  - path: /users/{user}/inbox
    source: publish
    allow: "params.user == claims.sub"
server: { sse_heartbeat: 1s }
`);
after(async () => { await stop(proxy.child); });

async function publish(topic, body) {
  const response = await fetch(`http://127.0.0.1:${proxy.port}/deltacast/publish?topic=${topic}`, {
    method: 'POST', body: JSON.stringify(body), headers: { Authorization: `Bearer ${ADMIN}`, 'Content-Type': 'application/json' } });
  assert.equal(response.status, 200);
}

const inbox = (n) => ({ unread: n, note: 'long enough that a change travels as a patch, not a snapshot' });

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`${transport}: a token opens the user's own topic and nothing else`, async () => {
    await publish('/users/alice/inbox', inbox(1));
    await publish('/users/bob/inbox', inbox(100));
    const dc = new Deltacast(`http://127.0.0.1:${proxy.port}`, { EventSource: NodeEventSource, transports: [transport], token: token('alice') });
    let mine = null;
    let refused = null;
    try {
      dc.subscribe('/users/alice/inbox', { onState: (state) => { mine = state; } });
      dc.subscribe('/users/bob/inbox', { onState: () => assert.fail('bob\'s inbox reached alice'), onError: (error) => { refused = error; } });
      await until(() => mine && refused, 10000, 'own snapshot and the refusal');
      assert.equal(refused.code, 'forbidden');
      await publish('/users/alice/inbox', inbox(2));
      await until(() => isDeepStrictEqual(mine, inbox(2)), 10000, 'the change');
      assert.equal(dc.transport, transport);
    } finally { dc.close(); }
  });
}

test('a token function renews an expiring token without losing the subscription', async () => {
  await publish('/users/carol/inbox', inbox(1));
  let minted = 0;
  const dc = new Deltacast(`http://127.0.0.1:${proxy.port}`, {
    transports: ['websocket'],
    // The first token lives 2 s; the ones after it, 5 minutes.
    token: () => token('carol', minted++ === 0 ? 2 : 300),
  });
  let state = null;
  let errors = 0;
  const expired = [];
  dc.on('expired', (event) => expired.push(event));
  try {
    dc.subscribe('/users/carol/inbox', { onState: (s) => { state = s; }, onError: () => { errors++; } });
    await until(() => state, 10000, 'snapshot');
    // Past exp + grace (+ the proxy's 1 s sweep): the renewal has happened one way or another.
    await new Promise((r) => setTimeout(r, 5000));
    await publish('/users/carol/inbox', inbox(7));
    await until(() => isDeepStrictEqual(state, inbox(7)), 15000, 'the change after expiry');
    assert.equal(errors, 0);
    assert.ok(minted >= 2, `token function called ${minted} times`);
  } finally { dc.close(); }
});
