"""The vendor registry: every vendor reportrelay ships, once, and the vendor specs a user adds.

Everything that lists vendors is derived from ``VENDORS``: the provider registry
(``reportrelay.providers.PROVIDERS``), the sandbox's simulators and their ports
(``reportrelay_cli.sandbox.cli``), the demo's examples (``examples/<key>-report.json`` on the
connection ``sandbox-<key>``), the fault matrix's kits (``tests/faults/kits.py``), the README's
provider table and ``docs/reliability.md``'s matrix (both checked by tests against this list). Adding a
vendor is one entry here, plus what that vendor needs of its own (its spec or module, its simulator,
example, kit and docs page), each of which a test asks for by name when it is missing.

This module is imported by the Lambda functions, so it names the simulators by dotted path and never
imports them: the sandbox is ``reportrelay_cli``'s, which is not in the Lambda package.

User vendors: a provider spec file ``vendors/<key>.json`` in the folder of the connections file (locally
``reportrelay run/validate --connections F``; deployed, ``config/vendors/`` next to
``config/connections.json``, bundled with the functions as ``USER_SPECS_DIR_NAME``), registered with
``add_user_specs`` when the connections are read (``Connections.from_file``, and at synthesis), so a
connection may name it as its ``provider``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from reportrelay.errors import ConfigurationError
from reportrelay.names import USER_SPECS_DIR_NAME

#: The sandbox's first port: the vendors' simulators take consecutive ports from here, in registry order,
#: and the OpenID Connect issuer the next one after them.
FIRST_SANDBOX_PORT = 8701
SPEC_PREFIX = "spec:"
#: The folder of user vendor specs, next to a connections file.
USER_SPECS_FOLDER = "vendors"
#: Where the deployed functions find ``config/vendors/``: a folder beside the ``reportrelay`` package in
#: the Lambda asset (a name no ``import`` can reach).
BUNDLED_USER_SPECS = Path(__file__).resolve().parent.parent / USER_SPECS_DIR_NAME


@dataclass(frozen=True)
class Vendor:
    """One shipped vendor.

    ``provider``: ``"module:Class"`` of a hand-written adapter, or ``"spec:<name>"`` for a provider spec
    ``reportrelay/providers/specs/<name>.json``. ``simulator``: ``"module:function"`` of the sandbox's
    factory (``sandbox_simulator(*, port, faults, secret, generation_seconds, token_lifetime_seconds,
    fail_reports)``), imported by the sandbox only. ``ports``: how many consecutive ports the simulator
    serves in the sandbox (the API, then e.g. a file host on another origin).
    """

    key: str
    title: str
    provider: str
    simulator: str
    ports: int = 1

    @property
    def sandbox_connection(self) -> str:
        """The connection in ``examples/connections.json`` that points at this vendor's simulator."""
        return f"sandbox-{self.key}"

    @property
    def example_request(self) -> str:
        """The demo's request for this vendor, in ``examples/``."""
        return f"{self.key}-report.json"

    @property
    def docs_page(self) -> str:
        return f"docs/providers/{self.key}.md"


VENDORS: tuple[Vendor, ...] = (
    Vendor(
        "devexpress", "DevExpress", "spec:devexpress",
        "reportrelay_cli.sandbox.devexpress:sandbox_simulator",
    ),
    Vendor(
        "torus", "Torus", "spec:torus",
        "reportrelay_cli.sandbox.torus:sandbox_simulator",
    ),
    Vendor(
        "metric_insights", "Metric Insights", "spec:metric_insights",
        "reportrelay_cli.sandbox.metric_insights:sandbox_simulator",
    ),
    Vendor(
        "myreports", "MyReports", "spec:myreports",
        "reportrelay_cli.sandbox.myreports:sandbox_simulator",
    ),
    Vendor(
        "clinical_one", "Clinical One", "spec:clinical_one",
        "reportrelay_cli.sandbox.clinical_one:sandbox_simulator",
    ),
    Vendor(
        "amazon_ads", "Amazon Ads", "spec:amazon_ads",
        "reportrelay_cli.sandbox.amazon_ads:sandbox_simulator", ports=2,
    ),
)  # fmt: skip
BY_KEY: dict[str, Vendor] = {vendor.key: vendor for vendor in VENDORS}


def sandbox_ports() -> dict[str, int]:
    """Each vendor's first sandbox port (before ``--port-offset``): consecutive, in registry order."""
    ports, port = {}, FIRST_SANDBOX_PORT
    for vendor in VENDORS:
        ports[vendor.key] = port
        port += vendor.ports
    return ports


def last_sandbox_port() -> int:
    """The sandbox's last port: the OpenID Connect issuer's, after every vendor's."""
    return FIRST_SANDBOX_PORT + sum(vendor.ports for vendor in VENDORS)


# --------------------------------------------------------------------------------------------------
# User vendors: spec files beside the connections


_user_specs: dict[str, Path] = {}
_lock = threading.Lock()


def user_spec_files(folder: Path) -> list[Path]:
    """The spec files of the ``vendors/`` folder beside a connections file (none when there is none)."""
    vendors = folder / USER_SPECS_FOLDER
    return sorted(vendors.glob("*.json")) if vendors.is_dir() else []


def add_user_specs(files: list[Path]) -> list[str]:
    """Register user spec files by their key (the file name without ``.json``); their keys.

    Each file is read and checked now, so a bad spec is a one-line ConfigurationError naming the file and
    the field before any job runs. A key may not be a shipped vendor's. A key registered again (the
    connections read again) takes the file given last.
    """
    from reportrelay.providers.spec import load_spec  # the spec model needs pydantic; only here

    keys = []
    for path in files:
        spec = load_spec(path, str(path))
        if spec.key != path.stem:
            raise ConfigurationError(f"{path}: key: '{spec.key}' must be the file's name ('{path.stem}')")
        if spec.key in BY_KEY:
            raise ConfigurationError(
                f"{path}: key: '{spec.key}' is a vendor reportrelay ships; give yours another name"
            )
        with _lock:
            _user_specs[spec.key] = path.resolve()
        keys.append(spec.key)
    return keys


def user_spec(key: str) -> Path | None:
    """The spec file registered for ``key``, or the deployed one bundled beside the package."""
    with _lock:
        found = _user_specs.get(key)
    if found is not None:
        return found
    bundled = BUNDLED_USER_SPECS / f"{key}.json"
    return bundled if key.isidentifier() and bundled.is_file() else None


def user_spec_keys() -> list[str]:
    with _lock:
        keys = set(_user_specs)
    if BUNDLED_USER_SPECS.is_dir():
        keys |= {path.stem for path in BUNDLED_USER_SPECS.glob("*.json")}
    return sorted(keys)


def forget_user_specs() -> None:
    """Drop the registered user specs (tests)."""
    with _lock:
        _user_specs.clear()
