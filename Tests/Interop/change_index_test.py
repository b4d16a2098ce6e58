#!/usr/bin/env python3
"""Change-index triggers against the simulator: 10,000 topics whose endpoint names a change
index (`/api/changes?since={cursor}`, read every second) and polls on its own only every 10
minutes. 10 documents change a second; the simulator counts what the proxy fetches and how
long each changed document waited to be read. Then the index breaks, and goes back.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Interop/change_index_test.py
"""
import json
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, Proxy, Simulator, request  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "bench"))
from benchlib import KeepAlive  # noqa: E402

TOPICS = 10000


def config(simulator):
    return f"""
listen: 127.0.0.1:0
upstream: {{ base: {simulator.url}, max_concurrent: 32 }}
admin: {{ token: {ADMIN} }}
limits: {{ max_topics: 20000 }}
endpoints:
  - path: /items/{{id}}
    interval: 10m
    linger: 10m
    changes:
      upstream: /api/changes?since={{cursor}}
      every: 1s
      cursor: /next
      topics: /changed/*/path
"""


class ChangeIndexTests(unittest.TestCase):
    def setUp(self):
        self.simulator = Simulator()
        self.sim_port = int(self.simulator.url.rsplit(":", 1)[1])
        self.writer = KeepAlive(self.sim_port)
        for n in range(TOPICS):
            self.assertEqual(self.writer.send("PUT", f"/_sim/docs/items/{n}", json.dumps({"id": n, "v": 0}).encode()), 200)
        # The index starts from now: the documents above are not changes.
        self.sim("/_sim/changes?reset=1", "POST")
        self.sim("/_sim/delays?reset=1")
        self.proxy = Proxy(config(self.simulator))

    def tearDown(self):
        self.writer.close()
        self.proxy.stop()
        self.simulator.stop()

    def sim(self, path, method="GET"):
        return json.loads(request(f"{self.simulator.url}{path}", method=method, body=b"" if method == "POST" else None)[2])

    def fetched(self):
        requests = self.sim("/_sim/stats")["requests"]
        return sum(count for path, count in requests.items() if path.startswith("/items/")), requests.get("/api/changes", 0)

    def metric(self, name, labels):
        _, _, body = request(self.proxy.url("/metrics"))
        for line in body.decode().splitlines():
            if line.startswith(name + "{") and all(label in line for label in labels):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def change(self, n, version):
        self.assertEqual(self.writer.send("PUT", f"/_sim/docs/items/{n}", json.dumps({"id": n, "v": version}).encode()), 200)

    def test_the_index_triggers_fetches_and_a_broken_index_loses_nothing(self):
        reader = KeepAlive(self.proxy.port)
        try:
            for n in range(TOPICS):
                self.assertEqual(reader.send("GET", f"/items/{n}"), 200)
        finally:
            reader.close()
        time.sleep(2)
        items_before, index_before = self.fetched()
        self.assertEqual(items_before, TOPICS)   # each topic's first poll, and nothing since
        # 10 seconds, 10 changes a second.
        rng = random.Random(7)
        started = time.time()
        changed = set()
        for step in range(100):
            n = rng.randrange(TOPICS)
            changed.add(n)
            self.change(n, step + 1)
            time.sleep(max(0, started + (step + 1) * 0.1 - time.time()))
        time.sleep(2.5)
        span = time.time() - started
        items, index = self.fetched()
        items -= items_before
        index -= index_before
        # The index was read about once a second and fetched what changed, not 10,000 topics.
        self.assertLessEqual(index, span + 3, f"{index} index reads in {span:.1f} s")
        self.assertGreaterEqual(items, len(changed))
        self.assertLessEqual(items, len(changed) + 10, f"{items} fetches for {len(changed)} changed documents")
        delays = self.sim("/_sim/delays")
        self.assertEqual(delays["unread"], 0)
        # Detection: at most the index's interval and one fetch (1 s + a loopback fetch).
        self.assertLessEqual(delays["max_ms"], 1500, delays)
        print(f"\n  {index} index reads and {items} fetches in {span:.1f} s for {len(changed)} changed documents of {TOPICS}; "
              f"change to fetch: median {delays['median_ms']} ms, max {delays['max_ms']} ms", file=sys.stderr)
        self.assertEqual(self.metric("deltacast_upstream_change_index_triggers_total", ['endpoint="/items/{id}"']), items)

        # The index answers garbage: a warning, a metric, the safety net; a change meanwhile
        # waits, and is fetched once the index answers again (every topic polls once).
        self.sim("/_sim/fail/api/changes?mode=broken", "POST")
        deadline = time.time() + 10
        while time.time() < deadline and self.metric("deltacast_upstream_change_index_failures_total", ['reason="garbage"']) < 1:
            time.sleep(0.1)
        self.change(5, 1000)
        time.sleep(1.5)
        self.assertEqual(self.sim("/_sim/delays")["unread"], 1)
        self.assertGreaterEqual(self.metric("deltacast_upstream_change_index_failures_total", ['reason="garbage"']), 1)
        self.assertIn('"event":"change_index_failed","endpoint":"/items/{id}","reason":"garbage"', self.proxy.log)
        request(f"{self.simulator.url}/_sim/fail/api/changes", method="DELETE")
        deadline = time.time() + 15
        while time.time() < deadline and self.sim("/_sim/delays")["unread"] > 0:
            time.sleep(0.2)
        self.assertEqual(self.sim("/_sim/delays")["unread"], 0)
        self.assertEqual(json.loads(request(self.proxy.url("/items/5"))[2]), {"id": 5, "v": 1000})
        self.assertIn('"event":"change_index_recovered","endpoint":"/items/{id}"', self.proxy.log)

        # The index's numbers start again (a cursor that goes back): counted, and followed.
        self.sim("/_sim/changes?reset=1", "POST")
        deadline = time.time() + 10
        while time.time() < deadline and self.metric("deltacast_upstream_change_index_failures_total", ['reason="cursor_backwards"']) < 1:
            time.sleep(0.1)
        self.assertGreaterEqual(self.metric("deltacast_upstream_change_index_failures_total", ['reason="cursor_backwards"']), 1)
        self.change(6, 2000)
        deadline = time.time() + 15
        while time.time() < deadline and json.loads(request(self.proxy.url("/items/6"))[2]) != {"id": 6, "v": 2000}:
            time.sleep(0.2)
        self.assertEqual(json.loads(request(self.proxy.url("/items/6"))[2]), {"id": 6, "v": 2000})


if __name__ == "__main__":
    unittest.main(verbosity=2)
