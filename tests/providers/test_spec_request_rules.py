"""Spec fields MyReports brought to the format: settings that are URL paths and have defaults, field rules
with their own words, reports that take no parameters, and how a failed job is told."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from reportrelay.config import JobRequest
from reportrelay.errors import BadRequest, ConfigurationError
from reportrelay.providers.declarative import declarative_class
from reportrelay.providers.spec import SPECS_DIR, PathValue, parse_spec, render


def amazon_document() -> dict[str, Any]:
    return json.loads((SPECS_DIR / "amazon_ads.json").read_text(encoding="utf-8"))


def test_a_path_setting_keeps_its_slashes_and_other_values_stay_one_segment() -> None:
    # given a path setting, an empty one, and the same text as an ordinary value
    template = "{settings.prefix}/v1/{job.id}"
    # when each is rendered into a path
    as_path = render(template, {"settings": {"prefix": PathValue("/api/")}, "job": {"id": "a/b"}}, "segment")
    empty = render(template, {"settings": {"prefix": PathValue("")}, "job": {"id": "x"}}, "segment")
    plain = render(template, {"settings": {"prefix": "/api"}, "job": {"id": "x"}}, "segment")
    # then only the path setting is segments of its own (its trailing "/" dropped)
    assert (as_path, empty, plain) == ("/api/v1/a%2Fb", "/v1/x", "%2Fapi/v1/x")


@pytest.mark.parametrize(
    ("setting", "refused"),
    [({"type": "string", "format": "path", "default": "/api"}, False), ({"type": "string"}, True)],
)
def test_only_a_path_setting_may_start_a_path(setting: dict[str, Any], refused: bool) -> None:
    # given a spec whose check path starts with a setting
    document = copy.deepcopy(amazon_document())
    document["settings"]["prefix"] = setting
    document["check"]["path"] = "{settings.prefix}/reporting/reports/{job.id}"
    # when it is loaded
    if refused:
        with pytest.raises(ConfigurationError) as raised:
            parse_spec(document, "spec.json")
        # then an ordinary setting is refused there, naming the call
        assert "check.path: only a setting of format 'path' may start a path" in str(raised.value)
    else:
        # then a path setting is taken, with its default where the connection has none
        spec = parse_spec(document, "spec.json")
        assert spec.settings_model.model_validate({"profile_id": "1"}).prefix == "/api"  # type: ignore[attr-defined]


def request(report: dict[str, Any], parameters: dict[str, Any] | None = None) -> JobRequest:
    return JobRequest.model_validate(
        {"connection": "c", "report": report, "format": "json", "parameters": parameters or {}}
    )


def rules_spec() -> type:
    """A spec whose rules carry their own messages and whose reports take no parameters."""
    return declarative_class(parse_spec(rules_document(), "spec.json"))


def rules_document() -> dict[str, Any]:
    document: dict[str, Any] = {
        "spec_version": 1,
        "key": "rules_vendor",
        "title": "Rules",
        "auth": ["bearer"],
        "request": {
            "formats": {"json": "json"},
            "report": {
                "code": {"type": "string", "required": True, "pattern": "[A-Z]{3}",
                         "message": "must be three capitals"},
                "window": {"type": "object", "properties": {"from": {"type": "string", "pattern": "[0-9]+",
                                                                     "message": "must be digits"}}},
            },
            "no_parameters": "put filters in report.window",
        },
        "submit": {"path": "/exports", "body": {"code": "{report.code}"}, "id": {"json": "id"}},
        "check": {"path": "/exports/{job.id}", "status": "state",
                  "states": {"done": "READY", "*": "RUNNING"}},
        "download": {"source": "call", "call": {"path": "/exports/{job.id}/file"},
                     "filename": "{job.id}.json"},
    }  # fmt: skip
    return document


@pytest.mark.parametrize(
    ("report", "parameters", "words"),
    [
        ({"code": "abc"}, None, "request.report.code: must be three capitals"),
        ({"code": "ABC", "window": {"from": "x"}}, None, "request.report.window.from: must be digits"),
        (
            {"code": "ABC"},
            {"day": 1},
            "request.parameters: Rules reports take no parameters; put filters in report.window",
        ),
    ],
)
def test_a_broken_rule_is_told_in_the_specs_words(
    report: dict[str, Any], parameters: dict[str, Any] | None, words: str
) -> None:
    # given a spec whose rules carry their own messages and whose reports take no parameters
    provider = rules_spec()
    # when a request breaks one rule
    with pytest.raises(BadRequest) as raised:
        provider.validate(request(report, parameters))
    # then the message names the field in the spec's words
    assert words in str(raised.value)


def test_a_failed_jobs_words_are_the_specs_template_and_the_vendors_message() -> None:
    # given a spec that says how a failed job is told, and one naming an unknown value in it
    document = copy.deepcopy(amazon_document())
    document["check"]["messages"] = {"FAILED": "export {job.id} ended as '{status}'"}
    wrong = copy.deepcopy(document)
    wrong["check"]["messages"] = {"FAILED": "export {status.code}"}
    # when they are loaded
    spec = parse_spec(document, "spec.json")
    with pytest.raises(ConfigurationError) as raised:
        parse_spec(wrong, "spec.json")
    # then the template is kept, and the wrong one is refused naming its place
    assert spec.check is not None and spec.check.messages["FAILED"] == "export {job.id} ended as '{status}'"
    assert "check.messages.FAILED: '{status.code}' is not a known value" in str(raised.value)


FILTER_RULE = {
    "type": "object",
    "properties": {
        "fieldName": {"type": "string", "required": True},
        "fieldType": {"type": "string", "enum": ["list", "date"], "message": "must be one of list, date"},
        "fieldValueList": {"type": "array", "required": True},
    },
}


@pytest.mark.parametrize(
    ("report", "words"),
    [
        ({"filters": []}, "request.report.study: Field required"),
        (
            {"study": None, "filters": [{"fieldName": "site"}]},
            "request.report.filters.0.fieldValueList: Field",
        ),
        (
            {"study": None, "filters": [{"fieldName": "site", "fieldType": "set", "fieldValueList": []}]},
            "request.report.filters.0.fieldType: must be one of list, date",
        ),
    ],
)
def test_a_nullable_field_must_still_be_given_and_array_items_meet_their_rule(
    report: dict[str, Any], words: str
) -> None:
    # given rules for a study that may be null and for a list of filter objects
    document = rules_document()
    document["request"]["report"] = {
        "study": {"type": "string", "required": True, "nullable": True},
        "filters": {"type": "array", "items": FILTER_RULE},
    }
    document["submit"]["body"] = {"filters": "{report.filters}"}
    provider = declarative_class(parse_spec(document, "spec.json"))
    # when a request that is fine, and one with one thing wrong, are validated
    provider.validate(request({"study": None, "filters": [{"fieldName": "a", "fieldValueList": ["1"]}]}))
    with pytest.raises(BadRequest) as raised:
        provider.validate(request(report))
    # then null was a study, and the wrong one is named down to the item's field
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"more_states": "run_statuses"}, "check.more_states: 'run_statuses' is not a declared setting"),
        (
            {"unknown": {"state": "RUNNING", "message": "'{status}'?", "fail_setting": "strict"}},
            "check.unknown.fail_setting: 'strict' is not a declared setting",
        ),
        ({"unknown": {"state": "RUNNING", "message": "{job.nothing}"}}, "check.unknown.message"),
    ],
)
def test_what_an_unknown_status_is_must_name_declared_settings(change: dict[str, Any], words: str) -> None:
    # given a spec whose check reads more states, or says what an unknown one is, from settings it lacks
    document = copy.deepcopy(amazon_document())
    document["check"] |= change
    # when it is loaded
    with pytest.raises(ConfigurationError) as raised:
        parse_spec(document, "spec.json")
    # then the field is named
    assert words in str(raised.value)


def test_query_alternatives_and_setting_values_decide_what_is_sent() -> None:
    # given a query value tried as the report's study, then a setting whose word "omit" stands for none,
    # and a page size from a setting that is out of range when written as a number
    document = copy.deepcopy(amazon_document())
    words = {"null": "null", "omit": None}
    document["settings"]["no_study"] = {"type": "string", "enum": ["null", "omit"], "values": words}
    document["check"]["query"] = {"studyId": ["{report.name}", "{settings.no_study}"]}
    spec = parse_spec(document, "spec.json")
    sizes = copy.deepcopy(document)
    sizes["check"]["entry"] = {"key": "reportId", "pages": {"size": 0}}
    # when each is read
    with pytest.raises(ConfigurationError) as raised:
        parse_spec(sizes, "spec.json")
    # then the alternatives are templates the spec checks, and a page size must be from 1 to 10000
    assert spec.check is not None and spec.check.query["studyId"] == ("{report.name}", "{settings.no_study}")
    assert "'size' must be from 1 to 10000" in str(raised.value)
    assert spec.settings["no_study"].values == {"null": "null", "omit": None}
