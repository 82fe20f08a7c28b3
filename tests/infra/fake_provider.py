"""A provider that needs everything a provider can: a held request and a sealed session token.

Only for synthesizing: it lets the tests see the holder function and the handle key that a real
provider with these needs (Metric Insights) brings into the stack.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import ClassVar

from reportrelay.config import JobRequest
from reportrelay.providers.base import Handle, Provider, ReportStatus, ResultStream

KEY = "fake_holding"
PROVIDER_PATH = f"{__name__}:HoldingProvider"


class HoldingProvider(Provider):
    key = KEY
    sealed_handle_fields: ClassVar[frozenset[str]] = frozenset({"session"})
    holds_request: ClassVar[bool] = True

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        return None

    def submit(self, request: JobRequest) -> ReportStatus:
        raise NotImplementedError

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        raise NotImplementedError

    def open_result(self, request: JobRequest, handle: Handle) -> AbstractContextManager[ResultStream]:
        raise NotImplementedError
