"""ZeroMQ sockets for the protocol: the daemon's ROUTER and a client's DEALER, set up the way the
facts in docs/protocol-and-security.md ask for. Thin on purpose: frames in, frames out; what the
frames mean is wire.py's business. The only module of this package besides client.py that
imports pyzmq.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

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
class Received:
    """One multipart message as read: the first frames (up to the cap) and how many more the
    sender put in it (dropped unread, so that a flood of frames cannot fill memory)."""

    frames: list[BytesLike]
    dropped: int = 0


def check_endpoint(endpoint: str) -> str:
    """`tcp://HOST:PORT` on a loopback address (PORT may be `*` or 0: any free one) or
    `ipc://PATH`. Other hosts are refused: messages are signed, not encrypted."""
    if endpoint.startswith("ipc://"):
        if len(endpoint) <= len("ipc://"):
            raise EndpointError("an ipc endpoint needs a path: ipc:///run/user/1000/ns.sock")
        return endpoint
    if not endpoint.startswith("tcp://") or ":" not in endpoint[len("tcp://"):]:
        raise EndpointError(f"endpoint {endpoint!r}: use tcp://127.0.0.1:PORT (PORT may be *) "
                            f"or ipc://PATH")
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if port == "0":
        port = "*"
    if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise EndpointError(f"endpoint {endpoint!r}: the port must be 1..65535 or *")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare != "localhost":
        try:
            loopback = ipaddress.ip_address(bare).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise EndpointError(f"endpoint {endpoint!r}: only loopback addresses (127.0.0.1, "
                                f"::1) are served; the protocol signs messages but does not "
                                f"encrypt them")
    return f"tcp://{host}:{port}"


def server_socket(
    context: zmq.Context, endpoint: str = DEFAULT_ENDPOINT, limits: Limits = DEFAULT_LIMITS
) -> tuple[zmq.Socket, str]:
    """A bound ROUTER and the endpoint it actually listens on (with the port chosen)."""
    endpoint = check_endpoint(endpoint)
    socket = context.socket(zmq.ROUTER)
    try:
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
            os.chmod(bound[len("ipc://"):], 0o600)  # the umask gave it 755 or so
    except BaseException:
        socket.close(0)
        raise
    return socket, bound


def client_socket(
    context: zmq.Context, endpoint: str, limits: Limits = DEFAULT_LIMITS
) -> zmq.Socket:
    """A DEALER connected to `endpoint` (connecting never fails; a missing daemon shows as
    silence, which the client's timeouts turn into an error)."""
    socket = context.socket(zmq.DEALER)
    try:
        socket.setsockopt(zmq.LINGER, 0)  # close() and term() must never wait for the daemon
        socket.setsockopt(zmq.SNDHWM, CLIENT_HWM)
        socket.setsockopt(zmq.RCVHWM, CLIENT_HWM * 4)
        socket.setsockopt(zmq.MAXMSGSIZE, max(limits.max_frame_bytes, limits.max_json_bytes))
        socket.connect(endpoint)
    except BaseException:
        socket.close(0)
        raise
    return socket


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
