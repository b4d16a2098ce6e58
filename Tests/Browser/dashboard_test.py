#!/usr/bin/env python3
"""The demo dashboard in a real browser: Debian's headless Chromium driven by selenium.

Starts `deltacast demo` (config/demo.yaml with free ports), opens the dashboard once per
transport (auto, and forced WebSocket, SSE and long-poll), waits for the live price table,
changes the upstream through the simulator's control route, and asserts that the page shows
the new values, the transport in use, the notifications badge and the flaky endpoint's state.
Then opens the status page (/deltacast/, admin token in the URL fragment) and asserts that the
prices topic's cursor moves when the upstream changes, and that the page drew its chart of
upstream requests and requests avoided.
Screenshots go to the directory given as the second argument.

Usage: dashboard_test.py PATH/TO/deltacast ARTIFACT_DIR
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(binary):
    upstream = free_port()
    with open(os.path.join(ROOT, "config", "demo.yaml")) as f:
        yaml = f.read()
    yaml = yaml.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0")
    yaml = yaml.replace("base: http://127.0.0.1:9000", f"base: http://127.0.0.1:{upstream}")
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(yaml)
    config.close()
    demo = subprocess.Popen([binary, "demo", "-c", config.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = demo.stdout.readline()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not match:
        demo.kill()
        raise SystemExit(f"demo did not start: {line!r}")
    os.unlink(config.name)
    return demo, int(match.group(1)), upstream


def put_prices(upstream, price):
    body = {"generatedAt": 0, "version": 1, "items": [
        {"id": "AAPL", "price": price, "change": 1.5, "volume": 1},
        {"id": "MSFT", "price": 10.25, "change": -0.5, "volume": 2},
    ]}
    request = urllib.request.Request(f"http://127.0.0.1:{upstream}/_sim/docs/api/prices", data=json.dumps(body).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()


def text(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def main():
    binary, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    demo, port, upstream = start_demo(binary)
    options = Options()
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"]:
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    failures = []
    try:
        for index, transport in enumerate(["", "websocket", "sse", "longpoll"]):
            name = transport or "auto"
            driver.get(f"http://127.0.0.1:{port}/?transport={transport}&user=42")
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#prices tbody tr")) >= 2)
            expected = transport or "websocket"
            wait.until(lambda d: text(d, "transport") == expected)
            # Change the upstream: the page must show the new price without a reload.
            price = 4000 + index + 0.25
            put_prices(upstream, price)
            wait.until(lambda d: text(d, "row-AAPL").split()[1:2] == [f"{price:.2f}"])
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#prices tbody tr")) == 2)
            rows = driver.find_elements(By.CSS_SELECTOR, "#prices tbody tr")
            # The other widgets: notifications for user 42 (cookie passthrough), inventory, flaky.
            wait.until(lambda d: text(d, "unread") not in ("", "0"))
            wait.until(lambda d: text(d, "inventory-items") == "11,500")
            wait.until(lambda d: text(d, "flaky-status") != "–" or text(d, "flaky-counter") != "–")
            driver.save_screenshot(os.path.join(artifacts, f"dashboard-{name}.png"))
            print(f"ok: {name}: transport {text(driver, 'transport')}, AAPL {price:.2f}, {len(rows)} rows, "
                  f"{text(driver, 'unread')} unread, inventory {text(driver, 'inventory-items')}, flaky {text(driver, 'flaky-status')}")
        # The status page: behind the admin token (given in the URL fragment, never sent), it
        # lists the topics and its numbers move when the upstream changes.
        driver.get(f"http://127.0.0.1:{port}/deltacast/#token=demo-admin-token-0123456789")
        wait = WebDriverWait(driver, 20)
        row = '#endpoints tr[data-topic="/api/prices"] td.cursor'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row) and d.find_element(By.CSS_SELECTOR, row).text not in ("", "–"))
        before = driver.find_element(By.CSS_SELECTOR, row).text
        put_prices(upstream, 5000.5)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).text != before)
        wait.until(lambda d: text(d, "state") == "● live" and text(d, "connections") not in ("", "–"))
        # The migration report's chart, drawn by the page from GET /deltacast/report: the demo has
        # run for a while, so its history has samples, and upstream requests were made.
        WebDriverWait(driver, 30).until(lambda d: int(d.find_element(By.ID, "chart").get_attribute("data-samples") or 0) >= 2)
        points = driver.find_element(By.CSS_SELECTOR, "#chart polyline.upstream").get_attribute("points").split()
        if len(points) < 2:
            raise AssertionError(f"the upstream line has {len(points)} points")
        summary = text(driver, "savings-summary")
        if not re.search(r"since start: [\d,]+ upstream requests, [\d,]+ without the proxy, \d+ % avoided", summary):
            raise AssertionError(f"the savings summary reads {summary!r}")
        driver.save_screenshot(os.path.join(artifacts, "status-page.png"))
        print(f"ok: status page: /api/prices cursor {before} -> {driver.find_element(By.CSS_SELECTOR, row).text}, "
              f"{text(driver, 'connections')} connections, {text(driver, 'deliveries')} deliveries; chart {len(points)} points, {summary}")
    except Exception as error:  # report, keep the screenshot, fail
        driver.save_screenshot(os.path.join(artifacts, "dashboard-failure.png"))
        failures.append(f"{type(error).__name__}: {error}")
    finally:
        driver.quit()
        demo.send_signal(signal.SIGTERM)
        try:
            _, errors = demo.communicate(timeout=20)
            # A graceful shutdown exits 0 and prints nothing on stderr (no crash, no backtrace).
            if demo.returncode != 0 or "Fatal error" in errors or "Backtrace" in errors:
                failures.append(f"demo exited {demo.returncode} after SIGTERM: {errors[-3000:]}")
        except subprocess.TimeoutExpired:
            demo.kill()
            failures.append("demo did not stop within 20 s of SIGTERM")
    if failures:
        print("FAILED:", *failures, sep="\n  ")
        sys.exit(1)
    print(f"dashboard: all transports passed; screenshots in {artifacts}")


if __name__ == "__main__":
    main()
