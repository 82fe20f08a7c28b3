"""The one provider that runs any provider spec (``reportrelay.providers.spec``).

A vendor described by a spec needs no Python of its own: this adapter reads the spec to build each call
(through the connection's shared ``ProviderHttp``, so signing, renewal on a 401, short retries, redirects
and typed errors are the client's), to read the answers, and to open the finished file as a stream for
``reportrelay.transfer``. Each spec gets its own subclass (``declarative_class``) so the class attributes
the workflow reads (``key``, ``settings_model``, ``sealed_handle_fields``, ``reauth_statuses``) are the
spec's.

A download link taken from the status is a credential (a presigned URL): it is sealed in the handle, and
fetched with no credential of ours when it is on another host, which the spec or the connection must name.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import requests
from pydantic import BaseModel, ValidationError

from reportrelay.addresses import parse_redirect_hosts
from reportrelay.auth import StaticHeaders
from reportrelay.config import Connection, JobRequest, describe_validation_error
from reportrelay.errors import (
    BadRequest,
    ConfigurationError,
    DownloadInterrupted,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderThrottled,
    ReportCancelled,
    ReportGenerationFailed,
    ReportRelayError,
)
from reportrelay.httpclient import ProviderHttp, _private_destination, error_for_response
from reportrelay.objectkeys import clean_filename
from reportrelay.providers.base import (
    Handle,
    Provider,
    ProviderSettings,
    ReportState,
    ReportStatus,
    ResultStream,
    ResumeFrom,
    content_type_of,
    decoded_length,
    filename_from_response,
    range_headers,
    require_format,
    streamed,
)
from reportrelay.providers.hooks import resolve as resolve_hook
from reportrelay.providers.spec import (
    AUTH_FIELDS,
    CallSpec,
    CheckSpec,
    ErrorSpec,
    Extract,
    FieldSpec,
    PagesSpec,
    PathValue,
    ProviderSpec,
    RefusalSpec,
    TemplateError,
    TransformSpec,
    at_path,
    expiry_seconds,
    has_values,
    load_spec,
    packaged_spec,
    percent,
    render,
    render_json,
    state_in,
    vendor_time,
)
from reportrelay.transforms.json_records import JsonRecords, RawSource

log = logging.getLogger(__name__)

SUCCESS = (200, 201, 202, 204, 206)
#: A link that expires sooner than this is not used: the status is checked again for a fresh one.
LINK_MARGIN_SECONDS = 60.0
#: The handle fields that hold a download link from the status (sealed: a presigned URL is a credential).
LINK_FIELD, LINK_EXPIRY_FIELD = "download_url", "download_url_expires_at"


class DeclarativeProvider(Provider):
    """A vendor's protocol read from its spec; subclasses made by ``declarative_class`` set ``spec``."""

    spec: ClassVar[ProviderSpec]

    def __init__(self, connection: Connection, http: ProviderHttp) -> None:
        super().__init__(connection, http)
        if "retry_after" in self.spec.hooks:
            # The vendor states a 429's wait in its body; the shared client reads only Retry-After.
            wait_in = resolve_hook(self.spec.hooks["retry_after"], "retry_after")
            http.session.hooks.setdefault("response", []).append(
                functools.partial(_retry_after, self, wait_in)
            )

    # ---- checks before anything is sent

    @classmethod
    def parse_settings(cls, connection: Connection) -> ProviderSettings:
        if connection.auth.type not in cls.spec.auth:
            raise ConfigurationError(
                f"connections.{connection.name}.auth.type: {cls.spec.title} takes "
                f"{' or '.join(cls.spec.auth)}, not '{connection.auth.type}'"
            )
        missing = [
            name
            for name in cls.spec.auth_fields_named()
            if not isinstance(getattr(connection.auth, name, None), str)
        ]
        if missing:
            raise ConfigurationError(
                f"connections.{connection.name}.auth: {cls.spec.title} needs {', '.join(missing)} "
                "(it is sent with every call)"
            )
        return super().parse_settings(connection)

    @classmethod
    def validate(cls, request: JobRequest) -> None:
        spec = cls.spec.for_report(request.report)
        require_format(request, tuple(spec.request.formats), spec.noun())
        _checked(spec.report_model, request.report, "request.report")
        for group in spec.request.one_of:
            if sum(request.report.get(name) is not None for name in group) != 1:
                described = [f"'{name}'" + _described(spec.request.report[name]) for name in group]
                raise BadRequest(f"request.report: give exactly one of {' or '.join(described)}")
        if request.parameters and spec.request.no_parameters is not None:
            raise BadRequest(
                f"request.parameters: {spec.title} reports take no parameters; {spec.request.no_parameters}"
            )
        _checked(spec.parameters_model, request.parameters, "request.parameters")

    # ---- the protocol

    def submit(self, request: JobRequest) -> ReportStatus:
        spec = self.spec.for_report(request.report)
        if spec.submit is None:
            return ReportStatus(ReportState.READY, handle={})  # the download call makes the file
        if spec.offered_formats is not None:
            self._require_offered_format(spec, request)
        if not spec.holds_request:
            # else the held request queues the report: the workflow says so before it
            self.queuing({"owner": uuid.uuid4().hex} if spec.submit.owner else {})
        action = spec.submit.action or "queue report"
        response = self._call(spec.submit, self._context(request, {}), action)
        queued: Handle = {spec.submit.queued_at_field: self.clock()} if spec.submit.queued_at_field else {}
        if spec.submit.id is None:
            return ReportStatus(ReportState.PENDING, handle=queued)
        found = self._extract(response, spec.submit.id, action)
        if isinstance(found, bool) or not isinstance(found, str | int) or str(found) == "":
            raise ProviderProtocolError(f"{action}: the answer has no report id at {spec.submit.id.source()}")
        kept = _kept(spec.submit.keep, _json(response, action)) if spec.submit.keep else {}
        handle = {spec.submit.handle_field: str(found), **kept, **queued}
        return ReportStatus(ReportState.PENDING, handle=handle)

    def _require_offered_format(self, spec: ProviderSpec, request: JobRequest) -> None:
        """Refuse a format the requested report does not offer, before anything is queued."""
        offered_formats = spec.offered_formats
        assert offered_formats is not None
        action = offered_formats.action or "list report formats"
        response = self._call(offered_formats, self._context(request, {}), action)
        listed = at_path(_json(response, action), offered_formats.formats)
        if not isinstance(listed, list):
            raise ProviderProtocolError(
                f"{action}: the answer has no list of formats at '{offered_formats.formats}'"
            )
        offered = [str(item).lower() for item in listed]
        if spec.request.formats.get(request.format, request.format).lower() not in offered:
            raise BadRequest(
                f"request.format: '{request.format}' is not available for {self.report_label(request)}; "
                f"it offers {', '.join(offered) if offered else 'no formats'}"
            )

    def report_label(self, request: JobRequest) -> str:
        """How messages name the requested report (the spec's ``request.label``)."""
        spec = self.spec.for_report(request.report)
        if spec.request.label is None:
            return f"this {spec.title} report"
        return self._render(spec.request.label, self._context(request, {}), "text", "request.label")

    def check(self, request: JobRequest, handle: Handle) -> ReportStatus:
        if self.spec.for_report(request.report).check is None:
            return ReportStatus(ReportState.READY)  # a synchronous export: nothing to wait for
        return self.read_status(request, handle, self.check_answer(request, handle))

    def check_answer(self, request: JobRequest, handle: Handle) -> Any:
        """The status call's answer: its JSON, or its text for a plain-text status."""
        check = self.spec.for_report(request.report).check
        assert check is not None
        action = check.action or "check report status"
        if check.entry is not None and check.entry.pages is not None:
            return self._pages_until_entry(check, request, handle, action)
        return self._status_answer(check, self._context(request, handle), action)

    def _status_answer(self, check: CheckSpec, context: Mapping[str, Any], action: str) -> Any:
        throttled = (429,) if check.retry_after is not None else ()
        response = self._call(check, context, action, also_accept=throttled)
        if response.status_code == 429:
            raise self._throttled(check, response, action)
        return _json(response, action) if check.answer == "json" else response.text.strip()

    def _pages_until_entry(
        self, check: CheckSpec, request: JobRequest, handle: Handle, action: str
    ) -> list[Any]:
        """The items of a paged list (``check.entry.pages``), page after page until the job's entry is
        among them or the list ends."""
        entry, job_id = check.entry, _job_id(self.spec, handle)
        assert entry is not None and entry.pages is not None
        pages, items = entry.pages, []
        context = self._context(request, handle)
        size, most = (
            self._count(value, context, f"check.entry.pages.{name}")
            for name, value in (("size", pages.size), ("max_pages", pages.max_pages))
        )
        for _ in range(most):
            paged = check.model_copy(
                update={"query": {**check.query, pages.limit: str(size), pages.offset: str(len(items))}}
            )
            answer = self._status_answer(paged, context, action)
            page = listed(answer, entry.items, action)
            items += page
            if any(_is_entry(item, entry.key, job_id) for item in page) or not _more(
                pages, answer, page, items, size
            ):
                break
        return items

    def _count(self, value: int | str, context: Mapping[str, Any], where: str) -> int:
        """A page count of the spec: a number, or a template naming a setting that holds one."""
        if isinstance(value, int):
            return value
        text = self._render(value, context, "text", where)
        try:
            return max(1, int(text))
        except ValueError:
            raise ConfigurationError(
                f"the {self.spec.key} provider spec, {where}: '{text}' is not a number"
            ) from None

    def read_status(self, request: JobRequest, handle: Handle, answer: Any) -> ReportStatus:
        """The job's status in a status call's answer (a hook that listed a queue reads its entry so)."""
        spec = self.spec.for_report(request.report)
        check = spec.check
        assert check is not None
        action = check.action or "check report status"
        body = self._own_entry(check, handle, answer, action) if check.entry is not None else answer
        if body is None and check.entry is not None and check.entry.absent is not None:
            absent = check.entry.absent
            words = self._render(absent.message, self._context(request, handle), "text", "check.entry.absent")
            return ReportStatus(ReportState(absent.state), message=words)
        raw = at_path(body, check.status) if check.answer == "json" else body
        more = _more_states(getattr(self.settings, check.more_states, None)) if check.more_states else None
        state_name = check.no_status if raw is None and check.no_status else check.state_of(raw, more)
        if state_name is None:
            unknown = self._unknown_status(check, request, handle, raw, action)
            if check.keep:
                kept = _kept(check.keep, body)
                return replace(unknown, handle=kept or None)
            return unknown
        state = ReportState(state_name)
        words = _words(at_path(body, check.message)) if check.message and check.answer == "json" else None
        progress = (
            percent(at_path(body, check.progress)) if check.progress and check.answer == "json" else None
        )
        job_id = _named_id(spec, handle)
        report = f"{spec.title} report {job_id}" if job_id else f"The {spec.title} report"
        ended = check.messages.get(state_name)  # type: ignore[call-overload]
        if ended is not None:
            context = {**self._context(request, handle), "status": raw}
            lead = self._render(ended, context, "text", f"check.messages.{state_name}")
            words = lead + (f": {words}" if words else "")
        elif state is ReportState.FAILED:
            words = f"{report} failed" + (f": {words}" if words else "")
        elif state is ReportState.CANCELLED:
            words = f"{report} was cancelled at the vendor" + (f": {words}" if words else "")
        update = None
        if state is ReportState.READY and spec.download.source == "from_status":
            update = self._link(check, body, action)
        if state is ReportState.READY and check.keep:
            update = {name: at_path(body, path) for name, path in check.keep.items()}
            missing = [_path_words(check.keep[name]) for name, value in update.items() if value in (None, "")]
            if missing:
                state, update = ReportState.FAILED, None
                said = f": {words}" if words else ""
                words = f"{report} is ready but has no {', '.join(missing)} to download{said}"
        started, finished = (
            vendor_time(at_path(body, path)) if path else None
            for path in (check.started_at, check.finished_at)
        )
        return ReportStatus(
            state, progress=progress, message=words, handle=update, started_at=started, finished_at=finished
        )

    def _unknown_status(
        self, check: CheckSpec, request: JobRequest, handle: Handle, raw: Any, action: str
    ) -> ReportStatus:
        """An unmapped status value: a protocol error naming it, or what ``check.unknown`` says it is."""
        unknown = check.unknown
        failing = unknown is None or (
            unknown.fail_setting is not None and getattr(self.settings, unknown.fail_setting, None) == "fail"
        )
        if failing:
            hint = f"; map it with the connection's {check.more_states} setting" if check.more_states else ""
            raise ProviderProtocolError(f"{action}: unknown {check.status_name} {_quoted(raw)}{hint}")
        assert unknown is not None
        context = {**self._context(request, handle), "status": raw}
        words = self._render(unknown.message, context, "text", "check.unknown.message")
        return ReportStatus(ReportState(unknown.state), message=words)

    def _own_entry(self, check: CheckSpec, handle: Handle, answer: Any, action: str) -> Any:
        """The job's own item in a status answer that lists many (``check.entry``)."""
        assert check.entry is not None
        job_id = _job_id(self.spec, handle)
        items = answer if check.entry.pages is not None else listed(answer, check.entry.items, action)
        for item in items:
            if _is_entry(item, check.entry.key, job_id):
                return item
        if check.entry.absent is not None:
            return None
        report = f"report {_named_id(self.spec, handle)}" if _named_id(self.spec, handle) else "the report"
        raise ProviderProtocolError(
            f"{action}: {self.spec.title} no longer lists {report} ({check.entry.key}); "
            "it may have been deleted"
        )

    def call(self, call: CallSpec, request: JobRequest, handle: Handle, action: str) -> requests.Response:
        """One call of the spec (for a hook: its queue call, one of its ``calls``) with the job's values."""
        return self._call(call, self._context(request, handle), action)

    def call_json(self, call: CallSpec, request: JobRequest, handle: Handle, action: str) -> Any:
        """One call of the spec with the job's values, and its JSON answer."""
        with self.call(call, request, handle, action) as response:
            return _json(response, action)

    @contextmanager
    def open_result(
        self, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None = None
    ) -> Iterator[ResultStream]:
        spec = self.spec.for_report(request.report)
        download = spec.download
        context = self._context(request, handle)
        if download.call is not None:
            response = self._call(
                download.call,
                context,
                download.call.action or "download report",
                stream=True,
                headers=range_headers(resume_from),
                html_ok=request.format in download.html_formats,
            )
        else:
            response = self._from_status_link(spec, request, handle, resume_from)
        with response:
            if download.refuse_json and "json" in response.headers.get("Content-Type", "").lower():
                raise self._json_instead_of_file(response, download.call.action if download.call else None)
            fallback = self._render(download.filename, context, "text", "download.filename")
            name = filename_from_response(response, fallback) if download.server_filename else fallback
            name = clean_filename(name, fallback)
            extension = download.extensions.get(request.format, download.extension)
            if extension is not None and "." not in name:
                name = f"{name}.{self._render(extension, context, 'text', 'download.extension')}"
            transform = download.transform
            if transform is not None and request.format in transform.formats:
                job_id = _named_id(spec, handle)
                label = f"{spec.title} report {job_id}" if job_id else f"the {spec.title} report"
                yield _transformed(transform, transform.formats[request.format], response, name, label)
                return
            result = streamed(response, name)
            declared = response.headers.get("Content-Type", "").split(";")[0].strip()
            told = download.content_types.get(request.format, download.content_type)
            if told and declared in ("", "application/octet-stream"):
                result.content_type = told
            yield result

    def _json_instead_of_file(self, response: requests.Response, action: str | None) -> ReportRelayError:
        """A JSON answer where the file should be (``download.refuse_json``): the vendor's error in it, or
        a protocol error saying what came instead."""
        action = action or "download report"
        try:
            words = vendor_words(self.spec.errors, response.json())
        except ValueError:
            words = ""
        if words:
            failure: ReportRelayError = ProviderRejected(f"{action}: {words}")
            failure.vendor_words = words
            return failure
        return ProviderProtocolError(f"{action}: the service answered JSON instead of the report file")

    def hold(self, request: JobRequest, handle: Handle) -> None:
        """Make the spec's held request (``hold``) and wait for its answer, as long as the spec allows."""
        hold = self.spec.for_report(request.report).hold
        if hold is None:
            super().hold(request, handle)
            return
        context = self._context(request, handle)
        timeout = self.http.timeout
        if hold.read_timeout is not None:
            seconds = self._render(hold.read_timeout, context, "text", "hold.read_timeout")
            timeout = (self.connection.timeouts.connect_seconds, float(seconds))
        self._call(hold, context, hold.action or "generate report", timeout=timeout).close()

    def cancel(self, request: JobRequest, handle: Handle) -> bool:
        cancel = self.spec.for_report(request.report).cancel
        if cancel is None:
            return False
        try:
            self._call(cancel, self._context(request, handle), cancel.action or "cancel report")
        except ProviderRejected:
            return False  # the vendor would not (no longer pending, already gone): nothing was cancelled
        return True

    def lost_submission(self, request: JobRequest) -> str:
        spec = self.spec.for_report(request.report)
        if spec.lost_submission is None:
            return f"look for it among the {spec.title} account's recent reports"
        return self._render(spec.lost_submission, self._context(request, {}), "text", "lost_submission")

    # ---- calls

    def _context(self, request: JobRequest, handle: Handle) -> dict[str, Any]:
        """What templates may name (``reportrelay.providers.spec``): never a secret."""
        spec = self.spec.for_report(request.report)
        auth = {name: getattr(self.connection.auth, name, None) for name in AUTH_FIELDS}
        job_id = _job_id(spec, handle)
        return {
            "report": request.report,
            "parameters": request.parameters,
            "format": spec.request.formats.get(request.format, request.format),
            "settings": _settings_values(spec, self.settings),
            "auth": {name: value for name, value in auth.items() if isinstance(value, str)},
            "job": {
                **{name: value for name, value in handle.items() if name not in self.sealed_handle_fields},
                **({"id": job_id} if job_id else {}),
            },
        }

    def _render(self, template: str, context: Mapping[str, Any], position: Any, where: str) -> str:
        try:
            return render(template, context, position)
        except TemplateError as error:
            raise ConfigurationError(f"the {self.spec.key} provider spec, {where}: {error}") from None

    def _call(
        self,
        call: CallSpec,
        context: Mapping[str, Any],
        action: str,
        *,
        also_accept: tuple[int, ...] = (),
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> requests.Response:
        """Send one call of the spec; an error answer of ``errors.statuses`` raises in the vendor's words."""
        sent = {
            name: self._render(v, context, "header", f"headers.{name}")
            for name, v in self.spec.headers.items()
        }
        sent |= {
            name: self._render(v, context, "header", f"{action} headers") for name, v in call.headers.items()
        }
        if call.accept:
            sent["Accept"] = call.accept
        arguments: dict[str, Any] = {}
        if call.body is not None:
            try:
                body = render_json(call.body, context)
            except TemplateError as error:
                raise ConfigurationError(
                    f"the {self.spec.key} provider spec, {action} body: {error}"
                ) from None
            arguments["data"] = json.dumps(body).encode()
            sent["Content-Type"] = call.content_type or "application/json"
        query = {}
        for name, value in call.query.items():
            chosen = next((v for v in _alternatives(value) if has_values(v, context)), None)
            if chosen is not None:
                query[name] = self._render(chosen, context, "query", f"{action} query")
        # An answer that means "sign in again" is left to the client, which renews and repeats the call,
        # unless the spec lists it among its error answers: then it is renewed here, once, and quoted.
        errors = self.spec.errors.statuses
        quoted_reauth = tuple(status for status in errors if status in self.spec.reauth_statuses)
        renewed = False
        while True:
            try:
                response = self.http.request(
                    call.method,
                    self._render(call.path, context, "segment", f"{action} path"),
                    action=action,
                    idempotent=call.idempotent,
                    accept=(*SUCCESS, *errors, *also_accept),
                    params=query or None,
                    headers={**sent, **(headers or {})},
                    **arguments,
                    **options,
                )
            except ProviderAuthFailed as refused:
                raise self._auth_refused(refused) from None
            if response.status_code in quoted_reauth and not renewed and self.http.auth.renew():
                renewed = True
                response.close()
                continue
            break
        if response.status_code in errors and response.status_code not in SUCCESS:
            with response:
                failure = self._vendor_error(response, action, context)
            raise self._auth_refused(failure) if isinstance(failure, ProviderAuthFailed) else failure
        if call.refused_if is not None and not options.get("stream"):
            self._refuse_if_said(call.refused_if, response, action)
        return response

    def _auth_refused(self, refused: ProviderAuthFailed) -> ProviderAuthFailed:
        """The refusal, with what the spec's ``auth_refused`` tells this connection's auth type to do."""
        what_to_do = self.spec.auth_refused.get(self.connection.auth.type)
        if what_to_do is None:
            return refused
        failure = ProviderAuthFailed(f"{refused}; {what_to_do}")
        failure.vendor_words = refused.vendor_words
        return failure

    def _refuse_if_said(self, refusal: RefusalSpec, response: requests.Response, action: str) -> None:
        """Raise when a successful answer's own status says the call was refused (``call.refused_if``)."""
        try:
            body = response.json()
        except ValueError:
            return  # not JSON: the step reading it says what is wrong
        said = at_path(body, refusal.status)
        if said is None or str(said).lower() not in {value.lower() for value in refusal.values}:
            return
        words = _words(at_path(body, self.spec.errors.message)) if self.spec.errors.message else None
        where = f"{action}: {response.request.method} {urlsplit(response.request.url or '').path}"
        status = f"HTTP {response.status_code} with status {_quoted(said)}"
        failure = ProviderRejected(f"{where} answered {status}: {words or 'no details'}")
        failure.vendor_words = words
        raise failure

    def _vendor_error(
        self, response: requests.Response, action: str, context: Mapping[str, Any] | None = None
    ) -> ReportRelayError:
        """The client's typed error for this answer, in the words the spec says the vendor uses; words the
        spec's ``errors.failed`` names make it the report's failure, explained."""
        failure = error_for_response(response, action)
        errors = self.spec.errors
        try:
            body = response.json()
        except ValueError:
            return failure
        code = _words(at_path(body, errors.code)) if errors.code else None
        words = _words(at_path(body, errors.message)) if errors.message else None
        if not code and not words:
            return failure
        where = f"{action}: {response.request.method} {urlsplit(response.request.url or '').path}"
        message = f"{where} answered HTTP {response.status_code}: {vendor_words(errors, body)}"
        meaning = {said.lower(): text for said, text in errors.failed.items()}.get((words or "").lower())
        if meaning is not None:
            explained = self._render(meaning, context or {}, "text", f"errors.failed.{words}")
            failure = ReportGenerationFailed(f"{message} ({explained})")
        else:
            failure = type(failure)(message)
        failure.vendor_words = words
        return failure

    def _throttled(self, check: CheckSpec, response: requests.Response, action: str) -> ProviderThrottled:
        """A 429 whose wait the vendor gives in the body (the spec's ``check.retry_after``)."""
        with response:
            failure = self._vendor_error(response, action)
            found = self._extract(response, check.retry_after, action)  # type: ignore[arg-type]
        return ProviderThrottled(str(failure), _seconds(found))

    def _extract(self, response: requests.Response, extract: Extract, action: str) -> Any:
        if extract.header is not None:
            found: Any = response.headers.get(extract.header)
        elif extract.text:
            found = response.text.strip()
        else:
            found = at_path(_json(response, action), extract.json_path or "$")
        if extract.pattern is not None and found is not None:
            match = re.search(extract.pattern, str(found))
            found = match.group(1) if match else None
        if extract.unquote and isinstance(found, str):
            found = unquote(found)
        return found

    # ---- a download link from the status

    def _link(self, check: CheckSpec, body: Any, action: str) -> Handle:
        url = at_path(body, check.download_url or "$")
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "/")):
            raise ProviderProtocolError(
                f"{action}: the report is ready but the answer has no download link at '{check.download_url}'"
            )
        expires = (
            expiry_seconds(at_path(body, check.download_url_expires_at))
            if check.download_url_expires_at
            else None
        )
        return {LINK_FIELD: url, LINK_EXPIRY_FIELD: expires}

    def _fresh_link(self, request: JobRequest, handle: Handle) -> str:
        status = self.check(request, handle)  # the same spec: for_report chooses it again
        if status.state is not ReportState.READY or not status.handle:
            raise ProviderProtocolError(
                "check report status: a fresh download link was asked for, but the report is "
                f"{status.state.value}"
            )
        return str(status.handle[LINK_FIELD])

    def _from_status_link(
        self, spec: ProviderSpec, request: JobRequest, handle: Handle, resume_from: ResumeFrom | None
    ) -> requests.Response:
        """The file at the status's link: a fresh link when the stored one is gone, expiring or refused."""
        refresh = spec.download.refresh_statuses
        url, expires = handle.get(LINK_FIELD), handle.get(LINK_EXPIRY_FIELD)
        fresh = not url or (isinstance(expires, int | float) and expires - self.clock() < LINK_MARGIN_SECONDS)
        if fresh:
            url = self._fresh_link(request, handle)
        html_ok = request.format in spec.download.html_formats
        response = self._get_file(spec, str(url), resume_from, html_ok)
        if response.status_code in refresh and not fresh:
            response.close()
            response = self._get_file(spec, self._fresh_link(request, handle), resume_from, html_ok)
        if response.status_code in refresh:
            with response:
                failure = error_for_response(response, "download report")
            raise type(failure)(f"{failure} (with a download link the status had just given)")
        return response

    def _get_file(
        self, spec: ProviderSpec, url: str, resume_from: ResumeFrom | None, html_ok: bool
    ) -> requests.Response:
        client = self._client_for(spec, url)
        return client.request(
            "GET",
            url,
            action="download report",
            stream=True,
            html_ok=html_ok,
            accept=(200, 206, *spec.download.refresh_statuses),
            headers=range_headers(resume_from),
        )

    def _client_for(self, spec: ProviderSpec, url: str) -> ProviderHttp:
        """The connection's own client for a link on its origin; for another host the spec or the connection
        names, a client that sends no credential (no auth, no vendor header, no cookie)."""
        api, target = urlsplit(self.http.base_url), urlsplit(self.http.url(url))
        if (target.scheme, target.hostname, target.port) == (api.scheme, api.hostname, api.port):
            return self.http
        origin = f"{target.scheme}://{target.netloc.rpartition('@')[2]}"
        where = f"download report: the status gave a link to {origin}"
        if target.scheme not in ("http", "https") or not target.hostname:
            raise ProviderProtocolError(f"{where}, which is not an http or https address")
        if api.scheme == "https" and target.scheme == "http":
            raise ProviderProtocolError(f"{where}: a link from https to http is never followed")
        host = target.hostname.lower().rstrip(".")
        named = any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in spec.download.hosts)
        listed = {(host, None), (host, target.port)} & parse_redirect_hosts(self.connection.redirect_hosts)
        if not named and not listed:
            raise ProviderProtocolError(
                f"{where}, a host the {self.spec.key} spec does not name in download.hosts; if {host} is the "
                f'vendor\'s, add it to the connection\'s redirect_hosts (e.g. "redirect_hosts": ["{host}"]): '
                "it is then fetched without credentials"
            )
        if not self.http.local_base:
            problem = _private_destination(host, target.port or (443 if target.scheme == "https" else 80))
            if problem is not None:
                raise ProviderProtocolError(f"{where}: {problem}")
        return ProviderHttp(
            origin,
            StaticHeaders({}),
            session=requests.Session(),  # its own: the API's cookies never go to the file's host
            timeout=self.http.timeout,
            verify=self.http.verify,
            budget=self.http.budget,
            redirect_hosts=self.connection.redirect_hosts,
            ends_at=self.http.ends_at,
        )


# --------------------------------------------------------------------------------------------------
# One class per spec


def declarative_class(spec: ProviderSpec) -> type[DeclarativeProvider]:
    """The adapter class for a spec, with the class attributes the workflow reads set from it, and its
    hooked steps (``spec.hooks``) run by their hooks."""
    kinds = (spec, *spec.variant_specs.values())
    linked = any(kind.download.source == "from_status" for kind in kinds)
    sealed = frozenset({LINK_FIELD}) if linked else frozenset()
    sealed |= {kind.submit.handle_field for kind in kinds if kind.submit is not None and kind.submit.sealed}
    attributes: dict[str, Any] = {
        "key": spec.key,
        "spec": spec,
        "settings_model": spec.settings_model,
        "reauth_statuses": spec.reauth_statuses,
        "sealed_handle_fields": sealed,
        "holds_request": spec.holds_request,
        "single_use_result": spec.single_use_result,
        "__doc__": f"{spec.title}, run from its provider spec.",
        "__module__": __name__,
    }
    for point, hook_name in spec.hooks.items():
        if point != "retry_after":  # not a step: read by the provider's session (DeclarativeProvider)
            attributes[point] = _hooked_step(point, resolve_hook(hook_name, point))
    name = "".join(part.capitalize() for part in spec.key.split("_")) + "Spec"
    return type(name, (DeclarativeProvider,), attributes)


def _hooked_step(point: str, hook: Callable[..., Any]) -> Any:
    """The provider method for ``point`` that runs ``hook``, which gets the step as data would run it."""
    if point == "validate":

        def validate(cls: type[DeclarativeProvider], request: JobRequest) -> None:
            hook(cls, request, default=functools.partial(DeclarativeProvider.validate.__func__, cls))

        return classmethod(validate)
    data_step = getattr(DeclarativeProvider, point)

    @functools.wraps(data_step)
    def step(self: DeclarativeProvider, *args: Any, **kwargs: Any) -> Any:
        return hook(self, *args, default=functools.partial(data_step, self), **kwargs)

    return step


@functools.cache
def packaged_provider(name: str) -> type[DeclarativeProvider]:
    """The adapter for a spec shipped in ``reportrelay/providers/specs`` (one class per process)."""
    return declarative_class(packaged_spec(name))


def user_provider(path: Path) -> type[DeclarativeProvider]:
    """The adapter for a user's spec file (``reportrelay.vendors``), read again when the file changes."""
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        modified = 0
    return _user_provider(path, modified)


@functools.lru_cache(maxsize=32)
def _user_provider(path: Path, modified: int) -> type[DeclarativeProvider]:
    return declarative_class(load_spec(path, str(path)))


# --------------------------------------------------------------------------------------------------
# A file that goes through a transform


def _transformed(
    transform: TransformSpec, output: str, response: requests.Response, name: str, label: str
) -> ResultStream:
    """The served JSON document of records as the stream to store: itself, or CSV (a ``.csv`` name)."""
    facts = {key: key for key in (transform.status, transform.message) if key is not None}
    if transform.truncated is not None:
        facts |= {key: key for key in (transform.truncated.flag, *transform.truncated.facts.values())}
    document = JsonRecords(
        RawSource(response, keep=output == "json"),
        label,
        records=transform.records,
        columns=transform.columns,
        facts=facts,
        verdict=functools.partial(_judge, transform),
        log=log,
    )
    if output == "csv":
        stem = name.rsplit(".", 1)[0] if "." in name else name
        return ResultStream(chunks=document.csv_chunks(), filename=f"{stem}.csv", content_type="text/csv")
    return ResultStream(
        chunks=document.json_chunks(),
        filename=name,
        content_type=content_type_of(response, name),
        content_length=decoded_length(response),
    )


def _judge(transform: TransformSpec, document: JsonRecords) -> None:
    """Raise unless the document's own status says it is complete (none given: stored as it is)."""
    truncated = transform.truncated
    if truncated is not None and document.facts.get(truncated.flag) is True:
        carried = {name: document.facts.get(key) for name, key in truncated.facts.items()}
        log.warning(
            truncated.message, extra={"document": document.label, **carried, "records": document.records}
        )
    if transform.status is None:
        return
    raw = document.facts.get(transform.status)
    if raw is None:
        log.warning("the document has no status; storing it as it is", extra={"document": document.label})
        return
    words = document.facts.get(transform.message) if transform.message else None
    said = f"status {_quoted(raw)}" + (f" ({_words(words)})" if _words(words) else "")
    state = state_in(transform.states, raw, case_sensitive=transform.case_sensitive)
    if state == "READY":
        return
    if state == "FAILED":
        raise ReportGenerationFailed(f"the results of {document.label} say {said}")
    if state == "CANCELLED":
        raise ReportCancelled(f"the results of {document.label} say {said}")
    complete = f", complete is {transform.complete}" if transform.complete is not None else ""
    raise DownloadInterrupted(
        f"the results of {document.label} are not complete ({said}{complete}); nothing was stored"
    )


# --------------------------------------------------------------------------------------------------
# Reading answers


def _checked(model: type[BaseModel], value: Any, where: str) -> None:
    try:
        model.model_validate(value)
    except ValidationError as error:
        message = describe_validation_error(error, where)
        unknown = [str(item["loc"][0]) for item in error.errors() if item["type"] == "extra_forbidden"]
        if unknown:
            known = ", ".join(model.model_fields) or "none"
            message += f" (unknown field {', '.join(map(repr, unknown))}; the fields are {known})"
        raise BadRequest(message) from None


def _json(response: requests.Response, action: str) -> Any:
    try:
        return response.json()
    except ValueError:
        path = urlsplit(response.request.url or "").path
        raise ProviderProtocolError(
            f"{action}: {response.request.method} {path} answered with non-JSON content"
        ) from None


def _settings_values(spec: ProviderSpec, settings: ProviderSettings) -> dict[str, Any]:
    """The connection's settings as templates see them: a setting of format "path" keeps its "/", and a
    setting with ``values`` is the value its word stands for (none, for null)."""
    values = settings.model_dump(exclude_none=True)
    for name, field in spec.settings.items():
        if field.format == "path" and isinstance(values.get(name), str):
            values[name] = PathValue(values[name])
        if field.values is not None and name in values and str(values[name]) in field.values:
            values[name] = field.values[str(values[name])]
    return {name: value for name, value in values.items() if value is not None}


def _more_states(words: Any) -> dict[str, Any]:
    """A ``check.more_states`` setting's words -> our state, any case ({"C": "ready"}); others left out."""
    if not isinstance(words, Mapping):
        return {}
    return {
        str(word): str(state).upper()
        for word, state in words.items()
        if str(state).upper() in ReportState.__members__
    }


def _alternatives(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def _path_words(path: str | tuple[str, ...]) -> str:
    return " or ".join(_alternatives(path))


def _found(body: Any, path: str | tuple[str, ...]) -> Any:
    """The value at the first of the paths that has one, an object or a list too (error details)."""
    found = (at_path(body, each) for each in _alternatives(path))
    return next((value for value in found if value is not None), None)


def vendor_words(errors: ErrorSpec, body: Any) -> str:
    """The vendor's words in an error envelope, as the spec says they read: '[CODE] words' or
    'CODE: words', then '(details)' when it has them; '' when it has neither code nor words."""
    code = _words(at_path(body, errors.code)) if errors.code else None
    words = _words(at_path(body, errors.message)) if errors.message else None
    if not code and not words:
        return ""
    if errors.form == "colon":
        text = f"{code}: {words or 'no error message'}" if code else str(words)
    else:
        text = " ".join(part for part in (f"[{code}]" if code else None, words) if part)
    details = _found(body, errors.details) if errors.details else None
    if details not in (None, "", {}, []):
        shown = (
            " ".join(details.split())
            if isinstance(details, str)
            else json.dumps(details, sort_keys=True, default=str)
        )
        text = f"{text} ({shown[:300]})"
    return text[:600]


def _retry_after(
    provider: DeclarativeProvider,
    wait_in: Callable[..., float | None],
    response: requests.Response,
    *args: Any,
    **kwargs: Any,
) -> requests.Response:
    """Session hook: a 429 without Retry-After gets one from the wait its body states (a spec's hook)."""
    if response.status_code != 429 or response.headers.get("Retry-After"):
        return response
    try:
        body = response.json()
    except ValueError:
        return response
    seconds = wait_in(provider, body)
    if seconds is not None:
        response.headers["Retry-After"] = str(seconds)
    return response


def listed(answer: Any, paths: str | tuple[str, ...], action: str) -> list[Any]:
    """The list an answer holds at the first of ``paths`` that has one (``$``, an OData ``value``)."""
    for path in (paths,) if isinstance(paths, str) else paths:
        found = at_path(answer, path)
        if isinstance(found, list):
            return found
    raise ProviderProtocolError(f"{action}: expected a JSON array, got {type(answer).__name__}")


def _kept(keep: Mapping[str, str | tuple[str, ...]], body: Any) -> Handle:
    """The values of an answer a spec keeps in the handle (those it has)."""
    found = {name: at_path(body, path) for name, path in keep.items()}
    return {name: value for name, value in found.items() if value not in (None, "")}


def _is_entry(item: Any, key: str, job_id: str | None) -> bool:
    found = at_path(item, key)
    return job_id is not None and found is not None and str(found) == job_id


def _more(pages: PagesSpec, answer: Any, page: list[Any], items: list[Any], size: int) -> bool:
    """Whether a page follows: ``has_more`` (true/false, or as text), else ``total``, else a full page."""
    has_more = at_path(answer, pages.has_more) if pages.has_more else None
    if isinstance(has_more, bool):
        return has_more and bool(page)
    if isinstance(has_more, str) and has_more.strip():
        return has_more.strip().lower() == "true" and bool(page)
    total = at_path(answer, pages.total) if pages.total else None
    if isinstance(total, int) and not isinstance(total, bool):
        return len(items) < total and bool(page)
    return len(page) >= size


def _described(field: FieldSpec) -> str:
    return f" ({field.description})" if field.description else ""


def _job_id(spec: ProviderSpec, handle: Handle) -> str | None:
    """The vendor's id of the queued report, from the handle field the spec keeps it in."""
    if spec.submit is None:
        return None
    found = handle.get(spec.submit.handle_field)
    return str(found) if found is not None else None


def _named_id(spec: ProviderSpec, handle: Handle) -> str | None:
    """The id messages may name: none when it is a credential (``submit.sealed``)."""
    return None if spec.submit is None or spec.submit.sealed else _job_id(spec, handle)


def _words(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return " ".join(value.split())[:500]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _quoted(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text[:80]


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return max(0.0, float(str(value).strip()))
    except ValueError:
        return None
