"""Which function made which AWS call: each handler is wrapped to name itself, each client reports its calls.

Test-only: nothing here is in the Lambda package. While ``recording()`` is open,

- every handler module's ``handler`` is replaced by a wrapper that sets the calling function (its handler
  path, as the CDK app names it) in a context variable for the length of the invocation; the local runner
  looks the handler up at every invocation, so the state machine, asynchronous invokes and ``LocalAws.api``
  all go through the wrapper, and a function invoked by another (the API invoking Cancel) names itself;
- botocore's ``provide-client-params`` event, emitted for every call and every presigned URL with the
  parameters as the code passed them, is hooked on the clients the functions already hold
  (``reportrelay.awsclients``) and, through botocore's built-in handlers, on every client made later.

A call made outside any handler (the test's own set-up and assertions, moto's interpreter) names no
function and is not recorded.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.handlers
import pytest

from reportrelay import awsclients

#: Every Lambda entry point of the CDK app (its functions' ``Handler``).
HANDLERS = tuple(
    f"reportrelay.handlers.{name}.handler"
    for name in (
        "submit",
        "check",
        "fetch",
        "conclude",
        "hold",
        "cancel",
        "api",
        "start_scheduled",
        "announce_pending",
        "wait_for_slot",
    )
)
_EVENT = "provide-client-params"
_HOOK_ID = "tests.iam.recording"
#: Parameters not worth keeping: the bytes of an upload part.
_DROPPED_PARAMS = ("Body",)

_caller: ContextVar[str | None] = ContextVar("iam_caller", default=None)


@dataclass(frozen=True)
class Call:
    """One AWS call (or presigned URL) made by one function."""

    handler: str  # the calling function's handler, e.g. reportrelay.handlers.fetch.handler
    service: str  # botocore's service name: s3, dynamodb, stepfunctions, ...
    operation: str  # the API operation: CreateMultipartUpload, Query, ...
    params: dict[str, Any]
    test: str  # what the test was doing when the call was made

    @property
    def function(self) -> str:
        return self.handler.split(".")[-2]


@dataclass
class CallRecorder:
    calls: list[Call] = field(default_factory=list)
    #: What is being exercised now; set by the test, shown with every denied call.
    test: str = ""
    active: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        handler = _caller.get()
        if not self.active or handler is None:
            return
        kept = {name: value for name, value in params.items() if name not in _DROPPED_PARAMS}
        call = Call(handler, model.service_model.service_name, model.name, kept, self.test)
        with self._lock:
            self.calls.append(call)


def calling_function() -> str | None:
    """The function (``submit``, ``fetch``, ...) whose handler is running on this thread, while recording."""
    handler = _caller.get()
    return handler.split(".")[-2] if handler else None


def _naming(handler: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def invoke(event: Any, context: Any) -> Any:
        token = _caller.set(handler)
        try:
            return function(event, context)
        finally:
            _caller.reset(token)

    return invoke


@contextmanager
def recording() -> Iterator[CallRecorder]:
    """Record every AWS call the functions make until the block ends."""
    recorder = CallRecorder()
    hooked: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        for handler in HANDLERS:
            module_name, _, attribute = handler.rpartition(".")
            module = importlib.import_module(module_name)
            patch.setattr(module, attribute, _naming(handler, getattr(module, attribute)))
        # Clients made from now on: sessions register botocore's built-in handlers when they are made, and
        # the next boto3.client() makes a new default session.
        botocore.handlers.BUILTIN_HANDLERS.append((_EVENT, recorder.on_params))
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        # Clients the functions made before (one per process, as in Lambda).
        with awsclients._lock:
            for client in awsclients._clients.values():
                client.meta.events.register(_EVENT, recorder.on_params, unique_id=_HOOK_ID)
                hooked.append(client)
        try:
            yield recorder
        finally:
            recorder.active = False
            botocore.handlers.BUILTIN_HANDLERS.remove((_EVENT, recorder.on_params))
            for client in hooked:
                client.meta.events.unregister(_EVENT, unique_id=_HOOK_ID)
