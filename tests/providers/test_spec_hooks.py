"""Hooks: the named, shipped code a provider spec may hand one of its steps to (reportrelay.providers.hooks).

A hook gets the step as the spec's data alone would run it (``default``) and adds what data cannot say; a
spec can name only a function registered for that very step, so no spec brings code of its own.
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import pytest

from reportrelay.errors import ConfigurationError
from reportrelay.providers.base import ReportState, ReportStatus
from reportrelay.providers.hooks import hook, resolve
from reportrelay.providers.spec import parse_spec
from tests.providers.test_provider_spec import PLAIN_SPEC, plain_request, plaintext, plaintext_provider

__all__ = ["plaintext"]  # the simulator fixture, used by name


@pytest.fixture
def shipped_hooks(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A hooks module as if shipped in reportrelay.providers.hooks: a check hook and a plain function."""
    module = types.ModuleType("reportrelay.providers.hooks.exports_for_test")

    @hook("check")
    def words_from_the_simulator(provider: Any, request: Any, handle: Any, *, default: Any) -> ReportStatus:
        status = default(request, handle)
        words = f"seen by the hook: {status.state}"
        return ReportStatus(status.state, progress=status.progress, message=words)

    def not_registered(provider: Any, *args: Any, default: Any) -> Any:
        return default(*args)

    module.words_from_the_simulator = words_from_the_simulator  # type: ignore[attr-defined]
    module.not_registered = not_registered  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def hooked_spec(**hooks: str) -> dict[str, Any]:
    spec = copy.deepcopy(PLAIN_SPEC)
    spec["hooks"] = hooks
    return spec


def test_a_hooked_step_runs_the_hook_which_gets_the_data_driven_step(plaintext, shipped_hooks) -> None:
    # given the made-up vendor's spec with its check handed to a shipped hook
    provider = plaintext_provider(plaintext, hooked_spec(check="exports_for_test.words_from_the_simulator"))
    job = plain_request()
    submitted = provider.submit(job)
    # when the report is checked
    status = provider.check(job, submitted.handle)
    # then the hook ran on top of the spec's own check (which read the plain-text status)
    assert status.state is ReportState.RUNNING
    assert status.message == "seen by the hook: RUNNING"
    # and the steps the spec did not hook are the data's
    assert type(provider).submit.__qualname__.startswith("DeclarativeProvider.")


@pytest.mark.parametrize(
    ("hooks", "words"),
    [
        ({"check": "nowhere.anything"}, "hooks.check: there is no hook module 'nowhere'"),
        ({"check": "exports_for_test.not_registered"}, "'exports_for_test.not_registered' is not a hook"),
        (
            {"submit": "exports_for_test.words_from_the_simulator"},
            "'exports_for_test.words_from_the_simulator' is a hook for 'check', not for 'submit'",
        ),
        ({"check": "Exports.Bad-Name"}, "hooks.check"),
        ({"download": "exports_for_test.words_from_the_simulator"}, "hooks.download"),
    ],
    ids=["unknown-module", "not-registered", "wrong-point", "bad-name", "unknown-point"],
)
def test_a_spec_naming_what_is_not_a_shipped_hook_for_that_step_is_refused(
    shipped_hooks, hooks, words
) -> None:
    # given a spec whose hooks name something else than a registered hook of that step
    # when it is loaded, then it is refused with the field and the reason
    with pytest.raises(ConfigurationError) as refused:
        parse_spec(hooked_spec(**hooks), "exports.json")
    assert words in str(refused.value)


def test_a_hook_registers_for_known_steps_only() -> None:
    # given a step providers do not have, then no hook can be registered for it
    with pytest.raises(ValueError, match="unknown hook point 'download'"):
        hook("download")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a hook name"):
        resolve("../etc", "check")
