"""Schemathesis against the committed OpenAPI document: no 5xx, and no answer the document does not allow.

The API runs in-process on emulated AWS (LocalAws: the ASL on moto, DynamoDB, S3), behind
reportrelay.local.apigateway.JobApiApp, which plays API Gateway: it refuses unsigned requests (403) and
turns the rest into REST proxy events for the handler. The connection in the document's examples
("acme-dx") exists here, so the examples start real jobs against the DevExpress simulator; generated
requests explore everything else. Bounded: a few dozen cases per operation, well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from reportrelay.local.apigateway import JobApiApp
from scripts.openapi import DOCUMENT
from tests.conftest import devexpress_on_local_aws

# Any SigV4 Authorization header passes the emulated API Gateway; the access key id names the caller.
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAFUZZER/20250301/us-east-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=0000"
}
EXAMPLES_PER_OPERATION = 100
LIFECYCLES = 25
# Schemathesis expects 401 when the Authorization header is missing; API Gateway's AWS_IAM authorization
# answers 403 ("Missing Authentication Token"), which the document declares. Every other check runs.
AUTHORIZATION_IS_401 = schemathesis.checks.missing_required_header
# Likewise a method the API does not declare never reaches the function: API Gateway answers it (403).
UNDECLARED_METHOD_IS_405 = schemathesis.checks.unsupported_method
# Whether a schema-valid job request is acceptable depends on the deployment (its connections) and on
# each provider's rules (formats, report fields), which no JSON Schema states: such requests get the
# documented 400 naming the field (tests/api/test_api_routes.py covers those answers one by one). Likewise
# a listing cursor is opaque: only one the API issued is valid, any other string is a documented 400.
VALID_BY_SCHEMA_IS_NOT_ENOUGH = schemathesis.checks.positive_data_acceptance

schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobApiApp]:
    """The job API on emulated AWS, with the document's example connection pointing at a simulator."""
    with devexpress_on_local_aws(tmp_path_factory.mktemp("fuzz"), "acme-dx", log_level="CRITICAL") as aws:
        yield JobApiApp(aws.api)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_document(case: schemathesis.Case, api_app: JobApiApp) -> None:
    # given any request the document allows (and many it does not), signed like an IAM caller
    # when it is sent through the emulated API Gateway
    # then no answer is a 5xx, and every answer's status, headers and body are the document's
    case.operation.app = case.operation.schema.app = api_app  # probes (e.g. without auth) go there too
    excluded = [AUTHORIZATION_IS_401, UNDECLARED_METHOD_IS_405]
    if case.operation.label in ("POST /reports", "GET /reports"):
        excluded.append(VALID_BY_SCHEMA_IS_NOT_ENOUGH)
    case.call_and_validate(headers=SIGNED, excluded_checks=excluded)


def test_job_lifecycles_keep_to_the_document(api_app: JobApiApp) -> None:
    # given the document's links: a started job can be watched, downloaded and cancelled by its id
    schema.app = api_app
    lifecycle = schema.as_state_machine()

    class SignedLifecycle(lifecycle):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict:
            return {"headers": SIGNED, "app": api_app}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
            case.validate_response(
                response,
                excluded_checks=[
                    AUTHORIZATION_IS_401,
                    UNDECLARED_METHOD_IS_405,
                    VALID_BY_SCHEMA_IS_NOT_ENOUGH,
                ],
                headers=kwargs.get("headers"),
                transport_kwargs=kwargs,
            )

    # when sequences of calls follow those links (start, then watch, download, cancel, in any order)
    # then every answer along the way is one the document allows, and none is a 5xx
    SignedLifecycle.run(
        settings=settings(
            max_examples=LIFECYCLES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
