"""A client whose daemon goes away mid-job: killed and started again on the same runtime folder
(the client resubmits the same job id there and gets its result), stopped cleanly and started
again (`stop` then `start`), killed for good (a clear error within a bound), a job over an
IPC endpoint, where the restarted daemon keeps the endpoint but not the key, and `stylize` on the
command line outliving its daemon.

A resubmit to the same daemon that already finished the job (the kept result, no second run) is
tested in test_daemon_server.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from daemon_support import (
    QUICK,
    DaemonProcess,
    content_image,
    daemon_env,
    first_progress,
    read_all,
    style_png,
    wait_until,
)
from PIL import Image

from neural_style_protocol.client import DaemonClient, ResubmitPolicy, Resubmitted
from neural_style_protocol.connection import ConnectionInfo, new_key, write_connection_file
from neural_style_protocol.errors import DaemonTimeout, DaemonUnavailable, ErrorCode
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Accepted, Error, JobStats, Progress, Result
from neural_style_protocol.params import JobParams
from neural_style_protocol.restart import (
    SHUTDOWN_WARNING,
    departure,
    ended_by_shutdown,
    successor,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Long enough to be running when the daemon is killed after its first step, short enough to run
# again in a few seconds on the new daemon.
MEDIUM = JobParams(iterations=60, optimizer="adam")
# Generous: the new daemon has to start (import torch, load random weights) on a busy machine.
PATIENT = ResubmitPolicy(attempts=2, wait=60.0)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """The daemons a test starts, all ended afterwards however the test went."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.terminate()  # SIGTERM: its worker exits with it


def start(daemons: list[DaemonProcess], runtime: Path, *options: str) -> DaemonProcess:
    daemon = DaemonProcess(runtime, *options)
    daemons.append(daemon)
    return daemon


def running_job(
    daemon: DaemonProcess, client: DaemonClient, job_id: str, policy: ResubmitPolicy
) -> object:
    """A MEDIUM job submitted with `policy`, read up to its first progress."""
    stream = client.submit(
        job_id,
        content_image(32, 32)[0],
        [style_png()],
        MEDIUM,
        resubmit=policy,
        inactivity_timeout=10.0,
    )
    first_progress(stream)
    return stream


def assert_resubmitted_once(events: list[object], to: DaemonProcess) -> Result:
    notes = [event for event in events if isinstance(event, Resubmitted)]
    assert len(notes) == 1 and notes[0].pid == to.pid, events
    after = events[events.index(notes[0]) + 1 :]
    assert isinstance(after[0], Accepted) and any(isinstance(e, Progress) for e in after)
    result = events[-1]
    assert isinstance(result, Result) and not result.cancelled
    assert (result.image.width, result.image.height) == (32, 32)
    return result


@pytest.mark.slow
def test_a_job_is_resubmitted_to_a_daemon_restarted_after_sigkill(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    runtime = tmp_path / "runtime"
    first = start(daemons, runtime)
    first.wait_listening()
    with DaemonClient.from_connection_file(first.connection_file) as client:
        stream = running_job(first, client, "survivor", PATIENT)
        # A second job of the same client, queued behind the first.
        queued = client.submit("queued", content_image()[0], [style_png()], QUICK, resubmit=PATIENT)
        assert isinstance(next(queued), Accepted)
        first.process.kill()  # no cleanup: the connection file still names it
        first.process.wait()
        second = start(daemons, runtime)
        events = read_all(stream)
        assert client.info.pid == second.pid and client.generation == 1
        # The client has moved already: the other stream follows and resubmits at once.
        followed = read_all(queued)
    result = assert_resubmitted_once(events, second)
    assert result.job_id == "survivor"
    assert "has exited" in next(e for e in events if isinstance(e, Resubmitted)).reason
    note = next(e for e in followed if isinstance(e, Resubmitted))
    assert note.pid == second.pid and "moved" in note.reason
    assert isinstance(followed[-1], Result) and followed[-1].job_id == "queued"


@pytest.mark.slow
def test_a_job_survives_stop_then_start(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    runtime = tmp_path / "runtime"
    first = start(daemons, runtime)
    first.wait_listening()
    with DaemonClient.from_connection_file(first.connection_file) as client:
        stream = running_job(first, client, "patient", PATIENT)
        assert first.terminate() == 0, first.stderr()  # `stop`: the partial result is sent
        second = start(daemons, runtime)
        events = read_all(stream)
    assert_resubmitted_once(events, second)
    assert "shut down" in next(e for e in events if isinstance(e, Resubmitted)).reason


@pytest.mark.slow
def test_without_a_new_daemon_the_client_says_so_within_a_bound(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    daemon = start(daemons, tmp_path / "runtime")
    daemon.wait_listening()
    with DaemonClient.from_connection_file(daemon.connection_file) as client:
        stream = running_job(daemon, client, "orphan", ResubmitPolicy(wait=2.0))
        daemon.process.kill()
        daemon.process.wait()
        began = time.monotonic()
        with pytest.raises(
            (DaemonUnavailable, DaemonTimeout),
            match=r"has exited.*no new daemon was started within 2 s",
        ):
            read_all(stream)
        assert time.monotonic() - began < 30.0


@pytest.mark.slow
def test_a_job_over_an_ipc_endpoint_and_a_restart_on_the_same_path(
    daemons: list[DaemonProcess],
) -> None:
    # A short folder: a Unix socket path must fit in about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="ns-") as folder:
        endpoint = f"ipc://{folder}/daemon.sock"
        runtime = Path(folder) / "runtime"
        first = start(daemons, runtime, "--endpoint", endpoint)
        first.wait_listening()
        info = first.info()
        assert (info.endpoint, info.transport) == (endpoint, "ipc")
        assert stat.S_IMODE((Path(folder) / "daemon.sock").stat().st_mode) == 0o600
        with DaemonClient.from_connection_file(first.connection_file) as client:
            quick = read_all(client.submit("over-ipc", content_image()[0], [style_png()], QUICK))
            assert isinstance(quick[-1], Result) and not quick[-1].cancelled
            stream = running_job(first, client, "same-path", PATIENT)
            first.process.kill()
            first.process.wait()
            second = start(daemons, runtime, "--endpoint", endpoint)
            events = read_all(stream)
            assert client.info.endpoint == endpoint and client.info.key != info.key
        assert_resubmitted_once(events, second)


@pytest.mark.slow
def test_stylize_on_the_command_line_outlives_its_daemon(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    runtime = tmp_path / "runtime"
    content, style, output = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png"
    Image.fromarray(content_image(40, 32)[1]).save(content)
    style.write_bytes(style_png())
    first = start(daemons, runtime)
    first.wait_listening()
    stylize = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            "stylize",
            str(content),
            str(style),
            "-o",
            str(output),
            "--iterations",
            "60",
            "--optimizer",
            "adam",
        ],
        env=daemon_env(runtime),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with first.client() as probe:
            wait_until(lambda: probe.status().running is not None, 60.0, "the job to run")
        first.process.kill()
        first.process.wait()
        second = start(daemons, runtime)
        _, stderr = stylize.communicate(timeout=120)
    finally:
        if stylize.poll() is None:
            stylize.kill()
            stylize.wait()
    assert stylize.returncode == 0, stderr
    assert "resubmitted job" in stderr and f"(pid {second.pid})" in stderr
    assert f"on the daemon at {second.info().endpoint}" in stderr
    with Image.open(output) as image:
        assert image.size == (40, 32)


def test_which_endings_and_which_files_mean_a_restart(tmp_path: Path) -> None:
    """The pure rules, without a daemon: what counts as "stopped under us" and as a successor."""
    partial = Result(
        "j", RawImage(bytes(4), 1, 1), True, JobStats(3, 0.1, 0), warnings=(SHUTDOWN_WARNING,)
    )
    assert ended_by_shutdown(partial, cancel_sent=False)
    assert not ended_by_shutdown(partial, cancel_sent=True)  # the user's own cancel
    assert not ended_by_shutdown(replace(partial, warnings=()), cancel_sent=False)
    assert ended_by_shutdown(Error("j", ErrorCode.SHUTTING_DOWN, "bye"), cancel_sent=False)
    assert not ended_by_shutdown(Error("j", ErrorCode.WORKER_FAILED, "x"), cancel_sent=False)
    path = tmp_path / "daemon.json"
    old = ConnectionInfo("tcp://127.0.0.1:5599", new_key(), os.getpid(), "0.1.0")
    assert successor(path, old) is None  # no file yet
    write_connection_file(old, path)
    assert successor(path, old) is None and departure(path, old) is None
    new = replace(old, key=new_key())
    write_connection_file(new, path)
    assert successor(path, old) == new
    assert "names another daemon" in (departure(path, old) or "")
