"""The access policy in the stack: config/access.json checked at synthesis, deployed to the API function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import constants
from infra.app import build_app
from infra.configuration import ConfigError, load_access, load_connections, load_schedules
from tests.infra.conftest import CDK_CONTEXT, Synthesized
from tests.infra.policies import function_id

API = "reportrelay.handlers.api.handler"


def api_environment(synthesized: Synthesized) -> dict[str, Any]:
    function = synthesized.template["Resources"][function_id(synthesized, API)]["Properties"]
    variables: dict[str, Any] = function["Environment"]["Variables"]
    return variables


def test_the_api_function_gets_the_access_policy_as_written(synthesized: Synthesized) -> None:
    # given config/access.json / when the app is synthesized
    written = json.loads(constants.ACCESS_FILE.read_text(encoding="utf-8"))
    deployed = json.loads(api_environment(synthesized)["REPORTRELAY_ACCESS"])
    # then the API function reads the same policy: admin team, role mapping, principal tag, groups claim
    assert {key: deployed[key] for key in written} == written
    assert deployed["admin_team"] == "platform"
    # and compactly (Lambda allows 4 KB of environment in all)
    assert " " not in api_environment(synthesized)["REPORTRELAY_ACCESS"].replace("Analysts_*", "")


def synthesize_with_access(directory: Path, document: Any) -> None:
    path = directory / "access.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    context = {**CDK_CONTEXT, "reportrelay:bundle": False, "reportrelay:accessFile": str(path)}
    build_app(context, outdir=str(directory / "cdk.out")).synth()


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        ({"admin_team": "Platform Team"}, "admin_team", "should match pattern"),
        ({"roles": {"arn:aws:iam::123456789012:role/x": ["finance", "Sales"]}}, "roles", "should match"),
        ({"roles": {"arn:aws:iam::123456789012:role/x": "finance"}}, "roles", "tuple"),
        ({"admin": "platform"}, "admin", "Extra inputs are not permitted"),
        ({"principal_tag": ""}, "principal_tag", "at least 1 character"),
    ],
)
def test_a_wrong_access_file_stops_synthesis_naming_the_file_and_the_field(
    tmp_path: Path, document: dict[str, Any], field: str, message: str
) -> None:
    # given an access file with one mistake / when the app is synthesized / then it stops, saying where
    with pytest.raises(ConfigError, match=message) as raised:
        synthesize_with_access(tmp_path, document)
    assert f"{tmp_path / 'access.json'}.{field}" in str(raised.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [('{"admin_team": ', "is not valid JSON"), ('["platform"]', "must be a JSON object")],
)
def test_an_access_file_that_is_no_policy_stops_synthesis_naming_the_file(
    tmp_path: Path, document: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        synthesize_with_access(tmp_path, document)
    assert str(tmp_path / "access.json") in str(raised.value)


def test_a_missing_access_file_stops_synthesis(tmp_path: Path) -> None:
    context = {
        **CDK_CONTEXT,
        "reportrelay:bundle": False,
        "reportrelay:accessFile": str(tmp_path / "nowhere.json"),
    }
    with pytest.raises(ConfigError, match=r"cannot read access file .*nowhere\.json"):
        build_app(context, outdir=str(tmp_path / "cdk.out"))


def test_the_access_policy_must_fit_in_the_api_functions_environment(tmp_path: Path) -> None:
    # given a role mapping of a hundred roles, written out one by one (the connections are not in the
    # environment: they are SSM parameters, infra.connections)
    roles = {f"arn:aws:iam::123456789012:role/reports-reader-{n:03}": ["finance"] for n in range(100)}
    # when the app is synthesized / then it says so, naming the file, rather than failing the deploy
    with pytest.raises(
        ConfigError, match=r"access\.json takes \d+ bytes, more than the 2048 bytes the API function's"
    ):
        synthesize_with_access(tmp_path, {"admin_team": "platform", "roles": roles})


def worked_example() -> list[Any]:
    """The JSON documents of docs/deploy.md's worked example, in order (connections, schedules, access)."""
    text = (constants.REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("#### A worked example", 1)[1].split("\n### ", 1)[0]
    return [json.loads(block.split("```", 1)[0]) for block in section.split("```json\n")[1:]]


def test_the_worked_example_in_deploy_md_synthesizes_and_refuses_what_it_says(tmp_path: Path) -> None:
    # given the example's three files, as docs/deploy.md prints them
    connections_doc, schedules_doc, access_doc = worked_example()
    files = {}
    for name, document in (
        ("connections", connections_doc),
        ("schedules", schedules_doc),
        ("access", access_doc),
    ):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(document), encoding="utf-8")
    # when they are loaded as synthesis loads them / then they are accepted, each schedule for its team
    access = load_access(files["access"])
    connections = load_connections(files["connections"])
    schedules = load_schedules(files["schedules"], connections, access.admin_team)
    assert {schedule.name: schedule.team for schedule in schedules} == {
        "monthly-sales": "sales",
        "monthly-ledger": "finance",
    }
    assert connections.teams | {access.admin_team} == {"finance", "sales", "platform"}
    # and the schedule the example says is refused is refused with the message it shows
    wrong = {"schedules": {"x": {**schedules_doc["schedules"]["monthly-ledger"], "team": "sales"}}}
    files["schedules"].write_text(json.dumps(wrong), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_schedules(files["schedules"], connections, access.admin_team)
    shown = "schedules.x.team: team 'sales' may not use connection 'ledger-dx' (it is shared with finance); "
    assert f"{files['schedules']}: {shown}" in str(raised.value)
