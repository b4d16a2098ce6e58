#!/usr/bin/env bash
# Side-by-side push benchmarks: Deltacast, Nchan (nginx + libnginx-mod-nchan) and Pushpin, and the
# limit (../shared/limit/ideal.c, when present: the practical one-core ceiling), the
# same load generator (`deltacast bench`), the same 200-byte messages, the same N, the same
# pinning: each server on CPU 0 (one worker, one loop), the load generator on CPU 1.
#
#   examples/bench/run.sh [quick|fanout|throughput|polling|zipf|coldstart|json]   # quick: N = 1,000 only; the others: below
#   BEFORE=/tmp/deltacast-old examples/bench/run.sh   # also an older build, same run
#
# Installs nginx, libnginx-mod-nchan and pushpin from Debian when missing, starts each server
# from a private directory, runs every scenario, stops what it started (by PID), and writes one
# JSON line per run to $OUT/results.jsonl, the README table to $OUT/results.md, and the plots
# (examples/bench/plot.py: PNG through Chromium, when installed) to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=${1:-}
OUT=${OUT:-${TMPDIR:-/tmp}/deltacast-bench-peers}
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

missing=()
for package in nginx libnginx-mod-nchan pushpin; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
swift build -c release --product deltacast >/dev/null
BENCH=(taskset -c 1 .build/release/deltacast bench)
# Every run connects 2,000 subscribers per second: Pushpin loses subscriptions of a faster
# burst (its internal queues), and the same pace for every server keeps the comparison fair.
PACE=(--connect-rate 2000)
# Throughput runs keep 8 publishes in flight on one keep-alive connection (pipelined), so a
# server may take several messages in one loop iteration. Pushpin's publish endpoint closes the
# connection after each answer, so its publishes go one at a time.
PIPE=(--pipeline 8)
started=()
cleanup() { for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# --- Nchan: one nginx worker on CPU 0.
NGINX_DIR="$OUT/nginx"; mkdir -p "$NGINX_DIR/tmp"
cat > "$NGINX_DIR/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $NGINX_DIR/tmp; proxy_temp_path $NGINX_DIR/tmp; fastcgi_temp_path $NGINX_DIR/tmp;
    uwsgi_temp_path $NGINX_DIR/tmp; scgi_temp_path $NGINX_DIR/tmp;
    server {
        listen 127.0.0.1:18301 backlog=4096;
        location = /sub { nchan_subscriber; nchan_channel_id bench; nchan_subscriber_first_message newest; }
        location = /pub { nchan_publisher; nchan_channel_id bench; nchan_message_buffer_length 32; nchan_message_timeout 5m; }
    }
}
CONF
start_nginx() {
    ( ulimit -n 20000; exec taskset -c 0 nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" -g 'daemon off;' ) &
    NGINX_PID=$!; started+=("$NGINX_PID")
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:18301/pub" -X GET && break; sleep 0.1; done
    NGINX_PIDS=("$NGINX_PID" $(pgrep -P "$NGINX_PID" || true))
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- The limit: ../shared/limit/ideal.c, a minimal one-core C fan-out server (the practical
# ceiling of this machine, not a peer), built here when that folder is present; writev mode
# (one writev per connection per loop iteration, as Deltacast does), CPU 0.
LIMIT_SRC=${LIMIT_SRC:-../shared/limit/ideal.c}
LIMIT_BIN=""
if [ ! -f "$LIMIT_SRC" ]; then
    echo "run.sh: no $LIMIT_SRC: the limit server's rows are left out" >&2
elif ! command -v gcc >/dev/null 2>&1; then
    echo "run.sh: no gcc (apt-get install gcc): the limit server's rows are left out" >&2
elif gcc -O2 -Wall -o "$OUT/ideal" "$LIMIT_SRC" -lcrypto; then
    LIMIT_BIN="$OUT/ideal"
fi
start_limit() {
    ( ulimit -n 20000; exec taskset -c 0 "$LIMIT_BIN" -p 18305 -m writev -t 3600 ) &
    LIMIT_PID=$!; started+=("$LIMIT_PID")
    for _ in $(seq 50); do curl -s -o /dev/null --max-time 1 -X POST -d x "http://127.0.0.1:18305/pub/warm" && break; sleep 0.1; done
}
# BEFORE=PATH examples/bench/run.sh: an older build's rows too, labelled deltacast-before, in
# the same run under the same load: it serves, this build's load generator measures it.
before_run() {
    [ -n "${BEFORE:-}" ] || return 0
    "${BENCH[@]}" "$@" --server-binary "$BEFORE" --label deltacast-before | record || true
}
# limit_run BENCH-ARGS...: one run against the limit server, when it was built.
limit_run() {
    [ -n "$LIMIT_BIN" ] || return 0
    start_limit
    "${BENCH[@]}" "$@" --label limit --pid "$LIMIT_PID" \
        --subscribe http://127.0.0.1:18305/sub/bench --publish http://127.0.0.1:18305/pub/bench | record || true
    stop_pid "$LIMIT_PID"
}

# --- Pushpin: its processes (condure, proxy, handler) on CPU 0; delivery rate limit raised.
PUSHPIN_DIR="$OUT/pushpin"; mkdir -p "$PUSHPIN_DIR/run" "$PUSHPIN_DIR/log"
sed -e "s|^rundir=.*|rundir=$PUSHPIN_DIR/run|" -e "s|^logdir=.*|logdir=$PUSHPIN_DIR/log|" \
    -e "s|^http_port=.*|http_port=127.0.0.1:18302|" -e "s|^push_in_http_port=.*|push_in_http_port=18303|" \
    -e "s|^services=.*|services=condure,zurl,pushpin-proxy,pushpin-handler|" -e "s|^message_rate=.*|message_rate=10000000|" \
    -e "s|^message_hwm=.*|message_hwm=100000000|" -e "s|^client_maxconn=.*|client_maxconn=25000|" \
    -e "s|^routesfile=.*|routesfile=$PUSHPIN_DIR/routes|" \
    -e "s|^\[proxy\]$|[proxy]\nzurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out|" \
    /etc/pushpin/pushpin.conf > "$PUSHPIN_DIR/pushpin.conf"
# (zurl, which forwards requests to the origin, is started by Pushpin's runner with sockets in
# our run directory; the package's defaults point at the system service's.)
echo "* 127.0.0.1:18304,over_http" > "$PUSHPIN_DIR/routes"
start_pushpin() {
    python3 examples/bench/grip_origin.py 18304 & ORIGIN_PID=$!; started+=("$ORIGIN_PID")
    ( ulimit -n 20000; exec taskset -c 0 pushpin --config "$PUSHPIN_DIR/pushpin.conf" ) >"$PUSHPIN_DIR/log/runner.log" 2>&1 &
    PUSHPIN_PID=$!; started+=("$PUSHPIN_PID")
    for _ in $(seq 100); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:18303/publish/" -d '{"items":[]}' && break; sleep 0.1; done
    sleep 1
    PUSHPIN_PIDS=($(pgrep -P "$PUSHPIN_PID" || true) "$PUSHPIN_PID")
}

pids() { local out=(); for pid in "$@"; do out+=(--pid "$pid"); done; echo "${out[@]}"; }
record() { tee /dev/stderr | tail -n 1 >> "$OUT/results.jsonl"; }

# in_rounds BENCH-ARGS...: ROUNDS times (default 3), WebSocket then SSE, one run each of
# Deltacast, BEFORE when given, the limit and Nchan, all with BENCH-ARGS; then the table and
# the plots.
in_rounds() {
    for round in $(seq "${ROUNDS:-3}"); do
        for transport in ws sse; do
            args=("$@" --transport $transport)
            "${BENCH[@]}" "${args[@]}" --diff snapshot --label deltacast | record || true
            before_run "${args[@]}" --diff snapshot
            limit_run "${args[@]}"
            start_nginx
            "${BENCH[@]}" "${args[@]}" --label nchan $(pids "${NGINX_PIDS[@]}") \
                --subscribe http://127.0.0.1:18301/sub --publish http://127.0.0.1:18301/pub | record || true
            stop_pid "$NGINX_PID"
        done
    done
    python3 examples/bench/table.py "$OUT/results.jsonl" > "$OUT/results.md"
    cat "$OUT/results.md"
    python3 examples/bench/plot.py "$OUT/results.jsonl" "$OUT"
}

# fanout: 100 messages at 10/s to 10,000 subscribers, in rounds: about 12 minutes.
if [ "$QUICK" = fanout ]; then
    in_rounds fanout "${PACE[@]}" --subscribers 10000 --messages 100 --rate 10
    exit 0
fi

# throughput: 200 publishes as fast as 10,000 subscribers take them (window 8), in rounds.
if [ "$QUICK" = throughput ]; then
    in_rounds throughput "${PACE[@]}" "${PIPE[@]}" --subscribers 10000 --messages 200
    exit 0
fi

# polling: 10,000 per-user topics polled every second by Deltacast, then by a minimal C
# libcurl-multi loop (examples/bench/curl_poll_loop.c, built here), against the simulated API;
# each poller on CPU 0, the simulator and the bench on CPU 1.
if [ "$QUICK" = polling ]; then
    command -v gcc >/dev/null 2>&1 || { echo "run.sh polling: needs gcc (apt-get install gcc) for the C loop" >&2; exit 1; }
    gcc -O2 -Wall -o "$OUT/curl_poll_loop" examples/bench/curl_poll_loop.c -lcurl
    for round in $(seq "${ROUNDS:-5}"); do
        ( ulimit -n 20000; "${BENCH[@]}" polling --topics 10000 --duration "${DURATION:-20}" --c-loop "$OUT/curl_poll_loop" ) | record
    done
    python3 examples/bench/plot.py "$OUT/results.jsonl" "$OUT"
    exit 0
fi

# zipf: adaptive intervals against fixed ones on 10,000 topics changing at Zipf rates,
# ROUNDS rounds (default 3, about 30 minutes); the bench draws zipf-delay.svg, made a PNG here.
if [ "$QUICK" = zipf ]; then
    "${BENCH[@]}" polling --workload zipf --rounds "${ROUNDS:-3}" --out "$OUT" | tee "$OUT/zipf.txt"
    python3 examples/bench/plot.py --png "$OUT/zipf-delay.svg"
    exit 0
fi

# json: the JSON engine (parse against JSONSerialization, parse + diff, patch sizes) beside
# simdjson (libsimdjson-dev, installed when missing), the measured limit, same documents.
if [ "$QUICK" = json ]; then
    dpkg -s libsimdjson-dev >/dev/null 2>&1 || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"; $SUDO apt-get install -y -qq libsimdjson-dev; }
    command -v g++ >/dev/null 2>&1 || { echo "run.sh json: needs g++ (apt-get install g++) for the simdjson program" >&2; exit 1; }
    g++ -O2 -std=c++17 -o "$OUT/simdjson_parse" examples/bench/simdjson_parse.cpp -lsimdjson
    "${BENCH[@]}" json --simdjson "$OUT/simdjson_parse" | tee "$OUT/json.txt"
    exit 0
fi

# coldstart: one 1 MB document reaching 10,000 waiting subscribers at once (the first state
# after a restart), WebSocket and SSE: time to the last byte and the peak RSS.
if [ "$QUICK" = coldstart ]; then
    for transport in ws sse; do
        "${BENCH[@]}" coldstart "${PACE[@]}" --transport $transport --diff snapshot | record || true
    done
    exit 0
fi

SIZES=(1000 10000); [ "$QUICK" = quick ] && SIZES=(1000)
PUSHPIN_BODY='{"items":[{"channel":"bench","formats":{"http-stream":{"content":"data: {message_escaped}\n\n"},"ws-message":{"content":"{message_escaped}"}}}]}'

for n in "${SIZES[@]}"; do
    for transport in ws sse; do
        messages=$(( n >= 10000 ? 200 : 1000 ))
        # Deltacast, snapshot mode (each publish delivered whole, like a peer's message).
        "${BENCH[@]}" fanout "${PACE[@]}" --transport $transport --subscribers $n --messages 100 --rate 10 --diff snapshot --label deltacast | record || true
        "${BENCH[@]}" throughput "${PACE[@]}" "${PIPE[@]}" --transport $transport --subscribers $n --messages $messages --diff snapshot --label deltacast | record || true
        before_run fanout "${PACE[@]}" --transport $transport --subscribers $n --messages 100 --rate 10 --diff snapshot
        before_run throughput "${PACE[@]}" "${PIPE[@]}" --transport $transport --subscribers $n --messages $messages --diff snapshot
        # Nchan.
        start_nginx
        "${BENCH[@]}" fanout "${PACE[@]}" --transport $transport --subscribers $n --messages 100 --rate 10 --label nchan $(pids "${NGINX_PIDS[@]}") \
            --subscribe http://127.0.0.1:18301/sub --publish http://127.0.0.1:18301/pub | record || true
        "${BENCH[@]}" throughput "${PACE[@]}" "${PIPE[@]}" --transport $transport --subscribers $n --messages $messages --label nchan $(pids "${NGINX_PIDS[@]}") \
            --subscribe http://127.0.0.1:18301/sub --publish http://127.0.0.1:18301/pub | record || true
        stop_pid "$NGINX_PID"
        # The limit.
        limit_run fanout "${PACE[@]}" --transport $transport --subscribers $n --messages 100 --rate 10
        limit_run throughput "${PACE[@]}" "${PIPE[@]}" --transport $transport --subscribers $n --messages $messages
        # Pushpin.
        start_pushpin
        sub=http://127.0.0.1:18302/stream
        "${BENCH[@]}" fanout "${PACE[@]}" --transport $transport --subscribers $n --messages 100 --rate 10 --label pushpin $(pids "${PUSHPIN_PIDS[@]}") \
            --subscribe $sub --publish http://127.0.0.1:18303/publish/ --body "$PUSHPIN_BODY" | record || true
        "${BENCH[@]}" throughput "${PACE[@]}" --transport $transport --subscribers $n --messages $messages --label pushpin $(pids "${PUSHPIN_PIDS[@]}") \
            --subscribe $sub --publish http://127.0.0.1:18303/publish/ --body "$PUSHPIN_BODY" | record || true
        stop_pid "$PUSHPIN_PID"; stop_pid "$ORIGIN_PID"
    done
done

# 19,000 subscribers (a process here may hold 20,000 descriptors): Deltacast and Nchan.
if [ "$QUICK" != quick ]; then
    "${BENCH[@]}" fanout "${PACE[@]}" --transport ws --subscribers 19000 --messages 100 --rate 10 --diff snapshot --label deltacast | record || true
    start_nginx
    "${BENCH[@]}" fanout "${PACE[@]}" --transport ws --subscribers 19000 --messages 100 --rate 10 --label nchan $(pids "${NGINX_PIDS[@]}") \
        --subscribe http://127.0.0.1:18301/sub --publish http://127.0.0.1:18301/pub | record || true
    stop_pid "$NGINX_PID"
    limit_run fanout "${PACE[@]}" --transport ws --subscribers 19000 --messages 100 --rate 10
fi

# The cost of diffing: Deltacast in json-patch mode.
"${BENCH[@]}" fanout "${PACE[@]}" --transport ws --subscribers ${SIZES[-1]} --messages 100 --rate 10 --diff json-patch --label "deltacast json-patch" | record || true

# Idle memory per connection (WebSocket subscribers, nothing published after the warm-up).
n=${SIZES[-1]}
"${BENCH[@]}" connections "${PACE[@]}" --transport ws --subscribers $n --label deltacast | record || true
start_nginx
"${BENCH[@]}" connections "${PACE[@]}" --transport ws --subscribers $n --label nchan $(pids "${NGINX_PIDS[@]}") \
    --subscribe http://127.0.0.1:18301/sub --publish http://127.0.0.1:18301/pub | record || true
# Long-poll at 1,000 (Nchan's long-poll protocol: If-Modified-Since / If-None-Match).
"${BENCH[@]}" fanout "${PACE[@]}" --transport poll --poll-style nchan --subscribers 1000 --messages 100 --rate 10 --label nchan $(pids "${NGINX_PIDS[@]}") \
    --subscribe http://127.0.0.1:18301/sub --publish http://127.0.0.1:18301/pub | record || true
stop_pid "$NGINX_PID"
"${BENCH[@]}" fanout "${PACE[@]}" --transport poll --subscribers 1000 --messages 100 --rate 10 --label deltacast | record || true
start_pushpin
"${BENCH[@]}" connections "${PACE[@]}" --transport ws --subscribers $n --label pushpin $(pids "${PUSHPIN_PIDS[@]}") \
    --subscribe http://127.0.0.1:18302/stream --publish http://127.0.0.1:18303/publish/ --body "$PUSHPIN_BODY" | record || true
stop_pid "$PUSHPIN_PID"; stop_pid "$ORIGIN_PID"

python3 examples/bench/table.py "$OUT/results.jsonl" > "$OUT/results.md"
cat "$OUT/results.md"
