"""Connections and job requests: what users write, and the messages they get when it is wrong."""

import json

import pytest

from reportrelay.config import Connections, EnvSecret, SecretResolver, parse_job_request
from reportrelay.errors import BadRequest, ConfigurationError


def connection(**overrides):
    body = {
        "provider": "devexpress",
        "base_url": "https://reports.acme.example",
        "auth": {"type": "oauth_password", "username": "api", "password": {"env": "ACME_DX_PASSWORD"}},
    }
    body.update(overrides)
    return {"connections": {"acme-dx": body}}


def test_a_valid_connection_keeps_provider_settings_as_extras():
    # given a connection with a provider-specific setting
    document = connection(provider="torus", tenant_id=69, auth={"type": "bearer", "token": {"env": "T"}})
    # when it is parsed
    parsed = Connections.from_document(document).get("acme-dx")
    # then the setting is available to the provider
    assert parsed.provider_settings == {"tenant_id": 69}
    assert parsed.poll.initial_seconds == 5


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"type": "bearer", "token": "s3cr3t-token"}, "auth.token"),
        ({"type": "basic", "username": "u", "password": "hunter2"}, "auth.password"),
        ({"type": "oauth_password", "username": "api", "password": "hunter2"}, "auth.password"),
        ({"type": "header", "header": "X-Api-Key", "value": "k"}, "auth.value"),
    ],
)
def test_a_literal_secret_is_refused_without_repeating_it(auth, field):
    # given a connection whose secret is written in the file
    document = connection(auth=auth)
    # when it is parsed
    with pytest.raises(ConfigurationError) as caught:
        Connections.from_document(document)
    # then the message names the field, asks for a reference, and does not echo the secret
    message = str(caught.value)
    assert f"connections.acme-dx.{field}" in message
    assert "reference" in message
    for secret in ("s3cr3t-token", "hunter2"):
        assert secret not in message


def test_a_blank_password_is_allowed_for_guest_accounts():
    # given the DevExpress guest account, which has no password
    document = connection(auth={"type": "oauth_password", "username": "guest"})
    # when it is parsed, then no secret is required
    assert Connections.from_document(document).get("acme-dx").auth.password is None


def test_an_unknown_auth_type_names_the_choices():
    with pytest.raises(ConfigurationError) as caught:
        Connections.from_document(connection(auth={"type": "kerberos"}))
    assert "connections.acme-dx.auth" in str(caught.value)
    assert "oauth_password" in str(caught.value)


def test_invalid_json_names_the_line(tmp_path):
    # given a connections file with a syntax error on line 2
    path = tmp_path / "connections.json"
    path.write_text('{"connections": {\n  "x": ,}}')
    # when it is loaded, then the message points at the line
    with pytest.raises(ConfigurationError, match=r"not valid JSON \(line 2"):
        Connections.from_file(path)


def test_a_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read connections file"):
        Connections.from_file(tmp_path / "absent.json")


def test_an_unknown_connection_lists_the_known_ones():
    connections = Connections.from_document(connection())
    with pytest.raises(BadRequest, match=r"unknown connection 'acme' \(configured: acme-dx\)"):
        connections.get("acme")


def test_a_job_request_is_validated_field_by_field():
    # given a request with a missing report and an unknown field
    document = {"connection": "acme-dx", "format": "pdf", "colour": "blue"}
    # when it is parsed, then both problems are named
    with pytest.raises(BadRequest) as caught:
        parse_job_request(document)
    assert "request.report: Field required" in str(caught.value)
    assert "request.colour: Extra inputs are not permitted" in str(caught.value)


def test_a_job_request_must_be_an_object():
    with pytest.raises(BadRequest, match="must be a JSON object"):
        parse_job_request(["connection"])


def test_an_output_prefix_cannot_escape_upwards():
    with pytest.raises(BadRequest, match=r"request\.output\.key_prefix"):
        parse_job_request(
            {"connection": "c", "report": {}, "format": "pdf", "output": {"key_prefix": "../x/"}}
        )


def test_format_is_case_insensitive():
    assert parse_job_request({"connection": "c", "report": {}, "format": "PDF"}).format == "pdf"


def test_secrets_resolve_from_the_environment_and_say_which_variable_is_missing():
    resolver = SecretResolver(environ={"PRESENT": "value"})
    assert resolver.resolve(EnvSecret(env="PRESENT"), "f") == "value"
    with pytest.raises(ConfigurationError, match="environment variable ABSENT is not set"):
        resolver.resolve(EnvSecret(env="ABSENT"), "connections.x.auth.password")


def test_aws_secrets_are_read_once_and_a_json_key_is_picked():
    # given a Secrets Manager secret holding JSON
    calls = []

    def load(secret_id):
        calls.append(secret_id)
        return json.dumps({"password": "pw"})

    resolver = SecretResolver(environ={}, aws_secret_loader=load)
    from reportrelay.config import AwsSecret

    ref = AwsSecret(secret="acme/dx", key="password")
    # when it is resolved twice, then the value comes from the key and the secret is fetched once
    assert resolver.resolve(ref, "f") == "pw"
    assert resolver.resolve(ref, "f") == "pw"
    assert calls == ["acme/dx"]
    with pytest.raises(ConfigurationError, match="has no JSON field 'user'"):
        resolver.resolve(AwsSecret(secret="acme/dx", key="user"), "f")
