"""Small pieces the benchmark scripts (and the tests that drive thousands of requests) share:
starting a deltacast process pinned to CPU 0, and HTTP/1.1 requests on one keep-alive
connection."""
import os
import socket
import subprocess
import threading


def start(binary, arguments, out, started, config=None):
    """`binary arguments [-c OUT/file]` on CPU 0; returns (process, port), the port read from
    its first line (`... listening on http://host:PORT`). The process joins `started`."""
    if config is not None:
        path = os.path.join(out, f"process-{len(started)}.yaml")
        with open(path, "w") as handle:
            handle.write(config)
        arguments = arguments + ["-c", path]
    process = subprocess.Popen(["taskset", "-c", "0", binary] + arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started.append(process)
    first = process.stdout.readline().strip()
    threading.Thread(target=lambda: process.stdout.read(), daemon=True).start()
    return process, int(first.rsplit(":", 1)[1])


class KeepAlive:
    """Requests one after another on one keep-alive connection; each returns its status."""

    def __init__(self, port, timeout=120):
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.connection.makefile("rb")

    def send(self, method, path, body=b"", headers=()):
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self.connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n{extra}"
                                f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int(self.reader.readline().split()[1])
        length = 0
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        self.reader.read(length)
        return status

    def close(self):
        self.reader.close()
        self.connection.close()
