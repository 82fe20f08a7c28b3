"""Deployment settings: CDK context values ``reportrelay:*`` (cdk.json, or ``-c key=value``), checked once.

Every setting has a safe default, so ``cdk deploy`` works with none given. Values given with ``-c``
arrive as strings, so booleans and numbers are parsed here, and a wrong value stops the synthesis
with a message naming the setting.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants

PREFIX = "reportrelay:"


class SettingsError(ValueError):
    """A ``reportrelay:*`` context value is missing its shape; the message names the key."""


@dataclass(frozen=True)
class Settings:
    stack_name: str = constants.DEFAULT_STACK_NAME
    # Storage
    bucket_encryption: str = "s3"  # "s3" (SSE-S3) or "kms" (a customer managed key with rotation)
    versioned: bool = True
    report_retention_days: int = 90  # reports expire this many days after they are stored
    noncurrent_retention_days: int = 30  # overwritten or deleted versions (versioned buckets only)
    access_logs: bool = True  # S3 server access logs into a separate bucket
    access_log_retention_days: int = 365
    # Workflow
    log_retention_days: int = 30
    bundle: bool = True  # False: skip pip (tests), the asset then holds the reportrelay package only
    # Events, configuration, monitoring
    event_bus_name: str = constants.DEFAULT_EVENT_BUS_NAME
    connections_file: Path = constants.CONNECTIONS_FILE
    # Every connection's secret is named under this prefix ("reportrelay/connections/"): the functions may
    # read the secrets under it, one grant, instead of one grant per secret, which IAM's 10,240 characters
    # of policy per role hold only some 40 of (docs/deploy.md, "Many connections"). None: exact grants.
    connection_secrets_prefix: str | None = None
    schedules_file: Path = constants.SCHEDULES_FILE
    alarm_email: str | None = None
    provider_errors_threshold: int = 5  # submit/check/fetch errors in 15 minutes before their alarm fires
    # Job API
    download_url_seconds: int = 300  # lifetime of the presigned links GET /reports/{id}/download makes
    api_throttle_rate: int = 20  # requests per second the API stage lets through before answering 429
    api_throttle_burst: int = 40
    # Access (docs/deploy.md, "Who may see what")
    access_file: Path = constants.ACCESS_FILE
    # Callers of the IAM API: only principals of these accounts and/or this organization (none: any the
    # principals' own IAM policies allow)
    api_allowed_accounts: tuple[str, ...] = ()
    api_organization_id: str | None = None
    # How people sign in to the people API: a Cognito user pool the stack creates, an external OIDC
    # identity provider, or not at all (then the people API serves share links only)
    people_sign_in: str = "cognito"
    cognito_domain_prefix: str | None = None  # default: <stack name>-<account id>
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_jwks_url: str | None = None  # default: <issuer>/.well-known/jwks.json
    oidc_authorization_url: str | None = None
    oidc_token_url: str | None = None
    oidc_groups_claim: str | None = None  # default: the access policy's groups_claim
    # Vendors behind a firewall (docs/deploy.md, "Vendors behind a firewall: a static egress IP"): the
    # provider-facing functions run in a VPC and reach the internet through NAT gateways with fixed IPs.
    # "none": no VPC. "new": the stack creates one (two AZs, public subnets with the NAT gateways,
    # private subnets for the functions, flow logs, S3 and DynamoDB gateway endpoints) and an Elastic IP
    # for each NAT gateway. "vpc-...": an existing VPC, whose private subnets (routed through a NAT) the
    # functions are placed in; nothing is looked up, so its subnets and egress IPs are given here.
    vpc: str = "none"
    vpc_nat_gateways: int | None = None  # "new" only: 1 (cheaper, one AZ's NAT) or 2 (default, one per AZ)
    vpc_subnet_ids: tuple[str, ...] = ()  # existing VPC only, required: its private subnets
    vpc_egress_ips: tuple[str, ...] = ()  # existing VPC only: its NAT's public IPs, for the stack outputs
    # A transfer too long for one Lambda invocation that the vendor cannot serve in byte ranges moves to a
    # Fargate task (docs/reliability.md). It runs in the vendor network, or without one in a VPC of public
    # subnets the stack creates for it (no NAT gateway). False: no task and no such VPC; such a transfer
    # then fails with TransferOutOfTime.
    fetch_container: bool = True

    def __post_init__(self) -> None:
        """Settings that only make sense together: an external issuer needs its endpoints, and so on."""
        oidc = {
            "oidcIssuer": self.oidc_issuer,
            "oidcClientId": self.oidc_client_id,
            "oidcJwksUrl": self.oidc_jwks_url,
            "oidcAuthorizationUrl": self.oidc_authorization_url,
            "oidcTokenUrl": self.oidc_token_url,
            "oidcGroupsClaim": self.oidc_groups_claim,
        }
        if self.people_sign_in == "external":
            required = ("oidcIssuer", "oidcClientId", "oidcAuthorizationUrl", "oidcTokenUrl")
            missing = [f"{PREFIX}{key}" for key in required if not oidc[key]]
            if missing:
                raise SettingsError(
                    f"{PREFIX}peopleSignIn=external needs {', '.join(missing)} (the identity provider's "
                    "issuer, this deployment's client id, and its authorization and token endpoints)"
                )
        else:
            given = [f"{PREFIX}{key}" for key, value in oidc.items() if value]
            if given:
                raise SettingsError(
                    f"{', '.join(given)} only apply with {PREFIX}peopleSignIn=external "
                    f"(it is {self.people_sign_in})"
                )
        if self.cognito_domain_prefix and self.people_sign_in != "cognito":
            raise SettingsError(
                f"{PREFIX}cognitoDomainPrefix only applies with {PREFIX}peopleSignIn=cognito "
                f"(it is {self.people_sign_in})"
            )
        self._check_vpc()

    def _check_vpc(self) -> None:
        """A new VPC is sized by its NAT gateways; an existing one is described by its subnets and IPs."""
        existing = self.vpc.startswith("vpc-")
        for key, given, needs, applies in (
            ("vpcNatGateways", self.vpc_nat_gateways is not None, "new", self.vpc == "new"),
            ("vpcSubnetIds", bool(self.vpc_subnet_ids), "<an existing VPC's id>", existing),
            ("vpcEgressIps", bool(self.vpc_egress_ips), "<an existing VPC's id>", existing),
        ):
            if given and not applies:
                raise SettingsError(f"{PREFIX}{key} only applies with {PREFIX}vpc={needs} (it is {self.vpc})")
        if existing and not self.vpc_subnet_ids:
            raise SettingsError(
                f"{PREFIX}vpc={self.vpc} needs {PREFIX}vpcSubnetIds: the VPC's private subnets (routed "
                "through its NAT) to run the provider functions in, best two or more in different AZs"
            )

    @property
    def nat_gateways(self) -> int:
        """NAT gateways (each with its Elastic IP) of a new VPC: one per AZ unless set to 1."""
        return self.vpc_nat_gateways or 2

    @property
    def oidc_jwks(self) -> str | None:
        """The external issuer's key set: as set, or where OIDC providers usually publish it."""
        if self.oidc_jwks_url:
            return self.oidc_jwks_url
        return f"{self.oidc_issuer.rstrip('/')}/.well-known/jwks.json" if self.oidc_issuer else None

    @classmethod
    def from_context(cls, scope: Construct) -> Settings:
        """Every ``reportrelay:*`` context value; a misspelt one is an error, not silently ignored."""
        context = scope.node.get_all_context()
        return cls.from_mapping(
            {key.removeprefix(PREFIX): value for key, value in context.items() if key.startswith(PREFIX)},
            where="context",
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "settings") -> Settings:
        parsed = {}
        for key, value in values.items():
            if key not in _PARSERS:
                raise SettingsError(f"{where}: unknown setting {PREFIX}{key}")
            if value is None or value == "":
                continue
            attribute, parse = _PARSERS[key]
            try:
                parsed[attribute] = parse(value)
            except (TypeError, ValueError) as error:
                raise SettingsError(f"{where}: {PREFIX}{key}={value!r}: {error}") from None
        return cls(**parsed)

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _RETENTION[self.log_retention_days]


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _between(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected a whole number")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected {low} to {high}")
        return number

    return parse


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(value)

    return parse


def _log_retention(value: Any) -> int:
    days = int(value)
    if days not in _RETENTION:
        raise ValueError(f"CloudWatch Logs keeps logs for one of {sorted(_RETENTION)} days")
    return days


def _path(value: Any) -> Path:
    path = Path(str(value))
    return path if path.is_absolute() else constants.REPO_ROOT / path


def _name(value: Any) -> str:
    text = str(value)
    if not text or len(text) > 256 or not all(char.isalnum() or char in "-_." for char in text):
        raise ValueError("expected letters, digits, '-', '_' or '.'")
    return text


def _email(value: Any) -> str:
    text = str(value).strip()
    if "@" not in text or " " in text:
        raise ValueError("expected an e-mail address")
    return text


def _matching(pattern: str, expected: str) -> Callable[[Any], str]:
    """A parser of text that must match ``pattern`` whole (surrounding spaces dropped)."""

    def parse(value: Any) -> str:
        text = str(value).strip()
        if not re.fullmatch(pattern, text):
            raise ValueError(expected)
        return text

    return parse


_https_url = _matching(r"https://[^\s/?#]+[^\s]*", "expected an https:// URL")
_organization = _matching(
    r"o-[a-z0-9]{10,32}", "expected an AWS Organizations id, o- and 10 to 32 lowercase letters or digits"
)


def _secret_prefix(value: Any) -> str:
    """A folder of Secrets Manager names: the characters a name may hold, ending with '/'."""
    text = str(value)
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+=.@-")
    if (
        not 2 <= len(text) <= 256
        or not set(text) <= allowed
        or not text.endswith("/")
        or text.startswith("/")
    ):
        raise ValueError("expected a secret name prefix ending with '/', such as reportrelay/connections/")
    return text


_claim = _matching(r"\S{1,128}", "expected a claim name such as groups or cognito:groups")
_text = _matching(r"\S{1,256}", "expected a value without spaces")
_prefix_shape = _matching(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?",
    "expected 1 to 63 lowercase letters, digits or '-' (not first or last)",
)


def _accounts(value: Any) -> tuple[str, ...]:
    """``111122223333,444455556666`` (or a JSON list in cdk.json): AWS account ids."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    accounts = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    for account in accounts:
        if not re.fullmatch(r"\d{12}", account):
            raise ValueError(f"{account!r} is not an AWS account id (12 digits); separate ids with ','")
    return accounts


def _domain_prefix(value: Any) -> str:
    """Cognito's hosted domain prefix: lowercase letters, digits and hyphens, without AWS's own names."""
    text = _prefix_shape(value)
    if any(word in text for word in ("aws", "amazon", "cognito")):
        raise ValueError("Cognito refuses a prefix containing 'aws', 'amazon' or 'cognito'")
    return text


def _vpc(value: Any) -> str:
    """``none``, ``new`` or an existing VPC's id."""
    text = str(value).strip()
    if text in ("none", "new") or re.fullmatch(r"vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})", text):
        return text
    raise ValueError("expected none, new or a VPC id (vpc- and 8 or 17 lowercase hex digits)")


def _subnets(value: Any) -> tuple[str, ...]:
    """``subnet-0a1b...,subnet-2c3d...`` (or a JSON list in cdk.json): subnet ids."""
    subnets = _list(value)
    for subnet in subnets:
        if not re.fullmatch(r"subnet-(?:[0-9a-f]{8}|[0-9a-f]{17})", subnet):
            raise ValueError(
                f"{subnet!r} is not a subnet id (subnet- and 8 or 17 hex digits); separate ids with ','"
            )
    return subnets


def _ipv4_addresses(value: Any) -> tuple[str, ...]:
    """``203.0.113.10,203.0.113.11`` (or a JSON list): public IPv4 addresses."""
    addresses = _list(value)
    for address in addresses:
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IPv4 address; separate addresses with ','") from None
        if any(parsed in network for network in _INSIDE_VPC):
            raise ValueError(f"{address} is a private address: the vendor sees the NAT's public IP")
    return addresses


# Addresses a VPC's own interfaces have (RFC 1918 and the shared range), never seen by a vendor.
_INSIDE_VPC = tuple(
    ipaddress.IPv4Network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


def _list(value: Any) -> tuple[str, ...]:
    """Items of a ``,``-separated text or a JSON list, stripped, without blanks and repeats."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

# context key (after "reportrelay:") -> (Settings attribute, parser)
_PARSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "stackName": ("stack_name", _name),
    "bucketEncryption": ("bucket_encryption", _one_of("s3", "kms")),
    "versioned": ("versioned", _bool),
    "reportRetentionDays": ("report_retention_days", _between(1, 36500)),
    "noncurrentRetentionDays": ("noncurrent_retention_days", _between(1, 36500)),
    "accessLogs": ("access_logs", _bool),
    "accessLogRetentionDays": ("access_log_retention_days", _between(1, 36500)),
    "logRetentionDays": ("log_retention_days", _log_retention),
    "bundle": ("bundle", _bool),
    "eventBusName": ("event_bus_name", _name),
    "connectionsFile": ("connections_file", _path),
    "connectionSecretsPrefix": ("connection_secrets_prefix", _secret_prefix),
    "schedulesFile": ("schedules_file", _path),
    "alarmEmail": ("alarm_email", _email),
    "providerErrorsThreshold": ("provider_errors_threshold", _between(1, 10000)),
    # SigV4 presigned URLs live at most 7 days; links signed with a role's session end with the session.
    "downloadUrlSeconds": ("download_url_seconds", _between(1, 604800)),
    "apiThrottleRate": ("api_throttle_rate", _between(1, 10000)),
    "apiThrottleBurst": ("api_throttle_burst", _between(1, 5000)),
    "accessFile": ("access_file", _path),
    "apiAllowedAccounts": ("api_allowed_accounts", _accounts),
    "apiOrganizationId": ("api_organization_id", _organization),
    "peopleSignIn": ("people_sign_in", _one_of("cognito", "external", "none")),
    "cognitoDomainPrefix": ("cognito_domain_prefix", _domain_prefix),
    "oidcIssuer": ("oidc_issuer", _https_url),
    "oidcClientId": ("oidc_client_id", _text),
    "oidcJwksUrl": ("oidc_jwks_url", _https_url),
    "oidcAuthorizationUrl": ("oidc_authorization_url", _https_url),
    "oidcTokenUrl": ("oidc_token_url", _https_url),
    "oidcGroupsClaim": ("oidc_groups_claim", _claim),
    "vpc": ("vpc", _vpc),
    # A stack without an account and region spans two AZs (no lookups), so at most one NAT gateway each.
    "vpcNatGateways": ("vpc_nat_gateways", _between(1, 2)),
    "vpcSubnetIds": ("vpc_subnet_ids", _subnets),
    "vpcEgressIps": ("vpc_egress_ips", _ipv4_addresses),
    "fetchContainer": ("fetch_container", _bool),
}
