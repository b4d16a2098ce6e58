#!/usr/bin/env python3
"""Rate limits and quotas, each hit on purpose, with a second client showing it alone is
affected; the separate admin listener. Against a real `deltacast serve` on loopback.
Run: DELTACAST_BIN=.build/debug/deltacast python3 Tests/Security/limits_test.py
"""
import asyncio
import json
import os
import sys
import unittest

import websockets
import websockets.exceptions

sys.path.insert(0, os.path.dirname(__file__))
from harness import ADMIN, AUDIENCE, ISSUER, SECRET, SSE, Proxy, hs256, request, run

CONFIG = f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN}, listen: 127.0.0.1:0 }}
auth:
  jwt: {{ algorithm: HS256, secret: "{SECRET}", issuer: "{ISSUER}", audience: {AUDIENCE} }}
  max_tickets: 4
limits:
  subscribe_rate: 5/s
  message_rate: 20/s
  publish_rate: 5/s
  ticket_rate: 3/m
  max_connections_per_user: 2
endpoints:
  - path: /users/{{user}}/inbox
    source: publish
    allow: "params.user == claims.sub"
  - path: /rooms/{{room}}
    source: publish
    auth: none
"""


class LimitTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = Proxy(CONFIG)
        for index in range(12):
            cls.publish(f"/rooms/r{index}", {"room": index})
        for user in ["alice", "bob", "carol", "dave"]:
            cls.publish(f"/users/{user}/inbox", {"user": user})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()

    @classmethod
    def publish(cls, topic, body):
        # Publishes go to the admin listener; they are rate limited, so retry on 429.
        for _ in range(50):
            status = cls.proxy.publish(topic, body, admin_port=cls.proxy.admin_port)[0]
            if status != 429:
                return status
            import time
            time.sleep(0.25)
        raise AssertionError("publish kept getting 429")

    def ws_url(self):
        return self.proxy.url("/deltacast/ws").replace("http", "ws")

    def test_subscribe_rate_refuses_only_the_fast_connection(self):
        async def scenario():
            async with websockets.connect(self.ws_url(), subprotocols=["deltacast.v1"]) as fast, \
                       websockets.connect(self.ws_url(), subprotocols=["deltacast.v1"]) as calm:
                for index in range(12):
                    await fast.send(json.dumps({"type": "subscribe", "topic": f"/rooms/r{index}"}))
                events = [json.loads(await asyncio.wait_for(fast.recv(), 5)) for _ in range(12)]
                refused = [e for e in events if e["type"] == "error"]
                self.assertGreaterEqual(len(refused), 6)
                self.assertTrue(all(e["code"] == "too_many" and "limits.subscribe_rate" in e["message"] for e in refused))
                self.assertEqual(sum(e["type"] == "snapshot" for e in events), 12 - len(refused))
                # The other connection's budget is its own.
                for index in range(3):
                    await calm.send(json.dumps({"type": "subscribe", "topic": f"/rooms/r{index}"}))
                    self.assertEqual(json.loads(await asyncio.wait_for(calm.recv(), 5))["type"], "snapshot")
        run(scenario())

    def test_message_rate_closes_1008_and_spares_others(self):
        async def scenario():
            async with websockets.connect(self.ws_url(), subprotocols=["deltacast.v1"]) as flood, \
                       websockets.connect(self.ws_url(), subprotocols=["deltacast.v1"]) as calm:
                await calm.send(json.dumps({"type": "subscribe", "topic": "/rooms/r11"}))
                self.assertEqual(json.loads(await asyncio.wait_for(calm.recv(), 5))["type"], "snapshot")
                with self.assertRaises(websockets.exceptions.ConnectionClosed) as closed:
                    for _ in range(200):
                        await flood.send(json.dumps({"type": "unsubscribe", "topic": "/rooms/r0"}))
                    await asyncio.wait_for(flood.recv(), 5)
                self.assertEqual(closed.exception.rcvd.code, 1008)
                self.assertIn("message_rate", closed.exception.rcvd.reason)
                self.publish("/rooms/r11", {"room": 11, "after": "flood"})
                self.assertEqual(json.loads(await asyncio.wait_for(calm.recv(), 5))["topic"], "/rooms/r11")
        run(scenario())

    def test_a_flooding_client_that_never_answers_the_close_is_cut_off(self):
        import os, socket, struct, time
        sock = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        sock.sendall(b"GET /deltacast/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"))
        payload = b'{"type":"unsubscribe","topic":"/rooms/r0"}'
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        try:
            sock.sendall(frame * 300)   # past limits.message_rate; this client never sends a close
        except OSError:
            pass
        received = head.split(b"\r\n\r\n", 1)[1]
        started = time.time()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        # The close frame (1008) arrived intact, and the server ended the connection itself
        # after its linger (2 s, swept within a second) rather than waiting for the client.
        close = received.find(b"\x88")
        self.assertGreaterEqual(close, 0, received[:80])
        self.assertEqual(struct.unpack(">H", received[close + 2:close + 4])[0], 1008)
        self.assertLess(time.time() - started, 8)
        sock.close()

    def test_publish_rate_answers_429_with_retry_after(self):
        import time
        time.sleep(1.5)  # the other tests' publishes spent the bucket; let it refill
        statuses = []
        for index in range(12):
            status, headers, body = self.proxy.publish("/rooms/burst", {"i": index}, admin_port=self.proxy.admin_port)
            statuses.append(status)
            if status == 429:
                self.assertGreaterEqual(int(headers["Retry-After"]), 1)
                self.assertIn("limits.publish_rate", json.loads(body)["message"])
        self.assertIn(429, statuses)
        self.assertIn(200, statuses)
        # Readers are not publishers: a GET goes through meanwhile.
        self.assertEqual(request(self.proxy.url("/rooms/r1"))[0], 200)

    def test_tickets_per_user_and_the_outstanding_cap(self):
        def ticket(user):
            return request(self.proxy.url("/deltacast/ticket"), method="POST", headers={"Authorization": f"Bearer {hs256(sub=user)}"})
        self.assertEqual([ticket("alice")[0] for _ in range(3)], [200, 200, 200])
        status, headers, body = ticket("alice")
        self.assertEqual(status, 429)
        self.assertGreaterEqual(int(headers["Retry-After"]), 1)
        self.assertIn("limits.ticket_rate", json.loads(body)["message"])
        # Another user is not held back by alice's rate...
        self.assertEqual(ticket("bob")[0], 200)
        # ...but auth.max_tickets (4) bounds what is outstanding in all.
        status, headers, body = ticket("carol")
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body)["error"], "too_many")
        self.assertIn("Retry-After", headers)

    def test_connections_per_user(self):
        streams = [SSE(self.proxy, "/users/dave/inbox", headers={"Authorization": f"Bearer {hs256(sub='dave')}"}) for _ in range(2)]
        try:
            self.assertEqual([s.status for s in streams], [200, 200])
            third = SSE(self.proxy, "/users/dave/inbox", headers={"Authorization": f"Bearer {hs256(sub='dave')}"})
            self.assertEqual(third.status, 429)
            self.assertIn("Retry-After", third.head)
            self.assertIn(b"max_connections_per_user", third.body())
            third.close()
            other = SSE(self.proxy, "/users/carol/inbox", headers={"Authorization": f"Bearer {hs256(sub='carol')}"})
            self.assertEqual(other.status, 200)
            other.close()
            # A WebSocket counts too, at the handshake.
            async def scenario():
                with self.assertRaises(websockets.exceptions.InvalidStatus) as caught:
                    async with websockets.connect(self.ws_url(), subprotocols=["deltacast.v1", f"token.{hs256(sub='dave')}"]):
                        pass
                self.assertEqual(caught.exception.response.status_code, 429)
            run(scenario())
            # Renewing a connection into a subject already at its limit closes it with 1008.
            async def renewal():
                async with websockets.connect(self.ws_url(), subprotocols=["deltacast.v1"]) as ws:
                    await ws.send(json.dumps({"type": "auth", "token": hs256(sub="dave")}))
                    with self.assertRaises(websockets.exceptions.ConnectionClosed) as closed:
                        await asyncio.wait_for(ws.recv(), 5)
                    self.assertEqual(closed.exception.rcvd.code, 1008)
                    self.assertIn("too many connections", closed.exception.rcvd.reason)
            run(renewal())
            streams.pop().close()
            import time
            deadline = time.time() + 5
            while True:
                again = SSE(self.proxy, "/users/dave/inbox", headers={"Authorization": f"Bearer {hs256(sub='dave')}"})
                if again.status == 200 or time.time() > deadline:
                    break
                again.close()
                time.sleep(0.1)
            self.assertEqual(again.status, 200)
            again.close()
        finally:
            for stream in streams:
                stream.close()

    def test_admin_listener_serves_only_admin_routes(self):
        main, admin = self.proxy.port, self.proxy.admin_port
        self.assertIsNotNone(admin)
        self.assertEqual(request(f"http://127.0.0.1:{main}/metrics")[0], 404)
        self.assertEqual(request(f"http://127.0.0.1:{main}/deltacast/publish?topic=/rooms/x", method="POST", body=b"{}",
                                 headers={"Authorization": f"Bearer {ADMIN}"})[0], 404)
        status, _, body = request(f"http://127.0.0.1:{admin}/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"deltacast_refusals_total{reason=\"rate_limited\"}", body)
        self.assertEqual(request(f"http://127.0.0.1:{admin}/rooms/r1")[0], 404)
        self.assertEqual(request(f"http://127.0.0.1:{admin}/healthz")[0], 200)
        self.assertEqual(request(f"http://127.0.0.1:{admin}/deltacast/status", headers={"Authorization": f"Bearer {ADMIN}"})[0], 200)


class PerAddressTests(unittest.TestCase):
    def test_connections_per_ip_refuse_only_that_address(self):
        import socket
        proxy = Proxy(f"""
listen: 127.0.0.1:0
limits: {{ max_connections_per_ip: 3 }}
endpoints:
  - path: /rooms/{{room}}
    source: publish
""")
        held = []
        try:
            def connect(source):
                sock = socket.socket()
                sock.bind((source, 0))
                sock.connect(("127.0.0.1", proxy.port))
                sock.settimeout(5)
                return sock

            def ask(sock):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                return sock.recv(4096)
            held = [connect("127.0.0.1") for _ in range(3)]
            for sock in held:
                self.assertTrue(ask(sock).startswith(b"HTTP/1.1 200"))
            refused = connect("127.0.0.1")
            answer = refused.recv(4096)
            refused.close()
            self.assertTrue(answer.startswith(b"HTTP/1.1 429"), answer[:40])
            self.assertIn(b"Retry-After", answer)
            # Another address is not affected, and neither are the connections already held.
            other = connect("127.0.0.2")
            self.assertTrue(ask(other).startswith(b"HTTP/1.1 200"))
            other.close()
            self.assertTrue(ask(held[0]).startswith(b"HTTP/1.1 200"))
        finally:
            for sock in held:
                sock.close()
            proxy.stop()


class HostileClientTests(unittest.TestCase):
    """Clients that reset mid-frame or mid-stream, or half-close: each gets what it asked for
    or nothing, the process never dies of SIGPIPE, and a well-behaved client is unaffected."""

    def test_resets_and_half_closes_harm_no_one(self):
        import socket
        import struct
        proxy = Proxy("listen: 127.0.0.1:0\nadmin: { token: " + ADMIN + " }\nendpoints:\n  - path: /rooms/{room}\n    source: publish\n")
        try:
            def reset(connection):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()

            proxy.publish("/rooms/a", {"n": 0})
            watcher = SSE(proxy, "/rooms/a")
            self.assertEqual(watcher.event()[0], "snapshot")
            # 50 SSE subscribers reset while big changes are being written to them (EPIPE/ECONNRESET
            # on write: with SIGPIPE's default action this would kill the process).
            victims = []
            for _ in range(50):
                victim = socket.create_connection(("127.0.0.1", proxy.port))
                victim.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                victim.sendall(b"GET /rooms/a HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
                victims.append(victim)
            big = "x" * 200_000
            for index in range(1, 6):
                self.assertEqual(proxy.publish("/rooms/a", {"n": index, "pad": big})[0], 200)
                if index == 2:
                    for victim in victims:
                        reset(victim)
            # A WebSocket that resets in the middle of a frame's payload.
            ws = socket.create_connection(("127.0.0.1", proxy.port))
            ws.sendall(b"GET /deltacast/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: deltacast.v1\r\n\r\n")
            self.assertTrue(ws.recv(4096).startswith(b"HTTP/1.1 101"))
            ws.sendall(bytes([0x81, 0x80 | 100, 1, 2, 3, 4]) + b"half")
            reset(ws)
            # A client that half-closes after its request still gets the whole answer.
            polite = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            polite.sendall(b"GET /rooms/a HTTP/1.1\r\nHost: a\r\n\r\n")
            polite.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                chunk = polite.recv(65536)
                if not chunk:
                    break
                answer += chunk
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
            self.assertTrue(answer.rstrip().endswith(b'}') and b'"n": 5' in answer[:400], answer[:200])
            self.assertEqual(len(answer.partition(b"\r\n\r\n")[2]), int(answer.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
            # The process lives, and the well-behaved subscriber got every change in order.
            self.assertIsNone(proxy.process.poll())
            self.assertEqual(request(proxy.url("/healthz"))[0], 200)
            seen = [watcher.event()[1]["cursor"] for _ in range(5)]
            self.assertEqual([int(cursor.rsplit("-", 1)[1]) for cursor in seen], [2, 3, 4, 5, 6])
        finally:
            proxy.stop()


class DescriptorExhaustionTests(unittest.TestCase):
    """At the process's file limit (64 here, with prlimit), accept fails: the proxy retries every
    100 ms instead of spinning, clients already connected carry on, and the clients waiting in
    the backlog are served once descriptors free up."""

    def test_out_of_descriptors_no_spin_old_clients_carry_on_new_ones_served_later(self):
        import socket
        import time
        proxy = Proxy("listen: 127.0.0.1:0\nserver: { event_loops: 1 }\nendpoints:\n  - path: /rooms/{room}\n    source: publish\n",
                      prefix=["prlimit", "--nofile=64:64"])
        try:
            first = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)

            def ask(connection, path="/healthz"):
                connection.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += connection.recv(65536)
                return int(head.split(b" ")[1]), body.decode()

            self.assertEqual(ask(first)[0], 200)
            # 100 more clients: the first ~50 are accepted, the rest wait in the backlog.
            others = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10) for _ in range(100)]
            for other in others:
                other.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")

            def failures():
                body = ask(first, "/metrics")[1]
                return int(float(next(line.split(" ")[1] for line in body.splitlines() if line.startswith("deltacast_accept_failures_total "))))

            deadline = time.time() + 10
            while failures() == 0 and time.time() < deadline:
                time.sleep(0.05)
            before = failures()
            self.assertGreater(before, 0, "accept never hit the descriptor limit")
            time.sleep(2)
            # Bounded retries: about one every 100 ms (a spinning accept would count thousands).
            self.assertLessEqual(failures() - before, 30)
            self.assertIn("accept_failed", proxy.log)
            # The client connected before carries on.
            self.assertEqual(ask(first)[0], 200)
            # Free descriptors: every waiting client is served.
            import select
            readable, _, _ = select.select(others, [], [], 1)
            served = [other for other in others if other in readable]
            waiting = [other for other in others if other not in readable]
            for connection in served:
                self.assertTrue(connection.recv(65536).startswith(b"HTTP/1.1 200"))
            self.assertTrue(served and waiting, f"{len(served)} served, {len(waiting)} waiting")
            for connection in served:
                connection.close()
            for connection in waiting:
                connection.settimeout(10)
                self.assertTrue(connection.recv(65536).startswith(b"HTTP/1.1 200"))
                connection.close()
            first.close()
        finally:
            proxy.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
