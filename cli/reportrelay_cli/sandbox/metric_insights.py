"""Metric Insights External Report Download API (MI v7.2.1+), as its document describes it (seed 001).

One endpoint, five states, all ``GET``:

    /api/element/id/{elementId}/segment/{dimensionId}/download/state/formats
        -> {"status": "OK", "formats": ["image", "pdf", "csv"]}
    .../state/init                        -> {"status": "OK", "token": "<URL-encoded token>"}
    .../state/run?token=&format=          -> {"status": "OK"} once the file is generated (may take 30 min)
    .../state/check?token=                -> {"status": "IN PROGRESS" | "READY" | "ERROR"}
    .../state/get?token=&format=          -> the file (Content-Disposition ``<element-name>.<ext>``),
                                             or {"status": "IN PROGRESS"} / {"status": "ERROR"}

Errors are ``{"status": "ERROR", "message": ...}`` with 400 (Invalid state, Invalid token, No downloads
available, Invalid format, Not implemented for this Element Type, Download failed), 403 (Element not
allowed) and 404 (Element not found).

What the simulator makes observable, because the adapter depends on it:
- Session tokens contain ``+``, ``/`` and ``=`` and are returned URL-encoded by ``init``; ``run``, ``check``
  and ``get`` accept only the exact token, so a client that double-encodes it (or sends it raw, where
  ``+`` reads as a space) gets ``400 Invalid token``.
- The file is generated *inside* the ``run`` request: while no ``run`` is being held open, nothing
  progresses and ``check`` keeps answering IN PROGRESS. (Before ``run`` the document is silent; the
  simulator answers IN PROGRESS, so a client that polls before its ``run`` arrives is not misled.)
- A session lives ``session_lifetime_seconds`` (5 minutes) after ``init``. Once it has expired, the file is
  discarded and every call with the token answers ``400 Download failed``.
- ``get`` works once: the session is consumed when the file is served, even if the download then breaks;
  the next ``get`` answers ``400 Invalid token``.
- Sessions are bound to the calling user and to the element and segment they were opened for.

Authentication (public docs, not the seed): ``POST /api/get_token/`` with JSON ``{application_id,
application_key, user}`` answers ``{token, expires}``, sent back as header ``Token: <token>``; or a
personal API token as ``Authorization: Bearer <token>``. An expired token of either kind is answered
``412 {"status": "ERROR", "message": "Session expired"}``.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

from reportrelay_cli.sandbox.server import (
    Faults,
    HttpError,
    Request,
    Response,
    Simulator,
    deterministic_bytes,
    file_response,
    json_response,
    route,
)

ENDPOINT = "/api/element/id/{elementId}/segment/{dimensionId}/download/state"
STATES = ("formats", "init", "run", "check", "get")


class FileKind(NamedTuple):
    """How one format key is served: plugin capability, file extension, content type, magic bytes."""

    capability: str
    extension: str
    content_type: str
    magic: bytes


_OOXML = "application/vnd.openxmlformats-officedocument"
#: The seed's "Supported File Formats" table.
FORMATS: dict[str, FileKind] = {
    "image": FileKind("IMAGE", "png", "image/png", b"\x89PNG\r\n\x1a\n"),
    "pdf": FileKind("PDF", "pdf", "application/pdf", b"%PDF-1.7\n"),
    "apdf": FileKind("APDF", "pdf", "application/pdf", b"%PDF-1.7\n"),
    "ppt": FileKind("PPT", "pptx", f"{_OOXML}.presentationml.presentation", b"PK\x03\x04"),
    "xls": FileKind("XLS", "xlsx", f"{_OOXML}.spreadsheetml.sheet", b"PK\x03\x04"),
    "doc": FileKind("DOC", "docx", f"{_OOXML}.wordprocessingml.document", b"PK\x03\x04"),
    "csv": FileKind("CSV", "csv", "text/csv", b"Region,Amount\n"),
    "xml": FileKind("XML", "xml", "application/xml", b'<?xml version="1.0" encoding="UTF-8"?>\n'),
    "mhtml": FileKind("MHTML", "mhtml", "multipart/related", b"MIME-Version: 1.0\r\n"),
}

EXTERNAL_REPORT = "External Report"
#: elementId -> name, element type, formats the plugin advertises, segments, users allowed (absent: all).
DEFAULT_ELEMENTS: dict[int, dict[str, Any]] = {
    1042: {"name": "Sales Dashboard", "type": EXTERNAL_REPORT, "formats": ["image", "pdf", "csv"],
           "dimensions": [0, 7]},
    1043: {"name": 'Board Pack: Q1/Q2 "Final"', "type": EXTERNAL_REPORT, "formats": list(FORMATS),
           "dimensions": [0]},
    1044: {"name": "Legacy Extract", "type": EXTERNAL_REPORT, "formats": [], "dimensions": [0]},
    1045: {"name": "Executive Pay", "type": EXTERNAL_REPORT, "formats": ["pdf"], "dimensions": [0],
           "users": ["cfo"]},
    2001: {"name": "Revenue", "type": "Metric", "formats": [], "dimensions": [0]},
}  # fmt: skip
DEFAULT_APPLICATIONS = {"reportrelay": "sandbox-secret"}
DEFAULT_USERS = ("api", "cfo")
DEFAULT_API_TOKENS = {"sandbox-secret": "api"}

#: Reserved file-name characters that the server strips from ``<element-name>.<extension>``.
_RESERVED = re.compile(r'[\\/:*?"<>|\x00-\x1f]')

SessionState = Literal["initialized", "running", "ready", "error", "consumed"]


@dataclass
class DownloadSession:
    """One ``init`` and what became of it."""

    number: int
    token: str
    user: str
    element_id: int
    dimension_id: int
    created_at: float
    state: SessionState = "initialized"
    format: str | None = None
    error: str | None = None
    run_calls: int = 0
    run_started_at: float = 0.0

    @property
    def key(self) -> str:
        """The key of this session's file in ``Simulator.served``."""
        return f"session-{self.number}"


class MetricInsightsSimulator(Simulator):
    """The External Report Download endpoint, ``get_token`` and personal API tokens.

    Every constructor keyword is also an attribute that may be changed while the simulator runs.
    """

    name = "metric_insights"
    logged_headers = ("Authorization", "Token", "Content-Type", "Accept")

    def __init__(
        self,
        *,
        port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        applications: Mapping[str, str] | None = None,
        users: Iterable[str] = DEFAULT_USERS,
        api_tokens: Mapping[str, str] | None = None,
        elements: Mapping[int, Mapping[str, Any]] | None = None,
        generation_seconds: float = 2.0,
        session_lifetime_seconds: float = 300.0,
        token_lifetime_seconds: float = 3600.0,
        fail_reports: str | None = None,
        report_size: int = 64 * 1024,
    ) -> None:
        super().__init__(port=port, faults=faults, clock=clock)
        self.applications = dict(applications if applications is not None else DEFAULT_APPLICATIONS)
        self.users = set(users)
        source = elements if elements is not None else DEFAULT_ELEMENTS
        self.elements: dict[int, dict[str, Any]] = {int(key): dict(value) for key, value in source.items()}
        self.generation_seconds = generation_seconds
        self.session_lifetime_seconds = session_lifetime_seconds
        self.token_lifetime_seconds = token_lifetime_seconds
        self.fail_reports = fail_reports
        self.report_size = report_size
        #: session token (decoded) -> its session, in order of ``init``.
        self.sessions: dict[str, DownloadSession] = {}
        self.tokens_issued = 0
        self.expired_refusals = 0  # answers 412 "Session expired"
        #: API credential -> (user, expiry); get_token tokens and personal API tokens alike.
        self._api_tokens: dict[str, tuple[str, float]] = {
            token: (user, float("inf")) for token, user in (api_tokens or DEFAULT_API_TOKENS).items()
        }
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()  # lets a held ``run`` give up instead of outliving the server
        super().stop()

    # ---- knobs and views for tests

    def expire_api_tokens(self) -> None:
        """Make every API credential issued so far (and every personal API token) answer 412."""
        with self.lock:
            self._api_tokens = {token: (user, 0.0) for token, (user, _) in self._api_tokens.items()}

    def revoke_tokens(self) -> None:
        """``Faults.expire_tokens_after`` expires API credentials the way this server does: 412."""
        self.expire_api_tokens()

    @property
    def issued_tokens(self) -> set[str]:
        """Every API credential the simulator knows, live or expired (to look for leaks)."""
        with self.lock:
            return set(self._api_tokens)

    def session_list(self) -> list[DownloadSession]:
        with self.lock:
            return list(self.sessions.values())

    def error_body(self, status: int, message: str) -> Any:
        return {"status": "ERROR", "message": message}

    # ---- sign-in: POST /api/get_token/

    @route("POST", "/api/get_token/", sign_in=True)
    def get_token(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "Request body must be a JSON object")
        application_id, key, user = (body.get(name) for name in ("application_id", "application_key", "user"))
        if not application_id or self.applications.get(str(application_id)) != key:
            raise HttpError(401, "Invalid application credentials")
        if user not in self.users:
            raise HttpError(401, f"User '{user}' not found")
        token = secrets.token_urlsafe(24)
        expires_at = self.clock() + self.token_lifetime_seconds
        with self.lock:
            self._api_tokens[token] = (user, expires_at)
            self.tokens_issued += 1
        expires = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return json_response({"token": token, "expires": expires})

    # ---- the download endpoint, one route per state

    @route("GET", f"{ENDPOINT}/formats")
    def formats(self, request: Request) -> Response:
        _, element = self._element(request)
        return json_response({"status": "OK", "formats": list(element["formats"])})

    @route("GET", f"{ENDPOINT}/init")
    def init(self, request: Request) -> Response:
        user = self._authorize(request)
        element_id, _ = self._element(request, user)
        token = _session_token()
        with self.lock:
            number = len(self.sessions) + 1
            self.sessions[token] = DownloadSession(
                number, token, user, element_id, int(request.params["dimensionId"]), self.clock()
            )
        return json_response({"status": "OK", "token": quote(token, safe="")})

    @route("GET", f"{ENDPOINT}/run")
    def run(self, request: Request) -> Response:
        """Generate the file while this request stays open; answer once it is done (or has failed).

        Only the first ``run`` of a session generates; a repeated one waits for the same outcome.
        """
        session = self._session(request)
        export_format = self._format(request, session)
        with self.lock:
            session.run_calls += 1
            if session.state == "initialized":
                session.state, session.format = "running", export_format
                session.run_started_at = self.clock()
        while True:
            with self.lock:
                if session.state != "running":
                    break
                if self._expired(session):
                    session.state, session.error = "error", "Download failed"  # the file is discarded
                    break
                if self.clock() - session.run_started_at >= self.generation_seconds:
                    if self.fail_reports:
                        session.state, session.error = "error", self.fail_reports
                    else:
                        session.state = "ready"
                    break
            if self._stopping.wait(0.02):
                raise HttpError(503, "Server shutting down")
        if session.state == "error":
            raise HttpError(400, session.error or "Download failed")
        return json_response({"status": "OK"})

    @route("GET", f"{ENDPOINT}/check")
    def check(self, request: Request) -> Response:
        session = self._session(request)
        if session.state == "ready":
            return json_response({"status": "READY"})
        if session.state == "error":
            return json_response({"status": "ERROR", "message": session.error})
        return json_response({"status": "IN PROGRESS"})

    @route("GET", f"{ENDPOINT}/get", download=True)
    def get(self, request: Request) -> Response:
        session = self._session(request)
        export_format = self._format(request, session)
        with self.lock:
            if session.state in ("initialized", "running"):
                return json_response({"status": "IN PROGRESS"})
            if session.state == "error":
                return json_response({"status": "ERROR"})
            if export_format != session.format:
                raise HttpError(400, "Invalid format")
            session.state = "consumed"  # one download per session, even if this one breaks off
        element = self.elements[session.element_id]
        kind = FORMATS[export_format]
        seed = f"metric_insights:{session.element_id}:{session.dimension_id}:{export_format}:{session.number}"
        content = deterministic_bytes(seed, self.report_size, kind.magic)
        self.record_served(session.key, content)
        filename = _RESERVED.sub("", f"{element['name']}.{kind.extension}").strip()
        return file_response(content, kind.content_type, filename)

    @route("GET", f"{ENDPOINT}/{{state}}")
    def unknown_state(self, request: Request) -> Response:
        self._authorize(request)
        raise HttpError(400, "Invalid state")

    # ---- shared checks

    def _authorize(self, request: Request) -> str:
        """The calling user, from ``Token: <token>`` or ``Authorization: Bearer <API token>``."""
        token = request.header("token")
        if not token:
            scheme, _, value = (request.header("authorization") or "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        if not token:
            raise HttpError(401, "Authentication required: send a Token header or a Bearer API token")
        with self.lock:
            known = self._api_tokens.get(token)
            if known is None:
                raise HttpError(401, "Invalid API token")
            user, expires_at = known
            if self.clock() >= expires_at:
                self.expired_refusals += 1
                raise HttpError(412, "Session expired")
        return user

    def _element(self, request: Request, user: str | None = None) -> tuple[int, dict[str, Any]]:
        """The External Report the path names, checked as the document's error table says."""
        user = user or self._authorize(request)
        try:
            element_id, dimension_id = int(request.params["elementId"]), int(request.params["dimensionId"])
        except ValueError:
            raise HttpError(404, "Element not found") from None
        element = self.elements.get(element_id)
        if element is None or dimension_id not in element.get("dimensions", [0]):
            raise HttpError(404, "Element not found")
        if element.get("users") is not None and user not in element["users"]:
            raise HttpError(403, "Element not allowed")
        if element.get("type") != EXTERNAL_REPORT:
            raise HttpError(400, "Not implemented for this Element Type")
        if not element.get("formats"):
            raise HttpError(400, "No downloads available")
        return element_id, element

    def _session(self, request: Request) -> DownloadSession:
        """The live session of ``token``, which must be exactly what ``init`` issued (after one decoding)."""
        user = self._authorize(request)
        element_id, _ = self._element(request, user)
        with self.lock:
            session = self.sessions.get(request.query.get("token", ""))
            if (
                session is None
                or session.state == "consumed"
                or session.user != user
                or (session.element_id, session.dimension_id)
                != (element_id, int(request.params["dimensionId"]))
            ):
                raise HttpError(400, "Invalid token")
            if self._expired(session):
                # The token is gone, and with it any file generated for it (a held run notices by itself).
                raise HttpError(400, "Download failed")
            return session

    def _format(self, request: Request, session: DownloadSession) -> str:
        export_format = request.query.get("format", "")
        if export_format not in self.elements[session.element_id]["formats"] or export_format not in FORMATS:
            raise HttpError(400, "Invalid format")
        return export_format

    def _expired(self, session: DownloadSession) -> bool:
        return self.clock() >= session.created_at + self.session_lifetime_seconds


def _session_token() -> str:
    """A base64 token that always holds ``+``, ``/`` and ``=``, the characters URL encoding trips over."""
    raw = base64.b64encode(secrets.token_bytes(22)).decode()  # 22 bytes: always ends in "=="
    return f"{raw[:10]}+{raw[10:20]}/{raw[20:]}"


def sandbox_simulator(
    *,
    port: int,
    faults: Faults,
    secret: str,
    generation_seconds: float,
    token_lifetime_seconds: float,
    fail_reports: str | None,
) -> MetricInsightsSimulator:
    """The simulator as ``reportrelay sandbox`` serves it.

    External application ``reportrelay`` has the sandbox secret as its application key (user ``api``),
    and the same secret also works as user ``api``'s personal API token.
    """
    return MetricInsightsSimulator(
        port=port,
        faults=faults,
        applications={"reportrelay": secret},
        api_tokens={secret: "api"},
        generation_seconds=generation_seconds,
        token_lifetime_seconds=token_lifetime_seconds,
        fail_reports=fail_reports,
    )
