#!/usr/bin/env python3
"""Native TLS against a real `deltacast serve`: handshakes from Python `ssl`, curl and
`openssl s_client`; sslyze's scan with no high or critical finding; slow and garbage
handshakes; an expired certificate replaced by SIGHUP while 1,000 TLS clients stay connected.
Run: DELTACAST_BIN=.build/debug/deltacast python3 Tests/Security/tls_test.py [SSLYZE]
"""
import asyncio
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(__file__))
from harness import ADMIN, SSE, Proxy, certificate, insecure_context, request, run, utc

SSLYZE = os.environ.get("SSLYZE", ".build/sslyze-venv/bin/sslyze")


def config(cert, key, extra=""):
    return f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
tls: {{ certificate: {cert}, key: {key}, handshake_timeout: 1s }}
limits: {{ max_connections_per_ip: 5000 }}
{extra}
endpoints:
  - path: /rooms/{{room}}
    source: publish
"""


class TLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="deltacast-tls-")
        cls.cert, cls.key = certificate(cls.directory, "server", utc(days=-1), utc(days=30))
        cls.proxy = Proxy(config(cls.cert, cls.key))
        assert cls.proxy.scheme == "https"
        cls.proxy.publish("/rooms/a", {"room": "a", "n": 1})
        cls.proxy.publish("/rooms/w", {"n": 1, "note": "long enough that a change travels as a patch"})

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()

    def verified(self):
        context = ssl.create_default_context(cafile=self.cert)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    def handshake(self, context):
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /rooms/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                response = b""
                while chunk := tls.recv(65536):
                    response += chunk
                return tls.version(), tls.selected_alpn_protocol(), tls.cipher(), response

    def test_python_ssl_tls13_with_alpn(self):
        version, alpn, cipher, response = self.handshake(self.verified())
        self.assertEqual(version, "TLSv1.3")
        self.assertEqual(alpn, "http/1.1")
        self.assertTrue(response.startswith(b"HTTP/1.1 200"))
        self.assertTrue(response.endswith(b'{"room": "a", "n": 1}') or b'"room"' in response)

    def test_python_ssl_tls12_forward_secret_aead(self):
        context = self.verified()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        version, alpn, cipher, _ = self.handshake(context)
        self.assertEqual(version, "TLSv1.2")
        self.assertTrue(cipher[0].startswith("ECDHE-"), cipher)
        self.assertTrue("GCM" in cipher[0] or "CHACHA20" in cipher[0], cipher)

    def test_old_protocols_are_refused(self):
        for flag in ["-tls1_1", "-tls1"]:
            result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.proxy.port}", flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
                                    input=b"", capture_output=True, timeout=20)
            self.assertNotEqual(result.returncode, 0, flag)
            self.assertNotIn(b"Cipher is ECDHE", result.stdout, flag)

    def test_curl_https_and_sse(self):
        result = subprocess.run(["curl", "-sS", "--cacert", self.cert, "-w", "\n%{http_version} %{ssl_verify_result}",
                                 f"https://localhost:{self.proxy.port}/rooms/a"], capture_output=True, text=True, timeout=20)
        body, meta = result.stdout.rsplit("\n", 1)
        self.assertEqual(json.loads(body), {"room": "a", "n": 1})
        self.assertEqual(meta, "1.1 0")
        stream = subprocess.Popen(["curl", "-sSN", "--cacert", self.cert, "-H", "Accept: text/event-stream",
                                   f"https://localhost:{self.proxy.port}/rooms/a"], stdout=subprocess.PIPE, text=True)
        try:
            lines = []
            while not any(line.startswith("data: ") for line in lines):
                lines.append(stream.stdout.readline())
            self.assertIn("event: snapshot\n", lines)
        finally:
            stream.kill()
            stream.wait()

    def test_wss_with_python_websockets(self):
        async def scenario():
            context = ssl.create_default_context(cafile=self.cert)
            async with websockets.connect(f"wss://localhost:{self.proxy.port}/rooms/w", ssl=context) as ws:
                snapshot = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual(snapshot["data"]["n"], 1)
                self.proxy.publish("/rooms/w", {"n": 2, "note": "long enough that a change travels as a patch"})
                patch = json.loads(await asyncio.wait_for(ws.recv(), 5))
                self.assertEqual((patch["type"], patch["base"]), ("patch", snapshot["cursor"]))
        run(scenario())

    def test_a_silent_client_is_dropped_at_the_handshake_timeout(self):
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as raw:
            started = time.time()
            self.assertEqual(raw.recv(1), b"")   # closed by the server, nothing sent
            self.assertLess(time.time() - started, 8)
        # ...while everyone else is served.
        self.assertEqual(self.handshake(self.verified())[0], "TLSv1.3")

    def test_plaintext_and_garbage_to_the_tls_port(self):
        for garbage in [b"GET /rooms/a HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(512), b"\x16\x03\x01\x00\x05hello"]:
            with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as raw:
                raw.sendall(garbage)
                received = b""
                try:
                    while chunk := raw.recv(4096):
                        received += chunk
                except ConnectionResetError:
                    pass
                self.assertNotIn(b"HTTP/1.1 200", received)
        self.assertEqual(self.handshake(self.verified())[0], "TLSv1.3")

    def test_sslyze_finds_nothing_high_or_critical(self):
        output = os.path.join(self.directory, "sslyze.json")
        subprocess.run([SSLYZE, f"localhost:{self.proxy.port}", f"--json_out={output}", "--quiet"], capture_output=True, timeout=600)
        with open(output) as handle:
            report = json.load(handle)
        scan = report["server_scan_results"][0]
        self.assertEqual(scan["scan_status"], "COMPLETED")
        results = scan["scan_result"]

        def accepted(name):
            return results[name]["result"]["accepted_cipher_suites"]
        for old in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"]:
            self.assertEqual(accepted(old), [], old)
        self.assertTrue(accepted("tls_1_2_cipher_suites"))
        self.assertTrue(accepted("tls_1_3_cipher_suites"))
        for suite in accepted("tls_1_2_cipher_suites"):
            name = suite["cipher_suite"]["name"]
            self.assertRegex(name, r"^TLS_ECDHE_(RSA|ECDSA)_WITH_(AES_(128|256)_GCM|CHACHA20_POLY1305)", name)
        self.assertFalse(results["heartbleed"]["result"]["is_vulnerable_to_heartbleed"])
        self.assertFalse(results["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"])
        self.assertIn(results["robot"]["result"]["robot_result"], ["NOT_VULNERABLE_NO_ORACLE", "NOT_VULNERABLE_RSA_NOT_SUPPORTED"])
        self.assertFalse(results["tls_compression"]["result"]["supports_compression"])
        renegotiation = results["session_renegotiation"]["result"]
        self.assertFalse(renegotiation["is_vulnerable_to_client_renegotiation_dos"])
        self.assertTrue(renegotiation["supports_secure_renegotiation"])
        self.assertTrue(results["tls_fallback_scsv"]["result"]["supports_fallback_scsv"])


class CertificateReloadTests(unittest.TestCase):
    CLIENTS = 1000

    def test_expired_certificate_replaced_by_sighup_while_1000_clients_stay(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        directory = tempfile.mkdtemp(prefix="deltacast-reload-")
        live_cert, live_key = certificate(directory, "live", utc(days=-10), utc(days=-1))   # expired
        proxy = Proxy(config(live_cert, live_key))
        try:
            proxy.publish("/rooms/big", {"n": 0, "note": "a change to this travels as a patch to every client"})
            strict = ssl.create_default_context(cafile=live_cert)
            with self.assertRaises(ssl.SSLCertVerificationError) as caught:
                with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                    strict.wrap_socket(raw, server_hostname="localhost")
            self.assertIn("expired", str(caught.exception))

            async def scenario():
                loose = insecure_context()
                readers = []
                for index in range(self.CLIENTS):
                    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, ssl=loose, server_hostname="localhost")
                    writer.write(b"GET /rooms/big HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
                    readers.append((reader, writer))
                for reader, _ in readers:
                    await asyncio.wait_for(reader.readuntil(b"event: snapshot\n"), 30)

                # New files in place (a renewal writes them over the old ones), then SIGHUP.
                fresh_cert, fresh_key = certificate(directory, "fresh", utc(days=-1), utc(days=90))
                os.replace(fresh_cert, live_cert)
                os.replace(fresh_key, live_key)
                proxy.signal(signal.SIGHUP)
                deadline = time.time() + 10
                while "tls_reload" not in proxy.log and time.time() < deadline:
                    await asyncio.sleep(0.05)
                self.assertIn("\"event\":\"tls_reload\"", proxy.log)

                # A verifying client now completes the handshake with the new certificate...
                fresh = ssl.create_default_context(cafile=live_cert)
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, ssl=fresh, server_hostname="localhost")
                writer.write(b"GET /rooms/big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                self.assertTrue((await reader.read()).startswith(b"HTTP/1.1 200"))
                writer.close()

                # ...and every one of the 1,000 still receives the next change.
                proxy.publish("/rooms/big", {"n": 1, "note": "a change to this travels as a patch to every client"})
                for reader, _ in readers:
                    await asyncio.wait_for(reader.readuntil(b"event: patch\n"), 30)
                for _, writer in readers:
                    writer.close()
                return len(readers)

            self.assertEqual(run(scenario()), self.CLIENTS)
        finally:
            proxy.stop()

    def test_a_broken_reload_keeps_the_old_certificate(self):
        directory = tempfile.mkdtemp(prefix="deltacast-reload-")
        cert, key = certificate(directory, "live", utc(days=-1), utc(days=30))
        proxy = Proxy(config(cert, key))
        try:
            with open(key, "w") as handle:
                handle.write("not a key")
            proxy.signal(signal.SIGHUP)
            deadline = time.time() + 10
            while "tls_reload_failed" not in proxy.log and time.time() < deadline:
                time.sleep(0.05)
            self.assertIn("tls_reload_failed", proxy.log)
            context = ssl.create_default_context(cafile=cert)
            with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    self.assertEqual(tls.version(), "TLSv1.3")
        finally:
            proxy.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
