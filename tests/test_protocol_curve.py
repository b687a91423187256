"""The protocol's side of the CURVE mode, without a daemon: the two connection-file fields
(absent, so unchanged, for a loopback daemon), which endpoints need CURVE, what a connection
file of a daemon on another machine means, the client's secret certificate, and a CURVE server
socket that lets nobody in when no ZAP handler runs (fail closed)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from neural_style_protocol.connection import (
    ConnectionInfo,
    new_key,
    read_connection_file,
    stale,
    write_connection_file,
)
from neural_style_protocol.errors import ConnectionFileError, DaemonUnavailable
from neural_style_protocol.transport import (
    CurveKeys,
    EndpointError,
    check_endpoint,
    client_curve,
    client_socket,
    load_secret_certificate,
    server_socket,
)

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX modes")

LOOPBACK_FIELDS = {
    "endpoint",
    "key",
    "pid",
    "version",
    "protocol_version",
    "transport",
    "signature_scheme",
}


def keys() -> CurveKeys:
    return CurveKeys(*zmq.curve_keypair())


def certificate(path: Path, pair: CurveKeys, mode: int = 0o600) -> Path:
    path.write_text(
        f'curve\n    public-key = "{pair.public.decode()}"\n'
        f'    secret-key = "{pair.secret.decode()}"\n'
    )
    path.chmod(mode)
    return path


def info(endpoint: str = "tcp://127.0.0.1:5599", **curve: str) -> ConnectionInfo:
    return ConnectionInfo(endpoint, new_key(), 4242, "0.1.0", **curve)


def test_a_loopback_daemons_file_has_exactly_the_fields_it_always_had(tmp_path: Path) -> None:
    path = write_connection_file(info(), tmp_path / "daemon.json")
    assert set(json.loads(path.read_text())) == LOOPBACK_FIELDS
    assert read_connection_file(path).curve_server_key is None


def test_the_curve_fields_round_trip_and_are_checked(tmp_path: Path) -> None:
    server = keys().public.decode()
    written = info(
        "tcp://0.0.0.0:5599",
        curve_server_key=server,
        curve_client_key_file=str(tmp_path / "me.key_secret"),
    )
    assert read_connection_file(write_connection_file(written, tmp_path / "d.json")) == written
    with pytest.raises(ValueError, match="go together"):
        info(curve_server_key=server)
    with pytest.raises(ValueError, match="Z85"):
        info(curve_server_key="not a key", curve_client_key_file="x")


@pytest.mark.parametrize(
    "endpoint, local",
    [
        ("tcp://127.0.0.1:1", True),
        ("tcp://[::1]:1", True),
        ("tcp://localhost:1", True),
        ("tcp://0.0.0.0:1", True),
        ("tcp://192.168.1.20:1", False),
        ("tcp://studio.lan:1", False),
    ],
)
def test_only_a_local_daemons_pid_says_whether_it_is_gone(endpoint: str, local: bool) -> None:
    gone = replace(info(endpoint), pid=2**22 + 12345)  # beyond Linux's pid_max default
    assert gone.is_local is local
    assert stale(gone) is local  # another machine's pid means nothing here


def test_endpoints_beyond_loopback_need_curve() -> None:
    for endpoint in ("tcp://0.0.0.0:5599", "tcp://192.168.1.20:*", "tcp://studio.lan:5599"):
        with pytest.raises(EndpointError, match="--curve-keys"):
            check_endpoint(endpoint)
        assert check_endpoint(endpoint, curve=True) == endpoint
    assert check_endpoint("tcp://127.0.0.1:0", curve=True) == "tcp://127.0.0.1:*"


def test_the_clients_secret_certificate_must_be_private(tmp_path: Path) -> None:
    pair = keys()
    mine = certificate(tmp_path / "me.key_secret", pair)
    assert load_secret_certificate(mine) == pair
    curved = info(curve_server_key=keys().public.decode(), curve_client_key_file=str(mine))
    assert client_curve(curved) == (curved.curve_server_key.encode(), pair)
    assert client_curve(info()) is None  # loopback: signatures only
    mine.chmod(0o644)
    with pytest.raises(ConnectionFileError, match="chmod 600"):
        load_secret_certificate(mine)
    with pytest.raises(DaemonUnavailable, match="cannot authenticate"):
        client_curve(curved)
    public_only = tmp_path / "me.key"
    public_only.write_text(f'curve\n    public-key = "{pair.public.decode()}"\n')
    public_only.chmod(0o600)
    with pytest.raises(ConnectionFileError, match="no secret key"):
        load_secret_certificate(public_only)


def test_a_curve_server_without_a_zap_handler_lets_nobody_in() -> None:
    """Fail closed: with no handler to ask, libzmq would otherwise accept any client key."""
    server_keys, client_keys = keys(), keys()
    context = zmq.Context()
    server, endpoint = server_socket(context, "tcp://127.0.0.1:*", curve=server_keys)
    client = client_socket(context, endpoint, curve=(server_keys.public, client_keys))
    monitor = client.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_SUCCEEDED
    )
    try:
        client.send_multipart([b"hello"])
        assert not server.poll(1000)  # nothing delivered
        assert monitor.poll(5000)
        event = recv_monitor_message(monitor)
        assert event["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED
    finally:
        # Every socket closed before term(), the monitor first (disable_monitor() would
        # leave term() waiting).
        for socket in (monitor, client, server):
            socket.close(0)
        context.term()
