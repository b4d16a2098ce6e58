"""Typed clients as a dashboard developer meets them.

- The declarations (`/deltacast.d.ts`): fetched from a real proxy, type-checked with Debian's
  `tsc --strict` against example dashboard code (`dashboard.ts`), which then runs in node
  against that proxy; two mistakes that must not compile, each with the compiler's message.
- Topic types from live data (`deltacast types`) against the simulated API: the module compiles
  with the declarations and types a template topic; endpoints that cannot be sampled are named
  with the reason while the others are written; `deltacast check --schema` reports a changed
  upstream shape with the pointer that changed."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import ADMIN, BINARY, Proxy, Simulator, request  # noqa: E402

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
        # tearDownClass does not run when setUpClass fails: stop the proxy here then.
        try:
            for served, saved in (("/deltacast.d.ts", "deltacast.d.ts"), ("/deltacast.mjs", "deltacast.js")):
                status, _, body = request(cls.proxy.url(served))
                assert status == 200, (served, status)
                with open(os.path.join(cls.directory, saved), "wb") as handle:
                    handle.write(body)
        except BaseException:
            cls.proxy.stop()
            raise
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


class TopicTypesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.simulator = Simulator()
        cls.put({"items": [{"id": n, "price": 10 * n, "side": "buy" if n % 3 else "sell"} for n in range(6)], "open": True})
        cls.directory = tempfile.mkdtemp(prefix="deltacast-topic-types-")
        cls.config = os.path.join(cls.directory, "deltacast.yaml")
        with open(cls.config, "w") as handle:
            handle.write(f"""listen: 127.0.0.1:0
upstream: {{ base: {cls.simulator.url} }}
endpoints:
  - path: /api/prices
    interval: 1s
  - path: /api/users/{{user}}/notifications
    interval: 2s
    auth: passthrough
  - path: /book
    upstream: /book
    interval: 1s
  - path: /live/{{room}}
    source: publish
""")
        cls.proxy = Proxy("listen: 127.0.0.1:0\nendpoints:\n  - path: /x\n    source: publish\n")
        try:
            status, _, body = request(cls.proxy.url("/deltacast.d.ts"))
            assert status == 200
            with open(os.path.join(cls.directory, "deltacast.d.ts"), "wb") as handle:
                handle.write(body)
        except BaseException:
            cls.proxy.stop()
            cls.simulator.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.simulator.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    @classmethod
    def put(cls, document):
        request(f"{cls.simulator.url}/_sim/docs/book", method="PUT", body=json.dumps(document).encode(), headers={"Content-Type": "application/json"})

    def deltacast(self, *arguments):
        return subprocess.run([BINARY, *arguments], capture_output=True, text=True, timeout=120)

    def types(self, out, *extra):
        return self.deltacast("types", "-c", self.config, "--samples", "2", "--interval", "100ms", "--out", out, *extra)

    def test_the_module_compiles_and_types_each_topic(self):
        out = os.path.join(self.directory, "all")
        result = self.types(out, "--param", "user=7", "-H", "Authorization: Bearer user-7")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(sorted(os.listdir(out)), ["Book.schema.json", "Notifications.schema.json", "Prices.schema.json", "topics.d.ts"])
        with open(os.path.join(out, "topics.d.ts")) as handle:
            module = handle.read()
        self.assertIn("    side: 'buy' | 'sell';", module)
        self.assertIn("[topic: `/api/users/${string}/notifications`]: Notifications;", module)
        self.assertIn("/** `/live/{room}`: no type: source: publish: nothing to sample. */", module)
        with open(os.path.join(out, "Book.schema.json")) as handle:
            schema = json.load(handle)
        self.assertEqual(schema["$schema"], "https://json-schema.org/draft/2020-12/schema")
        self.assertEqual(schema["properties"]["items"]["items"]["properties"]["price"], {"type": "integer"})
        shutil.copy(os.path.join(self.directory, "deltacast.d.ts"), out)

        def compile(body):
            with open(os.path.join(out, "dashboard.ts"), "w") as handle:
                handle.write("import { Deltacast } from './deltacast.js';\nimport { Topics } from './topics.js';\n"
                             "const dc = new Deltacast<Topics>('http://127.0.0.1:1');\n" + body)
            return subprocess.run(TSC + ["--noEmit", os.path.join(out, "dashboard.ts")], cwd=out, capture_output=True, text=True, timeout=120)

        good = compile("dc.subscribe('/book', { onState(book) { console.log(book.open, book.items.filter((i) => i.side === 'sell').length); } });\n"
                       "dc.subscribe('/api/users/12/notifications', { onState(n) { console.log(n.unread, n.items[0].text); } });\n"
                       "dc.subscribe('/api/prices', { onState(p) { console.log(p.items.map((i) => i.price)); } });\n")
        self.assertEqual(good.returncode, 0, good.stdout)
        bad = compile("dc.subscribe('/api/users/12/notifications', { onState(n) { console.log(n.count); } });\n"
                      "dc.subscribe('/book', { onState(book) { if (book.items[0].side === 'hold') {} } });\n")
        self.assertNotEqual(bad.returncode, 0)
        print("\n  " + bad.stdout.strip().replace("\n", "\n  "), file=sys.stderr)
        self.assertIn("error TS2339: Property 'count' does not exist on type 'Notifications'.", bad.stdout)
        self.assertIn("error TS2367: This condition will always return 'false' since the types '\"buy\" | \"sell\"' and '\"hold\"' have no overlap.", bad.stdout)

    def test_endpoints_that_cannot_be_sampled_are_named_and_the_others_written(self):
        out = os.path.join(self.directory, "partial")
        result = self.types(out)
        self.assertEqual(result.returncode, 1)
        self.assertIn("/api/users/{user}/notifications: not typed: needs a value for {user} (--param user=VALUE)", result.stderr)
        self.assertIn("1 endpoint could not be sampled", result.stdout)
        self.assertEqual(sorted(os.listdir(out)), ["Book.schema.json", "Prices.schema.json", "topics.d.ts"])
        result = self.types(out, "--param", "user=7")
        self.assertIn("auth: passthrough needs a user's credentials: pass them with -H 'Authorization: ...'", result.stderr)
        result = self.types(out, "--param", "user=7", "-H", "Authorization: Bearer wrong")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"notifications: not typed: http://127\.0\.0\.1:\d+/api/users/7/notifications answered 401: pass credentials with -H")

    def test_check_schema_reports_a_changed_shape_with_its_pointer(self):
        out = os.path.join(self.directory, "check")
        self.assertEqual(self.types(out, "--param", "user=7", "-H", "Authorization: Bearer user-7").returncode, 0)
        arguments = ["check", "-c", self.config, "--schema", out, "--param", "user=7", "-H", "Authorization: Bearer user-7"]
        same = self.deltacast(*arguments)
        self.assertEqual(same.returncode, 0, same.stdout + same.stderr)
        self.assertIn(f"  /book: matches {out}/Book.schema.json", same.stdout)
        try:
            self.put({"items": [{"id": 0, "price": "10.00", "side": "buy", "currency": "EUR"}, {"price": 3, "side": "hold"}], "open": True})
            changed = self.deltacast(*arguments)
            print("\n  " + changed.stderr.strip().replace("\n", "\n  "), file=sys.stderr)
            self.assertEqual(changed.returncode, 1)
            self.assertIn('  /book /items/0/price: expected integer, found string "10.00"', changed.stderr)
            self.assertIn("  /book /items/1/id: the required member is missing", changed.stderr)
            self.assertIn('  /book /items/1/side: "hold" is not one of "buy", "sell"', changed.stderr)
            self.assertIn("  /book /items/0/currency: a member the schema does not have (string) (added)", changed.stdout)
            self.assertIn(f"3 differences would break a client typed from {out}", changed.stderr)
            # Only added members: listed, exit 0.
            self.put({"items": [{"id": n, "price": 10 * n, "side": "buy" if n % 3 else "sell", "note": "new"} for n in range(6)], "open": True})
            added = self.deltacast(*arguments)
            self.assertEqual(added.returncode, 0, added.stdout + added.stderr)
            self.assertIn("  /book /items/0/note: a member the schema does not have (string) (added)", added.stdout)
        finally:
            self.put({"items": [{"id": n, "price": 10 * n, "side": "buy" if n % 3 else "sell"} for n in range(6)], "open": True})

    def test_the_proxy_serves_the_types_of_what_it_holds_when_asked_to(self):
        with open(self.config) as handle:
            config = handle.read()
        proxy = Proxy(config.replace("listen: 127.0.0.1:0\n", "listen: 127.0.0.1:0\ntypes: true\n"))
        try:
            for path in ("/book", "/api/prices"):
                self.assertEqual(request(proxy.url(path))[0], 200)
            status, headers, body = request(proxy.url("/deltacast/types.d.ts"))
            self.assertEqual(status, 200)
            self.assertEqual(headers["Content-Type"], "application/typescript; charset=utf-8")
            module = body.decode()
            self.assertIn("/** `/book`: from 1 sample. */\nexport interface Book {", module)
            self.assertIn("    side: 'buy' | 'sell';", module)
            # A user's states are not shown, not even as types.
            self.assertIn("/** `/api/users/{user}/notifications`: no type: auth: passthrough: not inferred from users' states", module)
            out = os.path.join(self.directory, "served")
            os.makedirs(out, exist_ok=True)
            shutil.copy(os.path.join(self.directory, "deltacast.d.ts"), out)
            with open(os.path.join(out, "topics.d.ts"), "w") as handle:
                handle.write(module)
            with open(os.path.join(out, "dashboard.ts"), "w") as handle:
                handle.write("import { Deltacast } from './deltacast.js';\nimport { Topics } from './topics.js';\n"
                             "new Deltacast<Topics>('http://127.0.0.1:1').subscribe('/book', { onState(b) { console.log(b.items[0].price + 1); } });\n")
            compiled = subprocess.run(TSC + ["--noEmit", os.path.join(out, "dashboard.ts")], cwd=out, capture_output=True, text=True, timeout=120)
            self.assertEqual(compiled.returncode, 0, compiled.stdout)
        finally:
            proxy.stop()
        status, _, body = request(self.proxy.url("/deltacast/types.d.ts"))
        self.assertEqual(status, 404)
        self.assertIn(b"set types: true in the configuration", body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
