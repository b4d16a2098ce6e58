#!/usr/bin/env bash
# Autobahn WebSocket conformance (kosoku, PyPI) against `deltacast serve` with the diagnostics
# echo route. Sections 1-7, 9, 10, 12 and 13; every case must pass (kosoku exits 1 otherwise).
# Usage: autobahn.sh PATH-TO-deltacast [REPORT-DIR]
set -euo pipefail
binary=$1
reports=${2:-$(mktemp -d)}
config=$(mktemp --suffix=.yaml)
cat >"$config" <<'YAML'
listen: 127.0.0.1:0
endpoints:
  - path: /unused
    source: publish
diagnostics: { echo: true }
# Section 9 sends messages up to 16 MiB and expects them echoed.
limits: { max_message: 16MiB, send_buffer: 64MiB }
YAML
out=$(mktemp)
"$binary" serve -c "$config" >"$out" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$config" "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -1)
[ -n "$port" ] || { echo "deltacast serve did not start" >&2; cat "$out" >&2; exit 1; }
cases=()
for section in ${AUTOBAHN_SECTIONS:-1 2 3 4 5 6 7 9 10 12 13}; do cases+=(-i "$section.*"); done
kosoku -p 2 "${cases[@]}" -o "$reports" "ws://127.0.0.1:$port/deltacast/echo"
