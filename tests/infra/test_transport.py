"""Deployed connections and TLS: a private CA from SSM or Secrets Manager is granted exactly, weakened
transport is announced at synthesis, and what cannot work in Lambda stops the synthesis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.configuration import ConfigError, load_connections
from tests.infra.conftest import Synthesized, synthesize_with_connections
from tests.infra.policies import function_role, role_grants

SUBMIT = "reportrelay.handlers.submit.handler"
FETCH = "reportrelay.handlers.fetch.handler"
CANCEL = "reportrelay.handlers.cancel.handler"
CONCLUDE = "reportrelay.handlers.conclude.handler"
API = "reportrelay.handlers.api.handler"
START_SCHEDULED = "reportrelay.handlers.start_scheduled.handler"
PASSWORD = {"secret": "reportrelay/onprem", "key": "password"}


def devexpress(base_url: str, **settings: Any) -> dict[str, Any]:
    return {
        "provider": "devexpress",
        "base_url": base_url,
        "auth": {"type": "oauth_password", "username": "api", "password": PASSWORD},
        **settings,
    }


CONNECTIONS = {
    "onprem": devexpress("https://dx.corp.example", ca_bundle={"ssm": "/reportrelay/corp-ca"}),
    "vault": devexpress("https://dx2.corp.example", ca_bundle={"secret": "reportrelay/corp-ca-pem"}),
    "lab": devexpress("https://dx.lab.example", verify_tls=False),
    "legacy": devexpress("http://dx.legacy.example", allow_plain_http=True),
}


CONNECTION_PARAMETERS = ":parameter/reportrelay/ReportRelayPrivateCa/connections"


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize_with_connections(
        tmp_path_factory.mktemp("cdk.out.private-ca"), "ReportRelayPrivateCa", CONNECTIONS
    )


@pytest.mark.parametrize("handler", [SUBMIT, FETCH, CANCEL])
def test_provider_functions_read_exactly_the_ca_parameter(private_ca: Synthesized, handler: str) -> None:
    # given a connection whose ca_bundle is the SSM parameter /reportrelay/corp-ca
    # when the app is synthesized
    ssm_grants = [
        grant
        for grant in role_grants(private_ca, function_role(private_ca, handler))
        if any(action.startswith("ssm:") for action in grant.actions)
    ]
    # then the provider-facing function may get that one parameter (beside the deployed connections'
    # own parameters), and do nothing else in SSM
    assert {action for grant in ssm_grants for action in grant.actions} == {"ssm:GetParameter"}
    (resource,) = [
        resource
        for grant in ssm_grants
        for resource in grant.resources
        if CONNECTION_PARAMETERS not in json.dumps(resource)
    ]
    assert json.dumps(resource).endswith(':parameter/reportrelay/corp-ca"]]}')


@pytest.mark.parametrize("handler", [SUBMIT, FETCH])
def test_a_ca_bundle_in_secrets_manager_is_read_as_a_secret(private_ca: Synthesized, handler: str) -> None:
    secret_resources = json.dumps(
        [
            grant.resources
            for grant in role_grants(private_ca, function_role(private_ca, handler))
            if "secretsmanager:GetSecretValue" in grant.actions
        ]
    )
    assert ":secret:reportrelay/corp-ca-pem-??????" in secret_resources


@pytest.mark.parametrize("handler", [CONCLUDE, API, START_SCHEDULED])
def test_functions_that_meet_no_vendor_cannot_read_the_ca(private_ca: Synthesized, handler: str) -> None:
    grants = role_grants(private_ca, function_role(private_ca, handler))
    ssm_resources = json.dumps(
        [grant.resources for grant in grants if any("ssm:" in a for a in grant.actions)]
    )
    # the API reads the connections (their own parameters), never the CA
    assert "corp-ca" not in ssm_resources
    if handler != API:
        assert ssm_resources == "[]"


def test_weakened_transport_is_a_synthesis_warning_naming_the_connection(private_ca: Synthesized) -> None:
    # then cdk synth prints one warning for certificate checks off and one for plain http
    tls = [warning for warning in private_ca.warnings if "verify_tls is false" in warning]
    plain = [warning for warning in private_ca.warnings if "allow_plain_http is true" in warning]
    assert len(tls) == 1 and tls[0].startswith("connections.lab: ") and "dx.lab.example" in tls[0]
    assert len(plain) == 1 and plain[0].startswith("connections.legacy: ")
    # and connections with a private CA are not warned about
    assert not [warning for warning in private_ca.warnings if "onprem" in warning or "vault" in warning]


def write(tmp_path: Path, **connection: Any) -> Path:
    path = tmp_path / "connections.json"
    path.write_text(json.dumps({"connections": {"onprem": connection}}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (
            devexpress("https://dx.corp.example", ca_bundle={"file": "corp-ca.pem"}),
            "connections.onprem.ca_bundle: deployed functions cannot read the local file",
        ),
        (
            devexpress("http://127.0.0.1:9001"),
            "connections.onprem.base_url: 127.0.0.1 is the function's own machine in Lambda",
        ),
        (
            devexpress("https://localhost"),
            "connections.onprem.base_url: localhost is the function's own machine in Lambda",
        ),
        (
            devexpress("http://dx.corp.example"),
            "base_url: http://dx.corp.example would send credentials and reports unencrypted",
        ),
        (
            devexpress("https://api:hunter2@dx.corp.example"),
            "base_url: must not carry a user name or password",
        ),
    ],
)
def test_connections_that_cannot_work_deployed_stop_the_synthesis(
    tmp_path: Path, connection: dict[str, Any], expected: str
) -> None:
    # when the deployed connections are loaded
    with pytest.raises(ConfigError) as raised:
        load_connections(write(tmp_path, **connection))
    # then the message names the file, the connection and the field
    assert str(tmp_path / "connections.json") in str(raised.value)
    assert expected in str(raised.value)
    assert "hunter2" not in str(raised.value)
