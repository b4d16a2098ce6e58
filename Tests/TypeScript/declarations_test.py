"""The TypeScript declarations (`/deltacast.d.ts`) as a dashboard developer meets them: fetched
from a real proxy, type-checked with Debian's `tsc --strict` against example dashboard code
(`dashboard.ts`), which then runs in node against that proxy; and two mistakes that must not
compile, each with the compiler's message."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, Proxy, request  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TSC = ["tsc", "--strict", "--target", "es2020", "--module", "es2020", "--moduleResolution", "node", "--lib", "es2020,dom"]


class DeclarationsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proxy = Proxy(f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
endpoints:
  - path: /prices
    source: publish
    array_keys: {{ /items: id }}
  - path: /users/{{user}}/feed
    source: publish
  - path: /other
    source: publish
""")
        cls.directory = tempfile.mkdtemp(prefix="deltacast-types-")
        for served, saved in (("/deltacast.d.ts", "deltacast.d.ts"), ("/deltacast.mjs", "deltacast.js")):
            status, _, body = request(cls.proxy.url(served))
            assert status == 200, (served, status)
            with open(os.path.join(cls.directory, saved), "wb") as handle:
                handle.write(body)
        with open(os.path.join(cls.directory, "package.json"), "w") as handle:
            handle.write('{"type": "module"}\n')

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def compile(self, name, source, emit=False):
        path = os.path.join(self.directory, name)
        with open(path, "w") as handle:
            handle.write(source)
        arguments = TSC + ([] if emit else ["--noEmit"]) + [path]
        return subprocess.run(arguments, cwd=self.directory, capture_output=True, text=True, timeout=120)

    def test_the_dashboard_compiles_and_runs_against_the_proxy(self):
        with open(os.path.join(HERE, "dashboard.ts")) as handle:
            source = handle.read()
        compiled = self.compile("dashboard.ts", source, emit=True)
        self.assertEqual(compiled.returncode, 0, compiled.stdout + compiled.stderr)
        items = [{"id": n, "price": 10 * n} for n in range(5)]
        self.proxy.publish("/prices", {"version": 1, "items": items, "market": "open", "note": "x" * 200})
        self.proxy.publish("/users/42/feed", {"unread": 1, "items": [{"text": "hello"}]})
        node = subprocess.Popen(["node", "--experimental-websocket", "--no-warnings", os.path.join(self.directory, "dashboard.js"),
                                 self.proxy.url(""), "websocket"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        try:
            def wait_for(predicate, what):
                deadline = time.time() + 20
                while time.time() < deadline:
                    line = node.stdout.readline()
                    if not line:
                        break
                    lines.append(json.loads(line))
                    if predicate(lines[-1]):
                        return lines[-1]
                self.fail(f"no {what} in {lines}; stderr: {node.stderr.read() if node.poll() is not None else ''}")

            first = wait_for(lambda line: line.get("topic") == "/prices" and line.get("type") == "snapshot", "first state")
            self.assertEqual((first["version"], first["total"], first["market"]), (1, 100, "open"))
            wait_for(lambda line: line.get("topic") == "/users/42/feed", "feed state")
            items[2]["price"] = 25
            self.proxy.publish("/prices", {"version": 2, "items": items, "market": "closed", "note": "x" * 200})
            patched = wait_for(lambda line: line.get("topic") == "/prices" and line.get("type") == "patch", "patched state")
            self.assertEqual((patched["version"], patched["total"], patched["market"]), (2, 105, "closed"))
            patch = wait_for(lambda line: "patch" in line, "onPatch")
            self.assertIn("replace /items/2/price", patch["patch"])
            self.proxy.publish("/other", {"done": True})
            done = wait_for(lambda line: line.get("topic") == "/other", "the last topic")
            self.assertEqual((done["pricesVersion"], done["cursor"]), (2, patch["cursor"]))
            self.assertEqual(node.wait(10), 0)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
            node.stdout.close()
            node.stderr.close()
        feed = [line for line in lines if line.get("topic") == "/users/42/feed"]
        self.assertEqual(feed[0], {"topic": "/users/42/feed", "unread": 1, "first": "hello"})
        self.assertEqual(lines[0], {"transport": "websocket"})

    def test_a_wrong_option_name_does_not_compile(self):
        result = self.compile("wrong_option.ts", """import { Deltacast } from './deltacast.js';
const dc = new Deltacast('http://127.0.0.1:1', { tranports: ['sse'] });
dc.close();
""")
        self.assertNotEqual(result.returncode, 0)
        print("\n  " + result.stdout.strip(), file=sys.stderr)
        self.assertIn("wrong_option.ts(2,50): error TS2345", result.stdout)
        self.assertIn("'tranports' does not exist in type 'DeltacastOptions'", result.stdout)

    def test_reading_a_field_the_topic_type_lacks_does_not_compile(self):
        result = self.compile("missing_field.ts", """import { Deltacast } from './deltacast.js';
interface Prices { version: number; items: { id: number; price: number }[] }
const dc = new Deltacast<{ '/prices': Prices }>('http://127.0.0.1:1');
dc.subscribe('/prices', { onState(prices) { console.log(prices.volume); } });
dc.subscribe<Prices>('/elsewhere', { onState(prices) { console.log(prices.items[0].cost); } });
""")
        self.assertNotEqual(result.returncode, 0)
        print("\n  " + result.stdout.strip().replace("\n", "\n  "), file=sys.stderr)
        self.assertIn("missing_field.ts(4,64): error TS2339: Property 'volume' does not exist on type 'Prices'.", result.stdout)
        self.assertIn("missing_field.ts(5,84): error TS2339: Property 'cost' does not exist on type '{ id: number; price: number; }'.", result.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
