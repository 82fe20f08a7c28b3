"""docs/openapi.json is generated from the API's routes, and says what an integrator needs to know."""

from __future__ import annotations

import json

from reportrelay.handlers.api import PEOPLE_SCHEME, SECURITY_SCHEME, openapi_document
from scripts.openapi import DOCUMENT, render

ROUTES = {
    ("post", "/reports"),
    ("get", "/reports"),
    ("get", "/reports/{job_id}"),
    ("get", "/reports/{job_id}/events"),
    ("get", "/reports/{job_id}/download"),
    ("delete", "/reports/{job_id}"),
    ("post", "/reports/{job_id}/links"),
    ("delete", "/reports/{job_id}/links/{link_id}"),
    ("get", "/links/{token}"),
    ("get", "/auth/callback"),
}
# Followed by a person's browser, with no credential: their answers are pages or redirects.
OPEN_ROUTES = {("get", "/links/{token}"), ("get", "/auth/callback")}


def operations(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): op for path, methods in document["paths"].items() for method, op in methods.items()
    }


def test_the_committed_document_is_the_generated_one():
    # given the document in the repository and the one the routes generate now
    committed = DOCUMENT.read_text(encoding="utf-8")
    # then they are the same: after changing a route, run scripts/openapi.py and commit the result
    assert committed == render(), "docs/openapi.json is out of date: run make openapi"


def test_every_route_is_documented_with_both_schemes_and_declares_its_errors():
    document = openapi_document()
    # then the routes are there, behind SigV4 for machines or OIDC for people
    assert set(operations(document)) == ROUTES
    assert document["security"] == [{SECURITY_SCHEME: []}, {PEOPLE_SCHEME: []}]
    scheme = document["components"]["securitySchemes"][SECURITY_SCHEME]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4" and scheme["name"] == "Authorization"
    people = document["components"]["securitySchemes"][PEOPLE_SCHEME]
    assert people["type"] == "openIdConnect" and people["openIdConnectUrl"].endswith("/openid-configuration")
    # and the links a browser follows need no credential at all
    assert all(operations(document)[route]["security"] == [{}] for route in OPEN_ROUTES)
    # and each declares its answers: success, 401, 403, 429, 503, and the errors it can give
    every = {"401", "403", "429", "503"}
    expected = {
        ("post", "/reports"): every | {"202", "400", "409", "413", "415"},
        ("get", "/reports"): every | {"200", "400"},
        ("get", "/reports/{job_id}"): every | {"200", "404"},
        ("get", "/reports/{job_id}/events"): every | {"200", "400", "404"},
        ("get", "/reports/{job_id}/download"): every | {"302", "404", "409", "410"},
        ("delete", "/reports/{job_id}"): every | {"200", "404", "409"},
        ("post", "/reports/{job_id}/links"): every | {"201", "400", "404", "415"},
        ("delete", "/reports/{job_id}/links/{link_id}"): every | {"200", "404"},
        ("get", "/links/{token}"): {"302", "403", "404", "409", "410", "429", "503"},
        ("get", "/auth/callback"): {"302", "400", "401", "429", "503"},
    }
    for route, operation in operations(document).items():
        assert set(operation["responses"]) == expected[route], route
        for status, answer in operation["responses"].items():
            if route in OPEN_ROUTES and status not in ("400", "404", "429", "503"):
                assert status == "302" or "text/html" in answer["content"], (route, status)
            else:
                assert answer["content"]["application/json"]["schema"], (route, status)
    # and powertools' 422 schemas are gone (the API answers 400, never 422: the sets above leave it out)
    assert "HTTPValidationError" not in json.dumps(document)
