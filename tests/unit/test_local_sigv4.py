"""The local API Gateway checks SigV4 for real: botocore-signed HTTP requests against an identities file.

JobApiApp is served with wsgiref on loopback in front of a handler that only echoes what API Gateway
would hand the function (``requestContext.identity``, path, query, headers, body), so no AWS emulation
is needed; the client signs each request with botocore's SigV4Auth, as docs/api.md's client does.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from reportrelay.errors import ConfigurationError
from reportrelay_cli.local.apigateway import (
    DEFAULT_IDENTITY,
    INVALID_TOKEN,
    SIGNATURE_MISMATCH,
    JobApiApp,
    rest_event,
)
from reportrelay_cli.local.identities import LocalIdentities, LocalIdentity, PrincipalArn, register_in_iam
from tests.http import QuietHandler
from tests.http import serve as serve_wsgi

ALICE = "arn:aws:sts::123456789012:assumed-role/finance-reports/alice"
CAROL = "arn:aws:sts::123456789012:assumed-role/finance-reports/carol"
BOB = "arn:aws:iam::123456789012:user/bob"
REGION = "us-east-1"


class _RawUri(QuietHandler):
    """A server that tells the app the request target as sent (gunicorn's RAW_URI, Apache's REQUEST_URI)."""

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["REQUEST_URI"] = self.path
        return environ


def echo(event: dict[str, Any]) -> dict[str, Any]:
    """A stand-in API function: answers with what it was handed."""
    seen = {
        "identity": event["requestContext"]["identity"],
        "path": event["path"],
        "query": event["multiValueQueryStringParameters"],
        "headers": event["headers"],
        "body": event["body"],
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(seen)}


def serve(app: JobApiApp, handler_class: type[WSGIRequestHandler] = QuietHandler) -> Any:
    """``app`` on http://127.0.0.1:<port>/v1."""
    return serve_wsgi(app, handler_class, path="/v1")


@pytest.fixture(scope="module")
def identities() -> LocalIdentities:
    return LocalIdentities.generate({ALICE: ["finance"], CAROL: ["finance"], BOB: ["sales", "finance"]})


@pytest.fixture(scope="module")
def api(identities: LocalIdentities) -> Iterator[str]:
    with serve(JobApiApp(echo, identities=identities)) as url:
        yield url


def sign(
    method: str,
    url: str,
    credentials: Credentials,
    *,
    body: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    region: str = REGION,
    signer: type[SigV4Auth] = SigV4Auth,
) -> AWSRequest:
    """Sign as a client does: botocore's SigV4Auth for execute-api."""
    request = AWSRequest(method, url, data=body, headers=dict(headers or {}))
    signer(credentials, "execute-api", region).add_auth(request)
    return request


def send(request: AWSRequest, *, body: bytes | None = None) -> requests.Response:
    """Send a signed request; ``body`` replaces the signed one (a tampering proxy)."""
    return requests.request(
        request.method,
        request.url,
        headers=dict(request.headers),
        data=request.body if body is None else body,
        allow_redirects=False,
        timeout=10,
    )


def call(method: str, url: str, identity: LocalIdentity, **kwargs: Any) -> requests.Response:
    return send(sign(method, url, identity.credentials(), **kwargs))


def message(answer: requests.Response) -> str:
    assert answer.status_code == 403, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    return str(answer.json()["message"])


# --- machine mode: signed requests -------------------------------------------------------------------


def test_a_good_signature_reaches_the_function_as_the_principal_with_its_session(api, identities):
    # given alice's temporary credentials (an SSO-style session of the finance-reports role)
    alice = identities.for_principal(ALICE)
    # when she calls the API, signed
    answer = call("GET", f"{api}/reports", alice)
    # then the function sees her principal ARN exactly, session included, as API Gateway fills it
    assert answer.status_code == 200, answer.text
    identity = answer.json()["identity"]
    assert identity["userArn"] == ALICE
    assert identity["accessKey"] == alice.access_key_id
    assert identity["accountId"] == "123456789012"
    role_id = PrincipalArn.parse(ALICE).unique_id  # type: ignore[union-attr]
    assert identity["caller"] == identity["user"] == f"{role_id}:alice"
    assert role_id.startswith("AROA") and len(role_id) == 21
    assert answer.json()["path"] == "/reports"


def test_two_sessions_of_one_role_are_two_callers_with_one_role_id(api, identities):
    # given two people in one permission set (two sessions of one role)
    # when each calls the API
    alice = call("GET", f"{api}/reports", identities.for_principal(ALICE)).json()["identity"]
    carol = call("GET", f"{api}/reports", identities.for_principal(CAROL)).json()["identity"]
    # then they arrive as two principals, whose role id is the same
    assert (alice["userArn"], carol["userArn"]) == (ALICE, CAROL)
    assert alice["caller"].split(":")[0] == carol["caller"].split(":")[0]
    assert alice["caller"] != carol["caller"]


def test_an_iam_user_arrives_with_its_user_id(api, identities):
    # given an IAM user's long-term key (no session token)
    bob = identities.for_principal(BOB)
    assert bob.access_key_id.startswith("AKIA") and bob.session_token is None
    # when it calls the API
    identity = call("GET", f"{api}/reports", bob).json()["identity"]
    # then the function sees the user, and API Gateway's user id as caller
    assert identity["userArn"] == BOB
    assert identity["caller"] == identity["user"] == PrincipalArn.parse(BOB).unique_id  # type: ignore[union-attr]
    assert identity["caller"].startswith("AIDA")


def test_a_get_with_a_query_string_verifies(api, identities):
    # given a signed GET with repeated and encoded query parameters
    url = f"{api}/reports?state=ready&limit=2&cursor=a%2Bb%3D&state=failed"
    # when it is sent
    answer = call("GET", url, identities.for_principal(ALICE))
    # then it passes and the function gets the parameters decoded
    assert answer.status_code == 200, answer.text
    assert answer.json()["query"] == {"state": ["ready", "failed"], "limit": ["2"], "cursor": ["a+b="]}


def test_a_post_with_a_json_body_verifies(api, identities):
    # given a signed POST with a JSON body
    body = json.dumps({"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
    # when it is sent
    answer = call(
        "POST",
        f"{api}/reports",
        identities.for_principal(BOB),
        body=body,
        headers={"Content-Type": "application/json"},
    )
    # then it passes, body untouched
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.json()["body"]) == json.loads(body)


def test_a_body_changed_after_signing_is_refused(api, identities):
    # given a POST signed over one body
    request = sign(
        "POST", f"{api}/reports", identities.for_principal(ALICE).credentials(), body=b'{"format": "pdf"}'
    )
    # when another body of the same length is sent with that signature
    answer = send(request, body=b'{"format": "csv"}')
    # then API Gateway's signature mismatch answer
    assert message(answer) == SIGNATURE_MISMATCH
    assert answer.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


def test_a_content_sha256_header_must_be_the_bodys_hash(api, identities):
    # given the body's SHA-256 signed as X-Amz-Content-Sha256 (as some signers send it)
    body = b'{"format": "pdf"}'
    creds = identities.for_principal(BOB).credentials()
    right = {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    # when it is sent as signed, then it passes
    assert send(sign("POST", f"{api}/reports", creds, body=body, headers=right)).status_code == 200
    # when the header claims an unsigned payload, then it is refused: execute-api signs the payload
    unsigned = sign(
        "POST", f"{api}/reports", creds, body=body, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    assert message(send(unsigned)) == SIGNATURE_MISMATCH


def test_a_wrong_secret_is_refused(api, identities):
    # given alice's key id with someone else's secret
    alice = identities.for_principal(ALICE)
    forged = Credentials(alice.access_key_id, "not-" + alice.secret_access_key, alice.session_token)
    # when the request is sent, then the signature does not match
    assert message(send(sign("GET", f"{api}/reports", forged))) == SIGNATURE_MISMATCH


def test_an_unknown_access_key_is_refused(api):
    # given a key the identities file does not list
    stranger = Credentials("AKIAUNKNOWN000000000", "whatever")
    # when it signs a request
    answer = send(sign("GET", f"{api}/reports", stranger))
    # then API Gateway's answer for an unknown key
    assert message(answer) == INVALID_TOKEN
    assert answer.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"


def test_a_session_token_must_be_the_identitys(api, identities):
    # given alice's key and secret with another session token, and with none
    alice = identities.for_principal(ALICE)
    other_token = Credentials(alice.access_key_id, alice.secret_access_key, "another-session")
    no_token = Credentials(alice.access_key_id, alice.secret_access_key)
    # when each signs a request, then both are refused as an invalid security token
    assert message(send(sign("GET", f"{api}/reports", other_token))) == INVALID_TOKEN
    assert message(send(sign("GET", f"{api}/reports", no_token))) == INVALID_TOKEN
    # and a long-term key sent with a token it does not have is refused too
    bob = identities.for_principal(BOB)
    with_token = Credentials(bob.access_key_id, bob.secret_access_key, "made-up")
    assert message(send(sign("GET", f"{api}/reports", with_token))) == INVALID_TOKEN


def test_a_signature_outside_five_minutes_is_refused(identities):
    # given the API's clock 10 minutes ahead of the client's, then 10 minutes behind
    alice = identities.for_principal(ALICE)
    for offset, words in ((10, "Signature expired: "), (-10, "Signature not yet current: ")):
        app = JobApiApp(
            echo, identities=identities, clock=lambda o=offset: datetime.now(UTC) + timedelta(minutes=o)
        )
        with serve(app) as url:
            # when a freshly signed request arrives
            answer = call("GET", f"{url}/reports", alice)
        # then API Gateway's words for a stale (or future) signature
        text = message(answer)
        assert text.startswith(words), text
        assert text.endswith(" - 5 min.)" if offset > 0 else " + 5 min.)"), text


def test_a_date_header_can_stand_for_x_amz_date(api, identities):
    # given a client that signs with a Date header (botocore then sends no X-Amz-Date)
    request = sign(
        "GET", f"{api}/reports", identities.for_principal(BOB).credentials(), headers={"Date": "x"}
    )
    assert "X-Amz-Date" not in request.headers and "date;host" in request.headers["Authorization"]
    # when it is sent, then it verifies
    assert send(request).status_code == 200


def test_a_scope_dated_another_day_is_refused(api, identities):
    # given a signature whose credential scope names another day than its X-Amz-Date
    request = sign("GET", f"{api}/reports", identities.for_principal(BOB).credentials())
    day = request.headers["X-Amz-Date"][:8]
    request.headers.replace_header(
        "Authorization", request.headers["Authorization"].replace(f"/{day}/", "/20200101/")
    )
    # when it is sent, then API Gateway's words for a mismatched scope date
    assert message(send(request)).startswith(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        f"'20200101' != '{day}'"
    )


def test_a_scope_for_another_region_or_service_is_refused(api, identities):
    # given a request signed for eu-west-1
    creds = identities.for_principal(BOB).credentials()
    # then it is refused, naming the region
    text = message(send(sign("GET", f"{api}/reports", creds, region="eu-west-1")))
    assert text.startswith("Credential should be scoped to a valid region, not 'eu-west-1'.")
    # given a request signed for another service
    request = AWSRequest("GET", f"{api}/reports")
    SigV4Auth(creds, "s3", REGION).add_auth(request)
    # then it is refused, naming the right service
    assert message(send(request)).startswith("Credential should be scoped to correct service: 'execute-api'.")


def test_host_must_be_signed(api, identities):
    # given a signer that leaves Host out of the signed headers
    class WithoutHost(SigV4Auth):
        def headers_to_sign(self, request):  # type: ignore[no-untyped-def]
            headers = super().headers_to_sign(request)
            del headers["host"]
            return headers

    request = sign("GET", f"{api}/reports", identities.for_principal(BOB).credentials(), signer=WithoutHost)
    assert "SignedHeaders=x-amz-date," in request.headers["Authorization"]
    # when it is sent, then it is refused with API Gateway's reason
    assert (
        message(send(request)) == "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_an_unsigned_request_gets_missing_authentication_token(identities):
    # given a function that records whether it was called
    calls: list[dict[str, Any]] = []
    app = JobApiApp(lambda event: calls.append(event) or echo(event), identities=identities)
    with serve(app) as url:
        # when a request without Authorization arrives
        answer = requests.get(f"{url}/reports", timeout=10)
        # and one with a bearer token, as a browser's script would send
        bearer = requests.get(
            f"{url}/reports", headers={"Authorization": "Bearer eyJhbGciOi.e30.sig"}, timeout=10
        )
    # then API Gateway's answers, and the function never ran
    assert answer.status_code == 403
    assert answer.content == b'{"message":"Missing Authentication Token"}'
    assert message(bearer) == (
        "'eyJhbGciOi.e30.sig' not a valid key=value pair (missing equal-sign) in Authorization header: "
        "'Bearer eyJhbGciOi.e30.sig'."
    )
    assert calls == []


def test_an_incomplete_authorization_header_names_what_is_missing(api):
    # given an Authorization header with a credential only, and no date header
    header = "AWS4-HMAC-SHA256 Credential=AKIALOCALALICE000001/20250301/us-east-1/execute-api/aws4_request"
    # when it is sent
    text = message(requests.get(f"{api}/reports", headers={"Authorization": header}, timeout=10))
    # then each missing part is named, as API Gateway names them
    assert text == (
        "Authorization header requires 'Signature' parameter. "
        "Authorization header requires 'SignedHeaders' parameter. "
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        f"Authorization={header}"
    )


def test_with_no_identities_every_signed_request_is_refused():
    # given the app with no identities file
    with serve(JobApiApp(echo)) as url:
        # when a signed request arrives, then nobody is known
        answer = send(sign("GET", f"{url}/reports", Credentials("AKIALOCALALICE000001", "secret")))
    assert message(answer) == INVALID_TOKEN


def test_an_encoded_path_verifies_over_plain_wsgiref(api, identities):
    # given paths with an encoded space and encoded UTF-8, signed as sent
    for sent, decoded in (("sales%20q1", "sales q1"), ("caf%C3%A9", "café")):
        # when they arrive at wsgiref, which only gives the decoded PATH_INFO
        answer = call("GET", f"{api}/reports/{sent}", identities.for_principal(ALICE))
        # then the path is re-encoded as the client sent it, and the function gets it decoded
        assert answer.status_code == 200, answer.text
        assert answer.json()["path"] == f"/reports/{decoded}"


def test_an_encoded_slash_verifies_when_the_server_gives_the_raw_uri(identities):
    # given a server that passes the request target as sent (REQUEST_URI)
    with serve(JobApiApp(echo, identities=identities), handler_class=_RawUri) as url:
        # when a path with %2F and a space is signed and sent
        answer = call("GET", f"{url}/reports/a%2Fb%20c/download?x=1", identities.for_principal(BOB))
    # then the signature over the raw path verifies
    assert answer.status_code == 200, answer.text


def test_a_signature_over_another_path_is_refused(api, identities):
    # given a request signed for one job, sent for another
    request = sign("GET", f"{api}/reports/job-1", identities.for_principal(ALICE).credentials())
    request.url = f"{api}/reports/job-2"
    # then the signature does not match
    assert message(send(request)) == SIGNATURE_MISMATCH


# --- people mode ---------------------------------------------------------------------------------------


def test_people_mode_passes_bearer_and_cookie_through_with_no_iam_identity():
    # given the people API (no IAM at the gateway)
    with serve(JobApiApp(echo, people=True)) as url:
        # when a browser calls it with a bearer token and a session cookie
        answer = requests.get(
            f"{url}/reports/job-1/download",
            headers={"Authorization": "Bearer eyJhbGciOi.e30.sig", "Cookie": "session=abc; theme=dark"},
            timeout=10,
        )
    # then the function runs, sees both headers untouched, and no IAM identity
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["headers"]["Authorization"] == "Bearer eyJhbGciOi.e30.sig"
    assert seen["headers"]["Cookie"] == "session=abc; theme=dark"
    identity = seen["identity"]
    assert (identity["userArn"], identity["caller"], identity["user"]) == (None, None, None)
    assert (identity["accountId"], identity["accessKey"]) == (None, None)
    assert seen["path"] == "/reports/job-1/download"


# --- in-process events ---------------------------------------------------------------------------------


def test_rest_event_still_builds_an_iam_event_for_in_process_calls():
    # given the default identity, an assumed role with an access key, and no identity
    default = rest_event("GET", "/reports")["requestContext"]["identity"]
    session = rest_event("GET", "/reports", identity=ALICE, access_key="ASIAEXAMPLE000000000")
    anonymous = rest_event("GET", "/reports", identity=None)["requestContext"]["identity"]
    # then each carries what API Gateway would
    assert default["userArn"] == DEFAULT_IDENTITY and default["caller"].startswith("AIDA")
    assert session["requestContext"]["identity"]["userArn"] == ALICE
    assert session["requestContext"]["identity"]["accessKey"] == "ASIAEXAMPLE000000000"
    assert session["requestContext"]["identity"]["caller"].endswith(":alice")
    assert anonymous["userArn"] is None and anonymous["caller"] is None and anonymous["accountId"] is None


# --- the identities file -------------------------------------------------------------------------------


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "identities.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document, encoding="utf-8")
    return path


GOOD = {"secret_access_key": "s3cret", "principal": ALICE, "teams": ["finance"]}


@pytest.mark.parametrize(
    ("entry_or_document", "field", "words"),
    [
        (
            {"AKIALOCALALICE000001": {**GOOD, "principal": "alice"}},
            "identities.AKIALOCALALICE000001.principal",
            "must be an IAM ARN",
        ),
        (
            {"AKIALOCALALICE000001": {**GOOD, "principal": "arn:aws:iam::123:user/x"}},
            ".principal",
            "must be an IAM ARN",
        ),
        (
            {"AKIALOCALALICE000001": {**GOOD, "principal": "arn:aws:sts::123456789012:federated-user/x"}},
            ".principal",
            "IAM ARN",
        ),
        ({"akia-lower": GOOD}, "identities.akia-lower", "16 to 128 characters of A-Z and 0-9"),
        ({"AKIASHORT": GOOD}, "identities.AKIASHORT", "16 to 128"),
        (
            {"AKIALOCALALICE000001": {**GOOD, "secret_access_key": ""}},
            ".secret_access_key",
            "at least 1 character",
        ),
        (
            {"AKIALOCALALICE000001": {k: v for k, v in GOOD.items() if k != "secret_access_key"}},
            ".secret_access_key",
            "required",
        ),
        ({"AKIALOCALALICE000001": {**GOOD, "teams": ["Finance Team"]}}, ".teams.0", "pattern"),
        ({"AKIALOCALALICE000001": {**GOOD, "role": "x"}}, "AKIALOCALALICE000001.role", "Extra inputs"),
    ],
)
def test_a_wrong_identities_file_names_the_file_and_the_field(tmp_path, entry_or_document, field, words):
    # given an identities file with one mistake
    path = write(tmp_path, {"identities": entry_or_document})
    # when it is read
    with pytest.raises(ConfigurationError) as raised:
        LocalIdentities.from_file(path)
    # then one line names the file and the field
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: identities."), text
    assert field in text and words in text, text


def test_identities_file_shape_errors_are_one_line(tmp_path):
    # given files that are not JSON, have no identities, repeat a key, or give one role two sets of teams
    cases = {
        "{not json": "is not valid JSON (line 1",
        json.dumps({"people": {}}): 'must be a JSON object such as {"identities"',
        json.dumps({"identities": {}, "extra": 1}): "unknown field extra",
        '{"identities": {"AKIALOCALALICE000001": {}, "AKIALOCALALICE000001": {}}}': (
            "AKIALOCALALICE000001 appears twice"
        ),
        json.dumps(
            {
                "identities": {
                    "AKIALOCALALICE000001": GOOD,
                    "AKIALOCALCAROL000001": {**GOOD, "principal": CAROL, "teams": ["sales"]},
                }
            }
        ): "every session of one role must list the same teams",
    }
    for text, words in cases.items():
        path = write(tmp_path, text)
        # when each is read, then the error names the file and says what is wrong, on one line
        with pytest.raises(ConfigurationError) as raised:
            LocalIdentities.from_file(path)
        assert str(path) in str(raised.value) and words in str(raised.value), str(raised.value)
        assert "\n" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="cannot read identities file"):
        LocalIdentities.from_file(tmp_path / "missing.json")


def test_generated_identities_round_trip_through_an_owner_only_file(tmp_path):
    # given generated identities for a session and a user
    generated = LocalIdentities.generate({ALICE: ["finance"], BOB: []})
    # when they are written and read back
    path = generated.write(tmp_path / "identities.json")
    again = LocalIdentities.from_file(path)
    # then the file is the owner's only, and holds the same keys, secrets, principals and teams
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [i for i in again] == [i for i in generated]
    alice = again.for_principal(ALICE)
    assert alice.access_key_id.startswith("ASIA") and alice.session_token
    assert alice.teams == ("finance",) and again.for_principal(BOB).teams == ()
    # and secrets never show in a repr
    assert alice.secret_access_key not in repr(alice) and str(alice.session_token) not in repr(alice)
    # and fresh ones differ every time
    assert LocalIdentities.generate({ALICE: ["finance"]}).for_principal(ALICE) != alice


def test_generate_validates_what_it_is_given():
    # given a principal that is no IAM ARN, then generating refuses it
    with pytest.raises(ConfigurationError, match=r"\.principal: must be an IAM ARN"):
        LocalIdentities.generate({"root": ["finance"]})


# --- IAM tags --------------------------------------------------------------------------------------------


def test_register_in_iam_tags_roles_and_users_with_their_teams():
    # given a session of a role, an IAM user with a path, and a user with no teams
    identities = LocalIdentities.generate(
        {
            ALICE: ["finance", "ops"],
            CAROL: ["finance", "ops"],
            "arn:aws:iam::123456789012:user/robots/bob": ["sales"],
            "arn:aws:iam::123456789012:user/nobody": [],
        }
    )
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        iam.create_user(UserName="bob", Path="/robots/", Tags=[{"Key": "cost-center", "Value": "42"}])
        # when they are registered (bob already exists)
        register_in_iam(iam, identities)
        register_in_iam(iam, identities)  # and again: idempotent
        # then the role carries its teams, space-separated, in the tag the API reads
        role_tags = iam.list_role_tags(RoleName="finance-reports")["Tags"]
        assert {"Key": "reportrelay-teams", "Value": "finance ops"} in role_tags
        # and the existing user got the tag added, keeping its own
        user_tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName="bob")["Tags"]}
        assert user_tags == {"cost-center": "42", "reportrelay-teams": "sales"}
        assert iam.get_user(UserName="bob")["User"]["Path"] == "/robots/"
        # and the user without teams exists, untagged
        assert iam.list_user_tags(UserName="nobody")["Tags"] == []


def test_register_in_iam_uses_the_tag_key_asked_for():
    # given a deployment reading another tag key
    identities = LocalIdentities.generate({BOB: ["sales"]})
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        # when registered with it
        register_in_iam(iam, identities, tag_key="teams")
        # then that is the tag
        assert iam.list_user_tags(UserName="bob")["Tags"] == [{"Key": "teams", "Value": "sales"}]
