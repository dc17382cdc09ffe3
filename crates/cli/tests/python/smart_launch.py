"""Drives SMART App Launch (standalone, authorization code with PKCE) against a medledger node as
an unmodified app would, with Authlib's OAuth 2.0 client and fhirpy.

The user's approval is the one step no app library does: a member approves with their key, here
through the medledger CLI (`medledger fhir approve <id>`), as the consent screen says. Every
check that fails raises; on success a JSON summary is printed.

Usage: smart_launch.py BASE_URL MEDLEDGER_BIN CLIENT_ID REDIRECT_URI CLINICIAN_KEY PATIENT_ID OTHER_OBSERVATION
"""

import json
import re
import subprocess
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ForbiddenError

BASE, MEDLEDGER, CLIENT_ID, REDIRECT, CLINICIAN_KEY, PATIENT, OTHER_OBSERVATION = sys.argv[1:8]
FHIR = f"{BASE}/fhir"
config = requests.get(f"{FHIR}/.well-known/smart-configuration", timeout=30).json()
assert "authorization_code" in config["grant_types_supported"], config
assert "launch-standalone" in config["capabilities"], config


def authorize(scope):
    """Starts an authorization; returns the session, its PKCE verifier and the request id."""
    session = OAuth2Session(
        CLIENT_ID, redirect_uri=REDIRECT, scope=scope, code_challenge_method="S256"
    )
    verifier = generate_token(64)
    url, _state = session.create_authorization_url(
        config["authorization_endpoint"], code_verifier=verifier, aud=FHIR, purpose_of_use="TREAT"
    )
    page = requests.get(url, timeout=30)
    assert page.status_code == 200, page.text
    request_id = re.search(r'data-authorization="([0-9a-f]+)"', page.text).group(1)
    return session, verifier, request_id


def continue_to_app(request_id):
    answer = requests.get(
        f"{BASE}/oauth/authorize/{request_id}/continue", allow_redirects=False, timeout=30
    )
    assert answer.status_code in (302, 303, 307), (answer.status_code, answer.text)
    return answer.headers["location"]


def approve(request_id, *extra):
    subprocess.run(
        [MEDLEDGER, "fhir", "--node", BASE, "--key", CLINICIAN_KEY, "approve", request_id, *extra],
        check=True,
        capture_output=True,
    )


summary = {}

# A clinician launches the app for a patient, approving with their key.
session, verifier, request_id = authorize("launch/patient patient/*.rs offline_access")
# Before approval, continuing only shows the screen again.
waiting = requests.get(f"{BASE}/oauth/authorize/{request_id}/continue", allow_redirects=False, timeout=30)
assert waiting.status_code == 200 and request_id in waiting.text, waiting.status_code
approve(request_id, "--patient", PATIENT)
location = continue_to_app(request_id)
assert location.startswith(REDIRECT) and "code=" in location, location
token = session.fetch_token(
    config["token_endpoint"], authorization_response=location, code_verifier=verifier
)
assert token["patient"] == PATIENT, token
assert "refresh_token" in token, token
assert set(token["scope"].split()) == {"launch/patient", "patient/*.rs", "offline_access"}, token

# The code is single-use.
reused = requests.post(
    config["token_endpoint"],
    data={
        "grant_type": "authorization_code",
        "code": re.search(r"code=([0-9a-f]+)", location).group(1),
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    },
    timeout=30,
)
assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text

# The token works for the launch patient, without naming them, and for nobody else.
fhir = SyncFHIRClient(FHIR, authorization=f"Bearer {token['access_token']}")
observations = fhir.resources("Observation").limit(100).fetch_all()
assert observations and all(
    o["subject"]["reference"].endswith(PATIENT) for o in observations
), len(observations)
summary["observations"] = len(observations)
try:
    fhir.reference("Observation", OTHER_OBSERVATION).to_resource()
    raise AssertionError("a patient/ scope read another patient's record")
except ForbiddenError:
    pass

# The refresh token gets a new access token.
refreshed = session.refresh_token(config["token_endpoint"], refresh_token=token["refresh_token"])
assert refreshed["access_token"] != token["access_token"], refreshed
fhir = SyncFHIRClient(FHIR, authorization=f"Bearer {refreshed['access_token']}")
assert fhir.reference("Observation", observations[0]["id"]).to_resource()["id"] == observations[0]["id"]

# A wrong PKCE verifier is refused.
session, verifier, request_id = authorize("launch/patient patient/Observation.rs")
approve(request_id, "--patient", PATIENT)
location = continue_to_app(request_id)
try:
    session.fetch_token(
        config["token_endpoint"], authorization_response=location, code_verifier=generate_token(64)
    )
    raise AssertionError("a wrong code_verifier was accepted")
except Exception as error:  # Authlib raises OAuthError
    assert "invalid_grant" in str(error), error

# The user denies: the app is told so.
session, verifier, request_id = authorize("patient/*.rs")
requests.post(f"{BASE}/oauth/authorize/{request_id}/deny", timeout=30)
location = continue_to_app(request_id)
assert "error=access_denied" in location, location

# A clinician who names no patient for launch/patient is refused.
session, verifier, request_id = authorize("launch/patient patient/*.rs")
refused = subprocess.run(
    [MEDLEDGER, "fhir", "--node", BASE, "--key", CLINICIAN_KEY, "approve", request_id],
    capture_output=True,
)
assert refused.returncode != 0 and b"patient" in refused.stderr, refused.stderr

summary["refresh_token"] = token["refresh_token"]
print(json.dumps(summary))
