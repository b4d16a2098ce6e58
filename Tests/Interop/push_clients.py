#!/usr/bin/env python3
"""Interop: third-party clients against a real `deltacast serve` on loopback.

- Python `websockets` (PyPI), with and without permessage-deflate, on the multiplexed
  endpoint (subprotocol deltacast.v1) and on a mirrored path;
- `curl -N` reading the SSE stream of a mirrored path.

Usage: push_clients.py PATH-TO-deltacast. Exits non-zero on the first failed check.
With DELTACAST_NGINX=1, every client goes through the real nginx configured by
examples/deploy/nginx (Tests/Deploy/nginx-front.sh): wss:// and https://, TLS terminated by
nginx with a test CA the clients trust.
"""
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request

import websockets

TOKEN = "interop-admin-token-0123456789"
# Where clients connect: the proxy itself, or nginx's TLS server in front of it (see main).
HTTP = "http://127.0.0.1:{port}"
WS = "ws://127.0.0.1:{port}"
CONTEXT = None
CURL_TLS = []
CONFIG = f"""
listen: 127.0.0.1:0
endpoints:
  - path: /live/{{room}}
    source: publish
    array_keys: {{ /items: id }}
admin: {{ token: {TOKEN} }}
"""


def document(price):
    return {"items": [{"id": 1, "price": price}, {"id": 2, "price": 20}],
            "note": "long enough that one changed price travels as a patch"}


def publish(port, topic, body):
    request = urllib.request.Request(
        HTTP.format(port=port) + f"/deltacast/publish?topic={topic}", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5, context=CONTEXT) as response:
        return json.load(response)


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {message}")


def apply_patch(state, operations):
    """Enough of RFC 6902 for replace/add/remove on objects and arrays (what these changes use)."""
    for operation in operations:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
        parent = state
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if operation["op"] == "replace": parent[index] = operation["value"]
            elif operation["op"] == "add": parent.insert(index, operation["value"])
            elif operation["op"] == "remove": del parent[index]
        else:
            if operation["op"] in ("replace", "add"): parent[last] = operation["value"]
            elif operation["op"] == "remove": del parent[last]
    return state


async def multiplexed(port, compression):
    topic = f"/live/mux-{compression or 'plain'}"
    publish(port, topic, document(1))
    async with websockets.connect(WS.format(port=port) + "/deltacast/ws", subprotocols=["deltacast.v1"],
                                  compression=compression, open_timeout=5, ssl=CONTEXT) as socket:
        check(socket.subprotocol == "deltacast.v1", f"[{compression}] subprotocol deltacast.v1 agreed")
        extensions = socket.response.headers.get("Sec-WebSocket-Extensions", "")
        check(("permessage-deflate" in extensions) == (compression == "deflate"),
              f"[{compression}] permessage-deflate {'agreed' if compression else 'absent'}: {extensions!r}")
        await socket.send(json.dumps({"type": "subscribe", "topic": topic}))
        snapshot = json.loads(await asyncio.wait_for(socket.recv(), 5))
        check(snapshot["type"] == "snapshot" and snapshot["data"] == document(1), f"[{compression}] snapshot first")
        state, cursor = snapshot["data"], snapshot["cursor"]
        for price in range(2, 12):
            publish(port, topic, document(price))
            event = json.loads(await asyncio.wait_for(socket.recv(), 5))
            check(event["type"] == "patch" and event["base"] == cursor, f"[{compression}] patch {price} applies to the cursor held")
            state, cursor = apply_patch(state, event["patch"]), event["cursor"]
        check(state == document(11), f"[{compression}] applied state equals the last published document")
        await socket.send("{not json")
        error = json.loads(await asyncio.wait_for(socket.recv(), 5))
        check(error["type"] == "error" and error["code"] == "bad_request", f"[{compression}] bad JSON gets bad_request and the socket stays open")
        await socket.send(json.dumps({"type": "subscribe", "topic": topic, "since": cursor}))
        publish(port, topic, document(12))
        event = json.loads(await asyncio.wait_for(socket.recv(), 5))
        check(event["type"] == "patch" and event["base"] == cursor, f"[{compression}] resubscribe from the cursor held: next patch only")


async def mirrored(port):
    publish(port, "/live/single", document(1))
    async with websockets.connect(WS.format(port=port) + "/live/single", open_timeout=5, ssl=CONTEXT) as socket:
        snapshot = json.loads(await asyncio.wait_for(socket.recv(), 5))
        check(snapshot["type"] == "snapshot", "mirrored path WebSocket starts with a snapshot")
        publish(port, "/live/single", document(2))
        patch = json.loads(await asyncio.wait_for(socket.recv(), 5))
        check(patch["type"] == "patch" and patch["base"] == snapshot["cursor"], "mirrored path WebSocket gets the patch")


def curl_sse(port):
    publish(port, "/live/curl", document(1))
    reader = subprocess.Popen(["curl", "-sN", *CURL_TLS, "--max-time", "3", "-H", "Accept: text/event-stream",
                               HTTP.format(port=port) + "/live/curl"], stdout=subprocess.PIPE, text=True)
    import time
    time.sleep(0.5)
    publish(port, "/live/curl", document(2))
    output, _ = reader.communicate(timeout=10)
    blocks = [block for block in output.split("\n\n") if block.strip()]
    check(blocks[0] == "retry: 2000", f"curl -N: retry hint first ({blocks[0]!r})")
    events = [dict(line.split(": ", 1) for line in block.split("\n")) for block in blocks[1:] if not block.startswith(":")]
    check([e["event"] for e in events] == ["snapshot", "patch"], "curl -N: snapshot then patch")
    check(all(json.loads(e["data"])["cursor"] == e["id"] for e in events), "curl -N: each id: is the event's cursor")


def main():
    binary = sys.argv[1]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        config.write(CONFIG)
    server = subprocess.Popen([binary, "serve", "-c", config.name], stdout=subprocess.PIPE, text=True)
    cleanups = []
    try:
        line = server.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        if os.environ.get("DELTACAST_NGINX") == "1":
            global HTTP, WS, CONTEXT, CURL_TLS
            directory = tempfile.mkdtemp(prefix="deltacast-nginx-")
            front = os.path.join(os.path.dirname(__file__), "..", "Deploy", "nginx-front.sh")
            _, tls_port = subprocess.run([front, str(port), directory], check=True, capture_output=True, text=True).stdout.split()
            cleanups.append(lambda: subprocess.run(["kill", open(os.path.join(directory, "nginx.pid")).read().strip()]))
            HTTP, WS, port = "https://127.0.0.1:{port}", "wss://127.0.0.1:{port}", int(tls_port)
            CONTEXT = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
            CURL_TLS = ["--cacert", os.path.join(directory, "ca.pem")]
            print(f"ok: through nginx (examples/deploy/nginx), TLS on port {port}")
        asyncio.run(multiplexed(port, None))
        asyncio.run(multiplexed(port, "deflate"))
        asyncio.run(mirrored(port))
        curl_sse(port)
    finally:
        for cleanup in cleanups:
            cleanup()
        server.terminate()
        server.wait(timeout=15)
        os.unlink(config.name)
    print("push clients: all checks passed")


if __name__ == "__main__":
    main()
