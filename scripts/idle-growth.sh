#!/bin/bash
# Measures an idle devnet's store and log growth on node 0 over a window after start-up
# (docs/PERFORMANCE.md, "An idle network").
# usage: scripts/idle-growth.sh DIR SECONDS [devnet flags...]; RUST_LOG passes through.
# MEDLEDGER names the binary (default /tmp/medledger-measure, a copy of a release build).
set -eu
dir=$1; secs=$2; shift 2
B=${MEDLEDGER:-/tmp/medledger-measure}
rm -rf $dir; mkdir -p $dir; cd $dir
api=$((19000 + RANDOM % 500)); p2p=$((29000 + RANDOM % 500))
$B devnet --dir net --api-port $api --p2p-port $p2p "$@" > devnet.out 2>&1 &
pid=$!
sleep 15
h0=$(curl -s localhost:$api/v1/status | python3 -c "import sys,json; print(json.load(sys.stdin)['height'])")
s0=$(du -sb net/node0/data | cut -f1); r0=$(stat -c %s net/node0/data/ledger.redb); l0=$(stat -c %s net/node0/node.log); t0=$(date +%s)
sleep $secs
h1=$(curl -s localhost:$api/v1/status | python3 -c "import sys,json; print(json.load(sys.stdin)['height'])")
s1=$(du -sb net/node0/data | cut -f1); r1=$(stat -c %s net/node0/data/ledger.redb); l1=$(stat -c %s net/node0/node.log); t1=$(date +%s)
kill -INT $pid; wait $pid
dt=$((t1-t0)); dh=$((h1-h0))
python3 - <<PY
dt=$dt; dh=$dh; ds=$((s1-s0)); dr=$((r1-r0)); dl=$((l1-l0))
day=86400/dt
print(f"seconds {dt} heights {dh} ({dh/dt:.3f}/s) data +{ds} B ledger.redb +{dr} B log +{dl} B")
print(f"per height: data {ds/max(dh,1):.0f} B, log {dl/max(dh,1):.0f} B")
print(f"per day: heights {dh*day:.0f}, data {ds*day/1e6:.1f} MB, ledger.redb {dr*day/1e6:.1f} MB, log {dl*day/1e6:.1f} MB")
PY
