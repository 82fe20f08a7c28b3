"""The one Logger, Tracer and Metrics every handler shares (AWS Lambda Powertools)."""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "reportrelay"
METRICS_NAMESPACE = "ReportRelay"

# Logs go to stderr: CloudWatch captures both streams in Lambda, and the local CLI keeps stdout for results.
logger = Logger(service=SERVICE, stream=sys.stderr)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
