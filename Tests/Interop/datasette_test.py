#!/usr/bin/env python3
"""Real upstream shapes against Datasette (PyPI), a third-party JSON API over SQLite, and the
built-in simulator:

- `deltacast discover` proposes array keys (a root array's too) and the volatile `query_ms`;
- the proxy polls an absolute upstream URL with a fixed query string and keys a bare array
  with `array_keys: { "": id }`: a row that moves sends a move and one replace, not a snapshot;
- `{param}` in a query value picks one row, and a value that tries to add a query pair cannot;
- per-endpoint headers replace `upstream.headers` of the same name;
- `deltacast types` writes a module that compiles with `tsc --strict`, and a dashboard that
  reads a column the table lacks does not.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Interop/datasette_test.py
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
from harness import BINARY, SSE, Proxy, Simulator, request  # noqa: E402


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def discover(*arguments):
    """`deltacast discover ARGUMENTS` as a process: (exit status, standard output, standard error)."""
    result = subprocess.run([BINARY, "discover", *arguments], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


def wait_for(url, seconds=30):
    """Polls `url` until it answers 200 (a bounded loop: the server is starting)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


class DatasetteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="deltacast-datasette-")
        cls.database = os.path.join(cls.directory, "market.db")
        with sqlite3.connect(cls.database) as db:
            db.execute("create table prices (id integer primary key, symbol text, price real)")
            db.executemany("insert into prices values (?, ?, ?)", [(i, f"S{i}", 100.0 + i) for i in range(1, 6)])
        cls.port = free_port()
        cls.datasette = subprocess.Popen(
            [sys.executable, "-m", "datasette", "serve", cls.database, "-h", "127.0.0.1", "-p", str(cls.port),
             "--setting", "sql_time_limit_ms", "5000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.base = f"http://127.0.0.1:{cls.port}"
        wait_for(cls.base + "/market/prices.json")

    @classmethod
    def tearDownClass(cls):
        cls.datasette.terminate()
        cls.datasette.wait(10)
        if hasattr(cls, "declarations_proxy"):
            cls.declarations_proxy.stop()

    def sql(self, statement, *args):
        with sqlite3.connect(self.database) as db:
            db.execute(statement, args)

    def discover(self, url, *extra):
        status, out, error = discover(url, "--samples", "3", "--interval", "100ms", *extra)
        self.assertEqual(status, 0, error)
        return out

    def test_discover_proposes_the_row_key_and_ignores_query_ms(self):
        out = self.discover(self.base + "/market/prices.json?_shape=objects&_size=max", "--path", "/prices")
        self.assertIn("  - path: /prices\n", out)
        self.assertIn(f"    upstream: {self.base}/market/prices.json?_shape=objects&_size=max\n", out)
        self.assertIn("    array_keys: { /rows: id }\n", out)
        self.assertIn("    ignore: [/query_ms]\n", out)
        self.assertIn("# conditional requests: no: it sends neither ETag nor Last-Modified", out)
        self.assertRegex(out, r"# array_keys /rows → id: present, unique and a string or whole number in all 15 elements")

    def test_discover_keys_a_bare_array_with_the_root_pointer(self):
        out = self.discover(self.base + "/market/prices.json?_shape=array")
        self.assertIn('    array_keys: { "": id }\n', out)
        self.assertIn("# array_keys the root array → id:", out)
        self.assertIn("nothing changed in 2 intervals", out)

    def test_discover_proposal_is_a_valid_endpoint_block(self):
        out = self.discover(self.base + "/market/prices.json?_shape=objects", "--path", "/prices")
        path = os.path.join(self.directory, "proposed.yaml")
        with open(path, "w") as handle:
            handle.write("listen: 127.0.0.1:0\nendpoints:\n" + out)
        result = subprocess.run([BINARY, "check", "-c", path], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_discover_fails_clearly_on_an_error_status(self):
        status, _, error = discover(self.base + "/missing-database.json", "--samples", "2", "--interval", "0ms")
        self.assertEqual(status, 1)
        self.assertIn("answered 404; discover needs a 2xx answer", error)

    def test_a_keyed_root_array_and_a_fixed_query_reach_clients_as_small_patches(self):
        proxy = Proxy(f"""
listen: 127.0.0.1:0
endpoints:
  - path: /prices
    upstream: {self.base}/market/prices.json?_shape=array&_sort=price
    interval: 100ms
    array_keys: {{ "": id }}
""")
        try:
            stream = SSE(proxy, "/prices")
            name, snapshot = stream.event()
            self.assertEqual(name, "snapshot")
            self.assertEqual([row["id"] for row in snapshot["data"]], [1, 2, 3, 4, 5])
            # Row 5 becomes the cheapest: sorted by price it moves to the front.
            self.sql("update prices set price = 1.5 where id = 5")
            name, patch = stream.event()
            self.assertEqual(name, "patch")
            self.assertEqual(patch["patch"], [{"op": "move", "from": "/4", "path": "/0"},
                                              {"op": "replace", "path": "/0/price", "value": 1.5}])
            stream.close()
        finally:
            proxy.stop()
            self.sql("update prices set price = 105.0 where id = 5")

    def test_a_parameter_in_a_query_value_selects_one_row_and_cannot_add_a_pair(self):
        proxy = Proxy(f"""
listen: 127.0.0.1:0
upstream: {{ base: {self.base}/market }}
endpoints:
  - path: /rows/{{id}}
    upstream: /prices.json?_shape=array&id={{id}}
    interval: 1s
""")
        try:
            status, _, body = request(proxy.url("/rows/3"))
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body), [{"id": 3, "symbol": "S3", "price": 103.0}])
            # `&` in the segment is encoded into the value: Datasette sees id = "3&_shape=objects",
            # which matches no row, and the shape stays an array.
            status, _, body = request(proxy.url("/rows/3&_shape=objects"))
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body), [])
        finally:
            proxy.stop()

    def test_types_from_datasette_compile_and_a_missing_field_does_not(self):
        """`deltacast types` against Datasette's JSON: the module compiles with tsc --strict
        beside the client's declarations; a dashboard reading a column the table lacks does not."""
        import shutil
        directory = tempfile.mkdtemp(prefix="deltacast-datasette-types-")
        config = os.path.join(directory, "deltacast.yaml")
        with open(config, "w") as handle:
            handle.write(f"""listen: 127.0.0.1:0
endpoints:
  - path: /prices
    upstream: {self.base}/market/prices.json?_shape=array
    interval: 1s
    array_keys: {{ "": id }}
  - path: /table
    upstream: {self.base}/market/prices.json
    interval: 1s
""")
        result = subprocess.run([BINARY, "types", "-c", config, "--samples", "2", "--interval", "100ms", "--out", directory],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(os.path.join(directory, "topics.d.ts")) as handle:
            module = handle.read()
        self.assertIn("export type Prices = {\n    id: number;\n    symbol: string;\n    price: number;\n}[];", module)
        self.assertIn("'/table': Table;", module)
        status, _, declarations = request(self.proxy_for_declarations().url("/deltacast.d.ts"))
        self.assertEqual(status, 200)
        with open(os.path.join(directory, "deltacast.d.ts"), "wb") as handle:
            handle.write(declarations)

        def compile(body):
            with open(os.path.join(directory, "dashboard.ts"), "w") as handle:
                handle.write("import { Deltacast } from './deltacast.js';\nimport { Topics } from './topics.js';\n"
                             "const dc = new Deltacast<Topics>('http://127.0.0.1:1');\n" + body)
            return subprocess.run(["tsc", "--strict", "--noEmit", "--target", "es2020", "--moduleResolution", "node", "--lib", "es2020,dom",
                                   os.path.join(directory, "dashboard.ts")], cwd=directory, capture_output=True, text=True, timeout=120)

        good = compile("dc.subscribe('/prices', { onState(rows) { console.log(rows.map((row) => row.symbol + row.price.toFixed(2))); } });\n"
                       "dc.subscribe('/table', { onState(table) { console.log(table.rows.length, table.columns); } });\n")
        self.assertEqual(good.returncode, 0, good.stdout)
        bad = compile("dc.subscribe('/prices', { onState(rows) { console.log(rows[0].volume); } });\n")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("error TS2339: Property 'volume' does not exist on type '{ id: number; symbol: string; price: number; }'.", bad.stdout)
        print("\n  " + bad.stdout.strip(), file=sys.stderr)
        shutil.rmtree(directory, ignore_errors=True)

    def proxy_for_declarations(self):
        if not hasattr(self.__class__, "declarations_proxy"):
            self.__class__.declarations_proxy = Proxy("listen: 127.0.0.1:0\nendpoints:\n  - path: /x\n    source: publish\n")
        return self.__class__.declarations_proxy


class SimulatorTest(unittest.TestCase):
    def setUp(self):
        self.simulator = Simulator()
        self.upstream = self.simulator.url

    def tearDown(self):
        self.simulator.stop()

    def test_discover_sees_conditional_requests_and_the_volatile_timestamp(self):
        request(self.upstream + "/_sim/freeze", method="POST")
        status, out, error = discover(self.upstream + "/api/prices", "--samples", "4", "--interval", "50ms")
        self.assertEqual(status, 0, error)
        self.assertIn("    array_keys: { /items: id }\n", out)
        self.assertIn("    ignore: [/generatedAt]\n", out)
        self.assertIn("# conditional requests: yes: If-None-Match → 304 Not Modified", out)
        self.assertIn("# ignore /generatedAt: changed in all 3 intervals and nothing else changed", out)

    def test_discover_proposes_snapshots_for_a_body_that_is_not_json(self):
        request(self.upstream + "/_sim/docs/report.txt", method="PUT", body=b"quarterly report\n", headers={"Content-Type": "text/plain"})
        status, out, error = discover(self.upstream + "/report.txt", "--samples", "2", "--interval", "0ms")
        self.assertEqual(status, 0, error)
        self.assertIn("    diff: snapshot\n", out)
        self.assertIn("# the body is not JSON (17 bytes): the proxy sends each new version whole", out)

    def test_discover_refuses_out_of_range_options(self):
        for option, value, message in [("--samples", "1", "--samples expects a whole number in 2...50"),
                                       ("--interval", "5m", "--interval expects a duration up to 1m"),
                                       ("--timeout", "0ms", "--timeout expects a duration up to 1m")]:
            status, _, error = discover(self.upstream + "/api/prices", option, value)
            self.assertEqual(status, 2, option)
            self.assertIn(message, error)
        status, _, error = discover("http://127.0.0.1:1/nothing", "--samples", "2")
        self.assertEqual(status, 1)
        self.assertIn("deltacast discover: http://127.0.0.1:1/nothing:", error)

    def test_an_endpoint_header_replaces_the_shared_one_of_the_same_name(self):
        proxy = Proxy(f"""
listen: 127.0.0.1:0
upstream:
  base: http://127.0.0.1:1
  headers: {{ Authorization: Bearer shared-token }}
endpoints:
  - path: /whoami
    upstream: {self.upstream}/api/whoami
    headers: {{ Authorization: Bearer endpoint-token }}
  - path: /shared
    upstream: {self.upstream}/api/whoami?via=shared
""")
        try:
            status, _, body = request(proxy.url("/whoami"))
            self.assertEqual((status, json.loads(body)), (200, {"token": "endpoint-token"}))
            status, _, body = request(proxy.url("/shared"))
            self.assertEqual((status, json.loads(body)), (200, {"token": "shared-token"}))
        finally:
            proxy.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
