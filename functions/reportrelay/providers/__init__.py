"""The provider registry: provider key -> adapter class, and building an adapter for a connection."""

from __future__ import annotations

import requests

from reportrelay.auth import build_auth
from reportrelay.config import Connection, SecretResolver
from reportrelay.errors import BadRequest, ConfigurationError
from reportrelay.httpclient import ProviderHttp
from reportrelay.providers.base import Provider
from reportrelay.providers.devexpress import DevExpress

PROVIDERS: dict[str, type[Provider]] = {cls.key: cls for cls in (DevExpress,)}


def provider_class(key: str) -> type[Provider]:
    try:
        return PROVIDERS[key]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigurationError(f"unknown provider '{key}' (available: {known})") from None


def check_connections(connections: list[Connection]) -> None:
    """Fail early on connections whose provider or provider settings are wrong."""
    for connection in connections:
        provider_class(connection.provider).parse_settings(connection)


def open_provider(connection: Connection, secrets: SecretResolver) -> Provider:
    """An adapter for the connection, signed in with its (resolved) credentials."""
    cls = provider_class(connection.provider)
    session = requests.Session()
    http = ProviderHttp(
        connection.base_url,
        build_auth(connection, secrets, session),
        session=session,
        timeout=(connection.timeouts.connect_seconds, connection.timeouts.read_seconds),
        verify=connection.verify_tls,
    )
    return cls(connection, http)


__all__ = ["PROVIDERS", "BadRequest", "Provider", "check_connections", "open_provider", "provider_class"]
