"""Drives a medledger node's FHIR face as an unmodified SMART Backend Services client would.

Tokens come from Authlib's OAuth 2.0 client (client_credentials, private_key_jwt signed with the
member's Ed25519 key, EdDSA); FHIR calls go through fhirpy's SyncFHIRClient with the bearer token.
Nothing here knows medledger beyond its documented endpoints. Every check that fails raises, so a
non-zero exit fails the Rust test that runs this script; on success it prints a JSON summary.

Usage: smart_backend.py BASE_URL KEY_FILE PATIENT_ID BUNDLE_FILE AUDITOR_KEY_FILE MEDLEDGER_BIN
       smart_backend.py token BASE_URL KEY_FILE SCOPE [PURPOSE]   (prints an access token)
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ForbiddenError, OperationOutcome
from fhir.resources.R4B import get_fhir_model_class
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey, OKPKey

TOKEN_ONLY = sys.argv[1] == "token"
if TOKEN_ONLY:
    BASE, KEY_FILE, SCOPE = sys.argv[2:5]
    PURPOSE = sys.argv[5] if len(sys.argv) > 5 else None
else:
    BASE, KEY_FILE, PATIENT, BUNDLE, AUDITOR_KEY, MEDLEDGER = sys.argv[1:7]
FHIR = f"{BASE}/fhir"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def member_jwk(key_file=None):
    """The member's key file as a private OKP JWK, and its client_id (the public key in hex)."""
    with open(key_file) as f:
        keys = json.load(f)
    seed = bytes.fromhex(keys["secret_key"])
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )
    assert public.hex() == keys["public_key"], "key file's public key"
    jwk = {"kty": "OKP", "crv": "Ed25519", "d": b64url(seed), "x": b64url(public)}
    return keys["public_key"], OKPKey.import_key(jwk)


def fetch_token(scope, purpose=None, claims=None, key_file=None, es384=None, alg="EdDSA"):
    """A token by Backend Services; `es384` = (kid, private EC key) signs with ES384 instead."""
    config = requests.get(f"{FHIR}/.well-known/smart-configuration", timeout=30).json()
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"], config
    assert "client_credentials" in config["grant_types_supported"], config
    client_id, jwk = member_jwk(key_file or KEY_FILE)
    # SMART Backend Services: the assertion lives at most five minutes.
    assertion_claims = {"exp": int(time.time()) + 240, **(claims or {})}
    if es384:
        kid, jwk = es384
        method = PrivateKeyJWT(
            config["token_endpoint"], claims=assertion_claims, headers={"kid": kid}, alg="ES384"
        )
    else:
        method = PrivateKeyJWT(config["token_endpoint"], claims=assertion_claims, alg=alg)
    session = OAuth2Session(client_id, jwk, token_endpoint_auth_method=method, scope=scope)
    extra = {"purpose_of_use": purpose} if purpose else {}
    return session.fetch_token(config["token_endpoint"], grant_type="client_credentials", **extra)


def client(token, **headers):
    return SyncFHIRClient(FHIR, authorization=f"Bearer {token['access_token']}", extra_headers=headers or None)


VALIDATED = []


def valid(resource):
    """Checks a resource the server returned with an independent FHIR model (fhir.resources)."""
    plain = json.loads(json.dumps(resource.serialize() if hasattr(resource, "serialize") else resource))
    get_fhir_model_class(plain["resourceType"]).model_validate(plain)
    VALIDATED.append(plain["resourceType"])
    return resource


def expect(error_type, action, what):
    try:
        action()
    except error_type as error:
        return str(error)
    raise AssertionError(f"{what}: expected {error_type.__name__}")


if TOKEN_ONLY:
    print(fetch_token(SCOPE, purpose=PURPOSE)["access_token"])
    sys.exit(0)

summary = {}

# Metadata names the SMART endpoints.
metadata = valid(requests.get(f"{FHIR}/metadata", timeout=30).json())
security = metadata["rest"][0]["security"]
assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR", security
token_uri = [e for e in security["extension"][0]["extension"] if e["url"] == "token"][0]["valueUri"]
assert token_uri.endswith("/oauth/token"), token_uri

token = fetch_token("system/*.cruds", purpose="TREAT")
assert token["token_type"].lower() == "bearer", token
assert token["scope"] == "system/*.cruds", token
summary["token_expires_in"] = token["expires_in"]
# RFC 9864's fully-specified name for the same Ed25519 signature is accepted too.
assert "Ed25519" in requests.get(f"{FHIR}/.well-known/smart-configuration", timeout=30).json()[
    "token_endpoint_auth_signing_alg_values_supported"
]
ed25519_token = fetch_token("system/Observation.rs", purpose="TREAT", alg="Ed25519")
assert ed25519_token["scope"] == "system/Observation.rs", ed25519_token
# The same assertion with one byte of its signature changed is refused.
from joserfc import jwt as jose_jwt

client_id, okp = member_jwk(KEY_FILE)
token_url = requests.get(f"{FHIR}/.well-known/smart-configuration", timeout=30).json()["token_endpoint"]
now = int(time.time())
signed = jose_jwt.encode(
    {"alg": "Ed25519"},
    {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 120, "jti": f"t-{now}"},
    okp,
    algorithms=["Ed25519"],
)
head, body, signature = signed.split(".")
forged = f"{head}.{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
answer = requests.post(
    token_url,
    data={
        "grant_type": "client_credentials",
        "scope": "system/*.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": forged,
    },
    timeout=30,
)
assert answer.status_code == 401 and answer.json()["error"] == "invalid_client", answer.text
fhir = client(token)

# A transaction Bundle at the base URL (fhirpy posts it to "<base>/").
with open(BUNDLE) as f:
    bundle = json.load(f)
response = valid(fhir.execute("", method="post", data=bundle))
assert response["resourceType"] == "Bundle" and response["type"] == "transaction-response", response
summary["imported"] = len(response["entry"])

# Search by patient with paging: every permitted resource exactly once.
observations = [valid(o) for o in fhir.resources("Observation").search(patient=PATIENT).limit(10).fetch_all()]
ids = [o["id"] for o in observations]
assert len(ids) == len(set(ids)), "a resource came back twice"
first_page = valid(fhir.resources("Observation").search(patient=PATIENT).limit(10).fetch_raw())
assert first_page["total"] == len(ids), (first_page["total"], len(ids))
assert any(link["relation"] == "next" for link in first_page["link"]), first_page["link"]
summary["observations"] = len(ids)
assert fhir.resources("Observation").search(patient=PATIENT).count() == len(ids)

# Read: the server's id and meta are there.
observation = valid(fhir.reference("Observation", ids[0]).to_resource())
assert client(ed25519_token).reference("Observation", ids[0]).to_resource()["id"] == ids[0]
assert observation["id"] == ids[0] and observation["meta"]["versionId"], observation
version = observation["meta"]["versionId"]

# Update with If-Match: the right version succeeds, a stale one is refused (412).
observation["status"] = "amended"
updater = client(token, **{"If-Match": f'W/"{version}"'})
updated = valid(updater.resource("Observation", **observation).save())
assert updated["meta"]["versionId"] == str(int(version) + 1), updated
stale = client(token, **{"If-Match": f'W/"{version}"'})
expect(Exception, lambda: stale.resource("Observation", **observation).save(), "a stale If-Match")
summary["updated_version"] = updated["meta"]["versionId"]

# A create without an id gets one from the server.
created = valid(fhir.resource(
    "Observation",
    status="final",
    code={"text": "created by a client"},
    subject={"reference": f"Patient/{PATIENT}"},
).save())
assert created["id"] and created["meta"]["versionId"] == "1", created

# An invalid resource is refused with an OperationOutcome, and not stored.
message = expect(
    OperationOutcome,
    lambda: fhir.resource("Observation", status="not-a-status", code="8302-2", subject={"reference": f"Patient/{PATIENT}"}).save(),
    "an invalid Observation",
)
assert "status" in message and "code" in message, message

# AuditEvents, Provenance and Consents: for those who may audit (here an auditor's system); a
# practitioner's token reads records under consent, not who else read them.
expect(ForbiddenError, lambda: fhir.resources("AuditEvent").search(patient=PATIENT).fetch(), "a practitioner's audit search")
fhir = client(fetch_token("system/AuditEvent.rs system/Provenance.rs system/Consent.rs", key_file=AUDITOR_KEY))
events = [valid(e) for e in fhir.resources("AuditEvent").search(patient=PATIENT).limit(50).fetch_all()]
assert events and all(e["resourceType"] == "AuditEvent" for e in events)
summary["audit_events"] = len(events)
provenance = [valid(p) for p in fhir.resources("Provenance").search(target=f"Observation/{ids[0]}").fetch_all()]
assert [p["target"][0]["reference"].rsplit("/", 1)[1] for p in provenance] == ["1", "2"], provenance
again = valid(fhir.reference("Provenance", provenance[1]["id"]).to_resource())
assert again["id"] == provenance[1]["id"], again
consents = [valid(c) for c in fhir.resources("Consent").search(patient=PATIENT).fetch_all()]
assert consents, "the patient's grants"

fhir = client(token)

# Denials. A token whose scopes do not cover Observation: 403 whatever consent says.
narrow = client(fetch_token("system/Condition.rs", purpose="TREAT"))
expect(ForbiddenError, lambda: narrow.reference("Observation", ids[0]).to_resource(), "a narrow scope")
# A forged token: 401.
forged = SyncFHIRClient(FHIR, authorization="Bearer " + token["access_token"][:-4] + "AAAA")
expect(AuthorizationError, lambda: forged.reference("Observation", ids[0]).to_resource(), "a forged token")
# No purpose of use anywhere: 400 with an OperationOutcome.
purposeless = client(fetch_token("system/*.rs"))
message = expect(OperationOutcome, lambda: purposeless.reference("Observation", ids[0]).to_resource(), "no purpose")
assert "purpose" in message, message
# An assertion used twice is refused.
reused = {"jti": "one-time-" + str(time.time())}
fetch_token("system/*.rs", claims=reused)
expect(Exception, lambda: fetch_token("system/*.rs", claims=reused), "a replayed assertion")

# ES384: the member registers a P-384 key on chain, signs its assertion with it, and the token
# works; once the key is revoked, assertions signed with it are refused.
p384 = ec.generate_private_key(ec.SECP384R1())
numbers = p384.private_numbers()
size = 48
public_jwk = {
    "kty": "EC",
    "crv": "P-384",
    "x": b64url(numbers.public_numbers.x.to_bytes(size, "big")),
    "y": b64url(numbers.public_numbers.y.to_bytes(size, "big")),
}
private_jwk = {**public_jwk, "d": b64url(numbers.private_value.to_bytes(size, "big"))}
with tempfile.NamedTemporaryFile("w", suffix=".jwk", delete=False) as f:
    json.dump(public_jwk, f)
medledger = [MEDLEDGER, "fhir", "--node", BASE, "--key", KEY_FILE]
subprocess.run(medledger + ["register-client-key", "--kid", "p384-1", "--jwk", f.name], check=True, capture_output=True)
os.unlink(f.name)
es384 = ("p384-1", ECKey.import_key(private_jwk))
es_token = fetch_token("system/Observation.rs", purpose="TREAT", es384=es384)
es_client = client(es_token)
assert valid(es_client.reference("Observation", ids[0]).to_resource())["id"] == ids[0]
expect(Exception, lambda: fetch_token("system/*.rs", es384=("p384-2", es384[1])), "an unregistered kid")
subprocess.run(medledger + ["revoke-client-key", "--kid", "p384-1"], check=True, capture_output=True)
expect(Exception, lambda: fetch_token("system/*.rs", es384=es384), "a revoked ES384 key")
summary["es384"] = True

summary["validated"] = len(VALIDATED)
summary["token"] = token["access_token"]
print(json.dumps(summary))
