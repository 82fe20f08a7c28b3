"""The one Logger, Tracer and Metrics every handler shares (AWS Lambda Powertools)."""

from __future__ import annotations

import sys

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "reportrelay"
METRICS_NAMESPACE = "ReportRelay"

# Logs go to stderr: CloudWatch captures both streams in Lambda, and the local CLI keeps stdout for results.
logger = Logger(service=SERVICE, stream=sys.stderr)
# Only AWS SDK calls are traced (docs/reliability.md, "Traces"). Patching everything X-Ray can patch would
# also trace ``requests``, whose subsegments keep the text of a failed call's exception: urllib3 writes the
# whole URL into it, query string and all, and Metric Insights sends its download-session token there.
# botocore subsegments keep the service, operation, region, request id and a few whitelisted parameters
# (table, bucket and key, function names), never a request or response body such as GetSecretValue's.
TRACED_MODULES = ("botocore",)
tracer = Tracer(service=SERVICE, patch_modules=TRACED_MODULES)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
