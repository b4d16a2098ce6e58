"""Shared pieces of the security suites: a real `deltacast serve` on loopback, tokens minted
with PyJWT (a JOSE implementation no one here wrote), keys and certificates made with
`cryptography`, and small clients (HTTP, SSE, WebSocket) over plain TCP or TLS."""
import asyncio
import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

BINARY = os.environ.get("DELTACAST_BIN", ".build/debug/deltacast")
ADMIN = "security-admin-token-0123456789"
SECRET = "hs256-secret-for-tests-0123456789abcdef"
ISSUER = "https://login.test"
AUDIENCE = "deltacast"


class Proxy:
    """`deltacast serve` with a configuration text; logs are collected for inspection."""

    def __init__(self, config, env=None, prefix=()):
        self.directory = tempfile.mkdtemp(prefix="deltacast-security-")
        self.config_path = os.path.join(self.directory, "deltacast.yaml")
        with open(self.config_path, "w") as handle:
            handle.write(config)
        environment = dict(os.environ)
        environment.update(env or {})
        self.process = subprocess.Popen(list(prefix) + [BINARY, "serve", "-c", self.config_path], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=environment, text=True)
        self.lines = []
        self.port = None
        self.admin_port = None
        self.scheme = "http"
        ready = threading.Event()

        def read():
            for line in self.process.stdout:
                self.lines.append(line)
                match = re.search(r"listening on (https?)://[^ ]*:(\d+)$", line.strip())
                if match:
                    self.scheme, self.port = match.group(1), int(match.group(2))
                admin = re.search(r"admin endpoints on http://[^ ]*:(\d+)$", line.strip())
                if admin:
                    self.admin_port = int(admin.group(1))
                if self.port:
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        ready.wait(20)
        if not self.port:
            self.stop()
            raise RuntimeError("deltacast serve did not start:\n" + "".join(self.lines))

    @property
    def log(self):
        return "".join(self.lines)

    def signal(self, number):
        self.process.send_signal(number)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)
        if self.process.stdout and not self.reader.is_alive():
            self.process.stdout.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def publish(self, topic, body, admin_port=None):
        port = admin_port or self.port
        scheme = "http" if admin_port else self.scheme
        return request(f"{scheme}://127.0.0.1:{port}/deltacast/publish?topic={topic}", method="POST",
                       body=json.dumps(body).encode(), headers={"Authorization": f"Bearer {ADMIN}"})


class Simulator:
    """`deltacast simulate` on a free port; `url` is its base URL."""

    def __init__(self):
        self.process = subprocess.Popen([BINARY, "simulate"], stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip().rsplit(" ", 1)[-1]

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        self.process.stdout.close()


def insecure_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def request(url, method="GET", body=None, headers=None, context=None):
    """(status, headers, body bytes); never raises for an HTTP status."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    if url.startswith("https") and context is None:
        context = insecure_context()
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def now():
    return int(time.time())


def hs256(sub="alice", ttl=300, **claims):
    payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + ttl}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


def unsigned(payload, header):
    """A token with any header and an empty signature (for alg none)."""
    def part(value):
        return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()
    return f"{part(header)}.{part(payload)}."


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def private_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def certificate(directory, name, not_before, not_after, key=None):
    """A self-signed certificate for localhost/127.0.0.1 valid in [not_before, not_after]."""
    key = key or ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, f"{name}.crt")
    key_path = os.path.join(directory, f"{name}.key")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "w") as handle:
        handle.write(private_pem(key))
    return cert_path, key_path


def utc(days=0, hours=0):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days, hours=hours)


def sse_block(block):
    """One SSE event block (bytes, without its blank line) as (name, parsed data), or None for
    a comment or `retry:` alone."""
    name, data = "message", []
    for line in block.decode().split("\n"):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    return (name, json.loads("\n".join(data))) if data else None


class SSE:
    """A raw SSE reader over a socket (plain or TLS): the status line, then events."""

    def __init__(self, proxy, path, headers=None, context=None):
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        self.socket = (context or insecure_context()).wrap_socket(raw, server_hostname="localhost") if proxy.scheme == "https" else raw
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.head = head.decode()
        self.closed = False

    def _until(self, marker):
        while marker not in self.buffer:
            chunk = self.socket.recv(65536)
            if not chunk:
                self.closed = True
                raise EOFError("stream closed")
            self.buffer += chunk
        before, _, self.buffer = self.buffer.partition(marker)
        return before

    def event(self, timeout=10):
        """The next event as (name, parsed data); comments and retry lines are skipped."""
        self.socket.settimeout(timeout)
        while True:
            parsed = sse_block(self._until(b"\n\n"))
            if parsed:
                return parsed

    def body(self):
        """The rest of a non-stream response (the buffer and what follows until close)."""
        self.socket.settimeout(5)
        try:
            while True:
                chunk = self.socket.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
                if b"}" in self.buffer:
                    break
        except socket.timeout:
            pass
        return self.buffer

    def wait_closed(self, timeout=10):
        """True when the server ends the stream within `timeout` (events on the way are kept)."""
        deadline = time.time() + timeout
        self.socket.settimeout(0.5)
        while time.time() < deadline:
            try:
                chunk = self.socket.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (ConnectionResetError, ssl.SSLError):
                return True
            if not chunk:
                return True
            self.buffer += chunk
        return False

    def close(self):
        try:
            self.socket.close()
        except OSError:
            pass


def run(coroutine):
    return asyncio.run(coroutine)
