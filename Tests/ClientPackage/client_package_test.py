"""The DeltacastClient library product used by another package, as an app would: this
directory's package depends on the repository by path and on the product by name; it is built
with SwiftPM, then run against a real `deltacast serve`, and prints the first state it decodes.

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
    def test_another_package_builds_against_the_product_and_subscribes(self):
        scratch = os.path.join(ROOT, ".build-client-package")
        build = subprocess.run(["swift", "build", "--package-path", HERE, "--scratch-path", scratch],
                               capture_output=True, text=True, timeout=900)
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
            self.assertRegex(run.stdout, r"^[a-z0-9]{4,12}-1 items,market,version\n$")
        finally:
            proxy.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
