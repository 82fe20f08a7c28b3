"""The names the stack and the functions share live once, in reportrelay.names, with no dependencies.

Every environment variable the stack sets on a function is one of those names and is read by the function
package, so a renamed or dropped variable cannot leave a function reading nothing; and infra takes names
from the runtime only through that module (infra.configuration, which validates the user's files at
synthesis, is the one module that needs the runtime's models).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from infra.constants import REPO_ROOT
from reportrelay import names
from tests.infra.conftest import Synthesized

FUNCTIONS_PACKAGE = REPO_ROOT / "functions" / "reportrelay"
#: The one infra module that imports the runtime beyond its names: it validates connections, access and
#: vendor specs at synthesis with the very models the functions use.
VALIDATES_AT_SYNTH = "configuration.py"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    found += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    return found


def _environment_names() -> dict[str, str]:
    return {
        value: constant
        for constant, value in vars(names).items()
        if constant.endswith("_ENV") and isinstance(value, str)
    }


def test_the_names_module_needs_nothing_but_the_standard_library() -> None:
    # given reportrelay.names, then everything it imports is the standard library's
    imported = _imports(FUNCTIONS_PACKAGE / "names.py")
    assert imported and all(name.split(".")[0] in sys.stdlib_module_names for name in imported), imported


def test_infra_takes_runtime_names_from_the_names_module_only() -> None:
    # given every module of the CDK app but the one validating the user's files at synthesis
    for module in sorted((REPO_ROOT / "infra").glob("*.py")):
        if module.name == VALIDATES_AT_SYNTH:
            continue
        runtime = [name for name in _imports(module) if name.split(".")[0] == "reportrelay"]
        # then what it takes from the runtime is reportrelay.names
        assert set(runtime) <= {"reportrelay", "reportrelay.names"}, (module.name, runtime)


def test_every_variable_the_stack_sets_on_a_function_is_a_shared_name_the_functions_read(
    synthesized: Synthesized,
) -> None:
    # given the environment of every function in the synthesized stack
    set_by_stack = {
        variable
        for resource in synthesized.template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        for variable in resource["Properties"].get("Environment", {}).get("Variables", {})
        if variable.startswith("REPORTRELAY_")
    }
    shared = _environment_names()
    runtime_source = "\n".join(
        path.read_text(encoding="utf-8")
        for path in FUNCTIONS_PACKAGE.rglob("*.py")
        if path.name != "names.py"
    )
    # then each is defined in reportrelay.names
    assert set_by_stack and set_by_stack <= set(shared), sorted(set_by_stack - set(shared))
    # and the function package reads it by that name
    unread = [
        variable
        for variable in sorted(set_by_stack)
        if not re.search(rf"\b{shared[variable]}\b", runtime_source)
    ]
    assert not unread, f"set by the stack, never read by a function: {unread}"
