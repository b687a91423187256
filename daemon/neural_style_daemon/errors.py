"""Domain errors, in one place. Boundaries turn them into messages: the command line into one
line and exit code 2, the daemon into an error reply."""

from __future__ import annotations


class StyleTransferError(Exception):
    """Base of every error a user can act on; its text is the whole message."""


class InvalidInputError(StyleTransferError, ValueError):
    """An image, parameter or option that cannot be used as given."""


class WeightsError(StyleTransferError):
    """Model weights that cannot be found, downloaded, verified or loaded."""


class DeviceError(StyleTransferError):
    """A compute device that was asked for but is not available."""


class DeviceMemoryError(StyleTransferError):
    """The device ran out of memory for a job, after the engine's own fallback (a shorter
    L-BFGS history); `fitting_side` is a processing size (long side) that would fit, where it
    is known (the CPU's check before a job), else None."""

    def __init__(self, message: str, fitting_side: int | None = None) -> None:
        super().__init__(message)
        self.fitting_side = fitting_side


class DaemonError(StyleTransferError):
    """The daemon cannot start (one is already running, the endpoint is taken), or a daemon
    command (start, stop) cannot complete."""
