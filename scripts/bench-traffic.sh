#!/usr/bin/env bash
# Traffic-control and async benchmark on the reference discount ruleset:
#
#  1. what a refusal costs under overload: wrk against a rate limit (every request 429)
#     and against a held execution bound (every request 503), beside the latency of
#     serving the same request;
#  2. async throughput: single-input jobs submitted from many connections for 5 s,
#     timed until every one has run, and one 100,000-input batch job, timed from its
#     submission until its trace is completed.
#
#   scripts/bench-traffic.sh [duration, default 10s] [connections, default 32]
#
# ORDO_BENCH_FLAGS adds server flags, e.g. "--database-url postgres://... --auto-migrate".
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-32}
. scripts/bench-lib.sh
need_cmd wrk wrk
ordo_bin

# The ruleset with an execution bound of 2 and a rate limit of one request a second.
python3 - "$DATA/discount.json" "$WORK" <<'PY'
import json, sys
rules = json.load(open(sys.argv[1]))
for name, extra in [
    ("bounded", {"backpressure": {"max_concurrent": 2}}),
    ("limited", {"rate_limit": {"requests_per_second": 1, "burst": 1}}),
]:
    r = json.loads(json.dumps(rules))
    r["config"]["name"] = name
    r["config"].update(extra)
    json.dump(r, open(f"{sys.argv[2]}/{name}.json", "w"))
PY
mkdir -p "$WORK/rules"
cp "$DATA/discount.json" "$WORK/bounded.json" "$WORK/limited.json" "$WORK/rules/"
# shellcheck disable=SC2086 # ORDO_BENCH_FLAGS is a list of flags
start_ordo server ${ORDO_BENCH_FLAGS:-} --rules-dir "$WORK/rules" \
  --queue.workers 2 --queue.buffer-size 100000 --queue.max-result-size-bytes 104857600 \
  --queue.max-queue-memory-bytes 1073741824 --max-body-bytes 104857600

run_wrk() { # label path connections
  echo "== $1: wrk -t1 -c$3 -d$DURATION --latency $2"
  wrk -t1 -c"$3" -d"$DURATION" --latency -s "$WORK/post.lua" "$ADDR$2" \
    | grep -E 'Latency  |50%|90%|99%|Requests/sec|Non-2xx'
}

for c in "$CONNS" 8; do
  run_wrk "served (200)" /api/v1/execute/discount "$c"
  run_wrk "rate limited (429)" /api/v1/execute/limited "$c"
done

# Two executions of `bounded` held open (headers sent, body not), so every other one
# is shed.
HOST=${ADDR#http://}
for _ in 1 2; do
  start_bg python3 - "$HOST" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /api/v1/execute/bounded HTTP/1.1\r\nHost: x\r\n"
          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"input\":")
time.sleep(3600)
PY
done
for _ in $(seq 100); do
  curl -s "$ADDR/metrics" | grep -q '^ordo_executions_in_flight 2' && break
  sleep 0.05
done
for c in "$CONNS" 8; do
  run_wrk "shed (503)" /api/v1/execute/bounded "$c"
done

# Async submissions from $CONNS connections for 5 s, then until every job has run.
cat >"$WORK/async.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("$DATA/discount-input.json"):read("a")
LUA
traces() { # status: jobs in it
  curl -s "$ADDR/metrics" | awk -v s="ordo_traces{status=\"$1\"}" '$1 == s {print int($2)}'
}
echo "== async: wrk -t1 -c$CONNS -d5s POST /api/v1/execute/discount/async, then until all have run"
START=$(date +%s.%N)
wrk -t1 -c"$CONNS" -d5s --latency -s "$WORK/async.lua" "$ADDR/api/v1/execute/discount/async" \
  | grep -E 'Latency  |99%|Requests/sec|Non-2xx'
while [ "$(traces pending)" != 0 ] || [ "$(traces running)" != 0 ]; do sleep 0.01; done
END=$(date +%s.%N)
DONE=$(traces completed)
python3 -c "import sys; n, t = int(sys.argv[1]), float(sys.argv[2]) - float(sys.argv[3]); print(f'{n} jobs completed in {t:.2f} s: {n / t:,.0f} jobs/s')" "$DONE" "$END" "$START"

echo "== async: one batch of 100,000 inputs"
python3 - "$ADDR" "$DATA/discount-input.json" <<'PY'
import http.client, json, sys, time, urllib.parse
addr, input_path = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(addr)
conn = http.client.HTTPConnection(u.hostname, u.port)
one = json.load(open(input_path))["input"]

def call(method, path, body=None):
    conn.request(method, path, body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read()

body = json.dumps({"inputs": [one] * 100000})
t0 = time.perf_counter()
status, data = call("POST", "/api/v1/execute/discount/async", body)
assert status == 202, (status, data)
trace_id = json.loads(data)["trace_id"]
while True:
    _, data = call("GET", f"/api/v1/traces/{trace_id}")
    trace = json.loads(data)
    if trace["status"] in ("completed", "failed"):
        break
    time.sleep(0.01)
total = time.perf_counter() - t0
assert trace["status"] == "completed", trace
assert trace["result"]["summary"]["success"] == 100000, trace["result"]["summary"]
print(f"batch of 100,000 inputs ({len(body) / 1e6:.1f} MB): completed in {total:.2f} s, "
      f"{100000 / total:,.0f} inputs/s (run alone: "
      f"{(trace['finished_at_ms'] - trace['started_at_ms']) / 1000:.2f} s)")
PY
echo "== RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
