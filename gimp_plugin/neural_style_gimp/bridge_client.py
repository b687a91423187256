"""The plug-in's way to the daemon where GIMP's Python cannot import pyzmq: the bridge, a process
of the user's own installation (neural_style_gimp.bridge), over its standard input and output.
Standard library only: this runs in GIMP's Python."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence

from neural_style_protocol.codec import decode, encode
from neural_style_protocol.errors import ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import DEFAULT_LIMITS
from neural_style_protocol.messages import MessageType, Result, Submit, new_job_id
from neural_style_protocol.params import JobParams

from . import bridge_pipe as pipe
from .errors import PluginError
from .processes import clean_environment, flatpak_advice, host_command
from .progress import ProgressReport

Show = Callable[[str, float], None]
# As daemon_link's, which needs pyzmq.
FrameCallback = Callable[[int, RawImage], None]
LiveCallback = Callable[[RawImage], None]
REINSTALL = "Run `neural-style install-gimp-plugin` again from the installation GIMP should use."
EXIT_WAIT = 5.0  # seconds for the bridge to exit once its input is closed


class BridgeLink:
    """The bridge, started at construction; `open` reaches the daemon through it."""

    def __init__(self, command: Sequence[str], sandboxed: bool | None = None) -> None:
        self._command = host_command(command, sandboxed)
        self._sandboxed = sandboxed
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.device = ""
        self.bridge_seconds = 0.0  # the last job as the bridge timed it: the rest is the pipe's
        try:
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                env=clean_environment(),
                cwd=os.path.expanduser("~"),  # not the plug-in's folder, which holds a copy
                # On Windows a console program would open a window of its own.
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
        except OSError as error:
            self._errors.close()
            reason = "does not exist" if isinstance(error, FileNotFoundError) else str(error)
            raise PluginError(
                f"GIMP's Python cannot import pyzmq, and the bridge that stands in for it "
                f"cannot be started: {self._command[0]} {reason}. {REINSTALL}"
                f"{flatpak_advice(sandboxed)}"
            ) from None
        # Both are pipes, asked for above: Popen types them as possibly None.
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin = self._process.stdin
        self._stdout = self._process.stdout

    @classmethod
    def open(
        cls,
        command: Sequence[str],
        connection_file: str,
        start_command: Sequence[str] | None,
        show: Show | None = None,
        sandboxed: bool | None = None,
    ) -> BridgeLink:
        link = cls(command, sandboxed)
        try:
            link._send(
                pipe.OPEN,
                {
                    "connection_file": connection_file,
                    "start_command": list(start_command) if start_command else None,
                },
            )
            header, _ = link._answer(pipe.READY, show)
            link.device = str(header.get("device", ""))
            return link
        except BaseException:
            link.close()
            raise

    def stylize(
        self,
        content: RawImage,
        styles: Sequence[bytes],
        params: JobParams,
        report: ProgressReport,
        show: Show,
        *,
        style_masks: Sequence[RawImage | None] = (),
        style_source_masks: Sequence[RawImage | None] = (),
        sequence: Sequence[RawImage] = (),
        on_frame: FrameCallback | None = None,
        on_live: LiveCallback | None = None,
    ) -> Result:
        """One job through the bridge, with the same progress and messages as the direct way;
        the masks and a sequence's frames ride in the Submit, as they would to the daemon, and
        each frame comes back to `on_frame` as soon as it is done, each live image to
        `on_live`."""
        try:
            job = Submit(
                new_job_id(),
                content,
                tuple(styles),
                params,
                style_masks=tuple(style_masks),
                style_source_masks=tuple(style_source_masks),
                sequence=tuple(sequence),
            )
            body, buffers = encode(job)
        except ProtocolError as error:
            raise PluginError(f"The job cannot be sent: {error.message}.") from None

        def relay(text: str, fraction: float) -> None:
            report.fraction = fraction
            show(text, fraction)

        self._send(
            pipe.STYLIZE,
            {"layer": report.layer, "layers": report.layers, "message": body},
            buffers,
        )
        header, result_buffers = self._answer(pipe.RESULT, relay, on_frame, on_live)
        try:
            result = decode(
                MessageType.RESULT, header.get("message"), result_buffers, DEFAULT_LIMITS
            )
        except ProtocolError as error:
            raise self._broken(f"its result is malformed ({error.message})") from None
        assert isinstance(result, Result)
        self.bridge_seconds = float(header.get("seconds", 0.0))
        return result

    def close(self) -> None:
        """Close the bridge's input (it exits: cancelling a job, were one running) and wait."""
        process = self._process
        for stream in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._errors.close()

    def __enter__(self) -> BridgeLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, kind: str, fields: dict, buffers=()) -> None:
        try:
            pipe.write_message(self._stdin, kind, fields, buffers)
        except OSError:
            raise self._broken("it stopped taking requests") from None

    def _answer(
        self,
        expected: str,
        show: Show | None,
        on_frame: FrameCallback | None = None,
        on_live: LiveCallback | None = None,
    ) -> tuple[dict, list[bytes]]:
        """Read the bridge's messages up to the answer, relaying progress lines and images."""
        while True:
            try:
                message = pipe.read_message(self._stdout)
            except pipe.PipeBroken as error:
                raise self._broken(str(error)) from None
            except OSError as error:
                raise self._broken(f"reading from it failed ({error})") from None
            if message is None:
                raise self._broken("it ended")
            header, buffers = message
            kind = header["kind"]
            if kind == pipe.SHOW:
                if show is not None:
                    show(str(header.get("text", "")), float(header.get("fraction", 0.0)))
            elif kind == pipe.FRAME:
                image = self._image(header, buffers)
                if on_frame is not None:
                    on_frame(self._index(header), image)
            elif kind == pipe.LIVE:
                image = self._image(header, buffers)
                if on_live is not None:
                    on_live(image)
            elif kind == pipe.FAILED:
                raise PluginError(str(header.get("message", "The bridge failed.")))
            elif kind == expected:
                return header, buffers
            else:
                raise self._broken(f"it answered {kind!r} where {expected!r} was due")

    def _image(self, header: dict, buffers: list[bytes]) -> RawImage:
        """An RGBA image the bridge sent, checked as the codec checks images."""
        try:
            width, height = int(header["width"]), int(header["height"])
            (data,) = buffers
            return RawImage(data, width, height, 4)
        except (KeyError, TypeError, ValueError, ProtocolError) as error:
            raise self._broken(f"it sent a malformed image ({error})") from None

    def _index(self, header: dict) -> int:
        index = header.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise self._broken(f"it sent a frame numbered {index!r}")
        return index

    def _broken(self, what: str) -> PluginError:
        """The bridge failed: what it said on its error output is the best clue."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(EXIT_WAIT)
        self._errors.seek(0)
        lines = [
            line
            for line in self._errors.read()[-4000:].decode("utf-8", "replace").splitlines()
            if line.strip()
        ]
        said = f": {' '.join(lines[-3:])}" if lines else ""
        code = self._process.returncode
        status = f" (exit code {code})" if code not in (None, 0) else ""
        return PluginError(
            f"The bridge to the style daemon ({' '.join(self._command)}) failed: "
            f"{what}{status}{said}. {REINSTALL}{flatpak_advice(self._sandboxed)}"
        )
