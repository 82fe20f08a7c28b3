"""cdk-nag (AwsSolutions) and cfn-lint pass on every synthesized variant; acknowledgements explained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_sns as sns

from infra.app import build_app
from infra.nag import MIN_REASON_LENGTH
from tests.infra.conftest import CDK_CONTEXT, Synthesized, cfn_lint

# Every finding the stack accepts, and where. A new acknowledgement must be added here, with its reason
# in the code that makes it: a reviewer sees the whole list in one place.
ACKNOWLEDGED = {
    "AwsSolutions-S1": {"Storage/AccessLogs"},
    "AwsSolutions-L1": {
        "Workflow/SubmitFunction",
        "Workflow/CheckFunction",
        "Workflow/FetchFunction",
        "Workflow/ConcludeFunction",
        "Workflow/WaitForSlotFunction",
        "Workflow/CancelFunction",
        "Schedules/StartScheduledFunction",
        "JobApi/ApiFunction",
        "Announcements/AnnouncePendingFunction",
    },
    "AwsSolutions-IAM5[Resource::*]": {
        "Workflow/SubmitFunctionRole",
        "Workflow/CheckFunctionRole",
        "Workflow/FetchFunctionRole",
        "Workflow/ConcludeFunctionRole",
        "Workflow/WaitForSlotFunctionRole",
        "Workflow/CancelFunctionRole",
        "Schedules/StartScheduledFunctionRole",
        "JobApi/ApiFunctionRole",
        "Announcements/AnnouncePendingFunctionRole",
        "Workflow/StateMachine",
        "Workflow/FetchContainer/Task",  # the Fetch function's role (X-Ray), CDK's log-stream rights
    },
    # The container task's environment names the Fetch function and the bootstrap, nothing secret.
    "AwsSolutions-ECS2": {"Workflow/FetchContainer/Task"},
    # CDK's own acknowledgements, for the container network's flow log and the two AZs it spans.
    "CloudFormation-Validate::F3002": {"ContainerNetwork/Vpc/All"},
    "CloudFormation-Validate::F3003": {"ContainerNetwork/Vpc/All"},
    "CloudFormation-Validate::W3010": {"/ReportRelay"},
    "AwsSolutions-IAM5[Resource::<reports bucket>/*]": {
        "Workflow/FetchFunctionRole",
        "Workflow/ConcludeFunctionRole",  # aborts a failed job's open upload
        "Workflow/CancelFunctionRole",  # aborts a cancelled job's open upload
        "JobApi/ApiFunctionRole",
    },
    "AwsSolutions-IAM5[Resource::<job table>/index/*]": {"JobApi/ApiFunctionRole"},
    # The deployed connections, one SSM parameter each under the stack's own path (infra.connections):
    # read by the functions that talk to providers, and by the API.
    "AwsSolutions-IAM5[Resource::<this stack's connection parameters>]": {
        "Workflow/SubmitFunctionRole",
        "Workflow/CheckFunctionRole",
        "Workflow/FetchFunctionRole",
        "Workflow/CancelFunctionRole",
        "JobApi/ApiFunctionRole",
    },
    "AwsSolutions-IAM5[Resource::<state machine executions>]": {"JobApi/ApiFunctionRole"},
    "AwsSolutions-SF1": {"Workflow/StateMachine"},
    # The schedules' dead-letter queue needs no dead-letter queue of its own.
    "AwsSolutions-SQS3": {"Schedules/DeadLetterQueue"},
    # The API function reads its machine callers' IAM tags (their teams): any role or user may call.
    "AwsSolutions-IAM5[Resource::<this account's roles>]": {"JobApi/ApiFunctionRole"},
    "AwsSolutions-IAM5[Resource::<this account's users>]": {"JobApi/ApiFunctionRole"},
    # The share-link key: rotating it would revoke every live link.
    "AwsSolutions-SMG4": {"JobApi/LinkKey"},
    # The job API: IAM-authorized (no WAF, no Cognito), and API Gateway's account role for its logs.
    # The people API: the function verifies every caller (no authorizer at the gateway, no WAF).
    "AwsSolutions-APIG3": {"JobApi/Api", "People/Api"},
    "AwsSolutions-APIG4": {"People/Api"},
    "AwsSolutions-COG4": {"JobApi/Api", "People/Api"},
    "AwsSolutions-IAM4[AmazonAPIGatewayPushToCloudWatchLogs]": {"JobApi/Api"},
    # The people's user pool: Essentials plan (no paid threat protection), invitation only, MFA.
    "AwsSolutions-COG8": {"People/SignIn/UserPool"},
}


def acknowledgements(synthesized: Synthesized) -> dict[str, dict[str, str]]:
    """Rule -> {construct path under the stack: reason}, as recorded in the cloud assembly."""
    metadata = json.loads((synthesized.directory / f"{synthesized.stack_name}.metadata.json").read_text())
    found: dict[str, dict[str, str]] = {}
    for path, entries in metadata.items():
        for entry in entries:
            if entry["type"] != "aws:cdk:acknowledged-rules":
                continue
            for rule, reason in entry["data"].items():
                rule = rule.removeprefix("Annotation::")
                if rule.startswith("AwsSolutions-IAM5[Resource::<Storage"):
                    rule = "AwsSolutions-IAM5[Resource::<reports bucket>/*]"
                elif rule.startswith("AwsSolutions-IAM5[Resource::<JobApiJobsTable"):
                    rule = "AwsSolutions-IAM5[Resource::<job table>/index/*]"
                elif rule == (
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:"
                    f"parameter/reportrelay/{synthesized.stack_name}/connections/*]"
                ):
                    rule = "AwsSolutions-IAM5[Resource::<this stack's connection parameters>]"
                elif rule.startswith("AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:"):
                    rule = "AwsSolutions-IAM5[Resource::<state machine executions>]"
                elif rule == "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/*]":
                    rule = "AwsSolutions-IAM5[Resource::<this account's roles>]"
                elif rule == "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:user/*]":
                    rule = "AwsSolutions-IAM5[Resource::<this account's users>]"
                elif rule.endswith("/AmazonAPIGatewayPushToCloudWatchLogs]"):
                    rule = "AwsSolutions-IAM4[AmazonAPIGatewayPushToCloudWatchLogs]"
                construct = path.removeprefix(f"/{synthesized.stack_name}/")
                found.setdefault(rule, {})[construct] = reason
    return found


def violations(synthesized: Synthesized) -> list[Any]:
    report = json.loads((synthesized.directory / "validation-report.json").read_text())
    return [violation for plugin in report["pluginReports"] for violation in plugin["violations"]]


def test_cdk_nag_finds_nothing_unacknowledged(synthesized: Synthesized) -> None:
    # given the app synthesized with the AwsSolutions checks (a finding would have failed synthesis)
    # then the validation report holds no violation, not even a warning
    assert violations(synthesized) == []


def test_every_acknowledgement_is_expected_and_gives_a_reason(synthesized: Synthesized) -> None:
    found = acknowledgements(synthesized)
    assert {rule: set(paths) for rule, paths in found.items()} == ACKNOWLEDGED
    for rule, reasons in found.items():
        for path, reason in reasons.items():
            assert len(reason) >= MIN_REASON_LENGTH, f"{rule} at {path}: {reason!r}"


def test_every_variant_passes_cdk_nag(
    hardened: Synthesized, with_holder: Synthesized, without_sign_in: Synthesized
) -> None:
    # given KMS, no access logs, a resource policy, an external identity provider, a holder function and
    # a handle key, no sign-in at all: synthesis succeeded, and
    for variant in (hardened, with_holder, without_sign_in):
        assert violations(variant) == []
    # turning access logs off is acknowledged on the reports bucket itself, with the setting named
    assert "reportrelay:accessLogs=false" in acknowledgements(hardened)["AwsSolutions-S1"]["Storage/Reports"]


def test_cdk_nag_really_runs_on_the_app(tmp_path: Path) -> None:
    # given the app with one construct that breaks an AwsSolutions rule (an unencrypted topic)
    app = build_app({**CDK_CONTEXT, "reportrelay:bundle": False}, outdir=str(tmp_path))
    stack = next(child for child in app.node.children if isinstance(child, Stack))
    sns.Topic(stack, "Careless")
    # when it is synthesized / then synthesis fails and names the rule
    with pytest.raises(Exception, match="AwsSolutions-SNS3"):
        app.synth()


@pytest.mark.parametrize("variant", ["synthesized", "hardened", "with_holder", "without_sign_in"])
def test_cfn_lint_finds_nothing(request: pytest.FixtureRequest, variant: str) -> None:
    synthesized: Synthesized = request.getfixturevalue(variant)
    # the main template, and each nested one (the connections' parameters)
    nested = [synthesized.directory / name for name in synthesized.nested_templates()]
    assert nested, "no nested template: the connections are deployed in nested stacks"
    for template_file in (synthesized.template_file, *nested):
        assert cfn_lint(template_file) == [], template_file.name


def test_cfn_lint_is_silenced_only_for_one_known_false_alarm(synthesized: Synthesized) -> None:
    # given the template / then it silences only W3005 (CDK's DependsOn on roles), template-wide
    assert synthesized.template["Metadata"]["cfn-lint"] == {"config": {"ignore_checks": ["W3005"]}}
    silenced = [
        logical_id
        for logical_id, resource in synthesized.template["Resources"].items()
        if "cfn-lint" in resource.get("Metadata", {})
    ]
    assert silenced == []
