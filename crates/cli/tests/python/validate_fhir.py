"""Validates FHIR resources with an independent model (fhir.resources, R4B), for the tests in
crates/cli/tests that serve resources other than through a FHIR client (trials, research).

Usage: validate_fhir.py FILE...   each FILE holds one JSON resource per line (NDJSON).
Prints {"validated": N, "types": {type: count}}; exits 1 naming the first invalid resource.
"""
import json
import sys

from fhir.resources.R4B import get_fhir_model_class

counts = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            resource = json.loads(line)
            kind = resource.get("resourceType")
            try:
                get_fhir_model_class(kind).model_validate(resource)
            except Exception as error:  # noqa: BLE001 - report whatever the model refuses
                print(f"{path}:{number}: {kind} is not valid FHIR: {error}", file=sys.stderr)
                sys.exit(1)
            counts[kind] = counts.get(kind, 0) + 1
print(json.dumps({"validated": sum(counts.values()), "types": counts}, sort_keys=True))
