#!/usr/bin/env python3
"""Adaptive intervals against fixed ones at the same upstream request rate, on a Zipf workload.

  python3 examples/bench/zipf.py [BINARY] [--topics 10000] [--rounds 1] [--warmup 120] [--measure 90]

The simulator holds TOPICS documents; document i changes at random (Poisson) times at a rate
of 1 / (i + 1) per second: one every second, a few every few seconds, most about once an hour
or less (a Zipf law, about 9.8 changes a second in all for 10,000). The proxy mirrors
`/items/{id}`; every topic is created by a GET and lingers for the whole run.

Each round runs the proxy twice on a fresh simulator: first with `interval: { min: 250ms,
max: 60s }` (adaptive), whose upstream request rate is measured, then with a fixed interval
that makes the same rate (TOPICS / rate). Each run warms up (WARMUP s: adaptive intervals settle),
then for MEASURE s the simulator records, for every change, the time until the proxy read the
document again: the detection delay. It prints medians, p99s and their ratios, the delay by
change-rate decade, and writes `zipf-delay.svg` (delay against change rate, both runs) to $OUT.
Processes: the proxy and the simulator on CPU 0, this script on CPU 1.
"""
import heapq
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ARGS = sys.argv[1:]
BINARY = ARGS.pop(0) if ARGS and not ARGS[0].startswith("--") else ".build/release/deltacast"
OPTIONS = {"--topics": 10000, "--rounds": 1, "--warmup": 120, "--measure": 90}
while ARGS:
    name = ARGS.pop(0)
    OPTIONS[name] = int(ARGS.pop(0))
TOPICS, ROUNDS, WARMUP, MEASURE = OPTIONS["--topics"], OPTIONS["--rounds"], OPTIONS["--warmup"], OPTIONS["--measure"]
OUT = os.environ.get("OUT", os.path.join(tempfile.gettempdir(), "deltacast-bench-zipf"))
os.makedirs(OUT, exist_ok=True)
started = []


def start(arguments, config=None):
    return benchlib.start(BINARY, arguments, OUT, started, config)


def stop(process):
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    started.remove(process)


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def config(simulator, interval):
    return f"""listen: 127.0.0.1:0
upstream: {{ base: {simulator}, max_concurrent: 64 }}
server: {{ event_loops: 1 }}
limits: {{ max_topics: {TOPICS + 1000} }}
endpoints:
  - path: /items/{{id}}
    interval: {interval}
    jitter: 0ms
    linger: 1h
"""


def run(interval, rng_seed):
    """One run: returns (upstream requests/s while measured, [(rate, delay_ms)])."""
    simulator, simulator_port = start(["simulate"])
    upstream = f"http://127.0.0.1:{simulator_port}"
    writer = benchlib.KeepAlive(simulator_port)
    for n in range(TOPICS):
        writer.send("PUT", f"/_sim/docs/items/{n}", json.dumps({"id": n, "v": 0}).encode())
    proxy, proxy_port = start(["serve"], config(upstream, interval))
    reader = benchlib.KeepAlive(proxy_port)
    for n in range(TOPICS):
        reader.send("GET", f"/items/{n}")
    rng = random.Random(rng_seed)
    due = [(rng.expovariate(1 / (n + 1)), n) for n in range(TOPICS)]
    heapq.heapify(due)
    version = 0

    def drive(seconds):
        nonlocal version
        began = time.time()
        while True:
            at, n = due[0]
            wait = run_began + at - time.time()
            if run_began + at > began + seconds:
                if began + seconds > time.time():
                    time.sleep(began + seconds - time.time())
                return
            if wait > 0:
                time.sleep(wait)
            heapq.heapreplace(due, (at + rng.expovariate(1 / (n + 1)), n))
            version += 1
            writer.send("PUT", f"/_sim/docs/items/{n}", json.dumps({"id": n, "v": version}).encode())

    run_began = time.time()
    drive(WARMUP)
    get(f"{upstream}/_sim/delays?reset=1")
    stats = get(f"{upstream}/_sim/stats")["requests"]
    before = sum(count for path, count in stats.items() if path.startswith("/items/"))
    measured_from = time.time()
    drive(MEASURE)
    time.sleep(2)
    stats = get(f"{upstream}/_sim/stats")["requests"]
    rate = (sum(count for path, count in stats.items() if path.startswith("/items/")) - before) / (time.time() - measured_from)
    delays = get(f"{upstream}/_sim/delays?all=1")
    samples = [(1 / (int(path.rsplit("/", 1)[1]) + 1), ms) for path, ms in delays["all"]]
    stop(proxy)
    stop(simulator)
    return rate, samples, delays["unread"]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


def svg(series, path):
    """Median delay by change-rate decade, log-log, one line per run."""
    width, height, left, bottom = 640, 400, 70, 50
    decades = [10 ** -e for e in range(0, 5)]
    points = {}
    for label, samples in series.items():
        rows = []
        for high in decades:
            low = high / 10
            inside = [ms for rate, ms in samples if low < rate <= high]
            if inside:
                rows.append((math.sqrt(low * high), percentile(inside, 0.5)))
        points[label] = rows
    def x(rate):
        return left + (math.log10(rate) + 5) / 5 * (width - left - 20)
    def y(ms):
        return height - bottom - (math.log10(max(ms, 10)) - 1) / 4 * (height - bottom - 20)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for e in range(-5, 1):
        out.append(f'<line x1="{x(10 ** e):.0f}" y1="20" x2="{x(10 ** e):.0f}" y2="{height - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x(10 ** e):.0f}" y="{height - bottom + 18}" text-anchor="middle">{10 ** e:g}/s</text>')
    for ms, label in ((10, "10 ms"), (100, "100 ms"), (1000, "1 s"), (10000, "10 s"), (100000, "100 s")):
        out.append(f'<line x1="{left}" y1="{y(ms):.0f}" x2="{width - 20}" y2="{y(ms):.0f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(ms) + 4:.0f}" text-anchor="end">{label}</text>')
    out.append(f'<text x="{(width + left) / 2:.0f}" y="{height - 12}" text-anchor="middle">how often the topic changes</text>')
    out.append(f'<text x="16" y="{(height - bottom) / 2:.0f}" transform="rotate(-90 16 {(height - bottom) / 2:.0f})" text-anchor="middle">median detection delay</text>')
    colors = {"adaptive": "#0a7d38", "fixed": "#b42318"}
    for index, (label, rows) in enumerate(points.items()):
        color = colors.get(label.split()[0], "#333")
        out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(color, " ".join(f"{x(r):.0f},{y(m):.0f}" for r, m in rows)))
        for r, m in rows:
            out.append(f'<circle cx="{x(r):.0f}" cy="{y(m):.0f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{width - 30}" y="{40 + 16 * index}" text-anchor="end" fill="{color}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as handle:
        handle.write("\n".join(out))


def main():
    try:
        os.sched_setaffinity(0, {1})
    except OSError:
        pass
    rounds = []
    for round_index in range(ROUNDS):
        rate_adaptive, adaptive, unread_a = run("{ min: 250ms, max: 60s }", 1000 + round_index)
        fixed_interval = max(250, int(TOPICS / rate_adaptive * 1000))
        rate_fixed, fixed, unread_f = run(f"{fixed_interval}ms", 1000 + round_index)
        rounds.append({"adaptive_rate": rate_adaptive, "fixed_interval_ms": fixed_interval, "fixed_rate": rate_fixed,
                       "adaptive_p50": percentile([ms for _, ms in adaptive], 0.5), "adaptive_p99": percentile([ms for _, ms in adaptive], 0.99),
                       "fixed_p50": percentile([ms for _, ms in fixed], 0.5), "fixed_p99": percentile([ms for _, ms in fixed], 0.99),
                       "changes": (len(adaptive), len(fixed)), "unread": (unread_a, unread_f)})
        with open(os.path.join(OUT, "zipf.jsonl"), "a") as handle:
            handle.write(json.dumps(rounds[-1]) + "\n")
        if round_index == 0:
            svg({"adaptive {min 250ms, max 60s}": adaptive, f"fixed {fixed_interval / 1000:.1f}s": fixed}, os.path.join(OUT, "zipf-delay.svg"))
            print("\n| changes per second | adaptive: changes, median delay | fixed: changes, median delay |")
            print("|---|---:|---:|")
            for exponent in range(0, 5):
                high, low = 10 ** -exponent, 10 ** -(exponent + 1)
                a = [ms for rate, ms in adaptive if low < rate <= high]
                f = [ms for rate, ms in fixed if low < rate <= high]
                print(f"| {low:g}–{high:g} | {len(a)}, {percentile(a, 0.5) / 1000:.2f} s | {len(f)}, {percentile(f, 0.5) / 1000:.2f} s |")
    print("\n| round | upstream requests/s (adaptive / fixed) | fixed interval | median delay (adaptive / fixed) | p99 delay (adaptive / fixed) | changes read (adaptive / fixed) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for index, r in enumerate(rounds):
        print(f"| {index + 1} | {r['adaptive_rate']:.0f} / {r['fixed_rate']:.0f} | {r['fixed_interval_ms'] / 1000:.1f} s | "
              f"{r['adaptive_p50'] / 1000:.2f} s / {r['fixed_p50'] / 1000:.2f} s | {r['adaptive_p99'] / 1000:.2f} s / {r['fixed_p99'] / 1000:.2f} s | "
              f"{r['changes'][0]} / {r['changes'][1]} |")
    p50 = sorted(r["adaptive_p50"] / r["fixed_p50"] for r in rounds)
    p99 = sorted(r["adaptive_p99"] / r["fixed_p99"] for r in rounds)
    print(f"\nAdaptive over fixed at the same request rate: median delay {p50[len(p50) // 2]:.3f}x (range {p50[0]:.3f}-{p50[-1]:.3f}), "
          f"p99 {p99[len(p99) // 2]:.3f}x (range {p99[0]:.3f}-{p99[-1]:.3f}). Plot: {os.path.join(OUT, 'zipf-delay.svg')}")


try:
    main()
finally:
    for process in reversed(list(started)):
        process.terminate()
