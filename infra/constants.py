"""Names and paths every construct agrees on, in one place (plain Python: importing it starts no CDK)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
PACKAGE_DIR = FUNCTIONS_DIR / "reportrelay"
REQUIREMENTS_FILE = REPO_ROOT / "requirements.txt"
STATE_MACHINE_FILE = REPO_ROOT / "statemachines" / "report.asl.json"
CONNECTIONS_FILE = REPO_ROOT / "config" / "connections.json"
SCHEDULES_FILE = REPO_ROOT / "config" / "schedules.json"
ACCESS_FILE = REPO_ROOT / "config" / "access.json"
SCHEMAS_DIR = REPO_ROOT / "schemas"
# Where the bundler keeps installed Lambda dependencies between syntheses (git-ignored via build/).
BUNDLE_CACHE_DIR = REPO_ROOT / "build" / "lambda-deps"

SERVICE = "reportrelay"
DEFAULT_STACK_NAME = "ReportRelay"
DEFAULT_EVENT_BUS_NAME = "reportrelay"
EVENT_SOURCE = "reportrelay"
DETAIL_TYPE_READY = "Report Ready"
DETAIL_TYPE_FAILED = "Report Failed"
SCHEMA_FILES = {DETAIL_TYPE_READY: "report-ready.json", DETAIL_TYPE_FAILED: "report-failed.json"}

# Custom metrics the conclude function emits through Powertools EMF (reportrelay.observability).
METRICS_NAMESPACE = "ReportRelay"
METRICS_DIMENSIONS = {"service": SERVICE}
METRIC_REPORTS_READY = "ReportsReady"
METRIC_REPORTS_FAILED = "ReportsFailed"
METRIC_BYTES_FETCHED = "BytesFetched"
METRIC_JOB_DURATION = "JobDuration"
# The announce-pending function's (reportrelay.outbox.sweep): how long the oldest announcement has waited.
METRIC_OLDEST_PENDING_ANNOUNCEMENT = "OldestPendingAnnouncementSeconds"

# One runtime and architecture for every function; the bundler installs wheels for exactly these.
PYTHON_VERSION = "3.12"
LAMBDA_RUNTIME_NAME = f"python{PYTHON_VERSION}"
LAMBDA_ARCHITECTURE_NAME = "arm64"
PIP_PLATFORM = "manylinux2014_aarch64"
DOCKER_PLATFORM = "linux/arm64"

# The ${...} substitutions in statemachines/report.asl.json.
PLACEHOLDER_SUBMIT = "SubmitFunctionArn"
PLACEHOLDER_CHECK = "CheckFunctionArn"
PLACEHOLDER_FETCH = "FetchFunctionArn"
PLACEHOLDER_CONCLUDE = "ConcludeFunctionArn"
PLACEHOLDER_WAIT_FOR_SLOT = "WaitForSlotFunctionArn"
PLACEHOLDER_EVENT_BUS = "EventBusName"  # no longer in the file: Conclude announces (reportrelay.outbox)
FUNCTION_PLACEHOLDERS = (
    PLACEHOLDER_SUBMIT,
    PLACEHOLDER_CHECK,
    PLACEHOLDER_FETCH,
    PLACEHOLDER_CONCLUDE,
    PLACEHOLDER_WAIT_FOR_SLOT,
)
# The container task that takes over a Fetch (reportrelay.container): its FetchInContainer state.
CONTAINER_PLACEHOLDERS = (
    "FetchClusterArn",
    "FetchTaskDefinitionArn",
    "FetchSubnets",
    "FetchSecurityGroup",
    "FetchAssignPublicIp",
)
#: What they are filled with in a deployment without the container task, where Fetch never hands over.
NO_CONTAINER = "none"
PLACEHOLDERS = FUNCTION_PLACEHOLDERS + CONTAINER_PLACEHOLDERS

# reportrelay.sealing binds every sealed field to its job with this encryption context key.
SEALING_CONTEXT_KEY = "reportrelay:job"
# A connection's body, as compact JSON, in a standard SSM parameter (4 KB; infra.connections).
MAX_CONNECTION_PARAMETER_BYTES = 4096
# Secrets granted one by one (each provider function's role names each): beyond this many, IAM's 10,240
# characters of inline policy per role are at risk, and the connectionSecretsPrefix setting is required.
MAX_EXACT_SECRET_GRANTS = 40
# Lambda allows 4 KB of environment in all: the API function carries the access policy beside some 1.7 KB
# of names and URLs.
MAX_API_DOCUMENTS_ENV_BYTES = 2048
