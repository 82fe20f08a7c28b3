"""The identity rules: which teams a machine or a person acts for, and which team a new job runs for."""

from __future__ import annotations

import pytest

from reportrelay.access import AccessPolicy, MachineIdentities, NotAllowed, Principal, person_principal
from reportrelay.config import Connection
from reportrelay.errors import ConfigurationError

SSO_SESSION = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Finance_0a1b2c/alice@example.com"


def connection(*teams: str) -> Connection:
    return Connection.model_validate(
        {
            "name": "dx",
            "provider": "devexpress",
            "base_url": "https://x.example",
            "auth": {"type": "none"},
            "teams": teams,
        }
    )


class Tags:
    """IAM tags by (kind, name), counting the reads."""

    def __init__(self, tags: dict[tuple[str, str], dict[str, str]]) -> None:
        self.tags, self.reads = tags, 0

    def __call__(self, kind: str, name: str) -> list[tuple[str, str]]:
        self.reads += 1
        return list(self.tags.get((kind, name), {}).items())


def test_a_role_session_gets_the_teams_of_its_role_by_pattern_and_by_tag():
    # given an SSO permission set's role mapped by pattern, and tagged with another team
    policy = AccessPolicy(roles={"arn:aws:iam::123456789012:role/AWSReservedSSO_Finance_*": ("finance",)})
    tags = Tags({("role", "AWSReservedSSO_Finance_0a1b2c"): {"reportrelay-teams": "audit  reporting"}})
    machines = MachineIdentities(policy, tags)
    # when one of its sessions calls
    principal = machines.principal(SSO_SESSION)
    # then it is that session (not the role), in the mapped and the tagged teams
    assert principal.id == SSO_SESSION and principal.kind == "iam"
    assert principal.teams == {"finance", "audit", "reporting"} and not principal.admin


def test_tags_are_read_once_per_role_for_a_few_minutes_and_bad_team_names_are_ignored():
    # given a tagged role whose tag also holds a name no team can have
    clock = [0.0]
    tags = Tags({("role", "r"): {"reportrelay-teams": "finance Not-A-Team"}})
    machines = MachineIdentities(AccessPolicy(), tags, clock=lambda: clock[0])
    session = "arn:aws:sts::123456789012:assumed-role/r/{}"
    # when two sessions of the role call within five minutes, then once more later
    first = machines.principal(session.format("a"))
    machines.principal(session.format("b"))
    clock[0] = 301.0
    machines.principal(session.format("c"))
    # then the tags were read twice, and only the valid team counts
    assert first.teams == {"finance"} and tags.reads == 2


def test_a_role_whose_tags_cannot_be_read_has_no_teams_by_tag():
    def refuse(kind: str, name: str) -> list[tuple[str, str]]:
        raise PermissionError("AccessDenied")

    principal = MachineIdentities(AccessPolicy(), refuse).principal(
        "arn:aws:iam::210987654321:user/elsewhere"
    )
    assert principal.teams == frozenset()


def test_a_persons_teams_are_the_groups_with_the_prefix_taken_off():
    # given a policy that counts only groups starting with "rr-", and names platform the admin team
    policy = AccessPolicy(admin_team="platform", groups_claim="groups", group_prefix="rr-")
    # when a person with such groups, and others, is seen
    person = person_principal(
        {"sub": "u-1", "email": "erin@example.com", "groups": ["rr-platform", "staff"]}, policy
    )
    # then only the prefixed groups are teams, and the admin team makes an admin
    assert person.id == "person:u-1" and person.name == "erin@example.com"
    assert person.teams == {"platform"} and person.admin


def test_the_team_of_a_new_job_is_the_callers_only_team_on_the_connection_or_the_one_named():
    finance_and_sales = Principal("p", "iam", frozenset({"finance", "sales"}))
    # a caller in one of the connection's teams runs for that team
    assert (
        Principal("p", "iam", frozenset({"finance"})).team_for(connection("finance", "hr"), None) == "finance"
    )
    # a caller in two of them must name one, and may
    with pytest.raises(NotAllowed, match="several teams"):
        finance_and_sales.team_for(connection("finance", "sales"), None)
    assert finance_and_sales.team_for(connection("finance", "sales"), "sales") == "sales"
    # nobody names a team they are not in, or one the connection does not list
    with pytest.raises(NotAllowed, match="team 'hr'"):
        finance_and_sales.team_for(connection("finance", "hr"), "hr")
    # and a caller in none of them is refused, naming the connection
    with pytest.raises(NotAllowed, match="connection 'dx'"):
        Principal("p", "iam", frozenset({"sales"})).team_for(connection("finance"), None)
    # the admin team may run a job for any team
    assert (
        Principal("a", "iam", frozenset({"platform"}), admin=True).team_for(connection("finance"), None)
        == "finance"
    )


def test_a_wrong_policy_names_the_field():
    with pytest.raises(ConfigurationError, match=r"access\.roles"):
        AccessPolicy.from_document({"roles": {"arn:aws:iam::1:role/r": ["Finance Team"]}})
    with pytest.raises(ConfigurationError, match="REPORTRELAY_ACCESS is not valid JSON"):
        AccessPolicy.from_env({"REPORTRELAY_ACCESS": "{"})
