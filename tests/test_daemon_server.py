"""One real daemon process for the module (random weights, CPU, loopback), driven by real
clients: jobs, progress, cancel, several clients, resubmits, a killed worker, clients that go
away. Every test leaves the daemon idle for the next."""

from __future__ import annotations

import json
import os
import signal
import socket as sockets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from daemon_support import (
    LONG,
    QUICK,
    DaemonProcess,
    alpha_of,
    content_image,
    daemon_env,
    first_progress,
    kinds,
    read_all,
    running_daemon,
    style_png,
    wait_until,
)

from neural_style_protocol.client import DaemonClient
from neural_style_protocol.errors import DaemonUnavailable, ErrorCode
from neural_style_protocol.messages import (
    Accepted,
    Error,
    Ping,
    Progress,
    Result,
    Submit,
    WorkerState,
)
from neural_style_protocol.params import JobParams
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.transport import client_socket, receive, send
from neural_style_protocol.wire import deserialize, serialize, sign

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

CLIENT_TIMEOUT = 3.0  # the daemon's --client-timeout here
QUEUE_LENGTH = 2


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(
        tmp_path_factory.mktemp("runtime"),
        "--client-timeout",
        str(CLIENT_TIMEOUT),
        "--queue-length",
        str(QUEUE_LENGTH),
        "--max-side",
        "512",
        idle_worker=True,
    ) as process:
        yield process


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[DaemonClient]:
    with daemon.client() as client:
        yield client
    assert_idle(daemon)


def assert_idle(daemon: DaemonProcess) -> None:
    """No job left running or queued (a test that leaks one would slow the next)."""
    with daemon.client() as probe:

        def idle() -> bool:
            reply = probe.status()
            return reply.running is None and reply.queue_length == 0

        wait_until(idle, 20.0, "the daemon to be idle")


def test_a_job_streams_accepted_progress_and_a_result(client: DaemonClient) -> None:
    content, pixels = content_image(40, 32)
    events = read_all(client.submit("first-job", content, [style_png()], QUICK))
    assert kinds(events)[0] == "Accepted" and events[0].queue_position == 0
    progress = [event for event in events if isinstance(event, Progress)]
    assert progress and [p.seq for p in progress] == sorted({p.seq for p in progress})
    assert progress[-1].iteration == progress[-1].iterations == 3
    result = events[-1]
    assert isinstance(result, Result) and not result.cancelled
    assert (result.image.width, result.image.height) == (40, 32)
    assert np.array_equal(alpha_of(result), pixels[..., 3])  # alpha passes through untouched
    assert result.stats.steps == 3


def test_ping_and_status_are_answered_while_a_job_runs(
    client: DaemonClient, daemon: DaemonProcess
) -> None:
    stream = client.submit("busy", content_image(32, 32)[0], [style_png()], LONG)
    first_progress(stream)
    with daemon.client() as other:
        times = [other.ping(timeout=5.0) for _ in range(20)]
        status = other.status(timeout=5.0)
    assert status.worker_state is WorkerState.BUSY and status.running is not None
    assert status.running.job_id == "busy"
    # The worker's resident memory (VGG16's weights alone are 59 MB), read as it is now.
    assert status.memory_bytes is not None and status.memory_bytes > 59 * 2**20
    assert max(times) < 5.0
    print(
        f"ping during a job: median {sorted(times)[10] * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms"
    )
    assert client.cancel("busy").code is ErrorCode.CANCELLED
    assert read_all(stream)[-1].cancelled


def test_cancel_a_running_job_returns_its_partial_image_and_twice_is_harmless(
    client: DaemonClient,
) -> None:
    content, pixels = content_image(32, 32)
    stream = client.submit("to-cancel", content, [style_png()], LONG)
    first_progress(stream)
    first = client.cancel("to-cancel")
    second = client.cancel("to-cancel")
    assert (first.code, second.code) == (ErrorCode.CANCELLED, ErrorCode.CANCELLED)
    assert "partial result follows" in first.message and "already" in second.message
    result = read_all(stream)[-1]
    assert isinstance(result, Result) and result.cancelled
    assert 0 < result.stats.steps < LONG.iterations
    assert (result.image.width, result.image.height) == (32, 32)
    assert np.array_equal(alpha_of(result), pixels[..., 3])
    after = client.cancel("to-cancel")
    assert after.code is ErrorCode.CANCELLED and "already cancelled" in after.message


def test_cancel_a_queued_job(client: DaemonClient, daemon: DaemonProcess) -> None:
    running = client.submit("ahead", content_image(32, 32)[0], [style_png()], LONG)
    first_progress(running)
    with daemon.client() as other:
        waiting = other.submit("behind", content_image()[0], [style_png()], QUICK)
        accepted = next(waiting)
        assert isinstance(accepted, Accepted) and accepted.queue_position == 1
        reply = other.cancel("behind")
        assert reply.code is ErrorCode.CANCELLED and "before it started" in reply.message
        end = read_all(waiting)[-1]
        assert isinstance(end, Error) and end.code is ErrorCode.CANCELLED
        assert other.status().queue_length == 0
    client.cancel("ahead")
    assert read_all(running)[-1].cancelled


def test_cancel_after_the_end_and_of_an_unknown_id(client: DaemonClient) -> None:
    read_all(client.submit("finished", content_image()[0], [style_png()], QUICK))
    after = client.cancel("finished")
    assert after.code is ErrorCode.NOT_FOUND and "already finished" in after.message
    unknown = client.cancel("never-submitted")
    assert unknown.code is ErrorCode.NOT_FOUND and unknown.job_id == "never-submitted"


def test_two_clients_at_once(daemon: DaemonProcess, client: DaemonClient) -> None:
    params = JobParams(iterations=10)
    with daemon.client() as other:
        first = client.submit("one", content_image(40, 32, seed=1)[0], [style_png()], params)
        second = other.submit("two", content_image(32, 40, seed=2)[0], [style_png(seed=3)], params)
        results = {}
        for stream in (first, second):
            events = read_all(stream)
            results[stream.job_id] = events
    positions = sorted(events[0].queue_position for events in results.values())
    assert positions == [0, 1]
    for job_id, size in (("one", (40, 32)), ("two", (32, 40))):
        result = results[job_id][-1]
        assert isinstance(result, Result) and result.job_id == job_id
        assert (result.image.width, result.image.height) == size


def test_a_resubmitted_finished_id_gets_the_kept_result_without_a_second_run(
    client: DaemonClient, daemon: DaemonProcess
) -> None:
    content = content_image()[0]
    first = read_all(client.submit("kept", content, [style_png()], QUICK))[-1]
    with daemon.client() as reconnected:
        again = read_all(reconnected.submit("kept", content, [style_png()], QUICK))
    assert kinds(again) == ["Result"]  # no Accepted, no Progress: nothing ran
    assert again[0].stats == first.stats
    assert bytes(again[0].image.data) == bytes(first.image.data)


def test_a_resubmitted_running_id_joins_the_job(
    client: DaemonClient, daemon: DaemonProcess
) -> None:
    content = content_image(32, 32)[0]
    stream = client.submit("shared", content, [style_png()], LONG)
    first_progress(stream)
    with daemon.client() as other:
        joined = other.submit("shared", content, [style_png()], LONG)
        assert isinstance(next(joined), Accepted)
        assert isinstance(next(joined), Progress)
        client.cancel("shared")
        assert read_all(joined)[-1].cancelled
    assert read_all(stream)[-1].cancelled


def test_a_full_queue_answers_busy(client: DaemonClient) -> None:
    streams = [
        client.submit(f"fill-{index}", content_image(32, 32)[0], [style_png()], LONG)
        for index in range(QUEUE_LENGTH + 1)
    ]
    first_progress(streams[0])
    for stream in streams[1:]:
        assert isinstance(next(stream), Accepted)
    refused = read_all(client.submit("one-too-many", content_image()[0], [style_png()], QUICK))
    assert isinstance(refused[-1], Error) and refused[-1].code is ErrorCode.BUSY
    for stream in reversed(streams):
        client.cancel(stream.job_id)
        read_all(stream)


def test_a_style_that_is_not_an_image_fails_that_job_only(client: DaemonClient) -> None:
    events = read_all(client.submit("bad-style", content_image()[0], [b"not an image"], QUICK))
    assert isinstance(events[-1], Error) and events[-1].code is ErrorCode.INVALID_IMAGE
    assert "style image 1" in events[-1].message
    assert isinstance(
        read_all(client.submit("after", content_image()[0], [style_png()], QUICK))[-1], Result
    )


def test_the_connection_file_is_private(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(os.stat(daemon.connection_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.folder).st_mode) == 0o700


def test_the_broker_process_never_loads_torch(daemon: DaemonProcess) -> None:
    broker_maps = Path(f"/proc/{daemon.pid}/maps").read_text()
    worker_maps = Path(f"/proc/{daemon.worker_pid()}/maps").read_text()
    assert "libtorch" in worker_maps  # the check can see it where it is...
    assert "libtorch" not in broker_maps  # ...and it is not in the broker


@pytest.mark.slow
def test_a_client_that_stops_heart_beating_has_its_job_cancelled(daemon: DaemonProcess) -> None:
    """A raw socket submits and then says nothing more (as a plug-in GIMP has frozen)."""
    info = daemon.info()
    context = zmq.Context()
    socket = client_socket(context, info.endpoint)
    try:
        submit = Submit("silent", content_image(32, 32)[0], (style_png(),), LONG)
        send(socket, serialize(submit, info.key_bytes))
        with daemon.client() as probe:
            wait_until(lambda: probe.status().running is not None, 30.0, "the job to start")
            started = time.monotonic()
            wait_until(
                lambda: probe.status().running is None,
                10 * CLIENT_TIMEOUT,
                "the job of the silent client to be cancelled",
            )
        assert time.monotonic() - started < 10 * CLIENT_TIMEOUT
    finally:
        socket.close(0)
        context.term()


def test_a_client_that_disconnects_has_its_job_cancelled(daemon: DaemonProcess) -> None:
    with daemon.client() as leaving:
        first_progress(leaving.submit("orphan", content_image(32, 32)[0], [style_png()], LONG))
    # Closed without a cancel: the next progress cannot be routed, or the heartbeat stops.
    assert_idle(daemon)


@pytest.mark.slow
def test_a_killed_worker_fails_its_job_and_is_replaced(
    daemon: DaemonProcess, client: DaemonClient
) -> None:
    stream = client.submit("doomed", content_image(32, 32)[0], [style_png()], LONG)
    first_progress(stream)
    os.kill(daemon.worker_pid(), signal.SIGKILL)
    end = read_all(stream)[-1]
    assert isinstance(end, Error) and end.code is ErrorCode.WORKER_FAILED
    assert "SIGKILL" in end.message
    daemon.wait_worker(WorkerState.IDLE)
    result = read_all(client.submit("after-the-crash", content_image()[0], [style_png()], QUICK))[
        -1
    ]
    assert isinstance(result, Result) and not result.cancelled


def test_a_wrong_key_gets_no_answer_and_the_daemon_keeps_serving(
    daemon: DaemonProcess, client: DaemonClient
) -> None:
    info = daemon.info()
    forged = type(info)(info.endpoint, "ab" * 32, info.pid, info.version)
    with DaemonClient(forged) as intruder, pytest.raises(DaemonUnavailable):
        intruder.ping(timeout=1.0)
    assert client.ping() < 5.0


def _raw_exchange(socket: zmq.Socket, frames: list, timeout_ms: int = 1000) -> list | None:
    """Send raw frames; the reply's frames, or None if none comes within the timeout."""
    send(socket, frames)
    if not socket.poll(timeout_ms):
        return None
    return receive(socket, 64).frames


def test_tampered_unsigned_and_replayed_messages_get_no_answer(daemon: DaemonProcess) -> None:
    info = daemon.info()
    context = zmq.Context()
    socket = client_socket(context, info.endpoint)
    try:
        ping = serialize(Ping(), info.key_bytes)
        assert _raw_exchange(socket, ping) is not None  # genuine: a pong
        assert _raw_exchange(socket, ping) is None  # the same frames again: a replay
        fresh = serialize(Ping(), info.key_bytes)
        tampered = [*fresh[:2], bytes(fresh[2]).replace(b'"ping"', b'"status"'), *fresh[3:]]
        assert _raw_exchange(socket, tampered) is None
        unsigned = [fresh[0], b"", *fresh[2:]]
        assert _raw_exchange(socket, unsigned) is None
        assert _raw_exchange(socket, [b"garbage"]) is None
        assert _raw_exchange(socket, serialize(Ping(), info.key_bytes)) is not None
    finally:
        socket.close(0)
        context.term()


def test_a_signed_but_invalid_message_gets_an_error_reply(daemon: DaemonProcess) -> None:
    info = daemon.info()
    frames = serialize(
        Submit("too-many", content_image()[0], (style_png(),), QUICK), info.key_bytes
    )
    content = json.loads(bytes(frames[3]))
    content["body"]["params"]["iterations"] = 10**6
    content_bytes = json.dumps(content).encode()
    forged = [
        frames[0],
        sign(info.key_bytes, bytes(frames[2]), content_bytes),
        frames[2],
        content_bytes,
        *frames[4:],
    ]
    context = zmq.Context()
    socket = client_socket(context, info.endpoint)
    try:
        reply = _raw_exchange(socket, forged, 5000)
    finally:
        socket.close(0)
        context.term()
    assert reply is not None
    error = deserialize(reply, info.key_bytes, ReplayGuard())
    assert isinstance(error, Error) and error.code is ErrorCode.INVALID_PARAM


@pytest.mark.parametrize(
    "payload",
    [
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 11\r\n\r\nhello world",
        b"\x01\x00" + b"\x0c\x00<NSP|MSG>xx",  # ZMTP 1.0 framing: an empty identity, one frame
    ],
    ids=["http-post", "zmtp-1.0"],
)
def test_non_zmtp3_peers_are_refused(
    daemon: DaemonProcess, client: DaemonClient, payload: bytes
) -> None:
    host, port = daemon.info().endpoint[len("tcp://") :].rsplit(":", 1)
    with sockets.create_connection((host, int(port)), timeout=5.0) as peer:
        peer.sendall(payload)
        # The daemon closes the connection (libzmq refuses the handshake): end of stream.
        try:
            while peer.recv(4096):
                pass
        except ConnectionResetError:
            pass
    assert client.ping() < 5.0


def test_an_oversize_frame_drops_only_that_peer(
    daemon: DaemonProcess, client: DaemonClient
) -> None:
    info = daemon.info()
    context = zmq.Context()
    socket = client_socket(context, info.endpoint)
    try:
        frames = serialize(
            Submit("huge", content_image()[0], (style_png(),), QUICK), info.key_bytes
        )
        # --max-side 512: frames up to 1 MiB. This one is twice that.
        assert _raw_exchange(socket, [*frames[:4], bytes(2 << 20)]) is None
    finally:
        socket.close(0)
        context.term()
    assert client.ping() < 5.0


def test_a_second_daemon_on_the_same_runtime_folder_refuses_to_start(daemon: DaemonProcess) -> None:
    before = daemon.connection_file.read_bytes()
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            "serve",
            "--weights",
            "random",
            "--device",
            "cpu",
            "--no-log-file",
        ],
        env=daemon_env(daemon.runtime),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"already running (pid {daemon.pid}" in second.stderr
    assert daemon.connection_file.read_bytes() == before
    with daemon.client() as client:
        assert client.ping() < 5.0


def test_a_repeated_edit_with_the_same_style_reuses_the_warm_targets(client: DaemonClient) -> None:
    content = content_image(36, 28, seed=11)[0]
    first = read_all(client.submit("warm-1", content, [style_png(seed=5)], QUICK))[-1]
    again = read_all(client.submit("warm-2", content, [style_png(seed=5)], QUICK))[-1]
    assert isinstance(first, Result) and isinstance(again, Result)
    assert first.stats.target_cache_hits == 0
    assert again.stats.target_cache_hits > 0
    assert bytes(again.image.data) == bytes(first.image.data)  # the cache changes no pixel
