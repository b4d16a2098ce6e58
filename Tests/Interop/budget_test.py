#!/usr/bin/env python3
"""The upstream request budget against the simulator: 5,000 passthrough topics polled every
second (one per bearer token, made by plain GETs) against `budget: 500/s`. The simulator
counts its requests in every whole second and, per token, the longest time between two polls.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Interop/budget_test.py
"""
import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, BINARY, SSE, Proxy, Simulator, request  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "bench"))
from benchlib import KeepAlive  # noqa: E402

TOPICS = 5000
BUDGET = 500
BURST = BUDGET // 10   # the documented burst: a tenth of a second's worth


def config(simulator):
    return f"""
listen: 127.0.0.1:0
upstream: {{ base: {simulator.url}, budget: {BUDGET}/s, max_concurrent: 64, timeout: 5s }}
admin: {{ token: {ADMIN} }}
limits: {{ max_topics: 20000 }}
endpoints:
  - path: /me
    upstream: /api/whoami
    auth: passthrough
    interval: 1s
    linger: 120s
"""


def get_many(port, tokens):
    """GETs /me once per token on one keep-alive connection; returns the statuses."""
    connection = KeepAlive(port, timeout=60)
    try:
        return [connection.send("GET", "/me", headers=[("Authorization", f"Bearer {token}")]) for token in tokens]
    finally:
        connection.close()


class BudgetTests(unittest.TestCase):
    def setUp(self):
        self.simulator = Simulator()
        self.proxy = Proxy(config(self.simulator))

    def tearDown(self):
        self.proxy.stop()
        self.simulator.stop()

    def sim(self, path):
        return json.loads(request(f"{self.simulator.url}{path}")[2])

    def metric(self, name, label=""):
        _, _, body = request(self.proxy.url("/metrics"))
        for line in body.decode().splitlines():
            if line.startswith(name + label + " ") or (not label and line.startswith(name + "{")):
                return float(line.rsplit(" ", 1)[1])
        return None

    def test_5000_passthrough_topics_never_pass_the_budget_and_none_starves(self):
        # 5,000 topics, each made by a GET with its own token (32 clients at once). Their first
        # polls go first; the topics already made keep polling meanwhile, past the budget.
        groups = [[f"user-{n}" for n in range(start, TOPICS, 32)] for start in range(32)]
        results = []
        threads = [threading.Thread(target=lambda g=g: results.append(get_many(self.proxy.port, g))) for g in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        statuses = [status for group in results for status in group]
        self.assertEqual(len(statuses), TOPICS)
        self.assertEqual(set(statuses), {200})
        # 20 s of the steady state: 5,000 topics at 1 s want 5,000 requests/s.
        time.sleep(20)
        windows = self.sim("/_sim/windows")["windows"]
        busy = [count for count in windows if count > 0]
        self.assertLessEqual(max(busy), BUDGET + BURST, f"a second with {max(busy)} requests")
        self.assertGreaterEqual(sorted(busy)[len(busy) // 2], BUDGET * 0.9, f"the budget was not used: {busy[-10:]}")
        # Every topic was polled again, at least once every 12 s (5,000 / 500 = 10 s per round).
        tokens = self.sim("/_sim/credentials")
        self.assertEqual(tokens["tokens"], TOPICS)
        self.assertGreaterEqual(tokens["fewest_requests"], 2)
        self.assertLessEqual(tokens["longest_gap_ms"], 12_000)
        # A new topic's first poll goes ahead of the thousands of deferred polls: between the
        # GET and its poll the upstream served the burst and what was in flight, not them.
        waiting = self.metric("deltacast_upstream_budget_waiting")
        self.assertGreater(waiting, 1000)
        served_at_send = self.sim("/_sim/credentials")["served"]
        self.assertEqual(get_many(self.proxy.port, ["newcomer"]), [200])
        passed = self.sim("/_sim/credentials?token=newcomer")["served_before_first"] - served_at_send
        self.assertLess(passed, BURST + 64 + 100, f"{passed} requests went before the new topic's first poll ({waiting:.0f} waited)")
        # The stretch and the budget are visible.
        self.assertGreater(self.metric("deltacast_upstream_deferred_total"), TOPICS)
        self.assertGreater(self.metric("deltacast_upstream_interval_stretch_ratio"), 5)
        used = self.metric("deltacast_upstream_budget_used_ratio")
        self.assertGreater(used, 0.8)
        self.assertLessEqual(used, 1.1)
        print(f"\n  busiest second {max(busy)} requests (budget {BUDGET}/s + burst {BURST}); median second {sorted(busy)[len(busy) // 2]}; "
              f"longest wait between two polls of a topic {tokens['longest_gap_ms']} ms; {passed} requests before a new topic's "
              f"first poll while {waiting:.0f} waited", file=sys.stderr)
        upstream_port = self.simulator.url.rsplit(":", 1)[1]
        status = json.loads(request(self.proxy.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}"})[2])
        self.assertEqual([budget["origin"] for budget in status["budgets"]], [f"http://127.0.0.1:{upstream_port}"])
        self.assertGreater(status["interval_stretch"]["/me"], 5)
        top = subprocess.run([BINARY, "top", self.proxy.url(""), "--token", ADMIN, "--once"], capture_output=True, text=True, timeout=30)
        self.assertEqual(top.returncode, 0, top.stderr)
        self.assertRegex(top.stdout, rf"budget\s+http://127\.0\.0\.1:{upstream_port}\s+500/s of 500/s\s+used \d+ %\s+waiting \d+\s+deferred \d+")


class AdaptiveIntervalTests(unittest.TestCase):
    """`interval: { min, max }`: a new subscriber does not wait for a topic that drifted toward
    its maximum interval; the poll comes at once."""

    def setUp(self):
        self.simulator = Simulator()
        self.put(1)
        self.proxy = Proxy(f"""
listen: 127.0.0.1:0
upstream: {{ base: {self.simulator.url} }}
endpoints:
  - path: /doc
    upstream: /doc
    interval: {{ min: 250ms, max: 10m }}
    linger: 10m
""")

    def tearDown(self):
        self.proxy.stop()
        self.simulator.stop()

    def put(self, version):
        request(f"{self.simulator.url}/_sim/docs/doc", method="PUT", body=json.dumps({"v": version, "notes": "n" * 200}).encode(),
                headers={"Content-Type": "application/json"})

    def polls(self):
        return json.loads(request(f"{self.simulator.url}/_sim/stats")[2])["requests"].get("/doc", 0)

    def test_a_new_subscriber_polls_at_once(self):
        first = SSE(self.proxy, "/doc")
        self.assertEqual(first.event()[0], "snapshot")
        self.assertEqual(self.polls(), 1)
        # The next scheduled poll is √(5 × 250 ms × 10 min) ≈ 27 s away; a second subscriber (no
        # cursor) brings it now. The document changed meanwhile: both see the change.
        self.put(2)
        second = SSE(self.proxy, "/doc")
        self.assertEqual(second.event()[0], "snapshot")
        for subscriber in (first, second):
            name, data = subscriber.event(timeout=6)   # well before the scheduled poll
            self.assertEqual((name, data.get("patch")), ("patch", [{"op": "replace", "path": "/v", "value": 2}]))
        self.assertEqual(self.polls(), 2)
        first.close()
        second.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
