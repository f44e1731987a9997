#!/usr/bin/env bash
# Reader execute throughput during a write storm: a private nats-server -js, a release
# writer (rules directory) publishing to it and a release reader following it. wrk drives
# POST /api/v1/execute/discount on the reader, first alone, then while a client rewrites
# other rulesets on the writer as fast as it answers (each write reaches the reader).
#
#   scripts/bench-write-storm.sh [duration, default 10s] [connections, default 32]
#
# ORDO_BENCH_STORM_RATE caps the storm (writes per second; default: no cap).
# Besides throughput, it prints the reader's own CPU time per 1,000 executions alone and
# during the storm: on a machine whose cores the other processes share, that ratio is
# the reader's capacity lost to applying the storm.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-32}
. scripts/bench-lib.sh
need_cmd wrk wrk
need_cmd nats-server nats-server
ordo_bin
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_bg nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$WORK/js" >/dev/null 2>&1
sleep 0.5
mkdir -p "$WORK/rules"
cp "$DATA/discount.json" "$WORK/rules/"
start_ordo writer --role writer --rules-dir "$WORK/rules" --nats-url "nats://127.0.0.1:$PORT"
WRITER=$ADDR
start_ordo reader --role reader --nats-url "nats://127.0.0.1:$PORT" --instance-id bench
READER=$ADDR

READER_PID=$PID
# Prints requests/s, p99, and the reader's CPU ticks per 1,000 requests during the run.
run_wrk() {
  local before after
  before=$(process_cpu_ticks "$READER_PID")
  wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "$READER/api/v1/execute/discount" >"$WORK/wrk.out"
  after=$(process_cpu_ticks "$READER_PID")
  awk -v cpu=$((after - before)) '/requests in/ {n=$1} /Requests\/sec/ {rps=$2} / 99%/ {p99=$2}
    END {print rps, p99, cpu * 1000 / n}' "$WORK/wrk.out"
}

read -r QUIET QUIET_P99 QUIET_CPU < <(run_wrk)
python3 - "$WRITER" "$DATA/discount.json" "${ORDO_BENCH_STORM_RATE:-0}" "$WORK/storm" <<'PY' &
import http.client, json, os, sys, time, urllib.parse
addr, path, rate, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(addr)
rules = json.load(open(path))
conn = http.client.HTTPConnection(u.hostname, u.port)
n, start = 0, time.time()
while not os.path.exists(out + ".stop"):
    rules["config"]["name"] = f"storm-{n % 50}"
    rules["config"]["version"] = f"1.0.{n}"
    conn.request("POST", "/api/v1/rulesets", json.dumps(rules), {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status in (200, 201), r.status
    n += 1
    if rate > 0:
        time.sleep(max(0.0, start + n / rate - time.time()))
open(out, "w").write(f"{n} {time.time() - start}\n")
PY
STORM=$!
sleep 0.5
read -r BUSY BUSY_P99 BUSY_CPU < <(run_wrk)
touch "$WORK/storm.stop"
wait $STORM
read -r WRITES SECS <"$WORK/storm"
SEQ_W=$(curl -s "$WRITER/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sync"]["applied_seq"])')
for _ in $(seq 200); do
  SEQ_R=$(curl -s "$READER/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sync"]["applied_seq"])')
  [ "$SEQ_R" = "$SEQ_W" ] && break
  sleep 0.05
done
python3 - "$QUIET" "$QUIET_P99" "$BUSY" "$BUSY_P99" "$WRITES" "$SECS" "$SEQ_W" "$SEQ_R" "$QUIET_CPU" "$BUSY_CPU" <<'PY'
import os, sys
quiet, qp99, busy, bp99, writes, secs, sw, sr, qcpu, bcpu = sys.argv[1:]
quiet, busy, writes, secs = float(quiet), float(busy), int(writes), float(secs)
hz = os.sysconf("SC_CLK_TCK")
qcpu, bcpu = float(qcpu) / hz * 1e3, float(bcpu) / hz * 1e3
print(f"reader alone:        {quiet:,.0f} req/s, p99 {qp99}")
print(f"during the storm:    {busy:,.0f} req/s, p99 {bp99} ({(1 - busy / quiet) * 100:+.1f}% drop)")
# What the reader itself spends per execution, storm included: its capacity, apart from
# the CPU the writer, nats-server, wrk and the storm's client take on the same cores.
print(f"reader CPU per 1,000 executions: alone {qcpu:.1f} ms, during the storm {bcpu:.1f} ms "
      f"({(bcpu / qcpu - 1) * 100:+.1f}%)")
print(f"storm: {writes} writes in {secs:.1f} s ({writes / secs:,.0f}/s); writer seq {sw}, reader seq {sr}")
PY
