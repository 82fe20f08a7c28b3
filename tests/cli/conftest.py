"""What the command-line tests share: running ``reportrelay`` in-process, and the schemas its JSON follows."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from reportrelay_cli import main as cli
from reportrelay_cli.local.identities import LocalIdentity

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True)
class Ran:
    """One run of the command: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def reportrelay(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    """``reportrelay ARGV`` as a user types it, in this process; argparse's own refusals are exit 2 too."""
    capsys.readouterr()
    try:
        code = cli.main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


@cache
def _registry() -> Registry:
    """The command line's schemas, and the API's events schema they refer to, by file name."""
    resources = []
    for path in [*SCHEMAS.glob("cli-*.json"), SCHEMAS / "job-events.json"]:
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def schema_problems(document: Any, schema_file: str) -> list[str]:
    """What ``schemas/<schema_file>`` finds wrong with ``document`` (nothing: an empty list)."""
    schema = json.loads((SCHEMAS / schema_file).read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@contextmanager
def signed_as(identity: LocalIdentity) -> Iterator[None]:
    """The AWS credentials ``reportrelay jobs`` finds in the environment are ``identity``'s."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "REPORTRELAY_API", "REPORTRELAY_TOKEN"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", identity.access_key_id)
        env.setenv("AWS_SECRET_ACCESS_KEY", identity.secret_access_key)
        if identity.session_token:
            env.setenv("AWS_SESSION_TOKEN", identity.session_token)
        env.setenv("AWS_REGION", "us-east-1")
        yield


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    return free_port()
