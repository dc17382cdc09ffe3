#!/bin/bash
# Compares medledger builds back to back on one node: for each binary, a fresh `medledger dev`
# chain loaded with RUNS saturating runs of TXS anchors each, one after another on the same chain
# (each adds about TXS state entries), then the chain is stopped and deleted before the next
# binary starts (docs/PERFORMANCE.md, "Throughput as the chain grows").
# usage: scripts/ab-bench.sh RUNS TXS BINARY...; RUST_LOG passes through (default warn).
set -eu
runs=$1; txs=$2; shift 2
export RUST_LOG=${RUST_LOG:-warn}
for bin in "$@"; do
  home=$(mktemp -d /tmp/ab-bench.XXXXXX)
  port=$((19600 + RANDOM % 300))
  $bin dev --home $home --listen 127.0.0.1:$port > $home.log 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf localhost:$port/v1/status > /dev/null && break; sleep 0.2; done
  line="$bin:"
  for _ in $(seq $runs); do
    tps=$($bin bench --node http://127.0.0.1:$port --key $home/keys/dev-org.key --txs $txs --batch 1000 2>&1 \
      | awk '/^throughput:/ {print $2}')
    line="$line $tps"
  done
  echo "$line tx/s; ledger.redb $(( $(stat -c %s $home/data/ledger.redb) / 1000000 )) MB"
  kill -INT $pid; wait $pid || true
  rm -rf $home $home.log
done
