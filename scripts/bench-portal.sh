#!/usr/bin/env bash
# Time to first contentful paint of the portal's patient pages and of a scan verdict, in Debian's
# Chromium, on a node holding many patients; and each page's weight.
#
#   scripts/bench-portal.sh [patients (100000)] [resources per patient (3)]
#
# Uses target/release/medledger (build it first) on a fresh chain in a temporary directory;
# installs Chromium and the npm packages as the browser tests do. Prints the report as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-100000}
resources=${2:-3}
bin=${MEDLEDGER:-target/release/medledger}
bash scripts/browser-toolchain.sh
dir=$(mktemp -d)
port=9710
url=http://127.0.0.1:$port
"$bin" init --home "$dir/h" --chain-id bench-portal --org hosp=Hospital --org maker=Maker \
    --org pharmacy=Pharmacy --gs1-prefix maker=0614141 --listen 127.0.0.1:$port >/dev/null
"$bin" node --home "$dir/h" >"$dir/node.log" 2>&1 &
node_pid=$!
trap 'kill $node_pid 2>/dev/null; wait $node_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
until curl -sf "$url/health" >/dev/null; do sleep 0.2; done
keys=$dir/h/keys
cli() { "$bin" "$1" --node "$url" "${@:2}"; }
member() { # name org role: a new key enrolled by the organisation's root key
    local key; key=$("$bin" keygen --out "$dir/$1.key")
    cli tx --key "$keys/$2.key" enrol --member "$key" --role "$3" >/dev/null
    echo "$key"
}

# The chain's patients, imported through the FHIR face as an EHR would.
echo "importing $patients patients of $resources resources each..." >&2
"$bin" bench-records --node "$url" --key "$keys/hosp.key" \
    --bundle ../shared/testdata/fhir/synthea/sample_complete_patient.json \
    --patients "$patients" --resources "$resources" --clients 8 --consented 10 \
    --reads 100 --read-rate 100 --rounds 1 --tokens 10 >&2

# The measured patient (with records and an access), and a pharmacist with a pack to scan.
member doctor hosp practitioner >/dev/null
patient=$(member patient hosp patient)
member pharmacist pharmacy pharmacy >/dev/null
member maker-staff maker manufacturer >/dev/null
cat >"$dir/bundle.json" <<JSON
{"resourceType": "Bundle", "type": "transaction", "entry": [
 {"resource": {"resourceType": "Patient", "id": "fcp-patient"}, "request": {"method": "PUT", "url": "Patient/fcp-patient"}},
 {"resource": {"resourceType": "Observation", "id": "fcp-bp", "status": "final",
   "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
   "subject": {"reference": "Patient/fcp-patient"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
  "request": {"method": "PUT", "url": "Observation/fcp-bp"}}]}
JSON
cli fhir --key "$dir/doctor.key" import "$dir/bundle.json" >/dev/null
cli fhir --key "$keys/hosp.key" bind --patient fcp-patient --patient-key "$patient" >/dev/null
cli consent --key "$dir/patient.key" grant --to "org:hosp" --purpose TREAT >/dev/null
cli fhir --key "$dir/doctor.key" read Observation/fcp-bp --purpose TREAT >/dev/null
cli supply --key "$dir/maker-staff.key" register --gtin 09506000134352 --name "Insulin pen" \
    --storage 2..8 >/dev/null
cli supply --key "$dir/maker-staff.key" commission --gtin 09506000134352 --lot L1 \
    --expiry 271231 --serial 0001 >/dev/null
link() { cli portal --key "$keys/$1.key" invite --member-key "$dir/$2.key" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["link"])'; }
config=$(python3 - "$(link hosp patient)" "$(link pharmacy pharmacist)" <<'PY'
import json, sys
print(json.dumps({
    "base": sys.argv[1].split("/portal/")[0],
    "patientLink": sys.argv[1],
    "pharmacistLink": sys.argv[2],
    "code": "(01)09506000134352(17)271231(10)L1(21)0001",
    "runs": 20,
}))
PY
)
node crates/cli/tests/browser/fcp.mjs "$config"
