"""ZeroMQ sockets for the protocol: the daemon's ROUTER and a client's DEALER, set up the way the
facts in ../shared/docs/protocol-and-security.md ask for. Thin on purpose: frames in, frames
out; what the frames mean is wire.py's business. The only module of this package besides
client.py that imports pyzmq.

Loopback daemons sign every message (wire.py). A daemon that listens on other hosts must also
authenticate its clients and encrypt: CURVE, with the daemon's key pair here and the allowed
client keys checked by its ZAP handler (the daemon's server/curve.py).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from .connection import ConnectionInfo
from .errors import ConnectionFileError, DaemonUnavailable
from .images import BytesLike
from .limits import DEFAULT_LIMITS, Limits

DEFAULT_ENDPOINT = "tcp://127.0.0.1:*"  # a free port, chosen by binding
# A non-empty ZAP domain makes libzmq refuse peers that do not speak ZMTP 3: a web page's HTTP
# POST or raw ZMTP 1.0 bytes would otherwise be delivered to the ROUTER as messages.
ZAP_DOMAIN = b"neural-style"
# High-water marks count messages, not bytes: a few buffered 256 MiB submits are already a lot.
SERVER_RCVHWM = 8
# Progress is rate-limited (about 10 a second) and the heartbeat notices a client that stopped
# reading well before this many messages queue up for it.
SERVER_SNDHWM = 256
CLIENT_HWM = 64
# The routing id the ROUTER prepends, plus some slack to tell "too many" from "just enough".
_ROUTING_FRAMES = 1


class EndpointError(ValueError):
    """An endpoint this daemon will not listen on."""


@dataclass(frozen=True)
class CurveKeys:
    """A CURVE key pair, each key 40 bytes of Z85 text as ZeroMQ's certificates hold them."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class Received:
    """One multipart message as read: the first frames (up to the cap) and how many more the
    sender put in it (dropped unread, so that a flood of frames cannot fill memory)."""

    frames: list[BytesLike]
    dropped: int = 0


def check_endpoint(endpoint: str, *, curve: bool = False) -> str:
    """`tcp://HOST:PORT` (PORT may be `*` or 0: any free one) or `ipc://PATH`. HOST must be a
    loopback address unless `curve` (clients authenticated by their CURVE keys, traffic
    encrypted): without it, messages are signed but not encrypted, and anyone who can reach
    the port could try them."""
    if endpoint.startswith("ipc://"):
        if len(endpoint) <= len("ipc://"):
            raise EndpointError("an ipc endpoint needs a path: ipc:///run/user/1000/ns.sock")
        return endpoint
    if not endpoint.startswith("tcp://") or ":" not in endpoint[len("tcp://") :]:
        raise EndpointError(
            f"endpoint {endpoint!r}: use tcp://127.0.0.1:PORT (PORT may be *) or ipc://PATH"
        )
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if port == "0":
        port = "*"
    if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise EndpointError(f"endpoint {endpoint!r}: the port must be 1..65535 or *")
    if not curve and not _is_loopback(host):
        raise EndpointError(
            f"endpoint {endpoint!r}: without --curve-keys only loopback "
            f"addresses (127.0.0.1, ::1) are served, since messages are signed "
            f"but not encrypted; to listen on other hosts, give --curve-keys "
            f"DIR (clients then need an allowed CURVE key)"
        )
    return f"tcp://{host}:{port}"


def _is_loopback(host: str) -> bool:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def server_socket(
    context: zmq.Context,
    endpoint: str = DEFAULT_ENDPOINT,
    limits: Limits = DEFAULT_LIMITS,
    curve: CurveKeys | None = None,
) -> tuple[zmq.Socket, str]:
    """A bound ROUTER and the endpoint it actually listens on (with the port chosen). With
    `curve` (the daemon's key pair), a CURVE server: a ZAP handler must already run in
    `context` to say which client keys are allowed, or every handshake fails."""
    endpoint = check_endpoint(endpoint, curve=curve is not None)
    socket = context.socket(zmq.ROUTER)
    try:
        if curve is not None:
            socket.setsockopt(zmq.CURVE_SERVER, 1)
            socket.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
            # Fail closed: without this, a CURVE server whose ZAP handler is missing accepts
            # any client key (encryption without authentication).
            socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, SERVER_RCVHWM)
        socket.setsockopt(zmq.SNDHWM, SERVER_SNDHWM)
        # Per frame: libzmq drops the connection of a peer that sends a bigger one.
        socket.setsockopt(zmq.MAXMSGSIZE, max(limits.max_frame_bytes, limits.max_json_bytes))
        socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        # Unroutable replies raise instead of vanishing: a client that left is noticed.
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # A client reconnecting with its old routing id takes over at once.
        socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        socket.bind(endpoint)
        bound = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        if bound.startswith("ipc://"):
            os.chmod(bound[len("ipc://") :], 0o600)  # the umask gave it 755 or so
    except BaseException:
        socket.close(0)
        raise
    return socket, bound


def client_socket(
    context: zmq.Context,
    endpoint: str,
    limits: Limits = DEFAULT_LIMITS,
    curve: tuple[bytes, CurveKeys] | None = None,
) -> zmq.Socket:
    """A DEALER connected to `endpoint` (connecting never fails; a missing daemon shows as
    silence, which the client's timeouts turn into an error). `curve`: the daemon's public key
    and this client's key pair, for a daemon that authenticates clients."""
    socket = context.socket(zmq.DEALER)
    try:
        if curve is not None:
            server_key, keys = curve
            socket.setsockopt(zmq.CURVE_SERVERKEY, server_key)
            socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
            socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        socket.setsockopt(zmq.LINGER, 0)  # close() and term() must never wait for the daemon
        socket.setsockopt(zmq.SNDHWM, CLIENT_HWM)
        socket.setsockopt(zmq.RCVHWM, CLIENT_HWM * 4)
        socket.setsockopt(zmq.MAXMSGSIZE, max(limits.max_frame_bytes, limits.max_json_bytes))
        socket.connect(endpoint)
    except BaseException:
        socket.close(0)
        raise
    return socket


def load_secret_certificate(path: str | os.PathLike[str]) -> CurveKeys:
    """The key pair in a ZeroMQ secret certificate (`zmq.auth.create_certificates` writes
    them); ConnectionFileError if it is missing, has no secret key, or others may read it."""
    from zmq.auth.certs import load_certificate

    try:
        info = os.stat(path)
        if os.name != "nt" and (info.st_mode & 0o077 or info.st_uid != os.getuid()):
            raise ConnectionFileError(
                f"the CURVE certificate {path} must be private to its owner (chmod 600 {path})"
            )
        public, secret = load_certificate(path)
    except (OSError, ValueError) as error:
        raise ConnectionFileError(f"cannot read the CURVE certificate {path}: {error}") from None
    if secret is None:
        raise ConnectionFileError(f"{path} holds no secret key: give the .key_secret file")
    return CurveKeys(public, secret)


def client_curve(info: ConnectionInfo) -> tuple[bytes, CurveKeys] | None:
    """The daemon's public key and this client's key pair, for a daemon that authenticates
    clients with CURVE; None for a loopback daemon (signatures only)."""
    if info.curve_server_key is None or info.curve_client_key_file is None:
        return None
    try:
        keys = load_secret_certificate(info.curve_client_key_file)
    except ConnectionFileError as error:
        raise DaemonUnavailable(
            f"cannot authenticate to the daemon at {info.endpoint}: {error}"
        ) from None
    return info.curve_server_key.encode("ascii"), keys


def receive(socket: zmq.Socket, max_frames: int) -> Received | None:
    """The next message without blocking (None if there is none), frames as memoryviews
    (no copy). Frames beyond `max_frames` are read and dropped one at a time."""
    try:
        first = socket.recv(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None
    frames: list[BytesLike] = [first.buffer]
    dropped = 0
    more = first.more
    while more:
        # The rest of a multipart message is already here: these never block.
        frame = socket.recv(copy=False)
        if len(frames) < max_frames:
            frames.append(frame.buffer)
        else:
            dropped += 1
        more = frame.more
    return Received(frames, dropped)


def server_frame_cap(limits: Limits) -> int:
    """How many frames a ROUTER keeps of one message: the routing id and the protocol's."""
    return limits.max_frames + _ROUTING_FRAMES


def send(socket: zmq.Socket, frames: Sequence[BytesLike]) -> None:
    """Send without blocking: zmq.Again when the peer's queue is full; on a ROUTER,
    ZMQError(EHOSTUNREACH) when the peer is gone."""
    socket.send_multipart(list(frames), flags=zmq.NOBLOCK, copy=False)
