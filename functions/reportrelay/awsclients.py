"""boto3 clients, made once per process.

A warm Lambda reuses them instead of paying for a new client (endpoint and credential resolution) on
every invocation, and one lock keeps threads (the local runner invokes steps in parallel) from building
clients on boto3's shared default session at the same moment, which boto3 does not support.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from reportrelay.errors import AwsUnavailable

_clients: dict[tuple[str | None, ...], Any] = {}
_lock = threading.Lock()


def aws_client(service: str, *, signature_version: str | None = None) -> Any:
    """The process's client for ``service`` in the current region (and endpoint, when one is set).

    The region is Lambda's ``AWS_REGION`` (which boto3 alone does not read), else ``AWS_DEFAULT_REGION``,
    else boto3's own configuration.
    """
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    key = (
        service,
        signature_version,
        region,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"),
    )
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            config = Config(signature_version=signature_version) if signature_version else None
            _clients[key] = boto3.client(service, region_name=region, config=config)
        return _clients[key]


def aws_error_code(error: BaseException) -> str:
    """The code of an AWS error answer (``ConditionalCheckFailedException``, ``NoSuchKey``, ...); "" for
    any other exception, so callers can compare without first asking what the error is."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


#: Error codes AWS services answer when they throttle or are briefly unable to serve.
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceErrorException",
        "KMSInternalException",
    }
)


def unavailable(error: BaseException) -> AwsUnavailable | None:
    """An ``AwsUnavailable`` for an AWS error that retrying the step can cure (throttling, 5xx, a connection
    that failed), else None. Says which call failed and how, never what was sent."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    if isinstance(error, ClientError):
        code = aws_error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _TRANSIENT_CODES or status >= 500:
            answer = f"{code} (HTTP {status})" if status else code
            return AwsUnavailable(
                f"AWS answered {answer} to {error.operation_name}; the step will be retried"
            )
    elif isinstance(error, ConnectionError | HTTPClientError) and isinstance(error, BotoCoreError):
        return AwsUnavailable(f"AWS could not be reached ({type(error).__name__}); the step will be retried")
    return None
