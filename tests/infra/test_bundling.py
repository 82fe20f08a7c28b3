"""The functions' asset: the reportrelay package plus Lambda-platform wheels, built without Docker."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from aws_cdk import DockerImage

from infra import constants
from infra.bundling import PipLocalBundling, package_files, pip_command
from tests.infra.conftest import Synthesized


def asset_keys(synthesized: Synthesized) -> set[str]:
    """The code of reportrelay's functions (not CDK's own custom resource handlers, such as the one that
    empties a VPC's default security group)."""
    return {
        function["Properties"]["Code"]["S3Key"]
        for function in synthesized.resources("AWS::Lambda::Function").values()
        if function["Properties"].get("Handler", "").startswith("reportrelay.")
    }


def asset_directory(synthesized: Synthesized) -> Path:
    """The staged asset in the cloud assembly: ``asset.<hash>`` for the code's ``<hash>.zip``."""
    (key,) = asset_keys(synthesized)
    return synthesized.directory / f"asset.{key.removesuffix('.zip')}"


def make_package(root: Path) -> Path:
    package = root / "reportrelay"
    for name in (
        "__init__.py",
        "handlers/__init__.py",
        "handlers/submit.py",
    ):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(f"# {name}\n", encoding="utf-8")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    return package


class FakePip:
    """Stands in for pip: records each command and 'installs' one module into the target."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> None:
        self.commands.append(list(command))
        target = Path(command[command.index("--target") + 1])
        (target / "pydantic").mkdir(parents=True)
        (target / "pydantic" / "__init__.py").write_text("", encoding="utf-8")
        (target / "bin").mkdir()


def test_all_functions_share_one_asset_holding_the_package(synthesized: Synthesized) -> None:
    # given the synthesized functions
    # then they share one asset, which holds every handler of the package
    assert len(asset_keys(synthesized)) == 1
    handlers = asset_directory(synthesized) / "reportrelay" / "handlers"
    for handler in ("submit", "check", "fetch", "conclude", "start_scheduled"):
        assert (handlers / f"{handler}.py").is_file()


#: What runs on a person's machine only: never in a Lambda zip, nor imported by what is.
LOCAL_ONLY = ("reportrelay_cli", "moto")


def test_the_asset_is_the_whole_runtime_package_and_no_local_code(synthesized: Synthesized) -> None:
    # given the one asset every function (and the Fetch container) runs
    asset = asset_directory(synthesized)
    package = asset / "reportrelay"
    bundled = sorted(str(path.relative_to(package)) for path in package.rglob("*") if path.is_file())
    # then it holds the runtime package file for file, with no exclusion list
    assert bundled == sorted(str(path.relative_to(constants.PACKAGE_DIR)) for path in package_files())
    # and no command line, local emulation, simulator or bytecode
    assert not (asset / "reportrelay_cli").exists()
    assert not [
        name for name in bundled if name.split("/")[0] in ("local", "sandbox", "cli.py", "jobscli.py")
    ]
    assert not list(package.rglob("__pycache__"))


def test_no_bundled_module_imports_local_code(synthesized: Synthesized) -> None:
    # given every module in the asset
    excluded = LOCAL_ONLY
    for module in (asset_directory(synthesized) / "reportrelay").rglob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = [
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
            if isinstance(node, ast.Import) or node.module
        ]
        # then none imports the command line, the local emulation, the simulators or moto
        assert not [name for name in imported if name and name.startswith(excluded)], module


def test_pip_is_asked_for_lambda_wheels_only() -> None:
    command = pip_command(Path("requirements.txt"), Path("/out"), "manylinux2014_aarch64", "3.12")
    joined = " ".join(command)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--only-binary=:all:" in command
    assert "--python-version 3.12" in joined
    assert "--implementation cp" in joined
    assert "--target /out" in joined
    assert constants.PIP_PLATFORM.endswith("aarch64") and constants.LAMBDA_ARCHITECTURE_NAME == "arm64"


def test_bundling_installs_once_then_reuses_the_installed_dependencies(tmp_path: Path) -> None:
    # given a package, its requirements and an empty dependency cache
    package = make_package(tmp_path / "src")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic==2.14.3\n", encoding="utf-8")
    pip = FakePip()
    bundler = PipLocalBundling(
        package_dir=package, requirements=requirements, cache_dir=tmp_path / "cache", run=pip
    )
    image = DockerImage.from_registry("unused")

    # when two assets are bundled
    for output in ("one", "two"):
        (tmp_path / output).mkdir()
        assert bundler.try_bundle(str(tmp_path / output), image=image) is True

    # then pip ran once, and each asset holds the dependencies and the whole package, minus bytecode
    assert len(pip.commands) == 1
    for output in ("one", "two"):
        bundled = tmp_path / output
        assert (bundled / "pydantic" / "__init__.py").is_file()
        assert not (bundled / "bin").exists()
        assert sorted(str(p.relative_to(bundled)) for p in (bundled / "reportrelay").rglob("*.py")) == [
            "reportrelay/__init__.py",
            "reportrelay/handlers/__init__.py",
            "reportrelay/handlers/submit.py",
        ]


def test_the_asset_hash_follows_the_package_the_requirements_and_the_mode(tmp_path: Path) -> None:
    package = make_package(tmp_path / "src")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pydantic==2.14.3\n", encoding="utf-8")

    def asset_hash(install: bool = True) -> str:
        return PipLocalBundling(
            package_dir=package, requirements=requirements, install_dependencies=install
        ).asset_hash()

    first = asset_hash()
    # bytecode is never part of it
    (package / "__pycache__" / "y.cpython-311.pyc").write_bytes(b"\1")
    assert asset_hash() == first
    # a change to the package, to the requirements, or skipping pip gives another asset
    (package / "handlers" / "submit.py").write_text("# changed\n", encoding="utf-8")
    second = asset_hash()
    requirements.write_text("pydantic==2.14.4\n", encoding="utf-8")
    third = asset_hash()
    assert len({first, second, third, asset_hash(install=False)}) == 4


def test_a_failing_pip_says_how_to_synthesize_without_it(tmp_path: Path) -> None:
    package = make_package(tmp_path / "src")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-reportrelay==0\n", encoding="utf-8")

    def offline_pip(command: Sequence[str]) -> None:
        from infra.bundling import BundlingError

        raise BundlingError("pip could not install ...; pass -c reportrelay:bundle=false")

    bundler = PipLocalBundling(
        package_dir=package, requirements=requirements, cache_dir=tmp_path, run=offline_pip
    )
    with pytest.raises(Exception, match="reportrelay:bundle=false"):
        bundler.try_bundle(str(tmp_path / "out"), image=DockerImage.from_registry("unused"))
    # and no half-installed cache entry is left to be mistaken for a good one
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith((".", "src", "requirements"))] == []


def test_package_files_are_the_whole_runtime_package_without_bytecode() -> None:
    files = [str(path.relative_to(constants.PACKAGE_DIR)) for path in package_files()]
    assert "handlers/submit.py" in files
    assert "handlers/start_scheduled.py" in files
    assert not [f for f in files if f.endswith(".pyc")]
    assert json.dumps(files)  # stable, serialisable order
