"""Rotating refresh tokens across processes: the replacement is kept in Secrets Manager, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from reportrelay import auth
from reportrelay.config import Connections, SecretResolver
from reportrelay_cli.sandbox.myreports import MyReportsSimulator

CLIENT_ID = "reportrelay"
CLIENT_SECRET = "rot-client-Secret-41c9"
FIRST_REFRESH_TOKEN = "rot-refresh-Token-77aa"
SECRET_NAME = "acme/myreports"


@pytest.fixture
def login_host() -> Iterator[MyReportsSimulator]:
    with MyReportsSimulator(
        clients={CLIENT_ID: CLIENT_SECRET}, refresh_tokens=[FIRST_REFRESH_TOKEN], rotate_refresh_tokens=True
    ) as simulator:
        yield simulator


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("secretsmanager")
        client.create_secret(
            Name=SECRET_NAME,
            SecretString=json.dumps({"client_secret": CLIENT_SECRET, "refresh_token": FIRST_REFRESH_TOKEN}),
        )
        yield client


def a_process(secretsmanager: Any) -> SecretResolver:
    """What a Lambda process starts with: its own resolver reading and writing Secrets Manager."""
    return SecretResolver(
        environ={},
        aws_secret_loader=lambda name: secretsmanager.get_secret_value(SecretId=name)["SecretString"],
        aws_secret_writer=lambda name, value: secretsmanager.put_secret_value(
            SecretId=name, SecretString=value
        ),
    )


def signer(login_host: MyReportsSimulator, secrets: SecretResolver) -> auth.Auth:
    connection = Connections.from_document(
        {
            "connections": {
                "acme": {
                    "provider": "myreports",
                    "base_url": login_host.base_url,
                    "auth": {
                        "type": "oauth_refresh_token",
                        "token_url": f"{login_host.base_url}/connect/token",
                        "client_id": CLIENT_ID,
                        "client_secret": {"secret": SECRET_NAME, "key": "client_secret"},
                        "refresh_token": {"secret": SECRET_NAME, "key": "refresh_token"},
                    },
                }
            }
        }
    ).get("acme")
    return auth.build_auth(connection, secrets, requests.Session())


def stored_secret(secretsmanager: Any) -> dict[str, str]:
    return json.loads(secretsmanager.get_secret_value(SecretId=SECRET_NAME)["SecretString"])


def test_a_rotated_refresh_token_is_written_back_for_the_next_process(login_host, secretsmanager):
    # given a process that redeemed the configured refresh token, which the login host then voided
    signer(login_host, a_process(secretsmanager)).headers()
    # when a new process (nothing in memory) signs in
    auth.forget_cached_tokens()
    headers = signer(login_host, a_process(secretsmanager)).headers()
    # then it started from the replacement kept in the secret, and the secret's other fields are intact
    assert headers["Authorization"].startswith("Bearer ")
    assert login_host.refresh_grants_refused == 0 and login_host.tokens_issued == 2
    stored = stored_secret(secretsmanager)
    assert stored["refresh_token"] in login_host.refresh_tokens
    assert stored["client_secret"] == CLIENT_SECRET


def test_a_process_whose_token_another_rotated_reads_the_secret_again(login_host, secretsmanager):
    # given process A remembers the token it got, and process B has since rotated it again
    signer(login_host, a_process(secretsmanager)).headers()
    remembered_by_a = dict(auth._rotated_refresh_tokens)
    auth.forget_cached_tokens()
    signer(login_host, a_process(secretsmanager)).headers()
    # when A's access token runs out and it refreshes with what it remembers
    auth.forget_cached_tokens()
    auth._rotated_refresh_tokens.update(remembered_by_a)
    headers = signer(login_host, a_process(secretsmanager)).headers()
    # then the refusal sends it back to the secret, whose newer token works
    assert headers["Authorization"].startswith("Bearer ")
    assert login_host.refresh_grants_refused == 1 and login_host.tokens_issued == 3
    assert stored_secret(secretsmanager)["refresh_token"] in login_host.refresh_tokens


def test_a_refused_refresh_token_that_nobody_replaced_fails_clearly(login_host, secretsmanager):
    # given a secret whose refresh token the login host no longer honours
    secretsmanager.put_secret_value(
        SecretId=SECRET_NAME,
        SecretString=json.dumps({"client_secret": CLIENT_SECRET, "refresh_token": "revoked-by-an-admin"}),
    )
    # when a process signs in
    with pytest.raises(auth.ProviderAuthFailed) as failure:
        signer(login_host, a_process(secretsmanager)).headers()
    # then it asked once more after re-reading the secret (same value: no second try) and says what to check
    assert login_host.refresh_grants_refused == 1
    assert "check the connection's credentials" in str(failure.value)
    assert "revoked-by-an-admin" not in str(failure.value)
