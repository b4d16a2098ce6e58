#!/usr/bin/env python3
"""Turns run.sh's JSON lines into the README's Markdown table, with ratios to Nchan and to the
limit server (../shared/limit) of the same scenario in the same run."""
import json
import sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
print("| scenario | server | transport | N | received / expected | lost | dup | reord | p50 ms | p99 ms | vs Nchan | vs limit "
      "| delivered/s | vs Nchan | vs limit | CPU µs/delivery | vs Nchan | vs limit | RSS/conn B |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def key(r):
    return (r["bench"], r["transport"], r["subscribers"])


# With several rounds (run.sh fanout), a row is compared with the reference of its own round:
# the k-th run of a server in a scenario against the k-th run of Nchan or the limit in it.
seen = {}
for r in runs:
    r["_round"] = seen[(r["server"], key(r))] = seen.get((r["server"], key(r)), -1) + 1
references = {name: {(key(r), r["_round"]): r for r in runs if r["server"] == name} for name in ("nchan", "limit")}
for r in runs:
    def ratio(field, against, digits=2):
        if r["server"] == against:
            return "1"
        peer = references[against].get((key(r), r["_round"]))
        if not peer or not float(peer.get(field) or 0):
            return ""
        return f"{float(r[field]) / float(peer[field]):.{digits}f}×"
    scenario = {"fanout": f"fanout {r['messages']}@{r['rate']}/s", "throughput": f"throughput {r['messages']} (window {r['window']})",
                "connections": "idle connections"}[r["bench"]]
    print(f"| {scenario} | {r['server']} | {r['transport']} | {r['confirmed']:,} | {r['received']:,} / {r['expected']:,} | {r['lost']} | "
          f"{r['duplicated']} | {r['reordered']} | {r['p50_ms']} | {r['p99_ms']} | {ratio('p99_ms', 'nchan')} | {ratio('p99_ms', 'limit')} | "
          f"{int(float(r['delivered_per_s'])):,} | {ratio('delivered_per_s', 'nchan')} | {ratio('delivered_per_s', 'limit')} | "
          f"{r['cpu_us_per_delivery']} | {ratio('cpu_us_per_delivery', 'nchan')} | {ratio('cpu_us_per_delivery', 'limit')} | {r['rss_per_connection']} |")
