"""Reaching the style daemon from GIMP: find the running one, start one the way the installer
recorded, run a job, and turn every failure into a message a GIMP user can act on."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Sequence

from neural_style_protocol.client import DaemonClient, connect
from neural_style_protocol.errors import (
    ClientError,
    DaemonTimeout,
    DaemonUnavailable,
    ErrorCode,
    ProtocolError,
)
from neural_style_protocol.images import BytesLike, RawImage
from neural_style_protocol.limits import DEFAULT_LIMITS
from neural_style_protocol.messages import Error, Progress, Result, new_job_id
from neural_style_protocol.params import JobParams

from .errors import PluginError
from .processes import clean_environment
from .progress import ProgressReport
from .settings import InstallSettings

START_TIMEOUT = 120.0  # seconds: a first start may load the model's weights from disk
PING_TIMEOUT = 2.0
START_BY_HAND = "start it in a terminal with `neural-style start`"

Show = Callable[[str, float], None]  # (text, fraction of the bar)
# (0-based frame, its RGBA image): a frame of a sequence, as soon as the daemon has finished it.
FrameCallback = Callable[[int, RawImage], None]
# The result so far, RGBA at the layer's size, now and then (JobParams.live_interval).
LiveCallback = Callable[[RawImage], None]


def open_daemon(
    connection_file: str,
    settings: InstallSettings | None,
    show: Show | None = None,
    start_timeout: float = START_TIMEOUT,
) -> DaemonClient:
    """A client of a daemon that answers: the running one, else one started now."""
    override = connection_file.strip() or None
    try:
        return connect(override, timeout=PING_TIMEOUT)
    except DaemonUnavailable as error:
        if override is not None:
            raise PluginError(
                f"The style daemon named in the connection file {override} does "
                f"not answer ({error}). Start it, or clear the "
                f"connection file setting to use the usual one."
            ) from None
    if settings is None:
        raise PluginError(
            f"No style daemon is running, and this plug-in was not installed "
            f"with `neural-style install-gimp-plugin`, which records how to "
            f"start one: {START_BY_HAND}, or reinstall the plug-in that way."
        )
    if show is not None:
        show("Neural style: starting the style daemon (the first start loads the model)", 0.0)
    start_daemon(settings.start_command, start_timeout)
    try:
        return connect(timeout=PING_TIMEOUT * 2)
    except DaemonUnavailable as error:
        raise PluginError(
            f"The style daemon was started but does not answer ({error}); "
            f"{START_BY_HAND} to see why."
        ) from None


def start_daemon(command: Sequence[str], timeout: float = START_TIMEOUT) -> None:
    """Run the recorded start command (it returns once the daemon answers)."""
    shown = " ".join(command)
    try:
        finished = subprocess.run(
            list(command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=clean_environment(),
            timeout=timeout,
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        raise PluginError(
            f"No style daemon is running and it cannot be started: {command[0]} "
            f"does not exist (was its installation moved or removed?). Run "
            f"`neural-style install-gimp-plugin` again from the installation "
            f"GIMP should use, or {START_BY_HAND}."
        ) from None
    except PermissionError:
        raise PluginError(
            f"No style daemon is running and it cannot be started: {command[0]} "
            f"may not be run (permission denied); {START_BY_HAND}."
        ) from None
    except subprocess.TimeoutExpired:
        raise PluginError(
            f"The style daemon did not start within {timeout:g} s ({shown}); "
            f"{START_BY_HAND} to see why."
        ) from None
    if finished.returncode != 0:
        lines = [line for line in (finished.stderr or finished.stdout).splitlines() if line]
        reason = " ".join(lines[-3:]) if lines else "no message"
        raise PluginError(
            f"The style daemon failed to start (`{shown}` exited with code "
            f"{finished.returncode}): {reason}"
        )


def describe_failure(code: ErrorCode, message: str) -> str:
    """The daemon's refusal of a job, as advice."""
    if code is ErrorCode.OUT_OF_MEMORY:
        return (
            f"The style daemon ran out of memory ({message}). Choose a smaller processing "
            f"size (for example 768 or 512 px), or close other programs using the GPU."
        )
    if code is ErrorCode.TOO_LARGE:
        return (
            f"The layer or a style image is too large for the style daemon ({message}): "
            f"scale it down, or stylise a smaller crop."
        )
    if code is ErrorCode.BUSY:
        return f"The style daemon's queue is full ({message}); try again when a job finishes."
    if code is ErrorCode.INVALID_IMAGE:
        return f"The style daemon could not use an image: {message}."
    if code is ErrorCode.INVALID_PARAM:
        return f"The style daemon refused a setting: {message}."
    if code is ErrorCode.SHUTTING_DOWN:
        return f"The style daemon is shutting down ({message}); run the filter again."
    if code is ErrorCode.WORKER_FAILED:
        return (
            f"The style daemon's worker failed ({message}). `neural-style status` and the "
            f"daemon's log say more."
        )
    return f"The style daemon could not run the job: {message} ({code.value})."


def check_layer_size(width: int, height: int) -> None:
    """Refuse, before sending megabytes, a layer larger than any daemon takes."""
    side, pixels = DEFAULT_LIMITS.max_side, DEFAULT_LIMITS.max_pixels
    if max(width, height) > side or width * height > pixels:
        raise PluginError(
            f"The layer is {width} x {height} pixels; the style daemon takes at "
            f"most {side} pixels a side. Scale the layer down (the processing "
            f"size only sets the detail), or stylise a smaller crop."
        )


def daemon_device(client: DaemonClient) -> str:
    """The device the daemon computes on, as its status names it ("cpu", "cuda:0 (...)")."""
    try:
        return client.status().device
    except ClientError as error:  # it stopped since it answered the connection's ping
        raise PluginError(
            f"Lost the style daemon: {error}. `neural-style status` says "
            f"whether it is still running."
        ) from None


def stylize(
    client: DaemonClient,
    content: RawImage,
    styles: Sequence[BytesLike],
    params: JobParams,
    report: ProgressReport,
    show: Show,
    should_cancel: Callable[[], bool] | None = None,
    *,
    style_masks: Sequence[RawImage | None] = (),
    style_source_masks: Sequence[RawImage | None] = (),
    sequence: Sequence[RawImage] = (),
    on_frame: FrameCallback | None = None,
    on_live: LiveCallback | None = None,
) -> Result:
    """Run one job to its end, showing its progress; PluginError for every failure.
    `should_cancel` is asked about ten times a second (it may raise to end the job at once:
    leaving the stream cancels it). The masks are the protocol's (Submit): () or one grey
    RawImage or None per style. `sequence`, an animation's frames after `content`, makes it a
    sequence, whose frames `on_frame` gets one by one as they are done; `on_live` gets the
    live images the job's params ask for."""
    check_layer_size(content.width, content.height)
    try:
        # resubmit: a daemon that is restarted meanwhile gets the same job again.
        with client.submit(
            new_job_id(),
            content,
            list(styles),
            params,
            style_masks=style_masks,
            style_source_masks=style_source_masks,
            sequence=sequence,
            resubmit=True,
            should_cancel=should_cancel,
        ) as stream:
            for event in stream:
                text = report.update(event)
                if text is not None:
                    show(text, report.fraction)
                if isinstance(event, Progress):
                    if event.frame_image is not None and on_frame is not None:
                        on_frame(event.frame - 1, event.frame_image)
                    if event.live_image is not None and on_live is not None:
                        on_live(event.live_image)
                if isinstance(event, Result):
                    if event.cancelled:
                        raise PluginError(
                            "The style daemon cancelled the job before it ended "
                            "(stopped, or another program cancelled it)."
                        )
                    return event
                if isinstance(event, Error):
                    raise PluginError(describe_failure(event.code, event.message))
    except DaemonTimeout as error:
        raise PluginError(
            f"The style daemon did not answer in time: {error}. "
            f"`neural-style status` says whether it is still running."
        ) from None
    except ClientError as error:
        raise PluginError(f"Lost the style daemon during the job: {error}.") from None
    except ProtocolError as error:  # refused on this side, before sending (a style too large)
        raise PluginError(describe_failure(error.code, error.message)) from None
    raise PluginError("The style daemon ended the job without a result.")


class DirectLink:
    """The plug-in's way to the daemon where pyzmq imports: a client in this process. The
    bridge's link (bridge_client.BridgeLink) has the same methods."""

    def __init__(self, client: DaemonClient) -> None:
        self._client = client
        self.device = daemon_device(client)  # what a processing size of 0 stands for

    @classmethod
    def open(
        cls, connection_file: str, settings: InstallSettings | None, show: Show | None = None
    ) -> DirectLink:
        client = open_daemon(connection_file, settings, show)
        try:
            return cls(client)
        except BaseException:
            client.close()
            raise

    def stylize(
        self,
        content: RawImage,
        styles: Sequence[BytesLike],
        params: JobParams,
        report: ProgressReport,
        show: Show,
        should_cancel: Callable[[], bool] | None = None,
        *,
        style_masks: Sequence[RawImage | None] = (),
        style_source_masks: Sequence[RawImage | None] = (),
        sequence: Sequence[RawImage] = (),
        on_frame: FrameCallback | None = None,
        on_live: LiveCallback | None = None,
    ) -> Result:
        return stylize(
            self._client,
            content,
            styles,
            params,
            report,
            show,
            should_cancel,
            style_masks=style_masks,
            style_source_masks=style_source_masks,
            sequence=sequence,
            on_frame=on_frame,
            on_live=on_live,
        )

    def deliver_sent(self, timeout: float = PING_TIMEOUT) -> None:
        """Wait until the daemon has read what was sent (a cancel, say): it answers a ping only
        after the messages before it, and closing drops whatever is still queued."""
        with contextlib.suppress(ClientError):
            self._client.ping(timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DirectLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
