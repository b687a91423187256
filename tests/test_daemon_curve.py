"""`neural-style serve --curve-keys DIR` on all interfaces (0.0.0.0): a client whose public key
is in DIR/clients is served, so are the daemon's own machine's clients through the connection
file; an unknown key, a client without CURVE, an HTTP POST are refused. Without --curve-keys a
non-loopback endpoint is refused with a clear message and exit code 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import zmq
from daemon_support import (
    QUICK,
    DaemonProcess,
    content_image,
    daemon_env,
    read_all,
    running_daemon,
    style_png,
    wait_until,
)
from hardening_support import HTTP_POST, raw_tcp

from neural_style_daemon.errors import DaemonError
from neural_style_daemon.server.curve import load_curve_setup, write_certificate
from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import ConnectionInfo
from neural_style_protocol.errors import DaemonUnavailable
from neural_style_protocol.messages import Result
from neural_style_protocol.transport import CurveKeys

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def new_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A client's key pair as zmq.auth writes it: NAME.key (public), NAME.key_secret."""
    keys = CurveKeys(*zmq.curve_keypair())
    write_certificate(folder / f"{name}.key", keys, secret=False)
    write_certificate(folder / f"{name}.key_secret", keys, secret=True)
    return folder / f"{name}.key", folder / f"{name}.key_secret"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("curve")
    (folder / "keys" / "clients").mkdir(mode=0o700, parents=True)
    (folder / "laptop").mkdir(mode=0o700)
    public, _ = new_certificate(folder / "laptop", "laptop")
    public.rename(folder / "keys" / "clients" / "laptop.key")  # given to the daemon
    return folder


@pytest.fixture(scope="module")
def daemon(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(
        tmp_path_factory.mktemp("runtime"),
        "--endpoint",
        "tcp://0.0.0.0:0",
        "--curve-keys",
        str(keys / "keys"),
    ) as process:
        yield process


def remote(daemon: DaemonProcess, certificate: Path) -> ConnectionInfo:
    """The connection file as another machine would hold it: the daemon's address, its key and
    public key, and that machine's own certificate."""
    info = daemon.info()
    port = info.endpoint.rsplit(":", 1)[1]
    return replace(info, endpoint=f"tcp://127.0.0.1:{port}", curve_client_key_file=str(certificate))


def served(client: DaemonClient, job_id: str) -> None:
    assert client.ping(timeout=10.0) < 10.0
    end = read_all(client.submit(job_id, content_image()[0], [style_png()], QUICK))[-1]
    assert isinstance(end, Result) and not end.cancelled


def test_the_local_connection_file_names_the_daemons_key(daemon: DaemonProcess, keys: Path) -> None:
    info = daemon.info()
    assert info.endpoint.startswith("tcp://0.0.0.0:") and info.is_local
    server_public = (keys / "keys" / "server.key").read_text()
    assert f'public-key = "{info.curve_server_key}"' in server_public
    for private in (
        Path(info.curve_client_key_file),
        keys / "keys" / "server.key_secret",
        daemon.connection_file,
    ):
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600, private
    with DaemonClient.from_connection_file(daemon.connection_file) as client:
        served(client, "local")


def test_an_allowed_client_key_is_served(daemon: DaemonProcess, keys: Path) -> None:
    with DaemonClient(remote(daemon, keys / "laptop" / "laptop.key_secret")) as client:
        served(client, "from-the-laptop")


@pytest.mark.slow
def test_an_unknown_key_and_a_client_without_curve_are_refused(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    _, stranger = new_certificate(tmp_path, "stranger")
    # Whether the ping waits for an answer or cannot even be queued depends on how far the
    # refused handshake got: either way no answer, and the key named as a cause.
    with (
        DaemonClient(remote(daemon, stranger)) as client,
        pytest.raises(DaemonUnavailable, match=r"no answer|not allow this client's CURVE key"),
    ):
        client.ping(timeout=2.0)
    unknown = (tmp_path / "stranger.key").read_text().split('"')[1]
    wait_until(
        lambda: f"refused a CURVE client: unknown key {unknown}" in daemon.stderr(),
        10.0,
        "the refusal to be logged",
    )
    # The right signing key but no CURVE (an old client, or one that skipped it): no handshake.
    plain = replace(remote(daemon, stranger), curve_server_key=None, curve_client_key_file=None)
    with DaemonClient(plain) as client, pytest.raises(DaemonUnavailable, match=r"no answer|hung"):
        client.ping(timeout=2.0)
    assert not raw_tcp(plain, HTTP_POST).startswith(b"HTTP")
    assert "Traceback" not in daemon.stderr()
    with daemon.client() as client:
        assert client.ping() < 5.0


def test_a_certificate_others_can_read_is_refused_by_the_client(
    daemon: DaemonProcess, keys: Path, tmp_path: Path
) -> None:
    _, secret = new_certificate(tmp_path, "careless")
    secret.chmod(0o644)
    with pytest.raises(DaemonUnavailable, match="chmod 600"):
        DaemonClient(remote(daemon, secret))


def test_the_key_folder_is_made_private_and_checked(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    setup = load_curve_setup(folder)  # first use: the daemon's key pair is made
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and setup.allowed == frozenset()
    assert stat.S_IMODE((folder / "server.key_secret").stat().st_mode) == 0o600
    (folder / "clients").mkdir()
    public, _ = new_certificate(tmp_path, "laptop")
    public.rename(folder / "clients" / "laptop.key")
    again = load_curve_setup(folder)
    assert again.server == setup.server and len(again.allowed) == 1
    assert again.local != setup.local  # this machine's clients get a fresh pair each start
    (folder / "server.key_secret").chmod(0o644)
    with pytest.raises(DaemonError, match="chmod 600"):
        load_curve_setup(folder)
    (folder / "server.key_secret").chmod(0o600)
    folder.chmod(0o777)  # anyone could add a client key
    with pytest.raises(DaemonError, match="chmod 700"):
        load_curve_setup(folder)


@pytest.mark.parametrize("command", ["serve", "start"])
def test_listening_beyond_loopback_without_curve_is_refused(tmp_path: Path, command: str) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            command,
            "--endpoint",
            "tcp://0.0.0.0:5599",
            "--weights",
            "random",
        ],
        env=daemon_env(runtime),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("neural-style: error: endpoint 'tcp://0.0.0.0:5599'")
    assert "--curve-keys" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(runtime.iterdir()) == []  # no connection file, no log, nothing started
