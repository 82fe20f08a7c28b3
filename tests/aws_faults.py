"""AWS faults for tests that run the real state machine on LocalAws: Lambda functions that die, and Lambda
answering an invocation with its own error. Each helper is a context manager that arms one fault.

- ``dies_after_queue_call()``: the submit function's runtime dies (``Runtime.ExitError``) right after the
  provider answered the request that queues the report (for a provider that holds a request open, right
  after the holder was started): the provider has queued it and nothing was recorded after that.
- ``lambda_error_after_invoke(aws, function, error)``: the function runs to the end, then the Invoke call
  is answered with a Lambda service error (``Lambda.ServiceException`` in the state machine), so its
  result is lost.

- ``aws_call_fails(service, operation, code)``: an AWS call fails (throttling, a 5xx) as if the SDK's own
  retries had run out, before it happened or (``after_it_happened``) after AWS carried it out.
- ``aws_call_answers(service, operation, parsed)``: an AWS call answers 200 with a body that says it failed.
- ``dies_after_call(service, operation)``: the calling function dies right after an AWS call went through.
- ``killed_after_call(aws, service, operation)``: the same, but as a kill (SIGKILL, a timeout): from then
  on, until the invocation ends, no AWS call of that function goes anywhere (no abort, no last write),
  on any of its threads.
- ``held_at(service, operation)``: a call waits until the test lets it go (to act while a step runs).

The first two lean on the local runner's fault-injection seam (``reportrelay_cli.local.aws``:
``FunctionDied``, ``LambdaServiceError``, ``LocalAws.after_invoke``); the AWS-call faults are botocore
event hooks, aimed at the calls a function makes (``tests.iam.recording`` names the running function).
Nothing here touches product code paths otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from reportrelay import awsclients
from reportrelay.httpclient import ProviderHttp
from reportrelay.providers.base import Provider
from reportrelay.runtime import Runtime
from reportrelay_cli.local.aws import FunctionDied, LambdaServiceError, LocalAws
from tests.iam.recording import calling_function

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


# ---- AWS calls that fail: throttling, 5xx, a function killed after a call went through

Parsed = dict[str, Any]


def _error_response(code: str, status: int, message: str) -> tuple[AWSResponse, Parsed]:
    parsed: Parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return AWSResponse("https://aws.local/fault", status, {}, None), parsed


@contextmanager
def _hooked(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """``handler`` on botocore ``event``, for the clients the functions hold and every client made later."""
    unique_id = f"tests.aws_faults.{id(handler)}"
    hooked = []
    botocore.handlers.BUILTIN_HANDLERS.append((event, handler))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        with awsclients._lock:
            for client in awsclients._clients.values():
                client.meta.events.register(event, handler, unique_id=unique_id)
                hooked.append(client)
        try:
            yield
        finally:
            botocore.handlers.BUILTIN_HANDLERS.remove((event, handler))
            for client in hooked:
                client.meta.events.unregister(event, unique_id=unique_id)


def _made_by(function: str | None) -> bool:
    return function is None or calling_function() == function


@contextmanager
def aws_call_fails(
    service: str,
    operation: str,
    code: str,
    status: int = 503,
    *,
    times: int = 1,
    function: str | None = None,
    after_it_happened: bool = False,
) -> Iterator[Armed]:
    """The next ``times`` calls of ``operation`` (by ``function``, or any function) fail with ``code``, as
    if the SDK's own retries had run out. ``after_it_happened``: the call is made, then its answer is
    lost (a 5xx for a request AWS carried out). ``service`` is botocore's event name (``s3``,
    ``dynamodb``, ``secrets-manager``, ``kms``, ``eventbridge``). Calls only count inside a handler, so a
    test must be inside ``tests.iam.recording.recording()``."""
    armed = Armed(times)
    message = f"injected by tests/aws_faults.py: {code}"

    def before(**kwargs: Any) -> tuple[AWSResponse, Parsed] | None:
        if _made_by(function) and calling_function() is not None and armed.take():
            return _error_response(code, status, message)
        return None

    def after(http_response: Any, parsed: Parsed, model: Any, **kwargs: Any) -> None:
        if _made_by(function) and calling_function() is not None and armed.take():
            raise ClientError(_error_response(code, status, message)[1], model.name)

    if after_it_happened:
        with _hooked(f"after-call.{service}.{operation}", after):
            yield armed
    else:
        with _hooked(f"before-call.{service}.{operation}", before):
            yield armed


@contextmanager
def dies_after_call(
    service: str, operation: str, *, times: int = 1, function: str | None = None
) -> Iterator[Armed]:
    """The next ``times`` calls of ``operation`` go through, then the calling function dies (killed, out of
    memory) before it can do anything else: the state machine sees ``Runtime.ExitError``."""
    armed = Armed(times)

    def after(**kwargs: Any) -> None:
        if _made_by(function) and calling_function() is not None and armed.take():
            raise FunctionDied(f"Runtime exited with error: signal: killed (after {operation})")

    with _hooked(f"after-call.{service}.{operation}", after):
        yield armed


@contextmanager
def killed_after_call(
    aws: LocalAws, service: str, operation: str, *, times: int = 1, function: str
) -> Iterator[Armed]:
    """After ``times`` calls of ``operation`` by ``function`` went through, that invocation is killed:
    the call's thread raises ``FunctionDied`` and every later AWS call of the function (any thread of it)
    fails the same way until the invocation has ended (``LocalAws.after_invoke``)."""
    armed = Armed(1)
    killed = threading.Event()
    calls = Armed(times - 1)  # the calls that go through before the one after which it is killed

    def after(**kwargs: Any) -> None:
        if calling_function() != function or killed.is_set() or calls.take():
            return
        if armed.take():
            killed.set()
            raise FunctionDied(f"Runtime exited with error: signal: killed (after {operation})")

    def before(**kwargs: Any) -> None:
        if killed.is_set() and calling_function() == function:
            raise FunctionDied("the function was killed: it makes no more calls")

    def invocation_ended(name: str) -> None:
        if killed.is_set() and name.endswith(function):
            killed.clear()

    aws.after_invoke.append(invocation_ended)
    try:
        with _hooked(f"after-call.{service}.{operation}", after), _hooked("before-call", before):
            yield armed
    finally:
        aws.after_invoke.remove(invocation_ended)


@contextmanager
def held_at(
    service: str, operation: str, *, function: str | None = None
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first call of ``operation`` waits until the test lets it go: yields (reached, release)."""
    reached, release = threading.Event(), threading.Event()

    def before(**kwargs: Any) -> None:
        if _made_by(function) and calling_function() is not None and not reached.is_set():
            reached.set()
            release.wait(timeout=60)

    with _hooked(f"before-call.{service}.{operation}", before):
        yield reached, release


@contextmanager
def aws_call_answers(
    service: str, operation: str, parsed: Parsed, *, times: int = 1, function: str | None = None
) -> Iterator[Armed]:
    """The next ``times`` calls of ``operation`` are answered 200 with ``parsed`` instead of reaching AWS:
    an answer that succeeds on the wire but says it did not, e.g. PutEvents' ``FailedEntryCount: 1``."""
    armed = Armed(times)

    def before(**kwargs: Any) -> tuple[AWSResponse, Parsed] | None:
        if _made_by(function) and calling_function() is not None and armed.take():
            answer = {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}}}
            return AWSResponse("https://aws.local/fault", 200, {}, None), answer
        return None

    with _hooked(f"before-call.{service}.{operation}", before):
        yield armed
