#!/usr/bin/env python3
"""The documentation as a static site, opened in a real browser.

Builds the catalogue (`Sources/deltacast/Deltacast.docc`) with `docc convert
--transform-for-static-hosting`, serves the result on a loopback port, and walks it in Debian's
headless Chromium (selenium) from the landing page: every page the site links to must render
(DocC's page-not-found view is a broken link) and every image on it must load. Links that
leave the site are counted and not followed (tests stay on loopback). Screenshots of the
landing page and the Architecture article go to the directory given as the second argument.

Usage: site_test.py PATH/TO/docc ARTIFACT_DIR
"""
import functools
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from urllib.parse import urldefrag, urlparse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CATALOGUE = os.path.join(ROOT, "Sources", "deltacast", "Deltacast.docc")
LANDING = "/documentation/deltacast"
MAX_PAGES = 200          # the walk stops here: a site that grows past it must raise the bound
PAGE_TIMEOUT = 20        # seconds for one page to render


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def build_site(docc, output):
    subprocess.run([docc, "convert", CATALOGUE, "--output-path", output, "--transform-for-static-hosting",
                    "--warnings-as-errors"], check=True, stdout=subprocess.DEVNULL)


def serve(directory):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


RENDERED = """
const main = document.querySelector('main');
if (!main) return /404|not found|error response/i.test(document.title) ? 'not-found' : null;
if (document.querySelector('.not-found, #not-found') || /can.t be found/i.test(main.innerText)) return 'not-found';
const title = main.querySelector('h1');
return title && title.innerText.trim() ? 'ok' : null;
"""

LINKS = "return Array.from(document.querySelectorAll('main a[href]')).map(a => a.href);"
# DocC loads images lazily: their addresses are checked over HTTP instead of waiting for them.
IMAGES = """
return Array.from(document.querySelectorAll('main img, main picture source')).flatMap(element =>
  element.srcset ? element.srcset.split(',').map(part => new URL(part.trim().split(' ')[0], document.baseURI).href)
                 : [element.src]).filter(Boolean);
"""


def loads(url):
    """Whether `url` (on the site) answers 200 with some bytes."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200 and len(response.read()) > 0
    except OSError:
        return False


def walk(driver, origin):
    """Visits every page reachable from the landing page; returns (pages, broken, images, external)."""
    queue, seen, broken, images, external, checked = [origin + LANDING], set(), [], [], set(), {}
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        path = urlparse(url).path.rstrip("/")
        if path in seen:
            continue
        seen.add(path)
        driver.get(url)
        try:
            state = WebDriverWait(driver, PAGE_TIMEOUT).until(lambda d: d.execute_script(RENDERED))
        except TimeoutException:
            state = "never rendered"
        if state != "ok":
            broken.append(f"{path}: {state}")
            continue
        for source in driver.execute_script(IMAGES):
            if source not in checked:
                checked[source] = loads(source)
            if not checked[source]:
                images.append(f"{path}: {source}")
        for link in driver.execute_script(LINKS):
            target, _ = urldefrag(link)
            if not target.startswith(origin):
                external.add(target)
            elif urlparse(target).path.startswith("/documentation/"):
                queue.append(target)
    if queue and len(seen) >= MAX_PAGES:
        broken.append(f"more than {MAX_PAGES} pages: raise MAX_PAGES")
    return seen, broken, images, external


def main():
    docc, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    with tempfile.TemporaryDirectory() as site:
        build_site(docc, site)
        server = serve(site)
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        options = Options()
        for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]:
            options.add_argument(argument)
        options.binary_location = "/usr/bin/chromium"
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            pages, broken, images, external = walk(driver, origin)
            # The detector itself: a page that does not exist must be seen as broken.
            driver.get(origin + LANDING + "/no-such-page")
            missing = WebDriverWait(driver, PAGE_TIMEOUT).until(lambda d: d.execute_script(RENDERED))
            if missing != "not-found":
                broken.append(f"a missing page was not recognised as broken (it rendered as {missing!r})")
            for name, path in [("site-landing.png", LANDING), ("site-architecture.png", LANDING + "/architecture")]:
                driver.get(origin + path)
                WebDriverWait(driver, PAGE_TIMEOUT).until(lambda d: d.execute_script(RENDERED) == "ok")
                driver.save_screenshot(os.path.join(artifacts, name))
        finally:
            driver.quit()
            server.shutdown()
    print(f"site: {len(pages)} pages rendered from {LANDING}; {len(external)} links leave the site (not followed); "
          f"screenshots in {artifacts}")
    problems = [f"broken link: {entry}" for entry in broken] + [f"image not loaded: {entry}" for entry in images]
    if "/documentation/deltacast/architecture" not in pages:
        problems.append("the landing page does not lead to the Architecture article")
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
