"""Deployment settings from CDK context: defaults that deploy as they are, clear errors for wrong values."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import constants
from infra.app import build_app
from infra.settings import Settings, SettingsError
from tests.infra.conftest import CDK_CONTEXT


def test_cdk_json_states_the_defaults() -> None:
    # given the reportrelay:* values written in cdk.json
    written = {
        key.removeprefix("reportrelay:"): value
        for key, value in CDK_CONTEXT.items()
        if key.startswith("reportrelay:")
    }
    # then they are the settings a deployment gets when none are given
    assert Settings.from_mapping(written) == Settings()


def test_values_from_the_command_line_arrive_as_text_and_are_parsed() -> None:
    # given `cdk deploy -c reportrelay:versioned=false -c reportrelay:reportRetentionDays=7 ...`
    settings = Settings.from_mapping(
        {
            "versioned": "false",
            "reportRetentionDays": "7",
            "bucketEncryption": "kms",
            "logRetentionDays": "14",
        }
    )
    # then they mean what they say
    assert settings.versioned is False
    assert settings.report_retention_days == 7
    assert settings.bucket_encryption == "kms"
    assert settings.log_retention_days == 14


def test_relative_files_are_read_from_the_repository() -> None:
    settings = Settings.from_mapping({"connectionsFile": "config/other.json"})
    assert settings.connections_file == constants.REPO_ROOT / "config" / "other.json"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"versioned": "maybe"}, "reportrelay:versioned='maybe': expected true or false"),
        ({"bucketEncryption": "aes"}, "expected one of s3, kms"),
        ({"reportRetentionDays": "0"}, "expected 1 to 36500"),
        ({"reportRetentionDays": "ninety"}, "reportrelay:reportRetentionDays"),
        ({"logRetentionDays": "31"}, "CloudWatch Logs keeps logs for one of"),
        ({"eventBusName": "my bus"}, "reportrelay:eventBusName"),
        ({"alarmEmail": "ops"}, "expected an e-mail address"),
        ({"retention": "90"}, "unknown setting reportrelay:retention"),
    ],
)
def test_a_wrong_value_names_the_setting(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_mapping(values)


def test_a_misspelt_setting_on_the_command_line_stops_synthesis(tmp_path: Path) -> None:
    # given `cdk synth -c reportrelay:versionned=false` (a typo)
    context = {**CDK_CONTEXT, "reportrelay:bundle": False, "reportrelay:versionned": "false"}
    # when the app is built / then it names the unknown setting instead of deploying the default
    with pytest.raises(SettingsError, match="unknown setting reportrelay:versionned"):
        build_app(context, outdir=str(tmp_path))
