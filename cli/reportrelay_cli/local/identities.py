"""Who may call the local job API: access keys with their secrets, IAM principals and teams, in one file.

In AWS, API Gateway checks a caller's SigV4 signature against IAM, and the API function reads the
caller's teams from the principal's IAM tags. Locally, an identities file stands in for both::

    {"identities": {
      "AKIALOCALALICE000001": {"secret_access_key": "...",
                               "principal": "arn:aws:sts::123456789012:assumed-role/finance-reports/alice",
                               "teams": ["finance"], "session_token": "optional"}
    }}

``reportrelay_cli.local.apigateway.JobApiApp`` verifies signatures against it, and ``register_in_iam`` puts
each principal's role or user into (moto's) IAM with its teams as the tag the API function reads, so the
team lookup runs the same code path as deployed. The file holds secrets: ``write`` makes it owner-only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reportrelay.config import Team, describe_validation_error, read_json_file
from reportrelay.errors import ConfigurationError

DEFAULT_TAG_KEY = "reportrelay-teams"
ACCESS_KEY_ID_PATTERN = re.compile(r"^[A-Z0-9]{16,128}$")
_NAME = r"[\w+=,.@-]{1,64}"
_PRINCIPAL = re.compile(
    rf"^arn:(?P<partition>aws(?:-[a-z]+)*):"
    rf"(?:iam::(?P<account>\d{{12}}):(?P<kind>user|role)(?P<path>/(?:[\x21-\x7e]+/)?)(?P<name>{_NAME})"
    rf"|sts::(?P<sts_account>\d{{12}}):assumed-role/(?P<role>{_NAME})/(?P<session>[\w+=,.@-]{{2,64}}))$"
)
_PRINCIPAL_EXAMPLES = (
    "arn:aws:iam::123456789012:user/<name>, arn:aws:iam::123456789012:role/<name> or "
    "arn:aws:sts::123456789012:assumed-role/<role>/<session>"
)
# IAM's unique-id prefixes: users are AIDA..., roles AROA...; long-term keys AKIA..., temporary ASIA....
_ID_PREFIX = {"user": "AIDA", "role": "AROA", "assumed-role": "AROA"}
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class PrincipalArn:
    """An IAM principal ARN taken apart: what API Gateway and IAM each need from it."""

    arn: str
    partition: str
    account_id: str
    kind: Literal["user", "role", "assumed-role"]
    name: str  # the user or role name
    path: str = "/"
    session: str | None = None

    @classmethod
    def parse(cls, arn: str) -> PrincipalArn | None:
        """The parts of a user, role or assumed-role ARN; None for anything else."""
        match = _PRINCIPAL.match(arn)
        if match is None:
            return None
        if match["kind"]:
            return cls(arn, match["partition"], match["account"], match["kind"], match["name"], match["path"])
        return cls(
            arn,
            match["partition"],
            match["sts_account"],
            "assumed-role",
            match["role"],
            session=match["session"],
        )

    @property
    def entity_kind(self) -> Literal["user", "role"]:
        """Which IAM entity holds this principal's tags: a session's tags are its role's."""
        return "user" if self.kind == "user" else "role"

    @property
    def entity_arn(self) -> str:
        """The IAM user or role ARN (for a session: its role, whose tags it carries)."""
        return f"arn:{self.partition}:iam::{self.account_id}:{self.entity_kind}{self.path}{self.name}"

    @property
    def unique_id(self) -> str:
        """A stable stand-in for IAM's RoleId or UserId (``AROA...``, ``AIDA...``), from the entity ARN."""
        digest = base64.b32encode(hashlib.sha256(self.entity_arn.encode()).digest()).decode()
        return _ID_PREFIX[self.kind] + digest[:17]


@dataclass(frozen=True)
class LocalIdentity:
    """One access key: its secret (and session token, for temporary credentials), principal and teams."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    principal: str
    teams: tuple[str, ...] = ()
    session_token: str | None = field(default=None, repr=False)

    @property
    def arn(self) -> PrincipalArn:
        parsed = PrincipalArn.parse(self.principal)
        assert parsed is not None, self.principal  # LocalIdentities validates every principal
        return parsed

    def credentials(self) -> Credentials:
        """botocore credentials for signing as this identity, as a client would hold them."""
        return Credentials(self.access_key_id, self.secret_access_key, self.session_token)

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "secret_access_key": self.secret_access_key,
            "principal": self.principal,
            "teams": list(self.teams),
        }
        if self.session_token is not None:
            document["session_token"] = self.session_token
        return document


class _IdentityDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_access_key: str = Field(min_length=1)
    principal: str
    teams: tuple[Team, ...] = ()
    session_token: str | None = Field(default=None, min_length=1)

    @field_validator("principal")
    @classmethod
    def _principal_is_an_iam_arn(cls, value: str) -> str:
        if PrincipalArn.parse(value) is None:
            raise ValueError(f"must be an IAM ARN such as {_PRINCIPAL_EXAMPLES}, not '{value}'")
        return value


class LocalIdentities:
    """The identities the local API knows, by access key id."""

    def __init__(self, identities: Iterable[LocalIdentity], source: str = "identities") -> None:
        self._by_key: dict[str, LocalIdentity] = {}
        entity_teams: dict[str, tuple[str, frozenset[str]]] = {}
        for identity in identities:
            if identity.access_key_id in self._by_key:
                raise ConfigurationError(f"{source}: access key {identity.access_key_id} is listed twice")
            # Teams stand for tags on the IAM user or role, so every session of one role has the same.
            entity = identity.arn.entity_arn
            teams = frozenset(identity.teams)
            seen = entity_teams.setdefault(entity, (identity.access_key_id, teams))
            if seen[1] != teams:
                raise ConfigurationError(
                    f"{source}: identities.{identity.access_key_id}.teams: {entity} already has teams "
                    f"{sorted(seen[1])} (from {seen[0]}); teams are tags on the IAM user or role, "
                    "so every session of one role must list the same teams"
                )
            self._by_key[identity.access_key_id] = identity

    def get(self, access_key_id: str) -> LocalIdentity | None:
        return self._by_key.get(access_key_id)

    def for_principal(self, principal: str) -> LocalIdentity:
        """The (first) identity that signs as ``principal``: what a test needs to act as someone."""
        for identity in self:
            if identity.principal == principal:
                return identity
        raise KeyError(principal)

    def __iter__(self) -> Iterator[LocalIdentity]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, access_key_id: object) -> bool:
        return access_key_id in self._by_key

    @classmethod
    def from_document(cls, document: Any, source: str = "identities") -> LocalIdentities:
        """Validate a parsed identities document; errors name ``source`` and the field."""
        if not isinstance(document, Mapping) or not isinstance(document.get("identities"), Mapping):
            raise ConfigurationError(
                f'{source}: must be a JSON object such as {{"identities": {{"AKIA...": {{...}}}}}}'
            )
        unknown = sorted(set(document) - {"identities"})
        if unknown:
            raise ConfigurationError(f"{source}: unknown field {unknown[0]} (only 'identities' is allowed)")
        parsed = []
        for key, entry in document["identities"].items():
            if not ACCESS_KEY_ID_PATTERN.match(str(key)):
                raise ConfigurationError(
                    f"{source}: identities.{key}: an access key id is 16 to 128 characters of A-Z and 0-9"
                )
            try:
                model = _IdentityDocument.model_validate(entry)
            except ValidationError as error:
                raise ConfigurationError(
                    f"{source}: {describe_validation_error(error, f'identities.{key}')}"
                ) from None
            teams = tuple(dict.fromkeys(model.teams))
            parsed.append(
                LocalIdentity(key, model.secret_access_key, model.principal, teams, model.session_token)
            )
        return cls(parsed, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LocalIdentities:
        try:
            document = read_json_file(path, "identities", object_pairs_hook=_reject_duplicate_keys)
        except _DuplicateKey as error:
            raise ConfigurationError(f"{path}: {error.key} appears twice") from None
        return cls.from_document(document, source=str(path))

    @classmethod
    def generate(cls, principals: Mapping[str, Sequence[str]]) -> LocalIdentities:
        """Fresh random credentials for each principal ARN -> teams; sessions get temporary (ASIA) keys."""
        document: dict[str, Any] = {}
        for principal, teams in principals.items():
            temporary = ":assumed-role/" in principal
            key = ("ASIA" if temporary else "AKIA") + "".join(
                secrets.choice(_KEY_ALPHABET) for _ in range(16)
            )
            entry: dict[str, Any] = {
                "secret_access_key": secrets.token_urlsafe(30),
                "principal": principal,
                "teams": list(teams),
            }
            if temporary:
                entry["session_token"] = secrets.token_urlsafe(96)
            document[key] = entry
        return cls.from_document({"identities": document}, source="generated identities")

    def to_document(self) -> dict[str, Any]:
        return {"identities": {identity.access_key_id: identity.to_document() for identity in self}}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the identities file, readable by its owner only: it holds secret keys."""
        target = Path(path)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(self.to_document(), file, indent=2)
            file.write("\n")
        return target


def register_in_iam(iam_client: Any, identities: LocalIdentities, tag_key: str = DEFAULT_TAG_KEY) -> None:
    """Create each identity's IAM role or user (in moto), tagged ``tag_key`` = its teams, space-separated.

    The API function finds a caller's teams through ``iam:ListRoleTags``/``ListUserTags``; this puts them
    where it looks. An entity that already exists keeps its other tags and gets this one; an identity
    without teams gets its entity but no tag.
    """
    for identity in identities:
        arn = identity.arn
        tags = [{"Key": tag_key, "Value": " ".join(identity.teams)}] if identity.teams else []
        try:
            if arn.entity_kind == "role":
                iam_client.create_role(
                    RoleName=arn.name, Path=arn.path, AssumeRolePolicyDocument=_trust_policy(arn), Tags=tags
                )
            else:
                iam_client.create_user(UserName=arn.name, Path=arn.path, Tags=tags)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
                raise
            if tags and arn.entity_kind == "role":
                iam_client.tag_role(RoleName=arn.name, Tags=tags)
            elif tags:
                iam_client.tag_user(UserName=arn.name, Tags=tags)


def _trust_policy(arn: PrincipalArn) -> str:
    """Who may assume a local role: its own account, as a role made in the console would allow."""
    root = f"arn:{arn.partition}:iam::{arn.account_id}:root"
    statement = {"Effect": "Allow", "Principal": {"AWS": root}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys; for a file of access keys that hides a mistake."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
