"""Object keys and file names: every accepted key prefix, with any team, job id and provider file name,
gives a key S3 takes (at most 1,024 bytes) with no empty, dot or invisible-character segment."""

from __future__ import annotations

import json
import re
import string
import unicodedata
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from reportrelay import objectkeys, schedules, workflow
from reportrelay.config import TEAM_PATTERN, JobRequest, parse_job_request
from reportrelay.errors import BadRequest
from reportrelay.objectkeys import MAX_KEY_BYTES, MAX_PREFIX_BYTES, clean_filename
from reportrelay.providers.base import filename_from_response

FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
TRICKY = [
    "/", "//", "\\", ".", "..", " ", "\r", "\n", "\t", "\x00", "\x7f", "\x85", "\x9b", "\u00a0", "\u00ad",
    "\u200b", "\u200d", "\u200e", "\u202a", "\u202e", "\u2066", "\u2069", "\u2028", "\u2029", "\ufeff",
    "\u3164", "\ufe0f", "\U000e0041", "\ud800", "\ue000", "\U0010ffff", "~", "%", "#", "{", "|", "'",
    "=", "é", "e\u0301", "Ü", "ß", "销售", "\U0001d49c", "😀", "a", "Z", "0", "-", "_",
]  # fmt: skip
SAFE_ALPHABET = string.ascii_letters + string.digits + "-_.=!*'()" + "éÜßΩ销售٣\U0001d49c"

any_piece = st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=()))
any_text = st.lists(any_piece, max_size=60).map("".join)
long_text = st.text(
    st.sampled_from(["a", "é", "销", "\U0001d49c", "/", " ", "."]), min_size=200, max_size=700
)
teams = st.none() | st.from_regex(TEAM_PATTERN.strip("^$"), fullmatch=True)
job_ids = st.uuids().map(str) | st.builds(schedules.job_id, any_text, st.datetimes(timezones=st.just(UTC)))
segments = st.text(st.sampled_from(SAFE_ALPHABET + " "), min_size=1, max_size=70).filter(
    lambda text: text not in (".", "..") and text == text.strip(" ") and len(text.encode()) <= 255
)
good_prefixes = st.builds(
    lambda parts, slash: "/".join(parts) + slash,
    st.lists(segments, min_size=1, max_size=12),
    st.sampled_from(["", "/"]),
).filter(lambda prefix: len(prefix.removesuffix("/").encode()) <= MAX_PREFIX_BYTES)
file_names = st.one_of(
    any_text,
    long_text,
    st.builds(
        lambda stem, ext: f"{stem}.{ext}", any_text | long_text, st.sampled_from(["pdf", "xlsx", "csv"])
    ),
)


def request_with(prefix: str, team: str | None = None) -> JobRequest:
    document: dict[str, Any] = {
        "connection": "c",
        "report": {},
        "format": "pdf",
        "output": {"key_prefix": prefix},
    }
    if team is not None:
        document["team"] = team
    return parse_job_request(document)


def assert_fit_for_s3(key: str) -> None:
    assert len(key.encode()) <= MAX_KEY_BYTES, f"{len(key.encode())} bytes"
    for segment in key.split("/"):
        assert segment not in ("", ".", ".."), key
        assert len(segment.encode()) <= 255, segment
    for char in key:
        assert unicodedata.category(char) not in FORBIDDEN_CATEGORIES, f"U+{ord(char):04X} in {key!r}"
        assert not objectkeys.is_invisible(char), f"U+{ord(char):04X} in {key!r}"
    assert "\\" not in key


def assert_clean_name(name: str) -> None:
    assert name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name
    assert len(name.encode()) <= objectkeys.MAX_FILENAME_BYTES
    assert name == name.strip() and not name.startswith(".") and not name.endswith(".")
    assert_fit_for_s3(name)


# ---- key prefixes


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("é" * 512, "is 1,024 bytes of UTF-8 (512 characters); a key prefix may have at most 623 bytes"),
        ("./", r"without '.' or '..' segments: segment 1 ('.')"),
        ("../etc/", r"must be a relative S3 key prefix without '.' or '..' segments: segment 1 ('..')"),
        ("a/../b", r"segment 2 ('..')"),
        ("a//b", r"segment 2 of 'a//b' is empty"),
        ("/finance/", r"without a leading '/'"),
        ("a\\b/", r"segment 1 ('a\\b') contains U+005C REVERSE SOLIDUS, which is not allowed in a key; use"),
        ("sales\r\n/", r"segment 1 ('sales\r\n') contains U+000D CARRIAGE RETURN"),
        ("x/a\u202e", r"segment 2 ('a\u202e') contains U+202E RIGHT-TO-LEFT OVERRIDE, which is not allowed"),
        ("fin\u200bance/", r"contains U+200B ZERO WIDTH SPACE"),
        ("\ufefffinance/", r"contains U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("a\x85b/", r"contains U+0085 (a control character)"),
        ("a\u3164b/", r"contains U+3164 HANGUL FILLER"),
        ("a\u00a0b/", r"contains U+00A0 NO-BREAK SPACE"),
        ("2025~draft/", r"contains U+007E TILDE"),
        ("100%/", r"contains U+0025 PERCENT SIGN"),
        (" finance/", r"segment 1 (' finance') starts or ends with a space"),
        ("x/" + "a" * 256, f"segment 2 ('{'a' * 40}...') is 256 bytes of UTF-8; a segment may have at most"),
    ],
)
def test_a_key_prefix_that_breaks_a_rule_is_refused_at_request_time_saying_what_to_fix(
    prefix: str, message: str
) -> None:
    # when a request with the prefix is parsed (as POST /reports and the schedules do, before anything runs)
    with pytest.raises(BadRequest) as refused:
        request_with(prefix)
    # then it is a 400 naming the field, the segment and the character, never printing the character itself
    assert str(refused.value).startswith("request.output.key_prefix: ")
    assert message in str(refused.value)
    assert not any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in str(refused.value))


@pytest.mark.parametrize(
    "prefix",
    ["", "finance", "finance/", "year=2025/month=03/", "Über uns/2025 (Q1)/", "销售/二〇二五/", "a" * 255],
)
def test_ordinary_prefixes_of_any_script_are_accepted(prefix: str) -> None:
    assert request_with(prefix).output.key_prefix == prefix


def test_a_prefix_is_stored_in_nfc_so_one_folder_has_one_name() -> None:
    assert request_with("cafe\u0301/").output.key_prefix == "caf\u00e9/"


def test_the_byte_budget_leaves_room_for_the_longest_team_job_id_and_file_name() -> None:
    longest_team = re.search(r"\{0,(\d+)\}", TEAM_PATTERN)
    assert longest_team and int(longest_team.group(1)) + 1 == objectkeys.MAX_TEAM_BYTES
    longest_job_id = schedules.job_id("s" * 200, schedules.parse_scheduled_time("2025-03-01T06:00:00Z", None))
    assert len(longest_job_id) == objectkeys.MAX_JOB_ID_BYTES
    longest_prefix = "é" * 127 + "/" + "a" * 255 + "/" + "b" * (MAX_PREFIX_BYTES - 254 - 1 - 255 - 1)
    key = workflow.object_key(request_with(longest_prefix, team="t" * 63), longest_job_id, "ü" * 300)
    assert len(key.encode()) == MAX_KEY_BYTES - 1  # the file name's cut leaves no half character: 254 bytes


@settings(max_examples=400)
@given(prefix=st.one_of(any_text, long_text, good_prefixes), team=teams, job_id=job_ids, filename=file_names)
@example(prefix="é" * 311, team="t" * 63, job_id="s" * 63 + "-20250301T060000Z", filename="é" * 300 + ".pdf")
def test_every_accepted_prefix_gives_a_key_s3_accepts_and_every_other_is_refused_with_a_reason(
    prefix: str, team: str | None, job_id: str, filename: str
) -> None:
    # given any prefix
    try:
        request = request_with(prefix, team)
    except BadRequest as refused:
        # then either it is refused, at request time, with a reason
        assert str(refused).startswith("request.output.key_prefix: ") and len(str(refused)) > 40
        return
    # or the key made with any team, job id and provider file name is one S3 accepts
    key = workflow.object_key(request, job_id, filename)
    assert_fit_for_s3(key)
    # in the team's space, with the job's folder and the cleaned file name last
    assert key.startswith(f"{team}/" if team else "")
    assert key.split("/")[-2:] == [job_id, clean_filename(filename)]


@given(prefix=good_prefixes)
def test_every_prefix_made_of_allowed_characters_within_the_budget_is_accepted(prefix: str) -> None:
    assert request_with(prefix).output.key_prefix == unicodedata.normalize("NFC", prefix)


# ---- provider file names


@pytest.mark.parametrize(
    ("given_name", "cleaned"),
    [
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("report\u200b\u200d\ufeff.pdf", "report.pdf"),
        ("sales\x85\x9b 2025.csv", "sales 2025.csv"),
        ("line\u2028break\u2029.txt", "linebreak.txt"),
        ("tab\there\r\n.xlsx", "tabhere.xlsx"),
        ("..\\..\\windows\\evil.dll", "evil.dll"),
        ("../../etc/passwd", "passwd"),
        ("\u202e", "report"),
        ("..", "report"),
        (" . ", "report"),
        ("cafe\u0301.pdf", "caf\u00e9.pdf"),
        ("Umsätze März.xlsx", "Umsätze März.xlsx"),
    ],
)
def test_a_provider_file_name_loses_invisible_and_control_characters(given_name: str, cleaned: str) -> None:
    assert clean_filename(given_name) == cleaned


def test_a_long_file_name_is_cut_by_bytes_on_a_character_boundary_keeping_its_extension() -> None:
    assert clean_filename("a" * 300 + ".pdf") == "a" * 251 + ".pdf"
    assert clean_filename("é" * 200 + ".xlsx") == "é" * 125 + ".xlsx"  # 250 + 5 bytes
    assert clean_filename("€" * 100 + ".csv") == "€" * 83 + ".csv"  # 249 + 4: a 3-byte character is not split
    assert clean_filename("x." + "y" * 300) == "x." + "y" * 253  # no extension that long: cut as a whole


def test_the_name_in_the_providers_content_disposition_is_cleaned() -> None:
    response = requests.Response()
    response.headers["Content-Disposition"] = "attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe"
    assert filename_from_response(response, "fallback.pdf") == "invoicefdp.exe"
    response.headers["Content-Disposition"] = "attachment; filename*=UTF-8''%E2%80%AE%E2%80%8B"
    assert filename_from_response(response, "fallback.pdf") == "fallback.pdf"


@settings(max_examples=400)
@given(name=file_names)
@example(name="e\u200b\u0301")
def test_any_provider_file_name_becomes_a_safe_base_name_and_cleaning_again_changes_nothing(
    name: str,
) -> None:
    cleaned = clean_filename(name)
    assert_clean_name(cleaned)
    assert clean_filename(cleaned) == cleaned
    assert unicodedata.normalize("NFC", cleaned) == cleaned


@given(stem=any_text | long_text, extension=st.sampled_from(["pdf", "xlsx", "csv", "json"]))
def test_a_cleaned_name_keeps_its_extension(stem: str, extension: str) -> None:
    # given a stem with something visible in it (not only spaces, dots and invisible characters)
    stem = stem.replace("/", "").replace("\\", "")
    visible = [char for char in stem if char != "." and not char.isspace() and clean_filename(char) == char]
    assume(visible)
    # then however long the name, its extension survives
    assert clean_filename(f"{stem}.{extension}").endswith(f".{extension}")


# ---- schedules: a rendered prefix is checked like a posted one, at synthesis


def test_a_schedule_whose_rendered_prefix_breaks_a_rule_stops_synthesis(tmp_path: Path) -> None:
    from infra import constants
    from infra.configuration import ConfigError, load_connections, load_schedules

    request = {
        "connection": "acme-dx",
        "report": {"document_id": 10},
        "format": "pdf",
        "output": {"key_prefix": "sales/{{ first:%Y }}\u202e/"},
    }
    body = {"schedule": "cron(0 6 * * ? *)", "timezone": "UTC", "window": "yesterday", "team": "finance"}
    path = tmp_path / "schedules.json"
    path.write_text(json.dumps({"schedules": {"daily": {**body, "request": request}}}), encoding="utf-8")
    refused = r"schedules\.daily: request\.output\.key_prefix: segment 2"
    with pytest.raises(ConfigError, match=refused) as raised:
        load_schedules(path, load_connections(constants.CONNECTIONS_FILE))
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in str(raised.value)
