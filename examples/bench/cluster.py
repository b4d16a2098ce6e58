#!/usr/bin/env python3
"""Cluster mode, measured in one run on this machine (README "Running a cluster").

  python3 examples/bench/cluster.py [BINARY]      # default .build/release/deltacast
  python3 examples/bench/cluster.py scale [BINARY] [--before OLD_BINARY] [--before-max 10000] [--load-limit 300]
                                          [--sizes 1000,10000,50000]

`scale`: Redis's load while nothing changes, against the number of topics. For each size, a
fresh redis-server and three nodes; every node holds every topic (event streams of 1,000
topics each), all polled from one upstream document that never changes (304s: no commits).
Once every stream had its snapshots and 10 s passed, 20 s of Redis's `INFO stats` (commands
inside scripts included) and `INFO cpu`, Redis's memory, and each node's RSS. `--before`
measures an earlier build the same way, interleaved size by size, up to `--before-max` topics.
A size that does not load within `--load-limit` seconds (default 300) is measured as it
stands, and the table says how many topics each node had loaded.

Starts redis-server (no persistence) on a free loopback port, one single-process node and a
three-node cluster (each node one event loop; all servers pinned to CPU 0, the load generator
to CPU 1, as in the other benchmarks), then:

1. the Redis hop's added latency: `bench fanout` (1,000 WebSocket subscribers, 100 changes at
   10/s) against the single node, a cluster node (publish and subscribe on the same node), and
   across nodes (publish to node 1, subscribers on node 2);
2. Redis commands per change with 1,000 and with 5,000 subscribers (INFO stats, the background
   ticks of the same span subtracted): constant, not per subscriber;
3. fan-out of 10,000 WebSocket subscribers: all on the single node, and spread over 3 nodes;
4. upstream requests per interval cluster-wide with 3 nodes x 1,000 SSE subscribers of the
   simulator's /api/prices (polled every second);
5. takeover: the leader of /api/prices is SIGKILLed; the time until the upstream sees the next
   poll (from another node).

Prints a Markdown table and writes one JSON line per run to $OUT/cluster.jsonl.

  python3 examples/bench/cluster.py redis-cluster [BINARY] [--rounds 5]

`redis-cluster`: one Redis against a Redis Cluster (six redis-servers: three primaries, three
replicas, `cluster-node-timeout` 1 s, no persistence), each under three nodes, in one run:

1. change latency across nodes (publish to node 1, 1,000 WebSocket subscribers on node 2,
   100 changes at 10/s), rounds interleaved one Redis / Redis Cluster; medians and ranges;
   then 10 s of Redis commands while nothing changes, one Redis against the sum over the
   primaries;
2. takeover after a node's SIGKILL on the Redis Cluster: the time until the upstream sees the
   next poll of /api/prices (from another node);
3. recovery after a primary's SIGKILL: /doc/live changes every 100 ms upstream; the time from
   the kill of the primary that serves its slot until an SSE subscriber on another node gets
   a version made after the kill. It is bounded below by the Redis Cluster's own failover
   (node timeout plus the replica's election).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

BINARY = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] not in ("scale", "redis-cluster") else ".build/release/deltacast"
ADMIN = "bench-admin-token-0123456789"
OUT = os.environ.get("OUT", os.path.join(tempfile.gettempdir(), "deltacast-bench-cluster"))
os.makedirs(OUT, exist_ok=True)
started = []


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_command(port, *arguments):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        payload = f"*{len(arguments)}\r\n".encode() + b"".join(f"${len(str(a))}\r\n{a}\r\n".encode() for a in arguments)
        connection.sendall(payload)
        reader = connection.makefile("rb")
        header = reader.readline()
        if header.startswith(b"$"):
            return reader.read(int(header[1:]) + 2)[:-2]
        return header[1:-2]


def redis_commands_processed(port):
    text = redis_command(port, "INFO", "stats").decode()
    return next(int(line.split(":")[1]) for line in text.splitlines() if line.startswith("total_commands_processed:"))


def start(arguments, config=None):
    return benchlib.start(BINARY, arguments, OUT, started, config)


def node_config(name, redis_port, simulator, redis_url=None):
    """A node on `redis_port` (the default lease), or on `redis_url` with a 3 s lease and a
    /doc/{name} endpoint polled every 100 ms (the `redis-cluster` runs)."""
    if redis_port:
        cluster = f'cluster: {{ redis: "redis://127.0.0.1:{redis_port}/0", node: {name} }}\n'
    else:
        cluster = f'cluster: {{ redis: "{redis_url}", node: {name}, lease: 3s }}\n' if redis_url else ""
    live = "  - path: /doc/{name}\n    interval: 100ms\n" if redis_url else ""
    return f"""listen: 127.0.0.1:0
upstream: {{ base: {simulator} }}
admin: {{ token: {ADMIN} }}
server: {{ event_loops: 1 }}
limits: {{ max_connections: 19000, max_connections_per_ip: 19000 }}
{cluster}endpoints:
  - path: /bench/{{room}}
    source: publish
  - path: /api/prices
    interval: 1s
    array_keys: {{ /items: id }}
{live}"""


runs = [0]


def fanout(label, subscribe_ports, publish_port, subscribers, pids):
    # A fresh topic per run: a topic with a state would greet the subscribers with the last
    # run's message before the warm-up.
    runs[0] += 1
    topic = f"/bench/run{runs[0]}"
    command = ["taskset", "-c", "1", BINARY, "bench", "fanout", "--transport", "ws", "--subscribers", str(subscribers),
               "--messages", "100", "--rate", "10", "--connect-rate", "4000", "--label", label,
               "--publish", f"http://127.0.0.1:{publish_port}/deltacast/publish?topic={topic}",
               "--publish-header", f"Authorization: Bearer {ADMIN}"]
    for port in subscribe_ports:
        command += ["--subscribe", f"http://127.0.0.1:{port}{topic}"]
    for pid in pids:
        command += ["--pid", str(pid)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    line = next((line for line in run.stdout.splitlines() if line.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"bench fanout ({label}) printed no result:\n{run.stdout}\n{run.stderr}")
    result = json.loads(line)
    with open(os.path.join(OUT, "cluster.jsonl"), "a") as handle:
        handle.write(json.dumps(result) + "\n")
    return result


def main():
    redis_port = free_port()
    redis = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    started.append(redis)
    time.sleep(0.5)
    simulator, simulator_port = start(["simulate"])
    upstream = f"http://127.0.0.1:{simulator_port}"
    single, single_port = start(["serve"], node_config("single", None, upstream))
    nodes = [start(["serve"], node_config(f"node{i + 1}", redis_port, upstream)) for i in range(3)]
    node_ports = [port for _, port in nodes]
    node_pids = [process.pid for process, _ in nodes]
    rows = []

    # 1. Latency of the Redis hop (1,000 subscribers; same run).
    base = fanout("single node", [single_port], single_port, 1000, [single.pid])
    same = fanout("cluster, same node", [node_ports[0]], node_ports[0], 1000, node_pids)
    across = fanout("cluster, across nodes", [node_ports[1]], node_ports[0], 1000, node_pids)
    for result in (base, same, across):
        rows.append((result["server"], "1,000 ws", f'{result["p50_ms"]:.1f} / {result["p99_ms"]:.1f}', f'{result["cpu_us_per_delivery"]:.2f}',
                     f'{result["lost"]} / {result["duplicated"]} / {result["reordered"]}'))

    # 2. Redis commands per change, with the ticks' own commands of an equal quiet span removed.
    def per_change(subscribers):
        quiet_before = redis_commands_processed(redis_port)
        time.sleep(10)
        quiet = redis_commands_processed(redis_port) - quiet_before
        before = redis_commands_processed(redis_port)
        started_at = time.time()
        result = fanout(f"cluster, {subscribers} subscribers", node_ports, node_ports[0], subscribers, node_pids)
        span = time.time() - started_at
        used = redis_commands_processed(redis_port) - before - quiet * span / 10
        return used / max(1, result["published"]), quiet / 10

    per_1000, idle_rate = per_change(1000)
    per_5000, _ = per_change(5000)

    # 3. 10,000 subscribers: one node vs spread over three.
    one = fanout("single node, 10,000", [single_port], single_port, 10000, [single.pid])
    three = fanout("cluster of 3, 10,000", node_ports, node_ports[0], 10000, node_pids)
    for result in (one, three):
        rows.append((result["server"], "10,000 ws", f'{result["p50_ms"]:.1f} / {result["p99_ms"]:.1f}', f'{result["cpu_us_per_delivery"]:.2f}',
                     f'{result["lost"]} / {result["duplicated"]} / {result["reordered"]}'))

    # 4. Upstream requests per interval with 3 nodes x 1,000 SSE subscribers.
    connections = []
    for port in node_ports:
        for _ in range(1000):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(b"GET /api/prices HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n")
            connections.append(connection)
    time.sleep(3)

    def requests():
        with urllib.request.urlopen(f"{upstream}/_sim/stats") as response:
            return json.load(response)["requests"].get("/api/prices", 0)

    before, t0 = requests(), time.time()
    time.sleep(20)
    polled, span = requests() - before, time.time() - t0

    # 5. Takeover: SIGKILL the leader of /api/prices; time until the upstream sees the next poll.
    import hashlib
    tag = hashlib.sha1(b"/api/prices").hexdigest()[:16]
    holder = redis_command(redis_port, "GET", f"deltacast:{{{tag}}}:owner").decode().split(" ")[0]
    victim = nodes[int(holder.replace("node", "")) - 1][0]
    last = requests()
    killed_at = time.time()
    victim.kill()
    while requests() == last and time.time() - killed_at < 30:
        time.sleep(0.02)
    takeover = time.time() - killed_at
    for connection in connections:
        connection.close()

    print("\n| run | subscribers | p50 / p99 ms | server CPU µs per delivery | lost / dup / reordered |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nRedis hop, p99: same node {same['p99_ms'] / base['p99_ms']:.2f}x the single node, across nodes {across['p99_ms'] / base['p99_ms']:.2f}x; "
          f"p50 +{same['p50_ms'] - base['p50_ms']:.1f} ms / +{across['p50_ms'] - base['p50_ms']:.1f} ms.")
    print(f"Redis commands per change: {per_1000:.1f} with 1,000 subscribers, {per_5000:.1f} with 5,000 "
          f"(background ticks: {idle_rate:.0f} commands/s for 3 nodes, subtracted).")
    print(f"10,000 subscribers over 3 nodes vs 1 node: p99 {three['p99_ms'] / one['p99_ms']:.2f}x, CPU per delivery "
          f"{three['cpu_us_per_delivery'] / one['cpu_us_per_delivery']:.2f}x (all servers share CPU 0).")
    print(f"Upstream: {polled} requests for /api/prices in {span:.1f} s at a 1 s interval with 3 nodes x 1,000 subscribers "
          f"({polled / span:.2f} per second cluster-wide).")
    print(f"Takeover: the leader ({holder}) SIGKILLed, the next upstream poll came {takeover:.2f} s later (lease 3 s + interval 1 s = 4 s at most).")


def scale_config(name, redis_port, simulator):
    return f"""listen: 127.0.0.1:0
upstream: {{ base: {simulator}, max_concurrent: 32 }}
admin: {{ token: {ADMIN} }}
server: {{ event_loops: 1 }}
limits: {{ max_connections: 1000, max_connections_per_ip: 1000, max_topics: 60000, max_topics_per_connection: 1000,
          max_request_line: 64KiB, subscribe_rate: 100000/s }}
cluster: {{ redis: redis://127.0.0.1:{redis_port}/0, node: {name}, lease: 3s }}
endpoints:
  - path: /scale/{{n}}
    upstream: /doc/static?n={{n}}
    params: {{ n: "[0-9]+" }}
    interval: 30s
    linger: 10m
"""


def redis_info(port, section):
    text = redis_command(port, "INFO", section).decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))


def scale_run(binary, size, load_limit):
    """One size on a fresh Redis and three fresh nodes; returns the figures. Topics that did not
    get their snapshot within `load_limit` seconds are counted, and the measurement goes on."""
    global BINARY
    BINARY = binary
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL)
    started.append(redis)
    time.sleep(0.5)
    simulator, simulator_port = start(["simulate"])
    upstream = f"http://127.0.0.1:{simulator_port}"
    request = urllib.request.Request(f"{upstream}/_sim/docs/doc/static", data=b'{"static":true}', method="PUT",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    nodes = [start(["serve"], scale_config(f"node{i + 1}", redis_port, upstream)) for i in range(3)]
    import selectors
    selector = selectors.DefaultSelector()
    snapshots = {port: 0 for _, port in nodes}
    sockets = []
    for _, port in nodes:
        for first in range(0, size, 1000):
            topics = "&".join(f"topic=/scale/{n}" for n in range(first, min(size, first + 1000)))
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(f"GET /deltacast/sse?{topics} HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n".encode())
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ, port)
            sockets.append(connection)
    began = time.time()
    tails = {}
    while any(count < size for count in snapshots.values()) and time.time() - began < load_limit:
        for key, _ in selector.select(1):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            text = tails.get(key.fileobj, b"") + data
            snapshots[key.data] += text.count(b'"type":"snapshot"')
            tails[key.fileobj] = text[-32:].replace(b'"type":"snapshot"', b"")
    loaded = time.time() - began

    def drain():
        for key, _ in selector.select(0):
            try:
                key.fileobj.recv(1 << 20)
            except BlockingIOError:
                pass

    settle_until = time.time() + 10
    while time.time() < settle_until:
        drain()
        time.sleep(0.2)
    commands0 = int(redis_info(redis_port, "stats")["total_commands_processed"])
    cpu = redis_info(redis_port, "cpu")
    cpu0 = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    t0 = time.time()
    while time.time() - t0 < 20:
        drain()
        time.sleep(0.2)
    span = time.time() - t0
    commands = (int(redis_info(redis_port, "stats")["total_commands_processed"]) - commands0) / span
    cpu = redis_info(redis_port, "cpu")
    redis_cpu = (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]) - cpu0) / span
    memory = int(redis_info(redis_port, "memory")["used_memory"])
    counters = {}
    for name in ("membership_lapses_total", "changes_resyncs_total", "lease_takeovers_total", "gap_fills_total", "resets_total"):
        counters[name] = []
        for _, port in nodes:
            try:
                with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                                                   headers={"Authorization": f"Bearer {ADMIN}"}), timeout=10) as response:
                    text = response.read().decode()
                counters[name].append(next((float(line.split()[-1]) for line in text.splitlines()
                                            if line.startswith("deltacast_cluster_" + name + " ")), None))
            except OSError:
                counters[name].append(None)
    rss = [rss_bytes(process.pid) for process, _ in nodes]
    for connection in sockets:
        connection.close()
    for process in [process for process, _ in nodes] + [simulator, redis]:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()   # a node of an earlier build may be stuck on Redis
            process.wait(15)
        started.remove(process)
    return {"size": size, "commands_per_second": commands, "redis_cpu": redis_cpu, "redis_memory": memory,
            "node_rss": rss, "loaded_seconds": loaded, "snapshots": min(snapshots.values()), "counters": counters}


def scale_main(arguments):
    binary = ".build/release/deltacast"
    before = None
    before_max = 10000
    load_limit = 300
    sizes = [1000, 10000, 50000]
    index = 0
    while index < len(arguments):
        if arguments[index] == "--before":
            before = arguments[index + 1]
            index += 2
        elif arguments[index] == "--before-max":
            before_max = int(arguments[index + 1])
            index += 2
        elif arguments[index] == "--load-limit":
            load_limit = int(arguments[index + 1])
            index += 2
        elif arguments[index] == "--sizes":
            sizes = [int(size) for size in arguments[index + 1].split(",")]
            index += 2
        else:
            binary = arguments[index]
            index += 1
    builds = [("this build", binary)] + ([("before", before)] if before else [])
    results = []
    for size in sizes:
        for label, path in builds:
            if label == "before" and size > before_max:
                continue
            result = scale_run(path, size, load_limit)
            result["build"] = label
            results.append(result)
            with open(os.path.join(OUT, "cluster-scale.jsonl"), "a") as handle:
                handle.write(json.dumps(result) + "\n")
            print(f"{label}, {size} topics: {result['commands_per_second']:,.0f} commands/s, Redis CPU {result['redis_cpu'] * 100:.1f} %, "
                  f"nodes' counters {result['counters']}", file=sys.stderr)
    print("\n| build | topics on each of 3 nodes | loaded in | Redis commands/s | Redis CPU | Redis memory | node RSS (each) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for result in results:
        rss = "–".join(f"{value / 2**20:.0f}" for value in (min(result["node_rss"]), max(result["node_rss"])))
        loaded = f"{result['loaded_seconds']:.0f} s" if result["snapshots"] >= result["size"] else \
            f"{result['snapshots']:,} of {result['size']:,} in {result['loaded_seconds']:.0f} s"
        print(f"| {result['build']} | {result['size']:,} | {loaded} | {result['commands_per_second']:,.0f} | {result['redis_cpu'] * 100:.1f} % | "
              f"{result['redis_memory'] / 2**20:.1f} MiB | {rss} MiB |")
    mine = {result["size"]: result for result in results if result["build"] == "this build"}
    if min(sizes) in mine and max(sizes) in mine:
        print(f"\nCommands/s at {max(sizes):,} topics: {mine[max(sizes)]['commands_per_second'] / mine[min(sizes)]['commands_per_second']:.2f}x "
              f"those at {min(sizes):,}.")


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def redis_cluster_start(directory):
    """Six cluster-enabled redis-servers on CPU 0 (ports at most 55535: the bus is +10000), made
    into three primaries with a replica each. Returns the ports and the processes by port."""
    import random
    ports = []
    while len(ports) < 6:
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        if all(abs(port - other) not in (0, 10000) for other in ports):
            ports.append(port)
    processes = {}
    for port in ports:
        os.makedirs(os.path.join(directory, str(port)), exist_ok=True)
        processes[port] = subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                            "--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no",
                                            "--dir", os.path.join(directory, str(port))], stdout=subprocess.DEVNULL)
        started.append(processes[port])
    time.sleep(0.5)
    subprocess.run(["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{port}" for port in ports] + ["--cluster-replicas", "1", "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:
        if all(b"cluster_state:ok" in redis_command(port, "CLUSTER", "INFO") for port in ports):
            return ports, processes
        time.sleep(0.1)
    raise RuntimeError("the Redis Cluster did not become ok")


def cluster_slot_primary(ports, slot):
    """The port of the primary that serves `slot`, from CLUSTER SHARDS-free parsing of CLUSTER NODES."""
    for port in ports:
        try:
            text = redis_command(port, "CLUSTER", "NODES").decode()
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                first, _, last = part.partition("-")
                if first.isdigit() and int(first) <= slot <= int(last or first):
                    return int(fields[1].split(":")[1].split("@")[0])
    return None


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def redis_cluster_main(arguments):
    global BINARY
    rounds = 5
    while arguments:
        argument = arguments.pop(0)
        if argument == "--rounds":
            rounds = int(arguments.pop(0))
        else:
            BINARY = argument
    directory = tempfile.mkdtemp(prefix="deltacast-bench-redis-cluster-")
    redis_port = free_port()
    started.append(subprocess.Popen(["taskset", "-c", "0", "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"], stdout=subprocess.DEVNULL))
    cluster_ports, cluster_processes = redis_cluster_start(directory)
    simulator, simulator_port = start(["simulate"])
    upstream = f"http://127.0.0.1:{simulator_port}"
    seeds = f"redis-cluster://127.0.0.1:{cluster_ports[0]},127.0.0.1:{cluster_ports[1]}"
    one = [start(["serve"], node_config(f"one{i + 1}", None, upstream, redis_url=f"redis://127.0.0.1:{redis_port}/0")) for i in range(3)]
    sharded = [start(["serve"], node_config(f"sharded{i + 1}", None, upstream, redis_url=seeds)) for i in range(3)]

    # 1. Change latency across nodes, interleaved.
    results = {"one Redis": [], "Redis Cluster": []}
    for _ in range(rounds):
        for label, nodes in (("one Redis", one), ("Redis Cluster", sharded)):
            results[label].append(fanout(f"cluster on {label}, across nodes", [nodes[1][1]], nodes[0][1], 1000, [p.pid for p, _ in nodes]))
    print("\n| Redis | rounds | p50 ms (median, range) | p99 ms (median, range) | lost / dup / reordered |")
    print("|---|---:|---:|---:|---:|")
    for label, found in results.items():
        p50 = [r["p50_ms"] for r in found]
        p99 = [r["p99_ms"] for r in found]
        faults = sum(r["lost"] for r in found), sum(r["duplicated"] for r in found), sum(r["reordered"] for r in found)
        print(f"| {label} | {len(found)} | {median(p50):.1f} ({min(p50):.1f}-{max(p50):.1f}) | {median(p99):.1f} ({min(p99):.1f}-{max(p99):.1f}) | "
              f"{faults[0]} / {faults[1]} / {faults[2]} |")
    ratio50 = median([c["p50_ms"] / o["p50_ms"] for c, o in zip(results["Redis Cluster"], results["one Redis"])])
    ratio99 = median([c["p99_ms"] / o["p99_ms"] for c, o in zip(results["Redis Cluster"], results["one Redis"])])
    print(f"\nRedis Cluster against one Redis, same round: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x (medians of the per-round ratios).")

    # Redis's load while nothing changes (the nodes hold the fan-out topics): commands/s summed
    # over the primaries, against one Redis, over the same 10 s.
    primaries = [port for port in cluster_ports if b"role:master" in redis_command(port, "INFO", "replication")]
    counted = [redis_port] + primaries
    before = {port: redis_commands_processed(port) for port in counted}
    time.sleep(10)
    idle = {port: (redis_commands_processed(port) - before[port]) / 10 for port in counted}
    idle_one, idle_cluster = idle[redis_port], sum(idle[port] for port in primaries)
    print(f"While nothing changes: one Redis {idle_one:.0f} commands/s, the Redis Cluster {idle_cluster:.0f} over {len(primaries)} primaries "
          f"({', '.join(f'{idle[port]:.0f}' for port in primaries)}), for 3 nodes each.")

    def requests(path):
        with urllib.request.urlopen(f"{upstream}/_sim/stats") as response:
            return json.load(response)["requests"].get(path, 0)

    # 2. A node's SIGKILL on the Redis Cluster.
    import hashlib
    streams = []
    for _, port in sharded:
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(b"GET /api/prices HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n")
        streams.append(connection)
    time.sleep(5)
    tag = hashlib.sha1(b"/api/prices").hexdigest()[:16]
    slot = crc16(tag.encode()) % 16384
    owner_port = cluster_slot_primary(cluster_ports, slot)
    holder = redis_command(owner_port, "GET", f"deltacast:{{{tag}}}:owner").decode().split(" ")[0]
    victim_index = int(holder.replace("sharded", "")) - 1
    victim = sharded[victim_index][0]
    last = requests("/api/prices")
    killed_at = time.time()
    victim.kill()
    while requests("/api/prices") == last and time.time() - killed_at < 30:
        time.sleep(0.02)
    node_takeover = time.time() - killed_at
    survivors = [node for index, node in enumerate(sharded) if index != victim_index]

    # 3. A primary's SIGKILL: time until a change made after it reaches a subscriber.
    topic = "/doc/live"
    version = [0]
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            version[0] += 1
            body = json.dumps({"version": version[0], "at": time.time()}).encode()
            urllib.request.urlopen(urllib.request.Request(f"{upstream}/_sim/docs{topic}", data=body, method="PUT",
                                                          headers={"Content-Type": "application/json"})).read()
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    for _, port in survivors:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{topic}").read()
    reader = socket.create_connection(("127.0.0.1", survivors[1][1]), timeout=60)
    reader.sendall(f"GET {topic} HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n".encode())
    time.sleep(3)
    tag = hashlib.sha1(topic.encode()).hexdigest()[:16]
    primary = cluster_slot_primary(cluster_ports, crc16(tag.encode()) % 16384)
    reader.setblocking(False)
    try:
        while reader.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    reader.setblocking(True)
    killed_version = version[0]
    killed_at = time.time()
    cluster_processes[primary].kill()
    promoted = {}

    def watch_failover():
        # When a surviving node first names another primary for the slot: Redis's own failover.
        others = [port for port in cluster_ports if port != primary]
        while time.time() - killed_at < 60 and "at" not in promoted:
            owner = cluster_slot_primary(others, crc16(tag.encode()) % 16384)
            if owner is not None and owner != primary:
                promoted["at"] = time.time() - killed_at
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_failover, daemon=True)
    watcher.start()
    received = b""
    recovered = None
    import re
    while time.time() - killed_at < 60:
        received += reader.recv(1 << 16)
        versions = [int(v) for v in re.findall(rb'"version": ?(\d+)', received)] + \
                   [int(v) for v in re.findall(rb'"path":"/version","value":(\d+)', received)]
        if any(v > killed_version + 1 for v in versions):
            recovered = time.time() - killed_at
            break
        received = received[-4096:]
    stop.set()
    reader.close()
    for connection in streams:
        connection.close()
    print(f"Takeover on a Redis Cluster: the owning node ({holder}) SIGKILLed, the next upstream poll came {node_takeover:.2f} s later "
          f"(lease 3 s + interval 1 s = 4 s at most).")
    watcher.join(60)
    print(f"A primary SIGKILLed (cluster-node-timeout 1 s): its replica was promoted after {promoted.get('at', float('nan')):.2f} s; "
          f"changes reached a subscriber on another node again after {recovered:.2f} s." if recovered else "A primary SIGKILLed: no change arrived within 60 s.")
    with open(os.path.join(OUT, "cluster.jsonl"), "a") as handle:
        handle.write(json.dumps({"mode": "redis-cluster", "idle_one": idle_one, "idle_cluster": idle_cluster, "p50_ratio": ratio50, "p99_ratio": ratio99, "node_takeover_s": node_takeover,
                                 "primary_kill_recovery_s": recovered,
                                 "replica_promoted_s": promoted.get("at")}) + "\n")
    import shutil
    shutil.rmtree(directory, ignore_errors=True)


try:
    if len(sys.argv) > 1 and sys.argv[1] == "scale":
        scale_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "redis-cluster":
        redis_cluster_main(sys.argv[2:])
    else:
        main()
finally:
    for process in reversed(started):
        process.terminate()
    for process in started:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
