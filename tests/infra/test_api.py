"""The job API construct (infra/api.py), wired as docs tell the stack to wire it, synthesized with cdk-nag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint_file

from infra.api import STAGE_NAME, add_job_api
from infra.bundling import function_code
from infra.configuration import load_connections
from infra.settings import Settings
from infra.stack import ReportRelayStack
from reportrelay import jobs
from tests.infra.conftest import CDK_CONTEXT


class StackWithJobApi(ReportRelayStack):
    """The stack plus the one call that adds the job API (what stack.py would do)."""

    def __init__(self, scope: App, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id, settings=settings)
        self.job_api = add_job_api(
            self,
            settings=settings,
            code=function_code(install_dependencies=settings.bundle),
            connections=load_connections(settings.connections_file),
            storage=self.storage,
            events_=self.events,
            workflow=self.workflow,
            schedules=self.schedules,
        )


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The stack with the job API, synthesized with cdk-nag on: an unacknowledged finding fails it."""
    directory = tmp_path_factory.mktemp("cdk.out.api")
    app = App(context={**CDK_CONTEXT, "reportrelay:bundle": False}, outdir=str(directory))
    settings = Settings.from_context(app)
    StackWithJobApi(app, "ReportRelayApi", settings=settings)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    (stack,) = app.synth().stacks
    return stack.template, directory / "ReportRelayApi.template.json"


@pytest.fixture(scope="module")
def template(synthesized: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    return synthesized[0]


def test_cfn_lint_finds_nothing(synthesized: tuple[dict[str, Any], Path]) -> None:
    assert [str(match) for match in lint_file(synthesized[1])] == []


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def test_every_method_requires_iam_and_the_routes_are_the_documents(template):
    methods = resources(template, "AWS::ApiGateway::Method")
    assert {method["Properties"]["AuthorizationType"] for method in methods.values()} == {"AWS_IAM"}
    assert sorted(method["Properties"]["HttpMethod"] for method in methods.values()) == sorted(
        ["POST", "GET", "GET", "DELETE", "GET"]
    )
    assert all(method["Properties"].get("RequestValidatorId") for method in methods.values())
    document = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert len(methods) == sum(len(operations) for operations in document["paths"].values())


def test_the_stage_logs_access_throttles_and_traces(template):
    (stage,) = resources(template, "AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    assert properties["StageName"] == STAGE_NAME and properties["TracingEnabled"] is True
    assert "DestinationArn" in properties["AccessLogSetting"]
    (settings,) = properties["MethodSettings"]
    assert settings["ThrottlingRateLimit"] > 0 and settings["DataTraceEnabled"] is False


def test_the_job_table_has_the_layout_the_store_reads(template):
    tables = [
        table
        for table in resources(template, "AWS::DynamoDB::Table").values()
        if "GlobalSecondaryIndexes" in table["Properties"]
    ]
    (table,) = tables
    expected = jobs.create_table_request("x")
    properties = table["Properties"]
    assert properties["KeySchema"] == expected["KeySchema"]
    assert {index["IndexName"]: index["KeySchema"] for index in properties["GlobalSecondaryIndexes"]} == {
        index["IndexName"]: index["KeySchema"] for index in expected["GlobalSecondaryIndexes"]
    }
    assert properties["TimeToLiveSpecification"] == {"AttributeName": jobs.TTL_ATTRIBUTE, "Enabled": True}


def test_the_functions_get_the_settings_the_code_reads(template):
    functions = resources(template, "AWS::Lambda::Function")
    by_handler = {
        fn["Properties"]["Handler"]: fn["Properties"].get("Environment", {}).get("Variables", {})
        for fn in functions.values()
    }
    api = by_handler["reportrelay.handlers.api.handler"]
    for name in (
        "REPORTRELAY_JOBS_TABLE",
        "REPORTRELAY_STATE_MACHINE_ARN",
        "REPORTRELAY_EVENT_BUS",
        "REPORTRELAY_API_URL",
        "REPORTRELAY_CONNECTIONS",
    ):
        assert name in api, name
    assert "REPORTRELAY_API_URL" in by_handler["reportrelay.handlers.conclude.handler"]
    for handler in ("submit", "check", "fetch", "conclude", "start_scheduled"):
        assert "REPORTRELAY_JOBS_TABLE" in by_handler[f"reportrelay.handlers.{handler}.handler"], handler
