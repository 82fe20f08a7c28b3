"""Sealed handle fields: credentials a provider needs between steps, kept unreadable in the workflow state.

Some vendors hand out a short-lived session token that must be presented on every later call (Metric
Insights' download session). The state machine carries the handle from step to step, and its state is
visible in the execution history, so such fields are encrypted with a KMS key before they enter the
state and decrypted inside the next step. The job id is bound in as encryption context, so a sealed
value cannot be replayed into another job.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from reportrelay.errors import ConfigurationError

SEALED_MARKER = "sealed"


class HandleSealer:
    def __init__(self, key_id: str | None, kms_client: Callable[[], Any]) -> None:
        self._key_id = key_id
        self._kms_client = kms_client

    def seal(self, handle: dict[str, Any], fields: frozenset[str], job_id: str) -> dict[str, Any]:
        to_seal = [name for name in fields if name in handle and not _is_sealed(handle[name])]
        if not to_seal:
            return handle
        if not self._key_id:
            raise ConfigurationError(
                "REPORTRELAY_HANDLE_KEY is not set: this provider's session token must be encrypted "
                "before it enters the workflow state"
            )
        sealed = dict(handle)
        for name in to_seal:
            blob = self._kms_client().encrypt(
                KeyId=self._key_id,
                Plaintext=json.dumps(handle[name]).encode(),
                EncryptionContext=_context(job_id, name),
            )["CiphertextBlob"]
            sealed[name] = {SEALED_MARKER: base64.b64encode(blob).decode()}
        return sealed

    def unseal(self, handle: dict[str, Any], job_id: str) -> dict[str, Any]:
        opened = dict(handle)
        for name, value in handle.items():
            if _is_sealed(value):
                plaintext = self._kms_client().decrypt(
                    CiphertextBlob=base64.b64decode(value[SEALED_MARKER]),
                    EncryptionContext=_context(job_id, name),
                )["Plaintext"]
                opened[name] = json.loads(plaintext)
        return opened


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SEALED_MARKER}


def _context(job_id: str, field: str) -> dict[str, str]:
    return {"reportrelay:job": job_id, "reportrelay:field": field}
