"""A deployment with teams, over real HTTP: machines sign with SigV4, people bring tokens from an issuer.

Served on loopback, as in AWS: the IAM API (``JobApiApp`` checking SigV4 against generated identities,
whose teams are IAM tags in moto) and the people API (no gateway auth; the function verifies the
person's JWT from the sandbox's OIDC issuer, or its session cookie). Two teams and an admin:

- finance: machine ``alice`` (a role session), person ``carol``; connection ``dx-finance``
- sales: machine ``bob`` (a user), person ``dave``; connection ``dx-sales``
- platform (the admin team): machine ``ops``, person ``erin``
- no team: machine ``nobody``, person ``frank``
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from reportrelay_cli.local.apigateway import JobApiApp
from reportrelay_cli.local.aws import REGION, LocalAws
from reportrelay_cli.local.identities import LocalIdentities, LocalIdentity, register_in_iam
from reportrelay_cli.sandbox.devexpress import DevExpressSimulator
from reportrelay_cli.sandbox.oidc import OidcClient, OidcIssuer, OidcUser
from tests.conftest import DX_PASSWORD, devexpress_connection, write_connections
from tests.http import serve, sigv4_headers

ACCOUNT = "123456789012"
CLIENT_ID = "reportrelay-people"
MACHINES = {
    "alice": (f"arn:aws:sts::{ACCOUNT}:assumed-role/finance-reports/alice", ["finance"]),
    "bob": (f"arn:aws:iam::{ACCOUNT}:user/sales-robot", ["sales"]),
    "ops": (f"arn:aws:iam::{ACCOUNT}:user/platform-operator", ["platform"]),
    "nobody": (f"arn:aws:iam::{ACCOUNT}:user/stranger", []),
}
PEOPLE = {"carol": ("finance",), "dave": ("sales",), "erin": ("platform",), "frank": ()}
TEAM_OF = {"alice": "finance", "carol": "finance", "bob": "sales", "dave": "sales"}
ADMINS = ("ops", "erin")
NO_TEAM = ("nobody", "frank")
CONNECTION_OF = {"finance": "dx-finance", "sales": "dx-sales"}
PASSWORD = "correct horse battery staple"


class _LateApi:
    """The API handler of a LocalAws that starts after the servers (they must know their ports first)."""

    aws: LocalAws | None = None

    def __call__(self, event: dict[str, Any]) -> Any:
        assert self.aws is not None
        return self.aws.api(event)


@dataclass
class Deployment:
    aws: LocalAws
    simulator: DevExpressSimulator
    issuer: OidcIssuer
    identities: LocalIdentities
    iam_url: str
    people_url: str
    connections: dict[str, str]

    def machine(self, name: str) -> LocalIdentity:
        return self.identities.for_principal(MACHINES[name][0])

    def call(self, who: str, method: str, path: str, body: Any = None, **headers: str) -> requests.Response:
        """``who`` calls the API as it would: a machine signs for the IAM API, a person sends its token."""
        data = json.dumps(body) if body is not None else None
        if body is not None:
            headers["Content-Type"] = "application/json"
        if who in MACHINES:
            url = self.iam_url + path
            headers = sigv4_headers(method, url, self.machine(who).credentials(), data=data, headers=headers)
        else:
            url = self.people_url + path
            headers["Authorization"] = f"Bearer {self.token(who)}"
        return requests.request(method, url, headers=headers, data=data, allow_redirects=False, timeout=30)

    def token(self, person: str) -> str:
        return self.issuer.issue_token(person, audience=CLIENT_ID)

    def request(self, of: str, **overrides: Any) -> dict[str, Any]:
        """A job request on team ``of``'s connection."""
        return {
            "connection": self.connections[of],
            "report": {"document_id": 10},
            "format": "pdf",
            **overrides,
        }


@contextlib.contextmanager
def deployment(
    directory: Path, *, generation_seconds: float = 0.2, connections: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """Everything above, started; stopped (running executions too) when the block ends.

    ``connections`` names each team's connection (default ``CONNECTION_OF``).
    """
    names = connections or CONNECTION_OF
    late = _LateApi()
    identities = LocalIdentities.generate({arn: teams for arn, teams in MACHINES.values()})
    users = {
        name: OidcUser(PASSWORD, groups=groups, email=f"{name}@example.com")
        for name, groups in PEOPLE.items()
    }
    clients = {CLIENT_ID: OidcClient(allow_any_loopback_redirect=True)}
    with (
        pytest.MonkeyPatch.context() as patch,
        DevExpressSimulator(users={"api": DX_PASSWORD}, generation_seconds=generation_seconds) as simulator,
        OidcIssuer(users=users, clients=clients) as issuer,
        serve(JobApiApp(late, identities=identities, region=REGION)) as iam_root,
        serve(JobApiApp(late, people=True, region=REGION)) as people_root,
    ):
        patch.setenv("TEST_DX_PASSWORD", DX_PASSWORD)
        connections = write_connections(
            directory,
            {
                name: devexpress_connection(simulator.base_url, teams=[team], share_links=True)
                for team, name in names.items()
            },
        )
        environment = {
            "REPORTRELAY_CONNECTIONS_FILE": str(connections),
            "REPORTRELAY_ACCESS": json.dumps({"admin_team": "platform"}),
            "REPORTRELAY_OIDC_ISSUER": issuer.issuer,
            "REPORTRELAY_OIDC_CLIENT_ID": CLIENT_ID,
            "REPORTRELAY_OIDC_JWKS_URL": f"{issuer.issuer}/jwks.json",
            "REPORTRELAY_API_URL": f"{iam_root}/v1",
            "REPORTRELAY_PEOPLE_URL": f"{people_root}/v1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        with LocalAws(environment) as aws:
            register_in_iam(aws.client("iam"), identities)
            late.aws = aws
            try:
                yield Deployment(
                    aws, simulator, issuer, identities, f"{iam_root}/v1", f"{people_root}/v1", names
                )
            finally:
                stop_running(aws)


def stop_running(aws: LocalAws) -> None:
    sfn = aws.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=aws.state_machine_arn, statusFilter="RUNNING")[
        "executions"
    ]:
        with contextlib.suppress(Exception):
            sfn.stop_execution(executionArn=execution["executionArn"])
