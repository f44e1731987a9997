#!/usr/bin/env bash
# HTTP load benchmark: starts the release server on the reference discount ruleset and
# drives POST /api/v1/execute/discount with wrk (Debian package `wrk`).
#
#   scripts/bench-http.sh [duration, default 10s] [connections, default 32]
#
# Also measures write latency (POST of a ruleset, durable commit) and the server's RSS.
# ORDO_BENCH_FLAGS adds server flags, e.g. "--database-url postgres://... --auto-migrate".
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-32}
. scripts/bench-lib.sh
need_cmd wrk wrk
ordo_bin
mkdir -p "$WORK/rules"
cp "$DATA/discount.json" "$WORK/rules/"
# shellcheck disable=SC2086 # ORDO_BENCH_FLAGS is a list of flags
start_ordo server ${ORDO_BENCH_FLAGS:-} --rules-dir "$WORK/rules"

# CPU time taken by the hypervisor during the run: on a shared VM, runs with a high
# steal share are not comparable with quiet ones.
cpu_ticks() { awk '/^cpu / {t=0; for (i=2; i<=NF; i++) t+=$i; print t, $9}' /proc/stat; }
read -r TOTAL0 STEAL0 < <(cpu_ticks)
echo "== execute: wrk -t1 -c$CONNS -d$DURATION --latency (server $ADDR)"
wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "$ADDR/api/v1/execute/discount"
read -r TOTAL1 STEAL1 < <(cpu_ticks)
echo "== CPU stolen by the hypervisor during the run: $(( 100 * (STEAL1 - STEAL0) / (TOTAL1 - TOTAL0 + 1) ))%"

echo "== write latency: 200 sequential POST /api/v1/rulesets (durable commit + file)"
python3 - "$ADDR" "$DATA/discount.json" <<'PY'
import http.client, json, sys, time, urllib.parse
addr, path = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(addr)
rules = json.load(open(path))
conn = http.client.HTTPConnection(u.hostname, u.port)
lat = []
for i in range(200):
    rules["config"]["name"] = f"bench-write-{i % 20}"
    rules["config"]["version"] = f"1.0.{i}"
    body = json.dumps(rules)
    t = time.perf_counter()
    conn.request("POST", "/api/v1/rulesets", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    lat.append((time.perf_counter() - t) * 1000)
    assert r.status in (200, 201), r.status
lat.sort()
print(f"p50 {lat[len(lat)//2]:.2f} ms  p99 {lat[int(len(lat)*0.99)-1]:.2f} ms  max {lat[-1]:.2f} ms")
PY
echo "== RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
