#!/usr/bin/env python3
"""Headless Chromium against `deltacast serve` with native TLS and JWT authentication.

Chromium trusts exactly the test certificate's key (--ignore-certificate-errors-spki-list, a
pin, not a blanket ignore), loads /deltacast.js over https, and runs the client library with a
token over wss:// (token subprotocol), SSE (single-use ticket) and long-poll (bearer header),
for a topic whose `allow` rule binds the path to the token's subject; another user's topic is
refused in the page. Usage: secure_test.py PATH-TO-deltacast ARTIFACTS-DIR
"""
import base64
import hashlib
import json
import os
import sys
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography import x509
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Security"))
os.environ.setdefault("DELTACAST_BIN", sys.argv[1] if len(sys.argv) > 1 else ".build/debug/deltacast")
import harness  # noqa: E402
harness.BINARY = os.environ["DELTACAST_BIN"]
from harness import ADMIN, AUDIENCE, ISSUER, SECRET, Proxy, certificate, hs256, utc  # noqa: E402

SCRIPT = """
const [transport, token, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const result = { transport, states: [], errors: [] };
function run() {
  const dc = new Deltacast(location.origin, { transports: [transport], token, openTimeout: 8000 });
  dc.subscribe('/users/alice/inbox', { onState: (s) => { result.states.push(s); if (s.n === 2) { result.used = dc.transport; dc.close(); done(result); } } });
  dc.subscribe('/users/bob/inbox', { onState: () => result.errors.push('bob reached alice'), onError: (e) => result.errors.push(e.code) });
  window.__dc = dc;
}
if (window.Deltacast) run(); else {
  const s = document.createElement('script'); s.src = '/deltacast.js'; s.onload = run;
  s.onerror = () => done({ failed: 'could not load /deltacast.js' }); document.head.appendChild(s);
}
"""


def main():
    binary, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="deltacast-browser-tls-")
    cert_path, key_path = certificate(directory, "server", utc(days=-1), utc(days=30))
    with open(cert_path, "rb") as handle:
        spki = x509.load_pem_x509_certificate(handle.read()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    proxy = Proxy(f"""
listen: 127.0.0.1:0
admin: {{ token: {ADMIN} }}
tls: {{ certificate: {cert_path}, key: {key_path} }}
auth:
  jwt: {{ algorithm: HS256, secret: "{SECRET}", issuer: "{ISSUER}", audience: {AUDIENCE} }}
endpoints:
  - path: /users/{{user}}/inbox
    source: publish
    allow: "params.user == claims.sub"
""")
    options = Options()
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--ignore-certificate-errors-spki-list={pin}"]:
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(30)
    failures = []
    try:
        for transport in ["websocket", "sse", "longpoll"]:
            note = "long enough that a change travels as a patch"
            proxy.publish("/users/alice/inbox", {"n": 1, "note": note})
            proxy.publish("/users/bob/inbox", {"n": 99, "note": note})
            driver.get(f"https://localhost:{proxy.port}/healthz")
            # The page is https: the library will open wss:// and https:// connections.
            assert driver.execute_script("return location.protocol") == "https:"
            import threading
            threading.Timer(2.0, lambda: proxy.publish("/users/alice/inbox", {"n": 2, "note": note})).start()
            result = driver.execute_async_script(SCRIPT, transport, hs256(sub="alice"))
            driver.save_screenshot(os.path.join(artifacts, f"tls-{transport}.png"))
            ok = (not result.get("failed") and result.get("used") == transport and result["states"][-1]["n"] == 2
                  and result["errors"] == ["forbidden"])
            print(("ok: " if ok else "FAIL: ") + f"Chromium over TLS, {transport}: {json.dumps(result)[:300]}")
            if not ok:
                failures.append(transport)
    finally:
        driver.quit()
        proxy.stop()
    if failures:
        print(f"FAIL: {failures}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
