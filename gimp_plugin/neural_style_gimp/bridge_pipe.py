"""The messages between the plug-in and its bridge, over a pipe: one line of JSON, then the raw
buffers it announces by size. Protocol messages travel inside as the codec's body and buffers,
so both ends check them exactly as the daemon does. Standard library only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from neural_style_protocol.images import BytesLike
from neural_style_protocol.limits import DEFAULT_LIMITS

MAX_HEADER_BYTES = DEFAULT_LIMITS.max_json_bytes
MAX_BUFFER_BYTES = DEFAULT_LIMITS.max_frame_bytes

# Plug-in to bridge.
OPEN = "open"  # connection_file, start_command (list or null): reach or start the daemon
STYLIZE = "stylize"  # layer, layers, message (an encoded Submit): run one job
# Bridge to plug-in.
SHOW = "show"  # text, fraction: a line for GIMP's progress bar
READY = "ready"  # device: the daemon answers
FRAME = "frame"  # index, width, height, one RGBA buffer: a sequence's frame, done
LIVE = "live"  # width, height, one RGBA buffer: the result so far
RESULT = "result"  # message (an encoded Result), seconds (the job, as the bridge timed it)
FAILED = "failed"  # message: what to tell the user


class PipeBroken(Exception):
    """The other end wrote something that is not a bridge message, or stopped mid-message."""


def write_message(
    stream: IO[bytes], kind: str, fields: dict | None = None, buffers: Sequence[BytesLike] = ()
) -> None:
    header = {**(fields or {}), "kind": kind, "buffers": [memoryview(b).nbytes for b in buffers]}
    stream.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
    for buffer in buffers:
        stream.write(buffer)
    stream.flush()


def read_message(stream: IO[bytes]) -> tuple[dict, list[bytes]] | None:
    """The next message (its header without "buffers", and the buffers); None at the end of
    the input; PipeBroken for anything else."""
    line = stream.readline(MAX_HEADER_BYTES + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise PipeBroken("a message header was cut off or is too long")
    try:
        header = json.loads(line)
    except ValueError as error:
        raise PipeBroken(f"a message header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise PipeBroken("a message header is not a JSON object")
    sizes = header.pop("buffers", None)
    if not isinstance(header.get("kind"), str) or not isinstance(sizes, list):
        raise PipeBroken("a message header lacks its kind or its buffer sizes")
    buffers = []
    for size in sizes:
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BUFFER_BYTES:
            raise PipeBroken(f"a buffer size of {size!r} bytes")
        buffers.append(_read_exactly(stream, size))
    return header, buffers


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise PipeBroken(f"the input ended {size - len(data)} bytes into a {size}-byte buffer")
    return data
