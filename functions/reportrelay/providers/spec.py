"""A vendor's report protocol written as data: the provider spec and its small template language.

A spec says how to sign in (which of the connection's auth strategies the vendor takes), how to queue a
report, how to read its status, where the file is, what the vendor's errors look like and how to cancel;
``reportrelay.providers.declarative`` runs any spec through the shared HTTP client, auth and transfer.
Specs are JSON files (``schemas/provider-spec.schema.json`` is this model's JSON Schema, kept equal to it
by a test); the packaged ones live in ``reportrelay/providers/specs/``.

Templates are plain ``{name.field}`` placeholders, never code. Where a value lands decides how it is
encoded: a path segment is percent-encoded as one segment (a ``/`` in a value cannot add a segment),
a query value as a value, a header is refused if it would carry a line break, and in a JSON body a
placeholder that is the whole string keeps the value's own JSON type (a list stays a list; an optional
value that is absent leaves its key out; a query parameter naming an absent value is not sent).
``{name!odata}`` puts the value as an OData string literal (in single quotes, a quote inside doubled).
``{{`` and ``}}`` are literal braces. Two shapes build JSON from
objects: ``{"$merge": [...]}`` merges objects, ``{"$entries": "{parameters}", "key": "name", "value":
"value"}`` lists an object's entries as name/value pairs.

The names a template may use: ``report.*``, ``parameters.*`` and ``format`` (the vendor's name for the
requested format) from the job request (checked against ``request`` before anything is sent),
``settings.*`` from the connection's provider settings, ``auth.client_id`` / ``auth.username`` (the
non-secret parts of the connection's auth), ``job.id``, the vendor's id for the queued report, and
``job.<field>``, a field the job's handle keeps (``check.keep``'s, or a submit hook's).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)

from reportrelay.errors import ConfigurationError, ProviderProtocolError
from reportrelay.providers.base import ProviderSettings
from reportrelay.providers.hooks import HOOK_NAME, HookPoint, resolve

SPEC_VERSION = 1
SPECS_DIR = Path(__file__).with_name("specs")
#: The namespaces a template may read, and what each holds.
NAMESPACES = ("report", "parameters", "format", "settings", "auth", "job")
#: The parts of a connection's auth a template may name: identifiers, never secrets.
AUTH_FIELDS = ("client_id", "username", "user", "application_id")

_PLACEHOLDER = re.compile(
    r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)(?:\|([^{}|!]*))?(?:!(odata))?\}"
)
#: A setting of format "path": empty, or segments each starting with "/" (a trailing "/" is dropped).
_PATH_VALUE = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*/?$")
_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}$")

State = Literal["PENDING", "RUNNING", "READY", "FAILED", "CANCELLED"]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Position = Literal["segment", "query", "header", "text"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------
# Templates


class TemplateError(ValueError):
    """A placeholder names something the context does not have, or a value cannot go where it is put."""


def placeholders(template: str) -> list[str]:
    """The dotted names a template string refers to, in order."""
    return [match.group(1) for match in _PLACEHOLDER.finditer(template) if match.group(1)]


def lookup(context: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` (``report.columns``) in the context; KeyError when any part is absent."""
    value: Any = context
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] is None:
            raise KeyError(name)
        value = value[part]
    return value


def _text(value: Any, name: str, position: Position) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"'{{{name}}}' is a {type(value).__name__}, which cannot be put in a {position}")


class PathValue(str):
    """A value that is a URL path of its own (a setting of format "path"): in a path it keeps its "/"."""


def render(template: str, context: Mapping[str, Any], position: Position) -> str:
    """The template with each placeholder replaced, encoded for where it goes."""

    def replace(match: re.Match[str]) -> str:
        name, fallback, conversion = match.group(1), match.group(2), match.group(3)
        if name is None:
            return match.group(0)[0]  # {{ or }}
        try:
            found = lookup(context, name)
            value = _text(found, name, position)
        except KeyError:
            if fallback is None:
                raise TemplateError(f"'{{{name}}}' has no value for this job") from None
            found, value = None, fallback
        if conversion == "odata":
            value = "'" + value.replace("'", "''") + "'"  # an OData string literal
        if position == "segment":
            return (
                quote(value.rstrip("/"), safe="/") if isinstance(found, PathValue) else quote(value, safe="")
            )
        if position == "header" and ("\r" in value or "\n" in value):
            raise TemplateError(f"'{{{name}}}' holds a line break, which cannot go in a header")
        return value

    return _PLACEHOLDER.sub(replace, template)


def has_values(template: str, context: Mapping[str, Any]) -> bool:
    """Whether every placeholder without a fallback has a value: a query parameter is sent only then."""
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) and match.group(2) is None:
            try:
                lookup(context, match.group(1))
            except KeyError:
                return False
    return True


_ABSENT = object()


def render_json(template: Any, context: Mapping[str, Any]) -> Any:
    """A JSON body from its template: whole-string placeholders keep their value's type; an absent one
    drops its key (or list item); placeholders inside longer strings are interpolated as text."""
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            try:
                return lookup(context, whole.group(1))
            except KeyError:
                return _ABSENT
        return render(template, context, "text")
    if isinstance(template, list):
        items = [render_json(item, context) for item in template]
        return [item for item in items if item is not _ABSENT]
    if isinstance(template, dict) and "$merge" in template:
        return _merged(template, context)
    if isinstance(template, dict) and "$entries" in template:
        return _entries(template, context)
    if isinstance(template, dict):
        rendered = {key: render_json(value, context) for key, value in template.items()}
        return {key: value for key, value in rendered.items() if value is not _ABSENT}
    return template


def _merged(template: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """``{"$merge": [a, b, ...]}``: the objects merged, later keys winning; absent ones are skipped."""
    merged: dict[str, Any] = {}
    for part in template["$merge"]:
        value = render_json(part, context)
        if value is _ABSENT:
            continue
        if not isinstance(value, Mapping):
            raise TemplateError(f"$merge takes objects, and {part!r} is a {type(value).__name__}")
        merged.update(value)
    return merged


def _entries(template: dict[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{"$entries": "{parameters}", "key": "name", "value": "value"}``: an object as a list of
    ``{"name": <key>, "value": <value>}`` pairs, in its order (none when it is absent)."""
    source = render_json(template["$entries"], context)
    if source is _ABSENT:
        return []
    if not isinstance(source, Mapping):
        raise TemplateError(f"$entries takes an object, and {template['$entries']!r} is not one")
    key, value = str(template.get("key", "name")), str(template.get("value", "value"))
    return [{key: name, value: item} for name, item in source.items()]


def _json_strings(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template]
    if isinstance(template, list):
        return [text for item in template for text in _json_strings(item)]
    if isinstance(template, dict):
        return [text for value in template.values() for text in _json_strings(value)]
    return []


# --------------------------------------------------------------------------------------------------
# Finding values in answers


def at_path(body: Any, path: str | tuple[str, ...]) -> Any:
    """The value at a dotted JSON path (``data.status``, ``items.0.id``; ``$`` is the whole body), or
    None when any step is missing; given several paths, the first that finds a value that is not an
    object or a list (a server that answers either ``{"taskStatus": 2}`` or a bare ``2``)."""
    if isinstance(path, tuple):
        found = [at_path(body, each) for each in path]
        return next(
            (value for value in found if value is not None and not isinstance(value, dict | list)), None
        )
    if path in ("", "$"):
        return body
    value = body
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value


class Extract(_Strict):
    """Where one value is in an answer: a JSON path into the body, a header, or the body as text;
    ``pattern`` (a regular expression with one group) then picks the part that is wanted."""

    json_path: str | tuple[str, ...] | None = Field(
        default=None, alias="json", description="dotted path ('$' is the whole body), or paths tried in order"
    )
    header: str | None = None
    text: bool = Field(default=False, description="the whole body as text, stripped")
    pattern: str | None = Field(default=None, description="a regex with one group applied to what was found")
    unquote: bool = Field(
        default=False,
        description="the vendor gives the value URL-encoded: decode it once here, as it is encoded once "
        "where it is sent",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> Extract:
        if sum((self.json_path is not None, self.header is not None, self.text)) != 1:
            raise ValueError("give exactly one of 'json', 'header' or 'text'")
        if self.pattern is not None and re.compile(self.pattern).groups != 1:
            raise ValueError("'pattern' must have exactly one group, the part to keep")
        return self

    def source(self) -> str:
        if self.header is not None:
            return f"header {self.header}"
        if self.text or self.json_path in ("", "$"):
            return "the body"
        paths = self.json_path if isinstance(self.json_path, tuple) else (self.json_path,)
        return " or ".join(f"'{path}'" for path in paths)


# --------------------------------------------------------------------------------------------------
# Request fields


FieldType = Literal["string", "integer", "number", "boolean", "array", "object"]
_PYTHON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list[Any],
    "object": dict[str, Any],
}


class FieldSpec(_Strict):
    """One field a job request (or a connection) may carry, checked before anything is sent."""

    type: FieldType
    required: bool = False
    description: str = ""
    enum: tuple[str | int, ...] | None = None
    pattern: str | None = Field(default=None, description="a regex the whole string must match")
    items: FieldType | FieldSpec | None = Field(
        default=None, description="an array's items: their type, or a field rule each item is checked by"
    )
    nullable: bool = Field(default=False, description="null is a value too (a required field must be given)")
    min_items: int | None = Field(default=None, ge=0)
    minimum: float | None = None
    exclusive_minimum: float | None = Field(default=None, description="the value must be greater")
    maximum: float | None = None
    properties: dict[str, FieldSpec] | None = Field(
        default=None, description="an object's fields checked by their rules (other fields pass)"
    )
    message: str | None = Field(
        default=None, description="what a value that breaks these rules is told, instead of the rule's words"
    )
    format: Literal["path"] | None = Field(
        default=None,
        description="'path': a URL path ('/api', or empty) that a path template takes as its own segments",
    )
    default: Any = Field(
        default=None, description="a connection setting's value when the connection has none"
    )
    values: dict[str, Any] | None = Field(
        default=None,
        description="a connection setting's words -> the value templates see for each (null: no value, "
        "so a query parameter naming it is not sent)",
    )

    def annotation(self) -> Any:
        if self.format == "path":
            return Annotated[str, Field(pattern=_PATH_VALUE.pattern, description=self.description or None)]
        if self.enum is not None:
            base: Any = Literal[self.enum]  # type: ignore[valid-type]
        elif self.type == "object" and self.properties is not None:
            base = fields_model("object", self.properties, extra=True)
        elif self.type == "array" and isinstance(self.items, FieldSpec):
            base = list[self.items.annotation()]  # type: ignore[misc]
        elif self.type == "array" and self.items is not None:
            base = list[_PYTHON_TYPES[self.items]]
        else:
            base = _PYTHON_TYPES[self.type]
        constraints: dict[str, Any] = {"description": self.description or None}
        if self.pattern is not None:
            constraints["pattern"] = f"^(?:{self.pattern})$"
        if self.min_items is not None:
            constraints["min_length"] = self.min_items
        if self.minimum is not None:
            constraints["ge"] = self.minimum
        if self.exclusive_minimum is not None:
            constraints["gt"] = self.exclusive_minimum
        if self.maximum is not None:
            constraints["le"] = self.maximum
        if self.type == "string" and self.enum is None:
            constraints.setdefault("min_length", 1)
        if self.message is not None:
            annotated: Any = Annotated[base, Field(**constraints), WrapValidator(_told(self.message))]
        else:
            annotated = Annotated[base, Field(**constraints)]
        return annotated | None if self.nullable else annotated


def _told(message: str) -> Callable[[Any, ValidatorFunctionWrapHandler], Any]:
    """A validator that answers a broken rule with the spec's own words (an inner field's error stays)."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as error:
            if any(item["loc"] for item in error.errors()):
                raise
            raise ValueError(message) from None

    return validate


def _strict_number(field: FieldSpec) -> Any:
    """A setting's annotation; a number strict as request fields are (a tenant id "69" is a mistake)."""
    numeric = field.type in ("integer", "number", "boolean") and field.enum is None and field.format is None
    return Annotated[field.annotation(), Field(strict=True)] if numeric else field.annotation()


def fields_model(name: str, fields: Mapping[str, FieldSpec], *, extra: bool = False) -> type[BaseModel]:
    """A pydantic model checking an object against field specs (strict: "10" is not an integer)."""
    definitions: dict[str, Any] = {
        key: (field.annotation(), ... if field.required else None) for key, field in fields.items()
    }
    config = ConfigDict(extra="allow" if extra else "forbid", strict=True)
    return create_model(name, __config__=config, **definitions)


class RequestSpec(_Strict):
    """What a job request for this vendor may say: its formats, ``report`` fields and ``parameters``."""

    formats: dict[Annotated[str, Field(pattern=r"^[a-z0-9_.+-]{1,32}$")], str] = Field(
        min_length=1, description="the request's format (lower case) -> the vendor's name for it, '{format}'"
    )
    report: dict[str, FieldSpec] = Field(default_factory=dict)
    parameters: dict[str, FieldSpec] = Field(default_factory=dict)
    other_parameters: bool = Field(default=False, description="accept parameters not listed above")
    no_parameters: str | None = Field(
        default=None,
        description="for a report that takes no parameters: where a request's filters go instead, said "
        "when it brings parameters ('<title> reports take no parameters; <this>')",
    )
    one_of: tuple[tuple[str, ...], ...] = Field(
        default=(),
        description="groups of report fields of which a request gives exactly one (a name or an id)",
    )
    label: str | None = Field(
        default=None,
        description="how messages name the requested report, a template ('element {report.element_id}')",
    )
    noun: str | None = Field(
        default=None,
        description="how messages name such a report ('a DevExpress report'); default '<title> reports'",
    )

    @model_validator(mode="after")
    def _one_of_names_report_fields(self) -> RequestSpec:
        for index, group in enumerate(self.one_of):
            unknown = [name for name in group if name not in self.report]
            if len(group) < 2 or unknown:
                raise ValueError(f"one_of.{index}: name two or more of the report's fields, not {group}")
        return self


# --------------------------------------------------------------------------------------------------
# Calls


class RefusalSpec(_Strict):
    """A vendor that answers 200 with an error in the body (``{"status": "ERROR", "message": ...}``):
    the call is refused, in the words at ``errors.message``, when the value at ``status`` is one of
    ``values`` (any case)."""

    status: str = Field(description="JSON path of the answer's own status")
    values: tuple[str, ...] = Field(min_length=1, description="its values that mean the call was refused")


class CallSpec(_Strict):
    """One HTTP request to the vendor's API, on the connection's base URL, with its credentials."""

    method: Method = "GET"
    path: str = Field(
        pattern=r"^(?:/|\{settings\.[A-Za-z0-9_]+\})[^?#]*$",
        description="a template; placeholders are path segments, but a setting of format 'path', which "
        "may start it, is segments of its own",
    )
    query: dict[str, str | tuple[str, ...]] = Field(
        default_factory=dict,
        description="name -> value template, or templates tried in order (the first whose values the job "
        "has is sent; none: the parameter is not sent)",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="name -> value template")
    body: Any = Field(default=None, description="a JSON body template")
    action: str | None = Field(
        default=None,
        min_length=1,
        description="how messages name the call ('start Clinical One report job'); default by its part "
        "('queue report', 'check report status', 'download report', ...)",
    )
    content_type: str | None = Field(default=None, description="the Content-Type of a JSON body")
    accept: str | None = Field(default=None, description="sent as Accept")
    idempotent: bool | None = Field(
        default=None,
        description="repeat on a transient failure; default: only GET, PUT, DELETE (a POST may queue twice)",
    )
    refused_if: RefusalSpec | None = Field(
        default=None, description="a successful JSON answer that still says the call was refused"
    )

    def templates(self) -> list[str]:
        queries = [
            text
            for value in self.query.values()
            for text in _json_strings(list(value) if isinstance(value, tuple) else value)
        ]
        return [self.path, *queries, *self.headers.values(), *_json_strings(self.body)]


class SubmitSpec(CallSpec):
    """The call that queues the report, and where its answer names the queued report."""

    method: Method = "POST"
    id: Extract | None = Field(description="where the report's id is; null when the vendor gives none")
    handle_field: str = Field(
        default="id",
        pattern=r"^[a-z][a-z0-9_]{0,40}$",
        description="the handle field that keeps the id: jobs in flight carry it, so it never changes",
    )
    sealed: bool = Field(
        default=False,
        description="the id is a credential (a download session's token): sealed in the handle, never "
        "named in messages",
    )
    queued_at_field: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,40}$",
        description="a handle field that keeps when the report was queued (epoch seconds), for a vendor "
        "whose queued report expires",
    )
    owner: bool = Field(
        default=False,
        description="the submit intent's hint carries a fresh 'owner' id, for a find_submitted hook that "
        "claims the report it finds in the shared claim store",
    )
    keep: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")], str | tuple[str, ...]] = Field(
        default_factory=dict,
        description="handle field -> JSON path (or paths tried in order) of a value of the queue call's "
        "answer kept for later calls as '{job.<field>}' (Clinical One's kickoff time), when it has one",
    )


class OfferedFormatsSpec(CallSpec):
    """A call that lists the formats this very report offers (its plugin decides, say): the request's
    format is checked against the list before the report is queued."""

    formats: str = Field(description="JSON path of the list of the vendor's format names")


class HoldSpec(CallSpec):
    """The long-lived request that keeps generation going (``holds_request``), made by a separate
    function while the status is checked; it is never repeated, as a second one may start a second run."""

    idempotent: bool | None = False
    read_timeout: str | None = Field(
        default=None,
        description="how long to wait for its answer, in seconds (a template naming a setting); "
        "default: the connection's read timeout",
    )

    def templates(self) -> list[str]:
        return [*super().templates(), *([self.read_timeout] if self.read_timeout else [])]


class PagesSpec(_Strict):
    """A list served in pages by ``limit`` and ``offset`` query values: pages are read, their items
    concatenated, until the job's entry turns up or the list ends. The offset advances by the items that
    came back (a server may send fewer than asked for); the list ends at ``has_more`` false, else at
    ``total``, else at a page shorter than ``size``."""

    offset: str = Field(
        default="offset", min_length=1, description="the query name of the first item's index"
    )
    limit: str = Field(default="limit", min_length=1, description="the query name of the page size")
    size: int | str = Field(
        default=50, description="the items asked for per page (1 to 10000), or a template naming a setting"
    )
    max_pages: int | str = Field(
        default=100, description="the pages read per check at most, or a template naming a setting"
    )
    has_more: str | None = Field(
        default=None, description="JSON path of whether more follow (true/false, or the text 'true'/'false')"
    )
    total: str | None = Field(default=None, description="JSON path of how many items the whole list has")

    @model_validator(mode="after")
    def _counts_in_range(self) -> PagesSpec:
        for name, value, most in (("size", self.size, 10_000), ("max_pages", self.max_pages, 10_000)):
            if isinstance(value, int) and not 1 <= value <= most:
                raise ValueError(f"'{name}' must be from 1 to {most}")
        return self


class AbsentSpec(_Strict):
    """What a job whose entry is not listed is (a list of finished runs only: not listed yet)."""

    state: State
    message: str = Field(min_length=1, description="what the job is told (a template)")


class UnknownSpec(_Strict):
    """An unmapped status value is this state, told so, instead of a protocol error; unless the connection
    setting ``fail_setting`` is ``"fail"``."""

    state: State
    message: str = Field(min_length=1, description="what the job is told (a template; '{status}' the value)")
    fail_setting: str | None = Field(
        default=None, description="a connection setting whose value 'fail' makes it a protocol error again"
    )


class EntrySpec(_Strict):
    """A status answer that lists many reports (a queue): the job's is the item whose ``key`` is its id,
    and the check's other paths are read in that item."""

    items: str | tuple[str, ...] = Field(
        default="$",
        description="JSON path of the list, or paths tried in order ('$' then 'value': an OData envelope)",
    )
    key: str = Field(min_length=1, description="JSON path, in an item, of the report's id ('{job.id}')")
    pages: PagesSpec | None = Field(default=None, description="the list is served in pages")
    absent: AbsentSpec | None = Field(
        default=None, description="a job not listed is this, instead of a protocol error (gone from the list)"
    )


class CheckSpec(CallSpec):
    """The status call: where the state, progress, message and download link are, and what states mean.

    ``states`` maps the vendor's status values to ours; a key may be a glob (``IN_*``, ``*``), tried after
    the exact keys in the order written. Values are compared as text (an integer 2 is ``"2"``), ignoring
    case unless ``case_sensitive``. An unknown value is a protocol error that names it.
    """

    answer: Literal["json", "text"] = "json"
    status: str | tuple[str, ...] = Field(
        default="$",
        description="JSON path of the status value, or paths tried in order (text answers: the body)",
    )
    states: dict[str, State] = Field(min_length=1)
    case_sensitive: bool = False
    no_status: State | None = Field(
        default=None,
        description="the state of an answer (or entry) with no status at all, instead of a protocol error "
        "(READY for a list of the reports ready to download)",
    )
    status_name: str = Field(
        default="report status", description="what the vendor calls its status, in messages ('task status')"
    )
    progress: str | None = Field(default=None, description="JSON path of a percentage (45 or '45%')")
    message: str | tuple[str, ...] | None = Field(
        default=None, description="JSON path (or paths tried in order) of the vendor's words on the state"
    )
    retry_after: Extract | None = Field(
        default=None, description="where a throttled (429) answer says how long to wait, when not Retry-After"
    )
    download_url: str | None = Field(default=None, description="JSON path of the file's URL once ready")
    download_url_expires_at: str | None = Field(
        default=None, description="JSON path of when that URL expires (ISO 8601 or epoch seconds)"
    )
    messages: dict[Literal["FAILED", "CANCELLED"], str] = Field(
        default_factory=dict,
        description="how a job that ended so is told (a template; '{status}' is the vendor's value), then "
        "the vendor's words; default '<title> report <id> failed' / '... was cancelled at the vendor'",
    )
    entry: EntrySpec | None = Field(
        default=None, description="the answer lists many reports; where the job's own is among them"
    )
    keep: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")], str | tuple[str, ...]] = Field(
        default_factory=dict,
        description="handle field -> JSON path (or paths tried in order) of a value the ready report must "
        "have (a file id), kept for the download as '{job.<field>}'; ready without it is a failure",
    )
    letters_only: bool = Field(
        default=False,
        description="compare only a status value's letters, ignoring case: 'In Progress', 'IN_PROGRESS' "
        "and 'inprogress' are one (and so are the keys of states)",
    )
    more_states: str | None = Field(
        default=None,
        description="a connection setting (an object: vendor value -> state, any case) whose entries add "
        "to states, for a vendor whose values are not published",
    )
    unknown: UnknownSpec | None = Field(
        default=None,
        description="what an unmapped status value is, instead of a protocol error (keep waiting, saying so)",
    )
    started_at: str | None = Field(
        default=None, description="JSON path of when the vendor started generating (ISO 8601 or epoch)"
    )
    finished_at: str | None = Field(
        default=None, description="JSON path of when the vendor finished: with started_at, its own duration"
    )

    @model_validator(mode="after")
    def _paths_need_json(self) -> CheckSpec:
        if self.answer == "text":
            paths = {"progress": self.progress, "message": self.message, "download_url": self.download_url}
            paths |= {"entry": self.entry, "started_at": self.started_at, "finished_at": self.finished_at}
            named = [name for name, path in paths.items() if path is not None]
            named += ["keep"] if self.keep else []
            if named:
                raise ValueError(f"a text answer has no JSON paths: remove {', '.join(named)}")
        return self

    def state_of(self, raw: Any, more: Mapping[str, State] | None = None) -> State | None:
        """Our state for a status value; ``more`` (a ``more_states`` setting's words) is tried first."""
        if more:
            found = state_in(more, raw, case_sensitive=False, letters_only=self.letters_only)
            if found is not None:
                return found
        return state_in(self.states, raw, case_sensitive=self.case_sensitive, letters_only=self.letters_only)


def letters_of(text: str) -> str:
    """A status word's letters in lower case ('IN_PROGRESS' -> 'inprogress'); itself when it has none."""
    return re.sub(r"[^a-z]", "", text.lower()) or text.strip().lower()


def state_in(
    states: Mapping[str, State], raw: Any, *, case_sensitive: bool, letters_only: bool = False
) -> State | None:
    """Our state for a vendor's status value: exact keys first, then globs in the order written."""
    if raw is None or isinstance(raw, dict | list):
        return None
    value = _text(raw, "status", "text").strip()
    if letters_only:
        value, states = letters_of(value), {letters_of(key): state for key, state in states.items()}
    value = value if case_sensitive else value.lower()
    patterns = [(key if case_sensitive else key.lower(), state) for key, state in states.items()]
    for key, state in patterns:
        if key == value:
            return state
    for key, state in patterns:
        if any(mark in key for mark in "*?[") and fnmatch.fnmatchcase(value, key):
            return state
    return None


#: Attributes a log record has of its own, which a fact logged beside it must not take.
_LOG_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "document",
    "records",
}


class TruncatedSpec(_Strict):
    """A document that says it holds only part of the records is stored, with a warning saying so."""

    flag: str = Field(pattern=r"^[A-Za-z0-9_]+$", description="the top-level key that is true when cut short")
    message: str = Field(min_length=1, description="the warning's words")
    facts: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], str] = Field(
        default_factory=dict, description="name -> top-level key of a value the warning carries (a limit)"
    )

    @model_validator(mode="after")
    def _names_free_in_a_log_record(self) -> TruncatedSpec:
        taken = sorted(set(self.facts) & _LOG_RECORD_FIELDS)
        if taken:
            raise ValueError(
                f"facts: {', '.join(taken)} is a log record's own attribute; choose another name"
            )
        return self


class TransformSpec(_Strict):
    """The vendor serves a JSON document of records (``reportrelay.transforms.json_records``):
    for the request formats in ``formats`` it is read as it arrives, passed through (``json``) or written
    as CSV (``csv``), and stored only when the document's own ``status`` maps to READY in ``states``
    (FAILED or CANCELLED fail the job; any other state, or an unknown value, is a download to repeat)."""

    name: Literal["json_records"]
    formats: dict[str, Literal["json", "csv"]] = Field(
        min_length=1, description="request format -> what is stored: the document as it is, or CSV"
    )
    records: str = Field(
        default="data", pattern=r"^[A-Za-z0-9_]+$", description="the top-level key of records"
    )
    columns: str | None = Field(
        default=None,
        description="the ijson prefix naming the CSV's columns (e.g. request.displayFields.item.fieldName); "
        "default: the first record's keys",
    )
    status: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_]+$", description="the top-level key of the document's own status"
    )
    message: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_]+$", description="the top-level key of its words on that status"
    )
    states: dict[str, State] = Field(default_factory=dict, description="as check.states, for that status")
    case_sensitive: bool = False
    complete: str | None = Field(
        default=None, description="the status value that means complete, named when a document is not"
    )
    truncated: TruncatedSpec | None = Field(
        default=None, description="a top-level flag saying the document holds only part of the records"
    )

    @model_validator(mode="after")
    def _status_needs_states(self) -> TransformSpec:
        if (self.status is None) != (not self.states):
            raise ValueError("'status' and 'states' go together: where the status is, and what it means")
        return self


class DownloadSpec(_Strict):
    """Where the finished file is: a call on the API (``call``) or the URL the status gave (``from_status``).

    A URL from the status may be on another host, named in ``hosts`` (globs) or the connection's
    ``redirect_hosts``, and is then fetched without any credential. When it has expired, or its host
    answers one of ``refresh_statuses``, the status is checked again for a fresh one (once).
    """

    source: Literal["call", "from_status"]
    call: CallSpec | None = None
    hosts: tuple[str, ...] = Field(default=(), description="globs of other hosts the URL may be on")
    refresh_statuses: tuple[int, ...] = Field(default=(400, 403), description="an expired link's answers")
    filename: str = Field(description="the file name when the server names none (a template)")
    server_filename: bool = Field(default=True, description="prefer the name in Content-Disposition")
    extension: str | None = Field(default=None, description="added when the name has none (a template)")
    extensions: dict[str, str] = Field(
        default_factory=dict, description="request format -> the extension for it, instead of 'extension'"
    )
    content_type: str | None = Field(default=None, description="used when the server says none")
    content_types: dict[str, str] = Field(
        default_factory=dict, description="request format -> its content type, instead of 'content_type'"
    )
    html_formats: tuple[str, ...] = Field(
        default=(), description="request formats whose file is an HTML page (else HTML is a sign-in page)"
    )
    transform: TransformSpec | None = Field(default=None, description="a transform the file goes through")
    refuse_json: bool = Field(
        default=False,
        description="no report format is JSON: a JSON answer is the vendor's error (read as errors say), "
        "or a protocol error, never the file",
    )

    @model_validator(mode="after")
    def _source_has_what_it_needs(self) -> DownloadSpec:
        if (self.source == "call") != (self.call is not None):
            raise ValueError("'call' is required with source 'call' and only then")
        return self


class ErrorSpec(_Strict):
    """Where the vendor's own code and message are in an error answer of ``statuses``."""

    statuses: tuple[int, ...] = Field(
        default=(400, 403, 404, 409, 410, 422, 425),
        description="answers with the envelope; a reauth status listed here is still refused after one new "
        "sign-in, and then quoted",
    )
    code: str | tuple[str, ...] | None = Field(
        default=None, description="JSON path (or paths tried in order) of the vendor's error code"
    )
    message: str | tuple[str, ...] | None = Field(
        default=None, description="JSON path (or paths tried in order) of the vendor's error message"
    )
    details: str | tuple[str, ...] | None = Field(
        default=None,
        description="JSON path (or paths tried in order) of the vendor's details, added in parentheses "
        "(an object as JSON)",
    )
    form: Literal["bracket", "colon"] = Field(
        default="bracket", description="how the code leads the words: '[CODE] words' or 'CODE: words'"
    )
    failed: dict[str, str] = Field(
        default_factory=dict,
        description="a vendor message (any case) that means the report failed rather than the call was "
        "refused -> what it means, added to it (a template)",
    )


class VariantSpec(_Strict):
    """Another kind of report of the same vendor (DevExpress' dashboards beside its reports), used for a
    request whose ``report`` has the field ``when``; its sections replace the spec's own, whole."""

    when: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the report field that selects it")
    request: RequestSpec
    submit: SubmitSpec | None = Field(description="null: nothing is queued, the download call makes the file")
    check: CheckSpec | None = None
    download: DownloadSpec
    cancel: CallSpec | None = None
    lost_submission: str | None = None


class ProviderSpec(_Strict):
    """One vendor's report API, as data (see the module docstring for templates).

    ``submit`` null is a vendor whose download call makes the file (a synchronous export): nothing is
    queued, nothing is checked (``check`` null too), and the job is ready at once.
    """

    schema_ref: str | None = Field(default=None, alias="$schema", description="the spec's JSON Schema")
    spec_version: Literal[1]
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="the connection's 'provider'")
    title: str = Field(min_length=1, description="the vendor's product, as people name it")
    documentation: str | None = Field(default=None, description="where the vendor documents the API")
    auth: tuple[str, ...] = Field(min_length=1, description="the connection auth types the vendor takes")
    settings: dict[str, FieldSpec] = Field(default_factory=dict, description="connection settings")
    headers: dict[str, str] = Field(
        default_factory=dict, description="sent with every API call (never to another host)"
    )
    request: RequestSpec
    submit: SubmitSpec | None
    check: CheckSpec | None
    download: DownloadSpec
    errors: ErrorSpec = ErrorSpec()
    cancel: CallSpec | None = None
    reauth_statuses: tuple[int, ...] = (401,)
    auth_refused: dict[str, str] = Field(
        default_factory=dict,
        description="connection auth type -> what to do when the vendor still refuses it after signing "
        "in again (a personal token past its expiry, say)",
    )
    offered_formats: OfferedFormatsSpec | None = Field(
        default=None, description="a call listing the formats the requested report offers, checked first"
    )
    holds_request: bool = Field(
        default=False,
        description="the vendor generates the report only while one request ('hold') stays open",
    )
    hold: HoldSpec | None = Field(default=None, description="that request, with holds_request")
    single_use_result: bool = Field(
        default=False,
        description="the file can be downloaded once: a failed store starts the job again from submit",
    )
    lost_submission: str | None = Field(
        default=None,
        description="where a person finds a report whose queue call's answer was lost (a template)",
    )
    variants: tuple[VariantSpec, ...] = Field(
        default=(), description="other kinds of report, each chosen by a field of the request's report"
    )
    hooks: dict[HookPoint, Annotated[str, Field(pattern=HOOK_NAME)]] = Field(
        default_factory=dict,
        description="provider steps run by a shipped hook (reportrelay.providers.hooks), for what data "
        "cannot say; the hook gets the step as the spec alone would run it",
    )
    calls: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")], CallSpec] = Field(
        default_factory=dict,
        description="further calls a hook makes, by name (a report list to find an id in), so that what "
        "is sent stays data; their templates are checked like the others'",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _hooks_are_shipped(self) -> ProviderSpec:
        for point, name in self.hooks.items():
            try:
                resolve(name, point)
            except ValueError as error:
                raise ValueError(f"hooks.{point}: {error}") from None
        return self

    @model_validator(mode="after")
    def _templates_name_known_values(self) -> ProviderSpec:
        for where, template in self._all_templates():
            for name in placeholders(template):
                self._check_name(where, name)
        for where, call in self._calls().items():
            start = _WHOLE.match(call.path.partition("}")[0] + "}") if call.path.startswith("{") else None
            setting = self.settings.get(start.group(1).partition(".")[2]) if start else None
            if call.path.startswith("{") and (setting is None or setting.format != "path"):
                raise ValueError(f"{where}.path: only a setting of format 'path' may start a path")
        if (self.submit is None) != (self.check is None):
            raise ValueError("'submit' and 'check' are both null (a synchronous export) or neither")
        if self.download.source == "from_status" and (self.check is None or self.check.download_url is None):
            raise ValueError("download.source 'from_status' needs check.download_url")
        if self.holds_request != (self.hold is not None):
            raise ValueError("'holds_request' and 'hold' go together: that a request is held, and which")
        for index, variant in enumerate(self.variants):
            if variant.when in self.request.report:
                raise ValueError(
                    f"variants.{index}.when: '{variant.when}' is a field of the spec's own report"
                )
        if self.check is not None:
            fail_setting = self.check.unknown.fail_setting if self.check.unknown is not None else None
            for where, name in (
                ("more_states", self.check.more_states),
                ("unknown.fail_setting", fail_setting),
            ):
                if name is not None and name not in self.settings:
                    raise ValueError(f"check.{where}: '{name}' is not a declared setting")
        _ = self.variant_specs  # each variant is checked as a whole spec now, not at its first job
        return self

    @cached_property
    def variant_specs(self) -> dict[str, ProviderSpec]:
        """Each variant's ``when`` field -> the whole spec it makes (the spec's sections, the variant's
        replacing them)."""
        common = self.model_dump(by_alias=True, exclude={"variants"}, exclude_unset=True)
        specs = {}
        for index, variant in enumerate(self.variants):
            own = variant.model_dump(by_alias=True, exclude={"when"}, exclude_unset=True)
            replaced = ("submit", "check", "cancel", "lost_submission")
            document = {**common, **own, **{section: own.get(section) for section in replaced}}
            try:
                specs[variant.when] = ProviderSpec.model_validate(document)
            except ValidationError as error:
                problem = error.errors()[0]
                location = ".".join(str(part) for part in problem["loc"])
                message = problem["msg"].removeprefix("Value error, ")
                raise ValueError(
                    f"variants.{index}: {location + ': ' if location else ''}{message}"
                ) from None
        return specs

    def for_report(self, report: Mapping[str, Any] | None) -> ProviderSpec:
        """The spec a request's ``report`` is run by: the variant whose field it has, else this one."""
        chosen = [when for when in self.variant_specs if report and report.get(when) is not None]
        return self.variant_specs[chosen[0]] if len(chosen) == 1 else self

    def noun(self) -> str:
        return self.request.noun or f"{self.title} reports"

    def _calls(self) -> dict[str, CallSpec]:
        calls = {
            "submit": self.submit,
            "check": self.check,
            "cancel": self.cancel,
            "download.call": self.download.call,
            "offered_formats": self.offered_formats,
            "hold": self.hold,
            **{f"calls.{name}": call for name, call in self.calls.items()},
        }
        return {section: call for section, call in calls.items() if call is not None}

    def _all_templates(self) -> list[tuple[str, str]]:
        found = [(f"headers.{name}", value) for name, value in self.headers.items()]
        for section, call in self._calls().items():
            found += [(section, template) for template in call.templates()]
        found.append(("download.filename", self.download.filename))
        if self.download.extension is not None:
            found.append(("download.extension", self.download.extension))
        found += [(f"download.extensions.{name}", value) for name, value in self.download.extensions.items()]
        if self.lost_submission is not None:
            found.append(("lost_submission", self.lost_submission))
        if self.request.label is not None:
            found.append(("request.label", self.request.label))
        found += [(f"errors.failed.{words}", meaning) for words, meaning in self.errors.failed.items()]
        if self.check is not None:
            found += [(f"check.messages.{state}", text) for state, text in self.check.messages.items()]
        if self.check is not None and self.check.entry is not None and self.check.entry.absent is not None:
            found.append(("check.entry.absent.message", self.check.entry.absent.message))
        pages = self.check.entry.pages if self.check is not None and self.check.entry is not None else None
        if pages is not None:
            counts = {"size": pages.size, "max_pages": pages.max_pages}
            found += [(f"check.entry.pages.{name}", v) for name, v in counts.items() if isinstance(v, str)]
        if self.check is not None and self.check.unknown is not None:
            found.append(("check.unknown.message", self.check.unknown.message))
        return found

    def _check_name(self, where: str, name: str) -> None:
        space, _, rest = name.partition(".")
        known = {
            "report": self.request.report,
            "parameters": self.request.parameters,
            "settings": self.settings,
        }
        if space == "format" and not rest:
            return
        if space == "status" and not rest and where.startswith(("check.messages.", "check.unknown.")):
            return
        if space == "auth" and rest in AUTH_FIELDS:
            return
        hooked_submit = "submit" in self.hooks  # a submit hook keeps the id and fields of its own
        if space == "job" and rest == "id":
            if self.submit is None or (self.submit.id is None and not hooked_submit):
                raise ValueError(f"{where}: '{{job.id}}' is used but submit.id says the vendor gives no id")
            if where == "submit":
                raise ValueError("submit: '{job.id}' has no value before the report is queued")
            return
        if space == "job" and rest:
            field = rest.split(".")[0]
            kept = (self.check is not None and field in self.check.keep) or field in self.submit_keeps
            if hooked_submit or (kept and where != "submit"):
                return
            raise ValueError(
                f"{where}: '{{{name}}}' is not a known value (a job field must be one check.keep keeps)"
            )
        if space in known and not rest:
            return  # the whole object, for $entries or $merge
        if space in known:
            field = rest.split(".")[0]
            if field in known[space] or (space == "parameters" and self.request.other_parameters and field):
                return
            raise ValueError(f"{where}: '{{{name}}}' names no declared {space} field")
        raise ValueError(f"{where}: '{{{name}}}' is not a known value (use one of {', '.join(NAMESPACES)})")

    @property
    def submit_keeps(self) -> dict[str, str | tuple[str, ...]]:
        return self.submit.keep if self.submit is not None else {}

    def auth_fields_named(self) -> list[str]:
        """The connection auth fields (``auth.client_id``) the spec's templates send."""
        names = [name for _, template in self._all_templates() for name in placeholders(template)]
        return sorted({name.partition(".")[2] for name in names if name.startswith("auth.")})

    @cached_property
    def report_model(self) -> type[BaseModel]:
        return fields_model(f"{self.key}_report", self.request.report)

    @cached_property
    def parameters_model(self) -> type[BaseModel]:
        return fields_model(
            f"{self.key}_parameters", self.request.parameters, extra=self.request.other_parameters
        )

    @cached_property
    def settings_model(self) -> type[BaseModel]:
        definitions: dict[str, Any] = {
            key: (_strict_number(field), ... if field.required else field.default)
            for key, field in self.settings.items()
        }
        return create_model(f"{self.key}_settings", __base__=ProviderSettings, **definitions)


# --------------------------------------------------------------------------------------------------
# Loading


def parse_spec(document: Any, where: str) -> ProviderSpec:
    """A spec from its parsed JSON; a one-line ConfigurationError ``<where>: <field>: <what>`` otherwise."""
    try:
        return ProviderSpec.model_validate(document)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{location}: {message}" if location else message)
        raise ConfigurationError(f"{where}: {'; '.join(problems)}") from None


def load_spec(path: Path, shown: str | None = None) -> ProviderSpec:
    """A spec file, checked; errors name it as ``shown`` (default: the file's name)."""
    where = shown or path.name
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"{where}: cannot read the provider spec ({error.strerror})") from None
    except ValueError as error:
        raise ConfigurationError(f"{where}: the provider spec is not valid JSON ({error})") from None
    return parse_spec(document, where)


def packaged_spec(name: str) -> ProviderSpec:
    """A spec shipped in ``reportrelay/providers/specs``."""
    return load_spec(SPECS_DIR / f"{name}.json")


def expiry_seconds(value: Any) -> float | None:
    """When a link expires, as epoch seconds, from an ISO 8601 text or epoch seconds (or milliseconds)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ProviderProtocolError(f"the download link's expiry {value[:40]!r} is not a date") from None
        if moment.tzinfo is None:
            raise ProviderProtocolError(f"the download link's expiry {value[:40]!r} has no time zone")
        return moment.timestamp()
    return None


def vendor_time(value: Any) -> float | None:
    """A time a vendor reports (ISO 8601 or epoch seconds) as epoch seconds, else None.

    A date without a time zone (Torus' ``dateStarted``) is read as UTC: such times are only ever
    subtracted from one another, so the zone the server meant cancels out.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def percent(value: Any) -> float | None:
    """A progress value (45, 45.5, "45%") as a percentage between 0 and 100, else None."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip().rstrip("%").strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return max(0.0, min(100.0, number))


SCHEMA_ID = "https://reportrelay.example/schemas/provider-spec.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, as ``schemas/provider-spec.schema.json`` holds it.

    A test keeps the two equal; regenerate the file with
    ``python -m reportrelay.providers.spec > schemas/provider-spec.schema.json``.
    """
    schema = ProviderSpec.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
