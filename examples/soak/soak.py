#!/usr/bin/env python3
"""Soak: drive a real `deltacast serve` for a bounded time and show that it holds.

Behind the proxy, the simulator serves 1,000 topics whose documents change all the time (the
script rewrites 50 item documents a second; each user's notifications change on their own).
Two client processes hold about 19,000 connections, WebSocket, SSE and long-poll mixed, every
one applying what it receives and checking each patch's base against the cursor it holds:
- about 1 % of the clients reconnect every second, half of them resuming with their cursor;
- 5 % are slow readers that stop reading for 2–10 s at random;
- 100 of the topics are per-user (`auth: passthrough`, a bearer token each).

Every minute it samples the proxy's RSS, open descriptors and CPU from /proc, its connections,
journal entries and slowest consumer from the status JSON, and the convergence of a sample of
clients: a plain GET gives a topic's body and cursor, and the client must reach that cursor
holding exactly that body. At the end it writes `report.md` (the table and the verdict),
`samples.json` and, when matplotlib is there, `soak.png` into the output directory.

The journal keeps 24 changes per topic (`limits.journal_entries`), so journals are full within
the warm-up: at this change rate the default 256 would take over an hour to fill, and memory
rises, by design and within its bound, until they are.

Holds when: after warm-up (the first third), RSS moves by less than 5 % and open descriptors
by less than 2 % over the rest of the run (least-squares slope times the window, against the
mean); every sampled client converges; no patch arrives on the wrong base (lost) or twice
(repeated). Everything stays on 127.0.0.1 and stops by itself after `--minutes`.

usage: soak.py BINARY [--minutes 30] [--connections 19000] [--out DIR]
"""
import argparse
import asyncio
import base64
import collections
import http.client
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

ADMIN = "soak-admin-token-0123456789"
ITEMS = 900
USERS = 100


# ---------------------------------------------------------------- clients (worker processes)

def apply_patch(document, operations):
    """RFC 6902 as the proxy emits it (add, remove, replace, move, copy, test)."""
    def parse(pointer):
        return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]

    def locate(doc, tokens):
        parent = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        return parent, tokens[-1]

    def get(doc, tokens):
        for token in tokens:
            doc = doc[int(token)] if isinstance(doc, list) else doc[token]
        return doc

    def add(doc, tokens, value):
        if not tokens:
            return value
        parent, last = locate(doc, tokens)
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value
        return doc

    def remove(doc, tokens):
        parent, last = locate(doc, tokens)
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)

    for op in operations:
        tokens = parse(op["path"])
        kind = op["op"]
        if kind == "add":
            document = add(document, tokens, op["value"])
        elif kind == "remove":
            remove(document, tokens)
        elif kind == "replace":
            if not tokens:
                document = op["value"]
            else:
                parent, last = locate(document, tokens)
                parent[int(last) if isinstance(parent, list) else last] = op["value"]
        elif kind == "move":
            value = remove(document, parse(op["from"]))
            document = add(document, tokens, value)
        elif kind == "copy":
            document = add(document, tokens, json.loads(json.dumps(get(document, parse(op["from"])))))
        elif kind == "test":
            if get(document, tokens) != op["value"]:
                raise ValueError("test failed")
    return document


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Client:
    def __init__(self, number, topic, token, transport, slow):
        self.number, self.topic, self.token, self.transport, self.slow = number, topic, token, transport, slow
        self.state, self.cursor = None, None
        self.history = collections.deque(maxlen=32)   # (cursor, canonical state)
        self.task = None
        self.connected = False
        self.resuming = False

    def headers(self):
        return f"Authorization: Bearer {self.token}\r\n" if self.token else ""


class Worker:
    """One client process: its share of the connections, its counters, and its checks."""

    def __init__(self, port, clients, seed):
        self.port = port
        self.random = random.Random(seed)
        self.clients = clients
        self.counts = collections.Counter()
        self.samples = []       # error messages, at most 20

    def note(self, what):
        if len(self.samples) < 20:
            self.samples.append(what)

    def event(self, client, event):
        kind = event.get("type")
        self.counts["events"] += 1
        if kind == "snapshot":
            self.counts["snapshots"] += 1
            if client.resuming:
                self.counts["resumed_by_snapshot"] += 1
            client.state, client.cursor = event["data"], event["cursor"]
        elif kind == "patch":
            self.counts["patches"] += 1
            if client.resuming:
                self.counts["resumed_from_journal"] += 1
            if client.cursor is None or event["base"] != client.cursor:
                held, got = client.cursor or "-0", event["cursor"]
                same_epoch = held.rsplit("-", 1)[0] == got.rsplit("-", 1)[0]
                if same_epoch and int(got.rsplit("-", 1)[1]) <= int(held.rsplit("-", 1)[1]):
                    self.counts["repeated"] += 1
                    self.note(f"repeat: client {client.number} {client.topic} holds {held}, got {got}")
                else:
                    self.counts["lost"] += 1
                    self.note(f"gap: client {client.number} {client.topic} holds {held}, got base {event['base']}")
                client.cursor = None
                raise ConnectionResetError("resubscribe")
            try:
                client.state = apply_patch(client.state, event["patch"])
            except Exception as error:   # noqa: BLE001 - a patch that does not apply is a finding
                self.counts["bad_patches"] += 1
                self.note(f"patch did not apply for {client.topic}: {error}")
                client.cursor = None
                raise ConnectionResetError("resubscribe")
            client.cursor = event["cursor"]
        elif kind == "status":
            self.counts["status_events"] += 1
            return
        elif kind == "error":
            self.counts["error_events"] += 1
            self.note(f"error event: {event}")
            return
        client.resuming = False
        client.history.append((client.cursor, canonical(client.state)))

    # -- transports

    async def run_websocket(self, client, reader, writer):
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /deltacast/ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: deltacast.v1\r\n"
                      f"{client.headers()}\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        message = {"type": "subscribe", "topic": client.topic}
        if client.cursor:
            message["since"] = client.cursor
        writer.write(self.frame(1, json.dumps(message).encode()))
        client.connected = True
        while True:
            b0, b1 = await reader.readexactly(2)
            length = b1 & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(length)
            opcode = b0 & 0x0F
            if opcode == 1:
                self.event(client, json.loads(payload))
            elif opcode == 9:
                writer.write(self.frame(10, payload))
            elif opcode == 8:
                return
            await self.maybe_stall(client)

    @staticmethod
    def frame(opcode, payload):
        mask = os.urandom(4)
        header = bytes([0x80 | opcode, 0x80 | len(payload)]) if len(payload) < 126 else \
            bytes([0x80 | opcode, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def run_sse(self, client, reader, writer):
        query = f"topic={client.topic}" + (f"&since={client.cursor}" if client.cursor else "")
        writer.write(f"GET /deltacast/sse?{query} HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n{client.headers()}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        client.connected = True
        data = []
        while True:
            line = await reader.readline()
            if not line:
                return
            line = line.rstrip(b"\n")
            if line.startswith(b"data: "):
                data.append(line[6:])
            elif not line and data:
                self.event(client, json.loads(b"\n".join(data)))
                data = []
                await self.maybe_stall(client)

    async def run_longpoll(self, client, reader, writer):
        client.connected = True
        while True:
            query = f"topic={client.topic}&since={client.cursor or ''}&wait=25"
            writer.write(f"GET /deltacast/poll?{query} HTTP/1.1\r\nHost: soak\r\n{client.headers()}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            body = await reader.readexactly(int(match.group(1))) if match else b""
            if status == 200:
                for event in json.loads(body):
                    self.event(client, event)
            elif status != 204:
                raise ConnectionError(f"long-poll {status}: {body[:200]!r}")
            if re.search(rb"(?i)connection: *close", head):
                return

    async def maybe_stall(self, client):
        if client.slow and self.random.random() < 0.2:
            self.counts["stalls"] += 1
            await asyncio.sleep(self.random.uniform(2, 10))

    async def keep(self, client):
        """Connects and reconnects until cancelled (a churn) or the run ends."""
        while True:
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=4 << 20)
                await getattr(self, "run_" + client.transport)(client, reader, writer)
                self.counts["closed_by_server"] += 1
            except asyncio.CancelledError:
                raise
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                if "resubscribe" not in str(error):
                    self.counts["connection_errors"] += 1
                    self.note(f"{client.transport} {client.topic}: {error!r}"[:300])
            finally:
                client.connected = False
                if writer:
                    writer.close()
            await asyncio.sleep(self.random.uniform(0.5, 2))
            client.resuming = client.cursor is not None

    def restart(self, client):
        """A churn: the connection goes; half the time the cursor goes with it."""
        if client.task:
            client.task.cancel()
        if self.random.random() < 0.5:
            client.cursor, client.state = None, None
            self.counts["reconnects_fresh"] += 1
        else:
            self.counts["reconnects_resuming"] += 1
        client.resuming = client.cursor is not None
        client.task = asyncio.get_running_loop().create_task(self.keep(client))

    async def churn(self, share):
        while True:
            await asyncio.sleep(1)
            for client in self.random.sample(self.clients, min(len(self.clients), max(1, int(len(self.clients) * share)))):
                self.restart(client)

    async def check(self, count):
        """Convergence: a plain GET's body and cursor, which the client must reach exactly."""
        candidates = [c for c in self.clients if c.connected and c.cursor and not c.slow]
        results = collections.Counter()
        for client in self.random.sample(candidates, min(count, len(candidates))):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(f"GET {client.topic} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n{client.headers()}\r\n".encode())
                response = await reader.read()
                writer.close()
                head, _, body = response.partition(b"\r\n\r\n")
                cursor = re.search(rb'(?i)etag: *"([^"]+)"', head).group(1).decode()
                expected = canonical(json.loads(body))
            except Exception as error:   # noqa: BLE001
                results["get_failed"] += 1
                self.note(f"convergence GET {client.topic}: {error!r}")
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                held = dict(client.history)
                if cursor in held:
                    if held[cursor] == expected:
                        results["converged"] += 1
                    else:
                        results["diverged"] += 1
                        self.note(f"diverged: {client.topic} at {cursor}")
                    break
                await asyncio.sleep(0.1)
            else:
                results["not_reached"] += 1
                self.note(f"not reached in 20 s: {client.topic} cursor {cursor}, client at {client.cursor}")
        return results


def worker_main(port, specs, seed, connection, churn_share):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    clients = [Client(*spec) for spec in specs]
    worker = Worker(port, clients, seed)

    async def main():
        loop = asyncio.get_running_loop()
        for index, client in enumerate(clients):
            client.task = loop.create_task(worker.keep(client))
            if index % 200 == 199:
                await asyncio.sleep(0.1)     # about 2,000 connects a second per worker
        churn = loop.create_task(worker.churn(churn_share))
        while True:
            command = await loop.run_in_executor(None, connection.recv)
            if command[0] == "stop":
                break
            results = await worker.check(command[1])
            connected = sum(c.connected for c in clients)
            connection.send((dict(worker.counts), dict(results), connected, worker.samples[:]))
            worker.samples.clear()
        churn.cancel()
        for client in clients:
            client.task.cancel()
        connection.send("stopped")

    asyncio.run(main())


# ---------------------------------------------------------------- the driver

def start(command, pattern, env=None):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    found = threading.Event()
    result = {}

    def read():
        for line in process.stdout:
            if len(lines) < 2000:
                lines.append(line)
            match = re.search(pattern, line)
            if match and not found.is_set():
                result["port"] = int(match.group(1))
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    found.wait(30)
    if "port" not in result:
        process.kill()
        raise SystemExit("did not start: " + " ".join(command) + "\n" + "".join(lines))
    return process, result["port"], lines


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as handle:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", handle.read()).group(1)) * 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss, fds, ticks / os.sysconf("SC_CLK_TCK")


def item_document(number, version, rows):
    return json.dumps({"id": number, "version": version, "rows": rows})


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("--out", default=None)
    parser.add_argument("--sample-seconds", type=float, default=60)
    parser.add_argument("--churn", type=float, default=0.01, help="share of clients reconnecting each second")
    parser.add_argument("--changes", type=int, default=50, help="upstream document changes per second")
    parser.add_argument("--transports", default="websocket,sse,longpoll", help="the mix, in proportion 2:2:1 when all three")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="deltacast-soak-")
    os.makedirs(out, exist_ok=True)
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

    simulator, sim_port, _ = start([args.binary, "simulate", "--listen", "127.0.0.1:0"], r"http://127\.0\.0\.1:(\d+)")
    config = os.path.join(out, "soak.yaml")
    with open(config, "w") as handle:
        handle.write(f"""listen: 127.0.0.1:0
upstream:
  base: http://127.0.0.1:{sim_port}
  max_concurrent: 32
endpoints:
  - path: /api/items/{{id}}
    upstream: /v1/items/{{id}}
    interval: 2s
    array_keys: {{ /rows: id }}
  - path: /api/users/{{user}}/notifications
    interval: 2s
    auth: passthrough
    linger: 10s
limits:
  journal_entries: 24
  max_connections: 30000
  max_connections_per_ip: 30000
  max_topics: 5000
admin:
  token: {ADMIN}
""")
    proxy, port, proxy_log = start([args.binary, "serve", "-c", config], r"listening on http://127\.0\.0\.1:(\d+)")
    print(f"soak: proxy pid {proxy.pid} on {port}, simulator on {sim_port}, {args.connections} connections, "
          f"{args.minutes} min; output in {out}", flush=True)

    # The documents, changed by this process: 50 a second in all.
    upstream = http.client.HTTPConnection("127.0.0.1", sim_port, timeout=10)
    documents = {}
    for number in range(ITEMS):
        rows = [{"id": row, "v": 0} for row in range(10)]
        documents[number] = [1, rows]
        upstream.request("PUT", f"/_sim/docs/v1/items/{number}", item_document(number, 1, rows), {"Content-Type": "application/json"})
        upstream.getresponse().read()

    rng = random.Random(7)
    specs = []
    for number in range(args.connections):
        kinds = args.transports.split(",")
        transport = kinds[number % 5 % 3] if len(kinds) == 3 else kinds[number % len(kinds)]   # 2:2:1 for all three
        if number % 10 == 0:
            user = rng.randrange(USERS)
            topic, token = f"/api/users/{user}/notifications", f"user-{user}"
        else:
            topic, token = f"/api/items/{rng.randrange(ITEMS)}", None
        specs.append((number, topic, token, transport, rng.random() < 0.05))
    pipes, workers = [], []
    for index in range(2):
        mine, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=worker_main, args=(port, specs[index::2], index, theirs, args.churn), daemon=True)
        process.start()
        pipes.append(mine)
        workers.append(process)

    started = time.monotonic()
    end = started + args.minutes * 60
    samples = []
    next_sample = started + args.sample_seconds
    last_cpu = proc_sample(proxy.pid)[2]
    last_time = started
    changes = 0
    try:
        while time.monotonic() < end:
            for _ in range(args.changes // 10):
                number = rng.randrange(ITEMS)
                version, rows = documents[number]
                rows[rng.randrange(len(rows))]["v"] += 1
                if rng.random() < 0.1:      # now and then a row comes or goes
                    if len(rows) > 5 and rng.random() < 0.5:
                        rows.pop(rng.randrange(len(rows)))
                    else:
                        rows.append({"id": max(r["id"] for r in rows) + 1, "v": 0})
                documents[number] = [version + 1, rows]
                upstream.request("PUT", f"/_sim/docs/v1/items/{number}", item_document(number, version + 1, rows),
                                 {"Content-Type": "application/json"})
                upstream.getresponse().read()
                changes += 1
            time.sleep(0.1)
            if time.monotonic() >= next_sample:
                next_sample += args.sample_seconds
                now = time.monotonic()
                rss, fds, cpu = proc_sample(proxy.pid)
                cpu_share = (cpu - last_cpu) / (now - last_time)
                last_cpu, last_time = cpu, now
                status = json.loads(http_get(port, "/deltacast/status"))
                journal = sum(t["journal"] for e in status["endpoints"] for t in e["topics"])
                pending = max([c["pending_bytes"] for c in status["slowest_consumers"]] or [0])
                for pipe in pipes:
                    pipe.send(("check", 25))
                counts, checks, connected, notes = collections.Counter(), collections.Counter(), 0, []
                for pipe in pipes:
                    c, r, n, s = pipe.recv()
                    counts.update(c)
                    checks.update(r)
                    connected += n
                    notes += s
                sample = {"minute": round((now - started) / 60, 2), "rss_mib": round(rss / 2**20, 1), "fds": fds,
                          "cpu": round(cpu_share, 3), "open": status["connections"]["open"], "connected": connected,
                          "journal": journal, "max_pending": pending, "changes": changes, "counts": dict(counts),
                          "checks": dict(checks), "notes": notes[:5]}
                samples.append(sample)
                print(json.dumps({k: v for k, v in sample.items() if k not in ("counts", "notes")}) +
                      f" lost={counts['lost']} repeated={counts['repeated']} events={counts['events']}", flush=True)
                for note in notes[:3]:
                    print("   ", note, flush=True)
                if proxy.poll() is not None:
                    print("the proxy exited", flush=True)
                    break
    finally:
        for pipe in pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for process in workers:
            process.join(20)
            if process.is_alive():
                process.kill()
        alive = proxy.poll() is None
        for process in (proxy, simulator):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
    report(samples, out, args, alive, proxy_log)


def http_get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Authorization": f"Bearer {ADMIN}"})
    body = connection.getresponse().read()
    connection.close()
    return body


def report(samples, out, args, alive, proxy_log):
    with open(os.path.join(out, "samples.json"), "w") as handle:
        json.dump(samples, handle, indent=1)
    if not samples:
        print("no samples")
        sys.exit(1)
    warm = [s for s in samples if s["minute"] > args.minutes / 3] or samples
    window = warm[-1]["minute"] - warm[0]["minute"]
    rss_mean = sum(s["rss_mib"] for s in warm) / len(warm)
    fds_mean = sum(s["fds"] for s in warm) / len(warm)
    rss_drift = slope([(s["minute"], s["rss_mib"]) for s in warm]) * window
    fds_drift = slope([(s["minute"], s["fds"]) for s in warm]) * window
    last = samples[-1]["counts"]
    checks = collections.Counter()
    for s in samples:
        checks.update(s["checks"])
    verdict = {
        "proxy alive at the end": alive,
        f"RSS drift after warm-up {rss_drift:+.1f} MiB over {window:.0f} min (< 5 % of {rss_mean:.0f} MiB)": abs(rss_drift) < 0.05 * rss_mean,
        f"fd drift after warm-up {fds_drift:+.0f} over {window:.0f} min (< 2 % of {fds_mean:.0f})": abs(fds_drift) < 0.02 * fds_mean,
        f"sampled clients converged: {checks['converged']} of {sum(checks.values())}": checks["converged"] == sum(checks.values()) and checks["converged"] > 0,
        f"patches lost {last.get('lost', 0)}, repeated {last.get('repeated', 0)}, not applying {last.get('bad_patches', 0)}":
            last.get("lost", 0) == 0 and last.get("repeated", 0) == 0 and last.get("bad_patches", 0) == 0,
    }
    lines = [f"# Soak: {args.connections} connections, {args.minutes:g} min ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             "| minute | RSS MiB | fds | CPU (cores) | open | clients connected | journal entries | max pending B | events | lost | repeated | converged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in samples:
        c = s["counts"]
        lines.append(f"| {s['minute']:g} | {s['rss_mib']} | {s['fds']} | {s['cpu']} | {s['open']} | {s['connected']} | {s['journal']} | "
                     f"{s['max_pending']} | {c.get('events', 0)} | {c.get('lost', 0)} | {c.get('repeated', 0)} | "
                     f"{s['checks'].get('converged', 0)}/{sum(s['checks'].values())} |")
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(last.items())), ""]
    lines += [("holds" if ok else "FAILS") + ": " + what for what, ok in verdict.items()]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w") as handle:
        handle.write(text)
    if not alive:
        with open(os.path.join(out, "proxy.log"), "w") as handle:
            handle.write("".join(proxy_log))
    print(text)
    plot(samples, out, args)
    sys.exit(0 if all(verdict.values()) else 1)


def plot(samples, out, args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    minutes = [s["minute"] for s in samples]
    figure, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    axes[0].plot(minutes, [s["rss_mib"] for s in samples], color="tab:blue")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(minutes, [s["fds"] for s in samples], color="tab:green", label="open fds")
    axes[1].plot(minutes, [s["connected"] for s in samples], color="tab:gray", linestyle="--", label="clients connected")
    axes[1].set_ylabel("count")
    axes[1].set_ylim(bottom=0)
    axes[1].legend(loc="lower right", fontsize=8)
    axes[2].plot(minutes, [s["cpu"] for s in samples], color="tab:red")
    axes[2].set_ylabel("CPU (cores)")
    axes[2].set_ylim(bottom=0)
    axes[2].set_xlabel("minutes")
    figure.suptitle(f"deltacast soak: {args.connections} connections, 1,000 topics, 1 % reconnecting each second", fontsize=10)
    figure.tight_layout()
    figure.savefig(os.path.join(out, "soak.png"), dpi=80)
    print("plot:", os.path.join(out, "soak.png"))


if __name__ == "__main__":
    main()
