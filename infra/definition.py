"""The state machine definition as deployed, read back out of a synthesized template.

Tests run *this* text (not the file in statemachines/) so that what is tested is what CloudFormation
deploys. The placeholders ``${SubmitFunctionArn}``, ``${CheckFunctionArn}``, ``${FetchFunctionArn}``,
``${ConcludeFunctionArn}`` and ``${EventBusName}`` come back as placeholders, whichever way the template
carries them:

- a plain ``DefinitionString`` with ``DefinitionSubstitutions`` (what this app synthesizes today);
- ``{"Fn::Join": ["", [...]]}`` with ``Fn::GetAtt``/``Ref`` parts (CDK's output for tokens in a string);
- ``{"Fn::Sub": "..."}`` or ``{"Fn::Sub": ["...", {...}]}``.

A reference is mapped back to its placeholder by what it points at: a Lambda function by its handler
(``reportrelay.handlers.submit.handler`` -> ``SubmitFunctionArn``), the event bus by its type. The
container task's placeholders (``${FetchClusterArn}``, ``${FetchSubnets}``, ...) stay placeholders: what
they name (a cluster, subnets) only a deployment has, and a local run fills them with its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from infra import constants

STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"
_HANDLER_PLACEHOLDERS = {
    "reportrelay.handlers.submit.handler": constants.PLACEHOLDER_SUBMIT,
    "reportrelay.handlers.check.handler": constants.PLACEHOLDER_CHECK,
    "reportrelay.handlers.fetch.handler": constants.PLACEHOLDER_FETCH,
    "reportrelay.handlers.conclude.handler": constants.PLACEHOLDER_CONCLUDE,
    "reportrelay.handlers.wait_for_slot.handler": constants.PLACEHOLDER_WAIT_FOR_SLOT,
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")

Template = Mapping[str, Any]


class DefinitionError(ValueError):
    """The template's state machine definition holds something this module cannot map back."""


def state_machine(template: Template) -> tuple[str, Mapping[str, Any]]:
    """The logical id and properties of the template's one state machine."""
    found = [
        (logical_id, resource.get("Properties", {}))
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == STATE_MACHINE_TYPE
    ]
    if len(found) != 1:
        raise DefinitionError(f"expected one {STATE_MACHINE_TYPE} in the template, found {len(found)}")
    return found[0]


def placeholder_resources(template: Template) -> dict[str, str]:
    """Placeholder name -> logical id of the resource it stands for (the functions and the bus)."""
    resources = template.get("Resources", {})
    mapping: dict[str, str] = {}
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind == "AWS::Lambda::Function":
            placeholder = _HANDLER_PLACEHOLDERS.get(resource.get("Properties", {}).get("Handler"))
            if placeholder:
                mapping[placeholder] = logical_id
        elif kind == "AWS::Events::EventBus":
            mapping[constants.PLACEHOLDER_EVENT_BUS] = logical_id
    return mapping


def definition_from_template(template: Template) -> str:
    """The deployed ASL text with ``${...}`` placeholders for the function ARNs and the bus name."""
    _, properties = state_machine(template)
    definition = properties.get("DefinitionString")
    if definition is None:
        raise DefinitionError("the state machine has no DefinitionString (an S3 definition is not supported)")
    by_resource = {logical_id: name for name, logical_id in placeholder_resources(template).items()}
    substitutions = {
        name: _placeholder_for(value, by_resource)
        for name, value in (properties.get("DefinitionSubstitutions") or {}).items()
        # a literal value, or the container task's network: the placeholder keeps its own name
        if not isinstance(value, str) and name not in constants.CONTAINER_PLACEHOLDERS
    }
    text = _render(definition, by_resource)
    # A substitution whose name differs from the placeholder it stands for is renamed to that placeholder.
    for name, placeholder in substitutions.items():
        if name != placeholder:
            text = text.replace("${" + name + "}", "${" + placeholder + "}")
    return text


def _render(value: Any, by_resource: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_join_part(part, by_resource) for part in parts)
    if isinstance(value, Mapping) and set(value) == {"Fn::Sub"}:
        return _render_sub(value["Fn::Sub"], by_resource)
    raise DefinitionError(f"unsupported DefinitionString form: {str(value)[:200]}")


def _join_part(part: Any, by_resource: Mapping[str, str]) -> str:
    if isinstance(part, str):
        return part
    return "${" + _placeholder_for(part, by_resource) + "}"


def _render_sub(sub: Any, by_resource: Mapping[str, str]) -> str:
    text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
    names = {name: _placeholder_for(value, by_resource) for name, value in variables.items()}

    def restore(match: re.Match[str]) -> str:
        reference = match.group(1)
        if reference in names:
            return "${" + names[reference] + "}"
        logical_id = reference.partition(".")[0]
        if logical_id in by_resource:
            return "${" + by_resource[logical_id] + "}"
        if reference in constants.PLACEHOLDERS:
            return match.group(0)
        raise DefinitionError(f"${{{reference}}} in the definition refers to nothing this module maps")

    return _SUB_VARIABLE.sub(restore, text)


def _placeholder_for(reference: Any, by_resource: Mapping[str, str]) -> str:
    """``{"Fn::GetAtt": [id, "Arn"]}`` or ``{"Ref": id}`` -> the placeholder of resource ``id``."""
    logical_id = None
    if isinstance(reference, Mapping) and "Fn::GetAtt" in reference:
        attribute = reference["Fn::GetAtt"]
        logical_id = attribute[0] if isinstance(attribute, list) else str(attribute).split(".", 1)[0]
    elif isinstance(reference, Mapping) and "Ref" in reference:
        logical_id = reference["Ref"]
    if logical_id not in by_resource:
        raise DefinitionError(f"the definition refers to {reference}, which is no step function or event bus")
    return by_resource[logical_id]


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.definition cdk.out/ReportRelay.template.json``: print the deployed ASL."""
    import json
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m infra.definition <synthesized template.json>", file=sys.stderr)
        return 2
    print(definition_from_template(json.loads(Path(args[0]).read_text(encoding="utf-8"))), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
