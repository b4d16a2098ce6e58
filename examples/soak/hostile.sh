#!/usr/bin/env bash
# Hostile networks at soak scale: the tests of Tests/Security/exhaustion_test.py, for minutes
# and with more connections than CI gives them. Prints one "figure:" line per test (the
# README's Reliability section quotes them).
#   examples/soak/hostile.sh [--minutes 3] [--connections 60000]
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=3; connections=60000
while [ $# -gt 0 ]; do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        *) echo "usage: $0 [--minutes M] [--connections N]" >&2; exit 64 ;;
    esac
done
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product deltacast >/dev/null
seconds=$((minutes * 60))
DELTACAST_BIN=.build/release/deltacast DELTACAST_CONNECT_LOOP=$connections \
    DELTACAST_ZERO_WINDOW_SECONDS=$seconds DELTACAST_NEVER_READING_SECONDS=$seconds \
    python3 Tests/Security/exhaustion_test.py 2>&1 | grep -v ResourceWarning
