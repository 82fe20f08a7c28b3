"""The one way reportrelay writes and reads times: ISO 8601, UTC, milliseconds, ``Z``.

The workflow state, the events and the job store all carry such strings, and the job store sorts by
them, so they must come from one place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso_timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: Any) -> float | None:
    """Seconds since the epoch, or None for anything that is not an ISO 8601 time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
