"""One HTTP client for every provider: signing, short retries, and turning answers into typed errors.

Retrying here is deliberately short (a few seconds in all): long waits belong to the state machine,
never to a Lambda sleeping. Only requests that cannot have had an effect are retried when they are not
idempotent: a 429 or 503 (the provider says it did nothing) or a connection that was never opened.
A 500, a gateway's 502/504 or a timeout after a POST is left to the caller, because the provider may
have queued the report. When a request that changes nothing (a GET) still fails that way after its
retries, it is reported as ``ProviderUnavailable``: repeating it later is safe, so even the submit step's
retry may repeat it.

Redirects are followed here, never by ``requests``: at most ``MAX_REDIRECTS`` hops; with credentials
only while they stay on the request's own origin (scheme, host, port); to another origin only when the
connection lists its host in ``redirect_hosts``, and then with no credential, cookie or custom header;
never from https to http, and never to a loopback, link-local, private or unspecified address unless
the connection's own ``base_url`` is written as one (the sandbox). A refused redirect is a
``ProviderProtocolError`` that names both origins.

Whoever watches a client (the workflow, recording the job's activity) hears of every retry before its
wait through ``ProviderHttp.on_retry`` (a ``RetryNotice``: cause in plain words, wait, attempt numbers);
the client knows nothing more of it.

Connection-level failures name the host, the port and the cause in plain words (``transport_error``).
A name that does not resolve and a TLS handshake that fails are ``ConfigurationError``: they fail in
seconds instead of being retried for minutes, since repeating them cannot help.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from reportrelay.addresses import address_kind, is_local_host, parse_redirect_hosts
from reportrelay.errors import (
    ConfigurationError,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderServerError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    ReportRelayError,
)
from reportrelay.observability import logger

if TYPE_CHECKING:
    from reportrelay.auth import Auth
    from reportrelay.config import Connection

USER_AGENT = "reportrelay/0.1 (+https://github.com/reportrelay)"

#: Answers that are followed as redirects (when they carry a Location and the caller did not accept them).
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
#: A request is not started, nor a wait begun, closer than this to the calling function's end ...
STOP_MARGIN_SECONDS = 5.0
#: ... nor with less than this much time for it.
MIN_ATTEMPT_SECONDS = 2.0
#: The only headers a request carries to another origin: nothing that signs, identifies or names a tenant.
_CROSS_ORIGIN_HEADERS = frozenset({"user-agent", "accept", "accept-encoding", "accept-language"})
_BODY_ARGUMENTS = ("data", "json", "files")


_QUERY = re.compile(r"\?\S*")


def without_query_strings(text: str) -> str:
    """The text with every query string left out: some providers put session tokens there."""
    return _QUERY.sub("?<query omitted>", text)


class _NoQueryStrings(logging.Filter):
    """urllib3 logs every request's URL at DEBUG, query string included, and some providers put session
    tokens there (Metric Insights' ``?token=``): keep the path, drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                without_query_strings(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_NoQueryStrings())


@dataclass(frozen=True)
class RetryBudget:
    """How much waiting one call may do before handing the problem to the state machine."""

    attempts: int = 3
    max_total_wait_seconds: float = 10.0
    base_backoff_seconds: float = 0.5


@dataclass(frozen=True)
class RetryNotice:
    """One retry about to happen, for whoever watches the client (``ProviderHttp.on_retry``).

    ``cause`` is in plain words and names no URL, header or credential: "vendor answered 429",
    "could not connect to the vendor".
    """

    action: str
    cause: str
    attempt: int  # the attempt about to be made: 2 for the first retry
    attempts: int  # the most this call makes
    wait_seconds: float
    status: int | None = None


# --------------------------------------------------------------------------------------------------
# Answers that are not a success


def error_for_response(response: requests.Response, action: str) -> ReportRelayError:
    """A typed error for a non-success answer, quoting the provider's own words."""
    status = response.status_code
    where = f"{action}: {response.request.method} {_path_of(response)} answered HTTP {status}"
    if status in REDIRECT_STATUSES or status == 300:
        return ProviderProtocolError(
            f"{where}, a redirect{_redirect_target_words(response)} that is not followed here"
        )
    if _looks_like_html(response):
        message = f"{where} with {_html_page_words(response)}"
    else:
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
    """The human part of an error body: common JSON error fields, else the text itself.

    An HTML page is not quoted (its markup says nothing): it is named as one, with its title.
    """
    if _looks_like_html(response):
        return _html_page_words(response)
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


def html_page_error(response: requests.Response, action: str) -> ProviderProtocolError | None:
    """The error for an answer that is an HTML page where JSON or a file was expected, else None.

    A sign-in page of an SSO proxy, or a web portal found at a wrong ``base_url``, answers 200 with HTML:
    saying so is what lets a person fix it. A body already read is checked for markup (some APIs label
    their JSON ``text/html``); a streamed one is judged by its Content-Type alone.
    """
    if not _is_html_type(response) or not (_is_streaming(response) or _looks_like_html(response)):
        return None
    where = f"{action}: {response.request.method} {_path_of(response)}"
    return ProviderProtocolError(f"{where} answered with {_html_page_words(response)}")


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


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.I | re.S)


def _is_html_type(response: requests.Response) -> bool:
    declared = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return declared in ("text/html", "application/xhtml+xml")


def _is_streaming(response: requests.Response) -> bool:
    return not getattr(response, "_content_consumed", True)


def _looks_like_html(response: requests.Response, *, read: bool = True) -> bool:
    """An HTML page: declared as HTML and, once read (``read`` reads a stream), starting with markup."""
    if not _is_html_type(response) or (_is_streaming(response) and not read):
        return False
    return (response.content or b"").lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def _html_page_words(response: requests.Response) -> str:
    title = ""
    if not _is_streaming(response):
        found = _TITLE.search((response.content or b"")[:65536])
        if found:
            text = " ".join(found.group(1).decode(response.encoding or "utf-8", "replace").split())[:100]
            title = f' ("{text}")' if text else ""
    return f"an HTML page{title}, perhaps a sign-in page: check base_url and auth"


def _redirect_target_words(response: requests.Response) -> str:
    location = response.headers.get("Location")
    if not location:
        return " without a Location"
    target = urljoin(response.url or response.request.url or "", location)
    return f" to {_origin(target) or 'an unreadable address'}{urlsplit(target).path}"


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


# --------------------------------------------------------------------------------------------------
# Origins and the addresses redirects may not reach


class Origin(NamedTuple):
    """Scheme, host and port: what a credential is bound to."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}.get(self.scheme)
        return f"{self.scheme}://{host}" if self.port == default else f"{self.scheme}://{host}:{self.port}"


def _origin(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.rstrip(".")
    return Origin(scheme, host, port or (443 if scheme == "https" else 80))


_NEVER_PRIVATE = (
    "Redirects to loopback, link-local, private or unspecified addresses are never followed when the "
    "connection's base_url is not on one"
)


def _private_destination(host: str, port: int) -> str | None:
    """Why a host may not be redirected to ("10.0.0.1, a private address. ..."), or None when it may.

    A name is resolved here and every address it has is checked; the connection is then made by urllib3,
    which resolves it again (a name that changes its answer in between is not caught).
    """
    kind = address_kind(host)
    if kind is not None:
        return f"{host}, {kind}. {_NEVER_PRIVATE}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return f"the name {host} could not be looked up, so the redirect is not followed"
    for *_, sockaddr in found:
        address = str(sockaddr[0])
        kind = address_kind(address)
        if kind is not None:
            return f"{host}, which resolves to {address}, {kind}. {_NEVER_PRIVATE}"
    return None


# --------------------------------------------------------------------------------------------------
# Connection-level failures, in plain words


def transport_error(
    error: requests.RequestException,
    *,
    action: str,
    method: str,
    url: str,
    timeout: float | tuple[float, float] | None,
) -> ReportRelayError:
    """A typed error naming the host, the port and the cause of a failure to talk to ``url``.

    Permanent (``ConfigurationError``): a name that does not resolve, a TLS handshake that fails.
    Never sent, safe to repeat (``ProviderUnavailable``): refused, unreachable, no connection in time.
    No answer in time (``ProviderTimeout``) and a connection that broke (``ProviderServerError``): the
    provider may have acted on the request.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "?").rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 443 if parts.scheme == "https" else 80
    where = f"{action}: {method} {parts.path or '/'}"
    peer = f"{host} port {port}"
    unreachable = f"{where} could not connect to {peer}"
    connect_seconds, read_seconds = _timeouts(timeout)
    causes = list(_causes(error))

    lookup = _first(causes, socket.gaierror)
    if lookup is not None:
        if lookup.errno == socket.EAI_AGAIN:
            return ProviderUnavailable(
                f"{unreachable}: the name {host} could not be looked up just now (a temporary DNS failure)"
            )
        return ConfigurationError(
            f"{unreachable}: name not found (DNS has no address for {host}); check the host name in base_url"
        )
    if isinstance(error, requests.exceptions.SSLError):
        return _tls_failure(causes, unreachable, host)
    if isinstance(error, requests.exceptions.ProxyError):
        return ProviderUnavailable(f"{unreachable} through the proxy: {_plain_cause(causes)}")
    if isinstance(error, requests.ConnectTimeout):
        return ProviderUnavailable(
            f"{unreachable}: timed out after {_seconds(connect_seconds)} connecting (connect timeout); "
            "a firewall may be dropping the connection: check the host and port, and that the provider "
            "admits this network"
        )
    if isinstance(error, requests.Timeout):
        return ProviderTimeout(
            f"{where} got no answer in time: {peer} accepted the connection but sent no answer within "
            f"{_seconds(read_seconds)} (read timeout)"
        )
    if _never_connected(error):
        return ProviderUnavailable(f"{unreachable}: {_plain_cause(causes)}")
    if isinstance(error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return ProviderServerError(f"{where} failed: the connection to {peer} broke ({_plain_cause(causes)})")
    return ProviderServerError(f"{where} failed: {type(error).__name__} talking to {peer}")


_TLS_VERSION_REASONS = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "VERSION_TOO_LOW",
        "VERSION_TOO_HIGH",
        "WRONG_SSL_VERSION",
        "UNKNOWN_PROTOCOL",
    }
)
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)


def _tls_failure(causes: list[BaseException], unreachable: str, host: str) -> ReportRelayError:
    failed = f"{unreachable}: TLS handshake failed"
    certificate = _first(causes, ssl.SSLCertVerificationError)
    if certificate is not None:
        detail = str(getattr(certificate, "verify_message", "") or certificate.reason or certificate)
        code = getattr(certificate, "verify_code", None)
        if code in (62, 64) or "match" in detail.lower():
            return ConfigurationError(
                f"{failed}: hostname mismatch (the server's certificate is not valid for {host}); "
                "check the host name in base_url"
            )
        if code in (9, 10) or "expired" in detail.lower() or "not yet valid" in detail.lower():
            return ConfigurationError(f"{failed}: the server's certificate is out of date ({detail})")
        return ConfigurationError(
            f"{failed}: certificate not trusted ({detail}); if the provider's certificate comes from a "
            "private CA, the connection must trust that CA: give its PEM as ca_bundle (turning verify_tls "
            "off is the last resort)"
        )
    problem = _first(causes, ssl.SSLError)
    reason = str(getattr(problem, "reason", "") or "") if problem is not None else ""
    if reason in _TLS_VERSION_REASONS:
        return ConfigurationError(
            f"{failed}: protocol version (the server and reportrelay have no TLS version in common; "
            "reportrelay needs TLS 1.2 or later)"
        )
    if reason in _NOT_TLS_REASONS:
        return ConfigurationError(
            f"{failed}: protocol version (the server did not answer in TLS, {reason.lower()}): "
            "is it plain http on this port? check the scheme and port in base_url"
        )
    if isinstance(problem, ssl.SSLEOFError | ssl.SSLZeroReturnError) or "EOF" in reason:
        return ProviderUnavailable(f"{failed}: the server closed the connection during the handshake")
    words = reason.lower().replace("_", " ") if reason else _plain_cause(causes)
    return ConfigurationError(f"{failed}: the handshake was refused ({words})")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and every error it wraps (urllib3 nests them in ``reason``, ``args`` and ``__cause__``)."""
    pending, seen = [error], set()
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(linked for linked in (current.__cause__, current.__context__) if linked is not None)


_E = TypeVar("_E", bound=BaseException)


def _first(causes: list[BaseException], kind: type[_E]) -> _E | None:
    return next((cause for cause in causes if isinstance(cause, kind)), None)


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused (nothing listens on that port, or a firewall refuses it)",
    errno.ECONNRESET: "the connection was reset",
    errno.ENETUNREACH: "network unreachable (no route from here to that address)",
    errno.EHOSTUNREACH: "host unreachable (no route from here to that host)",
    errno.ETIMEDOUT: "timed out",
    errno.EPIPE: "the server stopped reading",
}


def _plain_cause(causes: list[BaseException]) -> str:
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return _ERRNO_WORDS[errno.ECONNREFUSED]
        if isinstance(cause, OSError) and cause.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[cause.errno]
    names = {type(cause).__name__ for cause in causes}
    if "RemoteDisconnected" in names:
        return "the server closed the connection without answering"
    if "IncompleteRead" in names or "ChunkedEncodingError" in names:
        return "the answer was cut short"
    innermost = causes[-1] if causes else None
    return type(innermost).__name__ if innermost is not None else "unknown cause"


def _timeouts(timeout: float | tuple[float, float] | None) -> tuple[float | None, float | None]:
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


def _seconds(value: float | None) -> str:
    return "the time allowed" if value is None else f"{value:g} s"


def _never_connected(error: requests.RequestException) -> bool:
    """True when the TCP connection was never opened, so the provider cannot have seen the request."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)


# --------------------------------------------------------------------------------------------------
# The client


class _HopFailed(Exception):
    """A transport error on one hop of a request; ``after_answer`` when an earlier hop was answered."""

    def __init__(self, error: requests.RequestException, url: str, method: str, after_answer: bool) -> None:
        super().__init__(error)
        self.error = error
        self.url = url
        self.method = method
        self.after_answer = after_answer


@dataclass
class _Followed:
    """The last answer of a request and how it got there."""

    response: requests.Response
    hops: int
    credentials_sent: bool
    origin: Origin | None


def _no_redirect_target(response: requests.Response) -> None:
    return None


class ProviderHttp:
    """A provider's base URL, credentials, timeouts, redirect and retry rules, behind ``request``.

    The session never follows a redirect by itself, whoever uses it (the sign-in calls of
    ``reportrelay.auth`` share it): a redirect reaches the caller as the 3xx it is, unless ``request``
    follows it on the terms above.
    """

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        verify: bool | str = True,
        budget: RetryBudget = RetryBudget(),
        reauth_statuses: tuple[int, ...] = (401,),
        redirect_hosts: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        ends_at: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.session = session or requests.Session()
        if str(self.session.headers.get("User-Agent", "python-requests")).startswith("python-requests"):
            self.session.headers["User-Agent"] = USER_AGENT  # a session starts with requests' own
        # requests follows redirects unless told not to at every call; this makes "not" the only answer.
        self.session.get_redirect_target = _no_redirect_target  # type: ignore[method-assign]
        self.timeout = timeout
        self.verify = verify
        self.budget = budget
        self.reauth_statuses = reauth_statuses
        self.redirect_hosts = parse_redirect_hosts(redirect_hosts)
        base = _origin(self.base_url)
        # The sandbox and the tests live on loopback; a vendor on a public name never sends us there.
        self.local_base = base is not None and is_local_host(base.host)
        self._sleep = sleep
        #: When the calling function will be stopped (``time.monotonic()``): no attempt, wait or read
        #: timeout reaches past it, so a step ends with an error of its own instead of being killed.
        self.ends_at = ends_at
        #: Told of every retry before its wait (the workflow records them as the job's activity); a hook
        #: that fails is logged and never fails the request.
        self.on_retry: Callable[[RetryNotice], None] | None = None

    @classmethod
    def for_connection(
        cls,
        connection: Connection,
        auth: Auth,
        *,
        session: requests.Session | None = None,
        reauth_statuses: tuple[int, ...] = (401,),
        **overrides: Any,
    ) -> ProviderHttp:
        """A client with a connection's base URL, timeouts, TLS setting and allowed redirect hosts."""
        settings: dict[str, Any] = {
            "timeout": (connection.timeouts.connect_seconds, connection.timeouts.read_seconds),
            "verify": connection.verify_tls,
            "redirect_hosts": tuple(getattr(connection, "redirect_hosts", None) or ()),
            **overrides,
        }
        return cls(connection.base_url, auth, session=session, reauth_statuses=reauth_statuses, **settings)

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
        accept: tuple[int, ...] = (200, 201, 202, 204, 206),
        timeout: tuple[float, float] | None = None,
        html_ok: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one logical request; ``action`` names it in errors ("queue export", "check status").

        ``html_ok`` says whether an HTML page is a fine answer. By default it is not for a body read
        whole (JSON is expected) and is for a stream (a report may be HTML): a download of a format
        that is not HTML should pass ``html_ok=False``.
        """
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        if html_ok is None:
            html_ok = stream
        extra_headers = kwargs.pop("headers", None) or {}
        limits = timeout or self.timeout
        waited = 0.0
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            limits = self._within_time_left(timeout or self.timeout, action, attempt)
            try:
                followed = self._follow(
                    method, self.url(path), action, extra_headers, limits, stream, accept, kwargs
                )
            except _HopFailed as hop:
                failure = transport_error(
                    hop.error, action=action, method=hop.method, url=hop.url, timeout=limits
                )
                if not failure.retryable:
                    raise failure from None  # a name not found or a TLS handshake refused: fail in seconds
                never_sent = isinstance(failure, ProviderUnavailable) and not hop.after_answer
                pause = self._backoff(attempt, None, waited)
                if (idempotent or never_sent) and pause is not None:
                    waited += pause
                    self._pause(pause, action, attempt, cause=_transport_words(failure))
                    continue
                raise _as_retryable_as_it_is(failure, idempotent, taken=hop.after_answer) from None
            response = followed.response
            if response.status_code in accept:
                expect_no_html = not html_ok and response.status_code < 300
                problem = html_page_error(response, action) if expect_no_html else None
                if problem is None:
                    return response
                response.close()
                raise problem
            if (
                response.status_code in self.reauth_statuses
                and followed.credentials_sent
                and (followed.hops == 0 or idempotent)
                and not renewed
                and self.auth.renew()
            ):
                renewed = True
                response.close()
                continue
            failure = error_for_response(response, action)
            if response.status_code in self.reauth_statuses and not isinstance(failure, ProviderAuthFailed):
                failure = ProviderAuthFailed(f"{failure}; check the connection's credentials")
            if not followed.credentials_sent:
                failure = _amended(
                    failure,
                    f"{failure} (after a redirect to {followed.origin}, which is sent no credentials)",
                )
            response.close()
            # Only the first hop's "nothing was done" counts: after a redirect, the first request was taken.
            not_processed = response.status_code in (429, 503) and followed.hops == 0
            retry_after = failure.retry_after if isinstance(failure, ProviderThrottled) else None
            if isinstance(failure, ProviderServerError | ProviderUnavailable | ProviderThrottled) and (
                idempotent or not_processed
            ):
                pause = self._backoff(attempt, retry_after, waited)
                if pause is not None:
                    waited += pause
                    cause = f"vendor answered {response.status_code}"
                    self._pause(pause, action, attempt, cause=cause, status=response.status_code)
                    continue
            raise _as_retryable_as_it_is(
                failure, idempotent, gateway=response.status_code in (502, 504), taken=followed.hops > 0
            )

    def _follow(
        self,
        method: str,
        url: str,
        action: str,
        extra_headers: Mapping[str, str],
        timeout: tuple[float, float],
        stream: bool,
        accept: tuple[int, ...],
        arguments: dict[str, Any],
    ) -> _Followed:
        """Send the request and follow its redirects (at most ``MAX_REDIRECTS``) on the terms above."""
        first = _origin(url)
        headers = dict(extra_headers)
        credentials = True
        hops = 0
        while True:
            try:
                if credentials:
                    response = self.session.request(
                        method,
                        url,
                        headers={**headers, **self.auth.headers()},
                        timeout=timeout,
                        verify=self.verify,
                        stream=stream,
                        allow_redirects=False,
                        **arguments,
                    )
                else:
                    response = self._send_without_credentials(method, url, headers, timeout, stream)
            except requests.RequestException as error:
                raise _HopFailed(error, url, method, after_answer=hops > 0) from None
            status = response.status_code
            location = response.headers.get("Location") if status in REDIRECT_STATUSES else None
            if not location or status in accept:
                return _Followed(response, hops, credentials, _origin(url))
            response.close()
            hops += 1
            target = urljoin(response.url or url, location.strip())
            where = f"{action}: {method} {urlsplit(url).path or '/'}"
            if hops > MAX_REDIRECTS:
                raise ProviderProtocolError(
                    f"{where} was redirected more than {MAX_REDIRECTS} times (last to {_origin(target)}); "
                    "reportrelay gives up rather than loop"
                )
            next_method = _method_after_redirect(status, method)
            keeps_body = status in (307, 308) and any(
                arguments.get(name) is not None for name in _BODY_ARGUMENTS
            )
            same_origin = self._check_redirect(where, status, first, url, target, keeps_body)
            if not same_origin and credentials:
                logger.info(
                    "following a redirect to another origin, without credentials",
                    extra={"from_origin": str(first), "to_origin": str(_origin(target))},
                )
            credentials = credentials and same_origin
            # The Location is the whole next URL: query parameters are not added again.
            arguments = {key: value for key, value in arguments.items() if key != "params"}
            if not keeps_body:
                arguments = {key: value for key, value in arguments.items() if key not in _BODY_ARGUMENTS}
                headers = {key: value for key, value in headers.items() if key.lower() != "content-type"}
            method, url = next_method, target

    def _check_redirect(
        self,
        where: str,
        status: int,
        first: Origin | None,
        source_url: str,
        target_url: str,
        keeps_body: bool,
    ) -> bool:
        """Raise when a redirect may not be followed; True when it stays on the request's own origin."""
        source, target = _origin(source_url), _origin(target_url)
        if target is None:
            raise ProviderProtocolError(
                f"{where} was redirected (HTTP {status}) from {source} to an address that is not http or "
                "https; the redirect is not followed"
            )
        moved = f"{where} was redirected (HTTP {status}) from {source} to {target}"
        was_https = "https" in (getattr(source, "scheme", None), getattr(first, "scheme", None))
        if target.scheme == "http" and was_https:
            raise ProviderProtocolError(
                f"{moved}: a redirect from https to http is never followed (the request would travel "
                "unencrypted)"
            )
        if target == first:
            return True
        if not self.local_base:
            problem = _private_destination(target.host, target.port)
            if problem is not None:
                raise ProviderProtocolError(f"{moved}: {problem}")
        if not self._allows(target):
            raise ProviderProtocolError(
                f"{moved}, another origin, which this connection does not allow. If {target.host} is the "
                f"provider's, add it to the connection's redirect_hosts (e.g. \"redirect_hosts\": "
                f'["{target.host}"]): it is then followed without credentials. If it is a sign-in page, '
                "check base_url and auth"
            )
        if keeps_body:
            raise ProviderProtocolError(
                f"{moved}, another origin, keeping the request body: a body is re-sent only to the "
                "request's own origin"
            )
        return False

    def _allows(self, target: Origin) -> bool:
        return bool({(target.host, None), (target.host, target.port)} & self.redirect_hosts)

    def _send_without_credentials(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeout: tuple[float, float],
        stream: bool,
    ) -> requests.Response:
        """A request to another origin: no Authorization, auth header, cookie or custom header, no body.

        It is prepared outside the session, so the session's cookies and netrc never join it and the
        other origin's cookies never join the session; the session's connection pools still serve it.
        """
        wanted = {**self.session.headers, **headers}
        safe = {name: value for name, value in wanted.items() if name.lower() in _CROSS_ORIGIN_HEADERS}
        prepared = requests.Request(method, url, headers=safe).prepare()
        settings = self.session.merge_environment_settings(prepared.url, {}, stream, self.verify, None)
        response = self.session.get_adapter(prepared.url or url).send(prepared, timeout=timeout, **settings)
        if not stream:
            _ = response.content  # read now, as requests does, so a broken body fails here
        return response

    def _within_time_left(
        self, limits: tuple[float, float], action: str, attempt: int
    ) -> tuple[float, float]:
        """The timeouts of the next attempt, cut to the function's time left; an error when none is left."""
        if self.ends_at is None:
            return limits
        left = self.ends_at - time.monotonic() - STOP_MARGIN_SECONDS
        if left < MIN_ATTEMPT_SECONDS:
            raise self._out_of_time(action, attempt)
        return (min(limits[0], left), min(limits[1], left))

    def _tell_retry(self, action: str, cause: str, attempt: int, wait: float, status: int | None) -> None:
        if self.on_retry is None:
            return
        notice = RetryNotice(action, cause, attempt + 1, self.budget.attempts, wait, status)
        try:
            self.on_retry(notice)
        except Exception as error:  # a watcher's trouble is not the request's
            logger.warning("retry hook failed", extra={"error": type(error).__name__})

    def _pause(
        self, seconds: float, action: str, attempt: int, *, cause: str, status: int | None = None
    ) -> None:
        """Wait before the next attempt, unless the wait would outlast the function's time; the retry
        hook hears of it first."""
        if self.ends_at is not None and time.monotonic() + seconds > self.ends_at - STOP_MARGIN_SECONDS:
            raise self._out_of_time(action, attempt + 1)
        self._tell_retry(action, cause, attempt, seconds, status)
        self._sleep(seconds)

    @staticmethod
    def _out_of_time(action: str, attempt: int) -> ProviderUnavailable:
        # Nothing more was sent: a retry of the step (a new invocation, with its own time) is safe.
        plural = "s" if attempt != 2 else ""
        tried = f"after {attempt - 1} attempt{plural}" if attempt > 1 else "before calling"
        return ProviderUnavailable(
            f"{action}: stopped {tried}, as the step's function is about to reach its time limit; "
            "the step will be retried"
        )

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


def _transport_words(failure: ReportRelayError) -> str:
    """A connection-level failure in a few plain words, for a retry notice."""
    if isinstance(failure, ProviderTimeout):
        return "the vendor sent no answer in time"
    if isinstance(failure, ProviderUnavailable):
        return "could not connect to the vendor"
    return "the connection to the vendor broke"


def _method_after_redirect(status: int, method: str) -> str:
    """303 (and, as browsers do, a POST's 301/302) continues with GET; 307/308 keep the method."""
    upper = method.upper()
    if status == 303 and upper != "HEAD":
        return "GET"
    if status in (301, 302) and upper == "POST":
        return "GET"
    return upper


def _amended(failure: ReportRelayError, message: str) -> ReportRelayError:
    if isinstance(failure, ProviderThrottled):
        return ProviderThrottled(message, failure.retry_after)
    return type(failure)(message)


def _as_retryable_as_it_is(
    failure: ReportRelayError, idempotent: bool, *, gateway: bool = False, taken: bool = False
) -> ReportRelayError:
    """Every step, Submit included, repeats ``ProviderUnavailable``: give that name to exactly the failures
    that are safe to repeat. A request that changes nothing is; a POST behind a gateway that answered
    502/504 is not, since the provider may have queued the report before the gateway gave up; nor is a
    POST the provider answered with a redirect (``taken``), whatever the redirect's target then did."""
    if idempotent and isinstance(failure, ProviderServerError | ProviderTimeout):
        return ProviderUnavailable(f"{failure} (the request changes nothing, so it is safe to repeat)")
    if not idempotent and taken and isinstance(failure, ProviderUnavailable | ProviderThrottled):
        return ProviderServerError(
            f"{failure} (after a redirect: the provider may have taken the request before redirecting it)"
        )
    if not idempotent and gateway and isinstance(failure, ProviderUnavailable):
        return ProviderServerError(f"{failure} (a gateway's answer: the provider may have taken the request)")
    return failure
