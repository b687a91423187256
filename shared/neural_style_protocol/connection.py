"""The connection file: where the daemon listens and the key that signs its messages, readable
by its owner only. The daemon binds first and then writes the file (picking a free port and
writing it before binding is racy); clients read it to find the daemon."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import stat
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConnectionFileError, ConnectionFileMissing
from .version import PROTOCOL_VERSION

APP_NAME = "neural-style"
CONNECTION_FILE_NAME = "daemon.json"
SIGNATURE_SCHEME = "hmac-sha256"
TRANSPORTS = ("tcp", "ipc")
_KEY_PATTERN = re.compile(r"(?:[0-9a-f]{2}){16,}")  # at least 128 bits, as Jupyter's
# A CURVE public key as ZeroMQ writes it: 32 bytes in Z85, 40 characters.
_Z85_KEY_PATTERN = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
# Fields left out of the file when unset, so that a loopback daemon's file stays as it was.
_OPTIONAL_FIELDS = ("curve_server_key", "curve_client_key_file")
_MAX_FILE_BYTES = 64 * 1024
_IS_WINDOWS = os.name == "nt"


def new_key() -> str:
    """A fresh signing key: 256 random bits, hex."""
    return os.urandom(32).hex()


@dataclass(frozen=True)
class ConnectionInfo:
    """What a client needs to reach and trust a daemon."""

    endpoint: str  # e.g. "tcp://127.0.0.1:5599" or "ipc:///run/user/1000/neural-style/sock"
    key: str  # hex; the HMAC-SHA256 key
    pid: int  # the daemon's process id
    version: str  # the daemon's package version
    protocol_version: int = PROTOCOL_VERSION
    transport: str = "tcp"
    signature_scheme: str = SIGNATURE_SCHEME
    # Set for a daemon that authenticates clients with CURVE (`serve --curve-keys`): its public
    # key (Z85) and the path of this client's secret certificate (a zmq.auth `.key_secret`
    # file, private to the user). Absent on the loopback daemon's HMAC-only file.
    curve_server_key: str | None = None
    curve_client_key_file: str | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}"
            )
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith(
            f"{self.transport}://"
        ):
            raise ValueError(
                f"endpoint {self.endpoint!r} does not match transport {self.transport!r}"
            )
        if not isinstance(self.key, str) or not _KEY_PATTERN.fullmatch(self.key):
            raise ValueError("key must be at least 32 lowercase hex digits")
        for name in ("pid", "protocol_version"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.version, str):
            raise ValueError("version must be a string")
        if self.signature_scheme != SIGNATURE_SCHEME:
            raise ValueError(f"signature scheme {self.signature_scheme!r} is not supported")
        self._check_curve()

    def _check_curve(self) -> None:
        server, client = self.curve_server_key, self.curve_client_key_file
        if (server is None) != (client is None):
            raise ValueError("curve_server_key and curve_client_key_file go together")
        if server is not None and not (
            isinstance(server, str) and _Z85_KEY_PATTERN.fullmatch(server)
        ):
            raise ValueError("curve_server_key must be a Z85 public key (40 characters)")
        if client is not None and (not isinstance(client, str) or not client):
            raise ValueError("curve_client_key_file must be the path of a secret certificate")

    @property
    def is_local(self) -> bool:
        """Whether the daemon runs on this machine (an ipc path, a loopback or unspecified
        address), so that its pid means something here."""
        if self.transport == "ipc":
            return True
        host = self.endpoint[len("tcp://") :].rpartition(":")[0].strip("[]")
        if host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a host name: another machine, as far as this side can tell
        return address.is_loopback or address.is_unspecified

    @property
    def key_bytes(self) -> bytes:
        """The key as the signing functions take it."""
        return bytes.fromhex(self.key)


def runtime_dir(create: bool = True) -> Path:
    """The per-user folder for the connection file (and IPC sockets), private to the user:
    $XDG_RUNTIME_DIR/neural-style, else <tempdir>/neural-style-<uid> (shared /tmp: the owner
    and mode are checked, so another user cannot plant it), on Windows %LOCALAPPDATA%."""
    if _IS_WINDOWS:
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        path = Path(base) / APP_NAME
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        path = Path(xdg) / APP_NAME
    else:
        path = Path(tempfile.gettempdir()) / f"{APP_NAME}-{os.getuid()}"
    if create:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as error:
            raise ConnectionFileError(f"cannot create the runtime folder {path}: {error}") from None
        _check_private_dir(path)
    return path


def _check_private_dir(path: Path) -> None:
    """Refuse a folder that is a symlink, someone else's, or open to others."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ConnectionFileError(f"{path} is not a folder (a symlink?); remove it and retry")
    if info.st_uid != os.getuid():
        raise ConnectionFileError(
            f"{path} belongs to another user (uid {info.st_uid}); refusing to use it"
        )
    if info.st_mode & 0o077:
        # Ours but too open (made by hand, or an odd umask at mkdir): close it.
        os.chmod(path, 0o700)


def default_connection_file() -> Path:
    """Where the daemon writes its connection file and clients look for it."""
    return runtime_dir() / CONNECTION_FILE_NAME


def write_connection_file(info: ConnectionInfo, path: Path | str) -> Path:
    """Write `info` atomically, readable by the owner only: a temporary file created 0600 in
    the same folder, synced, then renamed over `path`. Refuses to go on if the result is not
    0600 and ours (a file system that ignores modes must not leak the key)."""
    path = Path(path)
    fields = {
        key: value
        for key, value in asdict(info).items()
        if not (key in _OPTIONAL_FIELDS and value is None)
    }
    data = json.dumps(fields, indent=2).encode() + b"\n"
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o600)  # 0600 from the start: never readable by others
    try:
        try:
            if not _IS_WINDOWS:
                os.fchmod(fd, 0o600)  # the umask may have taken bits away; set exactly 0600
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_dir(path.parent)
    if not _IS_WINDOWS:
        try:
            _check_private_file(path)
        except ConnectionFileError:
            with contextlib.suppress(OSError):
                os.unlink(path)  # do not leave the key lying around in a readable file
            raise
    return path


def _check_private_file(path: Path) -> None:
    """Refuse a connection file that is not exactly 0600 and ours."""
    info = os.lstat(path)
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or mode != 0o600:
        raise ConnectionFileError(
            f"{path} has mode {mode:o} and owner {info.st_uid}, not 600 "
            f"and {os.getuid()}: refusing to keep a key in it"
        )


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; not possible (nor needed) everywhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_connection_file(path: Path | str) -> ConnectionInfo:
    """The daemon's connection details; ConnectionFileMissing when there is no file,
    ConnectionFileError when it is garbled or could have been written by someone else."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            if not _IS_WINDOWS:
                _check_readable_owner(path, os.fstat(file.fileno()))
            raw = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConnectionFileMissing(
            f"no connection file at {path} (is the daemon running? "
            f"Start it with `neural-style start`)"
        ) from None
    except OSError as error:
        raise ConnectionFileError(f"cannot read the connection file {path}: {error}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConnectionFileError(f"the connection file {path} is too large to be one")
    return _parse_connection(raw, path)


def _check_readable_owner(path: Path, info: os.stat_result) -> None:
    """A file someone else owns or can write could point us to their endpoint and key."""
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise ConnectionFileError(
            f"the connection file {path} is not private to this user "
            f"(owner {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o})"
        )


def _parse_connection(raw: bytes, path: Path) -> ConnectionInfo:
    garbled = f"the connection file {path} is garbled"
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ConnectionFileError(f"{garbled}: {error}; remove it and restart the daemon") from None
    if not isinstance(obj, dict):
        raise ConnectionFileError(f"{garbled}: not a JSON object")
    # Keys this version does not know are skipped, so that a newer daemon's file can still be
    # read far enough to report a protocol version mismatch.
    known = ConnectionInfo.__dataclass_fields__
    try:
        return ConnectionInfo(**{key: value for key, value in obj.items() if key in known})
    except (TypeError, ValueError) as error:
        raise ConnectionFileError(f"{garbled}: {error}") from None


def remove_connection_file(path: Path | str, pid: int | None = None) -> bool:
    """Remove the file on a clean exit; with `pid`, only if it still names that process (a
    newer daemon may have replaced it). True if removed."""
    path = Path(path)
    if pid is not None:
        try:
            if read_connection_file(path).pid != pid:
                return False
        except ConnectionFileError:
            return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def is_process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts as alive)."""
    if pid <= 0:
        return False  # 0 and negatives address process groups, not one process
    if _IS_WINDOWS:
        return _is_windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence and permission check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def _is_windows_process_alive(pid: int) -> bool:
    # os.kill(pid, 0) would *terminate* the process on Windows: ask the kernel instead.
    import ctypes

    query_limited_information, still_active = 0x1000, 259
    # ctypes.windll exists on Windows only, where this branch runs.
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def stale(info: ConnectionInfo) -> bool:
    """Whether the file was left behind by a daemon that is gone. A live pid may still be a
    reused one: confirm a live daemon with a ping before trusting it. The pid of a daemon on
    another machine says nothing here: only silence tells that one is gone."""
    return info.is_local and not is_process_alive(info.pid)
