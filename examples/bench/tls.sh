#!/usr/bin/env bash
# Fan-out over TLS vs plaintext, side by side in one run: two `deltacast serve` processes with
# the same configuration except `tls:`, each pinned to CPU 0 with one event loop, the load
# generator on CPU 1. Subscribers use ws:// or wss:// (TLS 1.3, the proxy's default); publishes
# go to each proxy's plain admin listener (admin.listen), so only the fan-out is encrypted.
#
#   examples/bench/tls.sh [quick]      # quick: N = 1,000 only
#
# Writes one JSON line per run to $OUT/tls.jsonl and the README table to $OUT/tls.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=${1:-}
OUT=${OUT:-${TMPDIR:-/tmp}/deltacast-bench-tls}
mkdir -p "$OUT"
: > "$OUT/tls.jsonl"
swift build -c release --product deltacast >/dev/null
BENCH=(taskset -c 1 .build/release/deltacast bench)
TOKEN=bench-admin-token-0123456789
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

config() {  # $1 = listen port, $2 = admin port, $3 = extra lines
    cat <<CONF
listen: 127.0.0.1:$1
admin: { token: $TOKEN, listen: 127.0.0.1:$2 }
server: { event_loops: 1 }
limits: { max_connections_per_ip: 100000, max_connections: 100000 }
endpoints:
  - path: /bench/{run}
    source: publish
    diff: snapshot
$3
CONF
}
config 18311 18312 "" > "$OUT/plain.yaml"
config 18313 18314 "tls: { certificate: $OUT/cert.pem, key: $OUT/key.pem }" > "$OUT/tls.yaml"

started=()
cleanup() { for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start() {  # $1 = config; sets PID
    ( ulimit -n 20000; exec taskset -c 0 .build/release/deltacast serve -c "$1" ) >"$1.log" 2>&1 &
    PID=$!; started+=("$PID")
    sleep 1
}
start "$OUT/plain.yaml"; PLAIN=$PID
start "$OUT/tls.yaml"; TLS=$PID

record() { tee /dev/stderr | tail -n 1 >> "$OUT/tls.jsonl"; }
RUN=0
run() {  # $1 = label, $2 = scheme (ws/wss or http/https), $3 = port, $4 = admin port, $5 = pid, rest = bench arguments
    local label=$1 scheme=$2 port=$3 admin=$4 pid=$5; shift 5
    RUN=$((RUN + 1))   # a topic per run: no run starts from the previous one's state
    "${BENCH[@]}" "$@" --connect-rate 2000 --label "$label" --pid "$pid" \
        --subscribe "$scheme://127.0.0.1:$port/bench/r$RUN" \
        --publish "http://127.0.0.1:$admin/deltacast/publish?topic=/bench/r$RUN" \
        --publish-header "Authorization: Bearer $TOKEN" | record || true
}

SIZES=(1000 10000); [ "$QUICK" = quick ] && SIZES=(1000)
# Idle memory per connection first, while both processes are fresh (later runs leave freed
# memory that new connections reuse): a TLS session vs none (OpenSSL's buffers are released
# while idle, SSL_MODE_RELEASE_BUFFERS).
run plaintext ws 18311 18312 $PLAIN connections --transport ws --subscribers ${SIZES[-1]}
run tls wss 18313 18314 $TLS connections --transport ws --subscribers ${SIZES[-1]}
for n in "${SIZES[@]}"; do
    for transport in ws sse; do
        plain_scheme=$([ $transport = ws ] && echo ws || echo http)
        tls_scheme=$([ $transport = ws ] && echo wss || echo https)
        messages=$(( n >= 10000 ? 200 : 1000 ))
        run plaintext $plain_scheme 18311 18312 $PLAIN fanout --transport $transport --subscribers $n --messages 100 --rate 10
        run tls $tls_scheme 18313 18314 $TLS fanout --transport $transport --subscribers $n --messages 100 --rate 10
        run plaintext $plain_scheme 18311 18312 $PLAIN throughput --pipeline 8 --transport $transport --subscribers $n --messages $messages
        run tls $tls_scheme 18313 18314 $TLS throughput --pipeline 8 --transport $transport --subscribers $n --messages $messages
    done
done

python3 - "$OUT/tls.jsonl" > "$OUT/tls.md" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
key = lambda r: (r["bench"], r["transport"], r["subscribers"])
plain = {key(r): r for r in rows if r["server"] == "plaintext"}
print("| bench | transport | N | delivered/s plain → TLS | ratio | p99 ms plain → TLS | ratio | CPU µs/delivery plain → TLS | ratio | idle B/conn plain → TLS | lost |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r["server"] != "tls" or key(r) not in plain:
        continue
    p = plain[key(r)]
    def ratio(a, b): return f"{a / b:.2f}×" if b else "–"
    if r["bench"] == "connections":
        print(f"| connections | {r['transport']} | {r['subscribers']:,} | – | – | – | – | – | – | {p['rss_per_connection']:,.0f} → {r['rss_per_connection']:,.0f} ({ratio(r['rss_per_connection'], p['rss_per_connection'])}) | – |")
        continue
    print(f"| {r['bench']} | {r['transport']} | {r['subscribers']:,} | {p['delivered_per_s']:,.0f} → {r['delivered_per_s']:,.0f} | {ratio(r['delivered_per_s'], p['delivered_per_s'])} "
          f"| {p['p99_ms']:.1f} → {r['p99_ms']:.1f} | {ratio(r['p99_ms'], p['p99_ms'])} | {p['cpu_us_per_delivery']:.2f} → {r['cpu_us_per_delivery']:.2f} "
          f"| {ratio(r['cpu_us_per_delivery'], p['cpu_us_per_delivery'])} | – | {p['lost']} / {r['lost']} |")
PY
cat "$OUT/tls.md"
