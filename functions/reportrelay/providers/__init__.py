"""The provider registry: provider key -> adapter class, and building an adapter for a connection."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import requests

from reportrelay.auth import build_auth
from reportrelay.claims import ClaimStore
from reportrelay.config import Connection, SecretResolver
from reportrelay.errors import BadRequest, ConfigurationError
from reportrelay.httpclient import ProviderHttp
from reportrelay.providers.base import Provider
from reportrelay.tls import tls_verification
from reportrelay.vendors import SPEC_PREFIX, VENDORS, user_spec, user_spec_keys

#: provider key -> "module:class", or "spec:<name>" for a vendor described by the provider spec
#: reportrelay/providers/specs/<name>.json (run by reportrelay.providers.declarative); derived from the
#: vendor registry (reportrelay.vendors). Modules are imported on first use so a function loads only its own.
PROVIDERS: dict[str, str] = {vendor.key: vendor.provider for vendor in VENDORS}


def provider_class(key: str) -> type[Provider]:
    """The adapter class of a shipped vendor, or of a user's vendor spec (``reportrelay.vendors``)."""
    target = PROVIDERS.get(key)
    if target is None:
        spec_file = user_spec(key)
        if spec_file is None:
            known = ", ".join(sorted({*PROVIDERS, *user_spec_keys()}))
            raise ConfigurationError(f"unknown provider '{key}' (available: {known})")
        from reportrelay.providers.declarative import user_provider

        cls: type[Provider] = user_provider(spec_file)
    elif target.startswith(SPEC_PREFIX):
        from reportrelay.providers.declarative import packaged_provider

        cls = packaged_provider(target.removeprefix(SPEC_PREFIX))
    else:
        module_name, _, class_name = target.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
    assert cls.key == key, f"{target or key} declares key {cls.key!r}"
    return cls


def check_connections(connections: list[Connection]) -> None:
    """Fail early on connections whose provider or provider settings are wrong."""
    for connection in connections:
        provider_class(connection.provider).parse_settings(connection)


def open_provider(
    connection: Connection,
    secrets: SecretResolver,
    claims: ClaimStore | None = None,
    *,
    ends_at: float | None = None,
    adapter: type[Provider] | None = None,
    session: requests.Session | None = None,
    clock: Callable[[], float] | None = None,
) -> Provider:
    """An adapter for the connection, signed in with its (resolved) credentials, and the claim store;
    ``ends_at`` is when the calling function will be stopped (``time.monotonic()``), if known.
    ``adapter`` replaces the connection's provider (``reportrelay vendor check`` tries a spec with it),
    ``session`` the HTTP session its calls and sign-ins go through, ``clock`` its wall clock."""
    cls = adapter or provider_class(connection.provider)
    session = session or requests.Session()
    verify = tls_verification(connection, secrets)
    http = ProviderHttp.for_connection(
        connection,
        build_auth(connection, secrets, session, verify=verify),
        session=session,
        reauth_statuses=cls.reauth_statuses,
        verify=verify,
        ends_at=ends_at,
    )
    provider = cls(connection, http)
    if claims is not None:
        provider.claims = claims
    if clock is not None:
        provider.clock = clock
    return provider


__all__ = ["PROVIDERS", "BadRequest", "Provider", "check_connections", "open_provider", "provider_class"]
