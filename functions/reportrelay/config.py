"""Connections and job requests: the two documents users write, validated at the edge.

A connection says where one provider account lives and how to sign in; a job request says which report
to fetch through which connection. Secret-bearing fields only ever hold a *reference* to a secret
(``{"env": "NAME"}`` locally, ``{"secret": "name-or-arn", "key": "field"}`` in AWS) so that neither
file, nor the state machine that carries the request, ever holds a secret value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from reportrelay import objectkeys
from reportrelay.addresses import is_loopback_host, parse_redirect_hosts
from reportrelay.errors import BadRequest, ConfigurationError

DEFAULT_DEADLINE_SECONDS = 24 * 3600
MAX_DEADLINE_SECONDS = 7 * 24 * 3600
TEAM_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Team = Annotated[str, Field(pattern=TEAM_PATTERN, description="a team name: a-z, 0-9, '-', '_'")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSecret(_Strict):
    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class AwsSecret(_Strict):
    secret: str = Field(min_length=1)
    key: str | None = None


SecretRef = EnvSecret | AwsSecret


def _refusing_literals(message: str) -> Callable[[Any], Any]:
    """A validator for fields that hold a reference: a plain string there is refused with ``message``."""

    def refuse(value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(message)
        return value

    return refuse


class FileText(_Strict):
    """A local file's text; a relative path is taken from the connections file's folder."""

    file: str = Field(min_length=1)


class ParameterText(_Strict):
    """An SSM Parameter Store parameter's value, by name or ARN."""

    ssm: str = Field(min_length=1)


#: Where a CA bundle (PEM) comes from: a file locally, Secrets Manager or SSM in AWS.
CaBundleRef = Annotated[
    FileText | AwsSecret | ParameterText,
    BeforeValidator(
        _refusing_literals(
            'must say where the PEM certificates are: {"file": "ca.pem"} locally, {"secret": "name"} or '
            '{"ssm": "/parameter/name"} in AWS'
        )
    ),
]


Secret = Annotated[
    SecretRef,
    BeforeValidator(
        _refusing_literals(
            'must be a reference to a secret such as {"env": "NAME"} or {"secret": "name", "key": "field"}, '
            "never the secret itself"
        )
    ),
]


class NoAuth(_Strict):
    type: Literal["none"]


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: Secret


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str
    password: Secret


class HeaderAuth(_Strict):
    """A custom header such as ``X-Api-Key: <secret>`` (with an optional prefix before the value)."""

    type: Literal["header"]
    header: str = Field(min_length=1)
    value: Secret
    prefix: str = ""


class _OAuth(_Strict):
    """Where and how to ask for an OAuth2 access token; ``token_url`` may be relative to ``base_url``."""

    token_url: str = "/oauth/token"
    client_id: str | None = None
    client_secret: Secret | None = None
    client_auth: Literal["body", "basic"] = Field(
        default="body", description="send the client credentials in the form body or as HTTP Basic auth"
    )
    scope: str | None = None


class OAuthPasswordAuth(_OAuth):
    """OAuth2 resource-owner password grant (DevExpress; identity services that sign in a user)."""

    type: Literal["oauth_password"]
    username: str
    password: Secret | None = Field(default=None, description="omit for an account with a blank password")


class OAuthClientCredentialsAuth(_OAuth):
    """OAuth2 client credentials grant: a service signs in as itself."""

    type: Literal["oauth_client_credentials"]


class OAuthRefreshTokenAuth(_OAuth):
    """OAuth2 refresh-token grant: a refresh token, obtained once by a person, buys access tokens."""

    type: Literal["oauth_refresh_token"]
    refresh_token: Secret


class AppTokenAuth(_Strict):
    """An application key exchanged for a session token sent in a header (Metric Insights ``get_token``)."""

    type: Literal["app_token"]
    token_url: str = "/api/get_token/"
    application_id: str
    application_key: Secret
    user: str
    header: str = "Token"


AuthConfig = Annotated[
    NoAuth
    | BearerAuth
    | BasicAuth
    | HeaderAuth
    | OAuthPasswordAuth
    | OAuthClientCredentialsAuth
    | OAuthRefreshTokenAuth
    | AppTokenAuth,
    Field(discriminator="type"),
]


class PollPolicy(_Strict):
    """How long to wait between status checks: grows by `factor` from `initial` up to `max`."""

    initial_seconds: int = Field(default=5, ge=1, le=3600)
    max_seconds: int = Field(default=300, ge=1, le=3600)
    factor: float = Field(default=1.5, ge=1.0, le=10.0)
    min_seconds: int = Field(default=1, ge=1, le=3600)


class Timeouts(_Strict):
    connect_seconds: float = Field(default=10, gt=0, le=120)
    read_seconds: float = Field(default=60, gt=0, le=900)


class Connection(BaseModel):
    """One provider account. Provider-specific settings (e.g. ``tenant_id``) ride along as extras."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    provider: str
    base_url: str = Field(pattern=r"^https?://[^\s/$.?#][^\s]*$")
    auth: AuthConfig
    poll: PollPolicy = PollPolicy()
    timeouts: Timeouts = Timeouts()
    verify_tls: bool = Field(
        default=True, description="false turns certificate checks off: logged as a warning on every run"
    )
    ca_bundle: CaBundleRef | None = Field(
        default=None, description="PEM certificates of a private CA the vendor's certificate is issued by"
    )
    allow_plain_http: bool = Field(
        default=False, description="allow an http:// base_url that is not loopback (credentials in clear)"
    )
    deadline_seconds: int = Field(default=DEFAULT_DEADLINE_SECONDS, ge=60, le=MAX_DEADLINE_SECONDS)
    max_concurrent_jobs: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="jobs beyond this many wait their turn (see reportrelay.slots)",
    )
    teams: tuple[Team, ...] = Field(
        default=(), description="the teams that may start jobs on this connection (the admin team always may)"
    )
    share_links: bool = Field(
        default=False, description="people of its teams may mint share links to this connection's reports"
    )
    redirect_hosts: tuple[str, ...] = Field(
        default=(), description="other hosts a redirect may lead to (followed without any credential)"
    )
    fetch_in: Literal["auto", "container"] = Field(
        default="auto",
        description=(
            "auto: fetch in Lambda, moving to a container task when a transfer will not fit in one "
            "invocation; container: always in a container (for a single-use result too large for Lambda)"
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _no_userinfo(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "must not carry a user name or password (user:password@host): put credentials in 'auth', "
                "with a secret reference"
            )
        if parts.fragment:
            raise ValueError("must not have a #fragment")
        return value

    @field_validator("redirect_hosts")
    @classmethod
    def _redirect_hosts_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_redirect_hosts(value)
        return value

    @model_validator(mode="after")
    def _transport_is_safe(self) -> Connection:
        parts = urlsplit(self.base_url)
        if (
            parts.scheme == "http"
            and not self.allow_plain_http
            and not is_loopback_host(parts.hostname or "")
        ):
            raise ValueError(
                f"base_url: {parts.scheme}://{parts.netloc} would send credentials and reports unencrypted; "
                'use https:// (http is accepted for loopback hosts only, or with "allow_plain_http": true '
                "for a vendor without TLS on a network you trust)"
            )
        if not self.verify_tls and self.ca_bundle is not None:
            raise ValueError("ca_bundle and verify_tls: false contradict each other: keep ca_bundle only")
        if parts.scheme == "http" and self.ca_bundle is not None:
            raise ValueError("ca_bundle is set but base_url is http://: a CA bundle needs https://")
        return self

    @property
    def provider_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OutputOptions(_Strict):
    key_prefix: str = Field(
        default="",
        description=(
            "folders under the team's, e.g. 'finance/2025/': letters and digits of any script, spaces "
            f"inside a folder name and {' '.join(objectkeys.SAFE_PUNCTUATION)}; "
            f"at most {objectkeys.MAX_PREFIX_BYTES} bytes of UTF-8 (see reportrelay.objectkeys)"
        ),
        json_schema_extra={"maxLength": objectkeys.MAX_PREFIX_BYTES},
    )
    share_links: bool = Field(default=False, description="allow share links to this job's report")

    @field_validator("key_prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        return objectkeys.check_key_prefix(value)


class JobRequest(_Strict):
    """What a user asks for. ``report`` and ``parameters`` are checked by the provider."""

    connection: str = Field(min_length=1, max_length=128)
    report: dict[str, Any]
    format: str = Field(min_length=1, max_length=32)
    parameters: dict[str, Any] = Field(default_factory=dict)
    output: OutputOptions = OutputOptions()
    client_token: str | None = Field(default=None, min_length=1, max_length=64)
    deadline_seconds: int | None = Field(default=None, ge=60, le=MAX_DEADLINE_SECONDS)
    team: Team | None = Field(
        default=None,
        description="the team the job runs for: its object key starts with it and only that team sees it",
    )

    @model_validator(mode="after")
    def _format_is_lowercase(self) -> JobRequest:
        if self.format != self.format.lower():
            object.__setattr__(self, "format", self.format.lower())
        return self


def describe_validation_error(error: ValidationError, where: str) -> str:
    """One line naming every bad field, in the user's own terms ("request.format: ...")."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if not str(part).endswith("Auth"))
        location = re.sub(r"\.(none|bearer|basic|header|oauth_\w+|app_token)(?=\.|$)", "", location)
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}.{location}: {message}" if location else f"{where}: {message}")
    return "; ".join(problems)


def parse_job_request(document: Any) -> JobRequest:
    if not isinstance(document, Mapping):
        raise BadRequest("the job request must be a JSON object with 'connection', 'report' and 'format'")
    try:
        return JobRequest.model_validate(document)
    except ValidationError as error:
        raise BadRequest(describe_validation_error(error, "request")) from None


class Connections:
    """The set of connections a deployment knows, by name."""

    def __init__(self, connections: Mapping[str, Connection]) -> None:
        self._connections = dict(connections)

    def __contains__(self, name: str) -> bool:
        return name in self._connections

    def names(self) -> list[str]:
        return sorted(self._connections)

    def get(self, name: str) -> Connection:
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise BadRequest(f"unknown connection '{name}' (configured: {known})") from None

    @classmethod
    def from_document(cls, document: Any, folder: Path | None = None) -> Connections:
        """``folder``: where relative file references (``ca_bundle``) are taken from (default: the cwd)."""
        if not isinstance(document, Mapping) or not isinstance(document.get("connections"), Mapping):
            raise ConfigurationError('the connections file must be a JSON object {"connections": {...}}')
        parsed = {}
        for name, body in document["connections"].items():
            if not isinstance(body, Mapping):
                raise ConfigurationError(f"connections.{name}: must be an object")
            bundle = body.get("ca_bundle")
            if folder is not None and isinstance(bundle, Mapping) and isinstance(bundle.get("file"), str):
                body = {**body, "ca_bundle": {**bundle, "file": str(folder / bundle["file"])}}
            try:
                parsed[name] = Connection.model_validate({**body, "name": name})
            except ValidationError as error:
                raise ConfigurationError(describe_validation_error(error, f"connections.{name}")) from None
        return cls(parsed)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Connections:
        """The connections of a file; the vendor specs in the ``vendors/`` folder beside it are checked and
        registered first, so its connections may name them as their ``provider`` (``reportrelay.vendors``)."""
        from reportrelay import vendors

        folder = Path(path).parent
        vendors.add_user_specs(vendors.user_spec_files(folder))
        return cls.from_document(read_json_file(path, "connections"), folder=folder)


def read_json_file(path: str | os.PathLike[str], what: str, **loads: Any) -> Any:
    """A configuration file's JSON; ConfigurationError naming the file (and line, column) otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read {what} file {path}: {error.strerror}") from None
    try:
        return json.loads(text, **loads)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"{what} file {path} is not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
        ) from None


SecretLoader = Callable[[str], str]
SecretWriter = Callable[[str, str], None]


class SecretResolver:
    """Turns a secret reference into its value, at the last moment, inside the function that needs it."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        aws_secret_loader: SecretLoader | None = None,
        aws_secret_writer: SecretWriter | None = None,
        parameter_loader: SecretLoader | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._aws_secret_loader = aws_secret_loader
        self._aws_secret_writer = aws_secret_writer
        self._parameter_loader = parameter_loader
        self._aws_cache: dict[str, str] = {}

    def read_text(self, ref: FileText | AwsSecret | ParameterText, field: str) -> str:
        """A file's, secret's or SSM parameter's text: configuration that is not in the file itself."""
        if isinstance(ref, FileText):
            try:
                return Path(ref.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not UTF-8 text"
                raise ConfigurationError(f"{field}: cannot read {ref.file}: {reason}") from None
        if isinstance(ref, ParameterText):
            if self._parameter_loader is None:
                raise ConfigurationError(
                    f'{field}: SSM parameters are not available here; use {{"file": ...}}'
                )
            key = f"ssm:{ref.ssm}"
            if key not in self._aws_cache:
                self._aws_cache[key] = self._parameter_loader(ref.ssm)
            return self._aws_cache[key]
        return self.resolve(ref, field)

    def resolve(self, ref: SecretRef, field: str, *, fresh: bool = False) -> str:
        """The secret's value; ``fresh`` reads an AWS secret again instead of using this process's copy."""
        if isinstance(ref, EnvSecret):
            value = self._environ.get(ref.env)
            if not value:
                raise ConfigurationError(f"{field}: environment variable {ref.env} is not set")
            return value
        if fresh:
            self._aws_cache.pop(ref.secret, None)
        raw = self._load_aws_secret(ref.secret, field)
        if ref.key is None:
            return raw
        try:
            value = json.loads(raw)[ref.key]
        except (json.JSONDecodeError, TypeError, KeyError):
            raise ConfigurationError(f"{field}: secret {ref.secret} has no JSON field '{ref.key}'") from None
        return str(value)

    def keep_rotated(self, ref: SecretRef, value: str, field: str) -> bool:
        """Store a credential the provider replaced (rotating refresh tokens) where the next process reads it.

        Only AWS secrets can be written; an environment variable keeps its old value, so a process started
        later must be given the new one. Other fields of a JSON secret are kept. False when not stored.
        """
        if isinstance(ref, EnvSecret) or self._aws_secret_writer is None:
            return False
        if ref.key is None:
            updated = value
        else:
            self._aws_cache.pop(ref.secret, None)  # keep fields another process changed meanwhile
            document = json.loads(self._load_aws_secret(ref.secret, field))
            document[ref.key] = value
            updated = json.dumps(document)
        try:
            self._aws_secret_writer(ref.secret, updated)
        except Exception as error:
            raise ConfigurationError(
                f"{field}: the provider replaced the refresh token but secret {ref.secret} could not be "
                f"updated ({type(error).__name__}); allow secretsmanager:PutSecretValue on it"
            ) from None
        self._aws_cache[ref.secret] = updated
        return True

    def _load_aws_secret(self, secret_id: str, field: str) -> str:
        if secret_id not in self._aws_cache:
            if self._aws_secret_loader is None:
                raise ConfigurationError(f'{field}: AWS secrets are not available here; use {{"env": ...}}')
            self._aws_cache[secret_id] = self._aws_secret_loader(secret_id)
        return self._aws_cache[secret_id]
