"""A fault-injecting HTTP/1.1 proxy for the upstream side, scriptable from tests.

It sits between Deltacast and the simulator on loopback. Every request is forwarded (a fresh
connection to the simulator, `Connection: close`), and the response is answered on the
client's keep-alive connection, unless a fault is set for the request's path:

    chaos = ChaosProxy(simulator_port)           # starts on a free port, in a thread
    chaos.set("/v1/a", "status", status=503, count=5)
    chaos.clear("/v1/a")

Faults (`mode`, with its parameters):
- `latency` (`seconds`, or `low`/`high` for a random spike each time): the answer waits.
- `reset_mid_body`: head and half the body, then a TCP reset.
- `truncated_gzip`: the body gzip-encoded (`Content-Encoding: gzip`) and cut short.
- `long_length`: `Content-Length` 100 more than the body, then the connection closes.
- `short_length`: `Content-Length` 10 less than the body, the whole body written.
- `status` (`status`, default 503): that status and a small error body.
- `invalid_json`, `truncated_json`: a 200 whose body is not JSON, or the first half of it.
- `huge` (`factor`, default 10): a 200 with the body padded to `factor` times `size`.
- `drip` (`bytes_per_second`, default 1): the head, then the body a byte at a time.
- `header_flood` (`headers`, default 2000): that many extra response headers.
- `redirect_loop`: a 302 to the same path, forever.
- `silent`: the request is read and never answered (the connection stays open).
- `connection_limit` (global, `set_connection_limit(1)`): beyond that many open connections,
  new ones are closed at once.
`count` limits a fault to the next N requests to that path (a burst); otherwise it lasts until
`clear`. `stats` counts requests per path, the most requests in flight at once, and more.
"""
import asyncio
import gzip
import socket
import threading
import time


class ChaosProxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.faults = {}
        self.lock = threading.Lock()
        self.requests = {}          # path -> count
        self.log = []               # (monotonic time, path, outcome), last 10,000
        self.in_flight = 0
        self.max_in_flight = 0
        self.open_connections = 0
        self.refused_connections = 0
        self.connection_limit = None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    # -- the test's side

    def set(self, path, mode, count=None, **parameters):
        with self.lock:
            self.faults[path] = {"mode": mode, "count": count, **parameters}

    def clear(self, path):
        with self.lock:
            self.faults.pop(path, None)

    def set_connection_limit(self, limit):
        with self.lock:
            self.connection_limit = limit

    def request_count(self, path):
        with self.lock:
            return self.requests.get(path, 0)

    def reset_max_in_flight(self):
        with self.lock:
            self.max_in_flight = self.in_flight

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)

    # -- the proxy

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def _fault(self, path):
        with self.lock:
            fault = self.faults.get(path)
            if not fault:
                return None
            if fault["count"] is not None:
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.faults.pop(path)
            return dict(fault)

    async def _connection(self, reader, writer):
        with self.lock:
            limit = self.connection_limit
            if limit is not None and self.open_connections >= limit:
                self.refused_connections += 1
                refuse = True
            else:
                self.open_connections += 1
                refuse = False
        if refuse:
            writer.close()
            return
        carried = b""      # a first byte of the next request, read while watching for a hang-up
        try:
            while True:
                try:
                    head = carried + await reader.readuntil(b"\r\n\r\n")
                    carried = b""
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
                with self.lock:
                    self.requests[path] = self.requests.get(path, 0) + 1
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                # A request is in flight until it is answered or the client gives up on it (curl
                # closes the connection at its timeout): a sleeping fault must not count after.
                answer = asyncio.ensure_future(self._answer(head, path, writer))
                gone = asyncio.ensure_future(reader.read(1))
                try:
                    done, _ = await asyncio.wait([answer, gone], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    with self.lock:
                        self.in_flight -= 1
                if answer not in done:
                    answer.cancel()
                    return
                if gone.done():
                    carried = gone.result()
                    if not carried:
                        return
                else:
                    gone.cancel()
                    try:
                        await gone
                    except asyncio.CancelledError:
                        pass
                if not answer.result():
                    return
        except (ConnectionError, OSError):
            return
        finally:
            with self.lock:
                self.open_connections -= 1
            try:
                writer.close()
            except Exception:   # noqa: BLE001
                pass

    async def _forward(self, head):
        """The simulator's answer to `head`: (status line + headers as a list, body)."""
        lines = head.decode("latin-1").split("\r\n")
        request = [lines[0]] + [l for l in lines[1:] if l and not l.lower().startswith("connection:")] + ["Connection: close", "", ""]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write("\r\n".join(request).encode("latin-1"))
        response_head = (await up_reader.readuntil(b"\r\n\r\n"))[:-4]
        head_lines = response_head.decode("latin-1").split("\r\n")
        length = next((int(l.split(":", 1)[1]) for l in head_lines[1:] if l.lower().startswith("content-length:")), 0)
        body = await up_reader.readexactly(length)
        up_writer.close()
        headers = [l for l in head_lines[1:] if not l.lower().startswith(("connection:", "content-length:", "transfer-encoding:"))]
        return head_lines[0], headers, body

    @staticmethod
    def _head(status_line, headers, length):
        return ("\r\n".join([status_line] + headers + [f"Content-Length: {length}"]) + "\r\n\r\n").encode("latin-1")

    async def _answer(self, head, path, writer):
        fault = self._fault(path)
        mode = fault["mode"] if fault else None
        self._record(path, mode or "ok")
        if mode == "silent":
            await asyncio.sleep(3600)
            return False
        if mode == "status":
            body = b'{"error":"injected"}'
            writer.write(self._head(f"HTTP/1.1 {fault.get('status', 503)} Injected", ["Content-Type: application/json"], len(body)) + body)
            await writer.drain()
            return True
        if mode == "redirect_loop":
            writer.write(self._head("HTTP/1.1 302 Found", [f"Location: {path}"], 0))
            await writer.drain()
            return True
        if mode == "latency":
            delay = fault.get("seconds")
            if delay is None:
                import random
                delay = random.uniform(fault.get("low", 0), fault.get("high", 5))
            await asyncio.sleep(delay)
        status_line, headers, body = await self._forward(head)
        if mode in (None, "latency"):
            writer.write(self._head(status_line, headers, len(body)) + body)
        elif mode == "reset_mid_body":
            writer.write(self._head(status_line, headers, len(body)) + body[: len(body) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return False
        elif mode == "truncated_gzip":
            packed = gzip.compress(body)
            packed = packed[: len(packed) // 2]
            writer.write(self._head(status_line, headers + ["Content-Encoding: gzip"], len(packed)) + packed)
        elif mode == "long_length":
            writer.write(self._head(status_line, headers, len(body) + 100) + body)
            await writer.drain()
            return False
        elif mode == "short_length":
            writer.write(self._head(status_line, headers, max(0, len(body) - 10)) + body)
        elif mode in ("invalid_json", "truncated_json"):
            bad = b"{not json at all" if mode == "invalid_json" else body[: len(body) // 2]
            plain = [h for h in headers if not h.lower().startswith(("etag:", "last-modified:"))]
            writer.write(self._head("HTTP/1.1 200 OK", plain, len(bad)) + bad)
        elif mode == "huge":
            size = fault.get("size", 64 * 1024) * fault.get("factor", 10)
            padded = b'{"padding":"' + b"x" * size + b'"}'
            writer.write(self._head("HTTP/1.1 200 OK", ["Content-Type: application/json"], len(padded)) + padded)
        elif mode == "drip":
            writer.write(self._head(status_line, headers, len(body)))
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1 / fault.get("bytes_per_second", 1))
        elif mode == "header_flood":
            flood = [f"X-Flood-{i}: {'v' * 60}" for i in range(fault.get("headers", 2000))]
            writer.write(self._head(status_line, headers + flood, len(body)) + body)
        else:
            raise ValueError(f"unknown fault {mode}")
        await writer.drain()
        return True

    def _record(self, path, outcome):
        with self.lock:
            self.log.append((time.monotonic(), path, outcome))
            if len(self.log) > 10000:
                del self.log[:1000]

    def outcomes(self, path, since):
        """The outcomes of requests to `path` after monotonic time `since`, in order."""
        with self.lock:
            return [outcome for at, p, outcome in self.log if p == path and at > since]
