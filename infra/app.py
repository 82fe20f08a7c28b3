"""Build the CDK app: the stack from the settings in context, with cdk-nag's AwsSolutions checks on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.settings import Settings
from infra.stack import ReportRelayStack


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> App:
    """The app ``cdk synth`` runs (app.py) and the tests synthesize, built the same way."""
    app = App(context=dict(context or {}), outdir=outdir)
    settings = Settings.from_context(app)
    ReportRelayStack(app, settings.stack_name, settings=settings)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app
