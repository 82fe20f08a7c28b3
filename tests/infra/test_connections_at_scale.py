"""A thousand connections deploy: every template, function environment, role policy and parameter stays
within AWS's limits (issue 13, item 5).

The connections are SSM parameters in nested stacks (``infra.connections``), the functions are told only
their path, and the secrets are granted by the prefix they are named under (the setting
``connectionSecretsPrefix``). Sizes are measured on the synthesized templates; where a value is a
CloudFormation expression (a Ref, a GetAtt) its deployed length is not known yet, so it is counted as the
longest it can be (``_deployed_length``), which makes each measure an upper bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import constants
from infra.configuration import ConfigError, load_connections
from infra.connections import WRITE_LANES, connections_path
from tests.infra.conftest import Synthesized, synthesize

COUNT = 1000
STACK = "ReportRelayThousand"
SECRETS_PREFIX = "reportrelay/connections/"
#: CloudFormation: resources, outputs and parameters per template; a template body read from S3.
MAX_RESOURCES = 500
MAX_OUTPUTS = 200
MAX_PARAMETERS = 200
MAX_TEMPLATE_BYTES = 1024 * 1024
#: Lambda: all of a function's environment variables, names and values.
MAX_ENVIRONMENT_BYTES = 4096
#: IAM: all inline policies of one role, whitespace not counted.
MAX_ROLE_POLICY_CHARS = 10240
#: SSM: a standard parameter's value.
MAX_PARAMETER_VALUE_BYTES = 4096
#: The longest a deployed GetAtt Arn can be (a Lambda function's ARN with a 64-character name is about
#: 140 characters; tables', keys', queues' and secrets' are shorter), and the pseudo parameters.
LONGEST_ARN = 160
PSEUDO = {"AWS::Region": 14, "AWS::AccountId": 12, "AWS::Partition": 10, "AWS::URLSuffix": 16}
#: A Ref's value at its longest, by resource type, from its generated name's length (CloudFormation names
#: a resource "<stack>-<logical id>-<12 random characters>", cut to what the service allows).
ARN_PREFIX = 64  # "arn:aws-us-gov:states:ap-southeast-2:123456789012:stateMachine:" and the like


def _ref_length(template: dict[str, Any], logical_id: str) -> int:
    if logical_id in PSEUDO:
        return PSEUDO[logical_id]
    if logical_id == "AWS::StackName":
        return len(STACK)
    resource = template["Resources"][logical_id]
    generated = len(STACK) + len(logical_id) + 14
    named = resource.get("Properties", {})
    literal = next(
        (value for key, value in named.items() if key.endswith("Name") and isinstance(value, str)), None
    )
    name = len(literal) if literal is not None else generated
    return {
        "AWS::Lambda::Function": min(name, 64),
        "AWS::S3::Bucket": min(name, 63),
        "AWS::DynamoDB::Table": min(name, 255),
        "AWS::StepFunctions::StateMachine": ARN_PREFIX + min(name, 80),
        "AWS::Events::EventBus": min(name, 256),
        "AWS::KMS::Key": 36,
        "AWS::SecretsManager::Secret": ARN_PREFIX + min(name, 512) + 7,
        "AWS::SQS::Queue": 48 + min(name, 80),
        "AWS::ApiGateway::RestApi": 10,
    }.get(resource["Type"], 256)


def _connection(index: int) -> dict[str, Any]:
    """One vendor account, as a real file would have it: its own host, secret, teams and poll policy."""
    name = f"acme-{index:04d}"
    return {
        "provider": "devexpress",
        "base_url": f"https://reports-{index:04d}.acme.example",
        "auth": {
            "type": "oauth_password",
            "username": f"api-{index:04d}",
            "password": {"secret": f"{SECRETS_PREFIX}{name}", "key": "password"},
        },
        "teams": [f"team-{index % 50:02d}", "finance"],
        "poll": {"initial_seconds": 5, "max_seconds": 300},
        "max_concurrent_jobs": 2 + index % 3,
        "share_links": index % 2 == 0,
    }


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    directory = tmp_path_factory.mktemp("cdk.out.thousand")
    connections_file = directory.parent / "thousand-connections.json"
    document = {"connections": {f"acme-{index:04d}": _connection(index) for index in range(COUNT)}}
    connections_file.write_text(json.dumps(document), encoding="utf-8")
    return synthesize(
        directory,
        stackName=STACK,
        connectionsFile=str(connections_file),
        schedulesFile=str(directory.parent / "no-schedules.json"),
        connectionSecretsPrefix=SECRETS_PREFIX,
    )


def _deployed_length(template: dict[str, Any], value: Any) -> int:
    """The characters ``value`` takes once deployed, whitespace aside; expressions at their longest."""
    if isinstance(value, str):
        return len("".join(value.split()))
    if isinstance(value, list):
        return 2 + sum(_deployed_length(template, item) for item in value) + max(0, len(value) - 1)
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return _ref_length(template, value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            return LONGEST_ARN
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            joined = sum(_deployed_length(template, part) for part in parts)
            return joined + len(separator) * max(0, len(parts) - 1)
        if set(value) == {"Fn::Select"} or set(value) == {"Fn::Split"}:
            return LONGEST_ARN
        items = value.items()
        return 2 + sum(len(json.dumps(key)) + 1 + _deployed_length(template, item) for key, item in items)
    return len(json.dumps(value))


def _templates(synthesized: Synthesized) -> dict[str, Path]:
    main = synthesized.template_file
    nested = sorted(synthesized.directory.glob(f"{synthesized.stack_name}*.nested.template.json"))
    return {path.name: path for path in (main, *nested)}


def test_a_thousand_connections_are_a_thousand_parameters_each_within_ssm_limits(
    thousand: Synthesized,
) -> None:
    # given 1,000 connections / then each is one standard String parameter under the stack's path
    parameters = thousand.connection_parameters()
    path = connections_path(STACK)
    assert sorted(parameters) == [f"{path}/acme-{index:04d}" for index in range(COUNT)]
    for name, value in parameters.items():
        assert len(value.encode()) <= MAX_PARAMETER_VALUE_BYTES, name
        assert json.loads(value) == _connection(int(name.rsplit("-", 1)[1]))
    # spread over several nested stacks, the main stack holding none itself
    assert len(thousand.nested_templates()) > 1
    assert not thousand.resources("AWS::SSM::Parameter")
    # and in each nested stack CloudFormation writes at most WRITE_LANES of them at once (the others wait
    # for one written before them), so a first deploy does not meet SSM's throttling all at once
    for name, template in thousand.nested_templates().items():
        first = [each for each in template["Resources"].values() if not each.get("DependsOn")]
        assert len(first) == WRITE_LANES, name


def test_every_template_stays_within_cloudformations_limits(thousand: Synthesized) -> None:
    for name, path in _templates(thousand).items():
        # given each template CloudFormation is handed (the main one and each nested one)
        template = json.loads(path.read_text(encoding="utf-8"))
        # then it has at most 500 resources, 200 outputs and 200 parameters, and its body fits in 1 MB
        assert len(template["Resources"]) <= MAX_RESOURCES, (name, len(template["Resources"]))
        assert len(template.get("Outputs", {})) <= MAX_OUTPUTS, name
        assert len(template.get("Parameters", {})) <= MAX_PARAMETERS, name
        assert path.stat().st_size <= MAX_TEMPLATE_BYTES, (name, path.stat().st_size)


def test_every_function_environment_fits_in_4_kb(thousand: Synthesized) -> None:
    for logical_id, function in thousand.resources("AWS::Lambda::Function").items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        # given each function's environment / then no connection is in it, and it fits in Lambda's 4 KB
        assert "REPORTRELAY_CONNECTIONS" not in variables
        size = sum(len(key) + _deployed_length(thousand.template, value) for key, value in variables.items())
        assert size <= MAX_ENVIRONMENT_BYTES, (logical_id, size)


def _role_policy_sizes(synthesized: Synthesized) -> dict[str, int]:
    """Role -> the characters of all its inline policies, deployed, whitespace aside."""
    per_role: dict[str, int] = {}
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        size = _deployed_length(synthesized.template, policy["Properties"]["PolicyDocument"])
        for role in policy["Properties"]["Roles"]:
            per_role[role["Ref"]] = per_role.get(role["Ref"], 0) + size
    for logical_id, role in synthesized.resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            size = _deployed_length(synthesized.template, policy["PolicyDocument"])
            per_role[logical_id] = per_role.get(logical_id, 0) + size
    return per_role


def test_every_roles_policies_fit_in_iams_limit(thousand: Synthesized) -> None:
    # given every inline policy of every role / then each role's together stay within IAM's 10,240 characters
    sizes = _role_policy_sizes(thousand)
    assert sizes and all(size <= MAX_ROLE_POLICY_CHARS for size in sizes.values()), sizes


def test_as_many_secrets_as_may_be_granted_by_name_fit_in_iams_limit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # given the most connections synthesis grants secret by secret (no prefix setting), each its own secret
    directory = tmp_path_factory.mktemp("cdk.out.by-name")
    connections_file = directory.parent / "by-name-connections.json"
    count = constants.MAX_EXACT_SECRET_GRANTS
    document = {"connections": {f"acme-{index:04d}": _connection(index) for index in range(count)}}
    connections_file.write_text(json.dumps(document), encoding="utf-8")
    synthesized = synthesize(
        directory,
        stackName=STACK,
        connectionsFile=str(connections_file),
        schedulesFile=str(directory.parent / "no-schedules.json"),
    )
    # then every role's policies still fit in IAM's 10,240 characters
    sizes = _role_policy_sizes(synthesized)
    assert max(sizes.values()) <= MAX_ROLE_POLICY_CHARS, sizes


def test_the_secrets_are_granted_by_their_prefix_in_one_statement(thousand: Synthesized) -> None:
    # given the 1,000 secrets, all named under the prefix / then a provider function reads them with one
    # grant on the prefix, none by name (the API's grant is the stack's own share-link key)
    statements = [
        statement
        for policy in thousand.resources("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"])
        and "Ref" not in statement["Resource"]
    ]
    assert statements
    for statement in statements:
        assert json.dumps(statement["Resource"]).endswith(f':secret:{SECRETS_PREFIX}*"]]}}'), statement


def test_a_secret_outside_the_prefix_stops_synthesis_naming_the_field(tmp_path: Path) -> None:
    # given the setting and a connection whose secret is named elsewhere
    connections = {"connections": {"acme-0001": _connection(1)}}
    connections["connections"]["acme-0001"]["auth"]["password"]["secret"] = "elsewhere/acme"
    path = tmp_path / "connections.json"
    path.write_text(json.dumps(connections), encoding="utf-8")
    # when the connections are loaded as synthesis does / then the error names the file, field and setting
    with pytest.raises(ConfigError) as error:
        load_connections(path, secrets_prefix=SECRETS_PREFIX)
    message = str(error.value)
    assert str(path) in message and "connections.acme-0001.auth.password" in message
    assert "connectionSecretsPrefix" in message and "elsewhere/acme" in message


def test_too_many_secrets_granted_by_name_stop_synthesis_saying_what_to_set(tmp_path: Path) -> None:
    # given more secrets than a role's policy holds by name, and no prefix setting
    count = constants.MAX_EXACT_SECRET_GRANTS + 1
    path = tmp_path / "connections.json"
    document = {"connections": {f"acme-{index:04d}": _connection(index) for index in range(count)}}
    path.write_text(json.dumps(document), encoding="utf-8")
    # then synthesis stops, saying which setting to use
    with pytest.raises(ConfigError, match="reportrelay:connectionSecretsPrefix"):
        load_connections(path)


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("acme dx", {}, "connections.acme dx: a deployed connection's name may hold only"),
        (
            "acme-big",
            {"redirect_hosts": [f"files-{index:04d}.acme.example" for index in range(200)]},
            "connections.acme-big takes",
        ),
    ],
)
def test_a_connection_that_cannot_be_a_parameter_stops_synthesis(
    tmp_path: Path, name: str, body: dict[str, Any], expected: str
) -> None:
    # given a connection whose name SSM refuses, or whose body is over 4 KB
    path = tmp_path / "connections.json"
    connection = {**_connection(1), **body}
    path.write_text(json.dumps({"connections": {name: connection}}), encoding="utf-8")
    # then synthesis stops naming the file and the connection
    with pytest.raises(ConfigError) as error:
        load_connections(path, secrets_prefix=SECRETS_PREFIX)
    assert str(path) in str(error.value) and expected in str(error.value)
