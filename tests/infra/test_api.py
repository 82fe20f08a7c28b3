"""The job API in the stack: IAM on every route, the routes of the document, its table, its settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra import constants
from infra.api import STAGE_NAME
from reportrelay import jobs
from tests.infra.conftest import Synthesized, job_table, references
from tests.infra.policies import function_id

DOCUMENT = constants.REPO_ROOT / "docs" / "openapi.json"
API = "reportrelay.handlers.api.handler"
CONCLUDE = "reportrelay.handlers.conclude.handler"


def environment(synthesized: Synthesized, handler: str) -> dict[str, Any]:
    function = synthesized.template["Resources"][function_id(synthesized, handler)]["Properties"]
    variables: dict[str, Any] = function.get("Environment", {}).get("Variables", {})
    return variables


def resource_paths(synthesized: Synthesized) -> dict[str, str]:
    """Logical id of each API Gateway resource -> its path (``/reports/{job_id}``)."""
    rest_api, _ = synthesized.resource("AWS::ApiGateway::RestApi")
    resources = synthesized.resources("AWS::ApiGateway::Resource")

    def path(logical_id: str) -> str:
        properties = resources[logical_id]["Properties"]
        (parent,) = references(properties["ParentId"])
        prefix = "" if parent == rest_api else path(parent)
        return f"{prefix}/{properties['PathPart']}"

    return {logical_id: path(logical_id) for logical_id in resources}


def test_every_method_requires_iam_and_the_routes_are_the_documents(synthesized: Synthesized) -> None:
    # given the deployed methods and the committed OpenAPI document
    paths = resource_paths(synthesized)
    methods = synthesized.resources("AWS::ApiGateway::Method").values()
    deployed = {
        (
            method["Properties"]["HttpMethod"].lower(),
            paths[references(method["Properties"]["ResourceId"]).pop()],
        )
        for method in methods
    }
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    documented = {(verb, path) for path, verbs in document["paths"].items() for verb in verbs}
    # then API Gateway routes exactly the document's operations to the function
    assert deployed == documented
    # and every one of them requires SigV4 (AWS_IAM) and validates the request first
    for method in methods:
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
        assert method["Properties"]["RequestValidatorId"]
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert function_id(synthesized, API) in references(integration["Uri"])


def test_the_stage_logs_access_throttles_and_traces(synthesized: Synthesized) -> None:
    (stage,) = synthesized.resources("AWS::ApiGateway::Stage").values()
    properties = stage["Properties"]
    assert properties["StageName"] == STAGE_NAME and properties["TracingEnabled"] is True
    assert "DestinationArn" in properties["AccessLogSetting"]
    (settings,) = properties["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (20, 40)
    assert settings["DataTraceEnabled"] is False  # would log request and response bodies
    assert settings["LoggingLevel"] == "ERROR"


def test_gateway_errors_have_the_apis_error_shape(synthesized: Synthesized) -> None:
    # given API Gateway's own answers (an unsigned request, throttling) / then they are {"code", "message"}
    responses = synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    by_type = {response["Properties"]["ResponseType"]: response["Properties"] for response in responses}
    assert set(by_type) == {"DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS"}
    for response in by_type.values():
        template = response["ResponseTemplates"]["application/json"]
        assert '"code"' in template and '"message"' in template
    # and what API Gateway's validator refuses is a 400 whose message is the validator's, naming the field
    for kind in ("BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS"):
        assert (
            "$context.error.validationErrorString" in by_type[kind]["ResponseTemplates"]["application/json"]
        )


def test_the_job_table_has_the_layout_the_store_reads(synthesized: Synthesized) -> None:
    _, table = job_table(synthesized)
    expected = jobs.create_table_request("x")
    properties = table["Properties"]
    assert properties["KeySchema"] == expected["KeySchema"]
    assert {index["IndexName"]: index["KeySchema"] for index in properties["GlobalSecondaryIndexes"]} == {
        index["IndexName"]: index["KeySchema"] for index in expected["GlobalSecondaryIndexes"]
    }
    assert sorted(properties["AttributeDefinitions"], key=str) == sorted(
        expected["AttributeDefinitions"], key=str
    )
    assert properties["TimeToLiveSpecification"] == {"AttributeName": jobs.TTL_ATTRIBUTE, "Enabled": True}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_the_functions_get_the_settings_the_code_reads(synthesized: Synthesized) -> None:
    jobs_table, _ = job_table(synthesized)
    rest_api, _ = synthesized.resource("AWS::ApiGateway::RestApi")
    machine, _ = synthesized.resource("AWS::StepFunctions::StateMachine")
    api = environment(synthesized, API)
    # the API: its table, the state machine it starts, the bus it announces on, its own URL, connections
    assert references(api["REPORTRELAY_JOBS_TABLE"]) == {jobs_table}
    assert references(api["REPORTRELAY_STATE_MACHINE_ARN"]) == {machine}
    assert "REPORTRELAY_EVENT_BUS" in api and "REPORTRELAY_CONNECTIONS" in api
    assert api["REPORTRELAY_DOWNLOAD_URL_SECONDS"] == "300"
    # conclude links its events to the download route, built from the RestApi (no dependency cycle)
    url = environment(synthesized, CONCLUDE)["REPORTRELAY_API_URL"]
    assert rest_api in references(url) and not references(url) - {rest_api, "AWS::Region", "AWS::URLSuffix"}
    assert url["Fn::Join"][1][-1].endswith(f"/{STAGE_NAME}")
    # and every function that records jobs knows the table
    for handler in ("submit", "check", "fetch", "conclude", "start_scheduled"):
        variables = environment(synthesized, f"reportrelay.handlers.{handler}.handler")
        assert references(variables["REPORTRELAY_JOBS_TABLE"]) == {jobs_table}, handler


def test_the_stack_outputs_the_api_url(synthesized: Synthesized) -> None:
    outputs = synthesized.template["Outputs"]
    rest_api, _ = synthesized.resource("AWS::ApiGateway::RestApi")
    assert rest_api in references(outputs["ApiUrl"]["Value"])
    assert "JobsTableName" in outputs
    # and only once (RestApi's own auto-named Endpoint output is removed)
    assert [name for name in outputs if name.startswith("JobApi")] == []


def test_the_download_link_lifetime_and_throttling_are_settings(hardened: Synthesized) -> None:
    api = environment(hardened, API)
    assert api["REPORTRELAY_DOWNLOAD_URL_SECONDS"] == "60"
    (stage,) = hardened.resources("AWS::ApiGateway::Stage").values()
    (settings,) = stage["Properties"]["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (5, 10)


def test_the_document_names_the_stage_the_stack_deploys() -> None:
    document = json.loads(Path(DOCUMENT).read_text(encoding="utf-8"))
    (server,) = document["servers"]
    assert server["variables"]["stage"]["default"] == STAGE_NAME
