#!/usr/bin/env python3
"""Cluster mode against real parts: a `redis-server` this suite starts on a free loopback port
(no persistence), three `deltacast serve` nodes, and the simulator as the upstream. Clients on
every transport (WebSocket through `websockets`, raw SSE, raw long-poll) apply what they
receive and must end equal to the upstream; every event's cursor is checked: nothing lost,
nothing twice, nothing out of order, whatever node a client talks to.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Cluster/cluster_test.py
"""
import asyncio
import copy
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, Proxy, Simulator, request  # noqa: E402

API_KEY = "cluster-test-api-key-alice-0123"
INTERVAL = 0.3   # seconds: the upstream poll interval of /doc/{name}
LEASE = "1s"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Redis:
    """`redis-server` on a free loopback port, without persistence; a raw RESP client."""

    def __init__(self):
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="deltacast-redis-")
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", self.directory],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.port)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def command(self, *arguments):
        return resp(self.port, *arguments)


def resp(port, *arguments, timeout=5):
    """One command to the Redis at `port` on a new connection; an error reply comes back as a
    RuntimeError value."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        payload = f"*{len(arguments)}\r\n".encode()
        for argument in arguments:
            data = argument if isinstance(argument, bytes) else str(argument).encode()
            payload += f"${len(data)}\r\n".encode() + data + b"\r\n"
        connection.sendall(payload)
        with connection.makefile("rb") as reader:
            return _reply(reader)


def _reply(reader):
    line = reader.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        if length < 0:
            return None
        data = reader.read(length + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_reply(reader) for _ in range(count)]
    raise RuntimeError(f"bad reply {line!r}")


def wait_for_redis(port, seconds=10):
    """Until the Redis at `port` answers PING."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if resp(port, "PING") == "PONG":
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on {port} did not start")


def node_config(simulator, redis, name, extra=""):
    return f"""
listen: 127.0.0.1:0
upstream: {{ base: {simulator.url}, timeout: 1s }}
admin: {{ token: {ADMIN} }}
limits: {{ max_connections_per_ip: 5000, max_connections: 5000, journal_entries: 64 }}
server: {{ event_loops: 1 }}
cluster: {{ redis: "{redis.url}", node: {name}, lease: {LEASE} }}
auth:
  api_keys:
    - {{ key: {API_KEY}, subject: alice, scopes: [read] }}
endpoints:
  - path: /doc/{{name}}
    upstream: /doc/{{name}}
    auth: none
    interval: {int(INTERVAL * 1000)}ms
    linger: 5s
    array_keys: {{ /items: id }}
  - path: /live/{{room}}
    source: publish
    auth: none
  - path: /secure/{{room}}
    source: publish
    auth: token
  - path: /me
    upstream: /api/whoami
    auth: passthrough
    interval: {int(INTERVAL * 1000)}ms
{extra}"""


def document(version, rows=12):
    """A keyed document; each version changes two rows and moves one."""
    items = [{"id": i, "v": i * 7, "name": f"row {i} with a description long enough to make patches the smaller"} for i in range(rows)]
    for step in range(1, version + 1):
        for i in (step % rows, (step * 5 + 3) % rows):
            items[i]["v"] += step
        if step % 4 == 1:
            items.append(items.pop(step % len(items)))
    return {"version": version, "items": items}


def put(simulator, path, body):
    status, _, _ = request(f"{simulator.url}/_sim/docs{path}", method="PUT", body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
    assert status in (200, 201, 204), status


def stats(simulator, path):
    status, _, body = request(f"{simulator.url}/_sim/stats")
    return json.loads(body)["requests"].get(path, 0)


# JSON Patch (RFC 6902), applied by the clients: a client library no one on this project wrote
# would do; this one is short and strict.
def _pointer(path):
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]] if path else []


def _parent(document, parts):
    for part in parts[:-1]:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def apply_patch(document, operations):
    document = copy.deepcopy(document)
    for operation in operations:
        op, parts = operation["op"], _pointer(operation["path"])
        if not parts:
            if op in ("add", "replace"):
                document = copy.deepcopy(operation["value"])
                continue
            raise ValueError(f"{op} at the root")
        if op in ("move", "copy"):
            source = _pointer(operation["from"])
            holder = _parent(document, source)
            key = int(source[-1]) if isinstance(holder, list) else source[-1]
            value = holder[key]
            if op == "move":
                del holder[key]
            else:
                value = copy.deepcopy(value)
            operation = {"op": "add", "path": operation["path"], "value": value}
            op = "add"
        holder = _parent(document, parts)
        last = parts[-1]
        if isinstance(holder, list):
            index = len(holder) if last == "-" else int(last)
            if op == "add":
                holder.insert(index, copy.deepcopy(operation["value"]))
            elif op == "remove":
                del holder[index]
            elif op == "replace":
                holder[index] = copy.deepcopy(operation["value"])
            elif op == "test":
                assert holder[index] == operation["value"]
        else:
            if op in ("add", "replace"):
                if op == "replace" and last not in holder:
                    raise KeyError(last)
                holder[last] = copy.deepcopy(operation["value"])
            elif op == "remove":
                del holder[last]
            elif op == "test":
                assert holder[last] == operation["value"]
    return document


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Client:
    """One subscriber's view: the document it built and the cursor it holds. Every event is
    checked against the cursor: a patch must follow it exactly; a cursor never repeats or goes
    back within an epoch."""

    def __init__(self, name):
        self.name = name
        self.state = None
        self.cursor = None
        self.snapshots = 0
        self.patches = 0
        self.errors = []
        self.statuses = []

    def handle(self, event):
        kind = event.get("type")
        if kind == "status":
            self.statuses.append(event)
            return True
        if kind == "error":
            self.errors.append(f"error event {event}")
            return False
        cursor = event["cursor"]
        epoch, seq = cursor.rsplit("-", 1)
        if self.cursor:
            held_epoch, held_seq = self.cursor.rsplit("-", 1)
            if held_epoch == epoch and int(seq) <= int(held_seq):
                self.errors.append(f"{self.name}: {kind} {cursor} repeats or goes back from {self.cursor}")
                return False
        if kind == "snapshot":
            self.state, self.cursor = event["data"], cursor
            self.snapshots += 1
        elif kind == "patch":
            if event["base"] != self.cursor:
                self.errors.append(f"{self.name}: patch {cursor} from {event['base']} does not follow {self.cursor}")
                return False
            self.state = merge_patch(self.state, event["merge"]) if "merge" in event else apply_patch(self.state, event["patch"])
            self.cursor = cursor
            self.patches += 1
        return True


async def http_get(port, target, timeout=15):
    """(status, body bytes) of one GET on a new connection."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ")
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"no response (the node went away?): {data[:80]!r}")
    return int(parts[1]), body


async def follow(client, transport, ports, topic, until, slow=False, hops=0, rng=None):
    """Subscribes `client` on `transport`, reconnecting `hops` times to random nodes (with its
    cursor), until `until()` says stop. `ports()` lists the nodes up now."""
    rng = rng or random.Random(0)
    hop_after = [rng.uniform(0.3, 2.5) for _ in range(hops)]
    while not until():
        port = rng.choice(ports())
        started = time.time()
        leave = hop_after.pop() if hop_after else None
        try:
            if transport == "websocket":
                async with websockets.connect(f"ws://127.0.0.1:{port}/deltacast/ws", subprotocols=["deltacast.v1"],
                                              open_timeout=5, close_timeout=1, max_queue=None) as socket_:
                    message = {"type": "subscribe", "topic": topic}
                    if client.cursor:
                        message["since"] = client.cursor
                    await socket_.send(json.dumps(message))
                    while not until() and (leave is None or time.time() - started < leave):
                        try:
                            raw = await asyncio.wait_for(socket_.recv(), 0.5)
                        except asyncio.TimeoutError:
                            continue
                        if slow:
                            await asyncio.sleep(0.05)
                        if not client.handle(json.loads(raw)):
                            return
            elif transport == "sse":
                target = f"/deltacast/sse?topic={topic}" + (f"&since={client.cursor}" if client.cursor else "")
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                try:
                    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
                    await writer.drain()
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    while not until() and (leave is None or time.time() - started < leave):
                        try:
                            block = await asyncio.wait_for(reader.readuntil(b"\n\n"), 0.5)
                        except asyncio.TimeoutError:
                            continue
                        data = [line[6:] for line in block.decode().split("\n") if line.startswith("data: ")]
                        if data:
                            if slow:
                                await asyncio.sleep(0.05)
                            if not client.handle(json.loads("\n".join(data))):
                                return
                finally:
                    writer.close()
            else:
                while not until() and (leave is None or time.time() - started < leave):
                    target = f"/deltacast/poll?topic={topic}&since={client.cursor or ''}&wait=1"
                    status, body = await http_get(port, target)
                    if status == 200:
                        for event in json.loads(body):
                            if not client.handle(event):
                                return
                    elif status != 204:
                        raise ConnectionError(f"poll answered {status}")
                    if slow:
                        await asyncio.sleep(0.1)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, websockets.exceptions.WebSocketException, ConnectionError):
            await asyncio.sleep(0.1)   # a node went away: the next loop picks another


class ClusterCase(unittest.TestCase):
    simulator = None

    @classmethod
    def setUpClass(cls):
        cls.simulator = Simulator()

    @classmethod
    def tearDownClass(cls):
        cls.simulator.stop()

    def setUp(self):
        self.redis = Redis()
        self.nodes = []
        for index in range(3):
            self.nodes.append(self.start_node(index))

    def start_node(self, index, extra=""):
        node = Proxy(node_config(self.simulator, self.redis, f"node{index + 1}", extra))
        node.name = f"node{index + 1}"
        return node

    def tearDown(self):
        for node in self.nodes:
            if node.process.poll() is None:
                try:
                    node.process.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
            node.stop()
        self.redis.close()

    @property
    def ports(self):
        return [node.port for node in self.nodes if node.process.poll() is None]

    def tag_keys(self, topic_key):
        import hashlib
        tag = hashlib.sha1(topic_key.encode()).hexdigest()[:16]
        return {name: f"deltacast:{{{tag}}}:{name}" for name in ("meta", "log", "doc", "owner")}

    def tag_keys_tag(self, topic_key):
        import hashlib
        return hashlib.sha1(topic_key.encode()).hexdigest()[:16]

    def leader(self, topic):
        """The node whose incarnation owns `topic` now, if it is alive."""
        owner = self.redis.command("GET", self.tag_keys(topic)["owner"])
        if not isinstance(owner, str) or " " not in owner:
            return None
        name, incarnation = owner.split(" ", 1)
        if self.redis.command("GET", f"deltacast:{{nodes}}:member:{name}") != incarnation:
            return None
        return next((node for node in self.nodes if node.name == name), None)

    def wait(self, condition, seconds=15, message="condition"):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if condition():
                return
            time.sleep(0.05)
        self.fail(f"{message} did not hold within {seconds} s")

    def event_streams(self, path):
        """An event stream of `path` on every node (raw sockets; the caller closes them)."""
        streams = []
        for node in self.nodes:
            stream = socket.create_connection(("127.0.0.1", node.port), timeout=10)
            stream.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n".encode())
            streams.append(stream)
        return streams

    def read_until(self, stream, received, needle):
        """Reads `stream` into `received` (a bytearray) until it holds `needle`."""
        while needle not in received:
            chunk = stream.recv(65536)
            self.assertTrue(chunk, "the stream ended")
            received += chunk

    def serve_once(self, config):
        """`deltacast serve` with `config` until it exits by itself (a node that cannot start)."""
        directory = tempfile.mkdtemp(prefix="deltacast-once-")
        path = os.path.join(directory, "node.yaml")
        with open(path, "w") as handle:
            handle.write(config)
        try:
            return subprocess.run([BINARY_PATH(), "serve", "-c", path], capture_output=True, text=True, timeout=60)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def metric(self, node, name):
        _, _, body = request(node.url("/metrics"))
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def run_clients(self, topic, path, versions, per_transport, hops=0, slow_every=0, during=None, pause=0.4, settle=20):
        """Runs clients while the upstream goes through `versions`; `during(i)` runs after the
        i-th version (faults). Returns the clients once every one converged (or the time ran out)."""
        final = document(versions[-1])
        clients, tasks = [], []
        finished = {"done": False}

        async def main():
            rng = random.Random(42)
            for transport in ("websocket", "sse", "longpoll"):
                for index in range(per_transport):
                    client = Client(f"{transport}-{index}")
                    clients.append(client)
                    slow = slow_every and index % slow_every == 0
                    tasks.append(asyncio.ensure_future(follow(client, transport, lambda: self.ports, topic,
                                                              lambda c=client: finished["done"] or (c.state == final and feeding_done["done"]),
                                                              slow=slow, hops=hops, rng=random.Random(rng.random()))))
            feeding_done = {"done": False}
            await asyncio.sleep(1.0)
            for index, version in enumerate(versions):
                await asyncio.get_running_loop().run_in_executor(None, put, self.simulator, path, document(version))
                await asyncio.sleep(pause)
                if during:
                    await asyncio.get_running_loop().run_in_executor(None, during, index)
            feeding_done["done"] = True
            deadline = time.time() + settle
            while time.time() < deadline and any(client.state != final for client in clients):
                await asyncio.sleep(0.1)
            finished["done"] = True
            await asyncio.wait(tasks, timeout=10)

        asyncio.run(main())
        return clients, final

    def assert_converged(self, clients, final):
        problems = [error for client in clients for error in client.errors]
        self.assertEqual(problems, [], "\n".join(problems[:10]))
        behind = [f"{client.name} at {client.cursor}" for client in clients if client.state != final]
        self.assertEqual(behind, [], f"{len(behind)} clients did not reach the final state: {behind[:10]}")


class ClusterTests(ClusterCase):
    def test_1_every_client_converges_and_the_upstream_sees_one_poll_per_interval(self):
        """300 clients over three nodes and three transports, each hopping twice to a random node
        with its cursor, one in ten reading slowly, while the upstream changes 15 times."""
        put(self.simulator, "/doc/one", document(0))
        before = stats(self.simulator, "/doc/one")
        started = time.time()
        clients, final = self.run_clients("/doc/one", "/doc/one", list(range(1, 16)), per_transport=100, hops=2, slow_every=10)
        elapsed = time.time() - started
        self.assert_converged(clients, final)
        polls = stats(self.simulator, "/doc/one") - before
        # One poll per interval cluster-wide (a leader change may add one); three nodes each
        # polling would triple it.
        self.assertLessEqual(polls, elapsed / INTERVAL * 1.2 + 5, f"{polls} upstream requests in {elapsed:.1f} s")
        self.assertGreater(polls, elapsed / INTERVAL * 0.3, f"{polls} upstream requests in {elapsed:.1f} s")
        leaders = {node.name: self.metric(node, "deltacast_cluster_leases_held") for node in self.nodes}
        self.assertEqual(sum(leaders.values()), 1, leaders)
        print(f"\n  300 clients converged; {polls} upstream requests in {elapsed:.1f} s at {INTERVAL * 1000:.0f} ms; "
              f"{sum(c.snapshots for c in clients)} snapshots, {sum(c.patches for c in clients)} patches", file=sys.stderr)

    def test_2_a_killed_leader_is_replaced_and_no_change_is_lost_or_repeated(self):
        put(self.simulator, "/doc/two", document(0))
        killed = {}

        def kill_leader(index):
            if index == 3:
                leader = self.leader("/doc/two")
                self.assertIsNotNone(leader)
                killed["at"] = time.time()
                killed["name"] = leader.name
                leader.process.kill()
                leader.process.wait()

        clients, final = self.run_clients("/doc/two", "/doc/two", list(range(1, 13)), per_transport=10, hops=1, during=kill_leader)
        self.assert_converged(clients, final)
        new = self.leader("/doc/two")
        self.assertIsNotNone(new)
        self.assertNotEqual(new.name, killed["name"])
        # The journal's seqs are contiguous: nobody wrote a seq twice or skipped one.
        entries = self.redis.command("XRANGE", self.tag_keys("/doc/two")["log"], "-", "+")
        seqs = [int(entry[0].split("-")[0]) for entry in entries]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))

    def test_3_a_paused_leader_cannot_write_when_it_wakes(self):
        put(self.simulator, "/doc/three", document(0))
        keys = self.tag_keys("/doc/three")
        paused = {}

        def pause_leader(index):
            if index == 2:
                leader = self.leader("/doc/three")
                paused["node"] = leader
                paused["owner"] = self.redis.command("GET", keys["owner"])
                leader.process.send_signal(signal.SIGSTOP)
                # Past the lease: another node takes over and polls.
                self.wait(lambda: self.leader("/doc/three") not in (None, leader), 10, "a takeover")
            if index == 5:
                paused["node"].process.send_signal(signal.SIGCONT)

        clients, final = self.run_clients("/doc/three", "/doc/three", list(range(1, 10)), per_transport=8, during=pause_leader)
        self.assert_converged(clients, final)
        # Another incarnation owns it now (the paused one's membership lapsed; on waking it
        # rejoined as a new incarnation), and nobody wrote a seq twice.
        self.assertNotEqual(self.redis.command("GET", keys["owner"]), paused["owner"])
        self.assertGreaterEqual(self.metric(paused["node"], "deltacast_cluster_membership_lapses_total"), 1)
        entries = self.redis.command("XRANGE", keys["log"], "-", "+")
        seqs = [int(entry[0].split("-")[0]) for entry in entries]
        self.assertEqual(len(seqs), len(set(seqs)))
        # The fence itself: a commit as the paused incarnation is refused, and changes nothing.
        meta = self.redis.command("HGETALL", keys["meta"])
        script = self.redis.command("SCRIPT", "LOAD", COMMIT_PROBE)
        self.assertIsInstance(script, str)
        reply = self.redis.command("EVALSHA", script, 4, keys["meta"], keys["log"], keys["doc"], keys["owner"],
                                   paused["owner"], meta[1], meta[3], "{}", "{}", "application/json", 64, "x",
                                   "deltacast:commits", "deltacast:changes-log", "deltacast:changes", "PUBLISH", 1000)
        self.assertIsInstance(reply, RuntimeError)
        self.assertTrue(str(reply).startswith("FENCED"), reply)
        self.assertEqual(self.redis.command("HGETALL", keys["meta"]), meta)

    def test_4_redis_restarted_or_flushed_gets_new_epochs_and_delivery_resumes(self):
        put(self.simulator, "/doc/four", document(0))
        epochs = set()

        def fault(index):
            cursor = self.redis.command("HGET", self.tag_keys("/doc/four")["meta"], "epoch")
            epochs.add(cursor)
            if index == 2:
                self.redis.stop()
                self.redis.start()
            if index == 6:
                self.redis.command("FLUSHALL")

        clients, final = self.run_clients("/doc/four", "/doc/four", list(range(1, 11)), per_transport=8, during=fault, pause=0.8)
        self.assert_converged(clients, final)
        epochs.add(self.redis.command("HGET", self.tag_keys("/doc/four")["meta"], "epoch"))
        epochs.discard(None)
        self.assertGreaterEqual(len(epochs), 3, f"epochs seen: {epochs}")
        self.assertTrue(all(client.snapshots >= 2 for client in clients), [client.snapshots for client in clients])
        loads = sum(self.metric(node, "deltacast_cluster_script_loads_total") for node in self.nodes)
        self.assertLessEqual(loads, 3 * 4 * 3, "scripts are run by their SHA-1, loaded once per Redis start")

    def test_5_a_seq_rolled_back_rotates_the_epoch_and_no_seq_is_reused(self):
        put(self.simulator, "/doc/five", document(0))
        keys = self.tag_keys("/doc/five")
        rolled = {}

        def roll_back(index):
            if index == 3:
                seq = int(self.redis.command("HGET", keys["meta"], "seq"))
                rolled["epoch"] = self.redis.command("HGET", keys["meta"], "epoch")
                rolled["seq"] = seq
                self.redis.command("HSET", keys["meta"], "seq", seq - 2)

        clients, final = self.run_clients("/doc/five", "/doc/five", list(range(1, 9)), per_transport=8, during=roll_back, pause=0.6)
        self.assert_converged(clients, final)
        self.assertNotEqual(self.redis.command("HGET", keys["meta"], "epoch"), rolled["epoch"])
        rotations = sum(self.metric(node, "deltacast_cluster_epoch_rotations_total") for node in self.nodes)
        self.assertGreaterEqual(rotations, 1)

    def test_6_a_killed_pubsub_connection_is_noticed_and_the_gap_filled(self):
        put(self.simulator, "/doc/six", document(0))

        def kill_pubsub(index):
            if index in (2, 5):
                self.redis.command("CLIENT", "KILL", "TYPE", "pubsub")

        clients, final = self.run_clients("/doc/six", "/doc/six", list(range(1, 9)), per_transport=8, during=kill_pubsub)
        self.assert_converged(clients, final)

    def test_6_a_lost_wake_up_is_found_in_the_changes_stream_within_a_tick(self):
        """A commit whose PUB/SUB message never arrives (announced on a channel nobody hears):
        every node finds it in the changes stream it reads each tick, with no per-topic read."""
        status, _, body = self.nodes[0].publish("/live/lost", {"n": 0})
        self.assertEqual(status, 200, body)
        cursor = json.loads(body)["cursor"]
        epoch, seq = cursor.rsplit("-", 1)
        streams = self.event_streams("/live/lost")
        try:
            for node in self.nodes:
                self.wait(lambda node=node: json.loads(request(node.url("/live/lost"))[2]) == {"n": 0}, 10, f"{node.name} holding /live/lost")
            keys = self.tag_keys("/live/lost")
            new = f"{epoch}-{int(seq) + 1}"
            event = json.dumps({"type": "snapshot", "topic": "/live/lost", "cursor": new, "data": {"n": 1}}, separators=(",", ":"))
            script = self.redis.command("SCRIPT", "LOAD", COMMIT_PROBE)
            reply = self.redis.command("EVALSHA", script, 4, keys["meta"], keys["log"], keys["doc"], keys["owner"],
                                       "", epoch, seq, event, '{"n":1}', "application/json", 64, self.tag_keys_tag("/live/lost"),
                                       "deltacast:commits", "deltacast:changes-log", "deltacast:nowhere", "PUBLISH", 1000)
            self.assertEqual(reply, int(seq) + 1)
            for node in self.nodes:
                self.wait(lambda node=node: request(node.url("/live/lost"))[1]["ETag"] == f'"{new}"', 5, f"{node.name} finding {new}")
                self.assertEqual(json.loads(request(node.url("/live/lost"))[2]), {"n": 1})
            for stream in streams:
                self.read_until(stream, bytearray(), f'"cursor":"{new}"'.encode())
            # More changes than the stream kept (trimmed before any node read them): each node
            # notices the counter ran past what it could read, and re-reads every topic.
            self.assertEqual(sum(self.metric(node, "deltacast_cluster_changes_resyncs_total") for node in self.nodes), 0)
            self.redis.command("XTRIM", "deltacast:changes-log", "MAXLEN", 0)
            self.redis.command("INCRBY", "deltacast:commits", 5)
            newer = f"{epoch}-{int(seq) + 2}"
            event = json.dumps({"type": "snapshot", "topic": "/live/lost", "cursor": newer, "data": {"n": 2}}, separators=(",", ":"))
            reply = self.redis.command("EVALSHA", script, 4, keys["meta"], keys["log"], keys["doc"], keys["owner"],
                                       "", epoch, int(seq) + 1, event, '{"n":2}', "application/json", 64, self.tag_keys_tag("/live/lost"),
                                       "deltacast:commits", "deltacast:changes-log", "deltacast:nowhere", "PUBLISH", 1000)
            self.assertEqual(reply, int(seq) + 2)
            for node in self.nodes:
                self.wait(lambda node=node: self.metric(node, "deltacast_cluster_changes_resyncs_total") >= 1, 5, f"{node.name} re-reading")
                self.wait(lambda node=node: json.loads(request(node.url("/live/lost"))[2]) == {"n": 2}, 5, f"{node.name} finding {newer}")
        finally:
            for stream in streams:
                stream.close()

    def test_6_an_upstream_failure_and_its_recovery_reach_subscribers_on_every_node(self):
        put(self.simulator, "/doc/failing", document(0))
        streams = self.event_streams("/doc/failing")
        try:
            received = [bytearray() for _ in streams]
            for stream, buffer in zip(streams, received):
                self.read_until(stream, buffer, b'"type":"snapshot"')
            request(f"{self.simulator.url}/_sim/fail/doc/failing?mode=status&status=503", method="POST")
            for stream, buffer in zip(streams, received):
                self.read_until(stream, buffer, b'"upstream":"error","http":503')
            # A plain GET on any node says the state is stale.
            for node in self.nodes:
                status, headers, _ = request(node.url("/doc/failing"))
                self.assertEqual((status, headers.get("Deltacast-Stale")), (200, "true"), node.name)
            request(f"{self.simulator.url}/_sim/fail/doc/failing", method="DELETE")
            for stream, buffer in zip(streams, received):
                self.read_until(stream, buffer, b'"upstream":"ok"')
        finally:
            for stream in streams:
                stream.close()

    def test_7_redis_down_degrades_and_recovery_brings_everyone_to_the_final_state(self):
        put(self.simulator, "/doc/seven", document(0))
        seen = {}

        def outage(index):
            if index == 2:
                self.redis.stop()
                self.wait(lambda: all(json.loads(request(node.url("/readyz"))[2]).get("status") == "degraded" for node in self.nodes),
                          10, "/readyz degraded on every node")
                seen["ready"] = [request(node.url("/readyz"))[0] for node in self.nodes]
            if index == 5:
                self.redis.start()

        clients, final = self.run_clients("/doc/seven", "/doc/seven", list(range(1, 9)), per_transport=8, during=outage, pause=0.6)
        self.assert_converged(clients, final)
        self.assertEqual(seen["ready"], [200, 200, 200])   # still serving what it holds
        streaming = [client for client in clients if not client.name.startswith("longpoll")]
        told = [client for client in streaming if any(status.get("cluster") == "unavailable" for status in client.statuses)]
        self.assertGreaterEqual(len(told), len(streaming) // 2, "subscribers are told once when Redis is unreachable")

    def test_8_odd_cursors_on_another_node_get_one_snapshot(self):
        put(self.simulator, "/doc/eight", document(0))
        for version in range(1, 5):
            put(self.simulator, "/doc/eight", document(version))
            self.wait(lambda: json.loads(request(self.nodes[0].url("/doc/eight"))[2]) == document(version), 10, f"version {version}")
        cursor = request(self.nodes[0].url("/doc/eight"))[1]["ETag"].strip('"')
        epoch, seq = cursor.rsplit("-", 1)
        behind = f"{epoch}-{int(seq) - 2}"
        # Only node1 has followed the topic; the shared journal now keeps one entry.
        self.redis.command("XTRIM", self.tag_keys("/doc/eight")["log"], "MAXLEN", 1)

        def poll(node, since):
            status, body = asyncio.run(http_get(node.port, f"/deltacast/poll?topic=/doc/eight&since={since}&wait=0"))
            self.assertEqual(status, 200)
            return [(event["type"], event["cursor"]) for event in json.loads(body)]

        # Node 1's own journal still covers the cursor: exactly the two missed patches.
        self.assertEqual(poll(self.nodes[0], behind), [("patch", f"{epoch}-{int(seq) - 1}"), ("patch", cursor)])
        # Nodes 2 and 3 meet the topic now; the shared journal no longer covers it: one snapshot.
        for node in self.nodes[1:]:
            self.assertEqual(poll(node, behind), [("snapshot", cursor)], "trimmed")
        for since, why in [(f"{epoch}-{int(seq) + 50}", "future"), (f"zzzz9999-{seq}", "foreign epoch")]:
            for node in self.nodes:
                self.assertEqual(poll(node, since), [("snapshot", cursor)], why)

    def test_9_a_long_poller_alternating_between_nodes_sees_every_change_once_in_order(self):
        put(self.simulator, "/doc/nine", document(0))
        client = Client("alternating")

        async def main():
            index = 0
            deadline = time.time() + 30
            versions = iter(range(1, 11))
            version = 0
            while time.time() < deadline:
                port = self.ports[index % 3]
                index += 1
                status, body = await http_get(port, f"/deltacast/poll?topic=/doc/nine&since={client.cursor or ''}&wait=1")
                if status == 200:
                    for event in json.loads(body):
                        self.assertTrue(client.handle(event), client.errors)
                if client.state == document(version):
                    nxt = next(versions, None)
                    if nxt is None:
                        return
                    version = nxt
                    put(self.simulator, "/doc/nine", document(version))

        asyncio.run(main())
        self.assertEqual(client.errors, [])
        self.assertEqual(client.state, document(10))
        self.assertEqual(client.snapshots, 1)
        self.assertEqual(client.patches, 10)

    def test_9_a_ticket_from_one_node_works_once_on_another(self):
        status, _, body = request(self.nodes[0].url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {API_KEY}"})
        self.assertEqual(status, 200, body)
        ticket = json.loads(body)["ticket"]
        self.nodes[2].publish("/secure/a", {"n": 1})
        status, _, body = request(self.nodes[1].url(f"/secure/a?ticket={ticket}"))
        self.assertEqual((status, json.loads(body)), (200, {"n": 1}))
        status, headers, body = request(self.nodes[2].url(f"/secure/a?ticket={ticket}"))
        self.assertEqual(status, 401, body)
        self.assertIn("unknown, used or expired ticket", json.loads(body)["message"])
        status, _, _ = request(self.nodes[0].url(f"/secure/a?ticket={ticket}"))
        self.assertEqual(status, 401)

    def test_9_one_credential_is_one_topic_on_every_node_and_never_stored(self):
        for token in ("tok-alice-7f3a", "tok-bob-91c2"):
            for node in self.nodes:
                status, _, body = request(node.url("/me"), headers={"Authorization": f"Bearer {token}"})
                self.assertEqual((status, json.loads(body)["token"]), (200, token))
        self.wait(lambda: len(self.redis.command("KEYS", "deltacast:*:owner")) == 2, 10, "an owner for each credential's topic")
        owners = self.redis.command("KEYS", "deltacast:*:owner")
        self.assertEqual(len(owners), 2, owners)   # two credentials, two topics, shared by three nodes
        for key in self.redis.command("KEYS", "*"):
            kind = self.redis.command("TYPE", key)
            values = {"string": lambda: [self.redis.command("GET", key)], "hash": lambda: self.redis.command("HGETALL", key),
                      "stream": lambda: [str(entry) for entry in self.redis.command("XRANGE", key, "-", "+")]}.get(kind, lambda: [])()
            for value in values:
                self.assertNotIn("Bearer tok-", str(value), f"{key} holds a credential")

    def test_10_a_rolling_restart_loses_no_change(self):
        put(self.simulator, "/doc/ten", document(0))

        def restart(index):
            if index < 3:
                node = self.nodes[index]
                node.stop()
                self.nodes[index] = self.start_node(index)

        clients, final = self.run_clients("/doc/ten", "/doc/ten", list(range(1, 10)), per_transport=10, hops=3, during=restart, pause=0.5)
        self.assert_converged(clients, final)

    def test_15_the_request_budget_holds_cluster_wide(self):
        """`budget: 30/s` on three nodes: each spends a third. 150 watched topics polled every
        300 ms want 500 requests/s; the upstream gets at most 30 a second and each node's burst."""
        for node in self.nodes:
            node.stop()
        budgeted = node_config(self.simulator, self.redis, "x").replace("timeout: 1s }", "timeout: 1s, budget: 30/s }")
        self.nodes = []
        for index in range(3):
            node = Proxy(budgeted.replace("node: x,", f"node: node{index + 1},"))
            node.name = f"node{index + 1}"
            self.nodes.append(node)
        self.wait(lambda: all(json.loads(request(node.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}"})[2])["cluster"]["nodes"]
                              == ["node1", "node2", "node3"] for node in self.nodes), 10, "three live nodes")
        for n in range(150):
            put(self.simulator, f"/doc/budget{n}", {"n": n})

        # Each node watches a third of them (one event stream of 50 topics).
        streams = []
        try:
            for index, node in enumerate(self.nodes):
                topics = "&".join(f"topic=/doc/budget{n}" for n in range(index, 150, 3))
                stream = socket.create_connection(("127.0.0.1", node.port), timeout=30)
                stream.sendall(f"GET /deltacast/sse?{topics} HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n".encode())
                streams.append(stream)
            for stream in streams:
                received = bytearray()
                while received.count(b'"type":"snapshot"') < 50:
                    chunk = stream.recv(65536)
                    self.assertTrue(chunk, "the stream ended")
                    received += chunk
            time.sleep(12)
            _, _, body = request(f"{self.simulator.url}/_sim/windows")
            windows = json.loads(body)["windows"][-10:]
        finally:
            for stream in streams:
                stream.close()
        self.assertLessEqual(max(windows), 30 + 3, windows)
        self.assertGreaterEqual(sorted(windows)[5], 24, f"the budget was not used: {windows}")
        for node in self.nodes:
            status = json.loads(request(node.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}"})[2])
            self.assertEqual([budget["allowed_per_s"] for budget in status["budgets"]], [10.0])

    def test_13_leadership_spreads_over_the_nodes(self):
        # Once the nodes know each other (a tick), rendezvous hashing spreads 30 topics.
        def knows_all(node):
            _, _, body = request(node.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}"})
            return json.loads(body)["cluster"]["nodes"] == ["node1", "node2", "node3"]

        self.wait(lambda: all(knows_all(node) for node in self.nodes), 10, "every node knowing the three")
        # Every node watches every topic (an event stream each), so each topic ends with the node
        # rendezvous hashing prefers, whichever node met it first.
        streams = []
        try:
            for index in range(30):
                put(self.simulator, f"/doc/spread{index}", document(0))
                streams += self.event_streams(f"/doc/spread{index}")

            def spread():
                leaders = [self.leader(f"/doc/spread{index}") for index in range(30)]
                if not all(leaders):
                    return None
                counts = {node.name: 0 for node in self.nodes}
                for leader in leaders:
                    counts[leader.name] += 1
                return counts if all(count >= 3 for count in counts.values()) else None

            self.wait(spread, 15, "a leader for every topic, spread over the three nodes")
            led = spread()
        finally:
            for stream in streams:
                stream.close()
        self.assertTrue(all(count >= 3 for count in led.values()), led)

    def test_14_a_node_that_cannot_reach_redis_at_start_says_so_and_exits(self):
        absent = free_port()   # nothing listens there
        run = self.serve_once(node_config(self.simulator, self.redis, "lonely").replace(f"127.0.0.1:{self.redis.port}", f"127.0.0.1:{absent}"))
        self.assertEqual(run.returncode, 1)
        self.assertIn(f"cannot reach Redis at redis://127.0.0.1:{absent}/0 within 10 s", run.stderr)

    def test_14_a_node_whose_redis_password_is_refused_says_so_and_exits(self):
        self.redis.command("CONFIG", "SET", "requirepass", "the-right-password-0123")
        run = self.serve_once(node_config(self.simulator, self.redis, "refused").replace(
            f"redis://127.0.0.1:{self.redis.port}/0", f"redis://:a-wrong-password@127.0.0.1:{self.redis.port}/0"))
        self.assertEqual(run.returncode, 1)
        self.assertIn(f"cannot reach Redis at redis://:***@127.0.0.1:{self.redis.port}/0 within 10 s: redis unavailable: AUTH refused", run.stderr)

    def test_12_the_status_page_shows_the_nodes_and_who_leads_each_topic(self):
        put(self.simulator, "/doc/twelve", document(0))
        for node in self.nodes:
            self.assertEqual(request(node.url("/doc/twelve"))[0], 200)
        self.wait(lambda: self.leader("/doc/twelve") is not None, 10, "a leader")

        def status(node):
            _, _, body = request(node.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}"})
            return json.loads(body)["cluster"]

        def every_view_names_the_leader():
            leader = self.leader("/doc/twelve")
            return leader is not None and all(status(node)["nodes"] == ["node1", "node2", "node3"] and
                                              {"topic": "/doc/twelve", "node": leader.name} in status(node)["leaders"] for node in self.nodes)

        # The preferred node may take the topic over meanwhile: every view follows within ticks.
        self.wait(every_view_names_the_leader, 10, "every node's view")
        self.assertEqual([status(node)["node"] for node in self.nodes], ["node1", "node2", "node3"])
        self.assertTrue(all(status(node)["redis"] == "up" for node in self.nodes))
        # Per node: what it owns (the leader one topic, the others none), its Redis traffic (the
        # ticks: a few commands a second), and the shard map (one Redis, every slot).
        self.wait(lambda: all(status(node)["redis_commands_per_second"] > 0 for node in self.nodes), 10, "a command rate")

        def owned_by_the_leader():
            leader = self.leader("/doc/twelve")
            owned = {node.name: status(node)["owned"] for node in self.nodes}
            return leader is not None and owned == {node.name: int(node.name == leader.name) for node in self.nodes}

        self.wait(owned_by_the_leader, 10, "the leader, and only it, owning the topic")
        leader = self.leader("/doc/twelve").name
        self.assertEqual(status(self.nodes[0])["shards"], [{"address": f"127.0.0.1:{self.redis.port}", "slots": "0-16383"}])
        leading = next(node for node in self.nodes if node.name == leader)
        top = subprocess.run([BINARY_PATH(), "top", f"http://127.0.0.1:{leading.port}", "--token", ADMIN, "--once"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(top.returncode, 0, top.stderr)
        self.assertRegex(top.stdout, rf"topics owned 1\s+Redis commands/s \d+\s+shards 127\.0\.0\.1:{self.redis.port} \(slots 0-16383\)")
        self.assertIn(f"led by {leader}", top.stdout)

    def test_11_publish_on_any_node_reaches_every_node(self):
        results = []
        for index, node in enumerate(self.nodes * 2):
            status, _, body = node.publish("/live/a", {"n": index})
            self.assertEqual(status, 200, body)
            results.append(json.loads(body)["cursor"])
        seqs = [int(cursor.rsplit("-", 1)[1]) for cursor in results]
        self.assertEqual(seqs, list(range(1, 7)))
        for node in self.nodes:
            status, headers, body = request(node.url("/live/a"))
            self.assertEqual((status, json.loads(body), headers["ETag"]), (200, {"n": 5}, f'"{results[-1]}"'))


class RedisStoppedTests(ClusterCase):
    """No event loop waits for Redis: with Redis stopped (SIGSTOP: a fork's pause, a failover),
    one node on one event loop keeps answering what it holds while new subscribers, a publish
    and a ticket wait for Redis; once Redis runs again, each of them gets its answer."""

    def test_a_stopped_redis_stops_no_one_else_on_the_loop(self):
        node = self.nodes[0]
        put(self.simulator, "/doc/held", document(0))
        self.assertEqual(request(node.url("/doc/held"))[0], 200)
        cold = [f"/doc/cold{index}" for index in range(10)]
        for index, path in enumerate(cold):
            put(self.simulator, path, document(index + 1))
        latencies = {"/healthz": [], "/doc/held": []}
        snapshots = {}
        answers = {}
        stopped_for = 5.0

        async def probe(until):
            while time.time() < until:
                for target in latencies:
                    started = time.time()
                    status, _ = await http_get(node.port, target, timeout=10)
                    latencies[target].append((time.time() - started, status))
                await asyncio.sleep(0.05)

        async def sse(path):
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            while True:
                block = await reader.readuntil(b"\n\n")
                data = [line[6:] for line in block.decode().split("\n") if line.startswith("data: ")]
                if data and json.loads("\n".join(data)).get("type") == "snapshot":
                    snapshots[path] = json.loads("\n".join(data))["data"]
                    writer.close()
                    return

        async def websocket(path):
            async with websockets.connect(f"ws://127.0.0.1:{node.port}/deltacast/ws", subprotocols=["deltacast.v1"]) as connection:
                await connection.send(json.dumps({"type": "subscribe", "topic": path}))
                while True:
                    event = json.loads(await connection.recv())
                    if event.get("type") == "snapshot":
                        snapshots[path] = event["data"]
                        return

        async def long_poll(path):
            while True:
                status, body = await http_get(node.port, f"/deltacast/poll?topic={path}&wait=25", timeout=30)
                events = json.loads(body) if status == 200 else []
                for event in events:
                    if event.get("type") == "snapshot":
                        snapshots[path] = event["data"]
                        return

        def publish():
            answers["publish"] = node.publish("/live/stopped", {"n": 1})

        def ticket():
            answers["ticket"] = request(node.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {API_KEY}"})

        async def main():
            loop = asyncio.get_running_loop()
            self.redis.process.send_signal(signal.SIGSTOP)
            stopped = time.time()
            try:
                prober = asyncio.ensure_future(probe(stopped + stopped_for))
                kinds = [sse] * 4 + [websocket] * 3 + [long_poll] * 3
                subscribers = [asyncio.ensure_future(kind(path)) for kind, path in zip(kinds, cold)]
                writes = [loop.run_in_executor(None, publish), loop.run_in_executor(None, ticket)]
                await prober
            finally:
                self.redis.process.send_signal(signal.SIGCONT)
            await asyncio.wait_for(asyncio.gather(*subscribers, *writes), 30)

        asyncio.run(main())
        for target, seen in latencies.items():
            self.assertGreater(len(seen), 20, target)
            self.assertEqual({status for _, status in seen}, {200}, target)
            slowest = max(seconds for seconds, _ in seen)
            self.assertLess(slowest, 0.5, f"{target} took {slowest * 1000:.0f} ms while Redis was stopped")
        for index, path in enumerate(cold):
            self.assertEqual(snapshots.get(path), document(index + 1), path)
        # The publish and the ticket were answered when Redis was: committed or stored, or a
        # clear 503 once the command timeout passed (nothing half done).
        status, _, body = answers["publish"]
        self.assertIn(status, (200, 503), body)
        if status == 503:
            self.assertEqual(json.loads(body)["error"], "unavailable", body)
            status, _, body = node.publish("/live/stopped", {"n": 1})
            self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(request(node.url("/live/stopped"))[2]), {"n": 1})
        status, _, body = answers["ticket"]
        self.assertIn(status, (200, 503), body)
        if status == 200:
            ticket = json.loads(body)["ticket"]
            self.nodes[1].publish("/secure/stopped", {"n": 2})
            self.assertEqual(request(self.nodes[1].url(f"/secure/stopped?ticket={ticket}"))[0], 200)
        else:
            self.assertEqual(json.loads(body)["error"], "unavailable", body)
        print(f"\n  Redis stopped {stopped_for:.0f} s: slowest /healthz {max(s for s, _ in latencies['/healthz']) * 1000:.0f} ms, "
              f"GET of a held topic {max(s for s, _ in latencies['/doc/held']) * 1000:.0f} ms; publish {answers['publish'][0]}, "
              f"ticket {answers['ticket'][0]}", file=sys.stderr)


    def test_commits_waiting_for_one_topic_are_bounded(self):
        """Past 64 commits waiting for Redis on one topic, a publish is refused at once (503)
        rather than queued without bound; every publish gets an answer."""
        node = self.nodes[0]
        self.assertEqual(node.publish("/live/queue", {"n": -1})[0], 200)
        answers = []
        lock = threading.Lock()

        def publish(index):
            started = time.time()
            status, _, body = node.publish("/live/queue", {"n": index})
            with lock:
                answers.append((status, json.loads(body), time.time() - started))

        self.redis.process.send_signal(signal.SIGSTOP)
        try:
            threads = [threading.Thread(target=publish, args=(index,)) for index in range(80)]
            for thread in threads:
                thread.start()
            self.wait(lambda: sum(1 for status, body, _ in answers if "already wait" in body.get("message", "")) >= 16, 10,
                      "publishes past the bound refused while Redis is stopped")
        finally:
            self.redis.process.send_signal(signal.SIGCONT)
        for thread in threads:
            thread.join(30)
        self.assertEqual(len(answers), 80)
        refused = [body for status, body, _ in answers if status == 503 and "64 commits of this topic already wait for Redis" in body["message"]]
        self.assertEqual(len(refused), 80 - 64, [body for _, body, _ in answers][:5])
        self.assertTrue(all(status in (200, 503) for status, _, _ in answers), answers)


class ExampleClusterTests(unittest.TestCase):
    """examples/cluster as shipped (only addresses changed): three nodes behind the real nginx
    with examples/cluster/nginx.conf, round robin, no stickiness. A long-poller whose every
    request lands on the next node, an SSE stream and a WebSocket all see every change of the
    simulator's /api/prices once, in order."""

    def setUp(self):
        root = os.path.join(os.path.dirname(__file__), "..", "..")
        self.redis = Redis()
        self.simulator_port = free_port()
        self.simulator = subprocess.Popen([BINARY_PATH(), "simulate", "--listen", f"127.0.0.1:{self.simulator_port}"],
                                          stdout=subprocess.PIPE, text=True)
        self.simulator.stdout.readline()
        self.directory = tempfile.mkdtemp(prefix="deltacast-cluster-example-")
        self.ports = [free_port() for _ in range(3)]
        self.nodes = []
        for index, port in enumerate(self.ports):
            with open(os.path.join(root, "examples", "cluster", f"node{index + 1}.yaml")) as handle:
                text = handle.read()
            for old, new in ((f"127.0.0.1:808{index + 1}", f"127.0.0.1:{port}"), ("127.0.0.1:9000", f"127.0.0.1:{self.simulator_port}"),
                             ("127.0.0.1:6379", f"127.0.0.1:{self.redis.port}")):
                self.assertIn(old, text, "examples/cluster no longer has the lines this test adapts")
                text = text.replace(old, new)
            self.nodes.append(Proxy(text, env={"DELTACAST_ADMIN_TOKEN": "example-admin-token-0123456789"}))
        self.front = free_port()
        with open(os.path.join(root, "examples", "cluster", "nginx.conf")) as handle:
            conf = handle.read()
        for index, port in enumerate(self.ports):
            conf = conf.replace(f"server 127.0.0.1:808{index + 1} ", f"server 127.0.0.1:{port} ")
        conf = conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.front};")
        with open(os.path.join(self.directory, "cluster.conf"), "w") as handle:
            handle.write(conf)
        d = self.directory
        with open(os.path.join(d, "nginx.conf"), "w") as handle:
            handle.write(f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client-body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/cluster.conf;
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        user = ["-g", "user root;"] if os.getuid() == 0 else []
        subprocess.run([nginx, "-t", "-q", "-c", f"{d}/nginx.conf", "-p", d] + user, check=True)
        subprocess.run([nginx, "-c", f"{d}/nginx.conf", "-p", d] + user, check=True)
        deadline = time.time() + 10
        while time.time() < deadline and request(f"http://127.0.0.1:{self.front}/healthz")[0] != 200:
            time.sleep(0.05)

    def tearDown(self):
        try:
            with open(os.path.join(self.directory, "nginx.pid")) as handle:
                os.kill(int(handle.read().strip()), signal.SIGQUIT)
        except (OSError, ValueError):
            pass
        for node in self.nodes:
            node.stop()
        self.simulator.terminate()
        self.simulator.wait(10)
        self.simulator.stdout.close()
        self.redis.close()

    def test_clients_behind_round_robin_see_every_change_once_in_order(self):
        front = self.front
        poller, stream, socket_client = Client("longpoll"), Client("sse"), Client("websocket")

        async def long_poll():
            while poller.patches < 4:
                status, body = await http_get(front, f"/deltacast/poll?topic=/api/prices&since={poller.cursor or ''}&wait=5")
                if status == 200:
                    for event in json.loads(body):
                        self.assertTrue(poller.handle(event), poller.errors)

        async def sse():
            reader, writer = await asyncio.open_connection("127.0.0.1", front)
            writer.write(b"GET /api/prices HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            while stream.patches < 4:
                block = await reader.readuntil(b"\n\n")
                data = [line[6:] for line in block.decode().split("\n") if line.startswith("data: ")]
                if data:
                    self.assertTrue(stream.handle(json.loads("\n".join(data))), stream.errors)
            writer.close()

        async def websocket():
            async with websockets.connect(f"ws://127.0.0.1:{front}/api/prices") as connection:
                while socket_client.patches < 4:
                    self.assertTrue(socket_client.handle(json.loads(await connection.recv())), socket_client.errors)

        async def main():
            await asyncio.wait_for(asyncio.gather(long_poll(), sse(), websocket()), 60)

        asyncio.run(main())
        for client in (poller, stream, socket_client):
            self.assertEqual(client.errors, [])
            self.assertGreaterEqual(client.patches, 4)
        # The long-poller's requests went round the nodes: each one answered some.
        answered = []
        for node in self.nodes:
            _, _, body = request(node.url("/metrics"))
            line = next(line for line in body.decode().splitlines() if line.startswith('deltacast_deliveries_total{transport="longpoll"}'))
            answered.append(float(line.rsplit(" ", 1)[1]))
        self.assertTrue(all(count > 0 for count in answered), answered)


def BINARY_PATH():
    return os.environ.get("DELTACAST_BIN", ".build/debug/deltacast")


# The commit script as the nodes load it (the text must match ClusterScripts.swift's; its
# FENCED check is what this suite probes directly).
COMMIT_PROBE = None


def _load_commit_source():
    """The shard prologue (its argument numbers filled in) followed by the commit script."""
    import re
    path = os.path.join(os.path.dirname(__file__), "..", "..", "Sources", "DeltacastCluster", "ClusterScripts.swift")
    with open(path) as handle:
        text = handle.read()

    def literal(marker):
        start = text.index('"""', text.index(marker)) + 3
        body = text[start:text.index('"""', start)]
        return [line[8:] if line.startswith("        ") else line for line in body.strip("\n").split("\n")]

    first = int(re.search(r"static let commitSource = shardPrologue\(at: (\d+)\)", text).group(1))
    prologue = "\n".join(literal("static func shardPrologue")) + "\n\n"
    prologue = re.sub(r"\\\(first(?: \+ (\d+))?\)", lambda m: str(first + int(m.group(1) or 0)), prologue)
    return prologue + "\n".join(literal("static let commitSource"))


COMMIT_PROBE = _load_commit_source()

if __name__ == "__main__":
    unittest.main(verbosity=2)
