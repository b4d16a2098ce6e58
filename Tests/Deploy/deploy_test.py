#!/usr/bin/env python3
"""Running Deltacast as a service: the examples under examples/deploy, checked for real.

- the systemd unit passes `systemd-analyze verify` (with ExecStart pointed at the built binary);
- `deltacast serve` speaks the sd_notify protocol on NOTIFY_SOCKET (a datagram socket here, a
  path or an abstract name): READY=1 once it listens, RELOADING=1 then READY=1 around a SIGHUP
  reload (with STATUS naming a failed one), STOPPING=1 on SIGTERM;
- the Dockerfile is built and its container answers /readyz when a Docker engine is present;
  without one, the test says so and checks what can be checked without it (stages, user,
  HEALTHCHECK).

The nginx example is run for real by the client-library and push-client suites (DELTACAST_NGINX=1).

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Deploy/deploy_test.py
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.path.abspath(os.environ.get("DELTACAST_BIN", os.path.join(ROOT, ".build", "debug", "deltacast")))
DEPLOY = os.path.join(ROOT, "examples", "deploy")
CONFIG = """
listen: 127.0.0.1:0
endpoints:
  - path: /live/{room}
    source: publish
"""


class SystemdUnitTest(unittest.TestCase):
    def test_the_unit_passes_systemd_analyze_verify(self):
        with open(os.path.join(DEPLOY, "deltacast.service")) as handle:
            unit = handle.read()
        for directive in ["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=", "NoNewPrivileges=yes",
                          "ProtectSystem=strict", "DynamicUser=yes"]:
            self.assertIn(directive, unit)
        directory = tempfile.mkdtemp(prefix="deltacast-unit-")
        path = os.path.join(directory, "deltacast.service")
        with open(path, "w") as handle:
            handle.write(unit.replace("/usr/local/bin/deltacast", BINARY))
        result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
        # verify exits 0 even for directives it ignores: any output is a finding.
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_verify_would_notice_a_broken_directive(self):
        directory = tempfile.mkdtemp(prefix="deltacast-unit-")
        path = os.path.join(directory, "broken.service")
        with open(os.path.join(DEPLOY, "deltacast.service")) as handle:
            unit = handle.read().replace("/usr/local/bin/deltacast", BINARY).replace("Type=notify", "Type=notifyy")
        with open(path, "w") as handle:
            handle.write(unit)
        result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
        self.assertIn("Failed to parse service type", result.stderr)


class NotifyTest(unittest.TestCase):
    def start(self, address, bind_to):
        self.directory = tempfile.mkdtemp(prefix="deltacast-notify-")
        self.config = os.path.join(self.directory, "deltacast.yaml")
        with open(self.config, "w") as handle:
            handle.write(CONFIG)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(bind_to)
        self.socket.settimeout(20)
        self.process = subprocess.Popen([BINARY, "serve", "-c", self.config], env={**os.environ, "NOTIFY_SOCKET": address},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def tearDown(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.socket.close()

    def message(self):
        return dict(line.split("=", 1) for line in self.socket.recv(4096).decode().split("\n") if line)

    def run_lifecycle(self):
        ready = self.message()
        self.assertEqual(ready["READY"], "1")
        self.assertEqual(ready["MAINPID"], str(self.process.pid))
        self.assertRegex(ready["STATUS"], r"^serving on port \d+$")
        self.process.send_signal(signal.SIGHUP)
        reloading = self.message()
        self.assertEqual(reloading["RELOADING"], "1")
        self.assertRegex(reloading["MONOTONIC_USEC"], r"^\d+$")
        self.assertEqual(self.message()["READY"], "1")
        with open(self.config, "w") as handle:
            handle.write(CONFIG.replace("path: /live/{room}", "path: live/{room}"))
        self.process.send_signal(signal.SIGHUP)
        self.assertEqual(self.message()["RELOADING"], "1")
        failed = self.message()
        self.assertEqual(failed["READY"], "1")
        self.assertRegex(failed["STATUS"], r"^reload failed, running the previous configuration: .*deltacast.yaml:4:11: path 'live/{room}' must start with '/'$")
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.message(), {"STOPPING": "1"})
        self.assertEqual(self.process.wait(15), 0)

    def test_ready_reloading_and_stopping_on_a_path_socket(self):
        directory = tempfile.mkdtemp(prefix="deltacast-notify-socket-")
        path = os.path.join(directory, "notify")
        self.start(path, path)
        self.run_lifecycle()

    def test_ready_reloading_and_stopping_on_an_abstract_socket(self):
        name = f"deltacast-notify-{os.getpid()}-{time.time_ns()}"
        self.start("@" + name, "\0" + name)
        self.run_lifecycle()


class DockerfileTest(unittest.TestCase):
    def test_the_dockerfile_builds_a_small_non_root_image_with_a_healthcheck(self):
        with open(os.path.join(DEPLOY, "Dockerfile")) as handle:
            text = handle.read()
        stages = re.findall(r"^FROM ", text, re.M)
        self.assertGreaterEqual(len(stages), 2, "multi-stage")
        self.assertRegex(text, r"(?m)^FROM debian:bookworm-slim$")
        self.assertRegex(text, r"(?m)^USER 10001:10001$")
        self.assertRegex(text, r"(?m)^HEALTHCHECK .*\n\s+CMD curl -fsS -o /dev/null http://127.0.0.1:8080/readyz")
        result = subprocess.run([BINARY, "check", "-c", os.path.join(DEPLOY, "container.yaml")], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        engine = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
        if not engine:
            print("\nDockerfile: no Docker engine here; checked its stages, user, HEALTHCHECK and configuration, not built", file=sys.stderr)
            return
        tag = f"deltacast-test:{os.getpid()}"
        subprocess.run(["docker", "build", "-f", os.path.join(DEPLOY, "Dockerfile"), "-t", tag, ROOT], check=True, timeout=1800)
        container = subprocess.run(["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8080", tag], check=True, capture_output=True, text=True).stdout.strip()
        try:
            port = subprocess.run(["docker", "port", container, "8080"], check=True, capture_output=True, text=True).stdout.split(":")[-1].strip()
            deadline = time.time() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                        self.assertEqual(response.status, 200)
                        break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.2)
            user = subprocess.run(["docker", "exec", container, "id", "-u"], capture_output=True, text=True).stdout.strip()
            self.assertEqual(user, "10001")
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
