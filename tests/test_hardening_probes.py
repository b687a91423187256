"""Security probes against a real daemon while a job runs: an HTTP POST and raw ZMTP 1.0 bytes
to the port, orders to shut down or cancel signed with a wrong key, tampered, unsigned or
replayed. Zero accepted: none gets an answer, none has an effect (the daemon keeps running,
the job keeps going), the first two never even reach the broker (libzmq refuses them in the
handshake), the others are dropped and logged. The CURVE mode's own probes are in
test_daemon_curve.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from daemon_support import (
    LONG,
    DaemonProcess,
    content_image,
    first_progress,
    read_all,
    running_daemon,
    style_png,
    wait_until,
)
from hardening_support import HTTP_POST, raw_tcp, report

from neural_style_protocol.connection import ConnectionInfo
from neural_style_protocol.messages import Cancel, Ping, Shutdown, StatusRequest, Submit
from neural_style_protocol.transport import client_socket, receive
from neural_style_protocol.wire import serialize

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

ZMTP_1 = b"\x01\x00" + b"\x0a\x00shutdown!"  # ZMTP 1.0 framing: an empty identity, one frame
WRONG_KEY = bytes(range(32))
DROPPED = "dropped a message:"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("runtime")) as process:
        yield process


def zmtp3_probes(info: ConnectionInfo) -> dict[str, list[bytes]]:
    """Messages a ZeroMQ peer without the key could send: each an order that would matter."""
    genuine_submit = [
        bytes(f)
        for f in serialize(
            Submit("replayed", content_image()[0], (style_png(),), LONG), info.key_bytes
        )
    ]
    tampered = [bytes(f) for f in serialize(StatusRequest(), info.key_bytes)]
    tampered[2] = tampered[2].replace(b'"status"', b'"shutdown"')
    unsigned = [bytes(f) for f in serialize(Shutdown(), info.key_bytes)]
    unsigned[1] = b""
    return {
        "wrong key shutdown": [bytes(f) for f in serialize(Shutdown(), WRONG_KEY)],
        "wrong key cancel": [bytes(f) for f in serialize(Cancel("victim"), WRONG_KEY)],
        "tampered status into shutdown": tampered,
        "unsigned shutdown": unsigned,
        # Sent once as itself (accepted: a job that is then cancelled), then replayed.
        "replayed submit": genuine_submit,
    }


def drops(daemon: DaemonProcess) -> int:
    return daemon.stderr().count(DROPPED)


def no_answer(socket: zmq.Socket, frames: list[bytes], timeout_ms: int = 500) -> bool:
    socket.send_multipart(frames)
    if socket.poll(timeout_ms):
        return receive(socket, 64) is None
    return True


def test_probes_get_no_answer_and_change_nothing(daemon: DaemonProcess) -> None:
    info = daemon.info()
    context = zmq.Context()
    raw = client_socket(context, info.endpoint)
    refused = 0
    try:
        with daemon.client() as owner:
            victim = owner.submit("victim", content_image(32, 32)[0], [style_png()], LONG)
            first_progress(victim)
            probes = zmtp3_probes(info)
            replayed = probes["replayed submit"]
            raw.send_multipart(replayed)  # the genuine send: accepted, then cancelled
            assert raw.poll(5000) and receive(raw, 64) is not None  # accepted
            assert owner.cancel("replayed").code.value == "cancelled"
            assert raw.poll(5000) and receive(raw, 64) is not None  # told: cancelled
            # Not ZeroMQ 3 at all: libzmq hangs up in the handshake, the broker sees nothing.
            before = drops(daemon)
            for payload in (HTTP_POST, ZMTP_1):
                assert raw_tcp(info, payload)[:4] != b"HTTP"  # no HTTP answer, nothing else
                refused += 1
            marker = [bytes(f) for f in serialize(Ping(), WRONG_KEY)]
            assert no_answer(raw, marker)
            wait_until(lambda: drops(daemon) > before, 10.0, "the marker to be logged")
            assert drops(daemon) == before + 1  # the marker alone: the two never arrived
            # ZeroMQ 3, without the key: dropped unanswered, each logged.
            for name, frames in probes.items():
                assert no_answer(raw, frames), name
                refused += 1
            wait_until(
                lambda: drops(daemon) == before + 1 + len(probes),
                10.0,
                "every probe to be logged as dropped",
            )
            status = owner.status()
            assert status.running is not None and status.running.job_id == "victim"
            assert status.queue_length == 0  # the replayed submit did not come back
            assert daemon.process.poll() is None
            assert owner.cancel("victim").code.value == "cancelled"
            assert read_all(victim)[-1].cancelled
    finally:
        raw.close(0)
        context.term()
    log = daemon.stderr()
    assert "bad signature" in log and "unsigned message" in log and "replayed" in log
    report(
        f"probes: {refused} refused of {refused} (HTTP POST, ZMTP 1.0, wrong-key shutdown "
        f"and cancel, tampered, unsigned, replayed submit); 0 answered, 0 acted on"
    )
