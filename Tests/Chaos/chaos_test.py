#!/usr/bin/env python3
"""A hostile upstream (issue 19, section 2): a fault-injecting proxy (chaos_proxy.py) between a
real `deltacast serve` and the simulator, on loopback. Six topics are polled every 500 ms with
`upstream.max_concurrent: 3` and a 2 s timeout; `/api/a` gets each fault in turn while
`/api/b` is watched as the bystander. For every fault:
- the proxy stays up and `/api/b` still delivers a change made during the fault;
- a subscriber of `/api/a` gets a `status` event with `upstream: error`, and a plain GET the
  last good body with `Deltacast-Stale: true` (faults that do not fail a poll, a 1 s spike
  under the timeout, deliver the change late instead);
- once the fault ends, the first poll that reaches the upstream restores the topic (`status`
  ok, the new body): no poller is left stuck;
- at no moment are more than 3 upstream requests in flight.
Recovery times (fault cleared → new body served) are printed, for the README; they are not
asserted (the backoff after consecutive failures decides them).
Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Chaos/chaos_test.py
"""
import json
import os
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
sys.path.insert(0, os.path.dirname(__file__))
from harness import SSE, Proxy, Simulator, request  # noqa: E402
from chaos_proxy import ChaosProxy  # noqa: E402

TOPICS = ["a", "b", "c1", "c2", "c3", "c4"]
RECOVERIES = []


def document(name, version):
    return {"name": name, "version": version,
            "rows": [{"id": i, "v": version if i == version % 20 else 0, "note": "a row of the legacy API"} for i in range(20)]}


class ChaosUpstreamTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.simulator = Simulator()
        cls.sim = cls.simulator.url
        request(cls.sim + "/_sim/freeze", method="POST")
        cls.versions = {}
        for name in TOPICS:
            cls.put(name, 1)
        cls.chaos = ChaosProxy(int(cls.sim.rsplit(":", 1)[1]))
        cls.proxy = Proxy(f"""listen: 127.0.0.1:0
upstream:
  base: http://127.0.0.1:{cls.chaos.port}
  timeout: 2s
  max_concurrent: 3
  max_body: 64KiB
  follow_redirects: true
endpoints:
  - path: /api/{{name}}
    upstream: /v1/{{name}}
    interval: 500ms
    array_keys: {{ /rows: id }}
server: {{ sse_heartbeat: 300s }}
""")
        cls.streams = {name: SSE(cls.proxy, f"/api/{name}") for name in TOPICS}
        for name, stream in cls.streams.items():
            kind, event = stream.event(15)
            assert kind == "snapshot", (name, kind, event)

    @classmethod
    def tearDownClass(cls):
        for stream in cls.streams.values():
            stream.close()
        cls.proxy.stop()
        cls.chaos.close()
        cls.simulator.stop()
        if RECOVERIES:
            print("\nrecovery after the fault ends (fault cleared → new body served):")
            for mode, seconds, polls in RECOVERIES:
                print(f"  {mode:<18} {seconds:5.2f} s, first poll after the fault: {polls}")

    @classmethod
    def put(cls, name, version):
        cls.versions[name] = version
        status, _, _ = request(f"{cls.sim}/_sim/docs/v1/{name}", method="PUT",
                               body=json.dumps(document(name, version)).encode(), headers={"Content-Type": "application/json"})
        assert status == 200, status

    def get(self, name):
        status, headers, body = request(self.proxy.url(f"/api/{name}"))
        return status, headers, json.loads(body) if body else None

    def wait_event(self, name, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kind, event = self.streams[name].event(max(0.1, deadline - time.monotonic()))
            except (TimeoutError, OSError):
                break
            if predicate(kind, event):
                return event
        self.fail(f"/api/{name}: no {what} within {timeout} s")

    def drain(self, name):
        """Reads and drops what the stream already holds (events of the previous fault)."""
        while True:
            try:
                self.streams[name].event(0.3)
            except (TimeoutError, OSError):
                return

    def wait_body(self, name, version, timeout, stale=False):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, headers, body = self.get(name)
            if status == 200 and body and body["version"] == version and (headers.get("Deltacast-Stale") == "true") == stale:
                return
            time.sleep(0.05)
        self.fail(f"/api/{name} did not serve version {version} (stale: {stale}) within {timeout} s: {self.get(name)[2]}")

    def bystander_still_served(self):
        version = self.versions["b"] + 1
        self.put("b", version)
        self.wait_event("b", lambda kind, event: kind in ("patch", "snapshot"), 10, "change during the fault")
        self.wait_body("b", version, 5)

    def cycle(self, mode, expect_error=True, **parameters):
        """One fault on /v1/a, from start to recovery."""
        good = self.versions["a"]
        self.drain("a")
        self.chaos.set("/v1/a", mode, **parameters)
        self.put("a", good + 1)      # a change the fault hides
        if expect_error:
            event = self.wait_event("a", lambda kind, event: kind == "status" and event.get("upstream") == "error", 20, "status error")
            self.assertTrue(event.get("stale"), event)
            self.wait_body("a", good, 10, stale=True)
        self.bystander_still_served()
        cleared = time.monotonic()
        self.chaos.clear("/v1/a")
        self.put("a", good + 2)
        if expect_error:
            self.wait_event("a", lambda kind, event: kind == "status" and event.get("upstream") == "ok", 70, "status ok")
        self.wait_body("a", good + 2, 70)
        recovered = time.monotonic() - cleared
        outcomes = self.chaos.outcomes("/v1/a", cleared)
        if expect_error:
            self.assertEqual(outcomes[:1], ["ok"], f"{mode}: the first poll after the fault restores the topic")
        # A fault that fails nothing (a delay under the timeout) may need no poll after it: the
        # delayed one can already carry the newest body.
        RECOVERIES.append((mode, recovered, outcomes[0] if outcomes else "none needed"))
        self.assertEqual(self.proxy.process.poll(), None, "the proxy is up")
        self.assertLessEqual(self.chaos.max_in_flight, 3, "upstream.max_concurrent holds")

    # One test per fault, in a fixed order (unittest sorts by name).
    def test_01_latency_under_the_timeout(self):
        self.cycle("latency", expect_error=False, seconds=1)

    def test_02_latency_over_the_timeout(self):
        self.cycle("latency", seconds=3)

    def test_03_random_latency_spikes_0_to_5s(self):
        # Some polls time out, some are merely late: no assertion on the status events, only
        # that the proxy survives and recovers.
        self.chaos.set("/v1/a", "latency", low=0, high=5)
        started = time.monotonic()
        while time.monotonic() - started < 8:   # every poll of /api/a meets a spike meanwhile
            self.put("a", self.versions["a"] + 1)
            self.bystander_still_served()
            time.sleep(1)
        self.chaos.clear("/v1/a")
        self.put("a", self.versions["a"] + 1)
        self.wait_body("a", self.versions["a"], 70)

    def test_04_reset_in_the_middle_of_a_body(self):
        self.cycle("reset_mid_body")

    def test_05_truncated_gzip(self):
        self.cycle("truncated_gzip")

    def test_06_content_length_longer_than_the_body(self):
        self.cycle("long_length")

    def test_07_content_length_shorter_than_the_body(self):
        self.cycle("short_length")

    def test_08_a_burst_of_5xx(self):
        self.cycle("status", status=503)

    def test_09_invalid_json(self):
        self.cycle("invalid_json")

    def test_10_truncated_json(self):
        self.cycle("truncated_json")

    def test_11_a_10x_body(self):
        self.cycle("huge", size=64 * 1024, factor=10)

    def test_12_a_1_byte_per_second_drip(self):
        self.cycle("drip", bytes_per_second=1)

    def test_13_a_header_flood(self):
        # 2,000 headers (150 KB) are read and the body served (the proxy keeps 100 of them);
        # 20,000 (1.5 MB) are past libcurl's limit on a response's headers: a failed poll.
        self.cycle("header_flood", expect_error=False, headers=2000)
        self.cycle("header_flood", headers=20000)

    def test_14_a_redirect_loop(self):
        self.cycle("redirect_loop")

    def test_15_accepts_and_never_answers(self):
        self.cycle("silent")

    def test_16_an_upstream_that_takes_one_connection(self):
        """Beyond one open connection, the upstream closes new ones at once. Every topic still
        gets its new body through the one connection curl keeps, and all recover after."""
        self.chaos.set_connection_limit(1)
        try:
            for name in TOPICS:
                self.put(name, self.versions[name] + 1)
            for name in TOPICS:
                self.wait_body(name, self.versions[name], 70)
            self.assertEqual(self.proxy.process.poll(), None)
        finally:
            self.chaos.set_connection_limit(None)
        for name in TOPICS:
            self.put(name, self.versions[name] + 1)
        for name in TOPICS:
            self.wait_body(name, self.versions[name], 70)
        print(f"\n  connection limit 1: {self.chaos.refused_connections} connections refused by the upstream")

    def test_17_every_topic_is_current_and_the_limit_held(self):
        for name in TOPICS:
            self.put(name, self.versions[name] + 1)
        for name in TOPICS:
            self.wait_body(name, self.versions[name], 30)
        self.assertLessEqual(self.chaos.max_in_flight, 3)
        with urllib.request.urlopen(self.proxy.url("/metrics"), timeout=10) as response:
            metrics = response.read().decode()
        failures = sum(float(line.split(" ")[1]) for line in metrics.splitlines()
                       if line.startswith("deltacast_upstream_polls_total") and 'outcome="ok"' not in line
                       and 'outcome="not_modified"' not in line and 'outcome="unchanged"' not in line)
        self.assertGreater(failures, 0, "the faults were seen as failed polls")
        print(f"\n  most upstream requests in flight at once: {self.chaos.max_in_flight} (limit 3); failed polls: {failures:.0f}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
