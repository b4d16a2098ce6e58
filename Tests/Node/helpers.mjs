// Shared by the node suites: start `deltacast simulate` and `deltacast serve` as processes,
// steer the simulator, a minimal EventSource for node (which has none), and a TCP proxy that
// can refuse transports or cut connections, placed between the client and the proxy.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
export const binary = process.env.DELTACAST_BIN || path.join(root, '.build', 'debug', 'deltacast');
const require = createRequire(import.meta.url);
/** The library as the proxy serves it at /deltacast.js (also loaded from the source file). */
export const Deltacast = require(path.join(root, 'Sources', 'DeltacastServer', 'Client', 'deltacast.js'));

const started = [];
process.on('exit', () => { for (const child of started) { try { child.kill('SIGKILL'); } catch {} } });

/** Runs `deltacast ...args`, resolves with the process and the port its first line names. */
export function startDeltacast(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    started.push(child);
    let text = '';
    const timer = setTimeout(() => reject(new Error(`deltacast ${args[0]} printed no port`)), 20000);
    child.stdout.on('data', (chunk) => {
      text += chunk;
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text);
      if (match) { clearTimeout(timer); child.stdout.removeAllListeners('data'); child.stdout.resume(); resolve({ child, port: Number(match[1]) }); }
    });
    child.on('exit', (code) => reject(new Error(`deltacast ${args[0]} exited ${code}: ${text}`)));
  });
}

export function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

export async function startSimulator() {
  const { child, port } = await startDeltacast(['simulate', '--listen', '127.0.0.1:0']);
  const base = `http://127.0.0.1:${port}`;
  const control = async (method, target, body, type = 'application/json') => {
    const response = await fetch(base + target, { method, body, headers: { 'Content-Type': type } });
    if (!response.ok) throw new Error(`simulator ${method} ${target}: ${response.status}`);
    return response.json();
  };
  await control('POST', '/_sim/freeze');
  return { child, port, base, control, put: (p, doc) => control('PUT', '/_sim/docs' + p, JSON.stringify(doc)) };
}

/**
 * `deltacast serve` with `yaml` (a temp file). With DELTACAST_NGINX=1 the port returned is the
 * real nginx's, configured by examples/deploy/nginx (Tests/Deploy/nginx-front.sh), in front.
 */
export async function startProxy(yaml) {
  const file = path.join(os.tmpdir(), `deltacast-node-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(file, yaml);
  let proxy;
  try { proxy = await startDeltacast(['serve', '-c', file]); } finally { fs.unlinkSync(file); }
  if (process.env.DELTACAST_NGINX !== '1') return proxy;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deltacast-nginx-'));
  const [plain] = execFileSync(path.join(root, 'Tests', 'Deploy', 'nginx-front.sh'), [String(proxy.port), dir], { encoding: 'utf8' }).trim().split(' ');
  process.on('exit', () => { try { process.kill(Number(fs.readFileSync(path.join(dir, 'nginx.pid'), 'utf8')), 'SIGTERM'); } catch {} });
  return { child: proxy.child, port: Number(plain), direct: proxy.port };
}

export function proxyConfig(upstreamPort, endpoints) {
  return `listen: 127.0.0.1:0
upstream: { base: http://127.0.0.1:${upstreamPort}, timeout: 1s }
endpoints:
${endpoints}
server: { sse_heartbeat: 1s }
`;
}

/** Resolves when `condition()` is true (checked every 20 ms), rejects after `ms`. */
export async function until(condition, ms = 15000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A minimal EventSource for node: fetch with a streamed body, the event-stream parser of the
 * HTML standard (id, event, data, comments), `open`/`error`, and no reconnection of its own
 * (the library does its own).
 */
export class NodeEventSource {
  constructor(url) {
    this.url = url;
    this.listeners = {};
    this.onopen = null;
    this.onerror = null;
    this.controller = new AbortController();
    this.closed = false;
    this._run();
  }
  addEventListener(name, fn) { (this.listeners[name] = this.listeners[name] || []).push(fn); }
  close() { this.closed = true; this.controller.abort(); }
  _dispatch(name, event) {
    if (name === 'error' && this.onerror) this.onerror(event);
    if (name === 'open' && this.onopen) this.onopen(event);
    for (const fn of this.listeners[name] || []) fn(event);
  }
  async _run() {
    try {
      const response = await fetch(this.url, { headers: { Accept: 'text/event-stream' }, signal: this.controller.signal });
      if (response.status !== 200 || !(response.headers.get('content-type') || '').startsWith('text/event-stream')) throw new Error('status ' + response.status);
      this._dispatch('open', {});
      const decoder = new TextDecoder();
      let buffer = '';
      let block = { data: [], event: 'message', id: null };
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, '');
          buffer = buffer.slice(newline + 1);
          if (line === '') {
            if (block.data.length) this._dispatch(block.event, { data: block.data.join('\n'), lastEventId: block.id, type: block.event });
            block = { data: [], event: 'message', id: block.id };
          } else if (!line.startsWith(':')) {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'data') block.data.push(value);
            else if (field === 'event') block.event = value;
            else if (field === 'id') block.id = value;
          }
        }
      }
      throw new Error('stream ended');
    } catch (error) {
      if (!this.closed) { this.closed = true; this._dispatch('error', { type: 'error' }); }
    }
  }
}

/**
 * A TCP proxy on loopback in front of `targetPort`. `mode.hangUpgrades` swallows WebSocket
 * upgrades (a WebSocket that never opens); `mode.refuseSSE` answers event-stream requests 502;
 * `cutAll()` destroys every open connection (a network drop).
 */
export function startTCPProxy(targetPort, mode = {}) {
  const sockets = new Set();
  const counts = { upgrades: 0, streams: 0 };
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.pipe(client);
    // Every request head is looked at, not only a connection's first: fetch reuses connections.
    client.on('data', (chunk) => {
      const head = chunk.toString('latin1', 0, Math.min(chunk.length, 4096));
      if (head.startsWith('GET ')) {
        if (/^upgrade: *websocket/im.test(head)) counts.upgrades++;
        if (/^accept: *text\/event-stream/im.test(head)) counts.streams++;
        if (mode.hangUpgrades && /^upgrade: *websocket/im.test(head)) { client.pause(); upstream.unpipe(client); return; }
        if (mode.refuseSSE && (/^accept: *text\/event-stream/im.test(head) || head.startsWith('GET /deltacast/sse'))) {
          upstream.unpipe(client);
          upstream.destroy();
          client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
          return;
        }
      }
      upstream.write(chunk);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    counts,
    cutAll() { for (const socket of sockets) socket.destroy(); },
    close() { for (const socket of sockets) socket.destroy(); server.close(); },
  })));
}
