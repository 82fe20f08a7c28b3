"""Would the function's role allow this call? Recorded calls checked against the synthesized policies.

Three parts, each explicit:

- ``OPERATIONS``: every AWS operation the functions' code makes, as the IAM action(s) and resource ARN(s)
  AWS authorizes it as (S3's multipart calls are ``s3:PutObject``, ``HeadObject`` is ``s3:GetObject``, a
  query on an index is authorized on the index, ...), with the request's condition keys. An operation
  not in the table fails the check: a new AWS call is added here knowingly.
- ``LocalResources``: the template's logical ids as the local deployment's resources
  (``reportrelay_cli.local.aws``), so its CloudFormation expressions resolve to the ARNs the calls name.
  Functions are matched by handler; every other resource by the environment variable that points a
  function at it, which CDK and the local runner both set (``REPORTRELAY_BUCKET`` is the reports
  bucket, ``REPORTRELAY_JOBS_TABLE`` the job table, and so on). A logical id neither names (a log
  group) resolves to nothing and so matches no call.
- ``Policies``: each function's role's statements, resolved; a request is allowed when a statement's
  action and resource patterns match it (IAM's ``*`` and ``?``) and its conditions hold. Only identity
  policies are read: the template has no Deny in them (``tests.infra.policies`` asserts it), and resource
  policies (the bucket's TLS-only policy) and SSE-KMS on the bucket are out of scope.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.kms.utils import _deserialize_ciphertext_blob

from reportrelay_cli.local import aws as local_aws
from tests.iam.recording import Call
from tests.infra.conftest import Synthesized
from tests.infra.policies import function_role, role_grants

ACCOUNT = DEFAULT_ACCOUNT_ID
REGION = local_aws.REGION


@dataclass(frozen=True)
class Request:
    """What IAM authorizes: one action on one resource, with the request's condition keys."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


class UnknownOperation(AssertionError):
    """A call the table does not map: add it to ``OPERATIONS`` with the action and resource AWS checks."""


# ---- the operations the code makes, as IAM sees them

Resolve = Callable[[dict[str, Any], "LocalLookups"], list[Request]]


@dataclass(frozen=True)
class LocalLookups:
    """What an ARN needs beyond the call's parameters: a secret's full ARN (from its name)."""

    secret_arn: Callable[[str], str]


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def _object(action: str, versioned_action: str | None = None) -> Resolve:
    def resolve(params: dict[str, Any], _: LocalLookups) -> list[Request]:
        chosen = versioned_action if versioned_action and params.get("VersionId") else action
        return [Request(chosen, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]

    return resolve


def _both(*resolvers: Resolve) -> Resolve:
    """An operation IAM authorizes only with several actions (GetObjectAttributes needs GetObject too)."""
    return lambda params, lookups: [request for each in resolvers for request in each(params, lookups)]


def _table(action: str) -> Resolve:
    return lambda params, _: [Request(action, _arn("dynamodb", f"table/{params['TableName']}"))]


def _query(params: dict[str, Any], _: LocalLookups) -> list[Request]:
    index = f"/index/{params['IndexName']}" if params.get("IndexName") else ""
    return [Request("dynamodb:Query", _arn("dynamodb", f"table/{params['TableName']}{index}"))]


_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _transact_write(params: dict[str, Any], _: LocalLookups) -> list[Request]:
    """Each item of the transaction is authorized as its own write."""
    requests = []
    for item in params["TransactItems"]:
        ((kind, body),) = item.items()
        requests.append(Request(_TRANSACT_ACTIONS[kind], _arn("dynamodb", f"table/{body['TableName']}")))
    return requests


def _key(action: str) -> Resolve:
    """On the key named by KeyId, else (Decrypt) the key the ciphertext names, as KMS reads it."""

    def resolve(params: dict[str, Any], _: LocalLookups) -> list[Request]:
        key = params.get("KeyId") or _deserialize_ciphertext_blob(params["CiphertextBlob"]).key_id
        arn = key if key.startswith("arn:") else _arn("kms", f"key/{key}")
        context = tuple(
            (f"kms:EncryptionContext:{name}", value)
            for name, value in sorted((params.get("EncryptionContext") or {}).items())
        )
        return [Request(action, arn, context)]

    return resolve


def _secret(action: str) -> Resolve:
    return lambda params, lookups: [Request(action, lookups.secret_arn(params["SecretId"]))]


def _parameter_arn(name: str) -> str:
    return name if name.startswith("arn:") else _arn("ssm", f"parameter/{name.strip('/')}")


def _parameter(params: dict[str, Any], _: LocalLookups) -> list[Request]:
    return [Request("ssm:GetParameter", _parameter_arn(params["Name"]))]


def _parameters_by_path(params: dict[str, Any], _: LocalLookups) -> list[Request]:
    """Authorized on the path the request names (the deployed connections' path, infra.connections)."""
    return [Request("ssm:GetParametersByPath", _parameter_arn(params["Path"]))]


def _invoke(params: dict[str, Any], _: LocalLookups) -> list[Request]:
    name = params["FunctionName"]
    arn = name if name.startswith("arn:") else _arn("lambda", f"function:{name}")
    return [Request("lambda:InvokeFunction", arn)]


def _put_events(params: dict[str, Any], _: LocalLookups) -> list[Request]:
    requests = []
    for entry in params["Entries"]:
        bus = entry.get("EventBusName") or "default"
        arn = bus if bus.startswith("arn:") else _arn("events", f"event-bus/{bus}")
        requests.append(Request("events:PutEvents", arn))
    return requests


def _named_arn(action: str, parameter: str) -> Resolve:
    return lambda params, _: [Request(action, params[parameter])]


def _iam_entity(action: str, kind: str, parameter: str) -> Resolve:
    return lambda params, _: [Request(action, f"arn:aws:iam::{ACCOUNT}:{kind}/{params[parameter]}")]


#: (botocore service name, operation) -> the requests IAM authorizes. Found by reading every boto3 call of
#: the package (reportrelay.transfer, jobs, claims, slots, sealing, runtime, api, handlers).
OPERATIONS: dict[tuple[str, str], Resolve] = {
    ("s3", "CreateMultipartUpload"): _object("s3:PutObject"),
    ("s3", "UploadPart"): _object("s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): _object("s3:PutObject"),
    ("s3", "AbortMultipartUpload"): _object("s3:AbortMultipartUpload"),
    ("s3", "ListParts"): _object("s3:ListMultipartUploadParts"),
    ("s3", "HeadObject"): _object("s3:GetObject", "s3:GetObjectVersion"),
    ("s3", "GetObjectAttributes"): _both(
        _object("s3:GetObject", "s3:GetObjectVersion"),
        _object("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    ),
    ("s3", "GetObject"): _object("s3:GetObject", "s3:GetObjectVersion"),  # the API's presigned URLs
    ("dynamodb", "GetItem"): _table("dynamodb:GetItem"),
    ("dynamodb", "PutItem"): _table("dynamodb:PutItem"),
    ("dynamodb", "UpdateItem"): _table("dynamodb:UpdateItem"),
    ("dynamodb", "DeleteItem"): _table("dynamodb:DeleteItem"),
    ("dynamodb", "Query"): _query,
    ("dynamodb", "TransactWriteItems"): _transact_write,
    ("kms", "Encrypt"): _key("kms:Encrypt"),
    ("kms", "Decrypt"): _key("kms:Decrypt"),
    ("secretsmanager", "GetSecretValue"): _secret("secretsmanager:GetSecretValue"),
    ("secretsmanager", "PutSecretValue"): _secret("secretsmanager:PutSecretValue"),
    ("ssm", "GetParameter"): _parameter,
    ("ssm", "GetParametersByPath"): _parameters_by_path,
    ("lambda", "Invoke"): _invoke,
    ("events", "PutEvents"): _put_events,
    ("stepfunctions", "StartExecution"): _named_arn("states:StartExecution", "stateMachineArn"),
    ("stepfunctions", "DescribeExecution"): _named_arn("states:DescribeExecution", "executionArn"),
    ("stepfunctions", "StopExecution"): _named_arn("states:StopExecution", "executionArn"),
    # A task token names its execution, but the action has no resource-level permissions: "*".
    ("stepfunctions", "SendTaskSuccess"): lambda params, _: [Request("states:SendTaskSuccess", "*")],
    ("iam", "ListRoleTags"): _iam_entity("iam:ListRoleTags", "role", "RoleName"),
    ("iam", "ListUserTags"): _iam_entity("iam:ListUserTags", "user", "UserName"),
}


def requests_of(call: Call, lookups: LocalLookups) -> list[Request]:
    resolve = OPERATIONS.get((call.service, call.operation))
    if resolve is None:
        raise UnknownOperation(
            f"{call.function} called {call.service} {call.operation} ({call.test}), which "
            "tests/iam/checker.py OPERATIONS does not map: add the IAM action and resource AWS checks"
        )
    return resolve(call.params, lookups)


# ---- the template's logical ids as local resources


@dataclass(frozen=True)
class LocalResource:
    ref: str  # what Ref gives
    arn: str  # what Fn::GetAtt [id, Arn] gives


def _last(value: str, separator: str) -> str:
    return value.rsplit(separator, 1)[-1]


#: Resource type -> (the value the local runner sets in the environment -> the resource it names).
_LOCAL: dict[str, Callable[[str], LocalResource]] = {
    "AWS::S3::Bucket": lambda name: LocalResource(name, f"arn:aws:s3:::{name}"),
    "AWS::DynamoDB::Table": lambda name: LocalResource(name, _arn("dynamodb", f"table/{name}")),
    "AWS::Events::EventBus": lambda name: LocalResource(name, _arn("events", f"event-bus/{name}")),
    "AWS::StepFunctions::StateMachine": lambda arn: LocalResource(arn, arn),
    "AWS::SecretsManager::Secret": lambda arn: LocalResource(arn, arn),
    "AWS::KMS::Key": lambda key: LocalResource(_last(key, "/"), _arn("kms", f"key/{_last(key, '/')}")),
    "AWS::Lambda::Function": lambda name: LocalResource(
        _last(name, ":"), _arn("lambda", f"function:{_last(name, ':')}")
    ),
}


def _local_functions() -> dict[str, str]:
    """Handler -> the local function's name."""
    deployed = (
        *local_aws.FUNCTIONS.values(),
        local_aws.HOLDER_FUNCTION,
        local_aws.CANCEL_FUNCTION,
        local_aws.ANNOUNCE_FUNCTION,
    )
    return {handler: name for name, handler in (*deployed, local_aws.API_FUNCTION)}


def local_resources(synthesized: Synthesized, environment: Mapping[str, str]) -> dict[str, LocalResource]:
    """Logical id -> local resource, for the functions and every resource a function's environment names.

    ``environment`` is the local functions' environment (``LocalAws.function_environment``).
    """
    resources = synthesized.template["Resources"]
    found: dict[str, LocalResource] = {}
    local_functions = _local_functions()
    for logical_id, function in synthesized.resources("AWS::Lambda::Function").items():
        name = local_functions.get(function["Properties"]["Handler"])
        if name is not None:
            found[logical_id] = _LOCAL["AWS::Lambda::Function"](name)
    for function in synthesized.resources("AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        for variable, value in variables.items():
            target = _single_reference(value)
            if target is None or variable not in environment:
                continue
            resource = _LOCAL[resources[target]["Type"]](environment[variable])
            assert found.setdefault(target, resource) == resource, f"{target}: two local resources"
    return found


def _single_reference(value: Any) -> str | None:
    """The logical id a plain ``Ref`` or ``Fn::GetAtt [id, Arn]`` names, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value and not value["Ref"].startswith("AWS::"):
            return str(value["Ref"])
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
            return str(value["Fn::GetAtt"][0])
    return None


class Unresolved(Exception):
    """A logical id with no local counterpart."""


_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}


def resolve(value: Any, resources: Mapping[str, LocalResource]) -> Any:
    """A CloudFormation expression's value in the local deployment (Ref, GetAtt Arn, Join, Split, Select)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve(item, resources) for item in value]
    ((function, argument),) = value.items()
    if function == "Ref":
        if argument in _PSEUDO:
            return _PSEUDO[argument]
        if argument not in resources:
            raise Unresolved(argument)
        return resources[argument].ref
    if function == "Fn::GetAtt":
        logical_id, attribute = argument
        if attribute != "Arn" or logical_id not in resources:
            raise Unresolved(f"{logical_id}.{attribute}")
        return resources[logical_id].arn
    if function == "Fn::Join":
        separator, parts = argument
        return separator.join(resolve(parts, resources))
    if function == "Fn::Split":
        separator, text = argument
        return resolve(text, resources).split(separator)
    if function == "Fn::Select":
        index, items = argument
        return resolve(items, resources)[int(index)]
    raise AssertionError(f"tests/iam/checker.py cannot resolve {function}: {value}")


# ---- the roles' statements and their evaluation


@lru_cache(maxsize=512)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one; nothing else is special."""
    text = "".join({"*": ".*", "?": "."}.get(char, re.escape(char)) for char in glob)
    return re.compile(text, re.IGNORECASE if ignore_case else 0)


def matches(globs: Iterable[str], value: str, *, ignore_case: bool = False) -> bool:
    return any(_pattern(glob, ignore_case).fullmatch(value) for glob in globs)


_CONDITIONS: dict[str, Callable[[list[str], str], bool]] = {
    "StringEquals": lambda wanted, value: value in wanted,
    "StringLike": lambda wanted, value: matches(wanted, value),
}


@dataclass(frozen=True)
class Statement:
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # resolved; statements naming unresolved resources keep only the others
    conditions: Mapping[str, Mapping[str, Any]]

    def allows(self, request: Request) -> bool:
        return (
            matches(self.actions, request.action, ignore_case=True)
            and matches(self.resources, request.resource)
            and self._conditions_hold(dict(request.context))
        )

    def _conditions_hold(self, context: dict[str, str]) -> bool:
        for operator, keys in self.conditions.items():
            if operator not in _CONDITIONS:
                raise AssertionError(f"tests/iam/checker.py cannot evaluate the condition {operator}: {keys}")
            for key, wanted in keys.items():
                wanted = wanted if isinstance(wanted, list) else [wanted]
                value = context.get(key)
                if value is None or not _CONDITIONS[operator](wanted, value):
                    return False
        return True


@dataclass(frozen=True)
class Denied:
    call: Call
    request: Request

    def __str__(self) -> str:
        return f"{self.call.function}: {self.request.action} on {self.request.resource} ({self.call.test})"


@dataclass
class Policies:
    """Each function's identity policy, resolved against the local deployment."""

    statements: dict[str, list[Statement]]  # handler -> its role's statements
    unresolved: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, synthesized: Synthesized, resources: Mapping[str, LocalResource]) -> Policies:
        statements: dict[str, list[Statement]] = {}
        unresolved: set[str] = set()
        for function in synthesized.resources("AWS::Lambda::Function").values():
            handler = function["Properties"]["Handler"]
            for grant in role_grants(synthesized, function_role(synthesized, handler)):
                resolved = []
                for resource in grant.resources:
                    try:
                        resolved.append(resolve(resource, resources))
                    except Unresolved as missing:
                        unresolved.add(str(missing))
                statement = Statement(tuple(grant.actions), tuple(resolved), grant.conditions)
                statements.setdefault(handler, []).append(statement)
        return cls(statements, unresolved)

    def denied(self, calls: Iterable[Call], lookups: LocalLookups) -> list[Denied]:
        """Every request of these calls that no statement of the calling function's role allows."""
        found = []
        for call in calls:
            assert call.handler in self.statements, f"{call.handler} is no function of the template"
            for request in requests_of(call, lookups):
                if not any(statement.allows(request) for statement in self.statements[call.handler]):
                    found.append(Denied(call, request))
        return found
