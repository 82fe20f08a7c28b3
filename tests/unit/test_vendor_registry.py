"""The vendor registry (reportrelay.vendors) is the one list: everything that lists vendors follows it."""

from __future__ import annotations

import importlib
import json
import re
from urllib.parse import urlsplit

from infra.constants import REPO_ROOT
from reportrelay.config import Connections, JobRequest
from reportrelay.providers import PROVIDERS, provider_class
from reportrelay.vendors import FIRST_SANDBOX_PORT, VENDORS, last_sandbox_port, sandbox_ports
from reportrelay_cli.sandbox.cli import SANDBOX_PROVIDERS

KEYS = [vendor.key for vendor in VENDORS]
EXAMPLES = REPO_ROOT / "examples"
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_the_provider_registry_is_the_vendor_list() -> None:
    # given the vendor registry, then the provider registry holds exactly its vendors, in its order
    assert list(PROVIDERS) == KEYS
    # and each names an adapter that declares that key
    for vendor in VENDORS:
        assert provider_class(vendor.key).key == vendor.key


def test_the_sandbox_serves_each_vendor_on_consecutive_ports_then_the_issuer() -> None:
    # given the sandbox's list of simulators
    # then it is the registry's vendors, from the first port, each taking as many ports as it serves
    assert [provider.key for provider in SANDBOX_PROVIDERS] == KEYS
    port = FIRST_SANDBOX_PORT
    for provider, vendor in zip(SANDBOX_PROVIDERS, VENDORS, strict=True):
        assert provider.port == port == sandbox_ports()[vendor.key]
        assert provider.ports == vendor.ports
        port += vendor.ports
    assert last_sandbox_port() == port  # the OpenID Connect issuer's
    # and each simulator factory is importable by the name the registry gives (the Lambda never imports it)
    for vendor in VENDORS:
        module, _, function = vendor.simulator.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_each_vendor_has_an_example_on_its_sandbox_connection_that_its_provider_accepts() -> None:
    # given the examples the demo runs
    connections = Connections.from_file(EXAMPLES / "connections.json")
    document = json.loads((EXAMPLES / "connections.json").read_text(encoding="utf-8"))
    # then there is one sandbox connection per vendor, aimed at its simulator's port, and no other
    assert sorted(document["connections"]) == sorted(vendor.sandbox_connection for vendor in VENDORS)
    for vendor in VENDORS:
        connection = connections.get(vendor.sandbox_connection)
        assert connection.provider == vendor.key
        assert urlsplit(connection.base_url).port == sandbox_ports()[vendor.key], vendor.key
        cls = provider_class(vendor.key)
        cls.parse_settings(connection)
        # and the vendor's example request runs on that connection and passes its provider's checks
        request = JobRequest.model_validate(
            json.loads((EXAMPLES / vendor.example_request).read_text(encoding="utf-8"))
        )
        assert request.connection == vendor.sandbox_connection
        cls.validate(request)


def test_the_readme_lists_every_vendor_with_its_page_and_example() -> None:
    # given the README's worked-example table (one row per provider)
    lines = README.splitlines()
    header = lines.index("| provider | connection extras | `report` | `format` |")
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(re.match(r"\| `([a-z0-9_]+)` \|", line).group(1))  # type: ignore[union-attr]
    # then its rows are the registry's vendors, in its order
    assert rows == KEYS
    # and the connection settings' `provider` row names each, and each vendor's page exists and is linked
    (provider_row,) = [line for line in lines if line.startswith("| `provider` |")]
    assert [key for key in KEYS if f"`{key}`" not in provider_row] == []
    for vendor in VENDORS:
        assert (REPO_ROOT / vendor.docs_page).is_file(), vendor.docs_page
        assert f"]({vendor.docs_page})" in README, vendor.docs_page
