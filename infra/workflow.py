"""The workflow: the state machine from statemachines/report.asl.json, the four step functions it runs, and
the two provider functions it does not invoke itself: the holder (started by submit) and cancel (called by
the job API, which holds no vendor credential, to cancel a stopped job's report at its provider)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import constants
from infra.configuration import DeployedConnections
from infra.connections import ConnectionParameters
from infra.container import FetchContainer
from infra.events import ReportEvents
from infra.functions import python_function
from infra.nag import acknowledge
from infra.network import ContainerNetwork, VendorNetwork
from infra.settings import Settings
from infra.storage import ReportStorage
from reportrelay import names

# Making a claim is one conditional PutItem: no reads, no deletes.
CLAIM = ("dynamodb:PutItem",)
# A job takes a slot only if none is its own already and nobody waits in the connection's line.
TAKE_SLOT = ("dynamodb:GetItem", "dynamodb:PutItem")
# Joining and leaving the line, giving a slot back and handing slots to the line (reportrelay.slots).
LINE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")


@dataclass(frozen=True)
class Step:
    """One function of the workflow and what it may touch. Timeouts stay under the Task's TimeoutSeconds
    in the ASL, so the function's own error (not States.Timeout) reaches the execution history."""

    name: str
    handler: str
    description: str
    timeout: Duration
    memory_size: int
    placeholder: str | None = None  # its ${...} in the ASL; None for a function the ASL does not invoke
    talks_to_provider: bool = False
    writes_reports: bool = False
    aborts_uploads: bool = False  # drops a failed or cancelled job's checkpointed upload (transfer.abandon)
    seals_handles: bool = False  # kms:Encrypt with the handle key (reportrelay.sealing)
    unseals_handles: bool = False  # kms:Decrypt with the handle key
    claims_actions: tuple[str, ...] = ()  # DynamoDB actions on the claims table (reportrelay.claims)
    hands_over_slots: bool = False  # tells a job waiting in line its slot: states:SendTaskSuccess


SUBMIT = Step(
    "Submit",
    "reportrelay.handlers.submit.handler",
    "reportrelay: validate a job request and queue the report at the provider",
    Duration.seconds(110),
    256,
    placeholder=constants.PLACEHOLDER_SUBMIT,
    talks_to_provider=True,
    claims_actions=TAKE_SLOT,  # PutItem also takes a provider's queue entries (reportrelay.claims)
    seals_handles=True,
)
CHECK = Step(
    "Check",
    "reportrelay.handlers.check.handler",
    "reportrelay: ask the provider where the report stands",
    Duration.seconds(110),
    256,
    placeholder=constants.PLACEHOLDER_CHECK,
    talks_to_provider=True,
    claims_actions=CLAIM,
    seals_handles=True,
    unseals_handles=True,
)
FETCH = Step(
    "Fetch",
    "reportrelay.handlers.fetch.handler",
    "reportrelay: stream the finished report into S3",
    Duration.minutes(15),
    1024,  # one 8 MiB part in flight, plus the network throughput that memory buys
    placeholder=constants.PLACEHOLDER_FETCH,
    talks_to_provider=True,
    claims_actions=CLAIM,
    writes_reports=True,
    unseals_handles=True,
)
CONCLUDE = Step(
    "Conclude",
    "reportrelay.handlers.conclude.handler",
    "reportrelay: record the job's outcome, announce it and record the job's metrics",
    Duration.seconds(30),
    256,
    placeholder=constants.PLACEHOLDER_CONCLUDE,
    claims_actions=LINE,  # gives back the job's slot, or its place in line, and hands slots over
    hands_over_slots=True,
    aborts_uploads=True,
)
# Invoked by the WaitForSlot task (lambda:invoke.waitForTaskToken) with the task's token.
WAIT_FOR_SLOT = Step(
    "WaitForSlot",
    "reportrelay.handlers.wait_for_slot.handler",
    "reportrelay: put a job in its connection's line for a concurrency slot",
    Duration.seconds(30),
    256,
    placeholder=constants.PLACEHOLDER_WAIT_FOR_SLOT,
    claims_actions=LINE,
    hands_over_slots=True,
)
# Invoked asynchronously by submit, only for providers that generate while one request stays open.
HOLD = Step(
    "Hold",
    "reportrelay.handlers.hold.handler",
    "reportrelay: hold a provider's long generation request open",
    Duration.minutes(15),
    256,
    talks_to_provider=True,
    claims_actions=CLAIM,
    unseals_handles=True,
)
# Invoked synchronously by the job API's cancel route (within API Gateway's 29 s), after it stopped the
# execution: reads the job's sealed handle from the job table (granted by the job API) and cancels at the
# provider with the connection's credentials.
CANCEL = Step(
    "Cancel",
    "reportrelay.handlers.cancel.handler",
    "reportrelay: cancel a stopped job's report at its provider",
    Duration.seconds(25),
    256,
    talks_to_provider=True,
    claims_actions=LINE,  # and gives back a stopped job's slot or place in line, handing slots over
    hands_over_slots=True,
    unseals_handles=True,
    aborts_uploads=True,
)
STEPS = (SUBMIT, CHECK, FETCH, CONCLUDE, WAIT_FOR_SLOT)  # the functions the state machine invokes
PROVIDER_FUNCTIONS = tuple(step for step in (*STEPS, HOLD, CANCEL) if step.talks_to_provider)


class Workflow(Construct):
    """Functions with one role each, granted exactly what their step does, and the state machine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        code: lambda_.Code,
        connections: DeployedConnections,
        parameters: ConnectionParameters,
        storage: ReportStorage,
        events: ReportEvents,
        network: VendorNetwork | None = None,
        container_network: VendorNetwork | ContainerNetwork | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._network = network  # the provider-facing functions run in it; the others never do
        self._code = code
        self._connections = connections
        self._parameters = parameters  # the connections as SSM parameters: the steps read them by name
        self._storage = storage
        self.handle_key = self._build_handle_key() if connections.needs_handle_key else None
        self.claims_table = self._build_claims_table()
        self.functions: dict[str, lambda_.Function] = {
            step.name: self._build_function(step) for step in STEPS
        }
        self.holder = self._build_holder() if connections.needs_holder else None
        if self.holder is not None:
            self.functions[HOLD.name] = self.holder
        self.canceller = self._build_function(CANCEL)
        self.functions[CANCEL.name] = self.canceller
        # A transfer that will not fit in Lambda moves to a container task, in the network given for it.
        self.container = (
            FetchContainer(
                self,
                "FetchContainer",
                settings=settings,
                network=container_network,
                fetch=self.functions[FETCH.name],
            )
            if container_network is not None
            else None
        )
        self.state_machine = self._build_state_machine()
        # Conclude announces the outcome itself, from the job table's outbox (reportrelay.outbox): the
        # state machine puts no events.
        conclude = self.functions[CONCLUDE.name]
        conclude.add_environment(names.EVENT_BUS_ENV, events.bus.event_bus_name)
        events.grant_put_events(conclude)

    def _build_function(self, step: Step) -> lambda_.Function:
        environment = {}
        if step.talks_to_provider:
            environment.update(self._parameters.environment())
        if step.writes_reports or step.aborts_uploads:
            environment[names.BUCKET_ENV] = self._storage.bucket.bucket_name
        if step.claims_actions:
            environment[names.CLAIMS_TABLE_ENV] = self.claims_table.table_name
        if self.handle_key is not None and (step.seals_handles or step.unseals_handles):
            environment[names.HANDLE_KEY_ENV] = self.handle_key.key_arn
        function = python_function(
            self,
            f"{step.name}Function",
            code=self._code,
            handler=step.handler,
            description=step.description,
            timeout=step.timeout,
            memory_size=step.memory_size,
            settings=self._settings,
            environment=environment,
            network=self._network if step.talks_to_provider else None,
        )
        if step.talks_to_provider:
            self._parameters.grant_read(function)
            self.grant_connection_secrets(function)
        if step.claims_actions:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=list(step.claims_actions), resources=[self.claims_table.table_arn]
                )
            )
        if step.hands_over_slots:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["states:SendTaskSuccess"], resources=["*"])
            )
            assert function.role is not None
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                "states:SendTaskSuccess supports no resource-level permissions (a task token names its "
                "execution), so handing a concurrency slot to the job waiting for it needs Resource '*'.",
            )
        if step.writes_reports:
            self._storage.grant_write_reports(function)
        elif step.aborts_uploads:
            self._storage.grant_abort_uploads(function)
        self.grant_handle_key(function, encrypt=step.seals_handles, decrypt=step.unseals_handles)
        return function

    def _build_holder(self) -> lambda_.Function:
        """The holder, and submit's right to start it (asynchronously, once: a retry re-runs the report)."""
        holder = self._build_function(HOLD)
        holder.configure_async_invoke(retry_attempts=0, max_event_age=Duration.hours(1))
        submit = self.functions[SUBMIT.name]
        submit.add_environment(names.HOLDER_FUNCTION_ENV, holder.function_arn)
        submit.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[holder.function_arn])
        )
        return holder

    def _build_claims_table(self) -> dynamodb.Table:
        """Which job owns which entry of a provider's shared queue (reportrelay.claims); items expire."""
        return dynamodb.Table(
            self,
            "Claims",
            partition_key=dynamodb.Attribute(
                name=names.CLAIM_KEY_ATTRIBUTE, type=dynamodb.AttributeType.STRING
            ),
            time_to_live_attribute=names.CLAIM_TTL_ATTRIBUTE,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Claims outlive a job by design, never a deployment.
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_handle_key(self) -> kms.Key:
        return kms.Key(
            self,
            "HandleKey",
            description="reportrelay: seals credentials in provider handles while they sit in workflow state",
            enable_key_rotation=True,
            # Sealed values live only as long as an execution: nothing needs the key after the stack.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )

    def grant_handle_key(self, function: lambda_.Function, *, encrypt: bool, decrypt: bool) -> None:
        """Seal and/or open provider handles: only with a job bound in as encryption context."""
        wanted = {"kms:Encrypt": encrypt, "kms:Decrypt": decrypt}
        actions = [action for action, needed in wanted.items() if needed]
        if self.handle_key is not None and actions:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=actions,
                    resources=[self.handle_key.key_arn],
                    conditions={
                        "StringLike": {f"kms:EncryptionContext:{constants.SEALING_CONTEXT_KEY}": "*"}
                    },
                )
            )

    def grant_connection_secrets(self, function: lambda_.Function) -> None:
        """Read exactly the secrets and SSM parameters the connections refer to (secrets encrypted with
        aws/secretsmanager; parameters as String or as SecureString with aws/ssm).

        A refresh token the login host rotates is written back to its secret (PutSecretValue only), so
        the next step, in another function, starts from the new one.

        With the setting connectionSecretsPrefix, the secrets named under it are granted in one statement
        instead (synthesis has checked every reference is under it): a thousand exact grants would not fit
        in a role's policy.
        """
        if self._settings.connection_secrets_prefix is not None:
            self._grant_secrets_by_prefix(function, self._settings.connection_secrets_prefix)
        for index, secret_id in enumerate(self._secrets_granted_by_name()):
            secret = secret_from_reference(function, f"ConnectionSecret{index}", secret_id)
            secret.grant_read(function)
            if secret_id in self._connections.rotating_secrets:
                complete = secret_id.startswith("arn:") and _has_secret_suffix(secret_id)
                arn = secret.secret_arn if complete else f"{secret.secret_arn}-??????"
                function.add_to_role_policy(
                    iam.PolicyStatement(actions=["secretsmanager:PutSecretValue"], resources=[arn])
                )
        if self._connections.parameters:
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["ssm:GetParameter"],
                    resources=[parameter_arn(function, name) for name in self._connections.parameters],
                )
            )

    def _secrets_granted_by_name(self) -> tuple[str, ...]:
        """The connections' secrets granted one by one: all of them, unless a prefix grants them."""
        return () if self._settings.connection_secrets_prefix is not None else self._connections.secrets

    def _grant_secrets_by_prefix(self, function: lambda_.Function, prefix: str) -> None:
        """Read (and, with rotating refresh tokens, write back) the secrets named '<prefix>...'."""
        arn = Stack.of(function).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        actions = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
        if self._connections.rotating_secrets:
            actions.append("secretsmanager:PutSecretValue")
        function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=[arn]))
        assert function.role is not None
        acknowledge(
            function.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:"
            f"secret:{prefix}*]",
            "The setting connectionSecretsPrefix: every connection's secret is named under this prefix "
            "(synthesis checks it), and one grant on the prefix replaces one per secret, which a role's "
            "policy cannot hold for hundreds of connections.",
        )

    def _build_state_machine(self) -> sfn.StateMachine:
        log_group = logs.LogGroup(
            self,
            "StateMachineLogs",
            retention=self._settings.log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        invoked = [self.functions[step.name] for step in STEPS]
        substitutions = {
            step.placeholder: self.functions[step.name].function_arn for step in STEPS if step.placeholder
        }
        if self.container is not None:
            substitutions.update(self.container.substitutions)
        else:
            # Without a container task Fetch is not told of one, so it never hands a transfer over and the
            # FetchInContainer state is never entered.
            substitutions.update(dict.fromkeys(constants.CONTAINER_PLACEHOLDERS, constants.NO_CONTAINER))
        # Named, so that its role may start its executions (ContinueAsNew) by an ARN that refers to no
        # resource: a reference to itself would be a dependency cycle.
        name = f"{Stack.of(self).stack_name}-reports"[:80]
        state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            definition_body=sfn.DefinitionBody.from_string(
                constants.STATE_MACHINE_FILE.read_text(encoding="utf-8")
            ),
            definition_substitutions=substitutions,
            state_machine_type=sfn.StateMachineType.STANDARD,
            comment="reportrelay: submit, wait, check, fetch into S3, announce (statemachines/)",
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group, level=sfn.LogLevel.ERROR, include_execution_data=False
            ),
        )
        if self.container is not None:
            self.container.grant_run(state_machine)
        # A job near its execution's history limit goes on in a fresh execution of this state machine.
        state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:StartExecution"],
                resources=[
                    Stack.of(self).format_arn(
                        service="states",
                        resource="stateMachine",
                        resource_name=name,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        # The ASL invokes each function by its unqualified ARN: no versions, no aliases, no other function.
        state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[function.function_arn for function in invoked]
            )
        )
        acknowledge(
            state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "Vended log delivery (logs:CreateLogDelivery and friends) and X-Ray (PutTraceSegments) support "
            "no resource-level permissions, so the state machine's logging and tracing need Resource '*'.",
        )
        acknowledge(
            state_machine,
            "AwsSolutions-SF1",
            "Logging at ERROR level with execution data excluded is deliberate (issue 4): ALL would log "
            "every state transition, and execution data would copy provider messages into the log.",
        )
        return state_machine


def secret_from_reference(scope: Construct, construct_id: str, secret_id: str) -> secretsmanager.ISecret:
    """The secret a connection names: by name (any 6-character suffix) or by ARN (complete or partial)."""
    if not secret_id.startswith("arn:"):
        return secretsmanager.Secret.from_secret_name_v2(scope, construct_id, secret_id)
    if _has_secret_suffix(secret_id):
        return secretsmanager.Secret.from_secret_complete_arn(scope, construct_id, secret_id)
    return secretsmanager.Secret.from_secret_partial_arn(scope, construct_id, secret_id)


def parameter_arn(scope: Construct, name: str) -> str:
    """An SSM parameter's ARN from its name ("/vendor/ca.pem" or "vendor-ca") or its ARN."""
    if name.startswith("arn:"):
        return name
    return Stack.of(scope).format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))


def _has_secret_suffix(arn: str) -> bool:
    """Secrets Manager appends '-' and 6 random characters to a secret's name in its complete ARN."""
    name = arn.split(":secret:", 1)[-1]
    return len(name) > 7 and name[-7] == "-" and name[-6:].isalnum()
