"""The functions' code asset, built on this machine with pip: no Docker, cached between syntheses.

One asset serves every function: the whole ``reportrelay`` package (functions/; the command line,
the local emulation and the simulators are ``reportrelay_cli``, in cli/, and never bundled) plus the
wheels of ``requirements.txt`` for the functions' runtime and architecture (``pip install --platform
... --only-binary=:all:``), so nothing compiles here and nothing built for this machine's CPU lands in
Lambda.

Two caches keep repeated syntheses quick and offline after the first:

- the installed dependencies live in ``build/lambda-deps/<key>``, keyed by requirements.txt, the
  platform and the Python version; pip runs only when one of those changes;
- the asset hash is computed here from exactly the files that are bundled, so CDK skips bundling
  altogether when ``cdk.out`` already holds that asset.

Context ``reportrelay:bundle=false`` leaves the dependencies out (tests): the asset is still a valid
package, just not one that can run in Lambda.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra import constants
from infra.functions import RUNTIME
from reportrelay.names import USER_SPECS_DIR_NAME

_IGNORED_NAMES = ("__pycache__",)
_IGNORED_SUFFIXES = (".pyc", ".pyo")

Runner = Callable[[Sequence[str]], None]


class BundlingError(RuntimeError):
    """pip could not install the functions' dependencies; the message says what to try."""


def package_files(package_dir: Path = constants.PACKAGE_DIR) -> Iterator[Path]:
    """Every file of the package that goes into the asset, in a stable order."""
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if not path.is_file():
            continue
        if any(part in _IGNORED_NAMES for part in relative.parts) or path.suffix in _IGNORED_SUFFIXES:
            continue
        yield path


def pip_command(requirements: Path, target: Path, platform: str, python_version: str) -> list[str]:
    """pip, asked for wheels of the Lambda platform only: no sdists built for this machine."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
        "--platform",
        platform,
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--no-compile",  # .pyc from this interpreter would not match the Lambda runtime's Python
        "--disable-pip-version-check",
        "--quiet",
    ]


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundlingError(
            f"pip could not install the functions' dependencies (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}\n"
            "PyPI must be reachable for the first synthesis after requirements.txt changes; "
            "to synthesize without them, pass -c reportrelay:bundle=false (the asset then cannot run)."
        )


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """``ILocalBundling``: pip-installs the requirements (cached) and copies the package into the asset.

    A plain class, not a dataclass: jsii would try to pass a dataclass to Node as a struct.
    """

    def __init__(
        self,
        *,
        package_dir: Path = constants.PACKAGE_DIR,
        requirements: Path = constants.REQUIREMENTS_FILE,
        platform: str = constants.PIP_PLATFORM,
        python_version: str = constants.PYTHON_VERSION,
        install_dependencies: bool = True,
        cache_dir: Path = constants.BUNDLE_CACHE_DIR,
        run: Runner = _run,
        vendor_specs: Sequence[Path] = (),
    ) -> None:
        self.package_dir = package_dir
        #: The user's vendor specs (config/vendors/*.json), bundled beside the package as
        #: ``USER_SPECS_DIR_NAME``, where ``reportrelay.vendors`` finds them in Lambda.
        self.vendor_specs = tuple(vendor_specs)
        self.requirements = requirements
        self.platform = platform
        self.python_version = python_version
        self.install_dependencies = install_dependencies
        self.cache_dir = cache_dir
        self.run = run

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        output = Path(output_dir)
        if self.install_dependencies:
            shutil.copytree(self.dependencies(), output, dirs_exist_ok=True)
        for source in package_files(self.package_dir):
            target = output / self.package_dir.name / source.relative_to(self.package_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        for spec in self.vendor_specs:
            (output / USER_SPECS_DIR_NAME).mkdir(exist_ok=True)
            shutil.copy2(spec, output / USER_SPECS_DIR_NAME / spec.name)
        return True

    def dependencies(self) -> Path:
        """The installed requirements for the Lambda platform, from the cache or pip."""
        cached = self.cache_dir / self.dependencies_key()
        if cached.is_dir():
            return cached
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".installing-") as scratch:
            target = Path(scratch) / "site-packages"
            self.run(pip_command(self.requirements, target, self.platform, self.python_version))
            shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: not runnable in Lambda
            try:
                target.rename(cached)
            except OSError:
                if not cached.is_dir():  # another synthesis may have won the race; anything else is real
                    raise
        return cached

    def dependencies_key(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.requirements.read_bytes())
        digest.update(f"|{self.platform}|cp{self.python_version}".encode())
        return digest.hexdigest()[:32]

    def asset_hash(self) -> str:
        """A hash of exactly what goes into the asset, so an unchanged asset is never rebuilt."""
        digest = hashlib.sha256()
        digest.update(f"deps={self.dependencies_key() if self.install_dependencies else 'none'}".encode())
        for path in package_files(self.package_dir):
            digest.update(b"\0" + str(path.relative_to(self.package_dir)).encode() + b"\0")
            digest.update(path.read_bytes())
        for spec in self.vendor_specs:
            digest.update(b"\0" + f"{USER_SPECS_DIR_NAME}/{spec.name}".encode() + b"\0")
            digest.update(spec.read_bytes())
        return digest.hexdigest()


def function_code(install_dependencies: bool = True, vendor_specs: Sequence[Path] = ()) -> lambda_.Code:
    """The code asset every function runs, bundled locally; the Docker command is only a fallback.

    ``vendor_specs``: the user's vendor spec files (``config/vendors/*.json``), validated at synthesis by
    ``infra.configuration.load_connections``, bundled beside the package."""
    bundler = PipLocalBundling(install_dependencies=install_dependencies, vendor_specs=vendor_specs)
    package = f"/asset-input/functions/{constants.PACKAGE_DIR.name}"
    steps = [f"cp -r {package} /asset-output/"]
    specs = [
        f"/asset-input/{spec.resolve().relative_to(constants.REPO_ROOT).as_posix()}"
        for spec in vendor_specs
        if spec.resolve().is_relative_to(constants.REPO_ROOT)
    ]
    if specs:  # the Docker fallback sees the repository only; specs outside it are bundled locally only
        folder = f"/asset-output/{USER_SPECS_DIR_NAME}"
        steps.append(f"mkdir -p {folder} && cp {' '.join(specs)} {folder}/")
    if install_dependencies:
        steps.insert(0, "pip install --no-compile -r /asset-input/requirements.txt -t /asset-output")
    return lambda_.Code.from_asset(
        str(constants.REPO_ROOT),
        asset_hash=bundler.asset_hash(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            platform=constants.DOCKER_PLATFORM,
            local=bundler,
            command=["bash", "-c", " && ".join(steps)],
        ),
    )
