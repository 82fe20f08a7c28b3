"""The state machine is the ASL file, wired to the step functions; each function is sized for its step."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from statelint.config import Config
from statelint.linter import Linter
from statelint.problem import ProblemType

from infra import constants
from infra.definition import DefinitionError, definition_from_template, placeholder_resources
from reportrelay import names
from reportrelay.names import CLAIM_KEY_ATTRIBUTE, CLAIM_TTL_ATTRIBUTE
from tests.infra.conftest import Synthesized, claims_table, references
from tests.infra.policies import function_id

ASL_TEXT = constants.STATE_MACHINE_FILE.read_text(encoding="utf-8")
HANDLERS = {
    constants.PLACEHOLDER_SUBMIT: "reportrelay.handlers.submit.handler",
    constants.PLACEHOLDER_CHECK: "reportrelay.handlers.check.handler",
    constants.PLACEHOLDER_FETCH: "reportrelay.handlers.fetch.handler",
    constants.PLACEHOLDER_CONCLUDE: "reportrelay.handlers.conclude.handler",
    constants.PLACEHOLDER_WAIT_FOR_SLOT: "reportrelay.handlers.wait_for_slot.handler",
}
PROVIDER_STEPS = {constants.PLACEHOLDER_SUBMIT, constants.PLACEHOLDER_CHECK, constants.PLACEHOLDER_FETCH}


def state_machine(synthesized: Synthesized) -> dict[str, Any]:
    _, machine = synthesized.resource("AWS::StepFunctions::StateMachine")
    return machine["Properties"]


def function(synthesized: Synthesized, placeholder: str) -> dict[str, Any]:
    return synthesized.template["Resources"][function_id(synthesized, HANDLERS[placeholder])]["Properties"]


def task_timeouts(definition: str) -> dict[str, list[int | str]]:
    """Placeholder of each invoked function -> TimeoutSeconds of every Task state invoking it (a task that
    waits for its token: the path of the wait it is given)."""
    timeouts: dict[str, list[int | str]] = {}
    for state in json.loads(definition)["States"].values():
        name = state.get("Parameters", {}).get("FunctionName", "")
        if state["Type"] == "Task" and name.startswith("${"):
            timeouts.setdefault(name[2:-1], []).append(
                state.get("TimeoutSeconds", state.get("TimeoutSecondsPath"))
            )
    return timeouts


def test_the_deployed_definition_is_the_asl_file(template: dict[str, Any]) -> None:
    # given the synthesized template
    # when the definition is read back out of it
    definition = definition_from_template(template)
    # then it is the file in statemachines/, placeholders and all
    assert definition == ASL_TEXT


def test_each_placeholder_is_filled_with_its_own_function_and_the_bus(synthesized: Synthesized) -> None:
    # given the state machine's substitutions
    substitutions = state_machine(synthesized)["DefinitionSubstitutions"]
    bus, _ = synthesized.resource("AWS::Events::EventBus")

    # then every placeholder of the file is filled, each function ARN by the function with that step's handler
    assert set(substitutions) == set(constants.PLACEHOLDERS)
    for placeholder, handler in HANDLERS.items():
        assert substitutions[placeholder] == {"Fn::GetAtt": [function_id(synthesized, handler), "Arn"]}
    # and the bus is none of them: Conclude announces, from the job table's outbox (reportrelay.outbox)
    assert constants.PLACEHOLDER_EVENT_BUS not in substitutions
    assert "events:putEvents" not in ASL_TEXT
    conclude = function(synthesized, constants.PLACEHOLDER_CONCLUDE)
    assert conclude["Environment"]["Variables"]["REPORTRELAY_EVENT_BUS"] == {"Ref": bus}
    assert {
        name: resource
        for name, resource in placeholder_resources(synthesized.template).items()
        if name != constants.PLACEHOLDER_EVENT_BUS
    } == {
        name: references(value).pop()
        for name, value in substitutions.items()
        if name not in constants.CONTAINER_PLACEHOLDERS
    }
    # and the container task's placeholders are filled too (tests/infra/test_container.py says with what)
    assert all(substitutions[name] != constants.NO_CONTAINER for name in constants.CONTAINER_PLACEHOLDERS)


def test_without_the_container_task_its_states_placeholders_are_inert(hardened: Synthesized) -> None:
    # given a deployment with fetchContainer=false
    substitutions = state_machine(hardened)["DefinitionSubstitutions"]
    # then the FetchInContainer state's placeholders are filled with an inert value, and Fetch is not told
    # of a task, so it never hands a transfer over and that state is never entered
    assert {substitutions[name] for name in constants.CONTAINER_PLACEHOLDERS} == {constants.NO_CONTAINER}
    assert (
        "REPORTRELAY_FETCH_CONTAINER"
        not in function(hardened, constants.PLACEHOLDER_FETCH)["Environment"]["Variables"]
    )


def test_definition_from_template_restores_placeholders_from_join_and_sub() -> None:
    # given templates carrying the definition as Fn::Join and as Fn::Sub, as CDK may write it
    resources = {
        "Submit1": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Handler": HANDLERS["SubmitFunctionArn"]},
        },
        "Bus1": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "reportrelay"}},
    }
    joined = ['{"F": "', {"Fn::GetAtt": ["Submit1", "Arn"]}, '", "B": "', {"Ref": "Bus1"}, '"}']
    subbed = ['{"F": "${Fn}", "B": "${Bus1}"}', {"Fn": {"Fn::GetAtt": ["Submit1", "Arn"]}}]

    # when the definition is rebuilt from each
    for definition in ({"Fn::Join": ["", joined]}, {"Fn::Sub": subbed}):
        template = {
            "Resources": {
                **resources,
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {"DefinitionString": definition},
                },
            }
        }
        # then the references are placeholders again
        assert definition_from_template(template) == '{"F": "${SubmitFunctionArn}", "B": "${EventBusName}"}'


def test_definition_from_template_refuses_a_reference_it_cannot_name() -> None:
    template = {
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": {"Fn::Join": ["", ["{", {"Ref": "Elsewhere"}, "}"]]}},
            }
        }
    }
    with pytest.raises(DefinitionError, match="Elsewhere"):
        definition_from_template(template)


def test_the_deployed_definition_passes_statelint(template: dict[str, Any]) -> None:
    # given the deployed definition with its placeholders filled as CloudFormation would
    definition = definition_from_template(template)
    for placeholder in constants.FUNCTION_PLACEHOLDERS:
        definition = definition.replace(
            "${" + placeholder + "}", f"arn:aws:lambda:eu-west-1:111122223333:function:{placeholder}"
        )
    definition = definition.replace("${EventBusName}", "reportrelay")
    # when statelint checks it (its FLOAT rule wants 2.0 where the ASL, like AWS, accepts 2)
    lenient_on_floats = Config({ProblemType.FLOAT})
    problems = Linter.validate(definition, lenient_on_floats)
    # then it finds nothing, though it does find a state that leads nowhere
    assert problems == []
    broken = json.dumps({**json.loads(definition), "StartAt": "Nowhere"})
    assert Linter.validate(broken, lenient_on_floats) != []


def test_the_workflow_logs_errors_only_without_execution_data_and_is_traced(synthesized: Synthesized) -> None:
    # given the state machine
    properties = state_machine(synthesized)
    # then it logs at ERROR, never execution data (inputs may carry provider messages), and traces with X-Ray
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ERROR"
    assert logging["IncludeExecutionData"] is False
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["StateMachineType"] == "STANDARD"
    # and its log group keeps logs for the configured time, not forever
    (log_group,) = references(logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"])
    assert synthesized.template["Resources"][log_group]["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize("placeholder", list(HANDLERS))
def test_each_function_is_arm_python_traced_and_retains_logs(
    synthesized: Synthesized, placeholder: str
) -> None:
    properties = function(synthesized, placeholder)
    assert properties["Runtime"] == f"python{constants.PYTHON_VERSION}"
    assert properties["Architectures"] == ["arm64"]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    (log_group,) = references(properties["LoggingConfig"]["LogGroup"])
    assert synthesized.template["Resources"][log_group]["Properties"]["RetentionInDays"] == 30
    assert properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == constants.SERVICE


def test_log_retention_follows_its_setting(hardened: Synthesized) -> None:
    # given reportrelay:logRetentionDays=90 / then every log group keeps 90 days
    retentions = {
        group["Properties"]["RetentionInDays"] for group in hardened.resources("AWS::Logs::LogGroup").values()
    }
    assert retentions == {90}


def test_each_function_times_out_within_its_task_and_fetch_gets_fifteen_minutes(
    synthesized: Synthesized,
) -> None:
    # given the Task states of the deployed definition and the functions they invoke
    timeouts = task_timeouts(definition_from_template(synthesized.template))
    assert set(timeouts) == set(HANDLERS)
    # and the job waiting in line for a slot waits on its token for as long as the job says (at most
    # SLOT_WAKE_SECONDS, never past its deadline), not for its function
    assert timeouts.pop(constants.PLACEHOLDER_WAIT_FOR_SLOT) == ["$.job.wait_seconds"]
    for placeholder, task_timeouts_seconds in timeouts.items():
        # then each function is stopped by Lambda well before the state machine stops waiting for it, so no
        # step is given up on while its function still runs (and, say, completes an upload)
        assert function(synthesized, placeholder)["Timeout"] + 10 <= min(task_timeouts_seconds), placeholder
    # and fetch may stream for Lambda's full 15 minutes, with memory to match
    assert function(synthesized, constants.PLACEHOLDER_FETCH)["Timeout"] == 900
    assert function(synthesized, constants.PLACEHOLDER_FETCH)["MemorySize"] >= 1024


def test_connections_are_deployed_as_parameters_and_the_provider_steps_get_only_their_path(
    synthesized: Synthesized,
) -> None:
    # given config/connections.json
    configured = json.loads((constants.REPO_ROOT / "config" / "connections.json").read_text(encoding="utf-8"))
    path = f"/reportrelay/{synthesized.stack_name}/connections"
    # then each connection is one String parameter under the stack's own path, holding its body (secret
    # references only), in a nested stack: the main stack holds none itself
    parameters = synthesized.connection_parameters()
    assert {name: json.loads(value) for name, value in parameters.items()} == {
        f"{path}/{name}": body for name, body in configured["connections"].items()
    }
    assert not synthesized.resources("AWS::SSM::Parameter")
    for template in synthesized.nested_templates().values():
        for resource in template["Resources"].values():
            assert resource["Properties"]["Type"] == "String" and resource["Properties"]["Tier"] == "Standard"
    for placeholder in HANDLERS:
        variables = function(synthesized, placeholder)["Environment"]["Variables"]
        # and no function carries the connections themselves
        assert "REPORTRELAY_CONNECTIONS" not in variables
        if placeholder in PROVIDER_STEPS:
            # and the steps that talk to providers are told where they are, and nothing else of them
            assert variables[names.CONNECTIONS_PATH_ENV] == path
        else:
            assert names.CONNECTIONS_PATH_ENV not in variables


def test_only_fetch_and_conclude_are_told_the_bucket(synthesized: Synthesized) -> None:
    # fetch stores reports; conclude aborts the upload a failed job left open for its next Fetch
    buckets = synthesized.resources("AWS::S3::Bucket")
    for placeholder in HANDLERS:
        variables = function(synthesized, placeholder)["Environment"]["Variables"]
        if placeholder in (constants.PLACEHOLDER_FETCH, constants.PLACEHOLDER_CONCLUDE):
            (bucket,) = references(variables[names.BUCKET_ENV])
            assert bucket in buckets
        else:
            assert names.BUCKET_ENV not in variables


def test_the_claims_table_matches_what_the_claim_store_writes(synthesized: Synthesized) -> None:
    # given the claims table / then its key and TTL are the ones reportrelay.claims writes
    _, table = claims_table(synthesized)
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": CLAIM_KEY_ATTRIBUTE, "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": CLAIM_KEY_ATTRIBUTE, "AttributeType": "S"}
    ]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": CLAIM_TTL_ATTRIBUTE, "Enabled": True}
    # and it costs nothing idle, is encrypted with a KMS key and can be restored to a point in time
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_every_placeholder_in_the_asl_file_is_one_the_stack_fills() -> None:
    # given the ${...} placeholders in statemachines/ (a new one needs its function in infra/workflow.py)
    written = set(re.findall(r"\$\{(\w+)\}", ASL_TEXT))
    # then the stack fills exactly those
    assert written == set(constants.PLACEHOLDERS)
