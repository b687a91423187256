"""Listening beyond loopback, for `serve --curve-keys DIR`: the daemon's CURVE key pair, the
client keys it allows, and the ZAP handler (pyzmq's zmq.auth) that checks each connecting
client's key against them. Messages are still signed with the connection file's key on top.

DIR holds `server.key_secret` (the daemon's key pair, made on first use, private) and
`server.key` (its public key, to give to clients); `DIR/clients/*.key` are the public
certificates of the clients allowed in (as `zmq.auth.create_certificates` writes them). The
daemon also makes a key pair for the clients on its own machine (`neural-style status`, the
GIMP plug-in): its secret certificate sits beside the connection file, which names it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.certs import load_certificate
from zmq.auth.thread import ThreadAuthenticator

from neural_style_protocol.errors import ConnectionFileError
from neural_style_protocol.transport import ZAP_DOMAIN, CurveKeys, load_secret_certificate

from ..errors import DaemonError
from .broker import DropLog

log = logging.getLogger(__name__)

SERVER_NAME = "server"
CLIENTS_FOLDER = "clients"
LOCAL_CLIENT_FILE = "curve-client.key_secret"  # beside the connection file


@dataclass(frozen=True)
class CurveSetup:
    """What the daemon needs to serve CURVE clients."""

    server: CurveKeys
    allowed: frozenset[bytes]  # Z85 public keys of the clients from DIR/clients
    local: CurveKeys  # the key pair of this machine's own clients


def write_certificate(path: Path, keys: CurveKeys, *, secret: bool) -> None:
    """A certificate in zmq.auth's format (public only, or with the secret key), written
    atomically; a secret one is created 0600 and never readable by others."""
    lines = [
        "#   ZeroMQ CURVE " + ("**Secret** Certificate" if secret else "Public Certificate"),
        "metadata",
        "curve",
        f'    public-key = "{keys.public.decode("ascii")}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{keys.secret.decode("ascii")}"')
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def new_keys() -> CurveKeys:
    public, secret = zmq.curve_keypair()
    return CurveKeys(public, secret)


def _check_folder(folder: Path) -> None:
    """Whoever can write to the folder can add a client key: it must be ours alone."""
    info = os.stat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise DaemonError(f"--curve-keys {folder}: not a folder")
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise DaemonError(
            f"--curve-keys {folder}: the folder must belong to you and be "
            f"writable by you alone (chmod 700 {folder})"
        )


def _server_keys(folder: Path) -> CurveKeys:
    """The daemon's key pair, made (with its public certificate beside it) on first use."""
    path = folder / f"{SERVER_NAME}.key_secret"
    if not path.exists():
        keys = new_keys()
        write_certificate(path, keys, secret=True)
        write_certificate(folder / f"{SERVER_NAME}.key", keys, secret=False)
        log.info("made the daemon's CURVE key pair in %s", path)
        return keys
    try:
        return load_secret_certificate(path)
    except ConnectionFileError as error:
        raise DaemonError(f"the daemon's CURVE key: {error}") from None


def _allowed_keys(folder: Path) -> frozenset[bytes]:
    clients = folder / CLIENTS_FOLDER
    if not clients.is_dir():
        return frozenset()
    keys = set()
    for path in sorted(clients.glob("*.key")):
        try:
            keys.add(load_certificate(path)[0])
        except (OSError, ValueError) as error:
            raise DaemonError(f"cannot read the client key {path}: {error}") from None
    return frozenset(keys)


def load_curve_setup(folder: Path) -> CurveSetup:
    """The daemon's keys from `folder` (created, private, if missing) and the allowed clients'
    keys; DaemonError with what to do when something is not right."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_folder(folder)
        server = _server_keys(folder)
        allowed = _allowed_keys(folder)
    except OSError as error:
        raise DaemonError(f"--curve-keys {folder}: {error}") from None
    if not allowed:
        log.warning(
            "no client keys in %s: only clients on this machine can connect (put "
            "their public .key files there and restart the daemon)",
            folder / CLIENTS_FOLDER,
        )
    return CurveSetup(server, allowed, new_keys())


class AllowedKeys:
    """zmq.auth's credentials provider: a client key is let in if it is in the set. Refusals
    are logged at a bounded rate (a refused client retries its handshake several times a
    second)."""

    def __init__(self, keys: frozenset[bytes]) -> None:
        self.keys = keys
        self.refusals = DropLog(per_minute=10, label="refused a CURVE client")

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.keys:
            return True
        self.refusals.note(f"unknown key {key.decode('ascii')}")
        return False


@contextlib.contextmanager
def curve_authenticator(context: zmq.Context, setup: CurveSetup) -> Iterator[AllowedKeys]:
    """Run the ZAP handler for the daemon's socket while the block runs: it must be up before
    the socket binds (with ZAP_ENFORCE_DOMAIN, no handler means no client gets in)."""
    authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
    authenticator.start()
    try:
        provider = AllowedKeys(setup.allowed | {setup.local.public})
        authenticator.configure_curve_callback(ZAP_DOMAIN.decode(), provider)
        yield provider
    finally:
        authenticator.stop()


def write_local_client(path: Path, setup: CurveSetup) -> Path:
    """The secret certificate of this machine's clients, beside the connection file."""
    write_certificate(path, setup.local, secret=True)
    return path
