#!/usr/bin/env bash
# What a refusal costs the server beside serving, in instructions: the release server
# runs under callgrind (valgrind), which counts every instruction it executes in user
# space (HTTP parsing, routing, admission, the engine, the response; the kernel's
# socket work is not counted). For each path, 2,000 requests are sent one after another
# on one keep-alive connection and the server's count for them is divided by 2,000.
# Counts are repeatable whatever else the machine is doing, unlike timings.
#
#   scripts/bench-refusal-cost.sh [requests per path, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
. scripts/bench-lib.sh
need_cmd valgrind valgrind
need_cmd callgrind_control valgrind
ordo_bin

refusal_rules
mkdir -p "$WORK/callgrind"

ORDO_PIN_SERVER="valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind/out.%p"
start_ordo server --worker-threads 1 --request-timeout-ms 0 --rules-dir "$WORK/rules"
ORDO_PIN_SERVER=""
HOST=${ADDR#http://}

hold_bounded

# N requests on one keep-alive connection; prints the statuses seen.
cat >"$WORK/client.py" <<'PY'
import collections, http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
path, n, body = sys.argv[2], int(sys.argv[3]), open(sys.argv[4], "rb").read()
conn = http.client.HTTPConnection(host, int(port))
seen = collections.Counter()
for _ in range(n):
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    seen[response.status] += 1
print(" ".join(f"{n} x {status}" for status, n in sorted(seen.items())))
PY
client() { python3 "$WORK/client.py" "$HOST" "/api/v1/execute/$1" "$2" "$DATA/discount-input.json"; }

# Warm every path (first-use registrations, allocator pools) before counting.
for path in discount limited bounded; do client "$path" 200 >/dev/null; done

for path in discount limited bounded discount limited bounded; do
  callgrind_control --zero "$PID" >/dev/null 2>&1
  statuses=$(client "$path" "$N")
  callgrind_control --dump "$PID" >/dev/null 2>&1
  dump=$(ls -t "$WORK"/callgrind/out.* | head -1)
  instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  printf '%-9s %s: %s instructions per request\n' "$path" "($statuses)" \
    "$(awk -v i="$instructions" -v n="$N" 'BEGIN {printf "%\047.0f", i / n}')"
done
