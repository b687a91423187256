"""The plug-in's bridge (`python -m neural_style_gimp.bridge`): for a GIMP whose Python cannot
import pyzmq, the user's own Python does the plug-in's daemon work (reaching or starting the
daemon, running jobs with heartbeats, resubmits and cancel) and speaks to the plug-in over its
standard input and output (bridge_pipe). When its input closes (GIMP ended the plug-in), it
cancels the running job and exits."""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
import traceback
from typing import BinaryIO

from neural_style_protocol.codec import decode, encode
from neural_style_protocol.errors import ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import DEFAULT_LIMITS
from neural_style_protocol.messages import MessageType, Submit

from . import bridge_pipe as pipe
from .daemon_link import DirectLink, describe_failure
from .errors import PluginError
from .progress import ProgressReport
from .settings import InstallSettings


class InputClosed(Exception):
    """The plug-in is gone: its end of the pipe closed."""


class Bridge:
    def __init__(self, requests: BinaryIO, replies: BinaryIO) -> None:
        self._requests = requests
        self._replies = replies
        self._inbox: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._link: DirectLink | None = None

    def serve(self) -> None:
        threading.Thread(target=self._read_requests, name="bridge-input", daemon=True).start()
        try:
            while (request := self._inbox.get()) is not None:
                try:
                    self._handle(*request)
                except InputClosed:
                    if self._link is not None:
                        self._link.deliver_sent()  # the job's cancel
                    break
        finally:
            if self._link is not None:
                self._link.close()

    def _read_requests(self) -> None:
        try:
            while (request := pipe.read_message(self._requests)) is not None:
                self._inbox.put(request)
        except (pipe.PipeBroken, OSError) as error:
            print(f"neural-style bridge: {error}; stopping", file=sys.stderr)
        self._closed.set()
        self._inbox.put(None)

    def _handle(self, header: dict, buffers: list[bytes]) -> None:
        try:
            if header["kind"] == pipe.OPEN:
                self._open(header)
            elif header["kind"] == pipe.STYLIZE:
                self._stylize(header, buffers)
            else:
                raise PluginError(f"The bridge got a request it does not know: {header['kind']}.")
        except PluginError as error:
            self._send(pipe.FAILED, {"message": str(error)})
        except ProtocolError as error:  # the plug-in's job, refused before it reached the daemon
            self._send(pipe.FAILED, {"message": describe_failure(error.code, error.message)})
        except (InputClosed, KeyboardInterrupt):
            raise
        except Exception as error:  # a bug: still a message, and the traceback for a report
            traceback.print_exc()
            self._send(
                pipe.FAILED,
                {
                    "message": f"The Neural Style bridge failed unexpectedly "
                    f"({type(error).__name__}: {error}). Please report this."
                },
            )

    def _open(self, header: dict) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        start = header.get("start_command")
        settings = InstallSettings(tuple(start)) if start else None
        self._link = DirectLink.open(str(header.get("connection_file") or ""), settings, self._show)
        self._send(pipe.READY, {"device": self._link.device})

    def _stylize(self, header: dict, buffers: list[bytes]) -> None:
        if self._link is None:
            raise PluginError("The bridge was asked for a job before reaching the daemon.")
        # The Submit carries the job's inputs through the codec's checks; the job id is the
        # link's own, as on the direct path.
        job = decode(MessageType.SUBMIT, header.get("message"), buffers, DEFAULT_LIMITS)
        assert isinstance(job, Submit)
        report = ProgressReport(int(header.get("layers", 1)))
        report.next_layer(int(header.get("layer", 0)))
        started = time.perf_counter()
        result = self._link.stylize(
            job.content,
            job.styles,
            job.params,
            report,
            self._show,
            self._check_input,
            style_masks=job.style_masks,
            style_source_masks=job.style_source_masks,
            sequence=job.sequence,
            on_frame=self._send_frame,
            on_live=self._send_live,
        )
        seconds = time.perf_counter() - started
        body, result_buffers = encode(result)
        self._send(pipe.RESULT, {"message": body, "seconds": seconds}, result_buffers)

    def _check_input(self) -> bool:
        """Asked about ten times a second during a job: raising ends it (leaving the job's
        stream cancels it)."""
        if self._closed.is_set():
            raise InputClosed
        return False

    def _send_frame(self, index: int, image: RawImage) -> None:
        fields = {"index": index, "width": image.width, "height": image.height}
        self._send(pipe.FRAME, fields, [image.data])

    def _send_live(self, image: RawImage) -> None:
        self._send(pipe.LIVE, {"width": image.width, "height": image.height}, [image.data])

    def _show(self, text: str, fraction: float) -> None:
        self._send(pipe.SHOW, {"text": text, "fraction": fraction})

    def _send(self, kind: str, fields: dict, buffers=()) -> None:
        try:
            pipe.write_message(self._replies, kind, fields, buffers)
        except OSError:  # the plug-in went away mid-write
            self._closed.set()
            raise InputClosed from None


def main() -> None:
    requests = sys.stdin.buffer
    # Replies get a descriptor of their own; anything else printed goes to the error output,
    # where it cannot corrupt a message.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with contextlib.suppress(KeyboardInterrupt):
        Bridge(requests, replies).serve()


if __name__ == "__main__":
    main()
