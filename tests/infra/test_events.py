"""The event bus, and the JSON Schemas of its events checked against events the workflow really sends."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from infra import constants
from reportrelay import outbox
from reportrelay_cli.local.aws import LocalAws
from reportrelay_cli.local.runner import run_job
from tests.conftest import devexpress_on_local_aws
from tests.infra.conftest import Synthesized

SCHEMAS = {
    detail_type: json.loads((constants.SCHEMAS_DIR / file).read_text(encoding="utf-8"))
    for detail_type, file in constants.SCHEMA_FILES.items()
}


def validator(detail_type: str) -> Draft4Validator:
    return Draft4Validator(SCHEMAS[detail_type], format_checker=FormatChecker())


def problems(event: dict[str, Any]) -> list[str]:
    return [error.message for error in validator(event["detail-type"]).iter_errors(event)]


@pytest.fixture(scope="module")
def emulated_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    """reportrelay on emulated AWS (the real ASL file on moto), fetching from the DevExpress simulator."""
    with devexpress_on_local_aws(tmp_path_factory.mktemp("events"), "dx") as aws:
        yield aws


@pytest.fixture(scope="module")
def real_events(emulated_aws: LocalAws) -> dict[str, dict[str, Any]]:
    """One Report Ready and one Report Failed event, from jobs run through the workflow."""
    ready = run_job(emulated_aws, {"connection": "dx", "report": {"document_id": 10}, "format": "pdf"})
    failed = run_job(emulated_aws, {"connection": "dx", "report": {"document_id": 999999}, "format": "pdf"})
    assert (ready.detail_type, failed.detail_type) == (
        constants.DETAIL_TYPE_READY,
        constants.DETAIL_TYPE_FAILED,
    )
    return {event["detail-type"]: event for event in emulated_aws.events()}


def test_the_bus_is_named_reportrelay_unless_configured_otherwise(
    synthesized: Synthesized, hardened: Synthesized
) -> None:
    _, bus = synthesized.resource("AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == constants.DEFAULT_EVENT_BUS_NAME
    _, other = hardened.resource("AWS::Events::EventBus")
    assert other["Properties"]["Name"] == "reports-test"


def test_the_schema_files_are_deployed_to_the_schema_registry(synthesized: Synthesized) -> None:
    # given the schemas deployed next to the bus
    deployed = {
        schema["Properties"]["SchemaName"]: schema["Properties"]
        for schema in synthesized.resources("AWS::EventSchemas::Schema").values()
    }
    # then each file is deployed as it is, named <source>@<DetailType>
    assert set(deployed) == {"reportrelay@ReportReady", "reportrelay@ReportFailed"}
    for detail_type, schema in SCHEMAS.items():
        properties = deployed[f"reportrelay@{detail_type.replace(' ', '')}"]
        assert properties["Type"] == "JSONSchemaDraft4"
        assert json.loads(properties["Content"]) == schema


@pytest.mark.parametrize("detail_type", list(SCHEMAS))
def test_each_schema_is_valid_draft_4_and_names_its_source_and_detail_type(detail_type: str) -> None:
    Draft4Validator.check_schema(SCHEMAS[detail_type])
    properties = SCHEMAS[detail_type]["properties"]
    assert properties["source"]["enum"] == [constants.EVENT_SOURCE]
    assert properties["detail-type"]["enum"] == [detail_type]


def test_the_outbox_announces_with_the_source_the_schemas_name() -> None:
    # given what announces every outcome (reportrelay.outbox; the ASL puts no events itself)
    states = json.loads(constants.STATE_MACHINE_FILE.read_text(encoding="utf-8"))["States"]
    assert not [state for state in states.values() if "events:" in state.get("Resource", "")]
    # then its source is the schemas' source
    assert outbox.EVENT_SOURCE == constants.EVENT_SOURCE


@pytest.mark.parametrize("detail_type", list(SCHEMAS))
def test_real_events_match_their_schema(real_events: dict[str, dict[str, Any]], detail_type: str) -> None:
    # given an event the workflow put on the (emulated) bus at the end of a real job
    event = real_events[detail_type]
    # then it matches its schema
    assert problems(event) == []


def test_the_schemas_tell_a_ready_event_from_a_failed_one(real_events: dict[str, dict[str, Any]]) -> None:
    # given real events altered the way a regression would alter them
    ready = copy.deepcopy(real_events[constants.DETAIL_TYPE_READY])
    failed = copy.deepcopy(real_events[constants.DETAIL_TYPE_FAILED])
    no_object = copy.deepcopy(ready)
    no_object["detail"]["object"] = None
    bad_digest = copy.deepcopy(ready)
    bad_digest["detail"]["object"]["sha256"] = "not-a-digest"
    extra_field = copy.deepcopy(ready)
    extra_field["detail"]["secret"] = "leaked"
    failed_without_error = copy.deepcopy(failed)
    failed_without_error["detail"]["error"] = None
    failed_with_object = copy.deepcopy(failed)
    failed_with_object["detail"]["object"] = ready["detail"]["object"]

    # then each is refused
    for broken in (no_object, bad_digest, extra_field, failed_without_error, failed_with_object):
        assert problems(broken) != []


def test_a_ready_event_links_to_the_job_apis_download_route(real_events: dict[str, dict[str, Any]]) -> None:
    # given the events of a deployment with the job API (LocalAws sets REPORTRELAY_API_URL as CDK does)
    ready = real_events[constants.DETAIL_TYPE_READY]["detail"]
    failed = real_events[constants.DETAIL_TYPE_FAILED]["detail"]
    # then a ready report's event links to GET /reports/{id}/download, which signs a fresh S3 URL per
    # request, and a failed job's has nothing to link to
    assert ready["download_url"].endswith(f"/reports/{ready['job_id']}/download")
    assert ready["download_url"].startswith("https://")
    assert failed["download_url"] is None
    # and the schemas describe the field
    for detail_type, definition in (
        (constants.DETAIL_TYPE_READY, "ReportReadyDetail"),
        (constants.DETAIL_TYPE_FAILED, "ReportFailedDetail"),
    ):
        assert "download_url" in SCHEMAS[detail_type]["definitions"][definition]["properties"]
