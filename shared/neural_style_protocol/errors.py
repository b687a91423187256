"""The protocol's errors, in one place: an error code that travels on the wire and the
exception every refusal raises."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Why a message or a job failed. The values travel in `Error` replies, so they are part of
    the protocol: add new ones, never rename."""

    # Refusals before or at the signature check. The daemon drops these silently (and logs
    # them): the sender has not proven that it holds the key, so it gets no answer.
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"
    # A signed message that is not acceptable: an error reply names the code.
    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown_type"
    BAD_VERSION = "bad_version"
    TOO_LARGE = "too_large"
    INVALID_PARAM = "invalid_param"
    INVALID_IMAGE = "invalid_image"
    # What happens to a job.
    BUSY = "busy"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    OUT_OF_MEMORY = "out_of_memory"
    TIMED_OUT = "timed_out"
    WORKER_FAILED = "worker_failed"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


# Codes that say "this did not come from someone holding the key (or came twice)".
SIGNATURE_CODES = frozenset({ErrorCode.BAD_SIGNATURE, ErrorCode.REPLAYED})


class ProtocolError(ValueError):
    """A message, a parameter or a connection file that the protocol refuses.

    `authenticated` is True only when the refused message carried a valid, fresh signature:
    a daemon answers those with an `Error` reply (to `msg_id`, about `job_id` when known) and
    drops the others after logging them.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        authenticated: bool = False,
        msg_id: str | None = None,
        job_id: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.authenticated = authenticated
        self.msg_id = msg_id
        self.job_id = job_id
        self.parent_id = parent_id  # the request an unreadable reply answered, when known

    @property
    def is_signature_failure(self) -> bool:
        """A bad signature, a tampered part or a replay: log it and drop it without a reply."""
        return self.code in SIGNATURE_CODES

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


class ConnectionFileError(RuntimeError):
    """A connection file that cannot be written, read or trusted; the text says what to do."""


class ConnectionFileMissing(ConnectionFileError):
    """No connection file: no daemon has been started (or it exited cleanly)."""


class ClientError(RuntimeError):
    """A request a client could not complete; the text says what happened and what to do."""


class DaemonUnavailable(ClientError):
    """No daemon is running, or the one named in the connection file does not answer."""


class DaemonTimeout(ClientError, TimeoutError):
    """The daemon went quiet while a job was waiting or running, or a job ran over its time."""


class DaemonRefused(ClientError):
    """The daemon answered a request with an `Error`: `code` says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{ErrorCode(code).value}: {message}")
        self.code = ErrorCode(code)
        self.message = message
