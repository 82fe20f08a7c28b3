"""What a step needs from its surroundings, read once from the environment into typed objects.

Environment variables (set by CDK in AWS, by the local runner on a laptop):
- ``REPORTRELAY_BUCKET``: the S3 bucket reports are stored in (fetch; conclude and cancel abort uploads).
- ``REPORTRELAY_CONNECTIONS_PATH``: the SSM Parameter Store path the deployed connections live under,
  one String parameter per connection (``<path>/<name>``, its body as compact JSON; see
  ``ParameterStoreConnections``). What CDK sets: a pointer, never the connections themselves.
- ``REPORTRELAY_CONNECTIONS_FILE``: path of the connections JSON document (local runs).
- ``REPORTRELAY_CONNECTIONS``: the connections JSON document itself (alternative to the file).
- ``REPORTRELAY_HANDLE_KEY``: KMS key that seals credential fields of provider handles.
- ``REPORTRELAY_HOLDER_FUNCTION``: the function invoked asynchronously to hold a long request open.
- ``REPORTRELAY_CLAIMS_TABLE``: DynamoDB table of claims on shared queue entries (see reportrelay.claims).
- ``REPORTRELAY_JOBS_TABLE``: DynamoDB table of jobs (see reportrelay.jobs); steps record progress there.
- ``REPORTRELAY_API_URL``: the job API's base URL, for the download link in the completion event.
- ``REPORTRELAY_STATE_MACHINE_ARN``: the state machine the job API starts and stops (API only).
- ``REPORTRELAY_EVENT_BUS``: the bus the job API announces cancelled jobs on (API only).
- ``REPORTRELAY_DOWNLOAD_URL_SECONDS``: lifetime of the API's presigned download links (default 300).
- ``REPORTRELAY_PEOPLE_URL``: the API as people reach it (browser sign-in, share links, event links).
- ``REPORTRELAY_CANCEL_FUNCTION``: the workflow function the API asks to cancel at the provider.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from reportrelay import names
from reportrelay.awsclients import aws_client, aws_error_code
from reportrelay.claims import CLAIMS_TABLE_ENV, ClaimStore, DynamoDbClaims
from reportrelay.config import Connection, Connections, SecretResolver
from reportrelay.errors import BadRequest, ConfigurationError
from reportrelay.jobs import JOBS_TABLE_ENV, DynamoDbJobs
from reportrelay.names import connection_parameter_name
from reportrelay.sealing import HandleSealer
from reportrelay.slots import ConcurrencySlots

DEFAULT_DOWNLOAD_URL_SECONDS = 300


FETCH_CONTAINER_ENV = names.FETCH_CONTAINER_ENV
CONNECTIONS_PATH_ENV = names.CONNECTIONS_PATH_ENV
#: How long a warm function trusts what it read of the deployed connections: a redeploy that changes one
#: reaches every function within this long, and a busy function reads each parameter once a minute at most.
CONNECTIONS_CACHE_SECONDS = 60.0
IN_CONTAINER_ENV = names.IN_CONTAINER_ENV


@dataclass(frozen=True)
class Settings:
    bucket: str | None
    connections_file: str | None
    connections_document: str | None
    connections_path: str | None = None
    handle_key: str | None = None
    holder_function: str | None = None
    claims_table: str | None = None
    jobs_table: str | None = None
    api_url: str | None = None
    state_machine_arn: str | None = None
    event_bus: str | None = None
    download_url_seconds: int = DEFAULT_DOWNLOAD_URL_SECONDS
    people_url: str | None = None
    cancel_function: str | None = None
    # A container task can take over a transfer that will not fit in a Lambda (reportrelay.container) ...
    fetch_container: bool = False
    # ... and this process is that container: no time limit, nothing to hand over to.
    in_container: bool = False

    @property
    def link_base_url(self) -> str | None:
        """Where links for people point (events' download_url): the people API, else the IAM API."""
        return self.people_url or self.api_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            bucket=env.get(names.BUCKET_ENV) or None,
            connections_file=env.get(names.CONNECTIONS_FILE_ENV) or None,
            connections_document=env.get(names.CONNECTIONS_DOCUMENT_ENV) or None,
            connections_path=(env.get(CONNECTIONS_PATH_ENV) or "").rstrip("/") or None,
            handle_key=env.get(names.HANDLE_KEY_ENV) or None,
            holder_function=env.get(names.HOLDER_FUNCTION_ENV) or None,
            claims_table=env.get(CLAIMS_TABLE_ENV) or None,
            jobs_table=env.get(JOBS_TABLE_ENV) or None,
            api_url=(env.get(names.API_URL_ENV) or "").rstrip("/") or None,
            state_machine_arn=env.get(names.STATE_MACHINE_ARN_ENV) or None,
            event_bus=env.get(names.EVENT_BUS_ENV) or None,
            download_url_seconds=_seconds(
                env.get(names.DOWNLOAD_URL_SECONDS_ENV), DEFAULT_DOWNLOAD_URL_SECONDS
            ),
            people_url=(env.get(names.PEOPLE_URL_ENV) or "").rstrip("/") or None,
            cancel_function=env.get(names.CANCEL_FUNCTION_ENV) or None,
            fetch_container=env.get(FETCH_CONTAINER_ENV) == "1",
            in_container=env.get(IN_CONTAINER_ENV) == "1",
        )


def _seconds(value: str | None, default: int) -> int:
    """A presigned link lives 1 s to 7 days (SigV4's limit); anything else is a deployment mistake."""
    if not value:
        return default
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 7 * 24 * 3600:
        raise ConfigurationError(
            f"REPORTRELAY_DOWNLOAD_URL_SECONDS={value!r}: expected a whole number of seconds, 1 to 604800"
        )
    return seconds


@lru_cache(maxsize=8)
def _connections_from_file(path: str, modified: float) -> Connections:
    return Connections.from_file(path)


@lru_cache(maxsize=8)
def _connections_from_text(text: str) -> Connections:
    try:
        return Connections.from_document(json.loads(text))
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"REPORTRELAY_CONNECTIONS is not valid JSON: {error.msg}") from None


def load_connections(settings: Settings) -> Connections:
    """The connections a step or the API reads: from Parameter Store when deployed (a path is set), else
    the document or the file the local runner names."""
    if settings.connections_path:
        return deployed_connections(settings.connections_path)
    if settings.connections_document:
        return _connections_from_text(settings.connections_document)
    if settings.connections_file:
        try:
            modified = os.stat(settings.connections_file).st_mtime
        except OSError:
            modified = 0.0
        return _connections_from_file(settings.connections_file, modified)
    raise ConfigurationError(
        f"no connections configured: set {CONNECTIONS_PATH_ENV} (deployed) or REPORTRELAY_CONNECTIONS_FILE"
    )


def connection_parameter_value(body: Mapping[str, Any]) -> str:
    """A connection's body as its parameter holds it: compact JSON, keys sorted (stable across deploys)."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


class ParameterStoreConnections(Connections):
    """The deployed connections, one SSM parameter each under ``path``, read when first needed.

    A step needs one connection: it is read by name (GetParameter). The API lists them only to name the
    caller's own in an error: all are read then (GetParametersByPath, paginated, 10 a page). Whatever was
    read is trusted for ``ttl_seconds`` (a warm function keeps this object, see ``deployed_connections``),
    including that a name has no parameter, so a burst of jobs reads each parameter once. A parameter that
    does not hold a valid connection is a ConfigurationError naming it; an AWS error propagates (the
    handlers turn throttling into ``AwsUnavailable``, which the state machine retries).
    """

    def __init__(
        self,
        path: str,
        client: Callable[[], Any],
        *,
        ttl_seconds: float = CONNECTIONS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__({})
        self.path = path.rstrip("/")
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._by_name: dict[str, tuple[float, Connection | None]] = {}
        self._listed: tuple[float, dict[str, Connection]] | None = None

    def __contains__(self, name: str) -> bool:
        return self._find(name) is not None

    def names(self) -> list[str]:
        return sorted(self._all())

    def get(self, name: str) -> Connection:
        connection = self._find(name)
        if connection is None:
            raise BadRequest(
                f"unknown connection '{name}': this deployment has no parameter "
                f"{connection_parameter_name(self.path, name)} (one is deployed per connection of the "
                "connections file)"
            )
        return connection

    def _fresh(self, read_at: float) -> bool:
        return self._clock() - read_at < self._ttl

    def _find(self, name: str) -> Connection | None:
        with self._lock:
            if self._listed is not None and self._fresh(self._listed[0]):
                return self._listed[1].get(name)
            cached = self._by_name.get(name)
            if cached is not None and self._fresh(cached[0]):
                return cached[1]
        if not name or "/" in name:  # not a parameter of this path; SSM would read another one
            return None
        parameter = connection_parameter_name(self.path, name)
        try:
            value = self._client().get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if aws_error_code(error) != "ParameterNotFound":
                raise
            connection = None
        else:
            connection = self._parse(parameter, name, value)
        with self._lock:
            self._by_name[name] = (self._clock(), connection)
        return connection

    def _all(self) -> dict[str, Connection]:
        with self._lock:
            if self._listed is not None and self._fresh(self._listed[0]):
                return self._listed[1]
        found: dict[str, Connection] = {}
        pages = (
            self._client().get_paginator("get_parameters_by_path").paginate(Path=self.path, Recursive=False)
        )
        for page in pages:
            for parameter in page["Parameters"]:
                name = parameter["Name"].rsplit("/", 1)[-1]
                found[name] = self._parse(parameter["Name"], name, parameter["Value"])
        with self._lock:
            now = self._clock()
            self._listed = (now, found)
            self._by_name = {name: (now, connection) for name, connection in found.items()}
        return found

    @staticmethod
    def _parse(parameter: str, name: str, value: str) -> Connection:
        try:
            body = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"SSM parameter {parameter} is not valid JSON: {error.msg}") from None
        try:
            return Connections.from_document({"connections": {name: body}}).get(name)
        except ConfigurationError as error:
            raise ConfigurationError(f"SSM parameter {parameter}: {error}") from None


_deployed: dict[str, ParameterStoreConnections] = {}
_deployed_lock = threading.Lock()


def deployed_connections(path: str) -> ParameterStoreConnections:
    """The process's one reader of the connections under ``path``: its cache outlives each invocation, so
    a warm function reads Parameter Store about once a minute, not once a job."""
    with _deployed_lock:
        if path not in _deployed:
            _deployed[path] = ParameterStoreConnections(path, lambda: aws_client("ssm"))
        return _deployed[path]


def forget_deployed_connections() -> None:
    """Drop what every reader cached (the local runner, when it starts on a fresh emulated account)."""
    with _deployed_lock:
        _deployed.clear()


def read_secret_string(secret_id: str) -> str:
    """A Secrets Manager secret's string value (for references and the share-link key alike)."""
    secret: str = aws_client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    return secret


def read_parameter(name: str) -> str:
    """An SSM parameter's value (decrypted when it is a SecureString)."""
    value: str = aws_client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return value


def _secrets_manager_writer(secret_id: str, value: str) -> None:
    aws_client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=value)


@dataclass
class Runtime:
    """Connections, secrets, storage and the clock: everything the workflow steps touch outside themselves."""

    settings: Settings
    connections: Connections
    secrets: SecretResolver
    clock: Callable[[], float] = time.time
    #: When the running function will be stopped (a ``time.monotonic()`` value); None: no limit known.
    ends_at: float | None = None
    #: The running function's configured memory (what its GB-seconds are billed by); 0: not known.
    memory_mb: int = 0
    #: When the running step began (``time.monotonic()``), for what it costs; None: not known.
    step_started: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        settings = Settings.from_env(environ)
        return cls(
            settings=settings,
            connections=load_connections(settings),
            secrets=SecretResolver(
                aws_secret_loader=read_secret_string,
                aws_secret_writer=_secrets_manager_writer,
                parameter_loader=read_parameter,
            ),
        )

    def client(self, service: str, *, signature_version: str | None = None) -> Any:
        """The shared client for ``service`` (S3's presigning one when a ``signature_version`` is given)."""
        return aws_client(service, signature_version=signature_version)

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def claims(self) -> ClaimStore | None:
        """The shared claim store, when the deployment has one."""
        if not self.settings.claims_table:
            return None
        return DynamoDbClaims(self.settings.claims_table, lambda: self.client("dynamodb"))

    @property
    def slots(self) -> ConcurrencySlots:
        return ConcurrencySlots(self.settings.claims_table, lambda: self.client("dynamodb"))

    @property
    def jobs(self) -> DynamoDbJobs | None:
        """The job store, when the deployment has one (steps record progress there; the API reads it)."""
        if not self.settings.jobs_table:
            return None
        return DynamoDbJobs(self.settings.jobs_table, lambda: self.client("dynamodb"), clock=self.clock)

    @property
    def sealer(self) -> HandleSealer:
        return HandleSealer(self.settings.handle_key, lambda: self.client("kms"))

    def start_holder(self, state: dict[str, Any]) -> None:
        """Invoke the holder function asynchronously: it keeps the provider's long request open."""
        if not self.settings.holder_function:
            raise ConfigurationError("REPORTRELAY_HOLDER_FUNCTION is not set: this provider needs a holder")
        self.client("lambda").invoke(
            FunctionName=self.settings.holder_function,
            InvocationType="Event",
            Payload=json.dumps(state).encode(),
        )

    @property
    def bucket(self) -> str:
        if not self.settings.bucket:
            raise ConfigurationError(
                "REPORTRELAY_BUCKET is not set: the fetch step has nowhere to store reports"
            )
        return self.settings.bucket
