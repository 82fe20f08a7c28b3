"""Where outcomes are announced: the reportrelay event bus and the schemas of its two events."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_eventschemas as eventschemas
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import constants
from infra.settings import Settings


class ReportEvents(Construct):
    """The bus ``Report Ready`` and ``Report Failed`` go to, and a schema registry with ``schemas/*.json``."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=settings.event_bus_name,
            description="reportrelay: Report Ready and Report Failed events",
        )
        self.registry = eventschemas.CfnRegistry(
            self,
            "Schemas",
            registry_name=f"{settings.event_bus_name}-events",
            description="reportrelay: JSON Schemas of the events on the reportrelay bus (from schemas/)",
        )
        self.schemas = [
            self._build_schema(detail_type, file) for detail_type, file in constants.SCHEMA_FILES.items()
        ]

    def grant_put_events(self, grantee: iam.IGrantable) -> None:
        """Put events on this bus, and no other."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[self.bus.event_bus_arn])
        )

    def _build_schema(self, detail_type: str, file: str) -> eventschemas.CfnSchema:
        schema = eventschemas.CfnSchema(
            self,
            detail_type.replace(" ", ""),
            registry_name=self.registry.attr_registry_name,
            schema_name=f"{constants.EVENT_SOURCE}@{detail_type.replace(' ', '')}",
            type="JSONSchemaDraft4",
            content=(constants.SCHEMAS_DIR / file).read_text(encoding="utf-8"),
            description=f"reportrelay '{detail_type}' event",
        )
        return schema
