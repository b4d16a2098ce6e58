#!/usr/bin/env python3
"""Live reload (SIGHUP and POST /deltacast/reload) against a real `deltacast serve`, with the
simulator as its upstream and real clients on every transport:

- 1,000 subscribers (WebSocket through `websockets`, raw SSE, raw long-poll) keep their
  connections through a reload and receive the next change as a patch on the cursor they hold
  (same epoch, no new snapshot);
- added endpoints serve at once; removed ones end their subscriptions with `not_found`;
- changed diff options apply to the next change; a changed `scopes` ends the subscriptions it
  now refuses with `forbidden`;
- a broken file changes nothing: 400 with file:line:col, the same in the log, counted;
- 50 reloads in one second harm nothing; a reload while the upstream fails harms nothing.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Interop/reload_test.py
"""
import asyncio
import json
import os
import re
import resource
import signal
import sys
import time
import unittest
import urllib.request

import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, SSE, Proxy, Simulator, request  # noqa: E402

KEY = "reload-test-api-key-alice-0123"
SUBSCRIBERS = {"websocket": 400, "sse": 400, "longpoll": 200}


def config(upstream, *, live_keys="{ /items: id }", extra="", secure_scopes="[read]", prices_interval="200ms", gone=True):
    text = f"""
listen: 127.0.0.1:0
upstream: {{ base: {upstream} }}
admin: {{ token: {ADMIN} }}
auth:
  api_keys:
    - {{ key: {KEY}, subject: alice, scopes: [read] }}
limits: {{ max_connections_per_ip: 5000, max_connections: 5000 }}
endpoints:
  - path: /live/{{room}}
    source: publish
    auth: none
    array_keys: {live_keys}
  - path: /secure/{{room}}
    source: publish
    scopes: {secure_scopes}
  - path: /api/prices
    auth: none
    interval: {prices_interval}
    array_keys: {{ /items: id }}
    ignore: [/generatedAt]
"""
    if gone:
        text += "  - path: /gone/{room}\n    source: publish\n    auth: none\n"
    return text + extra


def document(price, order=(1, 2, 3)):
    items = {1: {"id": 1, "price": price}, 2: {"id": 2, "price": 20}, 3: {"id": 3, "price": 30}}
    return {"items": [items[i] for i in order], "note": "long enough that a changed price travels as a patch, not a snapshot"}


class ReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        cls.simulator = Simulator()
        cls.upstream = cls.simulator.url

    @classmethod
    def tearDownClass(cls):
        cls.simulator.stop()

    def setUp(self):
        request(self.upstream + "/_sim/reset", method="POST")
        self.proxy = Proxy(config(self.upstream))

    def tearDown(self):
        self.proxy.stop()

    def write(self, text):
        with open(self.proxy.config_path, "w") as handle:
            handle.write(text)

    def reload(self):
        status, _, body = request(self.proxy.url("/deltacast/reload"), method="POST", headers={"Authorization": f"Bearer {ADMIN}"})
        return status, json.loads(body)

    def publish(self, topic, body):
        status, _, answer = self.proxy.publish(topic, body)
        self.assertEqual(status, 200, answer)
        return json.loads(answer)

    def metric(self, name):
        _, _, body = request(self.proxy.url("/metrics"))
        match = re.search(r"^" + re.escape(name) + r" (\S+)$", body.decode(), re.M)
        return float(match.group(1)) if match else None

    def wait_log(self, pattern, seconds=10):
        """Waits for a log line (the proxy writes it; a bounded wait for an event, not a sleep)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            if re.search(pattern, self.proxy.log):
                return
            time.sleep(0.05)
        self.fail(f"no log line matching {pattern!r}:\n{self.proxy.log[-3000:]}")

    # MARK: a thousand subscribers

    def test_a_thousand_subscribers_on_every_transport_keep_their_connections_and_get_the_next_patch(self):
        first = self.publish("/live/a", document(1))
        cursor = first["cursor"]
        results = asyncio.run(self.thousand_subscribers(cursor))
        self.assertEqual(len(results), sum(SUBSCRIBERS.values()))
        for transport, event in results:
            self.assertEqual(event["type"], "patch", f"{transport}: {event}")
            self.assertEqual(event["base"], cursor, f"{transport}: the patch applies to the cursor held before the reload")
        self.assertEqual(self.metric('deltacast_config_reloads_total{result="ok"}'), 1)

    async def thousand_subscribers(self, cursor):
        port = self.proxy.port
        ready = []
        results = []

        async def websocket_client():
            async with websockets.connect(f"ws://127.0.0.1:{port}/deltacast/ws", subprotocols=["deltacast.v1"], open_timeout=30,
                                          compression=None) as socket:
                await socket.send(json.dumps({"type": "subscribe", "topic": "/live/a"}))
                snapshot = json.loads(await asyncio.wait_for(socket.recv(), 30))
                assert snapshot["cursor"] == cursor, snapshot
                ready.append(1)
                results.append(("websocket", json.loads(await asyncio.wait_for(socket.recv(), 60))))

        async def sse_client():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /live/a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            events = []
            while len(events) < 2:
                block = (await asyncio.wait_for(reader.readuntil(b"\n\n"), 60)).decode()
                data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
                if data:
                    events.append(json.loads("\n".join(data)))
                    if len(events) == 1:
                        assert events[0]["cursor"] == cursor, events[0]
                        ready.append(1)
            results.append(("sse", events[1]))
            writer.close()

        async def longpoll_client():
            async def poll(since, wait):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"GET /deltacast/poll?topic=/live/a&since={since}&wait={wait} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                response = await asyncio.wait_for(reader.read(), 60)
                writer.close()
                head, _, body = response.partition(b"\r\n\r\n")
                return int(head.split(b" ")[1]), body
            status, body = await poll("", 0)
            assert status == 200 and json.loads(body)[0]["cursor"] == cursor, (status, body)
            ready.append(1)
            status, body = await poll(cursor, 50)
            assert status == 200, (status, body)
            results.append(("longpoll", json.loads(body)[0]))

        tasks = [asyncio.create_task(websocket_client()) for _ in range(SUBSCRIBERS["websocket"])]
        tasks += [asyncio.create_task(sse_client()) for _ in range(SUBSCRIBERS["sse"])]
        tasks += [asyncio.create_task(longpoll_client()) for _ in range(SUBSCRIBERS["longpoll"])]
        deadline = time.time() + 60
        while len(ready) < len(tasks) and time.time() < deadline:
            failed = [task for task in tasks if task.done() and task.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.05)
        self.assertEqual(len(ready), len(tasks), "every subscriber got its snapshot")
        # Long-pollers are now held (the status page counts them); reload, then change.
        self.write(config(self.upstream, extra="  - path: /added\n    source: publish\n    auth: none\n"))
        status, report = await asyncio.to_thread(self.reload)
        self.assertEqual(status, 200, report)
        self.assertEqual(report["added"], ["/added"])
        self.assertEqual(report["unchanged"], 4)
        await asyncio.to_thread(self.publish, "/live/a", document(2))
        await asyncio.wait_for(asyncio.gather(*tasks), 90)
        return results

    # MARK: what a reload does to endpoints

    def test_added_removed_and_changed_endpoints(self):
        self.publish("/live/r", document(1))
        self.publish("/gone/x", {"a": 1})
        self.publish("/secure/s", {"secret": 1})
        live = SSE(self.proxy, "/live/r")
        self.assertEqual(live.event()[0], "snapshot")
        gone = SSE(self.proxy, "/gone/x")
        self.assertEqual(gone.event()[0], "snapshot")
        secure = SSE(self.proxy, "/secure/s", headers={"Authorization": f"Bearer {KEY}"})
        self.assertEqual(secure.event()[0], "snapshot")
        status, _, _ = request(self.proxy.url("/added/one"))
        self.assertEqual(status, 404)

        # Reordered items: without keys the positional diff replaces; with keys it moves.
        self.write(config(self.upstream, live_keys="{}", secure_scopes="[admin]", gone=False,
                          extra="  - path: /added/{x}\n    source: publish\n    auth: none\n"))
        status, report = self.reload()
        self.assertEqual(status, 200, report)
        self.assertEqual(report["added"], ["/added/{x}"])
        self.assertEqual(report["removed"], ["/gone/{room}"])
        self.assertEqual(sorted(report["changed"]), ["/live/{room}", "/secure/{room}"])

        name, event = gone.event()
        self.assertEqual((name, event["code"]), ("error", "not_found"))
        self.assertIn("removed this endpoint", event["message"])
        self.assertTrue(gone.wait_closed(), "a single-topic stream ends with its only subscription")
        name, event = secure.event()
        self.assertEqual((name, event["code"]), ("error", "forbidden"))
        self.assertIn("admin", event["message"])
        self.assertTrue(secure.wait_closed())

        self.publish("/live/r", document(1, order=(3, 1, 2)))
        name, event = live.event()
        self.assertEqual(name, "patch")
        self.assertFalse(any(op["op"] == "move" for op in event["patch"]), f"array_keys removed: no move ({event['patch']})")

        self.publish("/added/one", {"fresh": True})
        status, _, body = request(self.proxy.url("/added/one"))
        self.assertEqual((status, json.loads(body)), (200, {"fresh": True}))
        status, _, body = request(self.proxy.url("/gone/x"))
        self.assertEqual(status, 404)

        # Keys back: the next change of the same topic is diffed with them.
        self.write(config(self.upstream))
        status, report = self.reload()
        self.assertEqual(status, 200, report)
        self.publish("/live/r", document(1, order=(1, 2, 3)))
        name, event = live.event()
        self.assertEqual(name, "patch")
        self.assertTrue(any(op["op"] == "move" for op in event["patch"]), f"array_keys back: elements move ({event['patch']})")
        live.close()

    def test_a_broken_file_changes_nothing(self):
        self.publish("/live/b", document(1))
        stream = SSE(self.proxy, "/live/b")
        _, snapshot = stream.event()
        self.write(config(self.upstream).replace("interval: 200ms", "interval: soon"))
        status, _, body = request(self.proxy.url("/deltacast/reload"), method="POST", headers={"Authorization": f"Bearer {ADMIN}"})
        self.assertEqual(status, 400)
        message = json.loads(body)["message"]
        self.assertRegex(message, re.escape(self.proxy.config_path) + r":\d+:\d+: invalid duration 'soon'")
        self.wait_log(r'"event":"config_reload_failed".*invalid duration')
        self.proxy.signal(signal.SIGHUP)
        deadline = time.time() + 10
        while self.metric('deltacast_config_reloads_total{result="error"}') != 2 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.metric('deltacast_config_reloads_total{result="error"}'), 2)
        self.assertEqual(self.metric('deltacast_config_reloads_total{result="ok"}'), 0)
        # Still the old configuration: the stream carries on, /gone still exists.
        self.publish("/live/b", document(5))
        name, event = stream.event()
        self.assertEqual((name, event["base"]), ("patch", snapshot["cursor"]))
        self.publish("/gone/still", {"here": 1})
        stream.close()
        # Wrong or missing admin token.
        status, _, _ = request(self.proxy.url("/deltacast/reload"), method="POST")
        self.assertEqual(status, 401)
        status, _, _ = request(self.proxy.url("/deltacast/reload"), method="POST", headers={"Authorization": "Bearer wrong-token-0123456789"})
        self.assertEqual(status, 403)
        status, _, _ = request(self.proxy.url("/deltacast/reload"), headers={"Authorization": f"Bearer {ADMIN}"})
        self.assertEqual(status, 405)

    def test_a_key_file_that_cannot_be_read_changes_nothing(self):
        text = config(self.upstream).replace("auth:\n", "auth:\n  jwt: { algorithm: RS256, public_key: /nonexistent/deltacast-key.pem }\n")
        self.write(text)
        status, _, body = request(self.proxy.url("/deltacast/reload"), method="POST", headers={"Authorization": f"Bearer {ADMIN}"})
        self.assertEqual(status, 400)
        self.assertIn("/nonexistent/deltacast-key.pem", json.loads(body)["message"])
        # The API key of the running configuration still works.
        self.publish("/secure/k", {"v": 1})
        status, _, _ = request(self.proxy.url("/secure/k"), headers={"Authorization": f"Bearer {KEY}"})
        self.assertEqual(status, 200)

    def test_sighup_reloads_and_says_what_needs_a_restart(self):
        self.write(config(self.upstream).replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1") + "logging: { level: warn }\n")
        self.proxy.signal(signal.SIGHUP)
        self.wait_log(r'"event":"config_restart_required".*"keys":"listen logging.level"')
        # The level in force is still info: the reload's own info line is written.
        self.wait_log(r'"level":"info","event":"config_reload"')

    def test_new_credentials_cors_and_limits_apply_to_new_requests(self):
        self.publish("/secure/c", {"v": 1})
        newcomer = "reload-test-api-key-bob-0123456"
        status, _, _ = request(self.proxy.url("/secure/c"), headers={"Authorization": f"Bearer {newcomer}"})
        self.assertEqual(status, 401)
        status, headers, _ = request(self.proxy.url("/secure/c"), headers={"Authorization": f"Bearer {KEY}", "Origin": "https://dash.example"})
        self.assertEqual((status, headers.get("Access-Control-Allow-Origin")), (200, None))
        text = config(self.upstream).replace(
            "    - { key: " + KEY + ", subject: alice, scopes: [read] }",
            "    - { key: " + KEY + ", subject: alice, scopes: [read] }\n    - { key: " + newcomer + ", subject: bob, scopes: [read] }")
        text += "cors: { origins: [https://dash.example] }\n"
        text = text.replace("limits: {", "limits: { max_topics_per_connection: 1,")
        self.write(text)
        status, report = self.reload()
        self.assertEqual((status, report["restart_required"]), (200, []))
        status, _, body = request(self.proxy.url("/secure/c"), headers={"Authorization": f"Bearer {newcomer}"})
        self.assertEqual((status, json.loads(body)), (200, {"v": 1}))
        status, headers, _ = request(self.proxy.url("/secure/c"), headers={"Authorization": f"Bearer {KEY}", "Origin": "https://dash.example"})
        self.assertEqual((status, headers.get("Access-Control-Allow-Origin")), (200, "https://dash.example"))
        status, _, body = request(self.proxy.url("/deltacast/poll?topic=/live/x&topic=/live/y&wait=0"))
        events = json.loads(body)
        self.assertIn({"type": "error", "topic": None, "code": "too_many",
                       "message": "at most 1 topics per request (limits.max_topics_per_connection)"}, [
            {k: e.get(k) for k in ("type", "topic", "code", "message")} for e in events if e["type"] == "error"])

    def test_fifty_reloads_in_one_second_harm_nothing(self):
        self.publish("/live/f", document(1))
        stream = SSE(self.proxy, "/live/f")
        _, snapshot = stream.event()
        texts = [config(self.upstream), config(self.upstream, prices_interval="300ms", live_keys="{ /items: price }")]
        started = time.time()
        for index in range(50):
            self.write(texts[index % 2])
            status, report = self.reload()
            self.assertEqual(status, 200, report)
        self.assertLess(time.time() - started, 5)
        self.assertEqual(self.metric('deltacast_config_reloads_total{result="ok"}'), 50)
        self.publish("/live/f", document(2))
        name, event = stream.event()
        self.assertEqual((name, event["base"]), ("patch", snapshot["cursor"]))
        stream.close()

    def test_a_reload_while_the_upstream_fails_harms_nothing(self):
        stream = SSE(self.proxy, "/api/prices")
        name, snapshot = stream.event()
        self.assertEqual(name, "snapshot")
        request(self.upstream + "/_sim/fail/api/prices?mode=status&status=503", method="POST")
        while True:
            name, event = stream.event()
            if name == "status":
                break
        self.assertEqual((event["upstream"], event["stale"]), ("error", True))
        self.write(config(self.upstream, prices_interval="100ms"))
        status, report = self.reload()
        self.assertEqual((status, report["changed"]), (200, ["/api/prices"]))
        request(self.upstream + "/_sim/fail/api/prices", method="DELETE")
        while True:
            name, event = stream.event(timeout=30)
            if name == "status":
                break
        self.assertEqual(event["upstream"], "ok")
        # Same history: the snapshot's epoch goes on.
        status, headers, _ = request(self.proxy.url("/api/prices"))
        self.assertEqual(status, 200)
        self.assertEqual(headers["ETag"].strip('"').split("-")[0], snapshot["cursor"].split("-")[0])
        stream.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
