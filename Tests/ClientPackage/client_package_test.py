"""The DeltacastClient library product used by another package, as an app would: this
directory's package depends on the repository by path and on the product by name; it is built
with SwiftPM, then run against a real `deltacast serve`, and prints the first state it decodes.
Built twice: as Linux builds the client (sockets I/O), and with DELTACAST_CLIENT_IO=foundation,
the configuration Apple platforms build (Foundation's URLSession only).

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/ClientPackage/client_package_test.py
"""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "..", "Security"))
from harness import ADMIN, Proxy  # noqa: E402


class ClientPackageTest(unittest.TestCase):
    def build_and_subscribe(self, scratch, environment):
        """Builds this package into `scratch`, then runs it against a real proxy: its output."""
        build = subprocess.run(["swift", "build", "--package-path", HERE, "--scratch-path", scratch],
                               capture_output=True, text=True, timeout=900, env={**os.environ, **environment})
        self.assertEqual(build.returncode, 0, build.stdout[-3000:] + build.stderr[-3000:])
        proxy = Proxy(f"""listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
endpoints:
  - path: /prices
    source: publish
""")
        try:
            status, _, _ = proxy.publish("/prices", {"version": 1, "items": [], "market": "open"})
            self.assertEqual(status, 200)
            binary = os.path.join(scratch, "debug", "ClientPackage")
            run = subprocess.run([binary, proxy.url(""), "/prices"], capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            return run.stdout
        finally:
            proxy.stop()

    def test_another_package_builds_against_the_product_and_subscribes(self):
        output = self.build_and_subscribe(os.path.join(ROOT, ".build-client-package"), {})
        self.assertRegex(output, r"^connected: websocket\n[a-z0-9]{4,12}-1 items,market,version\n$")

    def test_the_foundation_only_configuration_builds_no_sockets_and_subscribes_over_sse(self):
        # What Apple platforms build: the client on Foundation's URLSession, with none of the
        # sockets I/O's modules (the event loop, TLS, OpenSSL, the wire codecs) compiled.
        scratch = os.path.join(ROOT, ".build-client-foundation")
        output = self.build_and_subscribe(scratch, {"DELTACAST_CLIENT_IO": "foundation"})
        self.assertRegex(output, r"^connected: sse\n[a-z0-9]{4,12}-1 items,market,version\n$")
        # SwiftPM plans every target of the graph; the modules it compiled are these.
        compiled = {name.removesuffix(".swiftmodule") for name in os.listdir(os.path.join(scratch, "debug", "Modules"))
                    if name.endswith(".swiftmodule")}
        self.assertEqual(compiled, {"ClientPackage", "DeltacastClient", "DeltacastBase", "DeltacastJSON"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
