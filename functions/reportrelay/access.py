"""Who is calling and what they may see: one identity model for machines (IAM) and people (OIDC).

Every caller resolves to a ``Principal``: an id (the IAM principal ARN *with* its role session, or the
person's subject at the deployment's issuer) and a set of teams. Teams own connections (a connection lists
the teams that may use it) and jobs (a job belongs to the team it ran for). One configured team, the admin
team, sees everything. The rules live here, once; the API asks them, and never decides itself.

Teams come from:
- machines: the access policy's ``roles`` mapping (role or user ARN, ``fnmatch`` patterns allowed, e.g.
  ``arn:aws:iam::123456789012:role/AWSReservedSSO_Finance_*``) and the principal's IAM tag
  ``principal_tag`` (teams separated by spaces), read with ``iam:ListRoleTags`` / ``iam:ListUserTags``;
- people: the token's groups claim (``groups_claim``; only groups starting with ``group_prefix`` count,
  with the prefix taken off).

The policy is a JSON document (``config/access.json``; ``REPORTRELAY_ACCESS`` in the API function)::

    {"admin_team": "platform",
     "roles": {"arn:aws:iam::123456789012:role/finance-reports": ["finance"]},
     "principal_tag": "reportrelay-teams",
     "groups_claim": "cognito:groups", "group_prefix": ""}
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reportrelay.config import TEAM_PATTERN, Connection, Team, describe_validation_error, read_json_file
from reportrelay.errors import ConfigurationError, ReportRelayError
from reportrelay.names import ACCESS_ENV, ACCESS_FILE_ENV

DEFAULT_PRINCIPAL_TAG = "reportrelay-teams"
TAG_CACHE_SECONDS = 300
_ASSUMED_ROLE = re.compile(r"^arn:(aws[\w-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
_TEAM = re.compile(TEAM_PATTERN)
_IAM_ENTITY = re.compile(r"^arn:(aws[\w-]*):iam::(\d{12}):(role|user)/(?:.*/)?([^/]+)$")


class NotAllowed(ReportRelayError):
    """The caller's teams may not use this connection (403, naming it)."""


class Unauthenticated(ReportRelayError):
    """No credential, or one that does not verify (401, one line)."""


class AccessPolicy(BaseModel):
    """Which team administers, and how machines and people map to teams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin_team: Team | None = Field(default=None, description="this team sees and may do everything")
    roles: dict[str, tuple[Team, ...]] = Field(
        default_factory=dict, description="IAM role or user ARN (fnmatch pattern) -> teams"
    )
    principal_tag: str = Field(default=DEFAULT_PRINCIPAL_TAG, min_length=1, max_length=128)
    groups_claim: str = Field(default="cognito:groups", min_length=1, max_length=128)
    group_prefix: str = Field(default="", max_length=64)

    @classmethod
    def from_document(cls, document: Any, where: str = "access") -> AccessPolicy:
        if not isinstance(document, Mapping):
            raise ConfigurationError(f'{where}: must be a JSON object such as {{"admin_team": "platform"}}')
        try:
            return cls.model_validate(document)
        except ValidationError as error:
            raise ConfigurationError(describe_validation_error(error, where)) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AccessPolicy:
        return cls.from_document(read_json_file(path, "access"), where=str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AccessPolicy:
        """The deployment's policy; with none set, no team is admin and only tags give machines teams."""
        env = os.environ if environ is None else environ
        if env.get(ACCESS_ENV):
            try:
                document = json.loads(env[ACCESS_ENV])
            except json.JSONDecodeError as error:
                raise ConfigurationError(f"{ACCESS_ENV} is not valid JSON: {error.msg}") from None
            return cls.from_document(document, where=ACCESS_ENV)
        if env.get(ACCESS_FILE_ENV):
            return cls.from_file(env[ACCESS_FILE_ENV])
        return cls()

    def teams_of_role(self, entity_arn: str) -> set[str]:
        return {
            team
            for pattern, teams in self.roles.items()
            if fnmatchcase(entity_arn, pattern)
            for team in teams
        }

    def teams_of_groups(self, groups: Iterable[str]) -> set[str]:
        prefix = self.group_prefix
        named = (group[len(prefix) :] for group in groups if group.startswith(prefix))
        return {team for team in named if _TEAM.match(team)}


@dataclass(frozen=True)
class Principal:
    """A caller: who (``id``), how they signed in, and the teams they act for."""

    id: str
    kind: Literal["iam", "person"]
    teams: frozenset[str]
    admin: bool = False
    name: str = ""

    def may_see(self, team: str | None) -> bool:
        """A job is visible to its own team and the admin team; a job with no team only to admins."""
        return self.admin or (team is not None and team in self.teams)

    def may_use(self, connection: Connection) -> bool:
        return self.admin or bool(self.teams & set(connection.teams))

    def team_for(self, connection: Connection, asked: str | None) -> str:
        """The team a new job on ``connection`` runs for: the one asked for, or the only one possible."""
        if asked is not None:
            if self.admin or (asked in self.teams and asked in connection.teams):
                return asked
            raise NotAllowed(f"team '{asked}' may not run jobs on connection '{connection.name}' for you")
        if not self.may_use(connection):
            raise NotAllowed(
                f"connection '{connection.name}' is not shared with any of your teams "
                f"({', '.join(sorted(self.teams)) or 'none'}); ask its owners to add your team"
            )
        usable = sorted(self.teams & set(connection.teams)) or sorted(connection.teams)
        if len(usable) == 1:
            return usable[0]
        if not usable:
            raise NotAllowed(f"connection '{connection.name}' lists no teams; name the job's team in 'team'")
        raise NotAllowed(
            f"you may use connection '{connection.name}' for several teams ({', '.join(usable)}); "
            "name one in the request's 'team'"
        )


TagReader = Callable[[str, str], Iterable[tuple[str, str]]]
"""``(kind, name) -> (key, value) pairs``: the tags of IAM role or user ``name``."""


@dataclass
class MachineIdentities:
    """IAM principals to ``Principal``s: the role mapping plus principal tags (cached a few minutes)."""

    policy: AccessPolicy
    read_tags: TagReader | None = None
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)

    def principal(self, arn: str) -> Principal:
        """The caller behind ``arn`` as API Gateway saw it: its session stays part of its id."""
        entity = _iam_entity(arn)
        teams = self.policy.teams_of_role(entity) | self._tagged_teams(entity)
        admin = self.policy.admin_team is not None and self.policy.admin_team in teams
        return Principal(id=arn, kind="iam", teams=frozenset(teams), admin=admin, name=arn.rsplit("/", 1)[-1])

    def _tagged_teams(self, entity: str) -> frozenset[str]:
        match = _IAM_ENTITY.match(entity)
        if self.read_tags is None or match is None:
            return frozenset()
        cached = self._cache.get(entity)
        if cached and self.clock() - cached[0] < TAG_CACHE_SECONDS:
            return cached[1]
        try:
            tags = dict(self.read_tags(match.group(3), match.group(4)))
        except Exception:
            tags = {}  # an entity we may not read (another account's) has no teams by tag
        teams = frozenset(
            team for team in tags.get(self.policy.principal_tag, "").split() if _TEAM.match(team)
        )
        self._cache[entity] = (self.clock(), teams)
        return teams


def _iam_entity(arn: str) -> str:
    """``arn:aws:sts::1:assumed-role/R/session`` -> ``arn:aws:iam::1:role/R``: the role its tags are on."""
    assumed = _ASSUMED_ROLE.match(arn)
    if assumed:
        partition, account, role, _ = assumed.groups()
        return f"arn:{partition}:iam::{account}:role/{role}"
    return arn


def iam_tag_reader(iam: Any) -> TagReader:
    """Tags through the IAM API (``iam:ListRoleTags`` / ``iam:ListUserTags`` on the callers' entities)."""

    def read(kind: str, name: str) -> list[tuple[str, str]]:
        if kind == "role":
            tags = iam.list_role_tags(RoleName=name).get("Tags", [])
        else:
            tags = iam.list_user_tags(UserName=name).get("Tags", [])
        return [(tag["Key"], tag["Value"]) for tag in tags]

    return read


def person_principal(claims: Mapping[str, Any], policy: AccessPolicy) -> Principal:
    """A verified token's claims as a caller: ``person:<sub>``, teams from the groups claim."""
    groups = claims.get(policy.groups_claim) or []
    if isinstance(groups, str):
        groups = groups.split()
    teams = policy.teams_of_groups(str(group) for group in groups if isinstance(group, str))
    admin = policy.admin_team is not None and policy.admin_team in teams
    name = str(
        claims.get("email") or claims.get("preferred_username") or claims.get("username") or claims["sub"]
    )
    return Principal(
        id=f"person:{claims['sub']}", kind="person", teams=frozenset(teams), admin=admin, name=name
    )
