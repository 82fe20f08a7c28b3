"""``reportrelay vendor check SPEC --connection NAME --request FILE``: one real job against a live server.

It walks the job the way the workflow would, step by step (sign in, submit, check until done, the
download's headers and first bytes; no AWS, no S3), through the same declarative provider, HTTP client and
auth, and says in plain words where the spec and the server disagree: which part of the spec, what it
expected, what the server answered (status, content type, the names of the fields or headers it gave, never
a credential or a value other than the status or id the spec reads).

Exit codes: 0 the spec and the server agree on every step, 1 they disagree (or the report failed or did not
finish in time at the vendor), 2 bad input (an unreadable or invalid spec, connection or request).
Note that it queues a real report at the vendor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from reportrelay.config import (
    Connection,
    Connections,
    JobRequest,
    SecretResolver,
    parse_job_request,
    read_json_file,
)
from reportrelay.errors import ProviderThrottled, ReportRelayError
from reportrelay.providers import open_provider
from reportrelay.providers.base import Handle, ReportState
from reportrelay.providers.declarative import LINK_FIELD, DeclarativeProvider, declarative_class
from reportrelay.providers.spec import CallSpec, ProviderSpec, at_path, load_spec

EXIT_AGREE, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2
#: The magic bytes of formats whose files are not text: a file of the requested format should start so.
MAGIC = {
    "pdf": b"%PDF",
    "xlsx": b"PK",
    "docx": b"PK",
    "zip": b"PK",
    "gzip_json": b"\x1f\x8b",
    "gz": b"\x1f\x8b",
}


def add_vendor_commands(commands: Any) -> None:
    """``reportrelay vendor check``; ``commands`` is the ``reportrelay`` parser's subparsers."""
    vendor = commands.add_parser("vendor", help="provider specs: try one against a live server")
    actions = vendor.add_subparsers(required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="walk one real job through a spec against the live server (sign in, submit, check, download "
        "headers and first bytes; nothing stored) and say where the spec and the server disagree",
    )
    check.add_argument("spec", type=Path, metavar="SPEC", help="the provider spec JSON file")
    check.add_argument("--connection", required=True, help="the connection to the server, by name")
    check.add_argument("--request", required=True, type=Path, help="a job request JSON file")
    check.add_argument(
        "--connections", type=Path, default=Path("connections.json"), help="connections JSON file"
    )
    check.add_argument(
        "--timeout", type=float, default=900.0, help="give up waiting for the report after this long (s)"
    )
    check.add_argument(
        "--every", type=float, help="seconds between status checks (default: the connection's poll policy)"
    )
    check.add_argument("--bytes", type=int, default=64, help="how many of the file's first bytes to show")
    check.set_defaults(command=command_vendor_check)


def command_vendor_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Load everything (BadInput when it cannot be), then walk the job; 0 agree, 1 disagree."""
    from reportrelay_cli.main import BadInput  # here: the command line imports this module

    try:
        spec = load_spec(args.spec, str(args.spec))
        connection = Connections.from_file(args.connections).get(args.connection)
        document = read_json_file(args.request, "request")
        if not isinstance(document, Mapping):
            raise BadInput(f"{args.request}: a job request must be a JSON object")
        request = parse_job_request({**document, "connection": args.connection})
    except ReportRelayError as error:
        raise BadInput(str(error)) from None
    walk = Walk(spec, connection, out or sys.stdout, every=args.every, timeout=args.timeout)
    try:
        return walk.run(request, first_bytes=max(1, args.bytes))
    except _Refused as refused:
        raise BadInput(str(refused)) from None


class _Refused(Exception):
    """Input the check cannot start with (the request or the connection does not suit the spec)."""


# --------------------------------------------------------------------------------------------------
# What the server answered: every exchange, recorded below the client


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes | None  # None for a streamed answer (the download), which is left to its reader

    @property
    def where(self) -> str:
        """``GET /path`` on the API, ``GET https://host/path`` elsewhere: never the query (a presigned
        link's signature is a credential)."""
        parts = urlsplit(self.url)
        return f"{self.method} {parts.path or '/'}"

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip() or "no Content-Type"

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"")
        except ValueError:
            return None

    def shape(self) -> str:
        """The answer described without its values: its JSON fields, or its type and length."""
        body = self.json()
        if isinstance(body, dict):
            return f"its fields: {', '.join(sorted(body)[:15]) or 'none'}"
        if isinstance(body, list):
            return f"a JSON list of {len(body)}"
        size = len(self.body or b"")
        return f"{self.content_type}, {size} bytes"


class _Recorder(HTTPAdapter):
    """The session's transport, keeping each exchange for the walk to describe."""

    def __init__(self, exchanges: list[Exchange]) -> None:
        super().__init__()
        self.exchanges = exchanges

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        body = None if kwargs.get("stream") else response.content
        self.exchanges.append(
            Exchange(request.method or "", request.url or "", response.status_code, response.headers, body)
        )
        return response


# --------------------------------------------------------------------------------------------------
# The walk


@dataclass
class Walk:
    """One job through ``spec`` against the server of ``connection``, printed step by step."""

    spec: ProviderSpec
    connection: Connection
    out: TextIO
    every: float | None = None
    timeout: float = 900.0
    sleep: Any = time.sleep
    exchanges: list[Exchange] = field(default_factory=list)

    def run(self, request: JobRequest, *, first_bytes: int = 64) -> int:
        cls = declarative_class(self.spec)
        self._say(
            "spec",
            f"{self.spec.title} ({self.spec.key}), checked against connection {self.connection.name} "
            f"({self.connection.base_url})",
        )
        if self.connection.provider != self.spec.key:
            self._say("", f"(the connection names provider '{self.connection.provider}'; this spec is tried)")
        try:
            cls.validate(request)
        except ReportRelayError as error:
            raise _Refused(f"the request does not suit the spec: {error}") from None
        self._say("request", f"ok: {request.format} (sent as '{self.spec.request.formats[request.format]}')")
        session = requests.Session()
        recorder = _Recorder(self.exchanges)
        session.mount("http://", recorder)
        session.mount("https://", recorder)
        try:
            provider = open_provider(self.connection, SecretResolver(), adapter=cls, session=session)
        except ReportRelayError as error:
            raise _Refused(str(error)) from None
        assert isinstance(provider, DeclarativeProvider)
        steps = (
            ("sign in", lambda: self._sign_in(provider)),
            ("submit", lambda: self._submit(provider, request)),
        )
        handle: Handle = {}
        for name, step in steps:
            try:
                handle = step() or handle
            except ReportRelayError as error:
                return self._disagree(name, self._explain(name, error))
        try:
            ready = self._check_until_done(provider, request, handle)
        except ReportRelayError as error:
            return self._disagree("check", self._explain("check", error))
        if ready is not None:
            return ready
        try:
            filename = self._download(provider, request, handle, first_bytes)
        except ReportRelayError as error:
            return self._disagree("download", self._explain("download", error))
        self._say(
            "AGREE",
            f"the spec and the server agree on every step: a job on {self.connection.name} would store "
            f"{filename}",
        )
        return EXIT_AGREE

    # ---- the steps

    def _sign_in(self, provider: DeclarativeProvider) -> None:
        before = len(self.exchanges)
        provider.http.auth.renew()  # a sign-in of its own now, never a token this process kept
        provider.http.auth.headers()
        calls = self.exchanges[before:]
        if calls:
            last = calls[-1]
            self._say("sign in", f"ok: {last.where} at {urlsplit(last.url).netloc} answered {last.status}")
        else:
            self._say("sign in", f"ok: {self.connection.auth.type}, sent with every call (no sign-in call)")

    def _submit(self, provider: DeclarativeProvider, request: JobRequest) -> Handle:
        status = provider.submit(request)
        answer = self.exchanges[-1]
        source = self.spec.submit.id
        found = (
            f"the report id {status.handle['id']!r} from {source.source()}"  # type: ignore[index]
            if source is not None
            else "no report id (submit.id is null)"
        )
        self._say("submit", f"ok: {answer.where} answered {answer.status}; {found}")
        return dict(status.handle or {})

    def _check_until_done(
        self, provider: DeclarativeProvider, request: JobRequest, handle: Handle
    ) -> int | None:
        """None once READY (``handle`` updated); an exit code when the report failed or took too long."""
        started, checks, last_said = time.monotonic(), 0, ""
        wait = float(self.every or self.connection.poll.initial_seconds)
        while True:
            try:
                status = provider.check(request, handle)
            except ProviderThrottled as throttled:
                pause = throttled.retry_after or wait
                self._say("check", f"throttled (HTTP 429): waiting {pause:g} s as the server asks")
                self.sleep(pause)
                continue
            checks += 1
            if status.handle:
                handle.update(status.handle)  # a download link: kept, never printed
            said = status.state.value + (f" {status.progress:.0f}%" if status.progress is not None else "")
            if said != last_said:
                self._say("check", f"{said} (the server said {self._raw_status()})")
                last_said = said
            if status.state is ReportState.READY:
                self._say("", f"ready after {checks} check(s), {time.monotonic() - started:.1f} s")
                return None
            if status.state in (ReportState.FAILED, ReportState.CANCELLED):
                return self._disagree(
                    "check",
                    f"the server reports the report {status.state.value.lower()}"
                    + (f": {status.message}" if status.message else "")
                    + "; the spec read it, but no file came of this job",
                )
            if time.monotonic() - started + wait > self.timeout:
                cancelled = provider.cancel(request, handle)
                return self._disagree(
                    "check",
                    f"still {status.state.value} after {time.monotonic() - started:.0f} s (--timeout "
                    f"{self.timeout:g}); the spec and the server agree so far"
                    + ("; the report was cancelled at the vendor" if cancelled else ""),
                )
            self.sleep(wait)
            if self.every is None:
                poll = self.connection.poll
                wait = min(max(wait * poll.factor, poll.min_seconds), poll.max_seconds)

    def _download(
        self, provider: DeclarativeProvider, request: JobRequest, handle: Handle, first_bytes: int
    ) -> str:
        before = len(self.exchanges)
        with provider.open_result(request, handle) as result:
            head = _first(result.chunks, first_bytes)
        streamed = [each for each in self.exchanges[before:] if each.body is None]
        if streamed:  # on the API's origin, through the connection's own session
            where = f"{streamed[-1].where} answered {streamed[-1].status}"
        else:  # a link on another host, fetched by a session of its own, without our credentials
            link = urlsplit(str(handle.get(LINK_FIELD, "")))
            where = f"GET {link.path} at {link.netloc} (no credentials sent) served"
        length = (
            f"{result.content_length:,} bytes announced"
            if result.content_length is not None
            else "no length announced"
        )
        self._say("download", f"ok: {where} {result.content_type}, {length}; stored as {result.filename}")
        self._say("", f"first {len(head)} bytes: {_preview(head)}")
        magic = MAGIC.get(request.format)
        if magic is not None and not head.startswith(magic):
            self._say("", f"note: a {request.format} file starts with {magic!r}, this one with {head[:4]!r}")
        return result.filename

    # ---- words

    def _raw_status(self) -> str:
        check, answer = self.spec.check, self.exchanges[-1] if self.exchanges else None
        if answer is None:
            return "nothing"
        if check.answer == "text":
            return repr((answer.body or b"").decode("utf-8", "replace").strip()[:60])
        return repr(at_path(answer.json(), check.status))

    def _explain(self, step: str, error: ReportRelayError) -> str:
        """Where the spec and the server part, in plain words, from the error and the last answer."""
        text = str(error)
        answer = self.exchanges[-1] if self.exchanges else None
        if answer is None:
            return text
        section, call = self._section(step)
        if answer.status in (404, 405):
            template = f" ('{call.method} {call.path}')" if call is not None else ""
            return (
                f"{answer.where} answered {answer.status}: the server has no such call; check "
                f"{section}.path and {section}.method{template} ({text})"
            )
        if answer.status == 415 and call is not None:
            return (
                f"{answer.where} answered 415: the server does not take {section}.content_type "
                f"'{call.content_type or 'application/json'}' ({text})"
            )
        if answer.status in (401, 403) and step != "download":
            headers = ", ".join(self.spec.headers) or "none"
            return (
                f"{answer.where} answered {answer.status}: the server refused our credentials; check the "
                f"connection's auth ({self.connection.auth.type}; the spec takes "
                f"{', '.join(self.spec.auth)}) and the spec's headers ({headers}) ({text})"
            )
        if answer.status >= 500:
            return (
                f"{answer.where} answered {answer.status}: the server failed, which says nothing of the spec "
                f"({text})"
            )
        if "non-JSON content" in text:
            hint = ' (for a plain-text status, say "answer": "text")' if step == "check" else ""
            return f"the spec reads JSON here, but {answer.where} answered {answer.content_type}{hint}"
        if "no report id" in text and self.spec.submit.id is not None:
            return self._no_id(answer)
        if "unknown report status" in text:
            return self._unknown_status(answer)
        if "no download link" in text:
            return (
                f"check.download_url reads '{self.spec.check.download_url}', which the ready answer does not "
                f"have ({answer.shape()})"
            )
        return f"{text} (the last answer: {answer.where}, HTTP {answer.status}, {answer.content_type})"

    def _section(self, step: str) -> tuple[str, CallSpec | None]:
        if step == "submit":
            return "submit", self.spec.submit
        if step == "check":
            return "check", self.spec.check
        if step == "download" and self.spec.download.call is not None:
            return "download.call", self.spec.download.call
        return step, None

    def _no_id(self, answer: Exchange) -> str:
        source = self.spec.submit.id
        assert source is not None
        if source.header is not None:
            value = answer.headers.get(source.header)
            if value is None:
                return (
                    f"submit.id says the id is in the {source.header} header, which {answer.where} did not "
                    f"send (its headers: {', '.join(sorted(answer.headers))})"
                )
            return (
                f"the {source.header} header is {value[:80]!r}, which submit.id.pattern "
                f"'{source.pattern}' does not match"
            )
        if source.text:
            return f"submit.id says the whole body is the id, but {answer.where} answered {answer.shape()}"
        return (
            f"submit.id says the id is at '{source.json_path}', which the answer of {answer.where} does not "
            f"have ({answer.shape()})"
        )

    def _unknown_status(self, answer: Exchange) -> str:
        check = self.spec.check
        mapped = ", ".join(repr(key) for key in check.states)
        if check.answer == "text":
            raw: Any = (answer.body or b"").decode("utf-8", "replace").strip()[:60]
        else:
            raw = at_path(answer.json(), check.status)
            if raw is None or isinstance(raw, dict | list):
                paths = check.status if isinstance(check.status, str) else " or ".join(check.status)
                return f"check.status reads '{paths}', which the answer does not have ({answer.shape()})"
        words = f"the server says {raw!r}, which check.states does not map (it maps {mapped}): add it"
        if check.case_sensitive and str(raw).lower() in {key.lower() for key in check.states}:
            words += "; check.states is case_sensitive, and the server writes it otherwise"
        return words

    def _say(self, step: str, text: str) -> None:
        print(f"{step:<9} {text}", file=self.out, flush=True)

    def _disagree(self, step: str, words: str) -> int:
        self._say("DISAGREE", f"at {step}: {words}")
        return EXIT_DISAGREE


def _first(chunks: Iterator[bytes], size: int) -> bytes:
    """Up to ``size`` first bytes of the file (the rest is never read)."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= size:
            break
    return head[:size]


def _preview(head: bytes) -> str:
    """The bytes as text when they are text, else in hex."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return head[:32].hex(" ") + (" ..." if len(head) > 32 else "")
    return repr(text) if all(char.isprintable() or char in "\r\n\t" for char in text) else head[:32].hex(" ")
