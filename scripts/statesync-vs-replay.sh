#!/bin/bash
# Times starting a full node from a state snapshot against replaying the chain from genesis, on a
# single-validator chain loaded with ENTRIES anchors (docs/PERFORMANCE.md, "State sync").
# usage: scripts/statesync-vs-replay.sh ENTRIES [DIR]; MEDLEDGER names the binary.
set -eu
entries=$1
dir=${2:-/tmp/statesync-vs-replay}
B=${MEDLEDGER:-$PWD/target/release/medledger}
rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
now() { date +%s.%N; }
height() { curl -s "http://127.0.0.1:$1/v1/status" | python3 -c "import sys,json; print(json.load(sys.stdin)['height'])"; }
key_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['public_key'])" "$1"; }

"$B" dev --home v > v.log 2>&1 &
validator=$!
trap 'kill -INT $validator ${a:-} ${b:-} 2>/dev/null || true' EXIT
sleep 3
"$B" bench --key v/keys/dev-org.key --home v --txs "$entries" --batch 1000 | tail -4
head=$(height 8640)
echo "chain: height $head"

t0=$(now); "$B" snapshot --home v > snapshot.json; t1=$(now)
echo "snapshot export: $(python3 -c "print(round($t1-$t0,2))") s: $(cat snapshot.json)"
du -sb v/data/snapshots | awk '{print "snapshot on disk: " $1 " bytes"}'

for node in a b; do
  port=$([ $node = a ] && echo 8650 || echo 8651)
  "$B" init --home $node --genesis v/genesis.json --follow http://127.0.0.1:8640 --listen 127.0.0.1:$port > /dev/null
  "$B" tx --key v/keys/dev-org.key enrol --member "$(key_of $node/keys/validator.key)" --role node > /dev/null
done

# A: state sync, then follow the few blocks after the snapshot.
t0=$(now)
"$B" statesync --home a | tee statesync.json | grep -E '"(bytes_fetched|chunks|leaves|seconds)"'
"$B" node --home a > a.log 2>&1 & a=$!
until [ "$(height 8650 2>/dev/null || echo 0)" -ge "$head" ]; do sleep 0.2; done
t1=$(now)
echo "state sync to the head: $(python3 -c "print(round($t1-$t0,2))") s"

# B: replay from genesis by following certified blocks.
t0=$(now)
"$B" node --home b > b.log 2>&1 & b=$!
until [ "$(height 8651 2>/dev/null || echo 0)" -ge "$head" ]; do sleep 0.5; done
t1=$(now)
echo "replay from genesis to the head: $(python3 -c "print(round($t1-$t0,2))") s"
du -sb v/data/ledger.redb a/data/ledger.redb b/data/ledger.redb
curl -s http://127.0.0.1:8651/metrics | grep "^medledger_follow_bytes_total" | awk '{print "replay fetched " $2 " bytes of blocks"}'
curl -s http://127.0.0.1:8650/metrics | grep "^medledger_follow_bytes_total" | awk '{print "state-synced node then fetched " $2 " bytes of blocks"}'
