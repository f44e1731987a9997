#!/usr/bin/env bash
# gRPC Execute throughput and latency against a release server on the reference discount
# ruleset (the HTTP benchmark's), with the repository's load client
# (crates/ordo-server/examples/grpc-load.rs): one HTTP/2
# connection with one stream, one connection with 32 concurrent streams, and 32
# connections with one stream each (arguments: connections, then streams in all). The
# load client runs on the same machine.
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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for shape in "1 1" "1 32" "32 32"; do
  read -r conns streams <<<"$shape"
  before=$(cpu_ticks "$SERVER_PID")
  line=$("$LOAD" "$GRPC" discount "$WORK/input.json" "$SECONDS_EACH" "$conns" "$streams")
  after=$(cpu_ticks "$SERVER_PID")
  calls=$(sed 's/.*: \([0-9]*\) calls.*/\1/' <<<"$line")
  # The server's own CPU per 1,000 calls: what a call costs it, whatever the client takes.
  echo "$line; server CPU $(awk -v t=$((after - before)) -v n="$calls" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') ms per 1,000 calls"
done
