"""The deployed configuration: connections, schedules, access policy (``config/``), checked at synthesis.

Connections are deployed as one SSM parameter each (``infra.connections``): each must have a name SSM
accepts and fit in a standard parameter (4 KB); the error names the file and the connection.

Each file is validated with the functions' own models (``reportrelay.config``, ``reportrelay.schedules``,
``reportrelay.access``), so a mistake stops ``cdk synth`` with the same message the function would give,
instead of failing the first job after the deploy. Across files: a schedule's team must be allowed on its
connection (or be the admin team).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aws_cdk import Annotations
from constructs import Construct

from infra import constants
from reportrelay import vendors
from reportrelay.access import AccessPolicy
from reportrelay.addresses import is_loopback_host
from reportrelay.config import (
    Connection,
    Connections,
    FileText,
    ParameterText,
)
from reportrelay.errors import ReportRelayError
from reportrelay.providers import check_connections, provider_class
from reportrelay.runtime import connection_parameter_value
from reportrelay_cli import schedulefile
from reportrelay_cli.schedulefile import Schedule

#: What SSM allows in one level of a parameter's name.
DEPLOYED_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ConfigError(ValueError):
    """The deployed configuration is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class DeployedConnections:
    """The connections document as deployed, the secrets it refers to, and what its providers need."""

    document: dict[str, Any]
    secrets: tuple[str, ...]
    # Secrets holding refresh tokens the login host may rotate: the functions write the new one back.
    rotating_secrets: tuple[str, ...] = ()
    # Some provider's handle carries a credential, sealed with a KMS key between steps (reportrelay.sealing).
    needs_handle_key: bool = False
    # Some provider generates a report only while one request stays open (the asynchronous holder).
    needs_holder: bool = False
    # SSM parameters the connections read (``ca_bundle: {"ssm": ...}``), by name or ARN.
    parameters: tuple[str, ...] = ()
    # What a reviewer of the deployment must hear: certificate checks off, plain http.
    warnings: tuple[str, ...] = ()
    # The user's vendor specs (``vendors/*.json`` beside the connections file), bundled with the functions.
    vendor_specs: tuple[Path, ...] = ()

    @property
    def names(self) -> list[str]:
        return sorted(self.document["connections"])

    @property
    def teams(self) -> set[str]:
        """Every team some connection is shared with."""
        return {team for body in self.document["connections"].values() for team in body.get("teams") or ()}

    def parameter_values(self) -> dict[str, str]:
        """Connection name -> the value of its SSM parameter (``infra.connections``)."""
        return {name: connection_parameter_value(body) for name, body in self.document["connections"].items()}


def load_connections(path: Path, secrets_prefix: str | None = None) -> DeployedConnections:
    """The connections file as deployed; with ``secrets_prefix`` (the setting connectionSecretsPrefix)
    every secret it refers to must be a name under that prefix, since only those will be readable."""
    document = _read_json(path)
    # The vendor specs beside the file first, each checked as the functions will read it, so that a
    # connection may name one as its provider (reportrelay.vendors); a bad one names its file and field.
    vendor_specs = tuple(vendors.user_spec_files(path.parent))
    try:
        vendors.add_user_specs(list(vendor_specs))
    except ReportRelayError as error:
        raise ConfigError(str(error)) from None
    try:
        connections = Connections.from_document(document)
        check_connections([connections.get(name) for name in connections.names()])
    except ReportRelayError as error:
        raise ConfigError(f"{path}: {error}") from None
    warnings = [
        warning for name in connections.names() for warning in _transport(path, connections.get(name))
    ]
    secrets: list[str] = []
    rotating: list[str] = []  # refresh tokens (auth type oauth_refresh_token) the login host may replace
    for where, reference in _secret_references(document["connections"], "connections"):
        if "env" in reference:
            raise ConfigError(
                f"{path}: {where} refers to the environment variable {reference['env']}, which deployed "
                'functions do not have: use {"secret": "<name or ARN>", "key": "<JSON field>"}'
            )
        if secrets_prefix is not None and not reference["secret"].startswith(secrets_prefix):
            raise ConfigError(
                f"{path}: {where} refers to the secret {reference['secret']}, which is not named under "
                f"the setting connectionSecretsPrefix ({secrets_prefix}): the functions may read only the "
                f"secrets named '{secrets_prefix}...' in this account and region; rename the secret, or "
                "leave the setting out to grant each secret by name"
            )
        if reference["secret"] not in secrets:
            secrets.append(reference["secret"])
        if where.endswith(".auth.refresh_token") and reference["secret"] not in rotating:
            rotating.append(reference["secret"])
    providers = [provider_class(connections.get(name).provider) for name in connections.names()]
    deployed = DeployedConnections(
        document=document,
        secrets=tuple(secrets),
        rotating_secrets=tuple(rotating),
        needs_handle_key=any(provider.sealed_handle_fields for provider in providers),
        needs_holder=any(provider.holds_request for provider in providers),
        parameters=tuple(
            sorted(
                {
                    bundle.ssm
                    for name in connections.names()
                    if isinstance(bundle := connections.get(name).ca_bundle, ParameterText)
                }
            )
        ),
        warnings=tuple(warnings),
        vendor_specs=vendor_specs,
    )
    _check_parameters(path, deployed)
    if secrets_prefix is None and len(deployed.secrets) > constants.MAX_EXACT_SECRET_GRANTS:
        raise ConfigError(
            f"{path}: the connections refer to {len(deployed.secrets)} secrets; granted one by one they "
            "would not fit in IAM's 10,240 characters of policy per role (about "
            f"{constants.MAX_EXACT_SECRET_GRANTS} do): name them under one prefix "
            "(reportrelay/connections/<name>) and set reportrelay:connectionSecretsPrefix to it"
        )
    return deployed


def _check_parameters(path: Path, connections: DeployedConnections) -> None:
    """Each connection must fit in the SSM parameter it is deployed as (``infra.connections``)."""
    for name, value in connections.parameter_values().items():
        if not DEPLOYED_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: connections.{name}: a deployed connection's name may hold only letters, digits, "
                "'-', '_' and '.' (it names the connection's SSM parameter)"
            )
        size = len(value.encode())
        if size > constants.MAX_CONNECTION_PARAMETER_BYTES:
            raise ConfigError(
                f"{path}: connections.{name} takes {size} bytes as JSON, more than the "
                f"{constants.MAX_CONNECTION_PARAMETER_BYTES} an SSM parameter holds: drop optional fields"
            )


def announce_weak_transport(scope: Construct, connections: DeployedConnections) -> None:
    """Every connection with certificate checks off or plain http, as a synthesis warning (printed by
    ``cdk synth``/``deploy``, and an error with ``--strict``); the functions log it again on every run."""
    for index, warning in enumerate(connections.warnings):
        Annotations.of(scope).add_warning_v2(f"reportrelay:weak-transport-{index}", warning)


def _transport(path: Path, connection: Connection) -> list[str]:
    """Refuse what cannot work in Lambda; the warnings a deployment with weakened TLS must carry."""
    where = f"{path}: connections.{connection.name}"
    host = urlsplit(connection.base_url).hostname or ""
    if is_loopback_host(host):
        raise ConfigError(
            f"{where}.base_url: {host} is the function's own machine in Lambda (where the Lambda runtime "
            "API listens), never a vendor: give the vendor's host name"
        )
    if isinstance(connection.ca_bundle, FileText):
        raise ConfigError(
            f"{where}.ca_bundle: deployed functions cannot read the local file {connection.ca_bundle.file}: "
            'store the PEM in Secrets Manager ({"secret": "<name or ARN>"}) or SSM Parameter Store '
            '({"ssm": "/parameter/name"})'
        )
    warnings = []
    if not connection.verify_tls:
        warnings.append(
            f"connections.{connection.name}: verify_tls is false: the functions will not check "
            f"{host}'s certificate, so anyone on the path can read its credentials and reports. Give the "
            "vendor's CA as ca_bundle instead."
        )
    if connection.allow_plain_http and connection.base_url.startswith("http://"):
        warnings.append(
            f"connections.{connection.name}: allow_plain_http is true: credentials and reports travel to "
            f"{host} unencrypted."
        )
    return warnings


def _secret_references(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``{"secret": ...}`` and ``{"env": ...}`` reference in the document, with where it is."""
    if isinstance(value, Mapping):
        if set(value) <= {"secret", "key"} and isinstance(value.get("secret"), str):
            yield where, dict(value)
            return
        if set(value) == {"env"} and isinstance(value["env"], str):
            yield where, dict(value)
            return
        for key, item in value.items():
            yield from _secret_references(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_references(item, f"{where}[{index}]")


COGNITO_GROUPS_CLAIM = "cognito:groups"  # where Cognito puts a user's groups in its tokens
EXTERNAL_GROUPS_CLAIM = "groups"  # the usual claim of other identity providers (Okta, Entra ID, Keycloak)


@dataclass(frozen=True)
class DeployedAccess:
    """The access policy as deployed (``REPORTRELAY_ACCESS``), the file it came from, and the groups claim
    the deployment's identity provider really sends (CDK settles it; the file may leave it out)."""

    policy: AccessPolicy
    path: Path
    groups_claim: str

    @property
    def admin_team(self) -> str | None:
        return self.policy.admin_team

    @property
    def group_prefix(self) -> str:
        return self.policy.group_prefix

    def document(self) -> dict[str, Any]:
        return {**self.policy.model_dump(mode="json"), "groups_claim": self.groups_claim}

    def env_value(self) -> str:
        """Compact JSON for the API function's environment (Lambda allows 4 KB in all)."""
        return json.dumps(self.document(), separators=(",", ":"), sort_keys=True)


def load_access(path: Path, *, sign_in: str = "cognito", groups_claim: str | None = None) -> DeployedAccess:
    """``config/access.json``: the admin team and how callers map to teams; a wrong field stops synthesis.

    ``sign_in`` is how people sign in (the setting ``peopleSignIn``) and ``groups_claim`` the setting
    ``oidcGroupsClaim``: with Cognito the claim is ``cognito:groups``; with an external provider it is the
    setting, else the file's ``groups_claim``, else ``groups``. A file naming another claim than the
    provider's is refused, since no person would ever get a team.
    """
    try:
        policy = AccessPolicy.from_file(path)
    except ReportRelayError as error:
        message = str(error)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from None
    written = policy.groups_claim if "groups_claim" in policy.model_fields_set else None
    external = groups_claim or written or EXTERNAL_GROUPS_CLAIM
    claim = COGNITO_GROUPS_CLAIM if sign_in == "cognito" else external
    if written is not None and written != claim and sign_in != "none":
        source = "Cognito's" if sign_in == "cognito" else "the setting reportrelay:oidcGroupsClaim's"
        raise ConfigError(
            f"{path}.groups_claim: '{written}' is not the identity provider's groups claim ({source} "
            f"'{claim}'); leave groups_claim out or make the two agree"
        )
    return DeployedAccess(policy=policy, path=path, groups_claim=claim)


def check_api_documents(access: DeployedAccess) -> None:
    """The access policy must fit in the API function's environment, beside its names and URLs (the
    connections are not there: they are SSM parameters, ``infra.connections``)."""
    size = len(access.env_value().encode())
    if size > constants.MAX_API_DOCUMENTS_ENV_BYTES:
        raise ConfigError(
            f"{access.path} takes {size} bytes, more than the {constants.MAX_API_DOCUMENTS_ENV_BYTES} bytes "
            "the API function's environment leaves for it; use fnmatch patterns in 'roles'"
        )


def load_schedules(
    path: Path, connections: DeployedConnections, admin_team: str | None = None
) -> list[Schedule]:
    """The schedules (``reportrelay_cli.schedulefile``), each tried out once against the connections; a
    missing file means none."""
    try:
        return schedulefile.load_schedules(path, Connections.from_document(connections.document), admin_team)
    except ReportRelayError as error:
        raise ConfigError(str(error)) from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON (line {error.lineno}): {error.msg}") from None
