"""Connections that cannot smuggle secrets: https base URLs without userinfo, a private CA from a file,
Secrets Manager or SSM, and certificate checks turned off only out loud."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reportrelay import runtime
from reportrelay.auth import forget_cached_tokens
from reportrelay.config import Connection, Connections, SecretResolver
from reportrelay.errors import ConfigurationError
from reportrelay.providers import open_provider
from reportrelay.tls import tls_verification
from tests.tls import TestCA, TlsServer

CLIENT_SECRET = "client-Secret-5f1e"


def vendor_answer(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A vendor behind a private CA: a token endpoint and one API call that wants its token."""
    if path == "/oauth/token":
        return (
            200,
            {},
            json.dumps({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}).encode(),
        )
    if headers.get("authorization") != "Bearer at-1":
        return 401, {}, b'{"message": "sign in"}'
    return 200, {}, b'{"ok": true}'


def connection(base_url: str, **settings: Any) -> Connection:
    return Connection.model_validate(
        {
            "name": "onprem",
            "provider": "devexpress",
            "base_url": base_url,
            "auth": {  # DevExpress signs in with the password grant only
                "type": "oauth_password",
                "username": "reportrelay",
                "password": {"env": "CLIENT_SECRET"},
            },
            **settings,
        }
    )


@pytest.fixture(autouse=True)
def _fresh_tokens() -> None:
    forget_cached_tokens()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def call_vendor(server: TlsServer, secrets: SecretResolver, **settings: Any) -> int:
    """Sign in and make one call through the adapter a workflow step would open."""
    provider = open_provider(connection(f"https://127.0.0.1:{server.port}", **settings), secrets)
    return provider.http.request("GET", "/api/ping", action="ping").status_code


def test_a_vendor_with_a_private_ca_is_trusted_through_ca_bundle_for_sign_in_and_calls(ca: TestCA) -> None:
    # given a vendor whose certificate is issued by a private CA, and the CA's PEM in a file
    with TlsServer(ca.issue("127.0.0.1"), vendor_answer) as server:
        secrets = SecretResolver(environ={"CLIENT_SECRET": CLIENT_SECRET})
        # when the connection names the file as its ca_bundle
        status = call_vendor(server, secrets, ca_bundle={"file": str(ca.bundle)})
    # then both the token request and the API call pass the certificate check
    assert status == 200
    assert [path for _, path, _ in server.requests] == ["/oauth/token", "/api/ping"]


def test_without_the_ca_bundle_the_same_vendor_is_not_trusted(ca: TestCA) -> None:
    secrets = SecretResolver(environ={"CLIENT_SECRET": CLIENT_SECRET})
    with (
        TlsServer(ca.issue("127.0.0.1"), vendor_answer) as server,
        pytest.raises(ConfigurationError) as raised,
    ):
        call_vendor(server, secrets)
    # then signing in fails at once, saying what to do
    assert "TLS handshake failed: certificate not trusted" in str(raised.value)
    assert "give its PEM as ca_bundle" in str(raised.value)


@mock_aws
def test_in_aws_the_ca_bundle_comes_from_ssm_or_secrets_manager(
    ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # given the CA's PEM stored as an SSM parameter and as a secret
    pem = ca.bundle.read_text(encoding="utf-8")
    boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/vendor/ca", Value=pem, Type="String")
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="vendor-ca", SecretString=json.dumps({"pem": pem})
    )
    secrets = SecretResolver(
        environ={"CLIENT_SECRET": CLIENT_SECRET},
        aws_secret_loader=runtime.read_secret_string,
        parameter_loader=runtime.read_parameter,
    )
    with TlsServer(ca.issue("127.0.0.1"), vendor_answer) as server:
        # when a connection names either as its ca_bundle
        from_ssm = call_vendor(server, secrets, ca_bundle={"ssm": "/vendor/ca"})
        forget_cached_tokens()
        from_secret = call_vendor(server, secrets, ca_bundle={"secret": "vendor-ca", "key": "pem"})
    # then the vendor is trusted either way
    assert (from_ssm, from_secret) == (200, 200)


def test_the_bundle_keeps_the_public_roots_beside_the_private_ca(ca: TestCA) -> None:
    # given a private CA bundle: a vendor's redirect to a CDN is still signed by a public CA
    verify = tls_verification(
        connection("https://dx.corp.example", ca_bundle={"file": str(ca.bundle)}), SecretResolver()
    )
    text = Path(str(verify)).read_text(encoding="utf-8")
    # then the file requests is given holds the private CA and many public roots
    assert ca.bundle.read_text(encoding="utf-8").strip() in text
    assert text.count("-----BEGIN CERTIFICATE-----") > 50


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not a certificate", "connections.onprem.ca_bundle: holds no PEM certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "connections.onprem.ca_bundle: a certificate in it cannot be read",
        ),
    ],
)
def test_a_ca_bundle_without_a_readable_certificate_is_a_configuration_error(
    tmp_path: Path, content: str, expected: str
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        tls_verification(
            connection("https://dx.corp.example", ca_bundle={"file": str(bundle)}), SecretResolver()
        )
    assert str(raised.value).startswith(expected)


def test_a_missing_ca_bundle_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigurationError) as raised:
        tls_verification(
            connection("https://dx.corp.example", ca_bundle={"file": str(missing)}), SecretResolver()
        )
    assert (
        str(raised.value) == f"connections.onprem.ca_bundle: cannot read {missing}: No such file or directory"
    )


def test_certificate_checks_off_are_logged_every_time_the_connection_is_opened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a connection with verify_tls false
    lab = connection("https://dx.lab.example", verify_tls=False)
    # when two steps open it
    assert tls_verification(lab, SecretResolver()) is False
    assert tls_verification(lab, SecretResolver()) is False
    # then each logged a warning naming the connection
    warnings = [record for record in caplog.records if "verify_tls" in record.getMessage()]
    assert len(warnings) == 2
    assert all(record.levelname == "WARNING" and record.connection == "onprem" for record in warnings)  # type: ignore[attr-defined]
    assert "TLS certificate verification is OFF" in warnings[0].getMessage()


# --------------------------------------------------------------------------------------------------
# What the connections file may say


def problem(**settings: Any) -> str:
    body = {
        "provider": "devexpress",
        "auth": {"type": "bearer", "token": {"env": "T"}},
        "base_url": "https://dx.corp.example",
        **settings,
    }
    with pytest.raises(ConfigurationError) as raised:
        Connections.from_document({"connections": {"onprem": body}})
    return str(raised.value)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"base_url": "https://api:hunter2@dx.corp.example"},
            "connections.onprem.base_url: must not carry a user name or password (user:password@host)",
        ),
        ({"base_url": "https://token@dx.corp.example"}, "must not carry a user name or password"),
        (
            {"base_url": "http://dx.corp.example"},
            "connections.onprem: base_url: http://dx.corp.example would send credentials and reports "
            "unencrypted; use https://",
        ),
        ({"base_url": "http://10.1.2.3:8080"}, "would send credentials and reports unencrypted"),
        ({"ca_bundle": "-----BEGIN CERTIFICATE-----"}, 'must say where the PEM certificates are: {"file"'),
        (
            {"ca_bundle": {"file": "ca.pem"}, "verify_tls": False},
            "ca_bundle and verify_tls: false contradict each other",
        ),
        ({"redirect_hosts": ["https://files.example"]}, "is not a host name or host:port"),
        ({"redirect_hosts": ["files.example/reports"]}, "is not a host name or host:port"),
        ({"redirect_hosts": [""]}, "an entry is empty"),
    ],
)
def test_connections_that_could_leak_are_refused_when_loaded(settings: dict[str, Any], expected: str) -> None:
    message = problem(**settings)
    assert expected in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "settings",
    [
        {"base_url": "http://127.0.0.1:8701"},
        {"base_url": "http://localhost:8701"},
        {"base_url": "http://[::1]:8701"},
        {"base_url": "http://dx.corp.example", "allow_plain_http": True},
        {"redirect_hosts": ["files.example", "cdn.example:8443", "::1"]},
    ],
)
def test_loopback_http_and_explicitly_allowed_http_are_accepted(settings: dict[str, Any]) -> None:
    body = {"provider": "devexpress", "auth": {"type": "none"}, "base_url": "https://dx.corp.example"}
    Connections.from_document({"connections": {"onprem": {**body, **settings}}})


def test_a_relative_ca_bundle_file_is_taken_from_the_connections_file_folder(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "connections.json").write_text(
        json.dumps(
            {
                "connections": {
                    "onprem": {
                        "provider": "devexpress",
                        "base_url": "https://dx.corp.example",
                        "auth": {"type": "none"},
                        "ca_bundle": {"file": "corp-ca.pem"},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    loaded = Connections.from_file(folder / "connections.json").get("onprem")
    assert loaded.ca_bundle is not None and Path(loaded.ca_bundle.file) == folder / "corp-ca.pem"  # type: ignore[union-attr]
