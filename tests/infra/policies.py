"""Reading IAM out of a template: who may do what, on which resources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.infra.conftest import Synthesized, references


@dataclass(frozen=True)
class Grant:
    """One Allow statement of one role, flattened: its actions, resources and conditions."""

    role: str
    actions: frozenset[str]
    resources: tuple[Any, ...]
    conditions: dict[str, Any]

    @property
    def resource_ids(self) -> set[str]:
        return references(list(self.resources))


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(synthesized: Synthesized) -> Iterator[Grant]:
    """Every Allow statement of every role, from inline policies and AWS::IAM::Policy resources."""
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        properties = policy["Properties"]
        for role in properties.get("Roles", []):
            for statement in properties["PolicyDocument"]["Statement"]:
                yield _grant(role["Ref"], statement)
    for role_id, role in synthesized.resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield _grant(role_id, statement)


def _grant(role: str, statement: dict[str, Any]) -> Grant:
    assert statement.get("Effect") == "Allow", f"{role}: unexpected statement {statement}"
    assert "NotAction" not in statement and "NotResource" not in statement
    return Grant(
        role=role,
        actions=frozenset(_listify(statement["Action"])),
        resources=tuple(_listify(statement["Resource"])),
        conditions=statement.get("Condition", {}),
    )


def role_grants(synthesized: Synthesized, role: str) -> list[Grant]:
    return [grant for grant in grants(synthesized) if grant.role == role]


def role_actions(synthesized: Synthesized, role: str) -> set[str]:
    return {action for grant in role_grants(synthesized, role) for action in grant.actions}


def function_id(synthesized: Synthesized, handler: str) -> str:
    """The logical id of the function with this handler."""
    (logical_id,) = [
        logical_id
        for logical_id, function in synthesized.resources("AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == handler
    ]
    return logical_id


def function_role(synthesized: Synthesized, handler: str) -> str:
    """The logical id of the role of the function with this handler."""
    function = synthesized.template["Resources"][function_id(synthesized, handler)]
    (role,) = references(function["Properties"]["Role"])
    return role


def grantees(synthesized: Synthesized, action: str, resource_id: str) -> set[str]:
    """Roles allowed ``action`` on resource ``resource_id`` (or on every resource)."""
    return {
        grant.role
        for grant in grants(synthesized)
        if action in grant.actions and (resource_id in grant.resource_ids or "*" in grant.resources)
    }
