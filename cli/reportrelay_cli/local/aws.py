"""reportrelay's AWS side on one laptop: moto's Step Functions interpreter running the real ASL file.

moto would run Lambda code in Docker; here each function's handler is imported and called in-process
instead, with the function's environment variables applied, so the state machine, its retries and
catches, S3 and EventBridge all behave as deployed while the Python runs in this process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jsonpath_ng.ext
from moto import mock_aws
from moto.awslambda.exceptions import LambdaClientError
from moto.awslambda.models import LambdaFunction
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.kms import models as kms_models
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment as SfnEnvironment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.backend.execution import Execution as SfnExecution

from reportrelay import jobs
from reportrelay.claims import CLAIMS_TABLE_ENV, KEY_ATTRIBUTE, TTL_ATTRIBUTE
from reportrelay.runtime import (
    CONNECTIONS_PATH_ENV,
    FETCH_CONTAINER_ENV,
    IN_CONTAINER_ENV,
    connection_parameter_name,
    connection_parameter_value,
    forget_deployed_connections,
)

REGION = "us-east-1"
#: How long the emulation waits, as it ends, for functions still running (see LocalAws.__exit__).
FUNCTIONS_RETURN_SECONDS = 10.0
#: Where ``LocalAws(connections_in_parameter_store=...)`` puts the connections, as a deployment would.
LOCAL_CONNECTIONS_PATH = "/reportrelay/local/connections"
STATE_MACHINE_FILE = Path(__file__).resolve().parents[3] / "statemachines" / "report.asl.json"
FUNCTIONS = {
    "SubmitFunctionArn": ("reportrelay-submit", "reportrelay.handlers.submit.handler"),
    "CheckFunctionArn": ("reportrelay-check", "reportrelay.handlers.check.handler"),
    "FetchFunctionArn": ("reportrelay-fetch", "reportrelay.handlers.fetch.handler"),
    "ConcludeFunctionArn": ("reportrelay-conclude", "reportrelay.handlers.conclude.handler"),
    "WaitForSlotFunctionArn": ("reportrelay-wait-for-slot", "reportrelay.handlers.wait_for_slot.handler"),
}
HOLDER_FUNCTION = ("reportrelay-hold", "reportrelay.handlers.hold.handler")
CANCEL_FUNCTION = ("reportrelay-cancel", "reportrelay.handlers.cancel.handler")
# Deployed on a five-minute schedule; here it runs when asked (``LocalAws.sweep``), never on a timer.
ANNOUNCE_FUNCTION = ("reportrelay-announce-pending", "reportrelay.handlers.announce_pending.handler")
API_FUNCTION = ("reportrelay-api", "reportrelay.handlers.api.handler")
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def state_machine_definition(path: Path = STATE_MACHINE_FILE, substitutions: Mapping[str, str] = ()) -> str:
    """The ASL file with ``${Name}`` substitutions filled, exactly as CloudFormation would."""
    text = path.read_text(encoding="utf-8")
    for name, value in dict(substitutions).items():
        text = text.replace("${" + name + "}", value)
    return text


@dataclass
class LambdaContext:
    """What Lambda hands a handler; the time left counts down from the function's timeout, as there."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 900.0
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_seconds - time.monotonic()) * 1000))


def _invoke_in_process(function: LambdaFunction, event: Any) -> tuple[str, bool, str]:
    """Replacement for moto's Docker invocation: import the handler and call it here.

    Every function shares one environment, applied to this process while LocalAws is open.
    """
    module_name, _, attribute = function.handler.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    context = LambdaContext(
        function.function_name, function.function_arn, str(uuid.uuid4()), timeout_seconds=function.timeout
    )
    try:
        result = handler(event, context)
    except FunctionDied as died:
        return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": str(died)}), True, ""
    except Exception as error:  # reported to the state machine exactly as Lambda reports it
        return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}), True, ""
    return json.dumps(result), False, ""


# ---- ECS: the container task that takes over a Fetch (reportrelay.container), run in-process
#
# The FetchInContainer state's ``ecs:runTask.sync`` runs the task's container here, on the interpreter's
# thread, and answers with the stopped task's description, as Step Functions would once the task ended.
# moto's own ECS integration is bypassed: it hands boto3 the ASL's parameter names and its Fargate tasks
# need network interfaces moto's EC2 cannot describe.


def _ecs_task_in_process(self: Any, **arguments: Any) -> None:
    parameters = arguments["normalised_parameters"]
    environment = {
        item["Name"]: item["Value"]
        for container in parameters.get("Overrides", {}).get("ContainerOverrides", [])
        for item in container.get("Environment", [])
    }
    exit_code = _run_container(environment)
    arguments["env"].stack.append(
        {
            "Tasks": [
                {
                    "ClusterArn": parameters.get("Cluster"),
                    "TaskArn": f"{parameters.get('Cluster')}/task/{uuid.uuid4().hex}",
                    "TaskDefinitionArn": parameters.get("TaskDefinition"),
                    "LastStatus": "STOPPED",
                    "StopCode": "EssentialContainerExited",
                    "StoppedReason": f"Essential container in task exited (exit code {exit_code})",
                    "Containers": [{"Name": "fetch", "ExitCode": exit_code, "LastStatus": "STOPPED"}],
                }
            ]
        }
    )


def _ecs_sync_in_process(self: Any, **arguments: Any) -> Callable[[], Any]:
    stopped = arguments["env"].stack.pop()["Tasks"][0]
    return lambda: stopped


def _run_container(environment: Mapping[str, str]) -> int:
    from reportrelay import container

    try:
        return container.run({**os.environ, **environment, IN_CONTAINER_ENV: "1"})
    except Exception:  # a crash is an exit code, as in a container
        return 1


# ---- Step Functions: the ContinueAsNew state's ``states:startExecution``
#
# moto hands boto3 the ASL's parameter names (``StateMachineArn``, ``Name``, ``Input``) where the API's are
# lowerCamelCase, which botocore refuses, and the input as an object where the API takes a JSON string;
# both are given here as Step Functions gives them.

_ORIGINAL_SFN_TASK = StateTaskServiceSfn._eval_service_task


def _sfn_task_with_api_names(self: Any, **arguments: Any) -> None:
    parameters = {
        name[:1].lower() + name[1:]: value for name, value in arguments["normalised_parameters"].items()
    }
    if not isinstance(parameters.get("input", ""), str):  # the API takes its input as a JSON string
        parameters["input"] = json.dumps(parameters["input"], separators=(",", ":"))
    _ORIGINAL_SFN_TASK(self, **{**arguments, "normalised_parameters": parameters})


# ---- Step Functions: StopExecution ends a task waiting for its token at once, as it does in AWS
#
# moto's waitForTaskToken task waits on its callback until its timeout (the WaitForSlot task's is up to
# 15 minutes), whatever StopExecution said; the stopped execution's waiting callbacks are woken here.

_ORIGINAL_SFN_STOP = SfnExecution.stop


def _stop_waking_callbacks(self: Any, *args: Any, **kwargs: Any) -> None:
    _ORIGINAL_SFN_STOP(self, *args, **kwargs)
    worker = getattr(self, "exec_worker", None)
    pool = getattr(getattr(getattr(worker, "env", None), "callback_pool_manager", None), "_pool", {})
    for endpoint in list(pool.values()):
        endpoint.interrupt_all()


# ---- Step Functions: a stop is final
#
# In AWS a stopped execution is ABORTED. moto's interpreter lets the task running at the stop overwrite it:
# a stop landing as a task evaluates its resource leaves the task popping its input where it expects the
# resource, and the error it raises (or a timeout) turned the execution FAILED, so a cancel was refused.

_ORIGINAL_SFN_SET_ERROR = SfnEnvironment.set_error
_ORIGINAL_SFN_SET_TIMED_OUT = SfnEnvironment.set_timed_out
_ORIGINAL_ASL_PARSE = AmazonStateLanguageParser.parse


def _error_unless_stopped(self: Any, *args: Any, **kwargs: Any) -> None:
    if not isinstance(self._program_state, ProgramStopped):
        _ORIGINAL_SFN_SET_ERROR(self, *args, **kwargs)


def _timed_out_unless_stopped(self: Any, *args: Any, **kwargs: Any) -> None:
    if not isinstance(self._program_state, ProgramStopped):
        _ORIGINAL_SFN_SET_TIMED_OUT(self, *args, **kwargs)


# ---- fault-injection seam (tests only; see tests/aws_faults.py)


class FunctionDied(BaseException):
    """Raised inside a handler to play a Lambda runtime that died mid-invocation (killed, out of memory):
    the state machine sees ``Runtime.ExitError``, as from Lambda. A BaseException, so that no ``except
    Exception`` in the code under test can catch it and carry on."""


class LambdaServiceError(LambdaClientError):
    """Raised by an ``after_invoke`` hook to answer an Invoke call with an error of the Lambda service
    itself (``Lambda.<error>`` in the state machine), after the function ran: ServiceException is a 500."""

    def __init__(self, error: str = "ServiceException", message: str = "", status: int = 500) -> None:
        super().__init__(error, message or f"{error}: the Lambda service failed to answer the invocation")
        self.code = status


@contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """Make moto's DynamoDB behave as DynamoDB does for jobs running on parallel threads here: conditional
    writes atomic, and a read never meeting an item half-way through a write (moto turns the item it
    found into its answer after the backend call, so whole requests are serialised, not just the calls)."""
    lock = threading.RLock()
    writes = ("put_item", "update_item", "delete_item", "transact_write_items")
    originals = {name: getattr(DynamoDBBackend, name) for name in writes}
    original_action = DynamoHandler.call_action

    def serialised(original: Any) -> Any:
        def write(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return write

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, serialised(original))
    DynamoHandler.call_action = serialised(original_action)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)
        DynamoHandler.call_action = original_action  # type: ignore[method-assign]


# ---- Emulated AWS at the cost of the work, not of its set-up
#
# moto's interpreter makes a new client for every Lambda task it runs (and this module's callers asked for
# one at every turn): each is about 10 ms of building, so both are made once. (The sessions share one
# loader of botocore's files: reportrelay_cli.local.)

_local_clients: dict[tuple[str, str | None, str | None], Any] = {}
_local_clients_lock = threading.Lock()


def local_client(service: str) -> Any:
    """The process's client for ``service`` on emulated AWS (moto answers every client, whichever mock is
    active), made once per endpoint, with the local credentials. A client made while an
    ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_<SERVICE>``) was set keeps that endpoint, so the endpoint
    is part of the key, as in ``reportrelay.awsclients``: a server that has gone is never called again."""
    key = (
        service,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}"),
    )
    with _local_clients_lock:
        if key not in _local_clients:
            _local_clients[key] = _local_session().client(service)
        return _local_clients[key]


@functools.cache
def _local_session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=_FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=_FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=REGION,
    )


_ORIGINAL_INTERPRETER_CLIENT = lambda_eval_utils.boto_client_for
_interpreter_clients: dict[tuple[str, str], Any] = {}


def _interpreter_client(region: str, service: str, state_credentials: Any = None) -> Any:
    """moto's interpreter's client for a Lambda task (its credentials are fixed, ``state_credentials``
    unused), made once per region."""
    with _local_clients_lock:
        if (region, service) not in _interpreter_clients:
            _interpreter_clients[region, service] = _ORIGINAL_INTERPRETER_CLIENT(region, service)
        return _interpreter_clients[region, service]


_parse_trees: dict[str, Any] = {}


def _parse_once(definition: str) -> tuple[Any, Any]:
    """moto parses a state machine's ASL at its creation and again at every execution's start (about
    0.3 s of ANTLR each time). The parse tree of a definition is read, never changed, so it is kept; the
    evaluation components, which executions do change, are built afresh from it each time."""
    tree = _parse_trees.get(definition)
    if tree is None:
        _, tree = _ORIGINAL_ASL_PARSE(definition)
        _parse_trees[definition] = tree
    return Preprocessor().visit(tree), tree


#: moto's interpreter (each path a state reads or writes) and its EventBridge (each input path) parse every
#: JSONPath anew, a new PLY parser each time; a parsed path is only ever read, so each is parsed once.
_JSON_PATH_PARSERS = (
    (json_path, "parse", functools.lru_cache(maxsize=1024)(json_path.parse)),
    (result_path, "parse", functools.lru_cache(maxsize=1024)(result_path.parse)),
    (jsonpath_ng.ext, "parse", functools.lru_cache(maxsize=1024)(jsonpath_ng.ext.parse)),
)

_ORIGINAL_KMS_PRIVATE_KEY = kms_models.generate_private_key


def _kms_private_key(key_spec: str) -> Any:
    """moto gives every KMS key an RSA-2048 private key, a symmetric one too (60 ms of key generation),
    where it is never used; symmetric keys share one. An asymmetric key still gets its own."""
    if key_spec != "SYMMETRIC_DEFAULT":
        return _ORIGINAL_KMS_PRIVATE_KEY(key_spec)
    return _symmetric_keys_private_key()


@functools.cache
def _symmetric_keys_private_key() -> Any:
    return _ORIGINAL_KMS_PRIVATE_KEY("SYMMETRIC_DEFAULT")


#: What LocalAws replaces in moto while it is open: (owner, attribute, replacement), each explained in its
#: section above. The originals are put back as it ends.
_MOTO_PATCHES: tuple[tuple[Any, str, Any], ...] = (
    (StateTaskServiceEcs, "_eval_service_task", _ecs_task_in_process),
    (StateTaskServiceEcs, "_build_sync_resolver", _ecs_sync_in_process),
    (StateTaskServiceSfn, "_eval_service_task", _sfn_task_with_api_names),
    (SfnExecution, "stop", _stop_waking_callbacks),
    (SfnEnvironment, "set_error", _error_unless_stopped),
    (SfnEnvironment, "set_timed_out", _timed_out_unless_stopped),
    (AmazonStateLanguageParser, "parse", staticmethod(_parse_once)),
    (kms_models, "generate_private_key", _kms_private_key),
    (lambda_eval_utils, "boto_client_for", _interpreter_client),
    *_JSON_PATH_PARSERS,
)
_MOTO_ORIGINALS = tuple((owner, name, vars(owner)[name]) for owner, name, _ in _MOTO_PATCHES)


@contextmanager
def _patched_env(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalAws:
    """Emulated AWS with reportrelay deployed: bucket, functions, state machine, bus and an event tap."""

    bucket = "reportrelay-local-reports"
    event_bus = "reportrelay"
    claims_table = "reportrelay-claims"
    jobs_table = "reportrelay-jobs"
    # Where the job API would be; only ever printed in links (the API runs in-process, see ``api``).
    api_url = "https://api.reportrelay.localhost/v1"

    def __init__(
        self,
        function_environment: Mapping[str, str],
        definition_file: Path = STATE_MACHINE_FILE,
        *,
        fetch_container: bool = True,
        job_api: bool = True,
        connections_in_parameter_store: Mapping[str, Any] | None = None,
        connections_path: str = LOCAL_CONNECTIONS_PATH,
    ) -> None:
        """``fetch_container``: a Fetch that will not fit in a Lambda moves to a container task, run here on a
        thread (a deployment with a VPC has one; see reportrelay.container).

        ``job_api``: False for a run with no job API to follow links to (``reportrelay run``): no API URL
        is set, so completion events carry ``download_url`` null rather than a link to ``api_url``.

        ``connections_in_parameter_store``: connection name -> body, put in the emulated SSM Parameter Store
        under ``connections_path`` as CDK deploys them (one String parameter each); the functions are told
        only the path and read them from there (``reportrelay.runtime.ParameterStoreConnections``), and
        no connections file reaches them."""
        self.fetch_container = fetch_container
        self.job_api = job_api
        self.connections_in_parameter_store = dict(connections_in_parameter_store or {})
        self.connections_path = connections_path
        if connections_in_parameter_store is not None:
            function_environment = {
                **function_environment,
                CONNECTIONS_PATH_ENV: connections_path,
                "REPORTRELAY_CONNECTIONS_FILE": "",
                "REPORTRELAY_CONNECTIONS": "",
            }
        self.function_environment = {
            **function_environment,
            **({FETCH_CONTAINER_ENV: "1"} if fetch_container else {}),
            "REPORTRELAY_BUCKET": self.bucket,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "reportrelay",
        }
        self.definition_file = definition_file
        self.state_machine_arn = ""
        self._events_queue_url = ""
        self._events_seen: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._api_environment = threading.Lock()
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._original_invoke_lambda = LambdaFunction._invoke_lambda
        self._original_invoke = LambdaFunction.invoke
        self._background: list[threading.Thread] = []
        self._functions_running = 0
        self._ending = False
        self._functions_running_changed = threading.Condition()
        #: Fault-injection seam: called with the function's name after each synchronous invocation has
        #: run; a hook that raises LambdaServiceError makes that error the Invoke call's answer.
        self.after_invoke: list[Callable[[str], None]] = []

    def __enter__(self) -> LocalAws:
        forget_deployed_connections()  # read before, from another emulated account
        self._mock.start()
        self._atomic_writes = atomic_dynamodb_writes()
        self._atomic_writes.__enter__()
        LambdaFunction._invoke_lambda = lambda function, event: self._run_function(function, event)
        LambdaFunction.invoke = lambda function, *args: self._invoke(function, *args)
        for owner, name, replacement in _MOTO_PATCHES:
            setattr(owner, name, replacement)
        self._env = _patched_env(_FAKE_CREDENTIALS)
        self._env.__enter__()
        try:
            self._deploy()
            self._function_env = _patched_env(self.function_environment)
            self._function_env.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for thread in self._background:
            thread.join(timeout=5)
        self._end_executions()
        LambdaFunction._invoke_lambda = self._original_invoke_lambda
        LambdaFunction.invoke = self._original_invoke
        for owner, name, original in _MOTO_ORIGINALS:
            setattr(owner, name, original)
        if hasattr(self, "_function_env"):
            self._function_env.__exit__(None, None, None)
        self._env.__exit__(None, None, None)
        self._atomic_writes.__exit__(None, None, None)
        self._mock.stop()
        forget_deployed_connections()

    def _run_function(
        self, function: LambdaFunction, event: Any, *, waited_for: bool = True
    ) -> tuple[str, bool, str]:
        """``waited_for``: False for an asynchronous invocation, which the end of the emulation joins for
        a moment only (its thread, see ``__exit__``): one may by design wait on a vendor until the vendor
        answers (the Metric Insights holder), and the vendors' simulators close after the emulation."""
        with self._functions_running_changed:
            if self._ending:
                error = {"errorType": "Runtime.ExitError", "errorMessage": "the emulation has ended"}
                return json.dumps(error), True, ""
            self._functions_running += waited_for
        try:
            return _invoke_in_process(function, event)
        finally:
            with self._functions_running_changed:
                self._functions_running -= waited_for
                self._functions_running_changed.notify_all()

    def _end_executions(self) -> None:
        """Executions still running stop, and the emulation ends once their functions have returned.

        moto's executions run on threads of their own, which outlive the emulation: one left running went
        on invoking its functions in the next emulation, whose tables have the same names. A function
        running at a stop goes on to its end, as in Lambda, so that is waited for (up to
        ``FUNCTIONS_RETURN_SECONDS``), and none starts any more."""
        with self._functions_running_changed:
            self._ending = True
        if self.state_machine_arn:
            sfn = self.client("stepfunctions")
            with contextlib.suppress(Exception):  # moto's own errors: nothing more to stop then
                for page in sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=self.state_machine_arn, statusFilter="RUNNING"
                ):
                    for execution in page["executions"]:
                        with contextlib.suppress(Exception):  # one that ended meanwhile
                            sfn.stop_execution(
                                executionArn=execution["executionArn"], cause="emulation ended"
                            )
        with self._functions_running_changed:
            self._functions_running_changed.wait_for(
                lambda: self._functions_running == 0, timeout=FUNCTIONS_RETURN_SECONDS
            )

    def _invoke(
        self, function: LambdaFunction, body: str, request_headers: Any, response_headers: Any
    ) -> str | bytes:
        """Asynchronous (``Event``) invocations run on a thread and answer at once, as Lambda does."""
        if request_headers.get("x-amz-invocation-type") != "Event":
            answer = self._original_invoke(function, body, request_headers, response_headers)
            for hook in list(self.after_invoke):
                hook(function.function_name)
            return answer
        event = json.loads(body) if body else {}
        thread = threading.Thread(
            target=self._run_function, args=(function, event), kwargs={"waited_for": False}, daemon=True
        )
        self._background.append(thread)
        thread.start()
        return b""

    def client(self, service: str) -> Any:
        return local_client(service)

    def _deploy(self) -> None:
        iam = self.client("iam")
        role_arn = iam.create_role(
            RoleName="reportrelay-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )["Role"]["Arn"]
        self.client("s3").create_bucket(Bucket=self.bucket)
        self._put_connections()
        lambdas = self.client("lambda")
        self.function_environment["REPORTRELAY_HANDLE_KEY"] = self.client("kms").create_key(
            Description="reportrelay sealed handle fields"
        )["KeyMetadata"]["KeyId"]
        self.function_environment["REPORTRELAY_HOLDER_FUNCTION"] = HOLDER_FUNCTION[0]
        self._create_claims_table()
        self._create_jobs_table()
        arns = {}
        self.function_environment["REPORTRELAY_CANCEL_FUNCTION"] = CANCEL_FUNCTION[0]
        self.function_environment["REPORTRELAY_LINK_KEY_SECRET"] = self.client(
            "secretsmanager"
        ).create_secret(Name="reportrelay/link-key", SecretString=secrets.token_urlsafe(48))["ARN"]
        functions = {
            **FUNCTIONS,
            "HolderFunctionArn": HOLDER_FUNCTION,
            "CancelFunctionArn": CANCEL_FUNCTION,
            "AnnounceFunctionArn": ANNOUNCE_FUNCTION,
        }
        for placeholder, (name, handler) in functions.items():
            arns[placeholder] = lambdas.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role_arn,
                Handler=handler,
                Code={"ZipFile": b"in-process"},
                Timeout=900,
                Environment={"Variables": self.function_environment},
            )["FunctionArn"]
        events = self.client("events")
        events.create_event_bus(Name=self.event_bus)
        sqs = self.client("sqs")
        self._events_queue_url = sqs.create_queue(QueueName="reportrelay-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self._events_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="all-reportrelay-events",
            EventBusName=self.event_bus,
            EventPattern=json.dumps({"source": ["reportrelay"]}),
        )
        events.put_targets(
            Rule="all-reportrelay-events",
            EventBusName=self.event_bus,
            Targets=[{"Id": "tap", "Arn": queue_arn}],
        )
        arns.update(self._deploy_fetch_container())
        definition = state_machine_definition(self.definition_file, {**arns, "EventBusName": self.event_bus})
        self.state_machine_arn = self.client("stepfunctions").create_state_machine(
            name="reportrelay", definition=definition, roleArn=role_arn, type="STANDARD"
        )["stateMachineArn"]
        # The job API's own settings (it starts and stops this state machine, announces cancellations).
        self.function_environment["REPORTRELAY_STATE_MACHINE_ARN"] = self.state_machine_arn
        self.function_environment["REPORTRELAY_EVENT_BUS"] = self.event_bus

    def _put_connections(self) -> None:
        """The connections as deployed (infra.connections): one String parameter per connection."""
        ssm = self.client("ssm")
        for name, body in self.connections_in_parameter_store.items():
            ssm.put_parameter(
                Name=connection_parameter_name(self.connections_path, name),
                Value=connection_parameter_value(body),
                Type="String",
                Overwrite=True,
            )

    def _deploy_fetch_container(self) -> dict[str, str]:
        """What the ASL's FetchInContainer state names: its task runs in-process (see above)."""
        account = f"{REGION}:123456789012"
        return {
            "FetchClusterArn": f"arn:aws:ecs:{account}:cluster/reportrelay",
            "FetchTaskDefinitionArn": f"arn:aws:ecs:{account}:task-definition/reportrelay-fetch:1",
            "FetchSubnets": "subnet-local",
            "FetchSecurityGroup": "sg-local",
            "FetchAssignPublicIp": "DISABLED",
        }

    def _create_claims_table(self) -> None:
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=self.claims_table,
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=self.claims_table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        self.function_environment[CLAIMS_TABLE_ENV] = self.claims_table

    def _create_jobs_table(self) -> None:
        """The job store (reportrelay.jobs), and the settings that point the functions and the API at it."""
        self.client("dynamodb").create_table(**jobs.create_table_request(self.jobs_table))
        self.function_environment[jobs.JOBS_TABLE_ENV] = self.jobs_table
        if self.job_api:
            self.function_environment.setdefault("REPORTRELAY_API_URL", self.api_url)
        else:  # set empty, so that none in the user's shell reaches the functions either
            self.function_environment["REPORTRELAY_API_URL"] = ""
            self.function_environment["REPORTRELAY_PEOPLE_URL"] = ""

    def api(self, event: dict[str, Any]) -> dict[str, Any]:
        """Call the job API's handler in-process with an API Gateway REST proxy event; returns its answer.

        One request at a time, as one Lambda environment answers them: powertools' resolver keeps the
        request it is answering on its class (``BaseRouter.current_event``), so two at once in this
        process would read each other's event and caller. Requests arriving together (a browser loading
        a page's scripts, the serve console's users) wait their turn here."""
        module_name, _, attribute = API_FUNCTION[1].rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute)
        arn = f"arn:aws:lambda:{REGION}:123456789012:function:{API_FUNCTION[0]}"
        with self._api_environment:
            result: dict[str, Any] = handler(event, LambdaContext(API_FUNCTION[0], arn, str(uuid.uuid4())))
        return result

    def start(self, request: Any, job_id: str | None = None) -> str:
        """Start one job; returns the execution ARN."""
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn,
            name=job_id or str(uuid.uuid4()),
            input=json.dumps(request),
        )["executionArn"]

    def sweep(self, after_seconds: float = 0.0) -> dict[str, Any]:
        """Run the announce-pending function once, as its schedule would (synchronously, through Lambda):
        announce what has waited ``after_seconds`` or more in the job table's outbox (deployed: 120 s).
        Returns its answer: ``announced``, ``failed``, ``waiting``, ``oldest_pending_seconds``."""
        answer = self.client("lambda").invoke(
            FunctionName=ANNOUNCE_FUNCTION[0], Payload=json.dumps({"after_seconds": after_seconds}).encode()
        )
        result: dict[str, Any] = json.loads(answer["Payload"].read())
        if answer.get("FunctionError"):
            raise RuntimeError(f"the announce-pending function failed: {result}")
        return result

    def events(self) -> list[dict[str, Any]]:
        """Every event announced on the bus so far, in order of arrival at the tap queue."""
        sqs = self.client("sqs")
        with self._events_lock:
            while messages := sqs.receive_message(
                QueueUrl=self._events_queue_url, MaxNumberOfMessages=10
            ).get("Messages", []):
                for message in messages:
                    self._events_seen.append(json.loads(message["Body"]))
                    sqs.delete_message(
                        QueueUrl=self._events_queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            return list(self._events_seen)
