"""The web console: the job API's own pages for people (a list of the team's jobs, a page per job, a form).

Served by the API function on the people API (``reportrelay.handlers.api`` has the routes), so it needs no
hosting of its own and signs in the way the download links do: a signed-out browser is sent to the
identity provider and comes back with the session cookie. Plain server-rendered HTML, every value
escaped here; one small script (``static/console.js``, served from this API, no inline code) follows
unfinished jobs through the JSON routes (``GET /reports/{id}``, ``/events?after=``).

Forms that change something (start, cancel, re-run) are POSTs protected twice against cross-site use:
the session cookie is ``SameSite=Lax`` (a cross-site POST carries none), and each form carries a token
that must equal the ``reportrelay_csrf`` cookie (``SameSite=Strict``, HttpOnly) the page set; a POST
whose ``Origin`` is another site is refused as well. Pages answer with a Content-Security-Policy that
allows scripts, styles and fetches from this origin only, and no framing.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from reportrelay.errors import ReportRelayError

CSRF_COOKIE = "reportrelay_csrf"
CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # the forms' Origin is sent; S3 and others get no referrer
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_FILES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
STATES = ("queued", "running", "ready", "failed", "cancelled")
FINAL_STATES = ("ready", "failed", "cancelled")
PAGE_SIZE = 25
MAX_FORM_BYTES = 64 * 1024


class FormRefused(ReportRelayError):
    """A console form that cannot be acted on: no or a wrong CSRF token, another site's origin (403)."""


@dataclass(frozen=True)
class Filters:
    """The list page's filters, as the query string gave them (dates are UTC days, inclusive)."""

    state: str | None = None
    connection: str | None = None
    since: str | None = None
    until: str | None = None
    cursor: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str | None]) -> Filters:
        """Filters from the query; a bad value is a ``ValueError`` naming the field and what it takes."""
        state = query.get("state") or None
        if state is not None and state not in STATES:
            raise ValueError(f"state: '{state[:32]}' is not a state; choose one of {', '.join(STATES)}")
        since, until = (_day(query.get(name), name) for name in ("since", "until"))
        if since and until and since > until:
            raise ValueError(f"since: {since} is after until {until}")
        connection = (query.get("connection") or "").strip()[:128] or None
        return cls(state, connection, since, until, (query.get("cursor") or "")[:2048] or None)

    def admits(self, created_at: str) -> bool:
        """Whether a job created then falls within since..until (the state and connection are the store's)."""
        day = created_at[:10]
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)

    def before_since(self, created_at: str) -> bool:
        return self.since is not None and created_at[:10] < self.since

    def query(self, **changes: str | None) -> str:
        values = {
            "state": self.state,
            "connection": self.connection,
            "since": self.since,
            "until": self.until,
            **changes,
        }
        return urlencode({name: value for name, value in values.items() if value})


def _day(value: str | None, name: str) -> str | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise ValueError(f"{name}: '{value[:32]}' is not a date (YYYY-MM-DD)") from None


# ---- CSRF: a per-browser token, in a Strict cookie and in every form


def csrf_token(cookies: Mapping[str, str]) -> tuple[str, str | None]:
    """``(token, Set-Cookie or None)``: the browser's token, or a new one with the cookie that keeps it."""
    token = cookies.get(CSRF_COOKIE, "")
    if len(token) == 43 and all(ch.isalnum() or ch in "-_" for ch in token):
        return token, None
    token = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return token, token


def cookies(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's cookies (the first of each name)."""
    found: dict[str, str] = {}
    text = next((value for name, value in headers.items() if name.lower() == "cookie"), "") or ""
    for part in text.split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in found:
            found[name] = value
    return found


def csrf_cookie(token: str, people_url: str) -> str:
    parts = urlsplit(people_url)
    attributes = [f"{CSRF_COOKIE}={token}", f"Path={parts.path or '/'}", "HttpOnly", "SameSite=Strict"]
    if parts.scheme == "https":
        attributes.append("Secure")
    return "; ".join(attributes)


def check_form(
    form: Mapping[str, str], cookies: Mapping[str, str], origin: str | None, people_url: str
) -> None:
    """``FormRefused`` unless the form's token is the cookie's and the request came from this site."""
    # A browser that hides where a form came from (no Origin, or "null") still needs the token and the
    # Strict cookie, which another site's form cannot carry.
    if origin and origin != "null" and _origin(origin) != _origin(people_url):
        raise FormRefused(
            f"this form was sent from another site ({origin[:100]}); open the console and try again"
        )
    sent, kept = form.get(CSRF_FIELD, ""), cookies.get(CSRF_COOKIE, "")
    if not sent or not kept or not secrets.compare_digest(sent, kept):
        raise FormRefused(
            "this form has expired or was not made by the console; reload the page and try again"
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def parse_form(body: str | None, is_base64: bool) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as field -> its last value."""
    raw = (body or "").encode() if not is_base64 else base64.b64decode(body or "")
    if len(raw) > MAX_FORM_BYTES:
        raise ValueError(f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    fields = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def request_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The job request the start form describes: its JSON, with the connection the form chose.

    ``ValueError`` with a line a person can act on when the JSON is not a request-shaped object.
    """
    text = form.get("request", "").strip() or "{}"
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"request: not JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(request, dict):
        raise ValueError('request: must be a JSON object such as {"report": {...}, "format": "pdf"}')
    connection = form.get("connection", "").strip()
    if connection:
        request["connection"] = connection
    if form.get("client_token"):
        request.setdefault("client_token", form["client_token"][:64])
    return request


def static_file(name: str) -> tuple[str, str] | None:
    """``(text, content type)`` of one of the console's own files, or None."""
    if name not in STATIC_FILES:
        return None
    text = resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")
    return text, STATIC_FILES[name]


# ---- pages


@dataclass(frozen=True)
class Page:
    """Where the pages live (the people API's URL), who is looking, and the browser's CSRF token."""

    base_url: str
    who: str
    csrf: str

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def list_page(
    page: Page,
    jobs: Sequence[Mapping[str, Any]],
    filters: Filters,
    *,
    connections: Iterable[str],
    next_cursor: str | None,
    form: Mapping[str, str] | None = None,
    problem: str | None = None,
) -> str:
    """The team's jobs, newest first, with the filters and the form to start one."""
    names = sorted(set(connections))
    state_options = _options([("", "any state"), *((state, state) for state in STATES)], filters.state or "")
    connection_options = _options(
        [("", "any connection"), *((name, name) for name in names)], filters.connection or ""
    )
    rows = "".join(_job_row(page, job) for job in jobs) or (
        '<tr><td colspan="7" class="empty">No jobs match these filters.</td></tr>'
    )
    older = (
        f'<p><a id="older" href="{_attr(page.url("/console?" + filters.query(cursor=next_cursor)))}">'
        "Older jobs</a></p>"
        if next_cursor
        else ""
    )
    body = f"""
<section>
<h2>Jobs</h2>
<form id="filters" method="get" action="{_attr(page.url("/console"))}">
  <label>State <select name="state" id="filter-state">{state_options}</select></label>
  <label>Connection <select name="connection" id="filter-connection">{connection_options}</select></label>
  <label>From <input type="date" name="since" id="filter-since" value="{_attr(filters.since or "")}"></label>
  <label>To <input type="date" name="until" id="filter-until" value="{_attr(filters.until or "")}"></label>
  <button type="submit" id="filter">Filter</button>
</form>
<table id="jobs">
<thead><tr><th>Created (UTC)</th><th>Job</th><th>Connection</th><th>Report</th><th>State</th>
<th>Progress</th><th>Actions</th></tr></thead>
<tbody>{rows}</tbody>
</table>
{older}
</section>
{_start_form(page, names, form or {}, problem)}"""
    return _document(page, "Jobs", body)


def job_page(
    page: Page, job: Mapping[str, Any], events: Mapping[str, Any], *, problem: str | None = None
) -> str:
    """One job: where it stands, its file, its request, its events as they come, and what can be done."""
    job_id = str(job["job_id"])
    stored = job.get("object") or {}
    error = job.get("error") or {}
    facts = [
        ("State", f'<span id="state" class="state {_attr(job["state"])}">{escape(job["state"])}</span>'),
        ("Progress", _progress(job)),
        ("Provider", f'<span id="provider">{escape(_provider_words(job))}</span>'),
        ("Checks", f'<span id="polls">{int(job.get("polls") or 0)}</span>'),
        ("Connection", escape(f"{job.get('connection') or '?'} ({job.get('provider') or '?'})")),
        ("Team", escape(job.get("team") or "")),
        ("Started by", escape(job.get("owner") or "")),
        ("Created", escape(_when(job.get("created_at")))),
        ("Deadline", escape(_when(job.get("deadline_at")))),
        ("Finished", f'<span id="finished">{escape(_when(job.get("finished_at")))}</span>'),
    ]
    if stored:
        facts += [
            ("File", f'<span id="filename">{escape(str(stored.get("filename")))}</span>'),
            ("Size", escape(f"{int(stored.get('size') or 0):,} bytes")),
            ("SHA-256", f'<code id="sha256">{escape(str(stored.get("sha256")))}</code>'),
        ]
    if error:
        reason = f"{error.get('code')}: {error.get('message')}"
        facts.append(("Error", f'<span id="error">{escape(reason)}</span>'))
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    request = job.get("request")
    shown = json.dumps(request, indent=2, ensure_ascii=False) if request else "(not recorded)"
    event_rows = "".join(_event_row(event) for event in events.get("events") or [])
    body = f"""
{_problem(problem)}
<section>
<h2>Job <code id="job-id">{escape(job_id)}</code></h2>
<div class="actions">{_actions(page, job)}</div>
<div class="columns">
<div>
<table class="facts">{rows}</table>
<h3>Request</h3>
<pre id="request">{escape(shown)}</pre>
</div>
<div>
<h3>Events</h3>
<table id="events"><thead><tr><th>At (UTC)</th><th>Step</th><th>What happened</th></tr></thead>
<tbody>{event_rows}</tbody></table>
</div>
</div>
</section>"""
    follow = {
        "data-job": job_id,
        "data-events-next": str(events.get("next") or ""),
        "data-final": "true" if job["state"] in FINAL_STATES else "false",
    }
    return _document(page, f"Job {job_id[:8]}", body, follow=follow)


def message_page(page: Page | None, title: str, text: str) -> str:
    """A page that says what went wrong and where to go from here."""
    back = f'<p><a href="{_attr(page.url("/console"))}">Back to the jobs</a></p>' if page else ""
    body = f'<section><h2>{escape(title)}</h2><p id="message">{escape(text)}</p>{back}</section>'
    return _document(page, title, body)


def _document(page: Page | None, title: str, body: str, *, follow: Mapping[str, str] | None = None) -> str:
    base = page.base_url if page else ""
    attributes = "".join(f' {name}="{_attr(value)}"' for name, value in (follow or {}).items())
    who = f'<span class="who">signed in as {escape(page.who)}</span>' if page else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · reportrelay</title>
<link rel="stylesheet" href="{_attr(base + "/console/static/console.css")}">
<script src="{_attr(base + "/console/static/console.js")}" defer></script>
</head>
<body data-api="{_attr(base)}"{attributes}>
<header><a class="home" href="{_attr(base + "/console")}">reportrelay</a>{who}</header>
<main>{body}</main>
</body>
</html>
"""


def _job_row(page: Page, job: Mapping[str, Any]) -> str:
    job_id = str(job["job_id"])
    report = json.dumps(job.get("report") or {}, ensure_ascii=False, separators=(", ", ": "))
    what = f"{report} as {job.get('format') or '?'}"
    final = "true" if job["state"] in FINAL_STATES else "false"
    return (
        f'<tr class="job" data-job="{_attr(job_id)}" data-final="{final}">'
        f"<td>{escape(_when(job.get('created_at')))}</td>"
        f'<td><a class="job-link" href="{_attr(page.url(f"/console/reports/{job_id}"))}">'
        f"<code>{escape(job_id[:8])}</code></a></td>"
        f"<td>{escape(str(job.get('connection') or ''))}</td>"
        f'<td class="report">{escape(what)}</td>'
        f'<td><span class="state {_attr(job["state"])}">{escape(job["state"])}</span>'
        f'<div class="latest">{escape(latest_words(job))}</div></td>'
        f"<td>{_progress(job)}</td>"
        f'<td class="actions">{_actions(page, job)}</td>'
        "</tr>"
    )


def latest_words(job: Mapping[str, Any]) -> str:
    """A row's last word: the file once ready, why once failed, else the provider's latest message (the
    page's script shows each new event of an unfinished job here as it comes)."""
    stored, error = job.get("object") or {}, job.get("error") or {}
    if job["state"] == "ready" and stored:
        return f"{stored.get('filename')} · {int(stored.get('size') or 0):,} bytes"
    if error:
        return f"{error.get('code')}: {error.get('message')}"[:160]
    return str(job.get("message") or "")[:160]


def _actions(page: Page, job: Mapping[str, Any]) -> str:
    """Download (ready), cancel (unfinished) and re-run (a recorded request); each a link or a POST form."""
    job_id = str(job["job_id"])
    parts = []
    download = (job.get("links") or {}).get("download")
    hidden = "" if download else " hidden"
    href = download or page.url(f"/reports/{job_id}/download")
    parts.append(f'<a class="button download" href="{_attr(href)}"{hidden}>Download</a>')
    if job["state"] not in FINAL_STATES:
        parts.append(_post(page, f"/console/reports/{job_id}/cancel", "Cancel", "cancel"))
    if job.get("request"):
        parts.append(_post(page, f"/console/reports/{job_id}/rerun", "Re-run", "rerun"))
    return "".join(parts)


def _post(page: Page, path: str, label: str, kind: str) -> str:
    """A one-button form; a re-run carries a client token of its own, so a double click starts one job."""
    token = (
        f'<input type="hidden" name="client_token" value="{_new_client_token()}">' if kind == "rerun" else ""
    )
    return (
        f'<form class="inline {kind}" method="post" action="{_attr(page.url(path))}">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{_attr(page.csrf)}">{token}'
        f'<button type="submit" class="{kind}">{escape(label)}</button></form>'
    )


def _new_client_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()


def _start_form(page: Page, connections: Sequence[str], form: Mapping[str, str], problem: str | None) -> str:
    chosen = form.get("connection") or (connections[0] if connections else "")
    options = _options([(name, name) for name in connections], chosen)
    example = '{\n  "report": {"document_id": 10},\n  "format": "pdf",\n  "parameters": {}\n}'
    text = form.get("request") or example
    token = _new_client_token()
    disabled = "" if connections else " disabled"
    none = (
        ""
        if connections
        else "<p>None of your teams may use a connection yet: ask its owners to add your team.</p>"
    )
    return f"""
<section id="start">
<h2>Start a report</h2>
{_problem(problem)}{none}
<form id="start-form" method="post" action="{_attr(page.url("/console/reports"))}">
  <input type="hidden" name="{CSRF_FIELD}" value="{_attr(page.csrf)}">
  <input type="hidden" name="client_token" value="{_attr(token)}">
  <label>Connection <select name="connection" id="start-connection"{disabled}>{options}</select></label>
  <label>Saved request <input type="file" id="saved-request" accept="application/json,.json"></label>
  <label class="wide">Request (JSON: report, format, parameters, output, deadline_seconds)
    <textarea name="request" id="start-request" rows="8" spellcheck="false">{escape(text)}</textarea></label>
  <button type="submit" id="start-button"{disabled}>Start</button>
</form>
</section>"""


def _event_row(event: Mapping[str, Any]) -> str:
    return (
        f'<tr class="event kind-{_attr(str(event.get("kind") or ""))}">'
        f"<td>{escape(_when(event.get('at')))}</td>"
        f"<td>{escape(str(event.get('step') or ''))}</td>"
        f"<td>{escape(str(event.get('message') or ''))}</td></tr>"
    )


def _progress(job: Mapping[str, Any]) -> str:
    percent = job.get("progress")
    if job["state"] == "ready":
        percent = 100
    elif job["state"] in FINAL_STATES:
        return '<span class="percent"></span>'  # it will go no further
    value = f' value="{float(percent):.0f}"' if isinstance(percent, int | float) else ""
    words = f"{float(percent):.0f} %" if isinstance(percent, int | float) else ""
    bar = f'<progress class="progress" max="100"{value}></progress>'
    return f'{bar} <span class="percent">{escape(words)}</span>'


def _provider_words(job: Mapping[str, Any]) -> str:
    return " · ".join(str(part) for part in (job.get("provider_status"), job.get("message")) if part) or "-"


def _problem(problem: str | None) -> str:
    return f'<p class="problem" id="problem" role="alert">{escape(problem)}</p>' if problem else ""


def _options(choices: Iterable[tuple[str, str]], chosen: str) -> str:
    return "".join(
        f'<option value="{_attr(value)}"{" selected" if value == chosen else ""}>{escape(label)}</option>'
        for value, label in choices
    )


def _when(value: Any) -> str:
    """An API timestamp as ``2026-12-01 15:23:08``; empty for none."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _attr(value: str) -> str:
    return escape(value, quote=True)
