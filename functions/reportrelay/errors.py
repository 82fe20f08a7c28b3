"""The errors a job can end with.

The class name is the error code: Lambda reports it as ``errorType``, the state machine's Retry and
Catch rules match on it, and the ``Report Failed`` event carries it as ``error.code``. Messages are
for people: they say what happened and, where possible, what to do. They never contain secrets,
request bodies or query strings.
"""

from __future__ import annotations


class ReportRelayError(Exception):
    """Base of every error reportrelay raises on purpose."""

    retryable = False
    vendor_words: str | None = None
    """The vendor's own message, when the error quotes its answer (a hook may act on what it said)."""

    @property
    def code(self) -> str:
        return type(self).__name__


# Bad input: the job or the configuration is wrong; retrying cannot help.
class BadRequest(ReportRelayError):
    """The job request is invalid (unknown connection, bad format, missing field)."""


class ConfigurationError(ReportRelayError):
    """The connection configuration is invalid or a secret it references is missing."""


class InternalError(ReportRelayError):
    """A bug in reportrelay; the function's log has the details, the event only says where."""


# Provider answers that retrying cannot change.
class ProviderRejected(ReportRelayError):
    """The provider refused the request (400, 403, 404, ...)."""


class ProviderAuthFailed(ReportRelayError):
    """The provider refused the credentials, even after signing in again."""


class ProviderProtocolError(ReportRelayError):
    """The provider answered in a shape reportrelay does not understand."""


class ReportGenerationFailed(ReportRelayError):
    """The provider reports that generating the report failed."""


class ReportCancelled(ReportRelayError):
    """The report was cancelled, at the provider or by a user."""


class DeadlineExceeded(ReportRelayError):
    """The job ran past its overall deadline and was abandoned."""


class SubmitUncertain(ReportRelayError):
    """A submit attempt may have queued the report at the provider (its step died or lost its answer after
    the queue call) and the provider offers no way to find that report again: the job fails rather than
    queue a second one. The message says where and when it may have been queued, and what to look for."""


class DownloadFailed(ReportRelayError):
    """A download that cannot be tried again kept failing (a single-use result, regenerated and lost
    as many times as allowed); nothing was stored."""


class TransferOutOfTime(ReportRelayError):
    """Fetch stopped before its function's time ran out: the upload was aborted, nothing was stored."""


# Transient: the state machine retries these with backoff.
class TransientProviderError(ReportRelayError):
    retryable = True


class AwsUnavailable(ReportRelayError):
    """An AWS service a step uses (S3, Secrets Manager, KMS, SSM) throttled or failed beyond the SDK's own
    retries; the step is retried, and every step is safe to run again."""

    retryable = True


class ProviderThrottled(TransientProviderError):
    """HTTP 429 (or 503 with Retry-After): the request was not processed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(TransientProviderError):
    """The provider could not be reached or answered 503 (or, to a request that changes nothing, 502/504):
    the request was not processed, or repeating it does no harm.

    Also a request that changes nothing (a GET) which kept failing with a 5xx or a timeout: whatever
    the provider did with it, repeating it cannot queue a second report.
    """


class ProviderServerError(TransientProviderError):
    """The provider answered 500 or another 5xx: it may or may not have acted on the request."""


class ProviderTimeout(TransientProviderError):
    """The provider did not answer in time: it may or may not have acted on the request."""


class DownloadInterrupted(TransientProviderError):
    """The download broke off or delivered fewer bytes than announced; nothing was stored."""
