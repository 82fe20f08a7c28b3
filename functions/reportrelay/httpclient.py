"""One HTTP client for every provider: signing, short retries, and turning answers into typed errors.

Retrying here is deliberately short (a few seconds in all): long waits belong to the state machine,
never to a Lambda sleeping. Only requests that cannot have had an effect are retried when they are not
idempotent: a 429 or 503 (the provider says it did nothing) or a connection that was never opened.
A 500, a gateway's 502/504 or a timeout after a POST is left to the caller, because the provider may
have queued the report. When a request that changes nothing (a GET) still fails that way after its
retries, it is reported as ``ProviderUnavailable``: repeating it later is safe, so even the submit step's
retry may repeat it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import requests
from urllib3.exceptions import NewConnectionError

from reportrelay.errors import (
    ProviderAuthFailed,
    ProviderRejected,
    ProviderServerError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    ReportRelayError,
)

if TYPE_CHECKING:
    from reportrelay.auth import Auth

USER_AGENT = "reportrelay/0.1 (+https://github.com/reportrelay)"


class _NoQueryStrings(logging.Filter):
    """urllib3 logs every request's URL at DEBUG, query string included, and some providers put session
    tokens there (Metric Insights' ``?token=``): keep the path, drop the query."""

    _QUERY = re.compile(r"\?\S*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._QUERY.sub("?<query omitted>", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_NoQueryStrings())


@dataclass(frozen=True)
class RetryBudget:
    """How much waiting one call may do before handing the problem to the state machine."""

    attempts: int = 3
    max_total_wait_seconds: float = 10.0
    base_backoff_seconds: float = 0.5


def error_for_response(response: requests.Response, action: str) -> ReportRelayError:
    """A typed error for a non-success answer, quoting the provider's own words."""
    status = response.status_code
    where = f"{action}: {response.request.method} {_path_of(response)} answered HTTP {status}"
    words = provider_message(response)
    message = f"{where}: {words}" if words else where
    if status == 429:
        return ProviderThrottled(message, retry_after_seconds(response))
    if status == 401:
        return ProviderAuthFailed(f"{message}; check the connection's credentials")
    if status in (502, 503, 504):
        if status == 503 and response.headers.get("Retry-After"):
            return ProviderThrottled(message, retry_after_seconds(response))
        return ProviderUnavailable(message)
    if status >= 500:
        return ProviderServerError(message)
    return ProviderRejected(message)


def provider_message(response: requests.Response, limit: int = 500) -> str:
    """The human part of an error body: common JSON error fields, else the text itself."""
    content_type = response.headers.get("Content-Type", "")
    text = response.text if response.content is not None else ""
    if "json" in content_type or text[:1] in ("{", "["):
        try:
            body = response.json()
        except ValueError:
            body = None
        found = _find_message(body)
        if found:
            return found[:limit]
    return " ".join(text.split())[:limit]


_MESSAGE_KEYS = ("errorMessage", "error_description", "message", "Message", "detail", "title", "error")


def _find_message(body: Any) -> str | None:
    if isinstance(body, str):
        return body
    if not isinstance(body, Mapping):
        return None
    for key in _MESSAGE_KEYS:
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            nested = _find_message(value)
            if nested:
                return nested
    return None


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _path_of(response: requests.Response) -> str:
    # Paths only: query strings can carry session tokens.
    return requests.utils.urlparse(response.request.url or response.url).path


class ProviderHttp:
    """A provider's base URL, credentials, timeouts and retry rules, behind ``request``."""

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        verify: bool = True,
        budget: RetryBudget = RetryBudget(),
        reauth_statuses: tuple[int, ...] = (401,),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.timeout = timeout
        self.verify = verify
        self.budget = budget
        self.reauth_statuses = reauth_statuses
        self._sleep = sleep

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        idempotent: bool | None = None,
        stream: bool = False,
        accept: tuple[int, ...] = (200, 201, 202, 204),
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one logical request; ``action`` names it in errors ("queue export", "check status")."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        extra_headers = kwargs.pop("headers", None) or {}
        waited = 0.0
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(
                    method,
                    self.url(path),
                    headers={**extra_headers, **self.auth.headers()},
                    timeout=timeout or self.timeout,
                    verify=self.verify,
                    stream=stream,
                    **kwargs,
                )
            except requests.RequestException as error:
                failure = self._transport_error(error, method, path, action)
                never_sent = isinstance(failure, ProviderUnavailable)
                pause = self._backoff(attempt, None, waited)
                if (idempotent or never_sent) and pause is not None:
                    waited += pause
                    self._sleep(pause)
                    continue
                raise _as_retryable_as_it_is(failure, idempotent) from None
            if response.status_code in accept:
                return response
            if response.status_code in self.reauth_statuses and not renewed and self.auth.renew():
                renewed = True
                response.close()
                continue
            failure = error_for_response(response, action)
            if response.status_code in self.reauth_statuses and not isinstance(failure, ProviderAuthFailed):
                failure = ProviderAuthFailed(f"{failure}; check the connection's credentials")
            response.close()
            not_processed = response.status_code in (429, 503)
            retry_after = failure.retry_after if isinstance(failure, ProviderThrottled) else None
            if isinstance(failure, ProviderServerError | ProviderUnavailable | ProviderThrottled) and (
                idempotent or not_processed
            ):
                pause = self._backoff(attempt, retry_after, waited)
                if pause is not None:
                    waited += pause
                    self._sleep(pause)
                    continue
            raise _as_retryable_as_it_is(failure, idempotent, gateway=response.status_code in (502, 504))

    def _backoff(self, attempt: int, retry_after: float | None, waited: float) -> float | None:
        """The pause before the next attempt, or None when this call has used its budget."""
        if attempt >= self.budget.attempts:
            return None
        pause = (
            retry_after if retry_after is not None else self.budget.base_backoff_seconds * 2 ** (attempt - 1)
        )
        if waited + pause > self.budget.max_total_wait_seconds:
            return None
        return pause

    @staticmethod
    def _transport_error(
        error: requests.RequestException, method: str, path: str, action: str
    ) -> ReportRelayError:
        where = f"{action}: {method} {requests.utils.urlparse(path).path}"
        if isinstance(error, requests.ConnectTimeout) or _never_connected(error):
            return ProviderUnavailable(f"{where} could not connect to the provider ({type(error).__name__})")
        if isinstance(error, requests.Timeout):
            return ProviderTimeout(f"{where} got no answer in time")
        return ProviderServerError(f"{where} failed: the connection broke ({type(error).__name__})")


def _as_retryable_as_it_is(
    failure: ReportRelayError, idempotent: bool, *, gateway: bool = False
) -> ReportRelayError:
    """Every step, Submit included, repeats ``ProviderUnavailable``: give that name to exactly the failures
    that are safe to repeat. A request that changes nothing is; a POST behind a gateway that answered
    502/504 is not, since the provider may have queued the report before the gateway gave up."""
    if idempotent and isinstance(failure, ProviderServerError | ProviderTimeout):
        return ProviderUnavailable(f"{failure} (the request changes nothing, so it is safe to repeat)")
    if not idempotent and gateway and isinstance(failure, ProviderUnavailable):
        return ProviderServerError(f"{failure} (a gateway's answer: the provider may have taken the request)")
    return failure


def _never_connected(error: requests.RequestException) -> bool:
    """True when the TCP connection was never opened, so the provider cannot have seen the request."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)
