#!/usr/bin/env python3
"""The migration report against the simulator: every number it gives is checked against what
the test itself did and what the simulator counted.

One endpoint polls every hour, so the only upstream requests are its first poll and the polls
the test asks for (`POST /deltacast/refresh`): the counts are exact. A second endpoint polls
every 250 ms and has two SSE subscribers for a while: its direct-polling equivalent follows
their subscribed time.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Interop/report_test.py
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, BINARY, SSE, Proxy, Simulator, request  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "bench"))
from benchlib import KeepAlive  # noqa: E402

GETS = 20
SUBSCRIBERS = 4


def document(version):
    return json.dumps({"v": version, "notes": "n" * 500}).encode()


class ReportTests(unittest.TestCase):
    def setUp(self):
        self.simulator = Simulator()
        self.put("doc", 1)
        self.put("fast", 1)
        self.proxy = Proxy(f"""
listen: 127.0.0.1:0
upstream: {{ base: {self.simulator.url} }}
admin: {{ token: {ADMIN} }}
endpoints:
  - path: /doc
    upstream: /doc
    interval: 1h
    linger: 1h
  - path: /fast
    upstream: /fast
    interval: 250ms
""")

    def tearDown(self):
        self.proxy.stop()
        self.simulator.stop()

    def put(self, path, version):
        request(f"{self.simulator.url}/_sim/docs/{path}", method="PUT", body=document(version), headers={"Content-Type": "application/json"})

    def refresh(self):
        status, _, _ = request(self.proxy.url("/deltacast/refresh?topic=/doc"), method="POST", body=b"", headers={"Authorization": f"Bearer {ADMIN}"})
        self.assertEqual(status, 202)

    def report(self):
        status, _, body = request(self.proxy.url("/deltacast/report"), headers={"Authorization": f"Bearer {ADMIN}"})
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def endpoint(self, report, path):
        return next(e for e in report["endpoints"] if e["path"] == path)

    def metric(self, name, labels):
        _, _, body = request(self.proxy.url("/metrics"))
        for line in body.decode().splitlines():
            if line.startswith(name + "{") and all(label in line for label in labels):
                return float(line.rsplit(" ", 1)[1])
        return None

    def sim_requests(self, path):
        return json.loads(request(f"{self.simulator.url}/_sim/stats")[2])["requests"].get(path, 0)

    def test_the_report_counts_what_happened(self):
        started = time.time()
        # 20 GETs: the first is cold (it waits for the first poll), 18 get the body, the last
        # sends the ETag back and gets a 304.
        reader = KeepAlive(self.proxy.port)
        try:
            statuses = [reader.send("GET", "/doc") for _ in range(GETS - 1)]
        finally:
            reader.close()
        self.assertEqual(statuses, [200] * (GETS - 1))
        _, headers, _ = request(self.proxy.url("/doc"))
        etag = dict((k.lower(), v) for k, v in headers.items())["etag"] if isinstance(headers, dict) else headers["ETag"]
        status, _, _ = request(self.proxy.url("/doc"), headers={"If-None-Match": etag})
        self.assertEqual(status, 304)
        # Four subscribers; two changes, each pushed to all four as a patch.
        subscribers = [SSE(self.proxy, "/doc") for _ in range(SUBSCRIBERS)]
        for subscriber in subscribers:
            self.assertEqual(subscriber.event()[0], "snapshot")
        fast = [SSE(self.proxy, "/fast") for _ in range(2)]
        for subscriber in fast:
            self.assertEqual(subscriber.event()[0], "snapshot")
        fast_since = time.time()
        for version in (2, 3):
            self.put("doc", version)
            self.refresh()
            for subscriber in subscribers:
                name, data = subscriber.event()
                self.assertEqual((name, data["patch"]), ("patch", [{"op": "replace", "path": "/v", "value": version}]))
        # A refresh that finds nothing new.
        self.refresh()
        deadline = time.time() + 10
        while self.sim_requests("/doc") < 4 and time.time() < deadline:
            time.sleep(0.05)
        # The fast endpoint's subscribers stay 2 s.
        time.sleep(max(0, fast_since + 2 - time.time()))
        for subscriber in fast + subscribers:
            subscriber.close()
        fast_held = time.time() - fast_since
        report = self.report()

        doc = self.endpoint(report, "/doc")
        body = len(document(1))
        self.assertEqual(self.sim_requests("/doc"), 4)
        self.assertEqual((doc["upstream_requests"], doc["polls_answered"], doc["polls_changed"]), (4, 4, 3), doc)
        self.assertEqual(doc["no_change_ratio"], 0.25)
        self.assertEqual(doc["mirrored_gets"], GETS + 1)   # the 19, the ETag fetch and the 304
        # Each change to each subscriber, and the first state to the cold GET that waited for it.
        self.assertEqual(doc["pushes"], SUBSCRIBERS * 2 + 1)
        # Full bodies: 19 GETs answered 200 from the state, the 304, and each push; sent: the
        # same GETs, nothing for the 304, the first snapshot and the patch events.
        self.assertEqual(doc["bytes_full"], (GETS - 1) * body + body + (SUBSCRIBERS * 2 + 1) * body)
        pushed = doc["bytes_sent"] - (GETS - 1) * body
        self.assertGreater(pushed, body)
        self.assertLess(pushed, body + 200 + SUBSCRIBERS * 2 * 200, "patch events are small")
        self.assertEqual(doc["detection"]["changes"], 2)   # the first state is not a change
        # Direct polling every hour: the GETs, and almost nothing for a few seconds of subscribers.
        self.assertAlmostEqual(doc["direct_requests"], GETS + 1, delta=0.1)
        self.assertAlmostEqual(doc["avoided_requests"], GETS + 1 - 4, delta=0.1)

        quick = self.endpoint(report, "/fast")
        # Two subscribers for about 2 s, polling every 250 ms: about 16 requests.
        self.assertGreaterEqual(quick["subscriber_s"], 3)
        self.assertLessEqual(quick["subscriber_s"], 2 * fast_held + 1)
        expected = quick["mirrored_gets"] + 2 * fast_held * 4
        self.assertLessEqual(quick["direct_requests"], expected + 0.5)
        self.assertGreaterEqual(quick["direct_requests"], 2 * 2 * 4 - 0.5)
        self.assertGreater(quick["upstream_requests"], 0)
        self.assertLessEqual(quick["upstream_requests"], self.sim_requests("/fast"))

        totals = report["totals"]
        self.assertEqual(totals["upstream_requests"], doc["upstream_requests"] + quick["upstream_requests"])
        self.assertEqual(report["topics"][0]["name"], "/doc")   # it saved the most

        # The same numbers in /metrics.
        self.assertEqual(self.metric("deltacast_upstream_requests_total", ['endpoint="/doc"']), 4)
        self.assertEqual(self.metric("deltacast_client_requests_total", ['endpoint="/doc"', 'kind="get"']), GETS + 1)
        self.assertEqual(self.metric("deltacast_client_requests_total", ['endpoint="/doc"', 'kind="push"']), SUBSCRIBERS * 2 + 1)
        self.assertEqual(self.metric("deltacast_polls_changed_total", ['endpoint="/doc"', 'result="changed"']), 3)
        self.assertEqual(self.metric("deltacast_client_bytes_total", ['endpoint="/doc"', 'kind="full"']), doc["bytes_full"])
        self.assertEqual(self.metric("deltacast_detection_delay_bound_seconds_count", ['endpoint="/doc"']), 2)

        # The history: a sample every 5 s, with the upstream's rate.
        deadline = started + 20
        while not self.report()["history"]["samples"] and time.time() < deadline:
            time.sleep(0.2)
        samples = self.report()["history"]["samples"]
        self.assertTrue(samples, "no history sample within 20 s")
        wall, upstream, avoided, budget = samples[-1]
        self.assertLess(abs(wall / 1000 - time.time()), 30)
        self.assertGreaterEqual(upstream, 0)
        self.assertIsNone(budget)   # no budget configured

        # deltacast report: Markdown, and the JSON as the proxy gave it.
        run = subprocess.run([BINARY, "report", self.proxy.url(""), "--token", ADMIN], capture_output=True, text=True, timeout=30)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("# Deltacast migration report", run.stdout)
        row = next(line for line in run.stdout.splitlines() if line.startswith("| `/doc`"))
        self.assertRegex(row, r"^\| `/doc` \(every 3600 s\) \| 4 \| 21 \| 17 \(81 %\) \| 21 / 9 \| [\d.]+ KiB / [\d.]+ KiB \(\d+ %\) \| 25 % \|")
        self.assertIn("## Topics that saved the most", run.stdout)
        as_json = subprocess.run([BINARY, "report", self.proxy.url(""), "--token", ADMIN, "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(as_json.returncode, 0, as_json.stderr)
        self.assertEqual(self.endpoint(json.loads(as_json.stdout), "/doc")["upstream_requests"], 4)
        print(f"\n{run.stdout}", file=sys.stderr)

    def test_report_refusals(self):
        # The report is an admin route: no token, a wrong one.
        self.assertEqual(request(self.proxy.url("/deltacast/report"))[0], 401)
        self.assertEqual(request(self.proxy.url("/deltacast/report"), headers={"Authorization": "Bearer wrong-token-0123456789"})[0], 403)
        self.assertEqual(request(self.proxy.url("/deltacast/report"), method="POST", body=b"")[0], 405)
        wrong = subprocess.run([BINARY, "report", self.proxy.url(""), "--token", "wrong-token-0123456789"], capture_output=True, text=True, timeout=30)
        self.assertEqual(wrong.returncode, 1)
        self.assertRegex(wrong.stderr, r"deltacast report: GET /deltacast/report answered 403")
        missing = subprocess.run([BINARY, "report", self.proxy.url("")], capture_output=True, text=True, timeout=30,
                                 env={k: v for k, v in os.environ.items() if k != "DELTACAST_ADMIN_TOKEN"})
        self.assertEqual(missing.returncode, 2)
        self.assertIn("the report needs the admin token", missing.stderr)
        nobody = subprocess.run([BINARY, "report", "http://127.0.0.1:1", "--token", ADMIN], capture_output=True, text=True, timeout=30)
        self.assertEqual(nobody.returncode, 1)
        self.assertIn("cannot connect to 127.0.0.1:1", nobody.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
