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
# Each refusal run reports wrk's latency, the server's CPU per 1,000 requests and the
# server's own latency histogram for the run.
#
# ORDO_BENCH_FLAGS adds server flags, e.g. "--database-url postgres://... --auto-migrate".
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
CONNS=${2:-32}
. scripts/bench-lib.sh
need_cmd wrk wrk
ordo_bin

refusal_rules

# On two cores or more, the server gets one core and one worker thread and wrk the
# other, so the tail figures are the server's and not the scheduler's: sharing both
# cores puts every preemption of wrk or of a worker (a few ms) into the p99.
PIN_CLIENT=()
THREADS=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  ORDO_PIN_SERVER="taskset -c 0"
  PIN_CLIENT=(taskset -c 1)
  THREADS=(--worker-threads 1)
  echo "server pinned to CPU 0 with one worker thread, wrk to CPU 1"
fi
# No request time limit: the held requests below must stay held.
# shellcheck disable=SC2086 # ORDO_BENCH_FLAGS is a list of flags
start_ordo server ${ORDO_BENCH_FLAGS:-} "${THREADS[@]}" --rules-dir "$WORK/rules" \
  --request-timeout-ms 0 \
  --queue.workers 2 --queue.buffer-size 100000 --queue.max-result-size-bytes 104857600 \
  --queue.max-queue-memory-bytes 1073741824 --max-body-bytes 104857600
SERVER_PID=$PID
HZ=$(getconf CLK_TCK)

hold_bounded

# The server-side latency histogram of the execute route (cumulative bucket counts).
execute_histogram() {
  curl -s "$ADDR/metrics" |
    grep '^ordo_http_request_duration_seconds_bucket{route="/api/v1/execute/{name}",method="POST"' ||
    true # none before the first execution
}

cat >"$WORK/report.py" <<'PY'
import re, sys
label, conns, out, h0, h1, ticks, hz = sys.argv[1:]
def buckets(text):
    return {float("inf") if le == "+Inf" else float(le): int(n)
            for le, n in re.findall(r'le="([^"]+)"\} (\d+)', text)}
b0, b1 = buckets(h0), buckets(h1)
delta = {le: b1[le] - b0.get(le, 0) for le in sorted(b1)}
total = delta.get(float("inf"), 0)
def share(le):
    return 100.0 * delta.get(le, 0) / total if total else 0.0
p99 = next((le for le, n in delta.items() if total and n >= 0.99 * total), float("nan"))
def pct(name):
    m = re.search(rf"^\s+{name}%\s+(\S+)", out, re.M)
    return m.group(1) if m else "?"
rps = re.search(r"Requests/sec:\s+(\S+)", out)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
requests = re.search(r"(\d+) requests in", out)
n = int(requests.group(1)) if requests else 0
cpu = int(ticks) / int(hz) * 1e6 / n if n else 0.0
print(f"{label:<19} c{conns:<3} {float(rps.group(1)) if rps else 0:>8,.0f} req/s"
      f"  p50 {pct(50):>8}  p99 {pct(99):>8}"
      f"  non-2xx {int(non2xx.group(1)) if non2xx else 0:,} of {n:,}"
      f"  | server CPU {cpu:.1f} ms per 1,000"
      f"  | in the server: {share(0.0001):.1f}% <= 0.1 ms, {share(0.001):.2f}% <= 1 ms,"
      f" p99 <= {p99 * 1000:g} ms")
PY

# wrk's figures, the server's CPU per 1,000 requests (what a request costs it, whatever
# wrk takes), and the server's own latency in the run from its histogram: from the
# request's arrival in the router to its response.
run_wrk() { # label path connections
  local before after hist_before out
  hist_before=$(execute_histogram)
  before=$(process_cpu_ticks "$SERVER_PID")
  out=$("${PIN_CLIENT[@]}" wrk -t1 -c"$3" -d"$DURATION" --latency -s "$WORK/post.lua" "$ADDR$2")
  after=$(process_cpu_ticks "$SERVER_PID")
  python3 "$WORK/report.py" "$1" "$3" "$out" "$hist_before" "$(execute_histogram)" \
    "$((after - before))" "$HZ"
}

for c in "$CONNS" 4; do
  run_wrk "served (200)" /api/v1/execute/discount "$c"
  run_wrk "rate limited (429)" /api/v1/execute/limited "$c"
  run_wrk "shed (503)" /api/v1/execute/bounded "$c"
done

# The async runs get a server of their own with the whole machine, as a deployment runs.
kill "${HOLDERS[@]}" "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
ORDO_PIN_SERVER=""
# shellcheck disable=SC2086 # ORDO_BENCH_FLAGS is a list of flags
start_ordo async ${ORDO_BENCH_FLAGS:-} --rules-dir "$WORK/rules" \
  --queue.workers 2 --queue.buffer-size 100000 --queue.max-result-size-bytes 104857600 \
  --queue.max-queue-memory-bytes 1073741824 --max-body-bytes 104857600

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
