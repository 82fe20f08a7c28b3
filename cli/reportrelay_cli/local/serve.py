"""``reportrelay serve``: the job API and the workflow on loopback over the AWS emulation, kept on disk.

The API is the in-process handler behind ``JobApiApp`` (SigV4 checked against a local identities file,
as API Gateway's AWS_IAM authorization would), over ``LocalAws`` (the real ASL on moto, the handlers
in-process). With ``--sandbox`` the provider simulators run alongside, and their example connections
(``examples/connections.json``) are usable by the local user.

State lives under ``--state DIR`` so that ``jobs list`` and downloads work across restarts:

- ``jobs.json``: every item of the job table (jobs, client tokens, share links, durations), as DynamoDB
  items; ``objects/`` and ``objects.json``: the stored reports and what S3 knew of them; ``link-key``:
  the share links' signing key; ``identities.json``: the local user's access key (owner-only files);
- saved within a second of a change (a thread compares the table and the bucket with what was saved)
  and once more on shutdown; each file is written whole and then renamed, so a crash leaves the old one;
- loaded into the emulation on start. A job that was queued or running when serve stopped cannot go on
  (its execution lived in this process): on shutdown, and on a start after a crash, it is marked failed
  with code ``ServeStopped`` and a message saying so; the provider may still finish what it queued.

People and the web console: serve also runs the people API under ``/people/v1`` (the function verifies
tokens and session cookies itself, as deployed) with a local OIDC issuer (the sandbox's), where the
local person ``local`` (team ``local``) signs in with the password kept in ``person.json``; so
``<root>/people/v1/console`` is the console, and the events' download links open in a browser.

Downloads: the API redirects to presigned S3 URLs, which only the emulation can answer, so serve
rewrites them to its own ``/_s3/`` path, checks the presigned signature and expiry there as S3 would,
and streams the object.
"""

from __future__ import annotations

import argparse
import errno
import faulthandler
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from reportrelay_cli.main import BadInput

DEFAULT_PORT = 8700
STAGE = "v1"
LOCAL_PRINCIPAL = "arn:aws:iam::123456789012:user/local"
LOCAL_TEAM = "local"
LOCAL_PERSON = "local"
PEOPLE_STAGE = "people/v1"
CONSOLE_CLIENT = "reportrelay-console"
SAVE_INTERVAL_SECONDS = 1.0
SIGNAL_CHECK_SECONDS = 0.2
S3_PATH = "/_s3/"
_UNFINISHED = ("queued", "running")


def add_serve_command(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the job API and the workflow on loopback, with state kept in a folder"
    )
    serve.add_argument("--state", required=True, type=Path, help="folder for jobs, reports and keys")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the API's port (default {DEFAULT_PORT})"
    )
    serve.add_argument("--sandbox", action="store_true", help="run the provider simulators too")
    serve.add_argument("--connections", type=Path, help="connections JSON file (besides the sandbox's)")
    serve.add_argument("--verbose", action="store_true", help="show the functions' logs on stderr")
    serve.set_defaults(command=command_serve)


def command_serve(args: argparse.Namespace) -> int:
    from reportrelay_cli.main import quiet_libraries, writable_folder

    if not args.sandbox and args.connections is None:
        raise BadInput(
            "serve needs connections: --sandbox (the bundled simulators), --connections FILE, or both"
        )
    check_port(args.port)
    writable_folder(args.state, "--state")
    os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO" if args.verbose else "ERROR"
    quiet_libraries(args.verbose)
    # Ctrl-C even when started in the background (which ignores SIGINT), and a service manager's stop, alike.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # A stop that hangs can be asked where it is: SIGUSR1 prints every thread's stack on stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    with LocalServer(
        args.state, port=args.port, sandbox=args.sandbox, connections_file=args.connections
    ) as server:
        print(server.greeting(), flush=True)
        try:
            server.wait()
        except KeyboardInterrupt:
            print("\nreportrelay serve: stopping (saving state)", file=sys.stderr, flush=True)
    print(f"reportrelay serve: stopped; state kept in {args.state}", file=sys.stderr, flush=True)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def check_port(port: int) -> None:
    """BadInput naming ``--port`` unless the API could listen on ``port`` now."""
    if not 1 <= port <= 65535:
        raise BadInput(f"--port {port} is out of range (1-65535): choose another with --port N")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise BadInput(_unbindable(port, error)) from None


def _unbindable(port: int, error: OSError) -> str:
    why = {
        errno.EADDRINUSE: "is in use (by another program)",
        errno.EACCES: "cannot be listened on (permission denied)",
    }.get(error.errno or 0, f"cannot be listened on ({error.strerror or error})")
    return f"port {port} {why}: choose another with --port N"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class LocalServer:
    """Everything ``reportrelay serve`` runs, started and stopped as one (a context manager)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = DEFAULT_PORT,
        sandbox: bool = False,
        connections_file: Path | None = None,
    ) -> None:
        self.state = StateFolder(state_dir)
        self.port = port
        self.sandbox = sandbox
        self.connections_file = connections_file
        self.simulators: dict[str, Any] = {}
        self.stopped_jobs: list[str] = []
        self._stack = ExitStack()
        self._stop = threading.Event()
        self._saved_lock = threading.Lock()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/{STAGE}"

    @property
    def people_url(self) -> str:
        """The people API (the console is ``<people_url>/console``)."""
        return f"{self.root}/{PEOPLE_STAGE}"

    def __enter__(self) -> LocalServer:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start(self) -> None:
        from reportrelay_cli.local.apigateway import JobApiApp
        from reportrelay_cli.local.aws import REGION, LocalAws
        from reportrelay_cli.local.identities import register_in_iam
        from reportrelay_cli.sandbox.oidc import OidcClient, OidcIssuer, OidcUser

        connections = self._connections()
        self.identities = self.state.identities()
        self.person_password = self.state.person_password()
        person = OidcUser(self.person_password, groups=[LOCAL_TEAM], email=f"{LOCAL_PERSON}@localhost")
        self.issuer = self._stack.enter_context(
            OidcIssuer(
                users={LOCAL_PERSON: person},
                clients={CONSOLE_CLIENT: OidcClient(allow_any_loopback_redirect=True)},
            )
        )
        try:  # bound before anything starts: the functions must know the API's URL
            server = make_server(
                "127.0.0.1", self.port, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as error:
            raise BadInput(_unbindable(self.port, error)) from None
        self._stack.callback(server.server_close)
        self.port = server.server_port
        self.state.connections_file.write_text(json.dumps({"connections": connections}, indent=2), "utf-8")
        environment = {
            "REPORTRELAY_CONNECTIONS_FILE": str(self.state.connections_file.resolve()),
            "REPORTRELAY_API_URL": self.url,
            "REPORTRELAY_PEOPLE_URL": self.people_url,
            "REPORTRELAY_OIDC_ISSUER": self.issuer.issuer,
            "REPORTRELAY_OIDC_CLIENT_ID": CONSOLE_CLIENT,
            "REPORTRELAY_OIDC_JWKS_URL": f"{self.issuer.issuer}/jwks.json",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "ERROR"),
        }
        self.aws = self._stack.enter_context(LocalAws(environment))
        self._stack.callback(self._stop_jobs_and_save)
        register_in_iam(self.aws.client("iam"), self.identities)
        self.state.restore(self.aws)
        self.stopped_jobs = self.state.fail_unfinished(self.aws, "before this start")
        self.api_app = JobApiApp(self._api, identities=self.identities, region=REGION)
        self.people_app = JobApiApp(self._api, people=True, stage=PEOPLE_STAGE, region=REGION)
        self.state.save(self.aws)
        saver = threading.Thread(target=self._save_while_running, name="reportrelay-serve-save", daemon=True)
        saver.start()
        self._stack.callback(saver.join, 10)
        self._stack.callback(self._stop.set)
        thread = threading.Thread(target=server.serve_forever, name="reportrelay-serve-http", daemon=True)
        thread.start()
        self._stack.callback(thread.join, 10)
        self._stack.callback(server.shutdown)

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def wait(self) -> None:
        """Until Ctrl-C or SIGTERM (KeyboardInterrupt).

        The wait is cut into short ones: Linux may hand the signal to any thread, and then only wakes the
        main thread's Python handler when the main thread next runs, which a wait of an hour postponed by
        an hour (a fresh-clone run met a serve that ignored Ctrl-C, its main thread in that wait)."""
        while not self._stop.wait(SIGNAL_CHECK_SECONDS):
            pass

    def _connections(self) -> dict[str, Any]:
        """The sandbox's example connections (aimed at simulators started now) and the user's, each shared
        with the local user's team when it names none."""
        from reportrelay_cli.main import _read_json

        connections: dict[str, Any] = {}
        if self.sandbox:
            connections.update(self._start_sandbox())
        if self.connections_file is not None:
            document = _read_json(self.connections_file, "connections")
            if not isinstance(document, dict) or not isinstance(document.get("connections"), dict):
                raise BadInput(f"connections file {self.connections_file} has no 'connections' object")
            folder = self.connections_file.resolve().parent
            for connection in document["connections"].values():
                bundle = connection.get("ca_bundle") if isinstance(connection, dict) else None
                if isinstance(bundle, dict) and isinstance(bundle.get("file"), str):  # relative to its file
                    bundle["file"] = str(folder / bundle["file"])
            connections.update(document["connections"])
        for connection in connections.values():
            if isinstance(connection, dict) and not connection.get("teams"):
                connection["teams"] = [LOCAL_TEAM]
        from reportrelay.config import Connections
        from reportrelay.errors import ReportRelayError

        try:
            if self.connections_file is not None:  # vendors/<key>.json beside it (reportrelay.vendors)
                from reportrelay.vendors import add_user_specs, user_spec_files

                add_user_specs(user_spec_files(self.connections_file.resolve().parent))
            Connections.from_document({"connections": connections})
        except ReportRelayError as error:
            raise BadInput(str(error)) from None
        return connections

    def _start_sandbox(self) -> dict[str, Any]:
        from reportrelay_cli.sandbox.cli import (
            EXAMPLES,
            SANDBOX_PROVIDERS,
            SANDBOX_SECRET,
            SANDBOX_SECRET_ENV,
            _point_at,
        )
        from reportrelay_cli.sandbox.server import Faults

        os.environ.setdefault(SANDBOX_SECRET_ENV, SANDBOX_SECRET)
        examples = json.loads((EXAMPLES / "connections.json").read_text(encoding="utf-8"))["connections"]
        connections = {}
        for provider in SANDBOX_PROVIDERS:
            simulator = provider.build(0, Faults()).start()
            self._stack.callback(simulator.stop)
            self.simulators[provider.key] = simulator
            connection = examples[provider.connection]
            _point_at(connection, simulator.base_url)
            connections[provider.connection] = connection
        return connections

    def _api(self, event: dict[str, Any]) -> Mapping[str, Any]:
        """The API function's answer, with a presigned S3 link pointing at this server's ``/_s3/``."""
        answer = dict(self.aws.api(event))
        if int(answer.get("statusCode", 0)) != 302:
            return answer
        for field in ("headers", "multiValueHeaders"):
            headers = dict(answer.get(field) or {})
            for name, value in list(headers.items()):
                if name.lower() == "location":
                    links = (
                        [self._local_link(str(item)) for item in value] if isinstance(value, list) else None
                    )
                    headers[name] = links if links is not None else self._local_link(str(value))
            answer[field] = headers or answer.get(field)
        if answer.get("body") and not answer.get("isBase64Encoded"):
            with suppress(ValueError, TypeError):
                body = json.loads(answer["body"])
                if isinstance(body, dict) and isinstance(body.get("url"), str):
                    body["url"] = self._local_link(body["url"])
                    answer["body"] = json.dumps(body)
        return answer

    def _local_link(self, url: str) -> str:
        parts = urlsplit(url)
        if not (parts.hostname or "").endswith("amazonaws.com"):
            return url
        return f"{self.root}{S3_PATH}{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path.startswith(S3_PATH):
            return self._download(environ, start_response)
        if path == f"/{PEOPLE_STAGE}" or path.startswith(f"/{PEOPLE_STAGE}/"):
            return self.people_app(environ, start_response)
        return self.api_app(environ, start_response)

    def _download(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """A presigned GET, answered from the emulated bucket once its signature and expiry check out."""
        path = str(environ.get("PATH_INFO") or "")
        with suppress(UnicodeError):  # PEP 3333 servers decode the path as latin-1; S3 keys are UTF-8
            path = path.encode("latin-1").decode("utf-8")
        host, _, key_path = path[len(S3_PATH) :].partition("/")
        query = str(environ.get("QUERY_STRING") or "")
        signed_path = "/" + quote(key_path, safe="/~")  # as botocore encodes a key it presigns
        problem = presigned_problem(str(environ.get("REQUEST_METHOD") or "GET"), host, signed_path, query)
        if problem is not None:
            return _text(start_response, "403 Forbidden", problem)
        bucket, key = _bucket_and_key(host, key_path)
        try:
            stored = self.aws.client("s3").get_object(Bucket=bucket, Key=key)
        except Exception as error:  # NoSuchKey, NoSuchBucket: as S3 answers them
            code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
            return _text(start_response, "404 Not Found", f"{code}: {bucket}/{key}")
        headers = [
            ("Content-Type", stored.get("ContentType") or "application/octet-stream"),
            ("Content-Length", str(stored["ContentLength"])),
        ]
        if stored.get("ContentDisposition"):
            headers.append(("Content-Disposition", stored["ContentDisposition"]))
        start_response("200 OK", headers)
        return iter(lambda: stored["Body"].read(1024 * 1024), b"")

    def _save_while_running(self) -> None:
        while not self._stop.wait(SAVE_INTERVAL_SECONDS):
            with self._saved_lock:
                try:
                    self.state.save(self.aws)
                except Exception as error:  # the next round tries again; the user hears why
                    print(f"reportrelay serve: could not save state: {error}", file=sys.stderr, flush=True)

    def _stop_jobs_and_save(self) -> None:
        """On the way out: running executions stop, their jobs are marked failed, and everything is saved."""
        self._stop.set()
        sfn = self.aws.client("stepfunctions")
        running = sfn.list_executions(stateMachineArn=self.aws.state_machine_arn, statusFilter="RUNNING")
        for execution in running["executions"]:
            with suppress(Exception):  # one that ended meanwhile
                sfn.stop_execution(executionArn=execution["executionArn"])
        with self._saved_lock:
            self.state.fail_unfinished(self.aws, "while it ran")
            self.state.save(self.aws)

    def greeting(self) -> str:
        """What is served where, and how to call it: the local user's keys and a first command."""
        identity = next(iter(self.identities))
        lines = [f"reportrelay serve: the job API on {self.url} (state in {self.state.root}; Ctrl-C to stop)"]
        for key, simulator in self.simulators.items():
            lines.append(f"  sandbox {key:<16} {simulator.base_url}  (connection sandbox-{key})")
        if self.stopped_jobs:
            lines.append(
                f"  {len(self.stopped_jobs)} job(s) left unfinished by the last run are marked failed "
                "(ServeStopped): rerun them with reportrelay jobs rerun ID"
            )
        lines.append(
            f"The console: {self.people_url}/console (sign in as {LOCAL_PERSON}, password "
            f"{self.person_password}, kept in {self.state.person_file})"
        )
        lines += [
            f"Call it as {identity.principal} (team {', '.join(identity.teams)}), whose keys are in "
            f"{self.state.identities_file}:",
            "  unset AWS_PROFILE AWS_SESSION_TOKEN",
            f"  export AWS_ACCESS_KEY_ID={identity.access_key_id} "
            f"AWS_SECRET_ACCESS_KEY={identity.secret_access_key} AWS_REGION=us-east-1",
            f"  export REPORTRELAY_API={self.url}",
        ]
        if self.sandbox:
            lines.append("  reportrelay jobs start --request examples/devexpress-report.json --watch")
        lines.append("  reportrelay jobs list")
        return "\n".join(lines)


def _text(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _bucket_and_key(host: str, key_path: str) -> tuple[str, str]:
    """Virtual-hosted (``bucket.s3.amazonaws.com/key``) or path-style (``s3.amazonaws.com/bucket/key``)."""
    if host.startswith("s3.") or host.startswith("s3-"):
        bucket, _, key = key_path.partition("/")
        return bucket, key
    return host.split(".s3", 1)[0], key_path


def presigned_problem(
    method: str, host: str, raw_path: str, query: str, now: datetime | None = None
) -> str | None:
    """Why S3 would refuse this presigned URL (its words, near enough), or None when it is good.

    The signature is recomputed with botocore's own S3 query signer over the URL as it was signed (the
    emulation's credentials), and the link must be within ``X-Amz-Date`` + ``X-Amz-Expires``.
    """
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from reportrelay_cli.local.aws import _FAKE_CREDENTIALS

    pairs = [pair.partition("=") for pair in query.split("&") if pair]
    params = {unquote(name): unquote(value) for name, _, value in pairs}
    needed = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature")
    if any(name not in params for name in needed):
        return "AccessDenied: not a presigned URL (query parameters missing)"
    try:
        signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        return "AuthorizationQueryParametersError: X-Amz-Date or X-Amz-Expires is malformed"
    if (now or datetime.now(UTC)) > signed_at + timedelta(seconds=expires):
        return "AccessDenied: Request has expired"
    scope = params["X-Amz-Credential"].split("/")
    if len(scope) != 5:
        return "AuthorizationQueryParametersError: X-Amz-Credential is malformed"

    class _AsSigned(S3SigV4QueryAuth):
        def _modify_request_before_signing(self, request: AWSRequest) -> None:
            pass  # the query already holds the parameters it was signed with

    unsigned = "&".join(f"{name}={value}" for name, _, value in pairs if unquote(name) != "X-Amz-Signature")
    request = AWSRequest(method=method, url=f"https://{host}{raw_path}?{unsigned}")
    request.context["timestamp"] = params["X-Amz-Date"]
    credentials = Credentials(
        _FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        _FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        _FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )
    signer = _AsSigned(credentials, "s3", scope[2], expires)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if scope[0] != credentials.access_key or not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return "SignatureDoesNotMatch: the signature we calculated does not match the signature you provided"
    return None


class StateFolder:
    """What ``serve`` keeps on disk between runs; every file written whole, then renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs_file = root / "jobs.json"
        self.objects_dir = root / "objects"
        self.objects_file = root / "objects.json"
        self.identities_file = root / "identities.json"
        self.link_key_file = root / "link-key"
        self.person_file = root / "person.json"
        self.connections_file = root / "connections.json"
        self._saved_items: list[Any] | None = None
        self._saved_objects: dict[str, dict[str, Any]] = {}

    def identities(self) -> Any:
        """The local user's access key: made on the first start, the same one after."""
        from reportrelay.errors import ReportRelayError
        from reportrelay_cli.local.identities import LocalIdentities

        if self.identities_file.exists():
            try:
                return LocalIdentities.from_file(self.identities_file)
            except ReportRelayError as error:
                raise BadInput(str(error)) from None
        identities = LocalIdentities.generate({LOCAL_PRINCIPAL: [LOCAL_TEAM]})
        identities.write(self.identities_file)
        return identities

    def person_password(self) -> str:
        """The local person's console password: made on the first start, the same one after."""
        if self.person_file.exists():
            try:
                kept = json.loads(self.person_file.read_text(encoding="utf-8"))
                if isinstance(kept, dict) and isinstance(kept.get("password"), str) and kept["password"]:
                    return str(kept["password"])
            except (OSError, ValueError):
                pass
            raise BadInput(f"{self.person_file} holds no password: delete it to have a new one made")
        password = secrets.token_urlsafe(12)
        _write(
            self.person_file, json.dumps({"user": LOCAL_PERSON, "password": password}) + "\n", private=True
        )
        return password

    # ---- loading

    def restore(self, aws: Any) -> None:
        """Put the saved job table items, reports and share-link key into a freshly started emulation."""
        dynamodb, s3 = aws.client("dynamodb"), aws.client("s3")
        items = _read(self.jobs_file, {"items": []})["items"]
        for item in items:
            dynamodb.put_item(TableName=aws.jobs_table, Item=item)
        self._saved_items = items
        objects = _read(self.objects_file, {"objects": {}})["objects"]
        for key, saved in objects.items():
            file = self.objects_dir / saved["file"]
            if not file.is_file():
                continue  # lost from the folder: the API will say the report is no longer kept (410)
            with file.open("rb") as body:
                extra = (
                    {"ContentDisposition": saved["content_disposition"]}
                    if saved.get("content_disposition")
                    else {}
                )
                s3.put_object(
                    Bucket=aws.bucket,
                    Key=key,
                    Body=body,
                    ContentType=saved.get("content_type") or "application/octet-stream",
                    Metadata=saved.get("metadata") or {},
                    **extra,
                )
            saved["etag"] = s3.head_object(Bucket=aws.bucket, Key=key)["ETag"]
        self._saved_objects = objects
        secret = aws.function_environment["REPORTRELAY_LINK_KEY_SECRET"]
        secrets = aws.client("secretsmanager")
        if self.link_key_file.exists():
            secrets.put_secret_value(
                SecretId=secret, SecretString=self.link_key_file.read_text("utf-8").strip()
            )
        else:
            _write(
                self.link_key_file, secrets.get_secret_value(SecretId=secret)["SecretString"], private=True
            )

    def fail_unfinished(self, aws: Any, when: str) -> list[str]:
        """Mark failed every job still queued or running: its execution ended with this process."""
        from reportrelay.jobs import DynamoDbJobs, JobState

        store = DynamoDbJobs(aws.jobs_table, lambda: aws.client("dynamodb"))
        failed = []
        for item in _scan(aws.client("dynamodb"), aws.jobs_table):
            state = item.get("state", {}).get("S")
            if item.get("kind", {}).get("S") != "job" or state not in _UNFINISHED:
                continue
            job_id = item["id"]["S"]
            message = (
                f"reportrelay serve stopped {when}, while this job was {state}; its workflow stopped with "
                f"it: run it again with 'reportrelay jobs rerun {job_id}' (the provider may still finish a "
                "report it had queued)"
            )
            if store.finish(
                job_id, {"state": JobState.FAILED, "error": {"code": "ServeStopped", "message": message}}
            ):
                failed.append(job_id)
        return failed

    # ---- saving

    def save(self, aws: Any) -> None:
        """Write what changed since the last save: the job table whole, new or changed reports."""
        items = sorted(_scan(aws.client("dynamodb"), aws.jobs_table), key=lambda item: json.dumps(item["id"]))
        if items != self._saved_items:
            _write(self.jobs_file, json.dumps({"items": items}), private=True)
            self._saved_items = items
        self._save_objects(aws)

    def _save_objects(self, aws: Any) -> None:
        s3 = aws.client("s3")
        present: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws.bucket):
            for listed in page.get("Contents", []):
                present[listed["Key"]] = listed["ETag"]
        objects = dict(self._saved_objects)
        changed = False
        for key, etag in present.items():
            if objects.get(key, {}).get("etag") == etag:
                continue
            stored = s3.get_object(Bucket=aws.bucket, Key=key)
            name = quote(key, safe="")
            self.objects_dir.mkdir(parents=True, exist_ok=True)
            partial = self.objects_dir / f".{name}.part"
            with partial.open("wb") as file:
                shutil.copyfileobj(stored["Body"], file, 1024 * 1024)
            os.replace(partial, self.objects_dir / name)
            objects[key] = {
                "file": name,
                "etag": stored["ETag"],
                "content_type": stored.get("ContentType"),
                "content_disposition": stored.get("ContentDisposition"),
                "metadata": stored.get("Metadata") or {},
            }
            changed = True
        for key in [key for key in objects if key not in present]:
            (self.objects_dir / objects.pop(key)["file"]).unlink(missing_ok=True)
            changed = True
        if changed:
            _write(self.objects_file, json.dumps({"objects": objects}, indent=1), private=True)
            self._saved_objects = objects


def _scan(dynamodb: Any, table: str) -> Iterator[dict[str, Any]]:
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        yield from page.get("Items", [])


def _read(path: Path, empty: dict[str, Any]) -> dict[str, Any]:
    if not path.exists():
        return empty
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise BadInput(
            f"the state file {path} cannot be read ({error}): move it away to start afresh"
        ) from None
    if not isinstance(document, dict) or not all(name in document for name in empty):
        raise BadInput(f"the state file {path} is not one serve wrote: move it away to start afresh")
    return document


def _write(path: Path, text: str, *, private: bool = False) -> None:
    """``text`` into ``path`` whole: a temporary file beside it, renamed over it (owner-only if private)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, path)
