"""AWS faults for tests that run the real state machine on LocalAws: Lambda functions that die, and Lambda
answering an invocation with its own error. Each helper is a context manager that arms one fault.

- ``dies_after_queue_call()``: the submit function's runtime dies (``Runtime.ExitError``) right after the
  provider answered the request that queues the report (for a provider that holds a request open, right
  after the holder was started): the provider has queued it and nothing was recorded after that.
- ``lambda_error_after_invoke(aws, function, error)``: the function runs to the end, then the Invoke call
  is answered with a Lambda service error (``Lambda.ServiceException`` in the state machine), so its
  result is lost.

Both lean on the local runner's fault-injection seam (``reportrelay.local.aws``: ``FunctionDied``,
``LambdaServiceError``, ``LocalAws.after_invoke``); nothing here touches product code paths otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from reportrelay.httpclient import ProviderHttp
from reportrelay.local.aws import FunctionDied, LambdaServiceError, LocalAws
from reportrelay.providers.base import Provider
from reportrelay.runtime import Runtime

SUBMIT_FUNCTION = "reportrelay-submit"


@dataclass
class Armed:
    """How often an armed fault fired (tests assert it did, so a fault that never hit cannot pass)."""

    times: int = 1
    fired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        with self._lock:
            if self.fired >= self.times:
                return False
            self.fired += 1
            return True


@contextmanager
def dies_after_queue_call(times: int = 1) -> Iterator[Armed]:
    """The next ``times`` submit runs die just after their queue call answered (see the module text)."""
    armed = Armed(times)
    queuing = threading.local()
    original_queuing = Provider.queuing
    original_request = ProviderHttp.request
    original_start_holder = Runtime.start_holder

    def noted_queuing(self: Provider, hint: Any) -> None:
        original_queuing(self, hint)
        queuing.active = True

    def request(self: ProviderHttp, *args: Any, **kwargs: Any) -> Any:
        answer = original_request(self, *args, **kwargs)
        if getattr(queuing, "active", False):
            queuing.active = False
            if armed.take():
                raise FunctionDied("Runtime exited with error: signal: killed (after the queue call)")
        return answer

    def start_holder(self: Runtime, state: Any) -> None:
        original_start_holder(self, state)
        if getattr(queuing, "active", False):
            queuing.active = False
            if armed.take():
                raise FunctionDied("Runtime exited with error: signal: killed (after starting the holder)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Provider, "queuing", noted_queuing)
        patch.setattr(ProviderHttp, "request", request)
        patch.setattr(Runtime, "start_holder", start_holder)
        yield armed


@contextmanager
def lambda_error_after_invoke(
    aws: LocalAws, function: str = SUBMIT_FUNCTION, error: str = "ServiceException", times: int = 1
) -> Iterator[Armed]:
    """The next ``times`` invocations of ``function`` run, then Lambda answers the Invoke with ``error``."""
    armed = Armed(times)

    def hook(name: str) -> None:
        if name == function and armed.take():
            raise LambdaServiceError(error)

    aws.after_invoke.append(hook)
    try:
        yield armed
    finally:
        aws.after_invoke.remove(hook)
