#!/usr/bin/env python3
"""OAuth2 client credentials against the simulator's token endpoint: tokens that live 2 s and
rotate, an endpoint that fails, answers broken JSON or refuses the client, and tokens revoked
early. A subscriber watches a topic of `/api/secure` (which answers only a live token) all
along. The proxy's secret comes from a file and must never show.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Interop/oauth2_test.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, BINARY, SSE, Proxy, Simulator, request  # noqa: E402

SECRET = "sim-secret"


def config(simulator, secret_file):
    return f"""
listen: 127.0.0.1:0
upstream:
  base: {simulator.url}
  timeout: 2s
  oauth2:
    token_url: {simulator.url}/_sim/oauth/token
    client_id: sim-client
    client_secret: "file:{secret_file}"
    scope: "secure:read"
admin: {{ token: {ADMIN} }}
endpoints:
  - path: /api/secure
    interval: 250ms
    jitter: 0ms
"""


class OAuth2Tests(unittest.TestCase):
    def setUp(self):
        self.simulator = Simulator()
        self.directory = tempfile.mkdtemp(prefix="deltacast-oauth2-")
        self.secret_file = os.path.join(self.directory, "secret")
        with open(self.secret_file, "w") as handle:
            handle.write(SECRET + "\n")
        self.sim("/_sim/oauth?mode=ok&ttl=2", "POST")
        self.proxy = Proxy(config(self.simulator, self.secret_file))

    def tearDown(self):
        self.proxy.stop()
        self.simulator.stop()

    def sim(self, path, method="GET"):
        return json.loads(request(f"{self.simulator.url}{path}", method=method, body=b"" if method == "POST" else None)[2])

    def events_until(self, stream, predicate, seconds=15):
        """Events of `stream` until `predicate(name, data)` holds; returns them all."""
        seen = []
        deadline = time.time() + seconds
        while time.time() < deadline:
            name, data = stream.event(timeout=max(0.1, deadline - time.time()))
            seen.append((name, data))
            if predicate(name, data):
                return seen
        self.fail(f"no such event within {seconds} s: {seen[-5:]}")

    def test_short_lived_tokens_rotate_failures_recover_and_no_secret_shows(self):
        stream = SSE(self.proxy, "/api/secure")
        try:
            self.assertEqual(stream.status, 200)
            self.events_until(stream, lambda name, data: name == "snapshot")
            # Tokens live 2 s; polls every 250 ms for 7 s share them, refreshed ahead of expiry.
            time.sleep(7)
            state = self.sim("/_sim/oauth")
            self.assertGreaterEqual(state["served"], 20)
            self.assertGreaterEqual(state["issued"], 3)
            self.assertLessEqual(state["issued"], 8, "a token per poll would be about 28")
            self.assertEqual(state["expired_uses"], {}, "an expired token was sent")
            self.assertEqual(state["unknown_uses"], 0)

            # The endpoint refuses the client: the subscriber hears it, without the secret.
            self.sim("/_sim/oauth?mode=deny", "POST")
            self.sim("/_sim/oauth?revoke=1", "POST")
            events = self.events_until(stream, lambda name, data: name == "status" and data.get("stale"))
            message = events[-1][1]["message"]
            self.assertEqual(message, "no credentials for the upstream: the OAuth2 token endpoint answered 401 (invalid_client)")
            # Back: the next fetch after the backoff gets a token, and the topic is well again.
            self.sim("/_sim/oauth?mode=ok", "POST")
            self.events_until(stream, lambda name, data: name == "status" and data.get("upstream") == "ok", seconds=20)

            # Broken JSON, a 503, an answer past the 64 KiB limit: each is a stale status with its
            # reason, and each recovers.
            for mode, reason in (("malformed", "the OAuth2 token endpoint's answer is not a JSON object"),
                                 ("fail", "the OAuth2 token endpoint answered 503 (temporarily_unavailable)"),
                                 ("huge", "the OAuth2 token endpoint's answer is larger than 65536 bytes")):
                self.sim(f"/_sim/oauth?mode={mode}", "POST")
                self.sim("/_sim/oauth?revoke=1", "POST")
                events = self.events_until(stream, lambda name, data: name == "status" and data.get("stale"))
                self.assertEqual(events[-1][1]["message"], "no credentials for the upstream: " + reason)
                self.sim("/_sim/oauth?mode=ok", "POST")
                self.events_until(stream, lambda name, data: name == "status" and data.get("upstream") == "ok", seconds=20)

            # A token revoked early: the 401 drops it, the poll goes again with a new one, and
            # the subscriber hears nothing of it.
            before = self.sim("/_sim/oauth")
            self.sim("/_sim/oauth?revoke=1", "POST")
            deadline = time.time() + 10
            while time.time() < deadline and not (self.sim("/_sim/oauth")["issued"] > before["issued"]
                                                  and self.sim("/_sim/oauth")["served"] > before["served"]):
                time.sleep(0.1)
            after = self.sim("/_sim/oauth")
            self.assertGreater(after["issued"], before["issued"])
            self.assertGreater(after["served"], before["served"])
            stream.socket.settimeout(0.2)
            try:
                while True:
                    name, data = stream.event(timeout=0.2)
                    self.assertFalse(name == "status" and data.get("stale"), f"a revoked token reached the subscriber: {data}")
            except (TimeoutError, OSError):
                pass
            # Never an expired token sent twice.
            self.assertTrue(all(count <= 1 for count in self.sim("/_sim/oauth")["expired_uses"].values()))
        finally:
            stream.close()
        # The secret shows nowhere: the log, /metrics, the status page, `check`.
        _, _, metrics = request(self.proxy.url("/metrics"))
        _, _, status = request(self.proxy.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}"})
        check = subprocess.run([BINARY, "check", "-c", self.proxy.config_path], capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        for where, text in (("log", self.proxy.log), ("metrics", metrics.decode()), ("status", status.decode()), ("check", check.stdout + check.stderr)):
            self.assertNotIn(SECRET, text, f"the secret shows in the {where}")
            self.assertNotIn("Basic ", text, f"the client credentials show in the {where}")

    def test_a_secret_file_that_cannot_be_read_is_a_config_error(self):
        broken = config(self.simulator, os.path.join(self.directory, "absent"))
        path = os.path.join(self.directory, "broken.yaml")
        with open(path, "w") as handle:
            handle.write(broken)
        check = subprocess.run([BINARY, "check", "-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 1)
        self.assertIn(f"broken.yaml:9:20: cannot read upstream.oauth2.client_secret from '{self.directory}/absent': No such file or directory", check.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
