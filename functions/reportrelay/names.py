"""The names the Lambda functions and the CDK app (infra/) must agree on, defined once.

Environment variables the stack sets on a function and the function reads, and the job and claim tables'
key attributes and indexes the stack creates and the functions query. Standard library only, on purpose:
infra imports it without the runtime's dependencies, and a name changed here changes on both sides.
"""

from __future__ import annotations

# ---- environment variables (infra sets them; reportrelay.runtime, people, access, links, ... read them)

BUCKET_ENV = "REPORTRELAY_BUCKET"
CONNECTIONS_FILE_ENV = "REPORTRELAY_CONNECTIONS_FILE"
CONNECTIONS_DOCUMENT_ENV = "REPORTRELAY_CONNECTIONS"
CONNECTIONS_PATH_ENV = "REPORTRELAY_CONNECTIONS_PATH"
HANDLE_KEY_ENV = "REPORTRELAY_HANDLE_KEY"
HOLDER_FUNCTION_ENV = "REPORTRELAY_HOLDER_FUNCTION"
CANCEL_FUNCTION_ENV = "REPORTRELAY_CANCEL_FUNCTION"
API_URL_ENV = "REPORTRELAY_API_URL"
PEOPLE_URL_ENV = "REPORTRELAY_PEOPLE_URL"
STATE_MACHINE_ARN_ENV = "REPORTRELAY_STATE_MACHINE_ARN"
EVENT_BUS_ENV = "REPORTRELAY_EVENT_BUS"
DOWNLOAD_URL_SECONDS_ENV = "REPORTRELAY_DOWNLOAD_URL_SECONDS"
JOBS_TABLE_ENV = "REPORTRELAY_JOBS_TABLE"
CLAIMS_TABLE_ENV = "REPORTRELAY_CLAIMS_TABLE"
ACCESS_ENV = "REPORTRELAY_ACCESS"
ACCESS_FILE_ENV = "REPORTRELAY_ACCESS_FILE"
LINK_KEY_ENV = "REPORTRELAY_LINK_KEY"
LINK_KEY_SECRET_ENV = "REPORTRELAY_LINK_KEY_SECRET"
FETCH_CONTAINER_ENV = "REPORTRELAY_FETCH_CONTAINER"
IN_CONTAINER_ENV = "REPORTRELAY_IN_CONTAINER"
FETCH_STATE_ENV = "REPORTRELAY_FETCH_STATE"
OIDC_ISSUER_ENV = "REPORTRELAY_OIDC_ISSUER"
OIDC_CLIENT_ID_ENV = "REPORTRELAY_OIDC_CLIENT_ID"
OIDC_JWKS_URL_ENV = "REPORTRELAY_OIDC_JWKS_URL"
OIDC_AUTHORIZATION_URL_ENV = "REPORTRELAY_OIDC_AUTHORIZATION_URL"
OIDC_TOKEN_URL_ENV = "REPORTRELAY_OIDC_TOKEN_URL"
OIDC_SCOPES_ENV = "REPORTRELAY_OIDC_SCOPES"

# ---- the job table (reportrelay.jobs)

JOB_KEY_ATTRIBUTE = "id"
JOB_TTL_ATTRIBUTE = "expires_at"
JOB_KIND_ATTRIBUTE = "kind"
JOB_CREATED_ATTRIBUTE = "created_key"
JOB_CONNECTION_ATTRIBUTE = "connection"
JOB_TEAM_ATTRIBUTE = "team"
RECENT_INDEX = "recent"
CONNECTION_INDEX = "by-connection"
TEAM_INDEX = "by-team"
JOB_INDEXES = {
    RECENT_INDEX: JOB_KIND_ATTRIBUTE,
    CONNECTION_INDEX: JOB_CONNECTION_ATTRIBUTE,
    TEAM_INDEX: JOB_TEAM_ATTRIBUTE,
}
"""Each global secondary index and its partition key (all sort on ``created_key``)."""
OUTBOX_INDEX = "outbox"
OUTBOX_ATTRIBUTE = "outbox"
ANNOUNCE_SINCE_ATTRIBUTE = "announce_since"
"""The sparse ``outbox`` index: partition ``outbox`` (only ever "pending"), sorted by ``announce_since``."""
ANNOUNCE_EVENT_ATTRIBUTE = "announce_event_id"
ANNOUNCE_DETAIL_TYPE_ATTRIBUTE = "announce_detail_type"
ANNOUNCE_DETAIL_ATTRIBUTE = "announce_detail"
ANNOUNCE_RESOURCES_ATTRIBUTE = "announce_resources"
ANNOUNCE_ATTEMPTS_ATTRIBUTE = "announce_attempts"
OUTBOX_PROJECTED = (
    ANNOUNCE_EVENT_ATTRIBUTE,
    ANNOUNCE_DETAIL_TYPE_ATTRIBUTE,
    ANNOUNCE_DETAIL_ATTRIBUTE,
    ANNOUNCE_RESOURCES_ATTRIBUTE,
    ANNOUNCE_ATTEMPTS_ATTRIBUTE,
)
"""What the ``outbox`` index projects besides the keys: all an announcement needs to be sent."""

# ---- the claim table (reportrelay.claims)

CLAIM_KEY_ATTRIBUTE = "claim"
CLAIM_TTL_ATTRIBUTE = "expires_at"

# ---- files bundled beside the package

USER_SPECS_DIR_NAME = "reportrelay-vendors"
"""The user's vendor specs (config/vendors/*.json), bundled beside the package under this folder."""


def connection_parameter_name(path: str, name: str) -> str:
    """The SSM parameter that holds one deployed connection (infra.connections writes it)."""
    return f"{path.rstrip('/')}/{name}"
