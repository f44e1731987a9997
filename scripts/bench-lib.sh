# Shared by the load scripts: the binary under test, starting servers, wrk's request.
# Source it after `cd` to the repository; it sets WORK (a temporary directory removed on
# exit) and stops every process started with start_bg or start_ordo.

DATA=crates/ordo-core/benches/data

need_cmd() { # command, Debian package
  command -v "$1" >/dev/null || { echo "$1 not found: apt-get install $2" >&2; exit 1; }
}

# Sets BIN: the release build, or ORDO_BENCH_BIN (to compare two builds on one machine).
ordo_bin() {
  if [ -n "${ORDO_BENCH_BIN:-}" ]; then
    BIN=$ORDO_BENCH_BIN
  else
    cargo --quiet build-server
    BIN=${CARGO_TARGET_DIR:-target}/release/ordo-server
  fi
}

WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_bg() { # command...: runs it in the background, stopped on exit
  "$@" &
  PIDS+=($!)
}

# start_ordo NAME ARGS...: starts the server on a free loopback port, waits until it is
# ready, and sets ADDR (http://host:port) and PID. (Not in a subshell: PIDS must keep it.)
# ORDO_PIN_SERVER prefixes the command (e.g. "taskset -c 0").
start_ordo() {
  local name=$1; shift
  # shellcheck disable=SC2086 # ORDO_PIN_SERVER is a command and its arguments
  start_bg ${ORDO_PIN_SERVER:-} "$BIN" --host 127.0.0.1 --port 0 --grpc-port 0 --log-level warn,ordo_server::server=info "$@" \
    >"$WORK/$name.log" 2>&1
  PID=${PIDS[-1]}
  ADDR=""
  for _ in $(seq 200); do
    ADDR=$(grep -o 'listening on http://[0-9.:]*' "$WORK/$name.log" | sed 's/listening on //' || true)
    [ -n "$ADDR" ] && break
    sleep 0.05
  done
  [ -n "$ADDR" ] || { cat "$WORK/$name.log" >&2; exit 1; }
  # A server on PostgreSQL, or a NATS reader, listens before it is ready.
  for _ in $(seq 400); do
    curl -sf "$ADDR/healthz/ready" >/dev/null && break
    sleep 0.05
  done
}

# The CPU time process $1 has used so far (user + system, in clock ticks).
process_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The execute request of the reference benchmark, for `wrk -s "$WORK/post.lua"`.
cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("$DATA/discount-input.json"):read("a")
LUA

# Writes $WORK/rules: the discount ruleset and two copies of it, `limited` (a rate limit
# of one request a second, so nearly every request is refused with 429) and `bounded`
# (at most two executions at once).
refusal_rules() {
  mkdir -p "$WORK/rules"
  cp "$DATA/discount.json" "$WORK/rules/"
  python3 - "$DATA/discount.json" "$WORK/rules" <<'PY'
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
}

# Holds both execution slots of `bounded` on the server at ADDR with two requests that
# sent their headers and not their body, so every other execution of it is shed with
# 503; sets HOLDERS (their pids). The server needs `--request-timeout-ms 0`.
hold_bounded() {
  cat >"$WORK/hold.py" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /api/v1/execute/bounded HTTP/1.1\r\nHost: x\r\n"
          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"input\":")
time.sleep(3600)
PY
  HOLDERS=()
  for _ in 1 2; do
    start_bg python3 "$WORK/hold.py" "${ADDR#http://}"
    HOLDERS+=("${PIDS[-1]}")
  done
  local i
  for i in $(seq 200); do
    curl -s "$ADDR/metrics" | grep -q '^ordo_executions_in_flight 2$' && return 0
    sleep 0.05
  done
  echo "the two held executions of bounded did not start" >&2
  exit 1
}
