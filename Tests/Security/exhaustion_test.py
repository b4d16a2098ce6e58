#!/usr/bin/env python3
"""Hostile networks at scale, against a real `deltacast serve` on loopback:

- tens of thousands of connections that connect and go (closed, reset, cut mid-request,
  cut after the upgrade or the subscription);
- clients whose TCP window stays at zero while their topic changes 100 times a second;
- a thousand such clients at once, with the proxy's RSS sampled every second.

Each one shows what a user would notice: descriptors and connections come back, memory stays
flat and bounded by `limits.send_buffer`, the well-behaved subscriber beside them gets every
change in order, and a client that starts reading again converges on the newest state.

The durations are environment knobs (defaults sized for CI); `examples/soak/hostile.sh` runs
the same tests for minutes and with more connections, and prints the figures the README shows.
Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Security/exhaustion_test.py
"""
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Interop"))
from harness import ADMIN, SSE, Proxy, request, sse_block  # noqa: E402
from push_clients import apply_patch  # noqa: E402

CONNECT_LOOP = int(os.environ.get("DELTACAST_CONNECT_LOOP", "30000"))
ZERO_WINDOW_SECONDS = float(os.environ.get("DELTACAST_ZERO_WINDOW_SECONDS", "20"))
NEVER_READING = int(os.environ.get("DELTACAST_NEVER_READING", "1000"))
NEVER_READING_SECONDS = float(os.environ.get("DELTACAST_NEVER_READING_SECONDS", "20"))
SEND_BUFFER = 256 * 1024
CHANGES_PER_SECOND = 100
PAD = 4000

# Clients that never read cannot answer pings or make write progress: by default the proxy
# closes such a WebSocket after two missed pongs and any stream after `slow_consumer_timeout`
# (TransportTests). Both are an hour here, so the memory they hold can be watched for minutes;
# so is the header timeout, so a connection left with half a request is seen closed by its FIN.
CONFIG = f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN}, listen: 127.0.0.1:0 }}
server: {{ websocket_ping: 1h, header_timeout: 1h }}
limits:
  max_connections_per_ip: 5000
  send_buffer: 256KiB
  slow_consumer_timeout: 1h
  publish_rate: 1000/s
endpoints:
  - path: /rooms/{{room}}
    source: publish
"""
WS_UPGRADE = (b"GET /deltacast/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Protocol: deltacast.v1\r\n\r\n")


def masked_text(text):
    """A client text frame (mask key zero: the XOR leaves the payload as it is)."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as handle:
        return int(next(line.split()[1] for line in handle if line.startswith("VmRSS:"))) / 1024


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def zero_window_socket(port):
    """A connection whose receive buffer is as small as Linux allows, set before the handshake
    so the window it advertises stays tiny; it is never read after the response head."""
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    connection.settimeout(10)
    connection.connect(("127.0.0.1", port))
    return connection


def document(number, pad=1000):
    # A different pad every change, so each patch is about `pad` bytes, and a fixed part that
    # keeps the patch smaller than the document (else the proxy sends a snapshot instead).
    return {"n": number, "pad": format(number, "x") * (pad // len(format(number, "x"))), "fixed": "f" * (2 * pad)}


class Publisher(threading.Thread):
    """Publishes `document(n)` to a topic `rate` times a second over one keep-alive admin
    connection, until stopped or refused; `count` is the last number the proxy accepted."""

    def __init__(self, proxy, topic, rate, pad=1000):
        super().__init__(daemon=True)
        self.proxy, self.topic, self.rate, self.pad = proxy, topic, rate, pad
        self.count = 0
        self.failures = []
        self.halt = threading.Event()

    def run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy.admin_port, timeout=10)
        started = time.monotonic()
        while not self.halt.is_set():
            try:
                connection.request("POST", f"/deltacast/publish?topic={self.topic}",
                                   json.dumps(document(self.count + 1, self.pad)), {"Authorization": f"Bearer {ADMIN}"})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
                break
            if response.status != 200:
                self.failures.append(response.status)
                break
            self.count += 1
            delay = started + self.count / self.rate - time.monotonic()
            if delay > 0:
                self.halt.wait(delay)
        connection.close()

    def last(self):
        """The last document published."""
        return document(self.count, self.pad)

    def stop(self):
        self.halt.set()
        self.join(10)


class Watcher(threading.Thread):
    """A well-behaved SSE subscriber that applies every event and checks each patch's base."""

    def __init__(self, proxy, topic):
        super().__init__(daemon=True)
        self.stream = SSE(proxy, topic)
        self.state, self.cursor, self.changes, self.problems = None, None, -1, []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                name, data = self.stream.event(timeout=30)
            except (socket.timeout, EOFError, OSError) as error:
                if not self.halt.is_set():
                    self.problems.append(repr(error))
                return
            if name == "snapshot":
                if self.cursor is not None:
                    self.problems.append(f"a snapshot after {self.cursor}: this subscriber reads, it should get patches")
                self.state, self.cursor = data["data"], data["cursor"]
            elif name == "patch":
                if data.get("base") != self.cursor:
                    self.problems.append(f"patch base {data.get('base')} after {self.cursor}")
                self.state, self.cursor = apply_patch(self.state, data["patch"]), data["cursor"]
            else:
                continue
            self.changes += 1

    def stop(self):
        self.halt.set()
        self.stream.close()
        self.join(10)


def status(proxy):
    code, _, body = request(f"http://127.0.0.1:{proxy.admin_port}/deltacast/status", headers={"Authorization": f"Bearer {ADMIN}"})
    assert code == 200, code
    return json.loads(body)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def fill_backlogs(proxy, conflated, timeout=60):
    """Waits until `conflated` connections have filled their backlogs (the kernel's socket
    buffers first, then `limits.send_buffer`) and been conflated; returns the seconds it took."""
    started = time.monotonic()
    wait_for(lambda: status(proxy)["conflations"] >= conflated, timeout, f"{conflated} conflations")
    return time.monotonic() - started


def hold(proxy, seconds):
    """Samples once a second for `seconds`: (elapsed, RSS MiB, largest pending bytes,
    conflations, proxy CPU seconds)."""
    samples, started = [], time.monotonic()
    while True:
        current = status(proxy)
        pending = max([c["pending_bytes"] for c in current["slowest_consumers"]] or [0])
        elapsed = time.monotonic() - started
        samples.append((elapsed, rss_mib(proxy.process.pid), pending, current["conflations"], cpu_seconds(proxy.process.pid)))
        if elapsed >= seconds:
            return samples
        time.sleep(1)


def quarters(samples):
    """The RSS at each quarter of a hold, for the figures: "a / b / c / d MiB"."""
    picks = [samples[min(len(samples) - 1, round(q * (len(samples) - 1) / 4))][1] for q in range(1, 5)]
    return " / ".join(f"{value:.1f}" for value in picks) + " MiB"


def figure(text):
    print(f"figure: {text}", flush=True)


class ConnectThenCloseTests(unittest.TestCase):
    def test_tens_of_thousands_of_connections_that_come_and_go(self):
        """Five ways of leaving, round robin, from ten loopback addresses (so client-side
        TIME_WAIT never runs out of ports): close at once; reset at once; cut mid-request;
        reset after the WebSocket upgrade and a subscribe; reset after the SSE head. After the
        loop the proxy's descriptors and connections are back where they were, its RSS has
        not grown with the count, and the subscriber watching all along missed nothing."""
        proxy = Proxy(CONFIG)
        publisher = watcher = None
        try:
            proxy.publish("/rooms/a", document(0, 100), admin_port=proxy.admin_port)
            watcher = Watcher(proxy, "/rooms/a")
            watcher.start()
            publisher = Publisher(proxy, "/rooms/a", rate=20, pad=100)
            publisher.start()

            def leave(index):
                kind = index % 5
                connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                connection.bind((f"127.0.0.{2 + index % 10}", 0))
                connection.settimeout(10)
                connection.connect(("127.0.0.1", proxy.port))
                if kind == 2:
                    connection.sendall(b"GET /rooms/a HTTP/1.1\r\nHost: a\r\nAccept: text/ev")
                elif kind == 3:
                    connection.sendall(WS_UPGRADE)
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += connection.recv(4096)
                    assert head.startswith(b"HTTP/1.1 101"), head[:60]
                    connection.sendall(masked_text('{"type":"subscribe","topic":"/rooms/a"}'))
                elif kind == 4:
                    connection.sendall(b"GET /rooms/a HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
                    assert connection.recv(4096).startswith(b"HTTP/1.1 200")
                if kind in (1, 3, 4):
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()

            warm_up = min(3000, CONNECT_LOOP // 10)
            for index in range(warm_up):
                leave(index)
            wait_for(lambda: status(proxy)["connections"]["open"] <= 3, 30, "the warm-up connections to close")
            fds_before, rss_before, cpu_before = descriptors(proxy.process.pid), rss_mib(proxy.process.pid), cpu_seconds(proxy.process.pid)
            started = time.monotonic()
            for index in range(warm_up, CONNECT_LOOP):
                leave(index)
            elapsed = time.monotonic() - started
            # Still open: the watcher, the publisher's keep-alive and this status request.
            wait_for(lambda: status(proxy)["connections"]["open"] <= 3, 30, "every looped connection to be closed")
            fds_after, rss_after = descriptors(proxy.process.pid), rss_mib(proxy.process.pid)
            cpu = cpu_seconds(proxy.process.pid) - cpu_before
            looped = CONNECT_LOOP - warm_up
            figure(f"connect-then-close: {looped} connections in {elapsed:.1f} s ({looped / elapsed:.0f}/s); "
                   f"fds {fds_before} -> {fds_after}; RSS {rss_before:.1f} -> {rss_after:.1f} MiB; "
                   f"proxy CPU {cpu * 1e6 / looped:.0f} us per connection")
            self.assertLessEqual(fds_after, fds_before + 2, "descriptors leaked")
            self.assertLess(rss_after - rss_before, 4, "RSS grew with the number of connections")
            self.assertIsNone(proxy.process.poll())
            self.assertEqual(request(proxy.url("/healthz"))[0], 200)
            publisher.stop()
            self.assertEqual(publisher.failures, [])
            wait_for(lambda: watcher.state == publisher.last() or watcher.problems, 10, "the watcher to reach the last change")
            self.assertEqual(watcher.problems, [])
            self.assertEqual(watcher.changes, publisher.count)
        finally:
            for part in (publisher, watcher):
                if part:
                    part.stop()
            proxy.stop()


class ZeroWindowTests(unittest.TestCase):
    def test_a_zero_window_client_is_held_to_the_send_buffer_then_catches_up(self):
        """An SSE client and a WebSocket client stop reading while their topic changes 100
        times a second (`slow_consumer_timeout` is an hour here, so nothing closes them). The
        proxy holds at most `limits.send_buffer` for each, conflates, keeps its RSS flat, and
        the subscriber beside them gets every change. When they read again, each gets a
        snapshot of the newest state and carries on with patches from there."""
        proxy = Proxy(CONFIG)
        publisher = watcher = None
        try:
            proxy.publish("/rooms/z", document(0, PAD), admin_port=proxy.admin_port)
            watcher = Watcher(proxy, "/rooms/z")
            watcher.start()
            sse = zero_window_socket(proxy.port)
            sse.sendall(b"GET /rooms/z HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
            ws = zero_window_socket(proxy.port)
            ws.sendall(WS_UPGRADE)
            head = b""
            while b"\r\n\r\n" not in head:
                head += ws.recv(1)
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            ws.sendall(masked_text('{"type":"subscribe","topic":"/rooms/z"}'))
            wait_for(lambda: status(proxy)["endpoints"][0]["topics"][0]["subscribers"] == 3, 10, "three subscribers")

            publisher = Publisher(proxy, "/rooms/z", rate=CHANGES_PER_SECOND, pad=PAD)
            publisher.start()
            filled = fill_backlogs(proxy, 2)
            samples = hold(proxy, ZERO_WINDOW_SECONDS)
            publisher.stop()
            self.assertEqual(publisher.failures, [])
            changes = publisher.count
            growth = max(s[1] for s in samples) - min(s[1] for s in samples)
            figure(f"zero window: both backlogs full after {filled:.1f} s, then held {ZERO_WINDOW_SECONDS:.0f} s more at "
                   f"{CHANGES_PER_SECOND}/s ({changes} changes of ~{PAD // 1000} KB); largest pending {max(s[2] for s in samples)} B "
                   f"(send_buffer {SEND_BUFFER}); RSS {samples[0][1]:.1f} MiB then by quarters {quarters(samples)}; "
                   f"conflations {samples[-1][3]}")
            self.assertLessEqual(max(s[2] for s in samples), SEND_BUFFER, "a connection held more than limits.send_buffer")
            self.assertLess(growth, 4, "RSS kept growing while the clients' windows were shut")
            wait_for(lambda: watcher.changes == changes or watcher.problems, 10, "the watcher to get every change")
            self.assertEqual(watcher.problems, [])
            self.assertEqual(watcher.state, publisher.last())

            # They read again: each reaches the newest state through a snapshot, then follows a patch.
            final = document(changes + 1, PAD)
            proxy.publish("/rooms/z", final, admin_port=proxy.admin_port)
            for name, connection, events in (("SSE", sse, sse_events), ("WebSocket", ws, ws_events)):
                state, cursor, snapshots = None, None, 0
                for kind, data in events(connection):
                    if kind == "snapshot":
                        state, cursor, snapshots = data["data"], data["cursor"], snapshots + 1
                    elif kind == "patch" and data["base"] == cursor:
                        state, cursor = apply_patch(state, data["patch"]), data["cursor"]
                    elif kind == "patch":
                        self.fail(f"{name}: a patch on {data['base']} after {cursor} with no snapshot between")
                    if state == final:
                        break
                self.assertGreaterEqual(snapshots, 2, f"{name}: no snapshot after the conflation")
                connection.close()
        finally:
            for part in (publisher, watcher):
                if part:
                    part.stop()
            proxy.stop()


def sse_events(connection):
    """Events from a raw SSE response (head skipped) as (name, data), reading as it goes."""
    connection.settimeout(20)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += connection.recv(65536)
    buffer = buffer.partition(b"\r\n\r\n")[2]
    while True:
        while b"\n\n" not in buffer:
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffer += chunk
        block, _, buffer = buffer.partition(b"\n\n")
        parsed = sse_block(block)
        if parsed:
            yield parsed


def ws_events(connection):
    """Messages from a raw WebSocket after the 101 (unmasked server text frames) as (type, message)."""
    connection.settimeout(20)
    buffer = b""

    def take(count):
        nonlocal buffer
        while len(buffer) < count:
            chunk = connection.recv(65536)
            if not chunk:
                raise EOFError
            buffer += chunk
        out, buffer = buffer[:count], buffer[count:]
        return out

    while True:
        first, second = take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", take(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", take(8))[0]
        payload = take(length)
        if first & 0x0F == 0x1:
            message = json.loads(payload)
            yield message["type"], message


class NeverReadingTests(unittest.TestCase):
    def test_a_thousand_never_reading_clients_on_a_topic_changing_100_times_a_second(self):
        """Half SSE, half WebSocket, none reading after the head; 100 changes of ~1 KB a second.
        Each connection's backlog stops at `limits.send_buffer` (the queued changes are shared
        bytes, not copies), the RSS is flat once they are full, and the proxy's CPU is not
        spent on them once they are conflated. When they go, everything comes back."""
        proxy = Proxy(CONFIG)
        publisher = watcher = None
        clients = []
        try:
            proxy.publish("/rooms/n", document(0, PAD), admin_port=proxy.admin_port)
            rss_idle, fds_idle = rss_mib(proxy.process.pid), descriptors(proxy.process.pid)
            watcher = Watcher(proxy, "/rooms/n")
            watcher.start()
            for index in range(NEVER_READING):
                connection = zero_window_socket(proxy.port)
                if index % 2:
                    connection.sendall(b"GET /rooms/n HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
                else:
                    connection.sendall(WS_UPGRADE + masked_text('{"type":"subscribe","topic":"/rooms/n"}'))
                clients.append(connection)
            wait_for(lambda: status(proxy)["endpoints"][0]["topics"][0]["subscribers"] == NEVER_READING + 1, 30,
                     "every client subscribed")
            rss_connected = rss_mib(proxy.process.pid)

            publisher = Publisher(proxy, "/rooms/n", rate=CHANGES_PER_SECOND, pad=PAD)
            publisher.start()
            filled = fill_backlogs(proxy, NEVER_READING, timeout=120)
            rss_full = rss_mib(proxy.process.pid)
            samples = hold(proxy, NEVER_READING_SECONDS)
            publisher.stop()
            self.assertEqual(publisher.failures, [])
            peak = max(s[1] for s in samples)
            late_growth = samples[-1][1] - samples[0][1]
            late_cpu = (samples[-1][4] - samples[0][4]) / (samples[-1][0] - samples[0][0])
            figure(f"never reading: {NEVER_READING} clients, every backlog full after {filled:.1f} s, then held "
                   f"{NEVER_READING_SECONDS:.0f} s ({publisher.count} changes of ~{PAD // 1000} KB in all); RSS idle {rss_idle:.1f}, "
                   f"connected {rss_connected:.1f}, full {rss_full:.1f}, then by quarters {quarters(samples)} "
                   f"(held: {late_growth:+.1f} MiB); largest pending {max(s[2] for s in samples)} B; proxy CPU while held {late_cpu:.2f} cores")
            self.assertLessEqual(max(s[2] for s in samples), SEND_BUFFER)
            self.assertLess(abs(late_growth), 8, "RSS still moving once every backlog was full")
            self.assertGreaterEqual(samples[-1][3], NEVER_READING)
            # Bounded by design: the backlogs share the change bytes, so far below clients × send_buffer.
            self.assertLess(peak - rss_connected, 64, "the backlogs cost more than the shared bytes should")
            wait_for(lambda: watcher.changes == publisher.count or watcher.problems, 10, "the watcher to get every change")
            self.assertEqual(watcher.problems, [])
            self.assertEqual(watcher.changes, publisher.count)

            for connection in clients:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()
            clients = []
            wait_for(lambda: status(proxy)["connections"]["open"] <= 2, 30, "the clients' connections to close")
            self.assertLessEqual(descriptors(proxy.process.pid), fds_idle + 2)
            self.assertEqual(request(proxy.url("/healthz"))[0], 200)
        finally:
            for connection in clients:
                connection.close()
            for part in (publisher, watcher):
                if part:
                    part.stop()
            proxy.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
