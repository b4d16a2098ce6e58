#!/usr/bin/env python3
"""Turns run.sh's JSON lines into the README's Markdown table, with ratios to Nchan."""
import json
import sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
print("| scenario | server | transport | N | received / expected | lost | dup | reord | p50 ms | p99 ms | delivered/s | vs Nchan | CPU µs/delivery | vs Nchan | RSS/conn B |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def key(r):
    return (r["bench"], r["transport"], r["subscribers"])
nchan = {key(r): r for r in runs if r["server"] == "nchan"}
for r in runs:
    peer = nchan.get(key(r))
    def ratio(field, digits=2):
        if not peer or not peer.get(field) or r["server"] == "nchan":
            return "" if r["server"] != "nchan" else "1"
        return f"{float(r[field]) / float(peer[field]):.{digits}f}×"
    scenario = {"fanout": f"fanout {r['messages']}@{r['rate']}/s", "throughput": f"throughput {r['messages']} (window {r['window']})",
                "connections": "idle connections"}[r["bench"]]
    print(f"| {scenario} | {r['server']} | {r['transport']} | {r['confirmed']:,} | {r['received']:,} / {r['expected']:,} | {r['lost']} | {r['duplicated']} | {r['reordered']} | "
          f"{r['p50_ms']} | {r['p99_ms']} | {int(float(r['delivered_per_s'])):,} | {ratio('delivered_per_s')} | {r['cpu_us_per_delivery']} | {ratio('cpu_us_per_delivery')} | {r['rss_per_connection']} |")
