"""cdk-nag acknowledgements: each one names the rule (and finding) it accepts and says why."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

MIN_REASON_LENGTH = 40


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one cdk-nag finding on ``scope`` (and its children) with a reason a reviewer can judge."""
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"the acknowledgement of {rule} needs a reason a reviewer can judge, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))
