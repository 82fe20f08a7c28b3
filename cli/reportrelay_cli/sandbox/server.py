"""The shared base of every provider simulator: routing, the request log, fault knobs and file answers.

A simulator is a subclass of ``Simulator`` that declares its endpoints with ``@route`` and answers with
the helpers below. The bad-day behaviour every real provider shows (429, 5xx, slow answers, answers that
never come in time, downloads cut short, reset or truncated, files that change between downloads, slow
links, tokens that expire mid-job) is applied here, once, and so is what a file server adds to a download
(a strong ETag and, when asked, HTTP range requests), so a subclass only marks which routes are sign-in
calls and which are downloads (and, if it issues tokens, how to revoke them), and its own code reads like
the vendor document it imitates.

Standard library only: the simulators run in tests, in the demo and next to the local runner.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import random
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NamedTuple, Self, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


# --------------------------------------------------------------------------------------------------
# Fault knobs


@dataclass
class Faults:
    """Bad-day behaviour shared by every simulator, changeable while it runs.

    The counters count down: ``throttle_next = 2`` makes the next two API requests answer 429, then
    the simulator behaves again. When several are set, a request is delayed by ``slow_seconds``, then
    held past the client's timeout (``stall_next``), then throttled, then refused with a 5xx, in that
    order. Sign-in routes are spared unless ``include_sign_in`` is set, so a throttling test does not also
    become an authentication test; ``only_paths`` narrows these request faults further to the paths a
    test aims at (the status calls, say), leaving the others alone.

    The download faults apply to successful answers of download routes only, one counter each:
    ``break_downloads_next`` sends half the body then closes and resets the connection,
    ``truncate_downloads_next`` announces the whole Content-Length, sends part and closes cleanly (a body
    shorter than announced), and ``reset_downloads_next`` resets the connection (TCP RST) mid-body.
    ``expire_tokens_after`` revokes every token the simulator issued once that many more API requests
    have been answered, as a token expiring in the middle of a job would (``Simulator.revoke_tokens``).

    Every successful answer of a download route carries a strong ``ETag`` (the first 32 hex digits of the
    body's SHA-256) unless its handler set one. ``serve_ranges`` makes downloads answer HTTP range requests
    as a file server does (RFC 9110 section 14): the 200 says ``Accept-Ranges: bytes``, a GET with a single
    ``Range: bytes=N-``, ``bytes=N-M`` or ``bytes=-N`` gets 206 with that slice and its ``Content-Range``,
    a start beyond the end gets 416 with ``Content-Range: bytes */total``, and an ``If-Range`` that is not
    exactly the current ETag (an HTTP date never is: no Last-Modified is sent) gets the whole file, 200;
    several ranges, or a Range that cannot be parsed, get the whole file too. Without it the Range header is
    ignored, as by a server without range support. ``change_downloads_next`` makes the next N download
    answers serve another version of the file (the same length, its last byte flipped, so another ETag;
    ``served`` keeps the original's digest). ``download_bytes_per_second`` paces download bodies (200 and
    206) to that rate, in pieces of at most 64 KiB, as a slow link would; it is read when a body starts.
    The cut faults above cut a 206 too, after half of its slice. ``Simulator.download_bytes_sent`` counts
    the download body bytes actually written.
    """

    throttle_next: int = 0
    throttle_retry_after: int | None = 1  # seconds sent in Retry-After; None sends a 429 without it
    server_errors_next: int = 0  # the next N API requests answer ``server_error_status``
    server_error_status: int = 503
    break_downloads_next: int = 0  # the next N successful downloads are cut half-way
    truncate_downloads_next: int = 0  # ... send fewer bytes than their Content-Length, then end
    reset_downloads_next: int = 0  # ... are reset mid-body
    stall_next: int = 0  # the next N API requests are answered only after ``stall_seconds``
    stall_seconds: float = 5.0
    slow_seconds: float = 0.0  # delay before answering each API request
    expire_tokens_after: int | None = None  # revoke issued tokens after this many more API answers
    sign_in_pages_next: int = 0  # the next N API requests get an SSO proxy's HTML sign-in page (200)
    only_paths: str | None = None  # regex (re.search) of the paths the request faults above apply to
    include_sign_in: bool = False  # apply throttle / 5xx / stall / slow to sign-in routes too
    serve_ranges: bool = False  # downloads answer Range requests (206 / 416) and say Accept-Ranges: bytes
    change_downloads_next: int = 0  # the next N successful downloads serve another version of the file
    download_bytes_per_second: float | None = None  # pace download bodies to this rate; None: full speed


# --------------------------------------------------------------------------------------------------
# Requests, responses and errors


@dataclass
class Request:
    """What a route handler sees: the parsed request, with header names in lower case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON; a missing or malformed body is the client's fault, so it answers 400."""
        if not self.body:
            raise HttpError(400, "the request has no body; a JSON body is required")
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(400, "the request body is not valid JSON") from None

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` fields (blank values kept)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


Cut = Literal["break", "truncate", "reset"]

#: What an SSO proxy in front of a vendor answers a request without its session cookie.
SIGN_IN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in - Corporate SSO</title></head>"
    b'<body><form method="post" action="/login"><input name="username"><input name="password" '
    b'type="password"></form></body></html>\n'
)


@dataclass
class Response:
    """A complete answer. ``cut`` sends the full Content-Length but only half the body, then:
    ``break`` closes and resets the connection, ``truncate`` closes it cleanly, ``reset`` resets it.
    ``download`` marks a download route's file body (200 or 206): paced by
    ``Faults.download_bytes_per_second`` and counted in ``Simulator.download_bytes_sent``."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: Cut | None = None
    download: bool = False


class HttpError(Exception):
    """Raised by a handler to answer an error; the simulator shapes the body in its vendor's style."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class LoggedRequest(NamedTuple):
    """One request as the simulator saw it. Bodies are never kept: they may carry passwords."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})


def empty_response(status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An answer without a body, for vendors whose calls return nothing useful."""
    return Response(status, b"", dict(headers or {}))


def file_response(content: bytes, content_type: str, filename: str, status: int = 200) -> Response:
    """A downloadable file: Content-Type, an attachment Content-Disposition and (when sent) Content-Length."""
    headers = {"Content-Type": content_type, "Content-Disposition": _attachment(filename)}
    return Response(status, content, headers)


def broken(response: Response, how: Cut = "break") -> Response:
    """The same answer, but the connection is cut after half the body (see ``Response.cut``)."""
    return replace(response, cut=how)


def _attachment(filename: str) -> str:
    if filename.isascii():
        return f'attachment; filename="{filename}"'
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


# --------------------------------------------------------------------------------------------------
# Deterministic report content


def deterministic_bytes(seed: str, size: int, prefix: bytes = b"") -> bytes:
    """``size`` bytes that are always the same for the same seed, so a stored copy can be checked."""
    if size <= len(prefix):
        return prefix[:size]
    return prefix + random.Random(seed).randbytes(size - len(prefix))


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# --------------------------------------------------------------------------------------------------
# Routes


@dataclass(frozen=True)
class Route:
    """One endpoint: a method and a path pattern with ``{name}`` placeholders, bound to a handler."""

    method: str
    pattern: str
    handler: str
    download: bool = False
    sign_in: bool = False

    def match(self, path: str) -> dict[str, str] | None:
        found = _pattern_regex(self.pattern).fullmatch(path)
        return {name: unquote(value) for name, value in found.groupdict().items()} if found else None


@functools.lru_cache(maxsize=256)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", pattern)
    # re.split alternates literal text and placeholder names.
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts))
    return re.compile(regex)


Handler = TypeVar("Handler", bound=Callable[..., Response])
_ROUTES_ATTRIBUTE = "_sandbox_routes"


def route(
    method: str, pattern: str, *, download: bool = False, sign_in: bool = False
) -> Callable[[Handler], Handler]:
    """Declare a handler method ``(self, request: Request) -> Response`` for one endpoint.

    ``download`` routes are the ones ``Faults.break_downloads_next`` cuts; ``sign_in`` routes are spared
    the other faults unless ``Faults.include_sign_in`` is set.
    """

    def mark(handler: Handler) -> Handler:
        marks = handler.__dict__.setdefault(_ROUTES_ATTRIBUTE, [])
        marks.append((method.upper(), pattern, download, sign_in))
        return handler

    return mark


# --------------------------------------------------------------------------------------------------
# The simulator


class Simulator:
    """An HTTP server on 127.0.0.1 imitating one provider, started in a daemon thread.

    Use it as a context manager (``with DevExpressSimulator() as sim: sim.base_url``) or call
    ``start()`` / ``stop()``. Everything tests read or change (``faults``, ``served``, the request log,
    a subclass's knobs) may be touched from another thread while it runs.

    ``clock`` is the vendor's wall clock (seconds since the epoch): every simulated lifetime (a report's
    generation, a token's, a session's, a link's) is measured on it, so a test can move it forward instead
    of sleeping. Only the pacing of slow links keeps to real time, as a network would.
    """

    name = "simulator"
    #: Headers copied into the request log (only those present). Subclasses add their own.
    logged_headers: tuple[str, ...] = ("Authorization", "Content-Type", "Accept", "Range", "If-Range")

    def __init__(
        self, *, port: int = 0, faults: Faults | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.port = port
        self.faults = faults if faults is not None else Faults()
        self.clock = clock
        #: id or filename -> SHA-256 hex of the content served under it.
        self.served: dict[str, str] = {}
        #: Body bytes written for download routes' files (200 and 206), cut bodies counting what was sent.
        self.download_bytes_sent = 0
        #: Guards the log, the fault counters and any state a subclass keeps.
        self.lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._collect_routes()

    # ---- lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self.port), _RequestHandler)
        server.simulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def companions(self) -> tuple[Simulator, ...]:
        """Other servers this one starts and stops with itself (a file host on an origin of its own)."""
        return ()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the {self.name} simulator is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- the request log

    @property
    def request_log(self) -> list[LoggedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self.lock:
            return list(self._log)

    def calls(self, method: str | None = None, pattern: str | None = None) -> list[LoggedRequest]:
        """Logged requests with this method and/or a path matching a ``{name}`` pattern."""
        regex = _pattern_regex(pattern) if pattern is not None else None
        return [
            entry
            for entry in self.request_log
            if (method is None or entry.method == method.upper())
            and (regex is None or regex.fullmatch(entry.path))
        ]

    # ---- helpers for subclasses

    def record_served(self, key: str, content: bytes) -> str:
        """Remember what was served under ``key`` so a stored copy can be compared; returns the SHA-256."""
        digest = sha256_hex(content)
        with self.lock:
            self.served[key] = digest
        return digest

    def error_body(self, status: int, message: str) -> Any:
        """The JSON body of an error answer. Subclasses override it to match their vendor's shape."""
        return {"status": status, "message": message}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return json_response(self.error_body(status, message), status, headers)

    def revoke_tokens(self) -> None:
        """Make every token issued so far stop working, as if it expired mid-job.

        Simulators that issue or accept tokens override this; ``Faults.expire_tokens_after`` calls it.
        """
        raise NotImplementedError(f"the {self.name} simulator has no tokens to revoke")

    # ---- dispatch (called from the server's handler threads)

    def _collect_routes(self) -> list[Route]:
        routes = []
        for attribute in dir(type(self)):
            marks = getattr(getattr(type(self), attribute), _ROUTES_ATTRIBUTE, [])
            for method, pattern, download, sign_in in marks:
                routes.append(Route(method, pattern, attribute, download=download, sign_in=sign_in))
        # Literal paths before patterns with placeholders, so /export/status is not read as /{id}/status.
        return sorted(routes, key=lambda r: r.pattern.count("{"))

    def _take(self, counter: str, owner: object | None = None) -> bool:
        """Use up one unit of a countdown knob; True when this request is the one to fail.

        The counter is an attribute of ``owner``: ``self.faults`` by default, or the simulator itself for
        the knobs a subclass keeps (Torus's ``throttle_queue_next``, say).
        """
        target = self.faults if owner is None else owner
        with self.lock:
            remaining = getattr(target, counter)
            if remaining <= 0:
                return False
            setattr(target, counter, remaining - 1)
            return True

    def _record(self, request: Request) -> None:
        wanted = {name.lower(): name for name in self.logged_headers}
        headers = {wanted[key]: value for key, value in request.headers.items() if key in wanted}
        with self.lock:
            self._log.append(LoggedRequest(request.method, request.path, dict(request.query), headers))

    def _respond(self, request: Request) -> Response:
        """Route the request, apply the fault knobs and run the handler; never raises."""
        self._record(request)
        allowed = []
        for candidate in self._routes:
            params = candidate.match(request.path)
            if params is None:
                continue
            if candidate.method != request.method:
                allowed.append(candidate.method)
                continue
            request.params = params
            return self._run(candidate, request)
        if allowed:
            return self.error(405, f"{request.method} is not allowed here", {"Allow": ", ".join(allowed)})
        return self.error(404, f"no such endpoint: {request.method} {request.path}")

    def _run(self, chosen: Route, request: Request) -> Response:
        faults = self.faults
        if (not chosen.sign_in or faults.include_sign_in) and self._aimed_at(request.path):
            if faults.slow_seconds > 0:
                time.sleep(faults.slow_seconds)
            if self._take("stall_next"):
                time.sleep(faults.stall_seconds)  # the client has given up by now; the answer goes nowhere
            if self._take("throttle_next"):
                retry_after = faults.throttle_retry_after
                headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
                return self.error(429, "Too many requests; slow down", headers)
            if self._take("server_errors_next"):
                status = faults.server_error_status
                message = "Service temporarily unavailable" if status == 503 else "An internal error occurred"
                return self.error(status, message)
            if self._take("sign_in_pages_next"):
                return Response(200, SIGN_IN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        try:
            response: Response = getattr(self, chosen.handler)(request)
        except HttpError as failure:
            response = self.error(failure.status, failure.message, failure.headers)
        except Exception as bug:  # a simulator bug should show up in the test, not hang it
            response = self.error(500, f"simulator error in {chosen.handler}: {bug!r}")
        if not chosen.sign_in:
            self._count_towards_token_expiry()
        if chosen.download and response.status == 200:
            response = self._as_download(request, response)
            if response.status == 416:
                return response
            for counter, how in _DOWNLOAD_CUTS:
                if self._take(counter):
                    return broken(response, how)
        return response

    def _as_download(self, request: Request, response: Response) -> Response:
        """A download route's 200 as this simulator serves files: another version while
        ``change_downloads_next`` lasts, a strong ETag, and with ``serve_ranges`` the part a Range asks for
        (RFC 9110 sections 13.2.2 and 14)."""
        body = response.body
        headers = dict(response.headers)
        changed = self._take("change_downloads_next")
        if changed:
            body = _other_version(body)
        own_etag = next((name for name in headers if name.lower() == "etag"), None)
        if own_etag is not None and changed:
            del headers[own_etag]  # the handler's tag names the version it built, not this one
            own_etag = None
        if own_etag is None:
            headers["ETag"] = f'"{sha256_hex(body)[:32]}"'
        etag = headers[own_etag or "ETag"]
        whole = Response(200, body, headers, download=True)
        if not self.faults.serve_ranges or request.method != "GET":
            return whole  # Range is defined for GET only; without range support it is ignored
        headers["Accept-Ranges"] = "bytes"
        wanted = _byte_range(request.header("range"), len(body))
        if wanted is None or not _if_range_holds(request.header("if-range"), etag):
            return whole
        if wanted == "unsatisfiable":
            message = f"the requested range is beyond the end of the file ({len(body)} bytes)"
            return self.error(416, message, {"Content-Range": f"bytes */{len(body)}"})
        start, end = wanted
        part_headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(body)}"}
        return Response(206, body[start : end + 1], part_headers, download=True)

    def _aimed_at(self, path: str) -> bool:
        pattern = self.faults.only_paths
        return pattern is None or re.search(pattern, path) is not None

    def _count_towards_token_expiry(self) -> None:
        with self.lock:
            remaining = self.faults.expire_tokens_after
            if remaining is None:
                return
            remaining -= 1
            self.faults.expire_tokens_after = remaining if remaining > 0 else None
            if remaining <= 0:
                self.revoke_tokens()


_DOWNLOAD_CUTS: tuple[tuple[str, Cut], ...] = (
    ("break_downloads_next", "break"),
    ("truncate_downloads_next", "truncate"),
    ("reset_downloads_next", "reset"),
)

_RANGE = re.compile(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)", re.IGNORECASE)


def _byte_range(header: str | None, total: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The first and last byte a single-range ``Range`` header asks for, clamped to the file;
    ``"unsatisfiable"`` when it starts beyond the end; None when there is none to honour (no header,
    several ranges, another unit or a malformed one), so the whole file is sent."""
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None
        if start >= total:
            return "unsatisfiable"
        return start, min(int(last), total - 1) if last else total - 1
    if not last:
        return None
    suffix = int(last)  # bytes=-N: the last N bytes
    if suffix == 0 or total == 0:
        return "unsatisfiable"
    return max(0, total - suffix), total - 1


def _if_range_holds(header: str | None, etag: str) -> bool:
    """True without If-Range, or when it is exactly the current strong ETag (RFC 9110 section 13.1.5);
    a date never holds, as no Last-Modified is sent, and a weak tag never matches strongly."""
    if header is None:
        return True
    return not etag.startswith("W/") and header.strip() == etag


def _other_version(body: bytes) -> bytes:
    """The same file as changed since: the same length with the last byte flipped (one byte if empty)."""
    if not body:
        return b"\xff"
    return body[:-1] + bytes([body[-1] ^ 0xFF])


class TokenIssuingSimulator(Simulator):
    """A simulator whose sign-in route issues random bearer tokens that expire (DevExpress, Clinical One,
    myreports): ``new_token`` when signing in, ``token_is_live`` when authorizing a call."""

    def __init__(
        self, *, port: int = 0, faults: Faults | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        self.tokens_issued = 0
        self.tokens_refused = 0  # live-looking tokens refused as unknown, expired or revoked
        self._issued_tokens: dict[str, float] = {}  # bearer token -> expiry on ``clock``

    def new_token(self, lifetime: float) -> str:
        """A random bearer token, live for ``lifetime`` seconds unless revoked first."""
        token = secrets.token_urlsafe(32)
        with self.lock:
            self._issued_tokens[token] = self.clock() + lifetime
            self.tokens_issued += 1
        return token

    def token_is_live(self, token: str) -> bool:
        """True for a token issued here that has neither expired nor been revoked; a refusal is counted."""
        with self.lock:
            expires_at = self._issued_tokens.get(token)
            if expires_at is not None and self.clock() < expires_at:
                return True
            self.tokens_refused += 1
            return False

    def revoke_tokens(self) -> None:
        with self.lock:
            self._issued_tokens.clear()

    @property
    def valid_tokens(self) -> set[str]:
        now = self.clock()
        with self.lock:
            return {token for token, expires_at in self._issued_tokens.items() if expires_at > now}


#: Sent with every token endpoint answer, success or error (RFC 6749 sections 5.1 and 5.2).
TOKEN_ANSWER_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_answer(body: Any) -> Response:
    """A token endpoint's success: 200 with the JSON body and the no-store headers."""
    return json_response(body, headers=TOKEN_ANSWER_HEADERS)


def oauth_error(
    code: str, description: str | None = None, *, status: int = 400, headers: dict[str, str] | None = None
) -> Response:
    """A token endpoint's error (RFC 6749 section 5.2): ``{"error"}``, plus ``error_description`` when
    given, with the no-store headers and then ``headers`` (a 401's ``WWW-Authenticate``, say)."""
    body = {"error": code} if description is None else {"error": code, "error_description": description}
    return json_response(body, status, {**TOKEN_ANSWER_HEADERS, **(headers or {})})


def basic_credentials(header: str | None, *, strict: bool = True) -> tuple[str, str] | None:
    """The user and password (a client's id and secret) of an HTTP Basic ``Authorization`` header.

    None when the header is missing or not Basic, or its value is not base64 of UTF-8 text. ``strict``
    refuses characters outside the base64 alphabet; otherwise they are skipped, as ``b64decode`` does.
    """
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=strict).decode().partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return None
    return user, password


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: Simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (after a stall, say) is expected here; anything else is reported."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


WRITE_PIECE = 1024 * 1024
PACED_PIECE = 64 * 1024  # the largest piece of a paced body, so the pace stays steady


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services; every answer has a Content-Length
    server: _Server
    timeout = 30  # idle keep-alive connections end, so no handler thread lingers long after stop()

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the request log instead of stderr."""

    def _handle(self) -> None:
        split = urlsplit(self.path)
        request = Request(
            method=self.command.upper(),
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self._read_body(),
        )
        self._send(self.server.simulator._respond(request))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        body = response.body if response.cut is None else response.body[: len(response.body) // 2]
        if not self._write(body, download=response.download) or response.cut is None:
            return
        self.wfile.flush()
        self.close_connection = True
        if response.cut == "break":
            self._cut_connection()
        elif response.cut == "truncate":
            self._end_early()
        else:
            self._reset_connection()

    def _write(self, body: bytes, *, download: bool = False) -> bool:
        """Send the body a piece at a time: the handler's timeout then bounds a stalled client, not how
        long a slow one takes to read a large file (one sendall must finish within the timeout).

        A download's body is counted in ``download_bytes_sent`` and paced to
        ``Faults.download_bytes_per_second``: before each piece it waits until sending it keeps the bytes
        sent so far within the rate. False when the client hung up part-way (the connection then ends;
        the piece that failed is not counted, as how much of it left is unknown).
        """
        rate = self.server.simulator.faults.download_bytes_per_second if download else None
        if rate is not None and rate <= 0:
            rate = None
        # About twenty pieces a second, so a slow pace is steady rather than bursts and long waits.
        piece = WRITE_PIECE if rate is None else max(1, min(PACED_PIECE, int(rate / 20)))
        view = memoryview(body)
        started = time.monotonic()
        for start in range(0, len(view), piece):
            chunk = view[start : start + piece]
            if rate is not None:
                wait = started + (start + len(chunk)) / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            # Counted before it is written: the client may read the last byte before sendall returns,
            # and a test reading the counter once its body is in must find every byte counted.
            self._count(download, len(chunk))
            try:
                self.wfile.write(chunk)
            except ConnectionError:  # BrokenPipe, ConnectionReset, ConnectionAborted: the client left
                self._count(download, -len(chunk))
                self.close_connection = True
                return False
        return True

    def _count(self, download: bool, size: int) -> None:
        if download:
            simulator = self.server.simulator
            with simulator.lock:
                simulator.download_bytes_sent += size

    def _cut_connection(self) -> None:
        """End the connection mid-body, as a failing proxy or server would.

        Half-close first and give the client a moment to read what was sent, so it reliably sees a
        truncated body rather than a reset that may discard the headers; then reset the connection.
        """
        self._end_early()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _end_early(self) -> None:
        """Close cleanly (FIN) although fewer bytes were sent than Content-Length announced."""
        connection = self.connection
        try:
            connection.shutdown(socket.SHUT_WR)
            connection.settimeout(2.0)
            while connection.recv(65536):
                pass
        except OSError:
            pass

    def _reset_connection(self) -> None:
        """Abort the connection with a TCP RST after a pause in which the client starts reading."""
        time.sleep(0.3)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # Close the descriptor now: the server's own shutdown would send a FIN before the reset.
            os.close(self.connection.detach())


# --------------------------------------------------------------------------------------------------
# Command-line entry


def run_simulators(
    simulators: Iterable[Simulator],
    *,
    announce: Callable[[str, str], None],
    until: threading.Event | None = None,
) -> None:
    """Start every simulator, announce ``(name, base_url)`` for each, and serve until Ctrl-C or SIGTERM.

    ``until`` lets a caller (or a test) stop the loop without a signal.
    """
    stop = until if until is not None else threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous: Any = None
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started: list[Simulator] = []
    try:
        for simulator in simulators:
            simulator.start()
            started.append(simulator)
            announce(simulator.name, simulator.base_url)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for simulator in reversed(started):
            simulator.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
