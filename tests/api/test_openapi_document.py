"""docs/openapi.json is generated from the API's routes, and says what an integrator needs to know."""

from __future__ import annotations

import json

from reportrelay.handlers.api import SECURITY_SCHEME, openapi_document
from scripts.openapi import DOCUMENT, render

ROUTES = {
    ("post", "/reports"),
    ("get", "/reports"),
    ("get", "/reports/{job_id}"),
    ("get", "/reports/{job_id}/download"),
    ("delete", "/reports/{job_id}"),
}


def operations(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): op for path, methods in document["paths"].items() for method, op in methods.items()
    }


def test_the_committed_document_is_the_generated_one():
    # given the document in the repository and the one the routes generate now
    committed = DOCUMENT.read_text(encoding="utf-8")
    # then they are the same: after changing a route, run scripts/openapi.py and commit the result
    assert committed == render(), "docs/openapi.json is out of date: run make openapi"


def test_every_route_is_documented_signed_with_sigv4_and_declares_its_errors():
    document = openapi_document()
    # then the five routes are there, all behind the SigV4 (AWS_IAM) scheme
    assert set(operations(document)) == ROUTES
    assert document["security"] == [{SECURITY_SCHEME: []}]
    scheme = document["components"]["securitySchemes"][SECURITY_SCHEME]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4" and scheme["name"] == "Authorization"
    # and each declares its answers with a schema: success, 403, 429, 503, and the errors it can give
    expected = {
        ("post", "/reports"): {"202", "400", "403", "409", "413", "415", "429", "503"},
        ("get", "/reports"): {"200", "400", "403", "429", "503"},
        ("get", "/reports/{job_id}"): {"200", "403", "404", "429", "503"},
        ("get", "/reports/{job_id}/download"): {"302", "403", "404", "409", "410", "429", "503"},
        ("delete", "/reports/{job_id}"): {"200", "403", "404", "409", "429", "503"},
    }
    for route, operation in operations(document).items():
        assert set(operation["responses"]) == expected[route], route
        for answer in operation["responses"].values():
            assert answer["content"]["application/json"]["schema"], route
    # and powertools' 422 schemas are gone (the API answers 400, never 422: the sets above leave it out)
    assert "HTTPValidationError" not in json.dumps(document)
