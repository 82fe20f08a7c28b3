"""Schemathesis against the committed OpenAPI document: no 5xx, and no answer the document does not allow.

The API runs in-process on emulated AWS (LocalAws: the ASL on moto, DynamoDB, S3), served over real HTTP
on loopback as in AWS: the IAM API (reportrelay_cli.local.apigateway.JobApiApp checking each SigV4 signature
against generated identities) and the people API (the function verifying each JWT against the sandbox
issuer). Two identities of different teams call every route: a finance machine signing with botocore's
SigV4 signer, and a sales person with a bearer token. The document's example connection ("acme-dx") is
finance's, so the examples start real jobs against the DevExpress simulator; generated requests explore
everything else. Bounded: a few dozen cases per operation and identity.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from reportrelay_cli.local.identities import LocalIdentity
from scripts.openapi import DOCUMENT
from tests.api.access import Deployment, deployment
from tests.http import sigv4_headers

EXAMPLES_PER_OPERATION = 40
LIFECYCLES = 20
# Schemathesis expects 401 when the Authorization header is missing; API Gateway's AWS_IAM authorization
# answers 403 ("Missing Authentication Token"), which the document declares. Every other check runs.
AUTHORIZATION_IS_401 = schemathesis.checks.missing_required_header
# Likewise a method the API does not declare never reaches the function: API Gateway answers it (403).
UNDECLARED_METHOD_IS_405 = schemathesis.checks.unsupported_method
# Whether a schema-valid job request is acceptable depends on the deployment (its connections, the
# caller's teams) and on each provider's rules (formats, report fields), which no JSON Schema states:
# such requests get the documented 400/403 naming the field or connection (test_api_routes.py and
# test_access_matrix.py cover those answers one by one). Likewise a cursor or a share-link token is
# opaque: only one the API issued is valid, any other string is a documented 400/403.
VALID_BY_SCHEMA_IS_NOT_ENOUGH = schemathesis.checks.positive_data_acceptance
EXCLUDED = [AUTHORIZATION_IS_401, UNDECLARED_METHOD_IS_405, VALID_BY_SCHEMA_IS_NOT_ENOUGH]
IDENTITIES = ("alice", "dave")  # a finance machine (SigV4), a sales person (bearer JWT)

schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))


class SigV4(requests.auth.AuthBase):
    """Signs each request exactly as sent, with botocore's SigV4 signer (as awscurl does)."""

    def __init__(self, identity: LocalIdentity) -> None:
        self.identity = identity

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        headers = {name: value for name, value in prepared.headers.items() if name.lower() == "content-type"}
        signed = sigv4_headers(
            str(prepared.method),
            str(prepared.url),
            self.identity.credentials(),
            data=prepared.body,
            headers=headers,
        )
        prepared.headers.update(signed)
        return prepared


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        prepared.headers["Authorization"] = f"Bearer {self.token}"
        return prepared


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(
        tmp_path_factory.mktemp("fuzz"), connections={"finance": "acme-dx", "sales": "dx-sales"}
    ) as running:
        yield running


def _target(site: Deployment, who: str) -> tuple[str, requests.auth.AuthBase]:
    """Where ``who`` calls the API, and how its requests are authenticated."""
    if who == "alice":
        return site.iam_url, SigV4(site.machine(who))
    return site.people_url, Bearer(site.token(who))


@pytest.mark.parametrize("who", IDENTITIES)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_document(case: schemathesis.Case, site: Deployment, who: str) -> None:
    # given any request the document allows (and many it does not), from a machine or a person
    base_url, auth = _target(site, who)
    # when it is sent over HTTP, signed (SigV4) or with a bearer token
    # then no answer is a 5xx, and every answer's status, headers and body are the document's
    case.call_and_validate(base_url=base_url, auth=auth, excluded_checks=EXCLUDED)


@pytest.mark.parametrize("who", IDENTITIES)
def test_job_lifecycles_keep_to_the_document(site: Deployment, who: str) -> None:
    # given the document's links: a started job can be watched, downloaded and cancelled by its id
    base_url, auth = _target(site, who)
    lifecycle = schema.as_state_machine()

    class Lifecycle(lifecycle):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict:
            return {"base_url": base_url, "auth": auth}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
            case.validate_response(response, excluded_checks=EXCLUDED, transport_kwargs=kwargs)

    # when sequences of calls follow those links (start, then watch, download, cancel, in any order)
    # then every answer along the way is one the document allows, and none is a 5xx
    Lifecycle.run(
        settings=settings(
            max_examples=LIFECYCLES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )


@pytest.mark.parametrize("who", IDENTITIES)
def test_the_fuzzers_credentials_reach_the_function(site: Deployment, who: str) -> None:
    # given the credentials the cases above are sent with (were they refused, every case would be a
    # documented 403 and the run above could not fail)
    base_url, auth = _target(site, who)
    # when the job listing is asked for with them
    answer = requests.get(f"{base_url}/reports", auth=auth, timeout=30)
    # then the function answers it: the signature or token was accepted
    assert answer.status_code == 200, answer.text
    assert "jobs" in answer.json()
