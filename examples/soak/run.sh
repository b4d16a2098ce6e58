#!/usr/bin/env bash
# The soak (not in CI): examples/soak/run.sh [--minutes 30] [--connections 19000]
# Builds the release binary, puts matplotlib in a private venv for the plot, and runs soak.py;
# the table, samples and plot land in .build/soak/. Exit 0 when every criterion holds.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product deltacast
venv=.build/soak-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet matplotlib
fi
exec "$venv/bin/python" examples/soak/soak.py .build/release/deltacast --out .build/soak "$@"
