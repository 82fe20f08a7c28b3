"""``reportrelay jobs``: start, watch, download, cancel and re-run report jobs through the job API.

The same commands and words for the local API (``reportrelay serve``) and a deployed stack: the target is
``--api URL``, the stack's ``ApiUrl`` output (``--stack NAME``), or ``REPORTRELAY_API``. Requests are
signed with SigV4 by the caller's AWS credentials (service ``execute-api``), or carry
``Authorization: Bearer`` (``--token``, ``REPORTRELAY_TOKEN``) for the people API (the stack's
``PeopleUrl``).

Exit codes: 0 the job is ready (or the command did what it was asked), 1 the job failed or was
cancelled (or the API could not answer), 2 bad input (the API's 400/409 included), 3 not found or not
allowed (the API's 401/403/404/410). Every error is one line: the API's own message where it gave one.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

import requests

from reportrelay_cli.main import BadInput

API_ENV = "REPORTRELAY_API"
TOKEN_ENV = "REPORTRELAY_TOKEN"
API_OUTPUT = "ApiUrl"  # infra/stack.py: the IAM API (SigV4)
PEOPLE_OUTPUT = "PeopleUrl"  # infra/stack.py: the people API (bearer tokens)
SERVICE = "execute-api"
EXIT_READY, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
FINAL_STATES = frozenset({"ready", "failed", "cancelled"})
MAX_PAGE = 100
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
_TIMEOUT = (10, 60)
WATCH_API_FAILURES = 5
"""A watch gives up after this many 429 or 5xx answers in a row (an hour-long job outlives a blip)."""


class ApiRefused(Exception):
    """The API answered an error: its status, code and message, and the exit code that stands for it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}{' ' + code if code else ''})")
        self.status = status
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        if self.status in (401, 403, 404, 410):
            return EXIT_NOT_FOUND
        if 400 <= self.status < 500 and self.status != 429:
            return EXIT_BAD_INPUT
        return EXIT_FAILED


# ---- talking to the API


class SigV4(requests.auth.AuthBase):
    """Signs each request as API Gateway's AWS_IAM authorization expects (botocore's signer)."""

    def __init__(self, credentials: Any, region: str) -> None:
        self.credentials = credentials
        self.region = region

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = (
            {"Content-Type": request.headers["Content-Type"]} if "Content-Type" in request.headers else {}
        )
        signed = AWSRequest(method=request.method, url=request.url, data=request.body, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), SERVICE, self.region).add_auth(signed)
        request.headers.update(dict(signed.headers))
        return request


class Bearer(requests.auth.AuthBase):
    """A person's token from the deployment's identity provider, for the people API."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class JobApi:
    """The job API at ``base_url`` (stage included), each answer checked: JSON, or ApiRefused."""

    def __init__(self, base_url: str, auth: requests.auth.AuthBase) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.session = requests.Session()

    def call(
        self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None
    ) -> requests.Response:
        url = self.base_url + path
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            answer = self.session.request(
                method,
                url,
                params=query,
                data=data,
                headers=headers,
                auth=self.auth,
                allow_redirects=False,
                timeout=_TIMEOUT,
            )
        except requests.RequestException as error:
            raise BadInput(f"cannot reach the job API at {self.base_url}: {_reason(error)}") from None
        if answer.status_code >= 400:
            raise _refusal(answer)
        return answer

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.call(method, path, **kwargs)
        try:
            return answer.json()
        except ValueError:
            raise ApiRefused(
                answer.status_code, "NotJson", f"the API at {self.base_url} answered no JSON"
            ) from None

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/reports/{_segment(job_id)}"))

    def events(self, job_id: str, after: str | None) -> dict[str, Any] | None:
        """A page of the job's events after ``after``; None when this API has no events route."""
        query = {"after": after} if after else None
        try:
            return dict(self.json("GET", f"/reports/{_segment(job_id)}/events", query=query))
        except ApiRefused as refused:
            # An API from before GET /reports/{id}/events: "no such route" (code NotFound), or, from one that
            # refuses unknown query parameters on job paths, a 400 naming ``after``.
            if refused.status == 404 and refused.code == "NotFound":
                return None
            if refused.status == 400 and "query.after" in refused.message:
                return None
            raise


def _refusal(answer: requests.Response) -> ApiRefused:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("Message") or answer.reason or "no message"
        return ApiRefused(answer.status_code, str(body.get("code") or ""), str(message))
    text = answer.text.strip().splitlines()[0][:200] if answer.text.strip() else answer.reason
    return ApiRefused(answer.status_code, "", text or "no message")


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return "it did not answer in time"
    if isinstance(error, requests.ConnectionError):
        return "the connection was refused or broke (is it running? is the URL right?)"
    return type(error).__name__


def _segment(job_id: str) -> str:
    return quote(job_id, safe="")


def connect(args: argparse.Namespace) -> JobApi:
    """The API the flags, the stack or the environment name, with the caller's way of signing in."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    url = args.api or (None if args.stack else os.environ.get(API_ENV))
    if url is None and args.stack:
        url = _stack_url(args, PEOPLE_OUTPUT if token else API_OUTPUT)
    if not url:
        raise BadInput(f"name the job API: --api URL, --stack NAME, or set {API_ENV}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"--api {url} is not an http(s) URL, e.g. http://127.0.0.1:8700/v1")
    if token:
        return JobApi(url, Bearer(token))
    return JobApi(url, _sigv4(parts.hostname or "", args))


def _session(args: argparse.Namespace) -> Any:
    """boto3's session as the AWS CLI would make it (``--profile`` first, then the environment)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        region = args.region or os.environ.get("AWS_REGION") or None
        return boto3.session.Session(profile_name=args.profile, region_name=region)
    except BotoCoreError as error:
        raise BadInput(f"--profile {args.profile}: {error}") from None


def _sigv4(host: str, args: argparse.Namespace) -> SigV4:
    session = _session(args)
    in_host = _REGION_IN_HOST.search(host)
    region = (
        args.region
        or (in_host.group(1) if in_host else None)
        or os.environ.get("AWS_REGION")  # as the AWS CLI v2 and Lambda say it; boto3 reads AWS_DEFAULT_REGION
        or session.region_name
    )
    if not region:
        raise BadInput("no AWS region to sign for: pass --region, or set AWS_REGION")
    credentials = session.get_credentials()
    if credentials is None:
        raise BadInput(
            "no AWS credentials found to sign with (aws configure, --profile, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID); or pass --token for the people API"
        )
    return SigV4(credentials, region)


def _stack_url(args: argparse.Namespace, output: str) -> str:
    """The stack's API URL output, read with CloudFormation DescribeStacks."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = _session(args).client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message") or str(error)
        raise BadInput(f"cannot read stack {args.stack}: {message}") from None
    except BotoCoreError as error:
        raise BadInput(f"cannot read stack {args.stack}: {error}") from None
    outputs = {
        item["OutputKey"]: item["OutputValue"] for stack in stacks for item in stack.get("Outputs", [])
    }
    if output not in outputs:
        raise BadInput(f"stack {args.stack} has no {output} output: pass --api URL")
    return outputs[output]


# ---- the command line


def add_jobs_commands(commands: Any) -> None:
    jobs = commands.add_parser(
        "jobs", help="start, watch, download, cancel and re-run jobs through the job API (local or deployed)"
    )
    _target_options(jobs, None)
    actions = jobs.add_subparsers(required=True, metavar="ACTION")

    def action(name: str, help: str, command: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help)
        _target_options(parser, argparse.SUPPRESS)
        parser.set_defaults(command=functools.partial(run, command), jsonl=False)
        return parser

    start = action("start", "start a job from a request file and/or flags", command_start)
    _request_options(start)
    start.add_argument("--watch", action="store_true", help="then watch it until it ends")
    start.add_argument("--interval", type=_seconds, default=2.0, help="with --watch: seconds between checks")
    _output_options(start, jsonl=True)

    get = action("get", "show one job", command_get)
    get.add_argument("job_id", metavar="ID")
    _output_options(get, jsonl=False)

    listing = action("list", "your teams' recent jobs, newest first", command_list)
    listing.add_argument("--state", choices=["queued", "running", "ready", "failed", "cancelled"])
    listing.add_argument("--connection", help="only this connection's jobs")
    listing.add_argument("--since", type=_since, help="only jobs created since DATE (YYYY-MM-DD or ISO time)")
    listing.add_argument("--limit", type=_positive, default=20, help="at most N jobs (default 20)")
    _output_options(listing, jsonl=True)

    watch = action("watch", "follow a job until it ends: progress, waits, retries", command_watch)
    watch.add_argument("job_id", metavar="ID")
    watch.add_argument("--interval", type=_seconds, default=2.0, help="seconds between checks (default 2)")
    _output_options(watch, jsonl=True)

    download = action("download", "download a ready job's file, checking its SHA-256", command_download)
    download.add_argument("job_id", metavar="ID")
    download.add_argument(
        "--out", default=".", help="a folder (default .; one ending in / is made) or the file's path"
    )
    _output_options(download, jsonl=False)

    cancel = action("cancel", "cancel a job (at the provider too, where it allows)", command_cancel)
    cancel.add_argument("job_id", metavar="ID")
    _output_options(cancel, jsonl=False)

    rerun = action("rerun", "start a new job with the same request as a job before", command_rerun)
    rerun.add_argument("job_id", metavar="ID")
    rerun.add_argument("--watch", action="store_true", help="then watch it until it ends")
    rerun.add_argument("--interval", type=_seconds, default=2.0, help="with --watch: seconds between checks")
    _output_options(rerun, jsonl=True)

    events = action("events", "a job's events: waits, retries, restarts, progress", command_events)
    events.add_argument("job_id", metavar="ID")
    events.add_argument("--follow", action="store_true", help="keep printing new events until the job ends")
    events.add_argument("--interval", type=_seconds, default=2.0, help="seconds between checks (default 2)")
    _output_options(events, jsonl=True)


def _target_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Where the API is and how to sign in; on ``jobs`` and on each action (the action's wins)."""
    parser.add_argument("--api", default=default, metavar="URL", help=f"the job API's URL (or {API_ENV})")
    parser.add_argument(
        "--stack", default=default, metavar="NAME", help=f"a deployed stack: its {API_OUTPUT} output"
    )
    parser.add_argument("--region", default=default, help="AWS region to sign for and read the stack in")
    parser.add_argument("--profile", default=default, help="the AWS profile whose credentials sign requests")
    parser.add_argument(
        "--token",
        default=default,
        help=f"a person's bearer token for the people API (or {TOKEN_ENV}); without it, SigV4",
    )


def _output_options(parser: argparse.ArgumentParser, *, jsonl: bool) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document (schemas/cli-*.json)")
    if jsonl:
        parser.add_argument("--jsonl", action="store_true", help="print one JSON object per line")


def _request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request", type=Path, help="a job request JSON file; the flags below override it")
    parser.add_argument("--connection", help="the connection's name")
    parser.add_argument(
        "--report", type=_json_object("--report"), help="the report, e.g. '{\"document_id\": 10}'"
    )
    parser.add_argument("--format", help="e.g. pdf")
    parser.add_argument(
        "--parameters", type=_json_object("--parameters"), help="the report's parameters (JSON)"
    )
    parser.add_argument("--team", help="the team the job runs for (when you are in several)")
    parser.add_argument("--client-token", help="an idempotency key: asking again returns the same job")


def _json_object(flag: str) -> Callable[[str], dict[str, Any]]:
    def parse(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"{flag} is not valid JSON: {error.msg}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object")
        return value

    return parse


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError("expected 0.05 to 3600 seconds")
    return value


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date (2026-12-01) or an ISO time, not {text!r}"
        ) from None
    if len(text) <= 10:  # a date alone: from its start, UTC
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---- commands


def command_start(args: argparse.Namespace) -> int:
    request = _request_from(args)
    api = connect(args)
    accepted = api.json("POST", "/reports", body=request)
    return _started(api, args, accepted, rerun_of=None)


def command_rerun(args: argparse.Namespace) -> int:
    api = connect(args)
    job = api.job(args.job_id)
    request = rerun_request(job)
    if not isinstance(job.get("request"), dict):
        print(
            f"reportrelay: note: this API shows job {args.job_id}'s connection, report, format and team "
            "only; "
            "any parameters and output options it had are not carried over (jobs start --request FILE "
            "keeps them)",
            file=sys.stderr,
        )
    accepted = api.json("POST", "/reports", body=request)
    return _started(api, args, accepted, rerun_of=args.job_id)


def rerun_request(job: dict[str, Any]) -> dict[str, Any]:
    """The request a job ran with, to run again: the whole of it where the API shows it, else what it
    shows (connection, report, format and team); never its client token, which would name the old job."""
    shown = job.get("request")
    if isinstance(shown, dict):
        request = {name: value for name, value in shown.items() if name != "client_token"}
    else:
        if not (job.get("connection") and job.get("report") and job.get("format")):
            raise BadInput(f"job {job['job_id']} shows no request to run again (started {job.get('source')})")
        request = {"connection": job["connection"], "report": job["report"], "format": job["format"]}
    if job.get("team") and "team" not in request:
        request["team"] = job["team"]
    return request


def _started(api: JobApi, args: argparse.Namespace, accepted: dict[str, Any], rerun_of: str | None) -> int:
    document = {**accepted, **({"rerun_of": rerun_of} if rerun_of else {})}
    if args.watch:  # --json: the job as it ended (its id is in it); --jsonl: as watch --jsonl
        if not (args.json or args.jsonl):
            print(_started_line(document), flush=True)
        return _watch(api, accepted["job_id"], args)
    if args.json or args.jsonl:
        _print_json(document)
    else:
        print(_started_line(document))
        print(f"  follow it: reportrelay jobs watch {accepted['job_id']}")
    return EXIT_READY


def _started_line(accepted: dict[str, Any]) -> str:
    again = (
        " (the client token named this job already: not started again)" if accepted.get("replayed") else ""
    )
    of = f" (a rerun of {accepted['rerun_of']})" if accepted.get("rerun_of") else ""
    return f"started job {accepted['job_id']}{of}: {accepted['state']}{again}"


def _request_from(args: argparse.Namespace) -> dict[str, Any]:
    from reportrelay_cli.main import _read_json

    request: dict[str, Any] = {}
    if args.request is not None:
        document = _read_json(args.request, "request")
        if not isinstance(document, dict):
            raise BadInput(f"request file {args.request} must hold a JSON object")
        request.update(document)
    flags = {
        "connection": args.connection,
        "report": args.report,
        "format": args.format,
        "parameters": args.parameters,
        "team": args.team,
        "client_token": args.client_token,
    }
    request.update({name: value for name, value in flags.items() if value is not None})
    missing = [name for name in ("connection", "report", "format") if name not in request]
    if missing:
        raise BadInput(
            f"the job request has no {', '.join(missing)}: give --request FILE, or "
            + " ".join(f"--{name}" for name in missing)
        )
    return request


def command_get(args: argparse.Namespace) -> int:
    job = connect(args).job(args.job_id)
    if args.json:
        _print_json(job)
    else:
        print("\n".join(job_lines(job)))
    return outcome_code(job)


def outcome_code(job: dict[str, Any]) -> int:
    return EXIT_FAILED if job["state"] in ("failed", "cancelled") else EXIT_READY


def job_lines(job: dict[str, Any]) -> list[str]:
    """A job as a person reads it: what, where it stands, and its file or its error."""
    lines = [f"job {job['job_id']}: {state_words(job)}"]
    what = [f"connection {job.get('connection')}"]
    if job.get("provider"):
        what[0] += f" ({job['provider']})"
    if job.get("report") is not None:
        what.append(f"report {json.dumps(job['report'], sort_keys=True)}")
    if job.get("format"):
        what.append(f"format {job['format']}")
    if job.get("team"):
        what.append(f"team {job['team']}")
    lines.append("  " + ", ".join(what))
    when = [f"created {job['created_at']}"]
    when += [
        f"{name} {job[f'{name}_at']}"
        for name in ("queued", "ready", "stored", "finished")
        if job.get(f"{name}_at")
    ]
    lines.append("  " + ", ".join(when) + f"; {job.get('polls', 0)} check(s)")
    if job.get("object"):
        stored = job["object"]
        lines.append(f"  file {stored['filename']}, {stored['size']:,} bytes, sha256 {stored['sha256']}")
        lines.append(f"  download it: reportrelay jobs download {job['job_id']}")
    if job.get("error"):
        lines.append(f"  {job['error']['code']}: {job['error']['message']}")
    if job.get("cost"):
        lines.append("  " + cost_words(job["cost"]))
    return lines


def cost_words(cost: dict[str, Any]) -> str:
    """What the job used on AWS and the estimate, in one line."""
    used = [
        f"{cost.get('state_transitions', 0):,.0f} state transitions",
        f"{cost.get('lambda_invocations', 0):,.0f} Lambda invocations "
        f"({cost.get('lambda_gb_seconds', 0):,.2f} GB-s)",
        f"{cost.get('s3_put_requests', 0) + cost.get('s3_get_requests', 0):,.0f} S3 requests",
        f"{cost.get('s3_bytes_stored', 0):,.0f} bytes stored",
    ]
    prices = cost.get("prices") or {}
    return (
        f"cost about ${cost.get('usd', 0):.6f} ({', '.join(used)}; list prices in {prices.get('region')}, "
        f"read {prices.get('read_on')})"
    )


def command_list(args: argparse.Namespace) -> int:
    api = connect(args)
    jobs, more = list_jobs(
        api, state=args.state, connection=args.connection, since=args.since, limit=args.limit
    )
    if args.json:
        _print_json({"jobs": jobs, "more": more})
    elif args.jsonl:
        for job in jobs:
            _print_json(job)
    else:
        for job in jobs:
            print(list_line(job))
        if not jobs:
            print("no jobs" + (" matching" if args.state or args.connection or args.since else ""))
        elif more:
            print(f"(more: --limit {args.limit * 2} shows older ones)")
    return EXIT_READY


def list_jobs(
    api: JobApi, *, state: str | None, connection: str | None, since: datetime | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` jobs, newest first, created at or after ``since``; and whether more matched."""
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": str(min(MAX_PAGE, limit - len(jobs) + 1))}
        query.update({name: value for name, value in (("state", state), ("connection", connection)) if value})
        if cursor:
            query["cursor"] = cursor
        page = api.json("GET", "/reports", query=query)
        for job in page["jobs"]:
            if since is not None and _time(job["created_at"]) < since:
                return jobs, False  # newest first: every later one is older still
            if len(jobs) == limit:
                return jobs, True
            jobs.append(job)
        cursor = page.get("next_cursor")
        if not cursor:
            return jobs, False


def list_line(job: dict[str, Any]) -> str:
    outcome = ""
    if job.get("object"):
        outcome = f"{job['object']['filename']} {job['object']['size']:,} bytes"
    elif job.get("error"):
        outcome = f"{job['error']['code']}: {job['error']['message']}"
    elif job.get("progress") is not None:
        outcome = f"{job['progress']:.0f}%"
    connection = job.get("connection") or "-"
    return f"{job['job_id']}  {job['state']:<9}  {connection:<16}  {job['created_at']}  {outcome}"


def command_cancel(args: argparse.Namespace) -> int:
    job = connect(args).json("DELETE", f"/reports/{_segment(args.job_id)}")
    if args.json:
        _print_json(job)
    else:
        error = job.get("error") or {}
        print(f"cancelled job {job['job_id']}: {job['state']}" + (f" ({error['message']})" if error else ""))
    return EXIT_READY


def command_download(args: argparse.Namespace) -> int:
    api = connect(args)
    target = _download_target(args.out)
    answer = api.call("GET", f"/reports/{_segment(args.job_id)}/download")
    link = answer.json()
    location = answer.headers.get("Location") or link.get("url")
    if not location:
        raise ApiRefused(answer.status_code, "NoLocation", "the download route answered no URL to follow")
    path = target / _safe_filename(link.get("filename"), args.job_id) if target.is_dir() else target
    size, digest = _fetch(location, path)
    expected = link.get("sha256")
    if expected and digest != expected:
        path.unlink(missing_ok=True)
        print(
            f"reportrelay: error: the downloaded file's SHA-256 {digest} is not the job's {expected}; "
            "nothing was kept",
            file=sys.stderr,
        )
        return EXIT_FAILED
    result = {
        "job_id": args.job_id,
        "path": str(path),
        "size": size,
        "sha256": digest,
        "verified": bool(expected),
    }
    if args.json:
        _print_json(result)
    else:
        check = "SHA-256 checked" if expected else "no SHA-256 to check against"
        print(f"saved {path} ({size:,} bytes, sha256 {digest}, {check})")
    return EXIT_READY


def _download_target(out: str) -> Path:
    """A folder to save into, or a file path whose folder can be written: checked before any download."""
    from reportrelay_cli.main import writable_folder

    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        return writable_folder(path, "--out")
    writable_folder(path.parent, "--out's folder")
    return path


def _safe_filename(name: Any, job_id: str) -> str:
    text = Path(str(name or "")).name
    return text if text and text not in (".", "..") else f"{job_id}.report"


def _fetch(url: str, path: Path) -> tuple[int, str]:
    """Stream ``url`` (a presigned link: not signed again) into ``path``; its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file, requests.get(url, stream=True, timeout=_TIMEOUT) as answer:
            if answer.status_code != 200:
                raise _refusal(answer)
            for chunk in answer.iter_content(1024 * 1024):
                file.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        os.chmod(partial, 0o666 & ~_umask())  # as a file the user made (mkstemp's are owner-only)
        os.replace(partial, path)
    except requests.RequestException as error:
        raise BadInput(f"the download from {urlsplit(url).netloc} broke: {_reason(error)}") from None
    finally:
        Path(partial).unlink(missing_ok=True)
    return size, digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---- events and watching


@dataclass
class EventFeed:
    """A job's events, asked for after the last cursor; quietly absent from an API without the route."""

    api: JobApi
    job_id: str
    available: bool = True
    cursor: str | None = None
    seen: set[str] = field(default_factory=set)

    def new(self) -> list[dict[str, Any]]:
        """The events not seen yet, oldest first (every page until there is nothing newer)."""
        fresh: list[dict[str, Any]] = []
        while self.available:
            page = self.api.events(self.job_id, self.cursor)
            if page is None:
                self.available = False
                break
            added = 0
            for event in page.get("events") or []:
                key = json.dumps(event, sort_keys=True)
                if key not in self.seen:
                    self.seen.add(key)
                    fresh.append(event)
                    added += 1
            following = page.get("next")
            if not following or following == self.cursor or not added:
                self.cursor = following or self.cursor
                break
            self.cursor = following
        return fresh


def command_events(args: argparse.Namespace) -> int:
    api = connect(args)
    api.job(args.job_id)  # a job that does not exist (or is not yours) is a 404 here: exit 3
    feed = EventFeed(api, args.job_id)
    collected: list[dict[str, Any]] = []
    while True:
        events = feed.new()
        if not feed.available:
            raise ApiRefused(
                404,
                "NotFound",
                f"the job API at {api.base_url} has no events route (GET /reports/{{id}}/events)",
            )
        collected += events
        if not args.json:
            for event in events:
                print(json.dumps(event, sort_keys=True) if args.jsonl else event_line(event), flush=True)
        if not args.follow:
            break
        if not events and api.job(args.job_id)["state"] in FINAL_STATES:
            break  # ended, and nothing came since it did
        time.sleep(args.interval)
    if args.json:
        _print_json({"job_id": args.job_id, "events": collected})
    return EXIT_READY


def event_line(event: dict[str, Any]) -> str:
    """``15:04:05 Submit   vendor answered 429, retrying in 8 s (attempt 2 of 5)``."""
    at = _time(event["at"]).strftime("%H:%M:%S") if event.get("at") else "--:--:--"
    return f"{at} {event.get('step') or '-':<14} {event.get('message') or event.get('kind')}"


def command_watch(args: argparse.Namespace) -> int:
    return _watch(connect(args), args.job_id, args)


def _watch(api: JobApi, job_id: str, args: argparse.Namespace) -> int:
    """Follow the job until it ends: each event as it happens, and one line saying where it stands.

    ``--json``: the job as it ended; ``--jsonl``: each event and each change of the job, a line each.
    A throttled or briefly failing API (429, 5xx) is asked again, up to ``WATCH_API_FAILURES`` in a row.
    """
    feed = EventFeed(api, job_id)
    display = None if args.json or args.jsonl else WatchDisplay(sys.stdout)
    last: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    failures = 0
    try:
        while True:
            try:
                job = api.job(job_id)
                fresh = feed.new()
            except ApiRefused as refused:
                failures += 1
                if refused.exit_code != EXIT_FAILED or failures >= WATCH_API_FAILURES:
                    raise
                note = f"reportrelay: {refused}; asking again"
                if display is not None:
                    display.note(note)
                else:
                    print(note, file=sys.stderr, flush=True)
                time.sleep(min(30.0, args.interval * 2**failures))
                continue
            failures = 0
            events += fresh
            if args.jsonl:
                for event in fresh:
                    _print_json({"type": "event", "event": event})
                if job != last:
                    _print_json({"type": "job", "job": job})
            elif display is not None:
                display.update(job, fresh, events)
            last = job
            if job["state"] in FINAL_STATES:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        if display is not None:
            display.stop()
        print(
            f"reportrelay: stopped watching; job {job_id} goes on "
            f"(reportrelay jobs cancel {job_id} stops it)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    finally:
        if display is not None:
            display.stop()  # the terminal as it was, whatever ended the watch
    if display is not None:
        print(final_line(job), flush=True)
    if args.json:
        _print_json(job)
    return outcome_code(job)


def final_line(job: dict[str, Any]) -> str:
    """``READY <filename> <size> ...`` or ``FAILED <code>: <message>``: the last line of a watch."""
    if job["state"] == "ready":
        stored = job.get("object") or {}
        return (
            f"READY {stored.get('filename')} ({stored.get('size', 0):,} bytes): "
            f"reportrelay jobs download {job['job_id']}"
        )
    error = job.get("error") or {}
    code, message = error.get("code", "Unknown"), error.get("message", "no error was reported")
    return f"{job['state'].upper()} {code}: {message}"


class WatchDisplay:
    """A live line on a terminal (rich), with every event printed above it; plain lines elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self.live = (
            Live(console=self.console, auto_refresh=False, transient=True)
            if self.console.is_terminal
            else None
        )
        self._printed_status: str | None = None
        if self.live is not None:
            self.live.start()

    def update(self, job: dict[str, Any], fresh: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        from rich.text import Text

        for event in fresh:
            self.console.print(Text(event_line(event)))
        status = status_line(job, events, datetime.now(UTC))
        if self.live is not None:
            self.live.update(Text(status), refresh=True)
        elif _without_clock(status) != self._printed_status:  # plain output: a line when something changed
            self._printed_status = _without_clock(status)
            self.console.print(Text(status))

    def note(self, text: str) -> None:
        """A line of its own above the live line."""
        from rich.text import Text

        self.console.print(Text(text))

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def _without_clock(status: str) -> str:
    return re.sub(r"(elapsed|next check in|ETA about|time left) [^·]*", "", status)


def state_words(job: dict[str, Any]) -> str:
    """The job's state as a person says it, not the workflow's state names."""
    state = job["state"]
    if state == "queued":
        return (
            "queued at the provider"
            if job.get("queued_at")
            else "accepted, about to be queued at the provider"
        )
    if state == "running":
        return (
            "ready at the provider, storing the file"
            if job.get("ready_at")
            else "being generated at the provider"
        )
    if state == "ready":
        return "ready: the file is stored"
    return {"failed": "failed", "cancelled": "cancelled"}.get(state, state)


def status_line(job: dict[str, Any], events: list[dict[str, Any]], now: datetime) -> str:
    """Where the job stands: state, provider progress, elapsed, next check, ETA when known, deadline."""
    parts = [state_words(job)]
    provider = " ".join(
        text
        for text in (
            job.get("provider_status"),
            f"{job['progress']:.0f}%" if job.get("progress") is not None else None,
            job.get("message"),
        )
        if text
    )
    if provider:
        parts.append(f"provider: {provider}")
    finished = job["state"] in FINAL_STATES
    end = _time(job["finished_at"]) if finished and job.get("finished_at") else now
    parts.append(f"elapsed {_duration((end - _time(job['created_at'])).total_seconds())}")
    parts.append(f"{job.get('polls', 0)} check(s)")  # before the deadline: a narrow terminal crops the end
    if not finished:
        waits = [event for event in events if event.get("wait_seconds") is not None and event.get("at")]
        if waits:
            due = _time(waits[-1]["at"]).timestamp() + float(waits[-1]["wait_seconds"]) - now.timestamp()
            if due >= 0.5:
                parts.append(f"next check in {_duration(due)}")
        eta = _eta(job, now)
        if eta is not None:
            parts.append(f"ETA about {_duration(eta)}")
    deadline = job.get("deadline_at")  # the API's JobView; an older API's jobs have none
    if deadline and not finished:
        parts.append(f"deadline {_time(deadline).strftime('%Y-%m-%d %H:%M:%S')} UTC")
    return " · ".join(parts)


def _eta(job: dict[str, Any], now: datetime) -> float | None:
    """Seconds left, from the provider's percent and the time it has taken to get there."""
    progress, since = job.get("progress"), job.get("queued_at") or job.get("created_at")
    if job["state"] not in ("queued", "running") or progress is None or not 0 < progress < 100:
        return None
    spent = (now - _time(since)).total_seconds()
    return spent * (100 - progress) / progress if spent > 0 else None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_json(document: Any) -> None:
    print(json.dumps(document, sort_keys=True), flush=True)


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """A jobs command, with the API's refusals as one line and their exit code."""
    try:
        return command(args)
    except ApiRefused as refused:
        print(f"reportrelay: error: {refused}", file=sys.stderr)
        return refused.exit_code
