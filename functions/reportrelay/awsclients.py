"""boto3 clients, made once per process.

A warm Lambda reuses them instead of paying for a new client (endpoint and credential resolution) on
every invocation, and one lock keeps threads (the local runner invokes steps in parallel) from building
clients on boto3's shared default session at the same moment, which boto3 does not support.
"""

from __future__ import annotations

import os
import threading
from typing import Any

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
