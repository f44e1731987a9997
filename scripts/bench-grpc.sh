#!/usr/bin/env bash
# gRPC Execute throughput and latency against a release server on the reference discount
# ruleset (the HTTP benchmark's), with the repository's load client
# (crates/ordo-server/examples/grpc-load.rs): one HTTP/2
# connection with one stream, one connection with 32 concurrent streams, and 32
# connections with one stream each (arguments: connections, then streams in all); then,
# when h2load is installed, the same shapes with it (a load generator as light as the
# HTTP benchmark's wrk). The load client runs on the same machine.
#
#   scripts/bench-grpc.sh [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
. scripts/bench-lib.sh
ordo_bin
cargo build --release -p ordo-server --example grpc-load --quiet
LOAD=${CARGO_TARGET_DIR:-target}/release/examples/grpc-load
mkdir -p "$WORK/rules"
cp "$DATA/discount.json" "$WORK/rules/"
# The HTTP benchmark's body is {"input": ...}; Execute takes the input itself.
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["input"]))' \
  "$DATA/discount-input.json" >"$WORK/input.json"
start_ordo server --rules-dir "$WORK/rules"
GRPC=$(grep -o 'gRPC listening on grpc://[0-9.:]*' "$WORK/server.log" | sed 's|.*grpc://|http://|')
SERVER_PID=$PID
HZ=$(getconf CLK_TCK)
for shape in "1 1" "1 32" "32 32"; do
  read -r conns streams <<<"$shape"
  before=$(process_cpu_ticks "$SERVER_PID")
  line=$("$LOAD" "$GRPC" discount "$WORK/input.json" "$SECONDS_EACH" "$conns" "$streams")
  after=$(process_cpu_ticks "$SERVER_PID")
  calls=$(sed 's/.*: \([0-9]*\) calls.*/\1/' <<<"$line")
  # The server's own CPU per 1,000 calls: what a call costs it, whatever the client takes.
  echo "$line; server CPU $(awk -v t=$((after - before)) -v n="$calls" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') ms per 1,000 calls"
done

# The same shapes with h2load (nghttp2-client), a C load generator as light as wrk, when
# installed: the request is the Execute message in gRPC framing.
if command -v h2load >/dev/null; then
  python3 - "$WORK/input.json" "$WORK/execute.bin" <<'PY'
import struct, sys
def varint(n):
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out
def field(number, data):  # a length-delimited protobuf field
    return varint(number << 3 | 2) + varint(len(data)) + data
message = field(1, b"discount") + field(2, open(sys.argv[1], "rb").read().strip())
open(sys.argv[2], "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
  for shape in "1 1" "1 32" "32 1"; do
    read -r conns streams <<<"$shape"
    before=$(process_cpu_ticks "$SERVER_PID")
    out=$(h2load -D "$SECONDS_EACH" -c "$conns" -m "$streams" -H 'content-type: application/grpc' \
      -H 'te: trailers' -d "$WORK/execute.bin" "$GRPC/ordo.v1.OrdoService/Execute")
    after=$(process_cpu_ticks "$SERVER_PID")
    done_=$(awk '/^requests:/ {print $8}' <<<"$out")
    rps=$(awk '/finished in/ {print $4}' <<<"$out")
    mean=$(awk '/time for request:/ {print $6}' <<<"$out")
    grpc_ok=$(grep -c 'status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' <<<"$out" || true)
    echo "h2load: $conns connection(s) x $streams stream(s): $rps req/s, mean $mean, $done_ calls (all 2xx: $grpc_ok);" \
      "server CPU $(awk -v t=$((after - before)) -v n="$done_" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') ms per 1,000 calls"
  done
else
  echo "h2load not installed (apt-get install nghttp2-client): skipping the h2load runs"
fi
