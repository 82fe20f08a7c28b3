"""Deployed user vendors: spec files in ``config/vendors/`` (beside the connections file) are checked at
synthesis, a bad one stopping it with one line naming the file and the field, and bundled with the
functions, which find them there in Lambda."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.bundling import PipLocalBundling
from infra.configuration import ConfigError, load_connections
from reportrelay.vendors import USER_SPECS_DIR_NAME, forget_user_specs
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.test_bundling import asset_directory, make_package
from tests.workflow.test_user_vendor_workflow import ACME_SPEC

API_KEY = {"secret": "reportrelay/acme", "key": "api_key"}


@pytest.fixture(autouse=True)
def _no_user_specs_left() -> Iterator[None]:
    forget_user_specs()
    yield
    forget_user_specs()


def config_folder(root: Path, spec: dict[str, Any] | None = ACME_SPEC) -> Path:
    """A deployment's config/: connections.json naming the user's vendor, and vendors/<key>.json."""
    root.mkdir(parents=True, exist_ok=True)
    connection = {
        "provider": "acme_exports",
        "base_url": "https://exports.acme.example",
        "auth": {"type": "header", "header": "X-Api-Key", "value": API_KEY},
    }
    (root / "connections.json").write_text(json.dumps({"connections": {"acme": connection}}), "utf-8")
    if spec is not None:
        (root / "vendors").mkdir(exist_ok=True)
        (root / "vendors" / "acme_exports.json").write_text(json.dumps(spec), encoding="utf-8")
    return root


def test_a_users_vendor_spec_is_checked_and_carried_to_the_bundle(tmp_path: Path) -> None:
    # given config/ with a connection naming a vendor whose spec is in config/vendors/
    config = config_folder(tmp_path / "config")
    # when the deployed connections are loaded, as synthesis does
    deployed = load_connections(config / "connections.json")
    # then the connection's provider is the user's vendor, and its spec is what the bundle will carry
    assert deployed.names == ["acme"]
    assert deployed.vendor_specs == (config / "vendors" / "acme_exports.json",)
    assert deployed.secrets == ("reportrelay/acme",)


def test_a_bad_spec_stops_the_synthesis_naming_the_file_and_the_field(tmp_path: Path) -> None:
    # given a spec in config/vendors/ whose check names a value no job has
    spec = json.loads(json.dumps(ACME_SPEC))
    spec["check"]["path"] = "/exports/{job.number}/state"
    config = config_folder(tmp_path / "config", spec)
    # when the deployed connections are loaded, then it is one line naming the file and the field
    with pytest.raises(ConfigError) as refused:
        load_connections(config / "connections.json")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{config / 'vendors' / 'acme_exports.json'}: check: '{{job.number}}'")


def test_a_connection_naming_a_vendor_with_no_spec_stops_the_synthesis(tmp_path: Path) -> None:
    # given a connection naming acme_exports, and no vendors/ folder
    config = config_folder(tmp_path / "config", spec=None)
    # then loading the deployed connections fails, naming the file and the unknown provider
    with pytest.raises(ConfigError, match=r"connections\.json: unknown provider 'acme_exports'"):
        load_connections(config / "connections.json")


def test_the_bundle_holds_the_specs_beside_the_package_and_its_hash_follows_them(tmp_path: Path) -> None:
    # given a package and a user's spec
    package = make_package(tmp_path / "src")
    spec_file = config_folder(tmp_path / "config") / "vendors" / "acme_exports.json"

    def bundler(*specs: Path) -> PipLocalBundling:
        return PipLocalBundling(package_dir=package, install_dependencies=False, vendor_specs=specs)

    # when the asset is bundled with it
    output = tmp_path / "asset"
    output.mkdir()
    bundler(spec_file).try_bundle(str(output), image=None)  # type: ignore[arg-type]
    # then the spec is beside the package, where the deployed functions look for it
    assert (output / USER_SPECS_DIR_NAME / "acme_exports.json").read_bytes() == spec_file.read_bytes()
    # and the asset's hash changes with the spec, and without it
    first = bundler(spec_file).asset_hash()
    spec_file.write_text(json.dumps({**ACME_SPEC, "title": "Acme Exports 2"}), encoding="utf-8")
    assert len({first, bundler(spec_file).asset_hash(), bundler().asset_hash()}) == 3


@pytest.fixture(scope="module")
def with_user_vendor(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app deploying one connection on a user's vendor, from its own config folder."""
    forget_user_specs()
    root = tmp_path_factory.mktemp("user-vendor")
    config = config_folder(root / "config")
    try:
        return synthesize(
            root / "cdk.out",
            stackName="ReportRelayUserVendor",
            connectionsFile=str(config / "connections.json"),
            schedulesFile=str(root / "no-schedules.json"),
        )
    finally:
        forget_user_specs()


def test_the_synthesized_functions_find_the_users_vendor_in_their_asset(
    with_user_vendor: Synthesized,
) -> None:
    # given the synthesized asset of a deployment with a user's vendor
    asset = asset_directory(with_user_vendor)
    assert (asset / USER_SPECS_DIR_NAME / "acme_exports.json").is_file()
    # when the asset's own package is asked for that provider, as a deployed function would be
    # (in a fresh process: nothing registered, only what the asset holds)
    program = (
        "from reportrelay.providers import provider_class; print(provider_class('acme_exports').spec.title)"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(asset), *sys.path[1:]])}
    found = subprocess.run(
        [sys.executable, "-c", program], env=environment, capture_output=True, text=True, check=False
    )
    # then it is the user's vendor, read from the asset
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "Acme Exports"
