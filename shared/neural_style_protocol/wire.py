"""Messages to signed frame lists and back: pure functions over bytes, no sockets.

Frames (after the ROUTER's routing ids, which are the transport's business):

    [b"<NSP|MSG>", signature, header JSON, content JSON, buffer 0, buffer 1, ...]

The signature is the hex HMAC-SHA256 (key from the connection file) over the header and the
content frames, each preceded by its length as 8 big-endian bytes (so bytes cannot move from
one part to the other). The content is {"body": {...}, "buffers": [{"size", "sha256"}...]}:
the digests of the binary frames sit inside the signed part, so the signature covers them too.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ._fields import Reader, check_float, check_str
from ._json import dumps, loads
from .codec import decode, encode
from .errors import SIGNATURE_CODES, ErrorCode, ProtocolError
from .images import BytesLike
from .limits import DEFAULT_LIMITS, ENVELOPE_FRAMES, Limits
from .messages import JOB_ID_PATTERN, MESSAGE_CLASSES, Message, MessageType
from .replay import ReplayGuard
from .version import PROTOCOL_VERSION

DELIMITER = b"<NSP|MSG>"
SIGNATURE_SCHEME = "hmac-sha256"
SESSION = uuid.uuid4().hex  # this process's session id, in every header it sends
_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
_SIGNATURE_BYTES = 64  # hex SHA-256


@dataclass(frozen=True)
class Header:
    """Who sent what, when; signed with the content."""

    type: MessageType
    msg_id: str  # uuid4 hex, fresh for every message
    session: str  # uuid4 hex, one per sending process
    time: float  # seconds since the epoch, checked by the ReplayGuard
    parent_id: str | None = None  # the msg_id of the request this message answers
    version: int = PROTOCOL_VERSION

    def to_wire(self) -> dict[str, object]:
        return {
            "version": self.version,
            "type": self.type.value,
            "msg_id": self.msg_id,
            "session": self.session,
            "time": self.time,
            "parent_id": self.parent_id,
        }

    @classmethod
    # builtins.type: inside this class, `type` is the field above.
    def from_wire(cls, obj: object, accept: builtins.type[Message]) -> Header:
        """The header, refusing other protocol versions and types not in `accept`."""
        reader = Reader(obj, "header")
        # The version first: a newer header's other keys must not mask a version mismatch.
        version = reader.take("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProtocolError(ErrorCode.MALFORMED, "header.version must be an integer")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.BAD_VERSION,
                f"protocol version {version} is not "
                f"supported (this side speaks "
                f"{PROTOCOL_VERSION})",
            )
        name = check_str(reader.take("type"), "header.type", ErrorCode.MALFORMED, max_len=64)
        message_type = _message_type(name, accept)
        parent = reader.take("parent_id")
        header = cls(
            type=message_type,
            msg_id=reader.take_str("msg_id", max_len=32, pattern=_ID_PATTERN),
            session=reader.take_str("session", max_len=32, pattern=_ID_PATTERN),
            time=reader.take_float("time", 0.0, float("inf")),
            parent_id=None
            if parent is None
            else check_str(
                parent, "header.parent_id", ErrorCode.MALFORMED, max_len=32, pattern=_ID_PATTERN
            ),
        )
        reader.done()
        return header


@dataclass(frozen=True)
class Envelope:
    """A deserialized message with its header (for `parent_id` on replies, and logging)."""

    header: Header
    message: Message


def _message_type(name: str, accept: type[Message]) -> MessageType:
    """The type named in a header, if this side accepts it."""
    try:
        message_type = MessageType(name)
    except ValueError:
        message_type = None
    if message_type is None or not issubclass(MESSAGE_CLASSES[message_type], accept):
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"message type {name!r} is not accepted here")
    return message_type


def split_routing(frames: Sequence[BytesLike]) -> tuple[list[BytesLike], list[BytesLike]]:
    """(routing ids, the rest from the delimiter on), as a ROUTER socket receives them."""
    for index, frame in enumerate(frames):
        if _is_delimiter(frame):
            return list(frames[:index]), list(frames[index:])
    raise ProtocolError(ErrorCode.MALFORMED, "no delimiter frame")


def _is_delimiter(frame: object) -> bool:
    # Compare the length first: bytes() of a huge memoryview would copy it.
    return (
        isinstance(frame, (bytes, bytearray, memoryview))
        and _nbytes(frame) == len(DELIMITER)
        and bytes(frame) == DELIMITER
    )


def _nbytes(frame: BytesLike) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def sign(key: bytes, header: bytes, content: bytes) -> bytes:
    """The hex signature of a header frame and a content frame."""
    if not isinstance(key, bytes) or not key:
        raise ValueError("a signing key must be non-empty bytes (see ConnectionInfo.key_bytes)")
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (header, content):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest().encode("ascii")


def serialize(
    message: Message,
    key: bytes,
    *,
    parent_id: str | None = None,
    session: str = SESSION,
    now: float | None = None,
    msg_id: str | None = None,
) -> list[BytesLike]:
    """The frames of a signed message, from the delimiter on. Buffers are passed through
    without copies; `parent_id` names the request a reply answers; `msg_id` (fresh by
    default) lets a client match the replies to a request it is about to send."""
    body, buffers = encode(message)
    digests = [{"size": _nbytes(b), "sha256": hashlib.sha256(b).hexdigest()} for b in buffers]
    if msg_id is None:
        msg_id = uuid.uuid4().hex
    elif not _ID_PATTERN.fullmatch(msg_id):
        raise ValueError("msg_id must be 32 lowercase hex digits (uuid4().hex)")
    header = Header(message.type, msg_id, session, time.time() if now is None else now, parent_id)
    header_bytes = dumps(header.to_wire())
    content_bytes = dumps({"body": body, "buffers": digests})
    return [
        DELIMITER,
        sign(key, header_bytes, content_bytes),
        header_bytes,
        content_bytes,
        *buffers,
    ]


def deserialize(
    frames: Sequence[BytesLike],
    key: bytes,
    replay: ReplayGuard,
    *,
    limits: Limits = DEFAULT_LIMITS,
    accept: type[Message] = Message,
) -> Message:
    """The message in `frames` (starting at the delimiter), or ProtocolError. `accept`
    (ClientMessage in the daemon, DaemonMessage in a client) refuses the other direction."""
    return deserialize_envelope(frames, key, replay, limits=limits, accept=accept).message


def deserialize_envelope(
    frames: Sequence[BytesLike],
    key: bytes,
    replay: ReplayGuard,
    *,
    limits: Limits = DEFAULT_LIMITS,
    accept: type[Message] = Message,
) -> Envelope:
    """Like `deserialize`, with the header. Cheap checks come first (counts and sizes), then
    the signature, and only then is anything parsed beyond what the signature needs."""
    _check_shape(frames, limits)
    signature = _verify_signature(frames, key)
    header_obj: object = None
    body: object = None
    try:
        header_obj = loads(frames[2], "header")
        content = Reader(loads(frames[3], "content"), "content")
        body = content.take("body")
        _verify_buffers(content, frames[ENVELOPE_FRAMES:])
        content.done()
        # Remember the signature only now: a tampered copy must not block the genuine one.
        replay.check(bytes.fromhex(signature.decode("ascii")), _header_time(header_obj))
        header = Header.from_wire(header_obj, accept)
        message = decode(header.type, body, frames[ENVELOPE_FRAMES:], limits)
    except ProtocolError as error:
        _mark_authenticated(error, header_obj, body)
        raise
    return Envelope(header, message)


def _check_shape(frames: Sequence[BytesLike], limits: Limits) -> None:
    """Counts and sizes, before any hashing or parsing."""
    if not frames or not _is_delimiter(frames[0]):
        raise ProtocolError(ErrorCode.MALFORMED, "the message does not start with the delimiter")
    if len(frames) < ENVELOPE_FRAMES:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"{len(frames)} frames, fewer than {ENVELOPE_FRAMES}"
        )
    if len(frames) > limits.max_frames:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{len(frames)} frames, over the limit of {limits.max_frames}"
        )
    total = 0
    for index, frame in enumerate(frames):
        if not isinstance(frame, (bytes, bytearray, memoryview)):
            raise ProtocolError(ErrorCode.MALFORMED, f"frame {index} is not bytes")
        size = _nbytes(frame)
        # The signature, header and content are small: only buffers may be big.
        cap = limits.max_json_bytes if index < ENVELOPE_FRAMES else limits.max_frame_bytes
        if size > cap:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"frame {index} holds {size} bytes, over the limit of {cap}"
            )
        total += size
    if total > limits.max_total_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{total} bytes in all, over the limit of {limits.max_total_bytes}"
        )


def _verify_signature(frames: Sequence[BytesLike], key: bytes) -> bytes:
    """The signature frame as bytes, if it matches the header and content frames."""
    given = bytes(frames[1])
    if not given:
        raise ProtocolError(ErrorCode.BAD_SIGNATURE, "unsigned message")
    expected = sign(key, bytes(frames[2]), bytes(frames[3]))
    # Constant time, so that timing reveals nothing about the expected signature.
    if len(given) != _SIGNATURE_BYTES or not hmac.compare_digest(given, expected):
        raise ProtocolError(ErrorCode.BAD_SIGNATURE, "bad signature (wrong key or tampered)")
    return given


def _verify_buffers(content: Reader, buffers: Sequence[BytesLike]) -> None:
    """Each binary frame against the size and digest the signed content holds for it."""
    digests = content.take_list("buffers", max_len=len(buffers) + 1)
    if len(digests) != len(buffers):
        raise _tampered(f"{len(buffers)} buffers for {len(digests)} signed digests")
    for index, (digest, buffer) in enumerate(zip(digests, buffers)):
        entry = Reader(digest, f"content.buffers[{index}]")
        size = entry.take_int("size", 0, 2**63)
        sha256 = entry.take_str("sha256", max_len=64, pattern=_DIGEST_PATTERN)
        entry.done()
        # The size first: hashing a buffer of the wrong size would be wasted work.
        if size != _nbytes(buffer) or hashlib.sha256(buffer).hexdigest() != sha256:
            raise _tampered(f"buffer {index} differs from its signed digest")


def _tampered(detail: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_SIGNATURE, f"tampered message: {detail}")


def _header_time(header: object) -> float:
    time_value = header.get("time") if isinstance(header, dict) else None
    return check_float(time_value, "header.time", 0.0, float("inf"), ErrorCode.MALFORMED)


def _mark_authenticated(error: ProtocolError, header: object, body: object) -> None:
    """A refusal after the signature matched deserves a reply: say where to send it."""
    if error.code in SIGNATURE_CODES:
        return
    error.authenticated = True
    if isinstance(header, dict):
        msg_id, parent_id = header.get("msg_id"), header.get("parent_id")
        if isinstance(msg_id, str) and _ID_PATTERN.fullmatch(msg_id):
            error.msg_id = msg_id
        if isinstance(parent_id, str) and _ID_PATTERN.fullmatch(parent_id):
            error.parent_id = parent_id
    if isinstance(body, dict):
        job_id = body.get("job_id")
        if isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id):
            error.job_id = job_id
