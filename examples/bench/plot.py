#!/usr/bin/env python3
"""Draws run.sh's results as PNG plots: for each scenario, each server's median across the
rounds as a bar and the range of the rounds as a whisker.

    plot.py RESULTS.jsonl OUT_DIR
    plot.py --png DRAWING.svg          # an SVG a bench drew, as a PNG beside it

RESULTS.jsonl holds the JSON lines of `deltacast bench` (fanout, throughput, polling). Writes
one SVG per plot and, with Chromium installed (/usr/bin/chromium), the PNG the catalogue shows:
  fanout-cpu.png, fanout-p99.png        CPU per delivery and p99 latency, 10,000 subscribers
  throughput.png                         deliveries per second
  polling-cpu.png                        CPU per poll, Deltacast against the C libcurl loop
"""
import json
import math
import os
import statistics
import subprocess
import sys
from collections import defaultdict

WIDTH, ROW, LEFT, RIGHT, TOP = 760, 26, 230, 90, 56
COLOURS = {"deltacast": "#1f6feb", "deltacast-before": "#8ab4f8", "limit": "#6e7781", "nchan": "#d4a72c", "pushpin": "#bf3989",
           "C libcurl-multi loop": "#6e7781"}


def number(value):
    """Three significant digits, with thousands separators for large values."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def nice_step(top):
    """A tick step of 1, 2 or 5 times a power of ten that gives 3 to 6 ticks up to `top`."""
    power = 10 ** math.floor(math.log10(top))
    for factor in (0.1, 0.2, 0.5, 1, 2, 5):
        if top / (factor * power) <= 6:
            return factor * power
    return 10 * power


def bars_svg(title, unit, rows):
    """rows: (label, server, median, low, high); one horizontal bar each."""
    height = TOP + ROW * len(rows) + 40
    step = nice_step(max(high for *_, high in rows) or 1)
    top = step * math.ceil((max(high for *_, high in rows) or 1) / step)
    scale = (WIDTH - LEFT - RIGHT) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="DejaVu Sans, sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{title}</text>',
           f'<text x="{LEFT}" y="42" fill="#57606a">{unit}; bar: median of the rounds, whisker: their range</text>']
    for index, (label, server, median, low, high) in enumerate(rows):
        y = TOP + index * ROW
        colour = COLOURS.get(server, "#57606a")
        out.append(f'<text x="{LEFT - 8}" y="{y + 16}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{LEFT}" y="{y + 4}" width="{max(1, median * scale):.1f}" height="{ROW - 8}" fill="{colour}"/>')
        out.append(f'<line x1="{LEFT + low * scale:.1f}" x2="{LEFT + high * scale:.1f}" y1="{y + ROW / 2}" y2="{y + ROW / 2}" stroke="black"/>')
        for x in (low, high):
            out.append(f'<line x1="{LEFT + x * scale:.1f}" x2="{LEFT + x * scale:.1f}" y1="{y + 8}" y2="{y + ROW - 8}" stroke="black"/>')
        out.append(f'<text x="{LEFT + high * scale + 6:.1f}" y="{y + 16}">{number(median)}</text>')
    axis_y = TOP + ROW * len(rows) + 6
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axis_y}" y2="{axis_y}" stroke="#8c959f"/>')
    for tick in range(round(top / step) + 1):
        value = tick * step
        x = LEFT + value * scale
        out.append(f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#57606a">{number(value)}</text>')
    out.append("</svg>")
    return "\n".join(out), height


def write(directory, name, title, unit, rows):
    if not rows:
        return
    svg, height = bars_svg(title, unit, rows)
    path = os.path.join(directory, name + ".svg")
    with open(path, "w") as handle:
        handle.write(svg)
    png(path, WIDTH, height)


def summary(values):
    return statistics.median(values), min(values), max(values)


def png(svg, width, height):
    """`svg` drawn as a PNG beside it by headless Chromium; returns its path (None without Chromium)."""
    if not os.path.exists("/usr/bin/chromium"):
        print(f"{svg} (no Chromium: no PNG)")
        return None
    path = os.path.splitext(svg)[0] + ".png"
    subprocess.run(["/usr/bin/chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={path}", "file://" + os.path.abspath(svg)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(path)
    return path


def main():
    if sys.argv[1] == "--png":
        # An SVG a bench drew (zipf-delay.svg): its size from its root element.
        text = open(sys.argv[2]).read()
        size = [int(float(text.split(f'{name}="', 1)[1].split('"', 1)[0])) for name in ("width", "height")]
        png(sys.argv[2], *size)
        return
    results, directory = sys.argv[1], sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    runs = [json.loads(line) for line in open(results) if line.startswith("{")]
    order = ["deltacast", "deltacast-before", "limit", "nchan", "pushpin"]
    grouped = defaultdict(list)
    for run in runs:
        if run.get("bench") in ("fanout", "throughput"):
            grouped[(run["bench"], run["transport"], run["subscribers"], run["server"])].append(run)
    def rows(bench, field):
        out = []
        for (kind, transport, subscribers, server), group in sorted(grouped.items(), key=lambda item: (item[0][1], item[0][2], order.index(item[0][3]) if item[0][3] in order else 9)):
            if kind == bench:
                median, low, high = summary([float(run[field]) for run in group])
                out.append((f"{server}, {transport}, {subscribers:,}", server, median, low, high))
        return out
    write(directory, "fanout-cpu", "Fan-out: CPU per delivery", "µs per delivery", rows("fanout", "cpu_us_per_delivery"))
    write(directory, "fanout-p99", "Fan-out: p99 latency", "ms, publish to the last subscriber", rows("fanout", "p99_ms"))
    write(directory, "throughput", "Throughput", "deliveries per second", rows("throughput", "delivered_per_s"))
    polling = defaultdict(list)
    for run in runs:
        if run.get("bench") == "polling" and "results" in run:
            for result in run["results"]:
                polling[result["poller"]].append(float(result["cpu_us_per_poll"]))
    write(directory, "polling-cpu", "10,000 polled topics: CPU per poll", "µs per poll",
          [(poller, "deltacast" if poller == "deltacast" else poller, *summary(values)) for poller, values in polling.items()])


if __name__ == "__main__":
    main()
