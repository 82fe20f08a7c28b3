"""The job API in the stack: IAM on every route, the routes of the document, its table, its settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra import constants
from infra.api import JOB_ROUTES, STAGE_NAME
from reportrelay import jobs, names
from tests.infra.conftest import (
    ALLOWED_ACCOUNTS,
    ORGANIZATION_ID,
    Synthesized,
    environment,
    job_table,
    references,
    rest_api,
    routes,
)
from tests.infra.policies import function_id

DOCUMENT = constants.REPO_ROOT / "docs" / "openapi.json"
API = "reportrelay.handlers.api.handler"
CONCLUDE = "reportrelay.handlers.conclude.handler"
CANCEL = "reportrelay.handlers.cancel.handler"


def test_every_iam_api_method_requires_iam_and_proxies_to_the_api_function(synthesized: Synthesized) -> None:
    # given the IAM API's deployed methods
    deployed = routes(synthesized, "jobs")
    # then they are the job routes, share links' minting and revoking included
    assert set(deployed) == set(JOB_ROUTES)
    assert {("POST", "/reports/{job_id}/links"), ("DELETE", "/reports/{job_id}/links/{link_id}")} <= set(
        deployed
    )
    # and every one of them requires SigV4 (AWS_IAM), validates the request first, and is a proxy to the
    # API function
    for method in deployed.values():
        assert method["AuthorizationType"] == "AWS_IAM"
        assert method["RequestValidatorId"]
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert function_id(synthesized, API) in references(integration["Uri"])


def test_every_documented_operation_is_deployed(synthesized: Synthesized) -> None:
    # given the committed OpenAPI document (generated from the function's routes)
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    documented = {(verb.upper(), path) for path, verbs in document["paths"].items() for verb in verbs}
    # then API Gateway routes each of its operations, on the IAM API or (browser-only ones) the people API
    deployed = set(routes(synthesized, "jobs")) | set(routes(synthesized, "people"))
    assert documented <= deployed


def test_the_stages_log_access_throttle_and_trace(synthesized: Synthesized) -> None:
    # given the two APIs' stages (IAM API, people API) / then each is v1, logged, throttled and traced
    stages = synthesized.resources("AWS::ApiGateway::Stage").values()
    assert len(stages) == 2
    log_groups = set()
    for stage in stages:
        properties = stage["Properties"]
        assert properties["StageName"] == STAGE_NAME and properties["TracingEnabled"] is True
        log_groups |= references(properties["AccessLogSetting"]["DestinationArn"])
        (settings,) = properties["MethodSettings"]
        assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (20, 40)
        assert settings["DataTraceEnabled"] is False  # would log request and response bodies
        assert settings["LoggingLevel"] == "ERROR"
    # each API with its own access log
    assert len({ref for ref in log_groups if not ref.startswith("AWS::")}) == 2


def test_gateway_errors_have_the_apis_error_shape(synthesized: Synthesized) -> None:
    # given API Gateway's own answers (an unsigned request, throttling) / then they are {"code", "message"}
    jobs_api, _ = rest_api(synthesized, "jobs")
    responses = synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    assert len(responses) == 8  # the same four on the people API
    by_type = {
        response["Properties"]["ResponseType"]: response["Properties"]
        for response in responses
        if references(response["Properties"]["RestApiId"]) == {jobs_api}
    }
    assert set(by_type) == {"DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS"}
    for response in by_type.values():
        template = response["ResponseTemplates"]["application/json"]
        assert '"code"' in template and '"message"' in template
    # and what API Gateway's validator refuses is a 400 whose message is the validator's, naming the field
    for kind in ("BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS"):
        assert (
            "$context.error.validationErrorString" in by_type[kind]["ResponseTemplates"]["application/json"]
        )


def test_the_job_table_has_an_index_per_team(synthesized: Synthesized) -> None:
    # given the job table / then the listing of a team's jobs reads its own index, newest first
    _, table = job_table(synthesized)
    indexes = {index["IndexName"]: index for index in table["Properties"]["GlobalSecondaryIndexes"]}
    assert indexes[names.TEAM_INDEX]["KeySchema"] == [
        {"AttributeName": names.JOB_TEAM_ATTRIBUTE, "KeyType": "HASH"},
        {"AttributeName": names.JOB_CREATED_ATTRIBUTE, "KeyType": "RANGE"},
    ]
    assert indexes[names.TEAM_INDEX]["Projection"] == {"ProjectionType": "ALL"}
    assert set(indexes) == {"recent", "by-connection", "by-team", "outbox"}


def test_the_job_table_has_a_sparse_outbox_index_of_pending_announcements(synthesized: Synthesized) -> None:
    # given the job table's outbox index (reportrelay.outbox)
    _, table = job_table(synthesized)
    (outbox,) = [
        index for index in table["Properties"]["GlobalSecondaryIndexes"] if index["IndexName"] == "outbox"
    ]
    # then it is keyed by attributes only a pending announcement has, oldest first
    assert outbox["KeySchema"] == [
        {"AttributeName": names.OUTBOX_ATTRIBUTE, "KeyType": "HASH"},
        {"AttributeName": names.ANNOUNCE_SINCE_ATTRIBUTE, "KeyType": "RANGE"},
    ]
    # and it projects what an announcement needs, not whole jobs, exactly as the local table does
    assert outbox["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": list(names.OUTBOX_PROJECTED),
    }
    (local,) = [
        index
        for index in jobs.create_table_request("x")["GlobalSecondaryIndexes"]
        if index["IndexName"] == "outbox"
    ]
    assert local["Projection"] == outbox["Projection"]


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
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": names.JOB_TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"


def api_url_of(url: Any, rest_api_id: str) -> bool:
    """``url`` is ``https://<rest api id>.execute-api.<region>.<suffix>/v1``, built from the id alone."""
    return (
        references(url) == {rest_api_id, "AWS::Region", "AWS::URLSuffix"}
        and url["Fn::Join"][1][-1] == f"/{STAGE_NAME}"
    )


def test_the_functions_get_the_settings_the_code_reads(synthesized: Synthesized) -> None:
    jobs_table, _ = job_table(synthesized)
    jobs_api, _ = rest_api(synthesized, "jobs")
    people_api, _ = rest_api(synthesized, "people")
    machine, _ = synthesized.resource("AWS::StepFunctions::StateMachine")
    api = environment(synthesized, API)
    # the API: its table, the state machine it starts, the bus it announces on, its URLs, where the
    # connections are (their SSM path, never the connections themselves),
    # the function that cancels at the provider
    assert references(api["REPORTRELAY_JOBS_TABLE"]) == {jobs_table}
    assert references(api["REPORTRELAY_STATE_MACHINE_ARN"]) == {machine}
    assert "REPORTRELAY_EVENT_BUS" in api and "REPORTRELAY_CONNECTIONS" not in api
    assert api["REPORTRELAY_CONNECTIONS_PATH"] == f"/reportrelay/{synthesized.stack_name}/connections"
    assert api["REPORTRELAY_DOWNLOAD_URL_SECONDS"] == "300"
    assert api_url_of(api["REPORTRELAY_API_URL"], jobs_api)
    assert api_url_of(api["REPORTRELAY_PEOPLE_URL"], people_api)
    assert api["REPORTRELAY_CANCEL_FUNCTION"] == {"Ref": function_id(synthesized, CANCEL)}
    # conclude links its events to the people API's download route (a person can click it), both URLs
    # built from the RestApis' ids (no dependency cycle through the deployments)
    conclude = environment(synthesized, CONCLUDE)
    assert api_url_of(conclude["REPORTRELAY_API_URL"], jobs_api)
    assert api_url_of(conclude["REPORTRELAY_PEOPLE_URL"], people_api)
    # and every function that records jobs knows the table, and so does cancel, which reads them
    for handler in ("submit", "check", "fetch", "conclude", "start_scheduled", "cancel"):
        variables = environment(synthesized, f"reportrelay.handlers.{handler}.handler")
        assert references(variables["REPORTRELAY_JOBS_TABLE"]) == {jobs_table}, handler


def test_the_stack_outputs_the_api_urls(synthesized: Synthesized) -> None:
    outputs = synthesized.template["Outputs"]
    jobs_api, _ = rest_api(synthesized, "jobs")
    people_api, _ = rest_api(synthesized, "people")
    assert api_url_of(outputs["ApiUrl"]["Value"], jobs_api)
    assert api_url_of(outputs["PeopleUrl"]["Value"], people_api)
    pool, _ = synthesized.resource("AWS::Cognito::UserPool")
    assert outputs["UserPoolId"]["Value"] == {"Ref": pool}
    assert "JobsTableName" in outputs
    # and only once (RestApi's own auto-named Endpoint outputs are removed)
    assert [name for name in outputs if name.startswith(("JobApi", "People"))] == ["PeopleUrl"]


def test_the_download_link_lifetime_and_throttling_are_settings(hardened: Synthesized) -> None:
    api = environment(hardened, API)
    assert api["REPORTRELAY_DOWNLOAD_URL_SECONDS"] == "60"
    for stage in hardened.resources("AWS::ApiGateway::Stage").values():
        (settings,) = stage["Properties"]["MethodSettings"]
        assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (5, 10)


def test_the_document_names_the_stage_the_stack_deploys() -> None:
    document = json.loads(Path(DOCUMENT).read_text(encoding="utf-8"))
    (server,) = document["servers"]
    assert server["variables"]["stage"]["default"] == STAGE_NAME


def test_without_the_setting_the_iam_api_has_no_resource_policy(synthesized: Synthesized) -> None:
    # given no reportrelay:apiAllowedAccounts or apiOrganizationId / then the callers' own IAM decides
    _, api = rest_api(synthesized, "jobs")
    assert "Policy" not in api["Properties"]


def test_the_iam_api_admits_only_principals_of_the_listed_accounts_or_organization(
    hardened: Synthesized,
) -> None:
    # given reportrelay:apiAllowedAccounts=111122223333,444455556666 and apiOrganizationId=o-a1b2c3d4e5
    _, api = rest_api(hardened, "jobs")
    statements = {s["Sid"]: s for s in api["Properties"]["Policy"]["Statement"]}
    accounts = list(ALLOWED_ACCOUNTS)
    # then principals of those accounts may invoke it, and principals of that organization
    assert statements["AllowPrincipalAccount"] == {
        "Sid": "AllowPrincipalAccount",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "execute-api:Invoke",
        "Resource": "execute-api:/*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": accounts}},
    }
    assert statements["AllowPrincipalOrgID"]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": ORGANIZATION_ID}
    }
    # and everyone else is denied, whatever their own policies allow: the Deny needs both to mismatch
    deny = statements["DenyOthers"]
    assert (deny["Effect"], deny["Principal"], deny["Action"], deny["Resource"]) == (
        "Deny",
        {"AWS": "*"},
        "execute-api:Invoke",
        "execute-api:/*",
    )
    assert deny["Condition"] == {
        "StringNotEquals": {"aws:PrincipalAccount": accounts, "aws:PrincipalOrgID": ORGANIZATION_ID}
    }
    # and the people API, which browsers reach unsigned, has no such policy (its function verifies people)
    _, people = rest_api(hardened, "people")
    assert "Policy" not in people["Properties"]
