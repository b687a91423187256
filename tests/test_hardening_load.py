"""Load on a real daemon: 16 clients submitting at the same moment (the queue bound holds, each
is answered: accepted and served, or refused as busy and served on a retry), and a client
process SIGKILLed mid-job (its job is cancelled). The soak with large layers is in
test_hardening_soak.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_support import (
    LONG,
    QUICK,
    DaemonProcess,
    content_image,
    daemon_env,
    first_progress,
    read_all,
    running_daemon,
    style_png,
    wait_until,
)
from hardening_support import PING_BOUND, PingMonitor, report

from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import ConnectionInfo
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Accepted, Error, Result

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

CLIENTS = 16
QUEUE_LENGTH = 4
# Long enough that only a disconnect, not the silence of a client, can cancel a job in time.
CLIENT_TIMEOUT = 60.0
RETRY_WAIT = 0.2  # seconds before a refused client tries again


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(
        tmp_path_factory.mktemp("runtime"),
        "--queue-length",
        str(QUEUE_LENGTH),
        "--client-timeout",
        str(CLIENT_TIMEOUT),
        idle_worker=True,
    ) as process:
        yield process


class ClientRun(threading.Thread):
    """One client: submits when all are ready, keeps its first answer, retries while the
    daemon says busy, then reads its job to the end."""

    def __init__(self, info: ConnectionInfo, index: int, start: threading.Barrier) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.info, self.index, self.start_line = info, index, start
        self.job_id = f"client-{index}"
        self.first: Accepted | Error | None = None
        self.answered = threading.Event()
        self.refusals = 0
        self.end: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with DaemonClient(self.info) as client:
                self.start_line.wait(30.0)
                deadline = time.monotonic() + 120.0
                while True:
                    stream = client.submit(
                        self.job_id, content_image(seed=self.index)[0], [style_png()], QUICK
                    )
                    first = next(stream)
                    if self.first is None:
                        self.first = first  # type: ignore[assignment]
                        self.answered.set()
                    if not (isinstance(first, Error) and first.code is ErrorCode.BUSY):
                        break
                    self.refusals += 1
                    assert time.monotonic() < deadline, "still busy after two minutes"
                    time.sleep(RETRY_WAIT)
                self.end = [first, *stream][-1]
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error
            self.answered.set()


class QueueWatch(threading.Thread):
    """Samples the daemon's queue length until stopped; the longest seen."""

    def __init__(self, info: ConnectionInfo) -> None:
        super().__init__(name="queue-watch", daemon=True)
        self.info, self.longest, self.samples = info, 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        with DaemonClient(self.info) as client:
            while not self.halt.is_set():
                self.longest = max(self.longest, client.status().queue_length)
                self.samples += 1
                self.halt.wait(0.02)


def test_sixteen_clients_at_once_are_all_answered_within_the_queue_bound(
    daemon: DaemonProcess,
) -> None:
    info = daemon.info()
    with daemon.client() as holder, PingMonitor(daemon) as pings:
        # The worker is held, so that the 16 arrive at a full house: exactly QUEUE_LENGTH fit.
        blocker = holder.submit("blocker", content_image(32, 32)[0], [style_png()], LONG)
        first_progress(blocker)
        watch = QueueWatch(info)
        watch.start()
        start_line = threading.Barrier(CLIENTS)
        runs = [ClientRun(info, index, start_line) for index in range(CLIENTS)]
        for run in runs:
            run.start()
        for run in runs:
            assert run.answered.wait(60.0), f"{run.job_id} got no answer"
        firsts = [run.first for run in runs]
        holder.cancel("blocker")
        assert read_all(blocker)[-1].cancelled
        for run in runs:
            run.join(180.0)
            assert not run.is_alive() and run.error is None, (run.job_id, run.error)
        watch.halt.set()
        watch.join(10.0)
    accepted = sorted(f.queue_position for f in firsts if isinstance(f, Accepted))
    busy = [f for f in firsts if isinstance(f, Error)]
    assert accepted == list(range(1, QUEUE_LENGTH + 1))  # behind the blocker, in the bound
    assert len(busy) == CLIENTS - QUEUE_LENGTH
    assert all(f.code is ErrorCode.BUSY and "queue" in f.message for f in busy)
    for run in runs:
        assert isinstance(run.end, Result) and not run.end.cancelled, (run.job_id, run.end)
        assert run.end.job_id == run.job_id
    assert 0 < watch.longest <= QUEUE_LENGTH
    assert not pings.failures and pings.slowest < PING_BOUND
    report(
        f"load: {CLIENTS} clients at once, queue bound {QUEUE_LENGTH}: {len(accepted)} "
        f"queued, {len(busy)} refused busy at first, all {CLIENTS} served "
        f"({sum(run.refusals for run in runs)} busy answers in all); longest queue seen "
        f"{watch.longest} in {watch.samples} samples; slowest ping "
        f"{pings.slowest * 1e3:.0f} ms"
    )


VANISHING_CLIENT = """
import sys, time
from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import read_connection_file
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Progress
from neural_style_protocol.params import JobParams

client = DaemonClient(read_connection_file(sys.argv[1]))
style = open(sys.argv[2], "rb").read()
stream = client.submit("vanishing", RawImage(bytes(32 * 32 * 4), 32, 32), [style],
                       JobParams(iterations=10000, optimizer="adam"))
for event in stream:
    if isinstance(event, Progress):
        print("running", flush=True)
        time.sleep(600)  # still "there" until killed: only the kill ends its connection
"""


def test_a_client_process_killed_mid_job_has_its_job_cancelled(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    style = tmp_path / "style.png"
    style.write_bytes(style_png())
    with subprocess.Popen(
        [sys.executable, "-c", VANISHING_CLIENT, str(daemon.connection_file), str(style)],
        env=daemon_env(daemon.runtime),
        stdout=subprocess.PIPE,
        text=True,
    ) as client:
        try:
            assert client.stdout is not None and client.stdout.readline() == "running\n"
            client.send_signal(signal.SIGKILL)
            client.wait(30)
            killed = time.monotonic()
            with daemon.client() as probe:
                wait_until(
                    lambda: probe.status().running is None,
                    CLIENT_TIMEOUT / 2,
                    "the job of the killed client to be cancelled",
                )
                gone = time.monotonic() - killed
                assert probe.status().queue_length == 0
        finally:
            if client.poll() is None:
                client.kill()
    log = daemon.stderr()
    assert "job vanishing: cancelling it, its client disconnected" in log
    assert "job vanishing cancelled" in log
    report(
        f"client vanished: job cancelled {gone:.2f} s after its client was SIGKILLed "
        f"(client timeout {CLIENT_TIMEOUT:g} s)"
    )
