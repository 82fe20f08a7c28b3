"""Synthesized templates for the infra tests: each variant is synthesized once per session.

Synthesis runs the real app (``infra.app.build_app``, as ``cdk synth`` does) with cdk.json's context and
``reportrelay:bundle=false``, so no pip runs: the asset holds the reportrelay package only. cdk-nag runs
as part of every synthesis; an unacknowledged finding fails it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import cx_api

from infra import constants
from infra.app import build_app
from reportrelay import providers
from tests.infra import fake_provider

CDK_CONTEXT: dict[str, Any] = json.loads((constants.REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))[
    "context"
]


@dataclass(frozen=True)
class Synthesized:
    """One synthesized stack: its template and the cloud assembly directory it was written to."""

    template: dict[str, Any]
    directory: Path
    stack_name: str
    warnings: tuple[str, ...] = ()  # the synthesis warnings (Annotations) cdk synth prints

    @property
    def template_file(self) -> Path:
        return self.directory / f"{self.stack_name}.template.json"

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == resource_type
        }

    def nested_templates(self) -> dict[str, dict[str, Any]]:
        """The nested stacks' templates (the connections' parameters, ``infra.connections``), by file name."""
        return {
            path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.directory.glob(f"{self.stack_name}*.nested.template.json"))
        }

    def connection_parameters(self) -> dict[str, str]:
        """Every deployed connection's SSM parameter: name -> value, from all the nested stacks."""
        found = {}
        for template in self.nested_templates().values():
            for resource in template["Resources"].values():
                if resource["Type"] == "AWS::SSM::Parameter":
                    properties = resource["Properties"]
                    assert properties["Name"] not in found, f"{properties['Name']} is deployed twice"
                    found[properties["Name"]] = properties["Value"]
        return found

    def resource(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))


def synthesize(directory: Path, **settings: Any) -> Synthesized:
    """Synthesize the app into ``directory`` with ``reportrelay:<key>`` settings on top of cdk.json's."""
    context = {**CDK_CONTEXT, "reportrelay:bundle": False}
    context.update({f"reportrelay:{key}": value for key, value in settings.items()})
    assembly = build_app(context, outdir=str(directory)).synth()
    (stack,) = assembly.stacks
    warnings = tuple(
        str(message.entry.data)
        for message in stack.messages
        if message.level == cx_api.SynthesisMessageLevel.WARNING
    )
    return Synthesized(
        template=stack.template, directory=directory, stack_name=stack.stack_name, warnings=warnings
    )


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app exactly as ``cdk deploy`` would deploy it with the repository's configuration."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> dict[str, Any]:
    """The synthesized CloudFormation template as a dict (see infra.definition for the ASL in it)."""
    return synthesized.template


ALLOWED_ACCOUNTS = ("111122223333", "444455556666")
ORGANIZATION_ID = "o-a1b2c3d4e5"
OIDC_ISSUER = "https://login.example.com/oauth2/default"
OIDC_SETTINGS = {
    "peopleSignIn": "external",
    "oidcIssuer": OIDC_ISSUER,
    "oidcClientId": "0oa1reportrelay",
    "oidcAuthorizationUrl": f"{OIDC_ISSUER}/v1/authorize",
    "oidcTokenUrl": f"{OIDC_ISSUER}/v1/token",
    "oidcGroupsClaim": "groups",
}


@pytest.fixture(scope="session")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Every setting moved off its default: KMS bucket, no versioning, no access logs, other names, the
    IAM API limited to two accounts and an organization, people signing in at an external provider, and no
    container task (so no VPC at all)."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out.hardened"),
        stackName="ReportRelayHardened",
        bucketEncryption="kms",
        versioned="false",
        accessLogs="false",
        reportRetentionDays="30",
        logRetentionDays="90",
        eventBusName="reports-test",
        alarmEmail="ops@example.com",
        downloadUrlSeconds="60",
        apiThrottleRate="5",
        apiThrottleBurst="10",
        apiAllowedAccounts=",".join(ALLOWED_ACCOUNTS),
        apiOrganizationId=ORGANIZATION_ID,
        fetchContainer="false",
        **OIDC_SETTINGS,
    )


@pytest.fixture(scope="session")
def without_sign_in(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """``peopleSignIn=none``: no identity provider; the people API serves share links only."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out.nosignin"), stackName="ReportRelayNoSignIn", peopleSignIn="none"
    )


def synthesize_with_connections(
    directory: Path, stack_name: str, connections: Mapping[str, Any]
) -> Synthesized:
    """The app deploying only these connections, and no schedules (their file does not exist)."""
    connections_file = directory.parent / f"{directory.name}-connections.json"
    connections_file.write_text(json.dumps({"connections": connections}), encoding="utf-8")
    return synthesize(
        directory,
        stackName=stack_name,
        connectionsFile=str(connections_file),
        schedulesFile=str(directory.parent / "no-schedules.json"),
    )


HOLDER_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:reportrelay/holding-AbCdEf"


@pytest.fixture(scope="session")
def with_holder(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """A deployment with a provider that holds its request open and seals a session token."""
    holding = {
        "provider": fake_provider.KEY,
        "base_url": "https://holding.example",
        "auth": {"type": "bearer", "token": {"secret": HOLDER_SECRET_ARN, "key": "token"}},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(providers.PROVIDERS, fake_provider.KEY, fake_provider.PROVIDER_PATH)
        return synthesize_with_connections(
            tmp_path_factory.mktemp("cdk.out.holder"), "ReportRelayHolder", {"holding": holding}
        )


@pytest.fixture(scope="session")
def with_rotation(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """A deployment with a refresh-token connection: its refresh token and client secret in two secrets."""
    calls = {
        "provider": "myreports",
        "base_url": "https://api.myreports.example",
        "auth": {
            "type": "oauth_refresh_token",
            "token_url": "https://login.myreports.example/connect/token",
            "client_id": "reportrelay",
            "client_secret": {"secret": "reportrelay/calls-client", "key": "secret"},
            "refresh_token": {"secret": "reportrelay/calls-refresh", "key": "token"},
        },
    }
    return synthesize_with_connections(
        tmp_path_factory.mktemp("cdk.out.rotation"), "ReportRelayRotation", {"calls": calls}
    )


def claims_table(synthesized: Synthesized) -> tuple[str, dict[str, Any]]:
    """The claims table (reportrelay.claims): the table without secondary indexes."""
    (found,) = [
        (logical_id, table)
        for logical_id, table in synthesized.resources("AWS::DynamoDB::Table").items()
        if "GlobalSecondaryIndexes" not in table["Properties"]
    ]
    return found


def job_table(synthesized: Synthesized) -> tuple[str, dict[str, Any]]:
    """The job table (reportrelay.jobs): the table the listing's indexes are on."""
    (found,) = [
        (logical_id, table)
        for logical_id, table in synthesized.resources("AWS::DynamoDB::Table").items()
        if "GlobalSecondaryIndexes" in table["Properties"]
    ]
    return found


def rest_api(synthesized: Synthesized, which: str) -> tuple[str, dict[str, Any]]:
    """The IAM-authorized job API (``which="jobs"``) or the people API (``"people"``), by its name."""
    (found,) = [
        (logical_id, api)
        for logical_id, api in synthesized.resources("AWS::ApiGateway::RestApi").items()
        if api["Properties"]["Name"].endswith(f"-{which}")
    ]
    return found


def routes(synthesized: Synthesized, which: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> the method's properties, for one of the two REST APIs."""
    api_id, _ = rest_api(synthesized, which)
    resources = synthesized.resources("AWS::ApiGateway::Resource")

    def path(resource_id: str) -> str:
        if resource_id == api_id:
            return ""
        properties = resources[resource_id]["Properties"]
        (parent,) = references(properties["ParentId"])
        return f"{path(parent)}/{properties['PathPart']}"

    found = {}
    for method in synthesized.resources("AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        if references(properties["RestApiId"]) != {api_id}:
            continue
        (resource,) = references(properties["ResourceId"])
        resource = api_id if resource == api_id else resource
        found[(properties["HttpMethod"], path(resource) or "/")] = properties
    return found


def environment(synthesized: Synthesized, handler: str) -> dict[str, Any]:
    """The environment variables of the function with this handler."""
    (function,) = [
        function["Properties"]
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if function["Properties"]["Handler"] == handler
    ]
    variables: dict[str, Any] = function.get("Environment", {}).get("Variables", {})
    return variables


def references(value: Any) -> set[str]:
    """Logical ids a CloudFormation expression refers to (Ref, Fn::GetAtt, Fn::Sub ${Id...})."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else str(item).split(".")[0])
            else:
                found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def cfn_lint(template_file: Path) -> list[str]:
    """cfn-lint's findings on a template, as it prints them. Imported when first used: cfn-lint brings
    sympy (0.8 s of imports), which every test worker would otherwise pay at collection."""
    from cfnlint.api import lint_file

    return [str(match) for match in lint_file(template_file)]
