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
    cargo build --release -p ordo-server --quiet
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
