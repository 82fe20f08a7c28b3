"""Which hosts are which: the address rules the connection model and the HTTP client share.

Pure standard library, so the connection model can check ``base_url`` and ``redirect_hosts`` when a file
is loaded (in the API, the CLI and at synthesis) without loading the HTTP client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


def address_kind(address: str) -> str | None:
    """The kind of non-public address an IP is ("a loopback address", ...); None for a public IP or a name."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return "a non-public address"
    return None


def _name(host: str) -> str:
    return host.lower().rstrip(".")


def is_loopback_host(host: str) -> bool:
    """``localhost`` (and ``*.localhost``, RFC 6761) or a loopback address: this machine itself."""
    name = _name(host)
    return name == "localhost" or name.endswith(".localhost") or address_kind(name) == "a loopback address"


def is_local_host(host: str) -> bool:
    """True when a host, as written, is a loopback, link-local, private or unspecified address."""
    return is_loopback_host(host) or address_kind(_name(host)) is not None


def parse_redirect_hosts(entries: Iterable[str]) -> frozenset[tuple[str, int | None]]:
    """``host`` (any port) or ``host:port`` entries, as (host, port or None); ValueError names a bad one."""
    parsed = set()
    for entry in entries:
        text = str(entry).strip()
        if not text:
            raise ValueError("an entry is empty: give a host name such as 'files.vendor.example'")
        if text.count(":") > 1 and not text.startswith("["):
            text = f"[{text}]"  # a bare IPv6 address: no port
        try:
            parts = urlsplit(text if "//" in text else f"//{text}")
            port = parts.port
        except ValueError:
            raise ValueError(f"{entry!r} is not a host name or host:port") from None
        if not parts.hostname or parts.path or parts.query or parts.username or parts.password:
            raise ValueError(f"{entry!r} is not a host name or host:port (no scheme, path or user)")
        if parts.scheme and "//" in text:
            raise ValueError(f"{entry!r} is not a host name or host:port (write the host without https://)")
        parsed.add((_name(parts.hostname), port))
    return frozenset(parsed)
