#!/usr/bin/env bash
# Writes a store with every payload kind using the binary given as $1 (the code before the module seam).
set -euo pipefail
M=$1; OUT=$2
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
PORT=18731; N=http://127.0.0.1:$PORT
$M init --home home --chain-id compat --listen 127.0.0.1:$PORT --org hospital=Hospital --org pharma=Pharma --org third=Third --gs1-prefix pharma=0614141 >/dev/null
ls home home/keys
$M node --home home > node.log 2>&1 & NODE=$!
trap 'kill $NODE 2>/dev/null || true' EXIT
for i in $(seq 50); do curl -sf $N/health >/dev/null && break; sleep 0.2; done
K=home/keys
pk() { $M keygen --out $1 | tail -1; }
DR=$(pk dr.key); PAT=$(pk pat.key); MK=$(pk maker.key); PH=$(pk pharm.key); LG=$(pk logger.key); X=$(pk x.key)
echo "dr=$DR pat=$PAT"
$M tx --node $N --key $K/hospital.key enrol --member $DR --role practitioner
$M tx --node $N --key $K/hospital.key enrol --member $PAT --role patient
$M tx --node $N --key $K/pharma.key enrol --member $MK --role manufacturer
$M tx --node $N --key $K/hospital.key enrol --member $PH --role pharmacy
$M tx --node $N --key $K/pharma.key enrol --member $LG --role device
$M tx --node $N --key $K/hospital.key enrol --member $X --role auditor
$M tx --node $N --key dr.key anchor --id $(printf 'a%.0s' {1..64}) --commitment $(printf 'b%.0s' {1..64})
$M tx --node $N --key dr.key anchor --id $(printf 'a%.0s' {1..64}) --commitment $(printf 'c%.0s' {1..64}) || echo "rejected as expected"
$M tx --node $N --key $K/hospital.key revoke --member $X
$M fhir --node $N --key dr.key import /work/shared/testdata/fhir/synthea/sample_complete_patient.json | tail -2
PID=$(python3 -c "import json;b=json.load(open('/work/shared/testdata/fhir/synthea/sample_complete_patient.json'));print([e['resource']['id'] for e in b['entry'] if e['resource']['resourceType']=='Patient'][0])")
OBS=$(python3 -c "import json;b=json.load(open('/work/shared/testdata/fhir/synthea/sample_complete_patient.json'));print([e['resource']['id'] for e in b['entry'] if e['resource']['resourceType']=='Observation'][0])")
$M fhir --node $N --key $K/hospital.key bind --patient $PID --patient-key $PAT
$M fhir --node $N --key dr.key read Observation/$OBS --purpose TREAT > /dev/null || echo "denied as expected"
$M consent --node $N --key pat.key grant --to key:$DR --purpose TREAT --type Observation | tee grant.out
$M fhir --node $N --key dr.key read Observation/$OBS --purpose TREAT > /dev/null
$M consent --node $N --key pat.key grant --deny --to key:$DR --category laboratory
$M fhir --node $N --key dr.key read Observation/$OBS --purpose TREAT > /dev/null || echo "denied as expected"
GID=$(grep -oE '[0-9a-f]{64}' grant.out | head -1)
$M consent --node $N --key pat.key revoke --grant $GID || true
$M consent --node $N --key pat.key delegate --delegate $DR
$M supply --node $N --key maker.key register --gtin 00614141000012 --name "Insulin pen" --storage 2..8
$M supply --node $N --key maker.key commission --gtin 00614141000012 --lot L1 --expiry 271231 --serials 00001..00020
$M supply --node $N --key maker.key pack --sscc 006141410000000012 --unit "(01)00614141000012(21)00001" --unit "(01)00614141000012(21)00002"
$M supply --node $N --key maker.key ship --to hospital --sscc 006141410000000012 | tee ship.out
SHIP=$(grep -oE 'shipment [0-9a-f]{64}' ship.out | awk '{print $2}')
$M supply --node $N --key maker.key attach-sensor --device $LG --shipment $SHIP
$M supply --node $N --key logger.key reading --celsius 9.5
$M supply --node $N --key pharm.key receive --shipment $SHIP
$M supply --node $N --key pharm.key unpack --sscc 006141410000000012
$M supply --node $N --key pharm.key dispense --unit "(01)00614141000012(21)00001"
$M supply --node $N --key maker.key recall --gtin 00614141000012 --lot L1 --reason contamination
$M supply --node $N --key pharm.key capture /work/main/crates/epcis/tests/data/JSON/Example_9.6.1-ObjectEvent.jsonld | tail -3
$M tx --node $N --key $K/hospital.key propose-validator --add $($M keygen --out spare.key | tail -1) --org third --effective-height 100000 | tee prop.out
PROP=$(grep -oE '[0-9a-f]{64}' prop.out | head -1)
$M tx --node $N --key $K/pharma.key approve-validator --proposal $PROP
$M fhir --node $N --key pat.key erase --patient $PID
$M query --node $N status
H=$($M query --node $N status | python3 -c "import json,sys;print(json.load(sys.stdin)['height'])")
mkdir -p expected
for h in $(seq 1 $H); do curl -sf $N/v1/blocks/$h > expected/block-$h.json; done
echo $H > expected/height
kill $NODE; wait $NODE || true
trap - EXIT
